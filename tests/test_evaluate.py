"""`clinical-bert evaluate` as a user runs it, on a tiny model trained for a few steps (plumbing only:
files, keys, value ranges)."""
import json

import pandas as pd
import pytest

from cli_run import run  # the command as a user runs it


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    "Tiny pre-training -> RRG -> RD through the commands, one epoch each."
    from clinical_bert.splits import synthetic_benchmark
    d = tmp_path_factory.mktemp("ev")
    data = synthetic_benchmark(d / "data", "tiny", seed=0)
    one = ["--preset", "tiny", "--epochs", "1", "--no-progress"]
    run(["pretrain", "--data", data["mimic"], "--out", "pre"] + one, d)
    run(["finetune-rrg", "--data", data["iu"], "--init", "pre/best", "--out", "rrg"] + one, d)
    run(["finetune-rd", "--data", data["nih"], "--init", "pre/best", "--out", "rd"] + one, d)
    return d, data


def test_evaluate_rd_command(models):
    d, data = models
    r = run(["evaluate", "--model", d / "rd" / "best", "--data", data["nih"], "--task", "rd", "--out", d / "ev-rd"], d)
    assert "auc_mean" in r.stdout
    m = json.loads((d / "ev-rd" / "metrics.json").read_text())
    assert m["task"] == "rd" and m["n"] > 0 and m["n_skipped"] == 0
    v = m["scores"]["auc_mean"]
    assert v is None or 0 <= v <= 1
    p = pd.read_csv(d / "ev-rd" / "probabilities.csv")
    assert len(p) == m["n"] and p.filter(like="p/").shape[1] == 14
    assert (d / "ev-rd" / "table.md").read_text().startswith("| metric |")


def test_evaluate_rrg_command(models):
    d, data = models
    run(["evaluate", "--model", d / "rrg" / "best", "--data", data["iu"], "--task", "rrg", "--out", d / "ev-rrg",
         "--beam-size", "2", "--max-len", "12"], d)
    m = json.loads((d / "ev-rrg" / "metrics.json").read_text())
    assert (m["beam_size"], m["max_len"]) == (2, 12)
    s = m["scores"]
    assert all(0 <= s[k] <= 1 for k in ("BLEU_1", "BLEU_4", "METEOR", "ROUGE_L", "ce_micro_f1"))
    rep = pd.read_csv(d / "ev-rrg" / "reports.csv", keep_default_na=False)
    assert list(rep.columns) == ["id", "generated", "reference"] and len(rep) == m["n"]
    assert rep["generated"].str.split().str.len().max() <= 12
