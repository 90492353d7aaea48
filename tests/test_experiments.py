"""Each experiment notebook runs under papermill at smoke size (preset tiny) and writes the
metrics, tables and figures it promises.

The notebooks run in their reproduce order into one temporary runs/ and figures/ folder, so
later notebooks reuse the models of earlier ones, as `clinical-bert reproduce` does. Numbers at
tiny size mean nothing; the checks are about keys, ranges and files.
"""
import json
import math
from pathlib import Path

import pytest

from clinical_bert.reproduce import RunSpec, exp_name, experiment_notebooks, run_notebook

NOTEBOOKS = experiment_notebooks()
VARIANTS = ["baseline", "cd", "cd_mmm", "cd_mmm_imm_dense", "cd_mmm_imm"]
NLG = ["BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    return RunSpec(preset="tiny", runs_dir=str(root / "runs"), figures_dir=str(root / "figures"))


def _unit(v, hi=1.0):
    "A score in [0, hi], or None (undefined, e.g. an AUC with one class)."
    return v is None or (isinstance(v, (int, float)) and not math.isnan(v) and 0 <= v <= hi)


def _nlg_ok(s: dict) -> bool:
    return all(_unit(s[k], 10.0 if k == "CIDEr" else 1.0) for k in NLG)


CHECKS = {
    "pretrain": lambda m: set(m["variants"]) == set(VARIANTS)
    and all(0 < m["variants"][v]["valid loss (best)"] < 100 for v in VARIANTS),
    "table1_rrg": lambda m: set(m["iu"]) == {"Clinical-BERT", "no pre-training", "most common report"}
    and all(_nlg_ok(s) for s in m["iu"].values()) and "covctr" not in m,
    "table2_mimic": lambda m: all(_nlg_ok(s) and _unit(s["ce_micro_f1"]) and _unit(s["ce_macro_f1"]) for s in m.values()
                                  if isinstance(s, dict) and "BLEU_4" in s) and "most common report" in m,
    "table3_rd": lambda m: all(_unit(m[k]["auc_mean"]) and len([x for x in m[k] if x.startswith("auc/")]) == 14
                               for k in ("Clinical-BERT", "Clinical-BERT, after MIMIC-CXR RRG", "no pre-training")),
    "table4_ablation": lambda m: all(_nlg_ok(m[v]) and _unit(m[v]["ce_micro_f1"]) for v in VARIANTS),
    "table5_k": lambda m: m["n_regions"] == 4 and len(m["k"]) >= 2 and all(_nlg_ok(s) for s in m["k"].values()),
    "fig5_reports": lambda m: m["n_examples"] >= 1 and m["mesh_hit"] >= 0 and m["mesh_miss"] >= 0
    and _unit(m["mesh_hit_rate"]),
    "fig6_attention": lambda m: m["n_studies"] >= 1 and all(_unit(v) for r in m["scores"].values() for v in r.values()),
    "fig7_lengths": lambda m: {"reference", "Baseline", "+CD+MMM+IMM"} <= set(m)
    and all(m[k]["mean words"] >= 0 for k in m if not k.startswith("_")),
    "gradcam": lambda m: m["n_films"] >= 0 and all(_unit(v) for r in m.get("scores", {}).values() for v in r.values()),
}
FIGURES = {"pretrain": ["loss_curves.png", "losses.md"], "table1_rrg": ["table1_iu.md", "table1_iu.csv"],
           "table2_mimic": ["table2_mimic.md", "ce_per_observation.md"], "table3_rd": ["table3_nih_auc.md"],
           "table4_ablation": ["table4_ablation.md"], "table5_k": ["table5_k.md"],
           "fig5_reports": ["fig5_reports.html", "fig5_reports.png"], "fig6_attention": ["fig6_scores.md"],
           "fig7_lengths": ["fig7_lengths.png", "fig7_lengths.md"], "gradcam": []}


def test_every_experiment_notebook_has_checks():
    assert NOTEBOOKS, "no experiment notebooks in nbs/experiments"
    assert {exp_name(nb) for nb in NOTEBOOKS} == set(CHECKS), "add checks for new experiment notebooks here"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=exp_name)
def test_experiment_notebook(nb, spec):
    run_notebook(nb, spec)  # raises NotebookFailed naming the cell; the executed copy stays in runs/
    name = exp_name(nb)
    metrics = json.loads((Path(spec.runs_dir) / name / "metrics.json").read_text())
    assert metrics["_run"]["preset"] == "tiny"
    assert CHECKS[name](metrics), f"{name}: metrics.json out of range or missing keys: {json.dumps(metrics)[:1500]}"
    for f in FIGURES[name]:
        path = Path(spec.figures_dir) / name / f
        assert path.is_file() and path.stat().st_size > 0, f"{name}: {path} not written"
    tables = list((Path(spec.figures_dir) / name).glob("*.md"))
    assert all("preset tiny" in t.read_text() for t in tables), "every table names its preset"
