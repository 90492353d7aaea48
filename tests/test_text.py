"""Integration checks of clinical_bert.text and clinical_bert.mesh that read badly inside a notebook:
the OpenI reader on the other layouts of the real archive, the error without torchxrayvision, the split
shared with the data module, and the MeSH word ids the collator uses."""
import tarfile

import numpy as np
import pytest

from clinical_bert import text
from clinical_bert.mesh import MeshTagger
from clinical_bert.text import Vocab, clean_report, iu_report, read_openi_reports, seeded_split


def _archive():
    try:
        return text.openi_archive()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_folder_and_plain_tar_read_like_the_archive(tmp_path):
    "An extracted ecgen-radiology folder and an uncompressed .tar give the same rows as the .tgz."
    src = _archive()
    with tarfile.open(src) as tf:
        members = [m for m in tf if m.isfile()][:25]
        tf.extractall(tmp_path / "x", members=members, filter="data")
        with tarfile.open(tmp_path / "some.tar", "w") as out:
            for m in members:
                out.addfile(m, tf.extractfile(m))
    from_dir = read_openi_reports(tmp_path / "x" / "ecgen-radiology")
    from_tar = read_openi_reports(tmp_path / "some.tar")
    full = read_openi_reports(src).set_index("uid")
    assert len(from_dir) == len(from_tar) == 25
    for df in (from_dir, from_tar):
        for _, row in df.iterrows():
            ref = full.loc[row["uid"]]
            assert [row[c] for c in text.OPENI_COLUMNS[1:]] == [ref[c] for c in text.OPENI_COLUMNS[1:]]


def test_no_torchxrayvision_says_what_to_do(monkeypatch):
    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pass the path .* or `pip install torchxrayvision`"):
        read_openi_reports()


def test_split_is_by_group_and_order_free():
    "seeded_split cuts 7:1:2 over groups, keeps a group in one split, and does not depend on row order."
    groups = [f"CXR{i % 500}" for i in np.random.default_rng(0).permutation(1000)]
    for seed in (0, 1, 7):
        split = seeded_split(groups, seed)
        per_group = {}
        for g, s in zip(groups, split):
            per_group.setdefault(g, set()).add(s)
        assert all(len(v) == 1 for v in per_group.values())
        counts = {s: sum(next(iter(v)) == s for v in per_group.values()) for s in ("train", "val", "test")}
        assert counts == {"train": 350, "val": 50, "test": 100}
        back = dict(zip(groups[::-1], seeded_split(groups[::-1], seed)))
        assert all(back[g] == s for g, s in zip(groups, split))
    assert seeded_split(groups, 0).tolist() != seeded_split(groups, 1).tolist()


def test_iu_words_encode_and_tag_in_step():
    "On real reports, encode and tag give one entry per word, and the MeSH word ids are real vocabulary words."
    df = read_openi_reports(_archive()).head(300)
    reports = [clean_report(iu_report(r)) for _, r in df.iterrows()]
    vocab, tagger = Vocab.build(reports, min_count=3), MeshTagger()
    for r in reports:
        words = vocab.tokenize(r)
        assert len(vocab.encode(r)) == len(tagger.tag(words)) == len(words)
    from clinical_bert.masks import mesh_word_ids

    ids = mesh_word_ids(vocab, tagger)
    words = {vocab.itos[i] for i in ids}
    assert {"pleural", "effusion", "lungs", "pneumothorax"} <= words
    assert not words & {"no", "the", ".", "xxxx", "size"}


def test_split_sentences_and_clean_agree():
    "clean_report has one end token per sentence of split_sentences."
    src = "1. Heart size normal. 2. No effusion; lungs clear!\n\nStable 1.5 cm nodule"
    assert clean_report(src).count(" .") == len(text.split_sentences(src)) == 4
