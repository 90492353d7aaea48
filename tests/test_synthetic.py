"""Integration tests of the synthetic benchmark: worker processes, the command line, and the real loaders
(clinical_bert.data) reading each synthetic layout end to end."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinical_bert.synthetic import CHEXPERT_LABELS, load_masks, main, make_dataset


def digest(root):
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_workers_write_the_same_bytes(tmp_path):
    one = digest(make_dataset(tmp_path / "w1", 12, seed=3, layout="mimic", size=64, workers=1))
    two = digest(make_dataset(tmp_path / "w2", 12, seed=3, layout="mimic", size=64, workers=2))
    assert one == two and len(one) == 12 * 3 + 5  # jpg + masks + txt per study, 3 CSVs + 2 ground truth files


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
    return pytest.importorskip("clinical_bert.data", reason="clinical_bert.data (or a module it imports) is not there yet")


def test_mimic_loader_reads_synthetic(tmp_path):
    data = _data()
    root = make_dataset(tmp_path / "m", 40, seed=7, layout="mimic", size=64)
    ds = data.MimicCxrDataset(root, "train", tagger=False, size=56)
    gt = pd.read_csv(root / "ground_truth.csv").set_index("id")
    assert len(ds) == (gt.split == "train").sum()
    item = ds[0]
    assert item["image"].shape == (3, 56, 56)
    want = gt.loc[item["id"], list(ds.label_names)].to_numpy(np.float32)
    np.testing.assert_array_equal(item["labels"].numpy(), want)


def test_iu_and_nih_loaders_read_synthetic(tmp_path):
    data = _data()
    iu = make_dataset(tmp_path / "iu", 30, seed=8, layout="iu", size=64)
    ds = data.AnnotationDataset(iu / "annotation.json", iu / "images", "train", tagger=False, size=56, n_views=2)
    assert ds[0]["image"].shape == (2, 3, 56, 56)
    nih = make_dataset(tmp_path / "nih", 30, seed=8, layout="nih", size=64)
    ds = data.NihChestXrayDataset(nih, "test", tagger=False, size=56)
    gt = pd.read_csv(nih / "ground_truth.csv").set_index("id")
    item = ds[0]
    names = list(ds.label_names)
    want = [float(n in str(gt.loc[item["id"], "nih"]).split("|")) for n in names]
    np.testing.assert_array_equal(item["labels"].numpy(), np.array(want, np.float32))
