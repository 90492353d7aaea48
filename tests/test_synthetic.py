"""Integration tests of the synthetic benchmark: worker processes, the command line, and the real loaders
(clinical_bert.data) reading each synthetic layout end to end."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinical_bert.synth_reports import CHEXPERT_LABELS
from clinical_bert.synthetic import load_masks, main, make_dataset


def digest(root):
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_workers_write_the_same_bytes(tmp_path):
    one = digest(make_dataset(tmp_path / "w1", 12, seed=3, layout="mimic", size=64, workers=1))
    two = digest(make_dataset(tmp_path / "w2", 12, seed=3, layout="mimic", size=64, workers=2))
    assert one == two and len(one) == 12 * 3 + 6  # jpg + masks + txt per study, 3 CSVs, 2 ground truth files, manifest


def test_seeds_differ(tmp_path):
    a = digest(make_dataset(tmp_path / "a", 4, seed=1, layout="iu", size=64))
    b = digest(make_dataset(tmp_path / "b", 4, seed=2, layout="iu", size=64))
    assert a["annotation.json"] != b["annotation.json"]


def test_command_line(tmp_path, capsys):
    assert main([str(tmp_path / "s"), "--n", "5", "--seed", "4", "--layout", "nih", "--size", "64"]) == 0
    assert "wrote 5 synthetic nih studies" in capsys.readouterr().out
    de = pd.read_csv(tmp_path / "s" / "Data_Entry_2017.csv")
    assert len(de) == 5
    with pytest.raises(SystemExit):
        main([str(tmp_path / "t"), "--layout", "padchest"])


def test_ground_truth_matches_files(tmp_path):
    root = make_dataset(tmp_path / "m", 10, seed=6, layout="mimic", size=64)
    gt = [json.loads(line) for line in (root / "ground_truth.jsonl").read_text().splitlines()]
    ch = pd.read_csv(root / "mimic-cxr-2.0.0-chexpert.csv").set_index("study_id")
    for r in gt:
        for c in CHEXPERT_LABELS:
            want, got = r["labels"][c], ch.loc[r["study_id"], c]
            assert (want is None and np.isnan(got)) or want == got, (r["id"], c, want, got)
        assert sorted(load_masks(root / r["images"][0])) == sorted(r["findings"])


# --- the real loaders on the synthetic layouts (clinical_bert.data needs clinical_bert.text and .mesh)
def _data():
    import clinical_bert.data
    return clinical_bert.data


def test_mimic_loader_reads_synthetic(tmp_path):
    data = _data()
    root = make_dataset(tmp_path / "m", 40, seed=7, layout="mimic", size=64)
    ds = data.MimicCxrDataset(root, "train", tagger=False, size=56)
    gt = pd.read_csv(root / "ground_truth.csv").set_index("id")
    assert len(ds) == (gt.split == "train").sum()
    item = ds[0]
    assert item["image"].shape[-2:] == (56, 56) and item["image"].shape[0] in (1, 3)  # grey, or 3 channels
    want = gt.loc[item["id"], list(ds.label_names)].to_numpy(np.float32)
    np.testing.assert_array_equal(item["labels"].numpy(), want)


def test_iu_and_nih_loaders_read_synthetic(tmp_path):
    data = _data()
    iu = make_dataset(tmp_path / "iu", 30, seed=8, layout="iu", size=64)
    ds = data.AnnotationDataset(iu / "annotation.json", iu / "images", "train", tagger=False, size=56, n_views=2)
    assert ds[0]["image"].shape[0] == 2 and ds[0]["image"].shape[-2:] == (56, 56)
    nih = make_dataset(tmp_path / "nih", 30, seed=8, layout="nih", size=64)
    ds = data.NihChestXrayDataset(nih, "test", tagger=False, size=56)
    gt = pd.read_csv(nih / "ground_truth.csv").set_index("id")
    item = ds[0]
    names = list(ds.label_names)
    want = [float(n in str(gt.loc[item["id"], "nih"]).split("|")) for n in names]
    np.testing.assert_array_equal(item["labels"].numpy(), np.array(want, np.float32))


def test_iu_report_is_the_findings_section(tmp_path):
    root = make_dataset(tmp_path / "iu", 8, seed=2, layout="iu", size=64)
    truth = {r["id"]: r for r in map(json.loads, (root / "ground_truth.jsonl").read_text().splitlines())}
    items = [it for v in json.loads((root / "annotation.json").read_text()).values() for it in v]
    assert len(items) == 8 and all(it["report"] == truth[it["id"]]["findings_text"] for it in items)
    assert all(truth[it["id"]]["impression"] not in it["report"] for it in items)
    both = make_dataset(tmp_path / "both", 8, seed=2, layout="iu", size=64, report_section="findings_impression")
    items = [it for v in json.loads((both / "annotation.json").read_text()).values() for it in v]
    assert all(it["report"] == truth[it["id"]]["findings_text"] + " " + truth[it["id"]]["impression"] for it in items)
    with pytest.raises(ValueError, match="use one of"):
        make_dataset(tmp_path / "x", 2, layout="iu", size=64, report_section="impression")
    assert not (tmp_path / "x").exists()  # refused before writing anything


def test_synth_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    "A user's IU X-Ray copy: synth exits non-zero with one line, with or without --overwrite, and changes nothing."
    out = tmp_path / "iu_xray"
    (out / "images" / "CXR1_IM-1000").mkdir(parents=True)
    (out / "annotation.json").write_text('{"train": []}')
    (out / "images" / "CXR1_IM-1000" / "0.png").write_bytes(b"the user's film")
    before = digest(out)
    assert main([str(out), "--n", "3", "--layout", "iu", "--size", "64"]) != 0
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and err.count("\n") == 1
    assert main([str(out), "--n", "3", "--layout", "iu", "--size", "64", "--overwrite"]) != 0
    err = capsys.readouterr().err
    assert "synth did not write" in err and err.count("\n") == 1
    assert digest(out) == before


def test_overwrite_rewrites_only_its_own_files(tmp_path, capsys):
    out = tmp_path / "m"
    make_dataset(out, 4, seed=1, layout="mimic", size=64)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        make_dataset(out, 2, seed=1, layout="mimic", size=64)
    assert main([str(out), "--n", "2", "--seed", "2", "--layout", "mimic", "--size", "64", "--overwrite"]) == 0
    capsys.readouterr()
    fresh = digest(make_dataset(tmp_path / "fresh", 2, seed=2, layout="mimic", size=64))
    assert digest(out) == {**fresh, "notes.txt": hashlib.md5(b"mine").hexdigest()}  # the seed-1 files are gone


# --- COV-CTR: CT slices, Chinese reports, a COVID label the slices show
def test_covctr_round_trips_through_the_loader(tmp_path):
    from clinical_bert.data import CovCtrDataset
    from clinical_bert.synthetic import COVCTR_REPORTS
    assert main([str(tmp_path / "cov"), "--n", "40", "--seed", "1", "--layout", "covctr", "--size", "64"]) == 0
    root = tmp_path / "cov"
    rep = pd.read_csv(root / COVCTR_REPORTS)
    assert list(rep.columns) == ["image_id", "findings", "impression", "COVID"] and len(rep) == 40
    assert 0 < rep.COVID.sum() < 40
    for r in rep.itertuples():  # the folder says the label, as COVID-CT's do
        assert (root / ("CT_COVID" if r.COVID else "CT_NonCOVID") / r.image_id).is_file()
    gt = pd.read_csv(root / "ground_truth.csv").set_index("id")
    sets = {s: CovCtrDataset(root, root / COVCTR_REPORTS, s, tagger=False, size=56, min_count=1) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in sets.items()} == {s: int((gt.split == s).sum()) for s in sets} == {"train": 28, "val": 4, "test": 8}
    ds = sets["train"]
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape[-2:] == (56, 56)
        assert item["labels"].tolist() == [gt.loc[item["id"], "COVID"]]
        assert ds.vocab.unk_id not in item["input_ids"]
    words = ds.vocab.tokenize(ds.table["report"][0])
    assert "纵隔" in words and all(len(w) <= 8 for w in words)  # Jieba words, not characters or whole sentences
    covid = [ds.table["report"][i] for i in range(len(ds)) if ds[i]["labels"].item() == 1]
    assert covid and all("ggo" in r or "磨" in r for r in covid)  # the report says what the slice shows


def test_covid_slices_differ_only_where_opacities_are_drawn():
    from clinical_bert.synth_covctr import make_ct_study, render_ct
    seen = 0
    for i in range(30):
        st = make_ct_study(2, i, 64)
        img, masks = render_ct(st["case"], st["findings"])
        base, _ = render_ct(st["case"], {})
        d = img.astype(int) - base.astype(int)
        if st["covid"]:
            seen += 1
            assert masks["ggo"].any() and d[masks["ggo"]].mean() > 10, i        # brighter where the GGO is drawn
            drawn = masks["ggo"] | masks.get("consolidation", masks["ggo"])
            assert np.abs(d[~drawn]).mean() < 2, i                              # and nearly nowhere else
        else:
            assert "ggo" not in masks
    assert seen >= 8


# --- IU X-Ray from the real OpenI reports (torchxrayvision's NLMCXR_reports.tgz)
def test_iu_layout_from_real_reports(tmp_path, capsys):
    from clinical_bert.text import iu_protocol_split, read_openi_reports
    assert main([str(tmp_path / "r"), "--n", "8", "--layout", "iu", "--size", "64", "--reports", "real"]) == 0
    root = tmp_path / "r"
    proto = iu_protocol_split(read_openi_reports(), 0).set_index("uid")
    items = [it for v in json.loads((root / "annotation.json").read_text()).values() for it in v]
    assert len(items) == 8
    for it in items:  # the real FINDINGS, the protocol's split, two films
        assert (it["report"], it["split"]) == (proto.loc[it["id"], "findings"], proto.loc[it["id"], "split"])
        assert len(it["image_path"]) == 2
    gt = [json.loads(line) for line in (root / "ground_truth.jsonl").read_text().splitlines()]
    for r in gt:  # each film's masks are the findings its report states
        assert sorted(load_masks(root / r["images"][0])) == sorted(r["findings"])
        assert r["mesh"] == list(proto.loc[r["id"], "mesh_major"])
    ds = _data().AnnotationDataset(root / "annotation.json", root / "images", "train", tagger=False, size=56, n_views=2)
    assert len(ds) == sum(it["split"] == "train" for it in items) and ds[0]["image"].shape[0] == 2
    assert main([str(tmp_path / "n"), "--n", "2", "--layout", "mimic", "--reports", "real"]) == 2
    assert "layout 'iu' or 'nih'" in capsys.readouterr().err


@pytest.mark.parametrize("text,side", [("Small left pleural effusion.", "left"), ("Large right pleural effusion.", "right"),
                                       ("Small right apical pneumothorax.", "right"), ("There is a left pneumothorax.", "left")])
def test_iu_real_report_side_is_drawn_on_that_side(text, side):
    from clinical_bert.synth_render import render
    from clinical_bert.synthetic import make_real_study
    name = "pneumothorax" if "pneumothorax" in text else "pleural_effusion"
    for i in range(3):
        st = make_real_study(0, i, dict(uid=f"CXR{i}", findings=text, impression="", mesh=[], split="test"), 96)
        assert st["findings"][name]["side"] == side
        m = render(st["pt"], st["findings"], st["views"][0])[1][name]
        half = slice(48, 96) if side == "left" else slice(0, 48)   # the patient's left is the image's right
        assert m.any() and m[:, half].sum() > 0.9 * m.sum()


# --- NIH ChestX-ray14 from the real label table (torchxrayvision's Data_Entry_2017_v2020 and BBox_List_2017)
@pytest.fixture(scope="module")
def nih_table():
    from clinical_bert.synthetic import read_nih_table
    return read_nih_table()


def _nih_y(labels_lists):
    from clinical_bert.formats import NIH_LABELS
    return np.array([[lab in ls for lab in NIH_LABELS] for ls in labels_lists])


def test_nih_real_rows_keep_the_tables_label_cooccurrence(nih_table):
    from clinical_bert.synthetic import nih_table_rows
    rows = nih_table_rows(3000, 5, table=nih_table)
    Y, Yt = _nih_y([r["labels"] for r in rows]), _nih_y(nih_table["Finding Labels"].str.split("|"))
    common = Yt.mean(0) > 0.03
    assert np.abs(Y.mean(0) - Yt.mean(0))[common].max() < 0.015      # common labels keep their prevalence
    C, Ct = Y.T.astype(float) @ Y, Yt.T.astype(float) @ Yt
    top = sorted(((Ct[i, j], i, j) for i in range(14) for j in range(i + 1, 14)), reverse=True)[:6]
    for _, i, j in top:  # P(B | A) and P(A | B) of the six most common pairs
        assert abs(C[i, j] / C[i, i] - Ct[i, j] / Ct[i, i]) < 0.06 and abs(C[i, j] / C[j, j] - Ct[i, j] / Ct[j, j]) < 0.06
    te = np.array([r["split"] == "test" for r in rows])
    assert Y[te].sum(0).min() >= 15 and Y[~te].sum(0).min() >= 30   # n // 200 test positives for every label, Hernia too
    assert 0.15 < te.mean() < 0.25


def test_nih_real_layout_splits_by_patient_with_every_label_in_test(tmp_path):
    from clinical_bert.data import NihChestXrayDataset
    from clinical_bert.formats import NIH_LABELS
    root = make_dataset(tmp_path / "nih", 240, seed=1, layout="nih", size=64, reports="real")
    entry = pd.read_csv(root / "Data_Entry_2017.csv")
    test = set((root / "test_list.txt").read_text().split())
    tv = set((root / "train_val_list.txt").read_text().split())
    assert len(test) + len(tv) == 240 and not test & tv
    split_of = entry.groupby("Patient ID")["Image Index"].apply(lambda s: {x in test for x in s})
    assert all(len(v) == 1 for v in split_of)                        # no patient in two splits
    assert entry["Image Index"].str.fullmatch(r"\d{8}_\d{3}\.png").all()  # the real image names
    assert len(NihChestXrayDataset(root, "test")) == len(test)        # the loader reads the layout
    y = _nih_y(entry.set_index("Image Index").loc[sorted(test), "Finding Labels"].str.split("|"))
    assert y.sum(0).min() >= 1, dict(zip(NIH_LABELS, y.sum(0)))      # every Table 3 row has test positives
    gt = [json.loads(line) for line in (root / "ground_truth.jsonl").read_text().splitlines()]
    for r in gt:  # masks are the drawn findings; Fibrosis and Hernia have theirs
        m = load_masks(root / r["images"][0])
        assert sorted(m) == sorted(r["findings"])
        if "fibrosis" in m:
            assert np.nonzero(m["fibrosis"])[0].mean() > 30 and m["fibrosis"].sum() > 30   # at the bases (lungs: rows ~11-47)
        if "hernia" in m:
            ys, xs = np.nonzero(m["hernia"])
            assert len(ys) > 10 and ys.mean() > 28 and 24 < xs.mean() < 44  # retrocardiac, just left of the midline
    assert sum("fibrosis" in r["findings"] for r in gt) >= 3 and sum("hernia" in r["findings"] for r in gt) >= 3


def test_nih_box_finding_is_drawn_inside_its_box(nih_table):
    from clinical_bert.synth_render import render
    from clinical_bert.synthetic import NIH_FINDING, make_nih_real_study
    boxed = nih_table[nih_table["boxes"].map(len) > 0]
    for k, r in enumerate(boxed.iloc[::97].itertuples(index=False)):
        row = dict(image=r[0], labels=[x for x in r[1].split("|") if x != "No Finding"], visit=r[2], patient_id=r[3],
                   age=r[4], sex=r[5], view=r[6], boxes=r[7], split="test")
        st = make_nih_real_study(0, k, row, 128)
        img, masks = render(st["pt"], st["findings"], st["views"][0])
        for lab, (x, y, w, h) in r[7].items():
            if lab == "Cardiomegaly":
                continue  # the box sets the heart's width, not its place
            ys, xs = np.nonzero(masks[NIH_FINDING[lab]])
            s = 128 / 1024
            assert len(ys) > 0 and xs.min() >= x * s - 1 and xs.max() <= (x + w) * s and ys.min() >= y * s - 1 and ys.max() <= (y + h) * s
            assert len(ys) > 0.6 * np.pi / 4 * w * h * s * s                # and fills most of the box's ellipse


@pytest.mark.parametrize("text,label,name,side", [
    ("There is a right basilar airspace opacity.", "Lung Opacity", "lung_opacity", "right"),
    ("Patchy opacity in the left midlung.", "Lung Opacity", "lung_opacity", "left"),
    ("A 1.5 cm nodule in the left upper lobe.", "Lung Lesion", "lung_lesion", "left"),
    ("Right lower lobe mass.", "Lung Lesion", "lung_lesion", "right")])
def test_iu_real_opacity_and_lesion_reports_are_drawn(text, label, name, side):
    "A real report's Lung Opacity / Lung Lesion gets a drawn finding (a non-empty mask) on the side it names."
    from clinical_bert.synth_render import render
    from clinical_bert.synthetic import make_real_study
    st = make_real_study(0, 0, dict(uid="CXR0", findings=text, impression="", mesh=[], split="test"), 96)
    assert st["labels"][label] == 1 and name in st["findings"]
    m = render(st["pt"], st["findings"], st["views"][0])[1][name]
    half = slice(48, 96) if side == "left" else slice(0, 48)   # the patient's left is the image's right
    assert m.any() and m[:, half].sum() > 0.9 * m.sum()
