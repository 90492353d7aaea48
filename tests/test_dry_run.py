"""`clinical-bert reproduce --preset paper --dry-run` as a user runs it: every experiment notebook at the
paper's shapes (224 px, DenseNet121, BERT-base 12 x 768, the paper's decoding lengths, beam 5, gradient
accumulation, 2 DataLoader workers) on a few synthetic studies for a few optimizer steps, random weights.

It takes about 14 minutes on 2 CPU cores, so it is flagged slow: it runs when CLINICAL_BERT_TEST_FLAGS
holds "slow" (e.g. `CLINICAL_BERT_TEST_FLAGS="data slow" pytest tests/test_dry_run.py`). A tiny-preset dry
run of the same code path runs always, with two trainings side by side (a CPU run's default), so that their
DataLoader workers are spawned processes.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
       "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
CLI = [sys.executable, str(Path(sys.executable).parent / "clinical-bert")]
SLOW = "slow" in os.environ.get("CLINICAL_BERT_TEST_FLAGS", "data").split()


def dry_run(tmp_path, preset, *extra, timeout=1500):
    r = subprocess.run(CLI + ["reproduce", "--preset", preset, "--dry-run", "--runs-dir", str(tmp_path / "runs"),
                              "--no-progress", *extra], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"dry run failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def check_marked(tmp_path):
    "Every table of the dry run says DRY RUN; every figure exists; nothing lands in the committed figures/."
    figs = tmp_path / "runs" / "figures"  # the dry run's default figures folder
    tables = sorted(figs.glob("*/*.md"))
    assert tables, "the dry run wrote no table"
    for t in tables:
        assert "DRY RUN" in t.read_text(), f"{t} is not marked as a dry run"
    assert sorted(figs.glob("*/*.png")), "the dry run wrote no figure"
    assert not (tmp_path / "figures").exists()
    return figs


def test_tiny_dry_run_of_the_pretraining_notebook(tmp_path):
    r = dry_run(tmp_path, "tiny", "--only", "pretrain", "--jobs", "2", timeout=900)
    assert "training side by side: 2 processes" in r.stdout
    assert "dry run of the 'tiny' preset" in r.stdout
    check_marked(tmp_path)
    models = list((tmp_path / "runs" / "models").glob("*-dry-*/pretrain/*/best"))
    assert len(models) == 5 and not list((tmp_path / "runs" / "models").glob("*/pretrain/*/checkpoints"))


@pytest.mark.skipif(not SLOW, reason="slow (about 14 minutes on 2 cores); CLINICAL_BERT_TEST_FLAGS='data slow' runs it")
def test_paper_dry_run(tmp_path):
    dry_run(tmp_path, "paper")
    figs = check_marked(tmp_path)
    for exp in ("pretrain", "table1_rrg", "table2_mimic", "table3_rd", "table4_ablation", "table5_k",
                "fig5_reports", "fig6_attention", "fig7_lengths", "gradcam"):
        assert (tmp_path / "runs" / exp / "metrics.json").is_file(), exp
    cfg = json.loads(next((tmp_path / "runs" / "models").glob("*/pretrain/cd_mmm_imm/best/config.json")).read_text())
    assert (cfg["image_size"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["max_text_len"]) == (224, 768, 12, 100)
    assert (cfg["backbone_weights"], cfg["encoder_init"]) == ("none", "none")  # random, and recorded
    for folder, length in (("table2_mimic/clinical_bert", 100), ("table1_rrg/iu/clinical_bert", 60)):  # beam 5 and
        meta = json.loads((tmp_path / "runs" / folder / "metrics.json").read_text())  # the paper's length per data set
        assert (meta["beam_size"], meta["max_len"], meta["n"]) == (5, length, 4), (folder, meta)
    t2 = pd.read_csv(figs / "table2_mimic" / "table2_mimic.csv", index_col=0)
    assert "paper: Clinical-BERT" in t2.columns
