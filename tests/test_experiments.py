"""Each experiment notebook runs under papermill at smoke size (preset tiny) and writes the
metrics, tables and figures it promises.

The notebooks run in their reproduce order into one temporary runs/ and figures/ folder, so
later notebooks reuse the models of earlier ones, as `clinical-bert reproduce` does. Numbers at
tiny size mean nothing; the checks are about keys, ranges, files and the paper's columns.
The paper's numbers (clinical_bert/assets/paper_numbers.csv) and the decoding length per data set
are checked here too, without running a notebook.
"""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from clinical_bert.formats import NIH_LABELS as AUC_NAMES  # Table 3: one row per NIH pathology
from clinical_bert.pipeline import Experiment, paper_numbers
from clinical_bert.reproduce import RunSpec, exp_name, experiment_notebooks, run_notebook
from clinical_bert.recipe import RUN_SIZES

NOTEBOOKS = experiment_notebooks()
VARIANTS = ["baseline", "cd", "cd_mmm", "cd_mmm_imm_dense", "cd_mmm_imm"]
NLG = ["BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr"]
CE = ["ce_micro_precision", "ce_micro_recall", "ce_micro_f1"]
ABLATION = ["Baseline", "+CD", "+CD+MMM", "+CD+MMM+IMM (w/o sparsity)", "+CD+MMM+IMM"]

# Rows of paper_numbers.csv per (table, data set, method): one per number the paper prints; "-" is no row.
PAPER_ROWS = {
    ("1", "iu", "R2Gen"): 5, ("1", "iu", "CMN"): 5, ("1", "iu", "KERP"): 6, ("1", "iu", "PPKED"): 6,
    ("1", "iu", "Clinical-BERT"): 6 + 3,  # + clinical efficacy from the text
    ("1", "covctr", "ST"): 6, ("1", "covctr", "COATT"): 6, ("1", "covctr", "ASGK"): 6,
    ("1", "covctr", "Clinical-BERT"): 6 + 1,  # + the COVID-19 AUC from the text
    ("2", "mimic", "TOPDOWN"): 9, ("2", "mimic", "R2Gen"): 9, ("2", "mimic", "CMN"): 9, ("2", "mimic", "PPKED"): 6,
    ("2", "mimic", "Clinical-BERT"): 9,
    **{("3", "nih", m): 15 for m in ("CheXNet", "WS", "DME", "Clinical-BERT")},  # 14 pathologies + mean
    **{("4", d, m): 7 for d in ("iu", "mimic") for m in ABLATION},
    **{("5", "mimic", f"K={k}"): 4 for k in (6, 8, 12, 16, 20, 24)},
}
# Cells read off the paper by hand: (table, data set, method, metric) -> value.
PAPER_CELLS = {
    ("3", "nih", "Clinical-BERT", "auc_mean"): 0.8450, ("3", "nih", "DME", "auc/Pleural_Thickening"): 0.8036,
    ("2", "mimic", "Clinical-BERT", "ce_micro_f1"): 0.415, ("2", "mimic", "CMN", "ce_micro_precision"): 0.334,
    ("5", "mimic", "K=12", "BLEU_1"): 0.383, ("5", "mimic", "K=24", "ROUGE_L"): 0.270,
    ("4", "mimic", "+CD", "BLEU_1"): 0.359, ("4", "iu", "+CD+MMM+IMM (w/o sparsity)", "CIDEr"): 0.402,
    ("1", "iu", "PPKED", "CIDEr"): 0.351, ("1", "covctr", "Clinical-BERT", "CIDEr"): 1.218,
    ("1", "iu", "Clinical-BERT", "ce_micro_recall"): 0.4279, ("1", "covctr", "Clinical-BERT", "auc/COVID-19"): 0.9472,
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    return RunSpec(preset="tiny", runs_dir=str(root / "runs"), figures_dir=str(root / "figures"))


def _unit(v, hi=1.0):
    "A score in [0, hi], or None (undefined, e.g. an AUC with one class)."
    return v is None or (isinstance(v, (int, float)) and not math.isnan(v) and 0 <= v <= hi)


def _nlg_ok(s: dict) -> bool:
    return all(_unit(s[k], 10.0 if k == "CIDEr" else 1.0) for k in NLG)


def _claims_ok(claims: list, n_claims: int, keys) -> bool:
    "Each claim on each key once, its p in [0, 1], its interval ordered around the difference, a verdict by the rule."
    got = {(c["claim"], c["metric"]) for c in claims}
    defined = [c for c in claims if c["verdict"] != "undefined"]  # an AUC with one class in the test films has none
    return (len(got) == len(claims) == n_claims * len(keys) and {c["metric"] for c in claims} == set(keys)
            and all(c["p"] is None for c in claims if c not in defined) and len(defined) >= n_claims
            and all(0 <= c["p"] <= 1 and c["lo"] <= c["hi"] and c["lo"] - 1e-9 <= c["delta"] <= c["hi"] + 1e-9
                    and c["verdict"].startswith(("higher" if c["delta"] > 0 else "lower", "not distinguishable"))
                    and c["verdict"].startswith("not") == (c["p"] >= 0.05) for c in defined))


def _intervals_ok(intervals: dict, scores: dict) -> bool:
    "Every interval ordered and containing the row's score (the intervals are seed 0's, the scores too)."
    return bool(intervals) and all(
        lo <= hi and lo - 1e-9 <= scores[row][k] <= hi + 1e-9 and math.isclose(p, scores[row][k], abs_tol=1e-9)
        for row, ci in intervals.items() for k, (p, lo, hi) in ci.items()
        if k in scores[row] and scores[row][k] is not None and lo is not None)


def _covid_ok(m: dict) -> bool:
    "Table 1's COV-CTR half: NLG claims plus the COVID AUC line (diagnosis fine-tuned with and without pre-training)."
    c = m["covctr"]
    return (all(_unit(c[k]["auc/COVID"]) for k in ("Clinical-BERT", "no pre-training"))
            and c["most common report"]["auc/COVID"] is None  # a report floor has no diagnosis
            and _claims_ok(m["claims"]["covctr"], 1, [k for k in NLG if k != "METEOR"] + ["auc/COVID"])
            and _intervals_ok(m["intervals"]["covctr"], c)
            and all("auc/COVID" in m["intervals"]["covctr"][k] for k in ("Clinical-BERT", "no pre-training")))


CHECKS = {
    "pretrain": lambda m: set(m["variants"]) == set(VARIANTS)
    and all(0 < m["variants"][v]["valid loss (best)"] < 100 for v in VARIANTS),
    "table1_rrg": lambda m: set(m["iu"]) == {"Clinical-BERT", "no pre-training", "most common report"}
    and all(_nlg_ok(s) and all(s[k] is not None and _unit(s[k]) for k in CE) for s in m["iu"].values())
    and ("covctr" in m) == ("covctr" in RUN_SIZES["tiny"]["n_samples"])  # COV-CTR once the budget sizes its layout
    and ("covctr" not in m or _covid_ok(m))
    and _claims_ok(m["claims"]["iu"], 1, [k for k in NLG + CE if k != "METEOR"])
    and _intervals_ok(m["intervals"]["iu"], m["iu"]),
    "table2_mimic": lambda m: all(_nlg_ok(m[k]) and _unit(m[k]["ce_micro_f1"]) and _unit(m[k]["ce_macro_f1"])
                                  for k in ("Clinical-BERT", "no pre-training", "most common report"))
    and _claims_ok(m["claims"], 1, [k for k in NLG if k != "METEOR"] + CE + ["ce_macro_precision", "ce_macro_recall",
                                                                            "ce_macro_f1"])
    and _intervals_ok(m["intervals"], m),
    "table3_rd": lambda m: all(_unit(m[k]["auc_mean"]) and len([x for x in m[k] if x.startswith("auc/")]) == 14
                               for k in ("Clinical-BERT", "Clinical-BERT, after MIMIC-CXR RRG", "no pre-training"))
    and _claims_ok(m["claims"], 2, [f"auc/{x}" for x in AUC_NAMES] + ["auc_mean"])
    and _intervals_ok({k: {f"auc/{x}" if x != "auc_mean" else x: c for x, c in v.items()} for k, v in m["intervals"].items()}, m),
    "table4_ablation": lambda m: all(_nlg_ok(s[v]) and _unit(s[v]["ce_micro_f1"]) for s in (m, m["mimic"]) for v in VARIANTS)
    and all(_claims_ok(m["claims"][d], 4, [k for k in NLG if k != "METEOR"] + ["ce_micro_f1"]) for d in ("iu", "mimic")),
    "table5_k": lambda m: m["n_regions"] == 4 and len(m["k"]) >= 2 and all(_nlg_ok(s) for s in [*m["k"].values(), m["dense"]])
    and _claims_ok(m["claims"], len(m["k"]), [k for k in NLG if k != "METEOR"])
    and set(m["attention_in_mask"]) == {f"k{k}" for k in m["k"]} | {"dense", "uniform"}  # each K's pre-trained model
    and all(_unit(v) for v in m["attention_in_mask"].values()),
    "fig5_reports": lambda m: m["n_examples"] >= 1 and (
        m["mesh_hit_rate"] is None if m["mesh_hit"] + m["mesh_miss"] == 0
        else math.isclose(m["mesh_hit_rate"], m["mesh_hit"] / (m["mesh_hit"] + m["mesh_miss"]))),
    "fig6_attention": lambda m: m["n_studies"] >= 1 and all(_unit(v) for r in m["scores"].values() for v in r.values()),
    "fig7_lengths": lambda m: {"reference", "Baseline", "+CD+MMM+IMM"} <= set(m)
    and all(m[k]["W1 lo"] <= m[k]["distance to reference (W1)"] <= m[k]["W1 hi"] for k in ABLATION)
    and 0 <= m["_claim"]["p"] <= 1 and m["_claim"]["lo"] <= m["_claim"]["delta"] <= m["_claim"]["hi"]
    and m["reference"]["mean words"] > 0  # generated reports are at most the decoding length (tiny: 20 words)
    and all(m[k]["mean words"] <= RUN_SIZES["tiny"]["max_len"] for k in m if not k.startswith("_") and k != "reference"),
    "gradcam": lambda m: m["n_films"] >= 1 and len(m["scores"]) >= 1  # the synthetic films draw the findings' masks
    and all(_unit(v) for r in m.get("scores", {}).values() for v in r.values()),
}
FIGURES = {"pretrain": ["loss_curves.png", "losses.md"],
           "table1_rrg": ["table1_iu.md", "table1_iu.csv", "table1_iu_claims.csv"],
           "table2_mimic": ["table2_mimic.md", "table2_mimic_claims.csv", "ce_per_observation.md"],
           "table3_rd": ["table3_nih_auc.md", "table3_nih_auc_claims.csv", "table3_auc.png"],
           "table4_ablation": ["table4_ablation.md", "table4_ablation_mimic.md", "table4_gains_iu.png", "table4_gains_mimic.png"],
           "table5_k": ["table5_k.md", "table5_k_claims.csv"],
           "fig5_reports": ["fig5_reports.html", "fig5_reports.png"], "fig6_attention": ["fig6_scores.md"],
           "fig7_lengths": ["fig7_lengths.png", "fig7_lengths.md"], "gradcam": ["gradcam.png", "gradcam_scores.md"]}
# Paper columns each table must have, filled (no n/a) in the rows named, or in every row (None).
PAPER_COLUMNS = {
    "table1_rrg": ("table1_iu.csv", {"paper: Clinical-BERT": NLG[:4] + ["ROUGE_L", "CIDEr"] + CE,
                                     "paper: PPKED": NLG[:4] + ["ROUGE_L", "CIDEr"]}),
    "table2_mimic": ("table2_mimic.csv", {"paper: Clinical-BERT": NLG[:6] + CE, "paper: PPKED": NLG[:6],
                                          "paper: CMN": NLG[:6] + CE}),
    "table3_rd": ("table3_nih_auc.csv", {"paper: Clinical-BERT": None, "paper: DME": None}),
    "table4_ablation": ("table4_ablation.csv", {f"paper (IU X-Ray): {k}": None for k in NLG}),
    "table5_k": ("table5_k.csv", {f"paper (MIMIC-CXR): {k}": ["K=1 (25%)", "K=2 (50%)"]  # tiny: 4 regions; no sparsity: n/a
                                  for k in ("BLEU_1", "BLEU_2", "METEOR", "ROUGE_L")}),
}


def test_paper_numbers_cover_every_table():
    p = paper_numbers()
    got = p.groupby(["table", "dataset", "method"]).size().to_dict()
    assert got == PAPER_ROWS, {k: (got.get(k), PAPER_ROWS.get(k)) for k in set(got) | set(PAPER_ROWS)
                               if got.get(k) != PAPER_ROWS.get(k)}
    assert p["value"].notna().all(), p[p["value"].isna()]
    assert p["source"].str.fullmatch(r"paper, (Table [1-5]|text \(Results on Downstream Tasks\))").all(), \
        p[~p["source"].str.startswith("paper, ")]
    assert (p["source"].str.startswith("paper, Table") == (p["source"] == "paper, Table " + p["table"])).all()
    assert not p.duplicated(["table", "dataset", "method", "metric"]).any()
    cells = p.set_index(["table", "dataset", "method", "metric"])["value"]
    for key, v in PAPER_CELLS.items():
        assert math.isclose(cells[key], v), (key, cells[key], v)


def test_decode_len_per_dataset(tmp_path):
    paper = Experiment("x", "paper", runs_dir=tmp_path, figures_dir=tmp_path)
    assert [paper.decode_len(d) for d in ("iu", "covctr", "mimic")] == [60, 80, 100]
    tiny = Experiment("x", "tiny", runs_dir=tmp_path, figures_dir=tmp_path)
    assert [tiny.decode_len(d) for d in ("iu", "covctr", "mimic")] == [RUN_SIZES["tiny"]["max_len"]] * 3
    small = Experiment("x", "small", runs_dir=tmp_path, figures_dir=tmp_path)
    assert [small.decode_len(d) for d in ("iu", "covctr", "mimic")] == [min(n, RUN_SIZES["small"]["max_len"])
                                                                       for n in (60, 80, 100)]


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
    if name in PAPER_COLUMNS:
        fn, cols = PAPER_COLUMNS[name]
        df = pd.read_csv(Path(spec.figures_dir) / name / fn, index_col=0)
        for col, rows in cols.items():
            assert col in df, f"{name}: no column {col!r} in {fn} ({list(df.columns)})"
            filled = df[col] if rows is None else df.loc[rows, col]
            assert filled.notna().all(), f"{name}: {col} is n/a where the paper has a number: {filled.to_dict()}"
    if name == "table1_rrg" and "covctr" in RUN_SIZES["tiny"]["n_samples"]:  # the COVID line beside the paper's
        df = pd.read_csv(Path(spec.figures_dir) / name / "table1_covctr.csv", index_col=0)
        assert math.isclose(df.loc["auc/COVID", "paper: Clinical-BERT"], 0.9472), df.loc["auc/COVID"]
        assert "| auc/COVID |" in (Path(spec.figures_dir) / name / "table1_covctr.md").read_text()
    if name == "table3_rd":  # every row says on how many test positives its AUC rests; none: no AUC
        df = pd.read_csv(Path(spec.figures_dir) / name / "table3_nih_auc.csv", index_col=0)
        pos, n = df["test positives"].drop("auc_mean"), df.loc["auc_mean", "test positives"]
        assert (pos >= 0).all() and (pos <= n).all() and len(pos) == 14, df["test positives"].to_dict()
        assert (df.loc[pos.index, "Clinical-BERT"].isna() == ((pos == 0) | (pos == n))).all(), df.iloc[:, :2]
    if name == "table2_mimic":  # decoded at the data set's length (tiny: capped at its max_len)
        meta = json.loads((Path(spec.runs_dir) / name / "clinical_bert" / "metrics.json").read_text())
        assert meta["max_len"] == min(100, RUN_SIZES["tiny"]["max_len"]), meta["max_len"]


def test_two_seeds_give_mean_and_sd(spec):
    "`reproduce --seeds 0 1` on one notebook: seed 1 trains its own models on seed 0's data; cells read mean ± sd."
    nb = next(nb for nb in NOTEBOOKS if exp_name(nb) == "table2_mimic")
    two = RunSpec(preset="tiny", seed=0, seeds=[0, 1], runs_dir=spec.runs_dir, figures_dir=spec.figures_dir)
    run_notebook(nb, two)
    md = (Path(spec.figures_dir) / "table2_mimic" / "table2_mimic.md").read_text()
    assert "seeds 0, 1: mean ± sd over seeds" in md and " ± " in md.split("| BLEU_4 |")[1].splitlines()[0], md[:800]
    df = pd.read_csv(Path(spec.figures_dir) / "table2_mimic" / "table2_mimic.csv", index_col=0)
    sd = df["Clinical-BERT sd"].drop("METEOR")
    assert sd.notna().all() and (sd >= 0).all() and (df["most common report sd"].fillna(0) == 0).all(), df.filter(like=" sd")
    models = Path(spec.runs_dir) / "models"
    assert [p.name.split("-synthetic")[0] for p in sorted(models.glob("tiny-seed1-data0-*"))] == ["tiny-seed1-data0"]
    assert (Path(spec.runs_dir) / "table2_mimic" / "seed1" / "clinical_bert" / "reports.csv").is_file()
    claims = pd.read_csv(Path(spec.figures_dir) / "table2_mimic" / "table2_mimic_claims.csv")
    assert claims["verdict"].str.contains(r"; .* (?:of 2|both) seeds$").all(), claims["verdict"].tolist()  # each seed's own bootstrap


def test_attention_on_films_without_masks(tmp_path):
    """Real films carry no finding masks: Figure 6 still draws its maps and writes no scores (it crashed before);
    Table 5 keeps its sweep and leaves its attention column empty."""
    from clinical_bert.synthetic import make_dataset
    root = make_dataset(tmp_path / "data" / "mimic", 160, 0, "mimic", size=73)  # the tiny benchmark's size: a val split
    for p in root.rglob("*_masks.npz"):
        p.unlink()
    nb = next(nb for nb in NOTEBOOKS if exp_name(nb) == "fig6_attention")
    spec = RunSpec(preset="tiny", data_dir=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs"),
                   figures_dir=str(tmp_path / "figures"))
    run_notebook(nb, spec)
    metrics = json.loads((tmp_path / "runs" / "fig6_attention" / "metrics.json").read_text())
    assert metrics["n_studies"] >= 1 and metrics["scores"] == {}, metrics
    assert (tmp_path / "figures" / "fig6_attention" / "fig6_attention_0.png").is_file()
    assert not (tmp_path / "figures" / "fig6_attention" / "fig6_scores.md").exists()
    run_notebook(next(nb for nb in NOTEBOOKS if exp_name(nb) == "table5_k"), spec)  # reads fig6's pre-trained models
    metrics = json.loads((tmp_path / "runs" / "table5_k" / "metrics.json").read_text())
    assert set(metrics["attention_in_mask"].values()) == {None} and all(_nlg_ok(s) for s in metrics["k"].values())
    assert "no masks beside these films" in (tmp_path / "figures" / "table5_k" / "table5_k.md").read_text()


def test_fig6_reads_masks_under_a_data_folder(tmp_path):
    "A synthetic layout passed as --data keeps its masks: Figure 6 scores against them."
    from clinical_bert.synthetic import make_dataset
    make_dataset(tmp_path / "data" / "mimic", 160, 0, "mimic", size=73)  # the tiny benchmark's size: a val split
    nb = next(nb for nb in NOTEBOOKS if exp_name(nb) == "fig6_attention")
    spec = RunSpec(preset="tiny", data_dir=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs"),
                   figures_dir=str(tmp_path / "figures"))
    run_notebook(nb, spec)
    metrics = json.loads((tmp_path / "runs" / "fig6_attention" / "metrics.json").read_text())
    assert CHECKS["fig6_attention"](metrics) and metrics["scores"], metrics
