"""The synthetic benchmark's default layouts: IU X-Ray from the real OpenI reports, NIH ChestX-ray14 from
the real label table (both inside torchxrayvision); MIMIC-CXR and COV-CTR templated.

- The training commands without `--data` pre-train on the templated MIMIC-CXR layout and fine-tune RRG on
  the real IU X-Ray text; the fine-tuned model moves onto IU X-Ray's own words (the paper's per-data-set
  vocabulary), which carry the OpenI de-identification mark `xxxx` that no template writes.
- The templated layouts come back with `reports="template"`, in another folder and under another recipe key.
"""
import json

from cli_run import run  # the command as a user runs it


def test_pretrain_on_templated_mimic_then_rrg_on_real_iu_text(tmp_path):
    from clinical_bert.model_dir import load_model
    from clinical_bert.splits import load_splits
    from clinical_bert.synthetic import MANIFEST, SYNTH_VERSION, openi_studies
    one = ["--preset", "tiny", "--epochs", "1", "--no-progress"]
    run(["pretrain", "--out", "pre"] + one, tmp_path)  # no --data: the synthetic benchmark under runs/data
    run(["finetune-rrg", "--init", "pre/best", "--out", "rrg"] + one, tmp_path)
    data = tmp_path / "runs" / "data"
    mimic, iu = data / f"tiny-seed0-v{SYNTH_VERSION}" / "mimic", data / f"tiny-seed0-v{SYNTH_VERSION}-real" / "iu"
    kinds = [json.loads((p / MANIFEST).read_text()).get("reports", "template") for p in (mimic, iu)]
    assert kinds == ["template", "real"]
    reports = {r["id"]: r["report"] for rows in json.loads((iu / "annotation.json").read_text()).values() for r in rows}
    assert reports == {s["uid"]: s["findings"] for s in openi_studies(len(reports))}  # the real FINDINGS sections
    pre, rrg = load_model(tmp_path / "pre" / "best")[1], load_model(tmp_path / "rrg" / "best")[1]
    iu_words = load_splits(None, "iu", "tiny", synth_root=data)["train"].vocab.itos  # the folder the command wrote
    assert rrg.itos == iu_words != pre.itos
    assert "xxxx" in iu_words and "xxxx" not in pre.itos  # OpenI's de-identification mark: real text only
    assert len([w for w in pre.itos if w in set(rrg.itos)]) > 5  # specials and shared words carry their rows across


def test_templated_layouts_come_back_in_their_own_folder_and_key(tmp_path):
    from clinical_bert.recipe import recipe_key
    from clinical_bert.splits import synthetic_benchmark
    from clinical_bert.synthetic import MANIFEST
    real = synthetic_benchmark(tmp_path, "tiny", layouts=("iu", "nih"))  # the tiny preset's 60 and 100 studies
    tpl = synthetic_benchmark(tmp_path, "tiny", layouts=("iu", "nih"), reports="template")
    for layout in ("iu", "nih"):
        assert real[layout] != tpl[layout] and real[layout].parent.name == tpl[layout].parent.name + "-real"
        assert json.loads((real[layout] / MANIFEST).read_text())["reports"] == "real"
        assert "reports" not in json.loads((tpl[layout] / MANIFEST).read_text())
    assert recipe_key("tiny") != recipe_key("tiny", "template")  # models of the two never share runs/models/


def test_commands_take_the_templated_benchmark_on_request(tmp_path):
    "`--synth-reports template` on finetune-rd and evaluate: the templated NIH layout is written and read."
    from clinical_bert.synthetic import SYNTH_VERSION
    one = ["--preset", "tiny", "--epochs", "1", "--no-progress", "--synth-reports", "template"]
    run(["finetune-rd", "--out", "rd"] + one, tmp_path)
    data = tmp_path / "runs" / "data"
    assert (data / f"tiny-seed0-v{SYNTH_VERSION}" / "nih" / "ground_truth.csv").is_file()
    assert not (data / f"tiny-seed0-v{SYNTH_VERSION}-real").exists()
    run(["evaluate", "--model", "rd/best", "--task", "rd", "--out", "ev", "--synth-reports", "template"], tmp_path)
    assert not (data / f"tiny-seed0-v{SYNTH_VERSION}-real").exists()  # evaluated on the same templated films
    assert (tmp_path / "ev" / "metrics.json").is_file()
