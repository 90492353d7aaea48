"""Bad input for the real-data loaders (clinical_bert.data, reading through .images and .formats), on tiny trees in each official layout.

Structural faults (unknown label value, missing column, duplicate id, missing split) must stop
with a DataError naming file, row and field; per-sample faults (missing / corrupt image, empty
report) must skip the sample, count it in `.skipped` and report it in `.summary()` and a warning.
"""
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clinical_bert.data import AnnotationDataset, MimicCxrDataset, NihChestXrayDataset, skip_none_collate
from clinical_bert.formats import DataError
from clinical_bert.images import ImageCache, ImageDecodeError, load_image
from clinical_bert.labeler import CHEXPERT_LABELS

SMALL = dict(size=32, min_count=1, tagger=False)  # tiny images, every word in the vocabulary


def png(path, seed=0, shape=(40, 48), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)).save(path, format=fmt)
    return path


def mimic_tree(root, n=4, split="train"):
    """n studies of n subjects, one PA image each, report and CheXpert row; returns the study dirs."""
    rows, chex, dirs = [], [], []
    for k in range(n):
        subj, study = f"1{k:07d}", f"5{k:07d}"
        d = root / "files" / f"p{subj[:2]}" / f"p{subj}"
        (d / f"s{study}").mkdir(parents=True, exist_ok=True)
        (d / f"s{study}.txt").write_text(f"FINDINGS: Heart size is normal.\n\nIMPRESSION: No effusion {k}.")
        png(d / f"s{study}" / f"d{k}.jpg", k, fmt="JPEG")
        rows.append({"dicom_id": f"d{k}", "study_id": study, "subject_id": subj, "split": split, "ViewPosition": "PA"})
        chex.append({"subject_id": subj, "study_id": study, **{c: "" for c in CHEXPERT_LABELS}, "Edema": "1.0"})
        dirs.append(d / f"s{study}")
    t = pd.DataFrame(rows)
    t[["dicom_id", "study_id", "subject_id", "split"]].to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)
    t[["dicom_id", "study_id", "subject_id", "ViewPosition"]].to_csv(root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    pd.DataFrame(chex).to_csv(root / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    return dirs


def annotation(root, reports=("Heart normal.", "Lungs clear.", "No effusion."), splits=("train", "val", "test")):
    ann = {s: [] for s in splits}
    for k, rep in enumerate(reports):
        paths = [f"s{k}/0.png", f"s{k}/1.png"]
        for v, p in enumerate(paths):
            png(root / "images" / p, 2 * k + v)
        ann[splits[0]].append({"id": f"s{k}", "report": rep, "image_path": paths, "split": splits[0]})
    (root / "annotation.json").write_text(json.dumps(ann))
    return ann


# ---- per-sample faults: skipped, counted, reported -------------------------------------------

def test_missing_image_is_skipped_and_reported(tmp_path, caplog):
    dirs = mimic_tree(tmp_path)
    (dirs[1] / "d1.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="clinical_bert.data"):
        ds = MimicCxrDataset(tmp_path, "train", **SMALL)
    assert len(ds) == 3 and ds.skipped == {"missing image": 1}
    assert ds.skipped_ids == {"missing image": ["d1"]}
    assert "3 samples of 4" in ds.summary() and "missing image: 1" in ds.summary()
    assert any("missing image: 1" in r.getMessage() for r in caplog.records)


def test_image_deleted_after_construction_is_skipped_at_read(tmp_path):
    dirs = mimic_tree(tmp_path)
    ds = MimicCxrDataset(tmp_path, "train", **SMALL)
    (dirs[0] / "d0.jpg").unlink()
    assert ds[0] is None and ds.skipped == {"missing image": 1}


@pytest.mark.parametrize("fault", ["truncated jpeg", "garbage png", "empty file"])
def test_corrupt_image_skipped_at_read_and_by_loader(tmp_path, fault, caplog):
    dirs = mimic_tree(tmp_path, n=5)
    bad = dirs[2] / "d2.jpg"
    if fault == "truncated jpeg":
        bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    elif fault == "garbage png":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    else:
        bad.write_bytes(b"")
    with pytest.raises(ImageDecodeError) as e:
        load_image(bad)
    assert e.value.reason == "corrupt image" and str(bad) in str(e.value)
    ds = MimicCxrDataset(tmp_path, "train", **SMALL)
    assert len(ds) == 5  # decoding is not checked at construction by default
    with caplog.at_level(logging.WARNING, logger="clinical_bert.data"):
        batches = list(torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=skip_none_collate))
    assert len(batches) == 1 and batches[0]["images"].shape == (4, 1, 32, 32)
    assert batches[0]["n_skipped"] == 1 and "d2" not in batches[0]["ids"]
    assert ds.skipped == {"corrupt image": 1} and ds.skipped_ids == {"corrupt image": ["d2"]}
    assert any(str(bad) in r.getMessage() for r in caplog.records)
    ds[2]  # a second epoch does not count it twice
    assert ds.skipped == {"corrupt image": 1} and "1 more when read (corrupt image: 1)" in ds.summary()


def test_corrupt_image_found_at_construction_with_cache_or_verify(tmp_path):
    dirs = mimic_tree(tmp_path, n=4)
    (dirs[3] / "d3.jpg").write_bytes(b"not a jpeg")
    for kw in ({"verify_images": True}, {"cache_dir": tmp_path / "cache"}):
        ds = MimicCxrDataset(tmp_path, "train", **SMALL, **kw)
        assert len(ds) == 3 and ds.skipped == {"corrupt image": 1}
        assert all(ds[i] is not None for i in range(3))
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3


def test_cached_items_equal_uncached(tmp_path):
    mimic_tree(tmp_path, n=3)
    plain = MimicCxrDataset(tmp_path, "train", **SMALL, train=False)
    cached = MimicCxrDataset(tmp_path, "train", **SMALL, train=False, cache_dir=tmp_path / "cache")
    for i in range(3):
        assert torch.equal(plain[i]["image"], cached[i]["image"])
    assert isinstance(ImageCache(tmp_path / "cache", 32).get(plain.table["images"][0][0]), np.memmap)


def test_dataloader_workers_report_skips_in_the_batch(tmp_path):
    dirs = mimic_tree(tmp_path, n=6)
    (dirs[4] / "d4.jpg").write_bytes(b"broken")
    ds = MimicCxrDataset(tmp_path, "train", **SMALL)
    dl = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=skip_none_collate)
    batches = list(dl)
    assert sum(b["n_skipped"] for b in batches) == 1  # the workers' counters stay in the workers
    assert sorted(i for b in batches for i in b["ids"]) == ["d0", "d1", "d2", "d3", "d5"]


def test_all_items_skipped_gives_none_batch():
    assert skip_none_collate([None, None]) is None


def test_empty_report_is_skipped(tmp_path):
    dirs = mimic_tree(tmp_path)
    (dirs[0].parent / f"{dirs[0].name}.txt").write_text("   \n")
    (dirs[1].parent / f"{dirs[1].name}.txt").unlink()
    ds = MimicCxrDataset(tmp_path, "train", **SMALL)
    assert len(ds) == 2 and ds.skipped == {"empty report": 1, "missing report": 1}
    annotation(tmp_path / "iu", reports=("Heart normal.", "", "No effusion."))
    ds = AnnotationDataset(tmp_path / "iu" / "annotation.json", tmp_path / "iu" / "images", **SMALL)
    assert len(ds) == 2 and ds.skipped == {"empty report": 1} and ds.skipped_ids["empty report"] == ["s1"]


def test_study_without_chexpert_row_is_skipped_not_relabelled(tmp_path):
    mimic_tree(tmp_path)
    chex = pd.read_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", dtype=str)
    chex.iloc[1:].to_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    ds = MimicCxrDataset(tmp_path, "train", **SMALL)
    assert len(ds) == 3 and ds.skipped == {"no CheXpert row": 1}
    lab = ds[0]["labels"]
    assert lab[CHEXPERT_LABELS.index("Edema")] == 1 and int(lab.isnan().sum()) == 13


# ---- structural faults: a DataError naming file, row and field -------------------------------

@pytest.mark.parametrize("value", ["2.0", "yes", "1.5", "positive"])
def test_unknown_label_value(tmp_path, value):
    mimic_tree(tmp_path)
    p = tmp_path / "mimic-cxr-2.0.0-chexpert.csv"
    chex = pd.read_csv(p, dtype=str, keep_default_na=False)
    chex.loc[2, "Pleural Effusion"] = value
    chex.to_csv(p, index=False)
    with pytest.raises(DataError) as e:
        MimicCxrDataset(tmp_path, "train", **SMALL)
    msg = str(e.value)
    assert str(p) in msg and "line 4" in msg and "'Pleural Effusion'" in msg and repr(value) in msg
    assert "study_id=50000002" in msg and "correct the file" in msg


def test_real_chexpert_values_are_all_understood():
    import importlib.resources
    from clinical_bert.formats import parse_labels, read_table

    p = importlib.resources.files("torchxrayvision") / "data" / "chexpert_train.csv.gz"
    y = parse_labels(read_table(p, CHEXPERT_LABELS), CHEXPERT_LABELS, p)
    assert set(np.unique(y[~np.isnan(y)])) == {-1.0, 0.0, 1.0}


@pytest.mark.parametrize("name,column", [("mimic-cxr-2.0.0-split.csv", "split"),
                                         ("mimic-cxr-2.0.0-chexpert.csv", "Edema"),
                                         ("mimic-cxr-2.0.0-metadata.csv", "ViewPosition")])
def test_csv_missing_column(tmp_path, name, column):
    mimic_tree(tmp_path)
    p = tmp_path / name
    pd.read_csv(p, dtype=str).drop(columns=[column]).to_csv(p, index=False)
    with pytest.raises(DataError) as e:
        MimicCxrDataset(tmp_path, "train", **SMALL)
    assert str(p) in str(e.value) and f"missing column(s) ['{column}']" in str(e.value)


def test_missing_csv_file_names_it(tmp_path):
    mimic_tree(tmp_path)
    (tmp_path / "mimic-cxr-2.0.0-metadata.csv").unlink()
    with pytest.raises(DataError, match="mimic-cxr-2.0.0-metadata.csv"):
        MimicCxrDataset(tmp_path, "train", **SMALL)
    assert len(MimicCxrDataset(tmp_path, "train", views=None, **SMALL)) == 4  # no view filter, no metadata needed


def test_duplicate_ids(tmp_path):
    mimic_tree(tmp_path)
    p = tmp_path / "mimic-cxr-2.0.0-split.csv"
    t = pd.read_csv(p, dtype=str)
    pd.concat([t, t.iloc[[1]]]).to_csv(p, index=False)
    with pytest.raises(DataError) as e:
        MimicCxrDataset(tmp_path, "train", **SMALL)
    assert str(p) in str(e.value) and "duplicate id {'dicom_id': 'd1'} on lines [3, 6]" in str(e.value)
    ann = annotation(tmp_path / "iu")
    ann["test"].append(dict(ann["train"][0]))
    (tmp_path / "iu" / "annotation.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match=r"duplicate id 's0' at \['train\[0\]', 'test\[0\]'\]"):
        AnnotationDataset(tmp_path / "iu" / "annotation.json", tmp_path / "iu" / "images", "test", **SMALL)


def test_annotation_missing_split(tmp_path):
    annotation(tmp_path, splits=("train", "test"))
    with pytest.raises(DataError) as e:
        AnnotationDataset(tmp_path / "annotation.json", tmp_path / "images", "val", **SMALL)
    assert str(tmp_path / "annotation.json") in str(e.value) and "no 'val' split" in str(e.value)
    assert "found keys ['train', 'test']" in str(e.value)
    annotation(tmp_path, splits=("test", "val"))
    with pytest.raises(DataError, match="no 'train' split .*vocabulary"):
        AnnotationDataset(tmp_path / "annotation.json", tmp_path / "images", "test", **SMALL)


def test_annotation_item_missing_field_and_bad_json(tmp_path):
    ann = annotation(tmp_path)
    del ann["train"][1]["image_path"]
    (tmp_path / "annotation.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match=r"train\[1\] has no field 'image_path'"):
        AnnotationDataset(tmp_path / "annotation.json", tmp_path / "images", **SMALL)
    (tmp_path / "annotation.json").write_text(json.dumps(ann)[:-20])
    with pytest.raises(DataError, match="not valid JSON"):
        AnnotationDataset(tmp_path / "annotation.json", tmp_path / "images", **SMALL)


def nih_tree(root, labels=("No Finding", "Mass", "Edema|Hernia", "Nodule")):
    names = [f"0000000{k}_000.png" for k in range(len(labels))]
    pd.DataFrame({"Image Index": names, "Finding Labels": list(labels), "Patient ID": [str(k) for k in range(len(labels))]}
                 ).to_csv(root / "Data_Entry_2017.csv", index=False)
    (root / "train_val_list.txt").write_text("\n".join(names[:-1]))
    (root / "test_list.txt").write_text(names[-1])
    for k, n in enumerate(names):
        png(root / "images" / n, k)


def test_nih_structural_faults(tmp_path):
    nih_tree(tmp_path, labels=("No Finding", "Mass", "Edema|Herina", "Nodule"))
    with pytest.raises(DataError, match="line 4, column 'Finding Labels': unknown finding 'Herina'"):
        NihChestXrayDataset(tmp_path, "test")
    nih_tree(tmp_path)
    (tmp_path / "test_list.txt").write_text("00000009_000.png")
    with pytest.raises(DataError, match=r"test_list.txt: line 1: image '00000009_000.png' is not in Data_Entry"):
        NihChestXrayDataset(tmp_path, "test")
    nih_tree(tmp_path)
    pd.read_csv(tmp_path / "Data_Entry_2017.csv").drop(columns=["Patient ID"]).to_csv(tmp_path / "Data_Entry_2017.csv", index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['Patient ID'\]"):
        NihChestXrayDataset(tmp_path, "test")


def test_nih_missing_image_skipped(tmp_path):
    nih_tree(tmp_path)
    (tmp_path / "images" / "00000001_000.png").unlink()
    ds = NihChestXrayDataset(tmp_path, "train", val_frac=0.0, size=32)
    assert len(ds) == 2 and ds.skipped == {"missing image": 1}


# ---- the synthetic benchmark's trees read back (clinical_bert.synthetic writes them) ---------

@pytest.mark.parametrize("layout", ["mimic", "iu", "nih"])
def test_synthetic_layouts_read_back(tmp_path, layout):
    from clinical_bert import synthetic
    from clinical_bert.formats import NIH_LABELS

    synthetic.make_dataset(tmp_path, n=40, seed=0, layout=layout, size=64)
    if layout == "mimic":
        sets = [MimicCxrDataset(tmp_path, s, **SMALL) for s in ("train", "val", "test")]
    elif layout == "iu":
        sets = [AnnotationDataset(tmp_path / "annotation.json", tmp_path / "images", s, n_views=2, **SMALL)
                for s in ("train", "val", "test")]
    else:
        sets = [NihChestXrayDataset(tmp_path, s, size=32) for s in ("train", "val", "test")]
    assert sum(len(d) for d in sets) == 40 and all(not d.skipped for d in sets), [d.summary() for d in sets]
    truth = pd.read_csv(tmp_path / "ground_truth.csv", dtype=str, keep_default_na=False).set_index("id")
    for d in sets:
        for i in range(len(d)):
            item = d[i]
            assert item["image"].shape[-3:] == (1, 32, 32) and item["image"].dtype == torch.uint8
            gt = truth.loc[item["id"]]
            if layout == "mimic":  # the labels read back are the generator's, blanks as NaN
                want = [float(gt[c]) if gt[c] else float("nan") for c in CHEXPERT_LABELS]
                np.testing.assert_array_equal(item["labels"].numpy(), np.array(want, np.float32))
            if layout == "nih":
                want = [float(n in gt["nih"].split("|")) for n in NIH_LABELS]
                np.testing.assert_array_equal(item["labels"].numpy(), np.array(want, np.float32))
            else:
                assert item["report"] and len(item["input_ids"]) == len(item["tags"]) > 0


def test_labels_from_reports(tmp_path):
    annotation(tmp_path, reports=("Heart size is normal. No pleural effusion.", "There is a small left pleural effusion.",
                                  "The lungs are clear."))
    ds = AnnotationDataset(tmp_path / "annotation.json", tmp_path / "images", labels_from_reports=True, **SMALL)
    assert ds.label_names == list(CHEXPERT_LABELS) and ds[0]["labels"].shape == (14,)
    effusion = CHEXPERT_LABELS.index("Pleural Effusion")
    assert ds[1]["labels"][effusion] == 1 and ds[0]["labels"][effusion] == 0


# ---- the report text, the vocabulary count, and more bad input ----------------------------------

def test_mimic_report_is_findings_and_studies_without_are_counted(tmp_path):
    from clinical_bert.text import clean_report

    dirs = mimic_tree(tmp_path)
    (dirs[1].parent / f"{dirs[1].name}.txt").write_text("INDICATION: Cough.\n\nIMPRESSION: Normal chest.")
    ds = MimicCxrDataset(tmp_path, "train", **SMALL)
    assert len(ds) == 3 and ds.skipped == {"no findings section": 1} and ds.skipped_ids == {"no findings section": ["d1"]}
    assert "no findings section: 1" in ds.summary() and ds.report_section == "findings"
    assert ds[0]["report"] == clean_report("Heart size is normal.", style="mimic")  # no impression
    both = MimicCxrDataset(tmp_path, "train", report_section="findings_impression", **SMALL)
    assert len(both) == 4 and not both.skipped
    assert both[0]["report"] == clean_report("Heart size is normal. No effusion 0.", style="mimic")
    assert both[1]["report"] == clean_report("Normal chest.", style="mimic")
    with pytest.raises(ValueError, match="report_section='impression': use one of"):
        MimicCxrDataset(tmp_path, "train", report_section="impression", **SMALL)


def test_vocabulary_counts_each_report_once(tmp_path):
    "A study with three images: a word that only its report holds, twice, stays below min_count 3."
    dirs = mimic_tree(tmp_path, n=2)
    (dirs[0].parent / f"{dirs[0].name}.txt").write_text("FINDINGS: Small nodule. Small scar.")
    for name in ("mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-metadata.csv"):
        t = pd.read_csv(tmp_path / name, dtype=str)
        extra = pd.DataFrame([{**t.iloc[0].to_dict(), "dicom_id": f"d0{v}"} for v in "xy"])
        pd.concat([t, extra]).to_csv(tmp_path / name, index=False)
    for v in "xy":
        png(dirs[0] / f"d0{v}.jpg", fmt="JPEG")
    ds = MimicCxrDataset(tmp_path, "train", size=32, min_count=3, tagger=False)
    assert len(ds) == 4 and (ds.table["study"] == ds.table["study"][0]).sum() == 3  # three images, one study
    assert "small" not in ds.vocab.stoi  # 2 counts, not 3 x 2
    assert "small" in MimicCxrDataset(tmp_path, "train", size=32, min_count=2, tagger=False).vocab.stoi
    # R2Gen's MIMIC-CXR annotation.json has one item per image: items are grouped by their study_id
    items = [{"id": f"i{k}", "study_id": 5, "subject_id": 1, "report": "Small nodule. Small scar.",
              "image_path": [f"s0/{k}.png"], "split": "train"} for k in range(3)]
    for k in range(3):
        png(tmp_path / "ann" / "images" / "s0" / f"{k}.png", k)
    (tmp_path / "ann" / "annotation.json").write_text(json.dumps({"train": items, "val": [], "test": []}))
    ann = AnnotationDataset(tmp_path / "ann" / "annotation.json", tmp_path / "ann" / "images", style="mimic",
                            size=32, min_count=3, tagger=False)
    assert len(ann) == 3 and ann.n_views == 1 and "small" not in ann.vocab.stoi


def test_dcm_that_is_not_dicom_is_a_skipped_corrupt_image(tmp_path, caplog):
    "Empty, text and renamed-PNG .dcm files: each item is None, counted once as a corrupt image."
    dirs = mimic_tree(tmp_path, n=3)
    (dirs[0] / "d0.dcm").write_bytes(b"")
    (dirs[1] / "d1.dcm").write_text("this is not an image\n")
    (dirs[2] / "d2.dcm").write_bytes(png(tmp_path / "p.png").read_bytes())
    ds = MimicCxrDataset(tmp_path, "train", image_ext=".dcm", **SMALL)
    assert len(ds) == 3
    with caplog.at_level(logging.WARNING, logger="clinical_bert.data"):
        assert [ds[i] for i in range(3)] == [None, None, None]
    assert ds.skipped == {"corrupt image": 3} and ds.skipped_ids == {"corrupt image": ["d0", "d1", "d2"]}
    assert "3 more when read (corrupt image: 3)" in ds.summary()
    assert any("d1.dcm: corrupt image" in r.getMessage() for r in caplog.records)
    assert skip_none_collate([ds[0], ds[1]]) is None
    with pytest.raises(ImageDecodeError, match="d2.dcm: corrupt image"):
        load_image(dirs[2] / "d2.dcm")


def test_mimic_split_value_unknown(tmp_path):
    mimic_tree(tmp_path)
    p = tmp_path / "mimic-cxr-2.0.0-split.csv"
    t = pd.read_csv(p, dtype=str)
    t.loc[2, "split"] = "TRAINING"
    t.to_csv(p, index=False)
    with pytest.raises(DataError) as e:
        MimicCxrDataset(tmp_path, "train", **SMALL)
    msg = str(e.value)
    assert msg.startswith(str(p)) and "line 4, column 'split': unknown split 'TRAINING'" in msg
    assert "'train', 'validate' and 'test'" in msg and "correct the file" in msg
    t.loc[2, "split"] = "Train"  # the allowed values in another case are read
    t.to_csv(p, index=False)
    assert len(MimicCxrDataset(tmp_path, "train", **SMALL)) == 4


@pytest.mark.parametrize("field,value", [("image_path", 3), ("image_path", None), ("image_path", ["s1/0.png", 2]),
                                         ("report", 7), ("report", ["Heart normal."]), ("id", None)])
def test_annotation_item_of_wrong_type_names_it(tmp_path, field, value):
    ann = annotation(tmp_path)
    ann["train"][1][field] = value
    (tmp_path / "annotation.json").write_text(json.dumps(ann))
    with pytest.raises(DataError) as e:
        AnnotationDataset(tmp_path / "annotation.json", tmp_path / "images", **SMALL)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'annotation.json'}: train[1] (id ") and f"field '{field}'" in msg
    assert repr(value) in msg and "correct the item" in msg and "\n" not in msg


def test_annotation_null_report_is_an_empty_report(tmp_path):
    ann = annotation(tmp_path)
    ann["train"][1]["report"] = None
    (tmp_path / "annotation.json").write_text(json.dumps(ann))
    ds = AnnotationDataset(tmp_path / "annotation.json", tmp_path / "images", **SMALL)
    assert len(ds) == 2 and ds.skipped == {"empty report": 1} and ds.n_views == 2  # IU X-Ray: two views
