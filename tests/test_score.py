"""`clinical-bert score` (clinical_bert.score.main): every input form, bad input, output files and intervals."""
import json
import shutil

import pandas as pd
import pytest

from clinical_bert import score

REFS = ["The heart is normal in size. The lungs are clear.", "There is a small left pleural effusion. No pneumothorax.",
        "Mild cardiomegaly. No focal consolidation.", "Right lower lobe pneumonia.", "There is moderate pulmonary edema."] * 6
HYPS = ["The heart is normal in size. The lungs are clear.", "Small left pleural effusion.",
        "Heart size is normal. No focal consolidation.", "", "Mild pulmonary edema and cardiomegaly."] * 6
IDS = [f"s{i}" for i in range(len(REFS))]
FAST = ["--no-meteor", "--resamples", "200"]


def run(args, tmp_path, name="out"):
    prefix = tmp_path / name
    assert score.main([*args, "--out", str(prefix), *FAST]) == 0
    return json.loads(prefix.with_suffix(".json").read_text()), prefix.with_suffix(".md").read_text()


def check_result(res, n):
    assert res["n"] == n
    keys = {"BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "ROUGE_L", "CIDEr", "ce_micro_precision", "ce_micro_recall",
            "ce_micro_f1", "ce_macro_precision", "ce_macro_recall", "ce_macro_f1", "ce_example_precision",
            "ce_example_recall", "ce_example_f1"}
    assert keys <= set(res["scores"]), keys - set(res["scores"])
    for k, v in res["scores"].items():
        assert v["lo"] <= v["value"] <= v["hi"], (k, v)
    assert len(res["per_observation"]) == 14
    assert all(v["f1"]["lo"] <= v["f1"]["value"] <= v["f1"]["hi"] for v in res["per_observation"].values())
    assert res["bootstrap"]["resamples"] == 200


def test_one_csv_with_common_column_names(tmp_path):
    src = tmp_path / "pairs.csv"
    pd.DataFrame({"Study_ID": IDS, "ground_truth": REFS, "prediction": HYPS}).to_csv(src, index=False)
    res, md = run([str(src)], tmp_path)
    check_result(res, 30)
    assert res["empty"] == {"reference": 0, "generated": 6}
    assert "| BLEU_4 |" in md and "6 generated" in md


def test_two_csvs_joined_on_id_in_any_order(tmp_path):
    r, h = tmp_path / "refs.csv", tmp_path / "hyps.csv"
    pd.DataFrame({"id": IDS, "report": REFS}).to_csv(r, index=False)
    pd.DataFrame({"id": IDS[::-1], "hyp": HYPS[::-1]}).to_csv(h, index=False)
    res, _ = run(["--refs", str(r), "--hyps", str(h)], tmp_path)
    one = tmp_path / "pairs.csv"
    pd.DataFrame({"id": IDS, "reference": REFS, "generated": HYPS}).to_csv(one, index=False)
    res1, _ = run([str(one)], tmp_path, "one")
    check_result(res, 30)
    assert res["scores"] == res1["scores"]  # the join restores the pairing


def test_headerless_r2gen_files_are_paired_by_row(tmp_path):
    r, h = tmp_path / "gts.csv", tmp_path / "res.csv"
    pd.DataFrame(REFS).to_csv(r, index=False, header=False)  # as R2GenCMN's tester writes them
    pd.DataFrame(HYPS).to_csv(h, index=False, header=False)
    res, _ = run(["--refs", str(r), "--hyps", str(h)], tmp_path)
    check_result(res, 30)
    assert res["empty"]["generated"] == 6


@pytest.mark.parametrize("form", ["list", "dict"])
def test_json_list_and_dict(tmp_path, form):
    src = tmp_path / "r2gen.json"
    items = [{"id": i, "gts": [r], "res": h} for i, r, h in zip(IDS, REFS, HYPS)]
    if form == "dict": data = {i: {"ground_truth": r, "generated": h} for i, r, h in zip(IDS, REFS, HYPS)}
    else: data = items
    src.write_text(json.dumps(data))
    res, _ = run([str(src)], tmp_path)
    check_result(res, 30)


def test_mismatched_ids_are_named(tmp_path):
    r, h = tmp_path / "refs.csv", tmp_path / "hyps.csv"
    pd.DataFrame({"id": IDS, "reference": REFS}).to_csv(r, index=False)
    pd.DataFrame({"id": IDS[3:] + ["x1", "x2"], "generated": HYPS[3:] + ["a.", "b."]}).to_csv(h, index=False)
    with pytest.raises(SystemExit) as e:
        score.main(["--refs", str(r), "--hyps", str(h), *FAST])
    msg = str(e.value)
    assert "3 only in" in msg and "'s0'" in msg and "2 only in" in msg and "'x1'" in msg and "--intersect" in msg
    res, md = run(["--refs", str(r), "--hyps", str(h), "--intersect"], tmp_path)
    assert res["n"] == 27 and res["unmatched"]["only_in_refs"] == 3 and res["unmatched"]["examples_only_in_hyps"] == ["x1", "x2"]
    assert "Unmatched ids left out: 3" in md


def test_empty_and_missing_text_are_counted_not_fatal(tmp_path):
    src = tmp_path / "pairs.csv"
    refs, hyps = list(REFS), list(HYPS)
    refs[0], hyps[1], hyps[2] = "", None, "   "
    pd.DataFrame({"id": IDS, "reference": refs, "generated": hyps}).to_csv(src, index=False)
    res, md = run([str(src)], tmp_path)
    assert res["empty"] == {"reference": 1, "generated": 8}
    assert res["n"] == 30 and "1 references, 8 generated" in md


def test_refuses_to_overwrite_before_scoring(tmp_path, monkeypatch):
    src = tmp_path / "pairs.csv"
    pd.DataFrame({"reference": REFS, "generated": HYPS}).to_csv(src, index=False)  # no id column: rows numbered
    (tmp_path / "out.md").write_text("keep me")
    monkeypatch.setattr(score, "score_pairs", lambda *a, **k: pytest.fail("scored before checking --out"))
    with pytest.raises(SystemExit, match="out.md already exist.*--overwrite"):
        score.main([str(src), "--out", str(tmp_path / "out"), *FAST])
    assert (tmp_path / "out.md").read_text() == "keep me"
    monkeypatch.undo()
    res, _ = run([str(src), "--overwrite"], tmp_path)
    assert res["n"] == 30 and (tmp_path / "out.md").read_text() != "keep me"


@pytest.mark.parametrize("args,says", [
    (["missing.csv"], "no such file"),
    (["--refs", "a.csv"], "--refs and --hyps go together"),
    ([], "give either PAIRS"),
])
def test_bad_command_lines_fail_in_one_line(tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        score.main(args + FAST)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_bad_columns_and_json_are_named(tmp_path):
    src = tmp_path / "p.csv"
    pd.DataFrame({"a": ["x"], "b": ["y"]}).to_csv(src, index=False)
    with pytest.raises(SystemExit, match="needs a reference column"):
        score.main([str(src), *FAST])
    j = tmp_path / "p.json"
    j.write_text(json.dumps([{"gts": "x"}]))
    with pytest.raises(SystemExit, match="item 0 needs a reference"):
        score.main([str(j), *FAST])


def test_stdout_without_out(tmp_path, capsys):
    src = tmp_path / "pairs.csv"
    pd.DataFrame({"reference": REFS[:5], "generated": HYPS[:5]}).to_csv(src, index=False)
    assert score.main([str(src), "--no-ce", *FAST]) == 0
    out = capsys.readouterr().out
    assert "| CIDEr |" in out and "ce_micro_f1" not in out


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java (pycocoevalcap)")
def test_with_meteor(tmp_path):
    src = tmp_path / "pairs.csv"
    pd.DataFrame({"id": IDS, "reference": REFS, "generated": HYPS}).to_csv(src, index=False)
    prefix = tmp_path / "m"
    assert score.main([str(src), "--out", str(prefix), "--resamples", "200", "--no-ce"]) == 0
    res = json.loads(prefix.with_suffix(".json").read_text())
    assert 0 < res["scores"]["METEOR"]["value"] < 1 and res["scores"]["METEOR"]["lo"] is None  # no interval, with a note
    seg = res["scores"]["METEOR_segments"]
    assert seg["lo"] <= seg["value"] <= seg["hi"]
    assert any(n.startswith("METEOR:") for n in res["notes"])
