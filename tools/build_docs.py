"""Build the docs site offline: nbdev-processed notebooks -> mkdocs-material + mkdocs-jupyter.

Quarto (what `nbdev_docs` uses) is on no registry these machines reach, so the site is
built from the same nbdev processing (show_doc signature tables, hidden cells and export
directives removed) with an offline generator. `nbdev_docs` keeps working where Quarto
exists.

Outputs come from the executed copies that the test suite writes to _proc/executed/
(run `pytest` first); a notebook without an executed copy is rendered without outputs and
named in a warning. Experiment notebooks take their executed copies from runs/<exp>/.

Usage: python tools/build_docs.py [--site-dir site]
"""
import argparse
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NBS, PROC = ROOT / "nbs", ROOT / "_proc"
DOCS = PROC / "docs"
_DIRECTIVE = re.compile(r"^\s*#\|\s*(.*)$")


def notebooks():
    "Library notebooks in dependency order (index first), then the experiment notebooks."
    lib = sorted(p for p in NBS.glob("*.ipynb") if p.name != "index.ipynb" and not p.name.startswith("_"))
    exp = sorted((NBS / "experiments").glob("*.ipynb"))
    return [NBS / "index.ipynb", *lib, *exp]


def executed_copy(nb_path: Path):
    "The executed notebook for `nb_path`, or None."
    if nb_path.parent.name == "experiments":
        exp = nb_path.stem.split("_", 1)[1]  # reproduce writes runs/<exp>/<notebook> (exp = name without its number)
        cands = [ROOT / "runs" / exp / nb_path.name, PROC / "executed" / "experiments" / nb_path.name]
    else:
        cands = [PROC / "executed" / nb_path.name]
    return next((c for c in cands if c.exists()), None)


def _strip_directives(cell):
    "Drop `#|` lines; hide the input of cells marked `echo: false` (show_doc cells)."
    lines = cell.source.splitlines()
    dirs = [m.group(1) for l in lines if (m := _DIRECTIVE.match(l))]
    cell.source = "\n".join(l for l in lines if not _DIRECTIVE.match(l))
    if any(d.replace(" ", "") == "echo:false" for d in dirs):
        cell.source = ""
        cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
        cell.metadata["tags"] = list(set(cell.metadata.get("tags", [])) | {"hide-input"})


def process(nb_path: Path) -> Path:
    "Run nbdev's doc processors over the executed notebook and write it under _proc/docs."
    from nbdev.processors import FilterDefaults
    from nbdev.process import NBProcessor
    from execnb.nbio import read_nb

    src = executed_copy(nb_path)
    if src is None:
        warnings.warn(f"{nb_path.relative_to(ROOT)} has no executed copy (run pytest first): rendered without outputs")
        src = nb_path
    nb = read_nb(src)
    nb.path_ = str(nb_path)
    NBProcessor(nb=nb, procs=FilterDefaults().procs(), process=False).process()
    out_nb = nbformat.from_dict(_plain({"cells": nb.cells, "metadata": nb.metadata,
                                        "nbformat": 4, "nbformat_minor": 5}))
    out_nb.cells = [_frontmatter_to_title(c) for c in out_nb.cells if c.get("source") or c.get("outputs")]
    for cell in out_nb.cells:
        for k in [k for k in cell if k.endswith("_")]:
            del cell[k]
        if cell.cell_type == "code":
            _strip_directives(cell)
    rel = nb_path.relative_to(NBS)
    out = DOCS / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(out_nb, out)
    return out


def _frontmatter_to_title(cell):
    "nbdev turns `# Title` / `> summary` into Quarto front matter; give mkdocs a heading back."
    if cell.cell_type != "raw" or not cell.source.lstrip().startswith("---"):
        return cell
    import yaml
    fm = yaml.safe_load(cell.source.strip().strip("-")) or {}
    text = f"# {fm.get('title', '')}" + (f"\n\n> {fm['description']}" if fm.get("description") else "")
    return nbformat.v4.new_markdown_cell(text)


def _plain(o):
    "Plain JSON types, without nbdev's bookkeeping attributes (keys ending in '_')."
    if isinstance(o, dict):
        return {k: _plain(v) for k, v in o.items() if not str(k).endswith("_")}
    if isinstance(o, (list, tuple)) or type(o).__name__ == "L":
        return [_plain(v) for v in o]
    return o


def _title(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return nb_path.stem


def write_mkdocs_yml(pages) -> Path:
    "mkdocs.yml with navigation in dependency order and no request to outside hosts."
    lib = [p for p in pages if p.parent.name != "experiments" and p.name != "index.ipynb"]
    exp = [p for p in pages if p.parent.name == "experiments"]
    nav = ["  - Home: index.ipynb"]
    nav += ["  - Library:"] + [f"      - {_title(p)!r}: {p.name}" for p in lib]
    if exp:
        nav += ["  - Experiments:"] + [f"      - {_title(p)!r}: experiments/{p.name}" for p in exp]
    yml = f"""site_name: clinical-bert
site_description: Clinical-BERT (Yan & Pei, AAAI 2022), notebook-first
docs_dir: {DOCS}
theme:
  name: material
  font: false
  features: [navigation.sections, content.code.copy]
plugins:
  - search
  - mkdocs-jupyter:
      execute: false
      include_source: true
      ignore_h1_titles: false
nav:
{chr(10).join(nav)}
"""
    path = PROC / "mkdocs.yml"
    path.write_text(yml)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site-dir", default=str(ROOT / "site"))
    args = ap.parse_args(argv)
    if DOCS.exists():
        shutil.rmtree(DOCS)
    pages = notebooks()
    for p in pages:
        process(p)
    fig = ROOT / "figures"
    if fig.exists():
        shutil.copytree(fig, DOCS / "figures", dirs_exist_ok=True)
    cfg = write_mkdocs_yml(pages)
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(cfg), "-d", args.site_dir])
    if r.returncode:
        sys.exit(f"mkdocs build failed (exit {r.returncode}); see the messages above")
    print(f"docs site: {args.site_dir}/index.html ({len(pages)} pages)")


if __name__ == "__main__":
    main()
