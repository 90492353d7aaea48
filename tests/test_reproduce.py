"""`reproduce` with trainings side by side (`schedule`): a failing training is named, and two processes give the
tables of one.

The comparison runs the tiny preset twice (a few minutes on 2 cores), so it is flagged slow: it runs when
CLINICAL_BERT_TEST_FLAGS holds "slow" (e.g. `CLINICAL_BERT_TEST_FLAGS="data slow" pytest tests/test_reproduce.py`).
"""
import json
import os
from pathlib import Path

import nbformat
import pytest

from clinical_bert.pipeline import Experiment
from clinical_bert.reproduce import RunSpec, exp_name, experiment_notebooks, reproduce
from clinical_bert.schedule import TrainingFailed, rrg, train_all

SLOW = "slow" in os.environ.get("CLINICAL_BERT_TEST_FLAGS", "data").split()


def test_failed_training_names_it(tmp_path):
    "A training that raises in a pool process stops the pool; the error names the step and its log."
    ex = Experiment("x", "tiny", data_dir=str(tmp_path / "no_data"), runs_dir=str(tmp_path / "runs"),
                    figures_dir=str(tmp_path / "runs"), threads=1)
    with pytest.raises(TrainingFailed, match=r"training splits\('iu'\) seed 0 failed: DataError: .*no_data/iu") as e:
        train_all(ex, [rrg("iu", None)], jobs=2, out=lambda _: None)
    assert "splits-iu" in str(e.value) and ".log" in str(e.value)  # where its output went


def _takes_threads(nb: Path) -> bool:
    "Whether the notebook's parameters cell declares `threads` (its Experiment then trains at the run's count)."
    cells = nbformat.read(nb, as_version=4).cells
    return any("parameters" in c.metadata.get("tags", []) and "\nthreads =" in "\n" + c.source for c in cells)


@pytest.mark.skipif(not SLOW, reason="slow (two tiny reproduce runs); CLINICAL_BERT_TEST_FLAGS='data slow' runs it")
def test_two_processes_give_the_tables_of_one(tmp_path):
    "--jobs 2 and --jobs 1 at one thread per training write the same table CSVs; the notebooks train nothing unplanned."
    only = [exp_name(nb) for nb in experiment_notebooks() if _takes_threads(nb)]
    assert len(only) >= 9
    figs = {}
    for jobs in (2, 1):
        root = tmp_path / f"jobs{jobs}"
        spec = RunSpec(preset="tiny", runs_dir=str(root / "runs"), figures_dir=str(root / "figures"), jobs=jobs, threads=1)
        times = reproduce(spec, only=only, progress=False)
        assert (root / "runs" / "reproduce_times.md").is_file() and "total" in (root / "runs" / "reproduce_times.md").read_text()
        if jobs == 2:
            summary = json.loads((root / "runs" / "reproduce.json").read_text())
            assert summary["unplanned"] == [], summary["unplanned"]  # the plan covers every training the notebooks ask for
            assert any(k.startswith("trainings side by side") for k in times)
            assert len(list((root / "runs" / "schedule").glob("*.log"))) > 10  # the plan trained the models
        figs[jobs] = {p.relative_to(root / "figures"): p.read_bytes() for p in sorted((root / "figures").glob("**/*.csv"))}
    assert len(figs[1]) > 10 and figs[2].keys() == figs[1].keys()
    differ = [str(k) for k in figs[1] if figs[1][k] != figs[2][k]]
    assert not differ, f"tables that differ between --jobs 2 and --jobs 1: {differ}"
