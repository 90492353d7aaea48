"""Integration checks of clinical_bert.labeler: the original's examples, the command line, robustness."""
import math
from pathlib import Path

import pandas as pd
import pytest

from clinical_bert import label_eval, labeler
from clinical_bert.label_eval import ORIGINAL_COLUMNS
from clinical_bert.labeler import CHEXPERT_LABELS, label_report, label_reports

EXAMPLES = Path(str(labeler.assets_dir() / "examples"))


def test_assets_shipped_with_licence():
    root = Path(str(labeler.assets_dir()))
    assert "MIT License" in (root / "LICENSE-NOTICE.txt").read_text()
    assert len(list((root / "phrases" / "mention").glob("*.txt"))) == 14
    assert {p.name for p in (root / "patterns").glob("*.txt")} == {
        "negation.txt", "pre_negation_uncertainty.txt", "post_negation_uncertainty.txt"}


def test_original_examples_exactly():
    reports = pd.read_csv(EXAMPLES / "sample_reports.csv", header=None)[0].tolist()
    expected = pd.read_csv(EXAMPLES / "labeled_reports.csv")
    got = label_reports(reports)
    assert list(got.columns) == CHEXPERT_LABELS
    pd.testing.assert_frame_equal(got, expected[CHEXPERT_LABELS])


def test_command_line_writes_the_originals_file(tmp_path):
    out = tmp_path / "labeled.csv"
    from clinical_bert.cli import main as cli_main  # the `clinical-bert label` subcommand

    assert cli_main(["label", "--reports_path", str(EXAMPLES / "sample_reports.csv"), "--output_path", str(out)]) == 0
    assert out.read_text() == (EXAMPLES / "labeled_reports.csv").read_text()
    assert list(pd.read_csv(out).columns) == ORIGINAL_COLUMNS


def test_command_line_with_blank_rows(tmp_path):
    src = tmp_path / "r.csv"
    src.write_text('"No pneumothorax."\n""\n"Derrame pleural."\n')
    out = tmp_path / "o.csv"
    assert label_eval.main(["--reports_path", str(src), "--output_path", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 3 and df.loc[0, "Pneumothorax"] == 0 and df.loc[0, "No Finding"] == 1
    assert df.loc[1:, CHEXPERT_LABELS].isna().all().all()


@pytest.mark.parametrize("text", [None, float("nan"), "", " \n ", "心影不大，双肺纹理清晰。", "Kein Erguss, kein Pneumothorax."])
def test_non_reports_give_blank_rows(text):
    assert all(math.isnan(v) for v in label_report(text).values())


def test_bad_types_name_the_row():
    with pytest.raises(TypeError, match="report 2"):
        label_reports(["No effusion.", None, {"text": "x"}])


def test_long_and_adversarial_reports_do_not_crash():
    texts = ["no " * 20000, "," * 50000, "effusion " * 5000 + "not excluded", ". . . ;;; /// ....", "x/y/z and/or w" * 1000]
    df = label_reports(texts)
    assert df.shape == (5, 14)
    assert df.loc[2, "Pleural Effusion"] in (1.0, -1.0)


def test_deterministic_and_order_free():
    texts = ["Stable cardiomegaly.", "No effusion. Possible pneumonia.", "Normal chest."] * 3
    a, b = label_reports(texts), label_reports(texts[::-1])
    pd.testing.assert_frame_equal(a, b.iloc[::-1].reset_index(drop=True))


def test_common_report_language():
    cases = {  # sentence -> expected values of some observations (general radiology phrasing)
        "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.":
            {"Cardiomegaly": 0.0, "Enlarged Cardiomediastinum": 0.0, "No Finding": 1.0},
        "No focal consolidation, pleural effusion, or pneumothorax.":
            {"Consolidation": 0.0, "Pleural Effusion": 0.0, "Pneumothorax": 0.0},
        "Mild cardiomegaly. Small right pleural effusion with adjacent atelectasis.":
            {"Cardiomegaly": 1.0, "Pleural Effusion": 1.0, "Atelectasis": 1.0, "No Finding": math.nan},
        "Right lower lobe opacity concerning for pneumonia.": {"Lung Opacity": 1.0, "Pneumonia": -1.0},
        "Left subclavian central venous catheter tip in the SVC. No pneumothorax.":
            {"Support Devices": 1.0, "Pneumothorax": 0.0, "No Finding": 1.0},
        "Old healed left rib fractures.": {"Fracture": 1.0},
        "8 mm nodule in the right upper lobe.": {"Lung Lesion": 1.0},
        "Findings consistent with congestive heart failure.": {"Edema": 1.0, "Cardiomegaly": -1.0},
    }
    for text, want in cases.items():
        got = label_report(text)
        for obs, v in want.items():
            assert (math.isnan(v) and math.isnan(got[obs])) or got[obs] == v, (text, obs, got[obs], v)


def test_bare_string_is_refused():
    with pytest.raises(TypeError, match=r"pass a list of report texts, e.g. label_reports\(\[text\]\)"):
        label_reports("No pleural effusion.")


def test_one_very_long_sentence_gets_the_right_labels():
    # 20,000 words in one sentence: every trigger and mention of it is looked at only within its window
    unit = "there is no pleural effusion or pneumothorax and there is mild cardiomegaly with basilar atelectasis"
    words = unit.split()
    text = " ".join(words[i % len(words)] for i in range(20000)) + "."
    got = label_report(text)
    assert (got["Pleural Effusion"], got["Pneumothorax"], got["Cardiomegaly"], got["Atelectasis"]) == (0.0, 0.0, 1.0, 1.0)
    assert got == label_report(" ".join([unit] * 3) + ".")  # the same labels as three copies


@pytest.mark.parametrize("name,data,says", [
    ("film.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "is a binary file"),
    ("notes.csv", "Épanchement pleural droit.\n".encode("latin-1"), "is not UTF-8 text"),
])
def test_command_line_on_a_binary_or_non_utf8_file_names_it(tmp_path, capsys, name, data, says):
    src = tmp_path / name
    src.write_bytes(data)
    with pytest.raises(SystemExit) as e:
        label_eval.main(["--reports_path", str(src), "--output_path", str(tmp_path / "o.csv")])
    msg = str(e.value)
    assert f"{src} {says}" in msg and "UTF-8" in msg and "\n" not in msg
    assert not (tmp_path / "o.csv").exists()
