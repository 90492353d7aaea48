"""Build the docs site offline: nbdev-processed notebooks -> mkdocs-material + mkdocs-jupyter.

Quarto (what `nbdev_docs` uses) is on no registry these machines reach, so the site is
built from the same nbdev processing (show_doc signature tables, hidden cells and export
directives removed) with an offline generator. `nbdev_docs` keeps working where Quarto
exists.

Each page is a processed copy of its notebook (the notebooks themselves are never written):
- show_doc entries become markdown (nbdev writes them for Quarto, whose `{target=...}` link
  attributes would show as text); hidden and empty cells are dropped, and so is the
  thread-count set-up of the checks;
- outputs come from the executed copies that the test suite writes to _proc/executed/ when
  they exist (experiment notebooks: runs/<exp>/ from `clinical-bert reproduce`); without one
  a notebook is rendered without outputs, and an experiment page shows the tables and
  figures committed under figures/<exp>/ instead;
- math ($...$, $$...$$) is typeset by MathJax 2.7, served from the site itself (copied from
  the jupyter-server-mathjax package): no page requests an outside host.

Usage: python tools/build_docs.py [--site-dir site] [--no-executed]
"""
import argparse
import html
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
ASSETS = Path(__file__).resolve().parent / "site_assets"
_DIRECTIVE = re.compile(r"^\s*#\|\s*(.*)$")
# Quarto link attributes that nbdev's show_doc puts after its source link.
_QUARTO_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)\{[^}]*\}")
# The thread-count set-up and restore lines of the checks, each alone on its line.
_THREADS = re.compile(r"^\s*(_threads\s*=\s*torch\.get_num_threads\(\)|torch\.set_num(_interop)?_threads\([^()]*\))"
                      r"\s*(#.*)?$")


def notebooks():
    "Library notebooks in dependency order (index first), then the experiment notebooks."
    lib = sorted(p for p in NBS.glob("*.ipynb") if p.name != "index.ipynb" and not p.name.startswith("_"))
    exp = sorted((NBS / "experiments").glob("*.ipynb"))
    return [NBS / "index.ipynb", *lib, *exp]


def experiment_name(nb_path: Path) -> str:
    "`04_table3_rd` -> `table3_rd`: the name of its runs/ and figures/ folders."
    return nb_path.stem.split("_", 1)[1]


def executed_copy(nb_path: Path):
    "The executed notebook for `nb_path`, or None."
    if nb_path.parent.name == "experiments":
        exp = experiment_name(nb_path)  # reproduce writes runs/<exp>/<notebook>
        cands = [ROOT / "runs" / exp / nb_path.name, PROC / "executed" / "experiments" / nb_path.name]
    else:
        cands = [PROC / "executed" / nb_path.name]
    return next((c for c in cands if c.exists()), None)


def _directives(cell) -> dict:
    "`#| key: value` lines of a cell as {key: value} (value '' for a bare `#| key`)."
    out = {}
    for line in cell.source.splitlines():
        if m := _DIRECTIVE.match(line):
            k, _, v = m.group(1).partition(":")
            out[k.strip()] = v.strip()
    return out


def unquarto(md: str) -> str:
    "Markdown without Quarto's link attributes: nbdev's `[source](url){target=...}` becomes a plain HTML link."
    return _QUARTO_LINK.sub(lambda m: f'<a class="source-link" href="{html.escape(m.group(2))}" '
                                      f'target="_blank">{html.escape(m.group(1))}</a>', md)


def _text(v) -> str:
    return "".join(v) if isinstance(v, list) else str(v)


def _non_empty(o) -> bool:
    "An output that shows something (not an empty stream or an empty text result)."
    if o.get("output_type") == "stream":
        return bool(_text(o.get("text", "")).strip())
    data = o.get("data")
    if data is not None:
        return any(_text(v).strip() for v in data.values())
    return True  # errors


def page_cells(cell) -> list:
    "The cells a notebook cell becomes on its page: none (hidden, empty, thread set-up), itself, or a markdown cell."
    if cell.cell_type == "markdown":
        cell.source = unquarto(cell.source)
        return [cell] if cell.source.strip() else []
    if cell.cell_type != "code":
        return [cell] if cell.source.strip() else []
    dirs = _directives(cell)
    if "hide" in dirs or dirs.get("include") == "false":
        return []
    outputs = [o for o in cell.get("outputs", []) if _non_empty(o) and dirs.get("output") != "false"]
    if dirs.get("echo") == "false" or "hide-input" in cell.metadata.get("tags", []):
        md = [_text(o["data"]["text/markdown"]) for o in outputs if "text/markdown" in o.get("data", {})]
        if md and len(md) == len(outputs):  # show_doc: its markdown, as a markdown cell
            return [nbformat.v4.new_markdown_cell(unquarto("\n\n".join(md)))]
        if not outputs:
            return []
        cell.source, tags = "", ["remove_input"]  # outputs only (mkdocs-jupyter's remove_input_tags)
    else:
        tags = []  # cell tags (papermill's `parameters`) would show as labels
    lines = [l for l in cell.source.splitlines() if not _DIRECTIVE.match(l) and not _THREADS.match(l)]
    cell.source = "\n".join(lines).strip("\n")
    cell.outputs = outputs
    cell.metadata["tags"] = tags
    for o in cell.outputs:
        if "text/markdown" in o.get("data", {}):
            o["data"]["text/markdown"] = unquarto(_text(o["data"]["text/markdown"]))
    return [cell] if cell.source.strip() or cell.outputs else []


def local_links(md: str, depth: int, pages: dict) -> str:
    "nbdev's links to the published docs (`doc_host/doc_baseurl/imm.html#x`) point at this site's page instead."
    def sub(m):
        page = pages.get(m.group(1))
        anchor = (m.group(2) or "").replace(".", "")  # the heading ids that nbconvert writes have no dots
        return f"{'../' * depth}{page}/{anchor}" if page else m.group(0)
    return re.sub(r"https://clinical-bert\.github\.io/clinical-bert/([\w]+)\.html(#[\w.\-]+)?", sub, md)


def committed_results(nb_path: Path) -> list:
    "Markdown cells showing the tables and figures committed under figures/<exp>/ (for a page without outputs)."
    exp = experiment_name(nb_path)
    d = ROOT / "figures" / exp
    files = sorted(p for p in d.glob("*") if p.is_file()) if d.is_dir() else []
    if not files:
        return []
    cells = [nbformat.v4.new_markdown_cell(
        "## Results (committed figures)\n\n"
        f"This page has no executed copy (`clinical-bert reproduce` writes one to `runs/{exp}/`), "
        f"so the code above is shown without its outputs. These are the tables and figures "
        f"committed under `figures/{exp}/`; each says the data set, preset and seed it was made with.")]
    stems_md = {p.stem for p in files if p.suffix == ".md"}
    pngs = [p for p in files if p.suffix == ".png"]
    for p in files:
        rel = f"../../figures/{exp}/{p.name}"
        if p.suffix == ".md":
            cells.append(nbformat.v4.new_markdown_cell(p.read_text()))
        elif p.suffix == ".csv" and p.stem not in stems_md:
            import pandas as pd
            table = pd.read_csv(p).to_html(index=False, float_format=lambda x: f"{x:.3f}", na_rep="n/a", border=0)
            cells.append(nbformat.v4.new_markdown_cell(f"**{p.name}**\n\n{table}"))
        elif p.suffix == ".png":
            cells.append(nbformat.v4.new_markdown_cell(f"![{p.stem}]({rel})\n\n*{p.name}*"))
        elif p.suffix == ".html":
            cells.append(nbformat.v4.new_markdown_cell(f"The same figure as a web page: [{p.name}]({rel})."))
    csvs = [p for p in files if p.suffix == ".csv"]
    if not pngs and csvs and (chart := _chart(csvs[0], DOCS / "figures" / exp / f"{csvs[0].stem}_chart.png")):
        cells.append(nbformat.v4.new_markdown_cell(
            f"![chart of {csvs[0].name}](../../figures/{exp}/{chart.name})\n\n"
            f"*{csvs[0].name} as a chart (this run's columns, drawn from the committed CSV when the site is built; n/a values left out).*"))
    return cells


def _chart(csv: Path, out: Path):
    "Horizontal grouped bars of the numeric columns of a committed table (this run's, not the paper's); None when it has none."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    df = pd.read_csv(csv)
    df = df.set_index(df.columns[0])
    num = df.select_dtypes("number").dropna(axis=1, how="all")
    num = num[[c for c in num.columns if not c.startswith("paper")  # the paper's numbers and settings: in the table
               and not re.search(r" (lo|hi|sd)$", c)]]  # interval bounds and spreads: in the table
    if num.empty:
        return None
    rows, cols = len(num), len(num.columns)
    fig, ax = plt.subplots(figsize=(8, 0.13 * rows * cols + 1.5))
    num.iloc[::-1].plot.barh(ax=ax, width=0.8)
    ax.set_ylabel("")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              ncol=min(cols, 3), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def process(nb_path: Path, use_executed: bool = True, pages: dict | None = None) -> Path:
    "Run nbdev's doc processors over the notebook (its executed copy when there is one) and write its page under _proc/docs."
    from nbdev.processors import FilterDefaults
    from nbdev.process import NBProcessor
    from execnb.nbio import read_nb

    src = executed_copy(nb_path) if use_executed else None
    if src is None and use_executed:
        warnings.warn(f"{nb_path.relative_to(ROOT)} has no executed copy (run pytest first): rendered without outputs")
    nb = read_nb(src or nb_path)
    nb.path_ = str(nb_path)
    try:
        NBProcessor(nb=nb, procs=FilterDefaults().procs(), process=False).process()
    except Exception as e:  # a cell that show_doc needs failed: the page keeps its notebook, without API entries
        warnings.warn(f"{nb_path.relative_to(ROOT)}: its API entries (show_doc) are left out: {str(e).splitlines()[0]} "
                      f"(nbdev runs every cell that imports; an import cell must do nothing else)")
        nb = read_nb(src or nb_path)
        nb.path_ = str(nb_path)
        procs = [p for p in FilterDefaults().procs() if getattr(p, "__name__", "") != "exec_show_docs"]
        NBProcessor(nb=nb, procs=procs, process=False).process()
    out_nb = nbformat.from_dict(_plain({"cells": nb.cells, "metadata": nb.metadata,
                                        "nbformat": 4, "nbformat_minor": 5}))
    cells = []
    for cell in out_nb.cells:
        for k in [k for k in cell if k.endswith("_")]:
            del cell[k]
        if "source" in cell:
            cells += page_cells(_frontmatter_to_title(cell))
    if nb_path.parent.name == "experiments" and src is None:
        cells += committed_results(nb_path)
    rel = nb_path.relative_to(NBS)
    depth = len(rel.parts)
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = local_links(cell.source, depth, pages or {})
        for o in cell.get("outputs", []):
            if "text/markdown" in o.get("data", {}):
                o["data"]["text/markdown"] = local_links(_text(o["data"]["text/markdown"]), depth, pages or {})
    out_nb.cells = cells
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


def copy_mathjax() -> None:
    "MathJax 2.7 from the jupyter-server-mathjax package into the site's assets (no CDN)."
    try:
        import jupyter_server_mathjax
    except ImportError:
        sys.exit("jupyter-server-mathjax is not installed (it ships the MathJax the site serves): pip install -e '.[dev]'")
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    keep = shutil.ignore_patterns("localization")  # other languages than English
    shutil.copytree(static, DOCS / "assets" / "mathjax", ignore=keep)
    for f in ASSETS.iterdir():
        shutil.copy(f, DOCS / "assets" / f.name)


def write_mkdocs_yml(pages, extra_md=()) -> Path:
    "mkdocs.yml with navigation in dependency order and no request to outside hosts."
    lib = [p for p in pages if p.parent.name != "experiments" and p.name != "index.ipynb"]
    exp = [p for p in pages if p.parent.name == "experiments"]
    nav = ["  - Home: index.ipynb"]
    nav += ["  - Library:"] + [f"      - {_title(p)!r}: {p.name}" for p in lib]
    if exp:
        nav += ["  - Experiments:"] + [f"      - {_title(p)!r}: experiments/{p.name}" for p in exp]
    nav += [f"  - {p.stem.capitalize()!r}: {p.name}" for p in extra_md]
    yml = f"""site_name: clinical-bert
site_description: Clinical-BERT (Yan & Pei, AAAI 2022), notebook-first
docs_dir: {DOCS}
exclude_docs: |
  /figures/**/*.md
theme:
  name: material
  font: false
  features: [navigation.sections, content.code.copy]
extra_css: [assets/site.css]
extra_javascript: [assets/mathjax-config.js, assets/mathjax/MathJax.js]
markdown_extensions:
  - pymdownx.arithmatex:
      generic: false
plugins:
  - search
  - mkdocs-jupyter:
      execute: false
      include_source: true
      ignore_h1_titles: false
      no_prompt: true
      remove_tag_config:
        remove_input_tags: [remove_input]
nav:
{chr(10).join(nav)}
"""
    path = PROC / "mkdocs.yml"
    path.write_text(yml)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site-dir", default=str(ROOT / "site"))
    ap.add_argument("--no-executed", action="store_true",
                    help="ignore executed copies (_proc/executed/, runs/): pages from the notebooks alone")
    args = ap.parse_args(argv)
    if DOCS.exists():
        shutil.rmtree(DOCS)
    DOCS.mkdir(parents=True)
    fig = ROOT / "figures"
    if fig.exists():
        shutil.copytree(fig, DOCS / "figures", dirs_exist_ok=True)
    copy_mathjax()
    pages = notebooks()
    names = {re.sub(r"^\d+[a-z]?_", "", p.stem): p.stem for p in pages if p.parent == NBS}
    for p in pages:
        process(p, use_executed=not args.no_executed, pages=names)
    extra_md = [shutil.copy(p, DOCS / p.name) and DOCS / p.name for p in sorted((ROOT / "docs").glob("*.md"))]
    cfg = write_mkdocs_yml(pages, extra_md)
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(cfg), "-d", args.site_dir])
    if r.returncode:
        sys.exit(f"mkdocs build failed (exit {r.returncode}); see the messages above")
    print(f"docs site: {args.site_dir}/index.html ({len(pages) + len(extra_md)} pages)")


if __name__ == "__main__":
    main()
