"""Model, masks and IMM integration tests that read badly inside a notebook.

Each pre-training objective alone must overfit one batch of 8 samples (the notebook checks all
of them together); the collator must behave in DataLoader workers; the switches of DESIGN.md
section 2 must run end to end; and, when the data modules exist, synthetic studies on disk go
through the real loader, the Collator and the model.
"""
import math
from dataclasses import replace

import pytest
import torch
from torch.utils.data import DataLoader

from clinical_bert.learner import count_syncs
from clinical_bert.masks import MMM, S2S, Collator
from clinical_bert.config import ABLATIONS, ClinicalBertConfig
from clinical_bert.model import ClinicalBert, overfit
from clinical_bert.text import Vocab

MESH = {"effusion", "cardiomegaly", "pneumothorax", "opacity", "atelectasis", "edema"}
WORDS = ("the heart is normal in size no focal consolidation pleural effusion pneumothorax lungs are clear "
         "there mild cardiomegaly opacity left right base atelectasis edema stable").split()
VOCAB = Vocab(WORDS)
MESH_IDS = [VOCAB.stoi[w] for w in MESH]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def items(n=8, seed=0, size=64, n_views=0, all_mesh=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        L = int(torch.randint(4, 12, (1,), generator=g))
        words = [WORDS[j] for j in torch.randint(len(WORDS), (L,), generator=g)]
        if all_mesh and not MESH & set(words):
            words[-1] = "effusion"
        shape = (3, size, size) if not n_views else (n_views, 3, size, size)
        out.append({"id": f"s{i}", "image": torch.randn(shape, generator=g),
                    "input_ids": [VOCAB.stoi[w] for w in words], "tags": [int(w in MESH) for w in words],
                    "labels": torch.where(torch.rand(14, generator=g) < 0.3, 1.0, float("nan"))})
    return out


BASE = ClinicalBertConfig.tiny(vocab_size=len(VOCAB), hidden_dropout=0.0, attention_dropout=0.0)


@pytest.mark.parametrize("name,tasks,probs,mode", [
    ("s2s", ("s2s",), (1, 0, 0), "pretrain"),
    ("bi", ("bi",), (0, 1, 0), "pretrain"),
    ("mmm", ("mmm",), (0, 0, 1), "pretrain"),
    ("cd", ("bi", "cd"), (0, 1, 0), "pretrain"),
    ("imm", ("s2s", "imm"), (1, 0, 0), "pretrain"),
    ("rd", ("s2s",), (1, 0, 0), "rd"),
])
def test_each_task_overfits_a_batch(name, tasks, probs, mode):
    cfg = replace(BASE, tasks=tasks, mode=mode)
    batch = Collator(VOCAB, MESH_IDS, mode="rd" if mode == "rd" else "pretrain", task_probs=probs,
                     seed=3)(items())
    torch.manual_seed(0)
    first = ClinicalBert(cfg)(batch).losses[name].item()
    _, _, per = overfit(cfg, batch, steps=150)
    print(name, first, per)
    assert per[name] < 0.1 * first, (name, first, per)


def test_rrg_mode_trains_s2s_and_mmm_only():
    cfg = BASE.for_mode("rrg")
    b = Collator(VOCAB, MESH_IDS, mode="rrg", seed=0)(items(16))
    assert set(b["task"].tolist()) <= {S2S, MMM}
    out = ClinicalBert(cfg)(b)
    assert set(out.losses) == {"s2s", "mmm"}
    pre = Collator(VOCAB, MESH_IDS, task_probs=(0, 1, 0))(items(4))
    with pytest.raises(ValueError, match="task_probs=config.task_probs"):
        ClinicalBert(cfg)(pre)


def test_ablation_variants_give_their_losses():
    b = {k: Collator(VOCAB, MESH_IDS, task_probs=ClinicalBertConfig.ablation(k, "tiny").task_probs, seed=0)(items())
         for k in ABLATIONS}
    expect = {"baseline": {"s2s", "bi"}, "cd": {"s2s", "bi", "cd"}, "cd_mmm": {"s2s", "bi", "mmm", "cd"},
              "cd_mmm_imm_dense": {"s2s", "bi", "mmm", "cd", "imm"}, "cd_mmm_imm": {"s2s", "bi", "mmm", "cd", "imm"}}
    for k, want in expect.items():
        cfg = ClinicalBertConfig.ablation(k, "tiny", vocab_size=len(VOCAB))
        assert set(ClinicalBert(cfg)(b[k]).losses) == want, k
        if "mmm" not in cfg.tasks:
            assert not (b[k]["task"] == MMM).any()


def test_switches_run_and_differ():
    torch.manual_seed(0)
    b = Collator(VOCAB, MESH_IDS, seed=0)(items(8))
    ref = ClinicalBert(BASE).eval()
    sd = ref.state_dict()
    got = {}
    for kw in [dict(), dict(imm_regions="encoded"), dict(rsa_sparsity="renormalize"), dict(rsa_sparsity="none"),
               dict(imm_loss="literal"), dict(cd_on="all"), dict(attn_implementation="eager"),
               dict(tie_word_embeddings=False)]:
        m = ClinicalBert(replace(BASE, **kw)).eval()
        m.load_state_dict(sd, strict=False)
        if not kw.get("tie_word_embeddings", True):
            m.lm_head.decoder.weight.data.copy_(ref.lm_head.decoder.weight)
        with torch.no_grad():
            got[tuple(kw.items())] = m(b).losses
    base = got[()]
    assert got[(("attn_implementation", "eager"),)]["s2s"].item() == pytest.approx(base["s2s"].item(), abs=1e-5)
    assert got[(("tie_word_embeddings", False),)]["bi"].item() == pytest.approx(base["bi"].item(), abs=1e-5)
    for key in [(("imm_regions", "encoded"),), (("rsa_sparsity", "none"),), (("imm_loss", "literal"),)]:
        assert got[key]["imm"].item() != pytest.approx(base["imm"].item(), abs=1e-6), key
    # cd_on="all" adds the non-bi samples: a different CD loss unless the batch is all bi
    assert got[(("cd_on", "all"),)]["cd"].item() != pytest.approx(base["cd"].item(), abs=1e-7)
    bi = Collator(VOCAB, MESH_IDS, task_probs=(0, 1, 0), seed=0)(items(8))
    m_all = ClinicalBert(replace(BASE, cd_on="all")).eval()
    m_all.load_state_dict(sd)
    with torch.no_grad():
        assert m_all(bi).losses["cd"].item() == pytest.approx(ref(bi).losses["cd"].item(), abs=1e-6)


def test_multi_view_and_diagnose():
    cfg = replace(BASE, n_views=2)
    m = ClinicalBert(cfg).eval()
    b = Collator(VOCAB, MESH_IDS, seed=0)(items(4, n_views=2))
    assert b["images"].shape == (4, 2, 3, 64, 64)
    out = m(b)
    assert out.hidden.shape[1] == 2 + cfg.n_regions + b["text_ids"].shape[1]
    assert m.diagnose(b["images"]).shape == (4, 14)
    rd = ClinicalBert(cfg.for_mode("rd"))
    out = rd(Collator(VOCAB, MESH_IDS, mode="rd")(items(4, n_views=2)))
    assert set(out.losses) == {"rd"} and out.rd_logits.shape == (4, 14)


class _Items(torch.utils.data.Dataset):
    def __init__(self, n): self.items = items(n)
    def __len__(self): return len(self.items)
    def __getitem__(self, i): return self.items[i]


def test_collator_in_dataloader_workers_is_seeded_and_distinct():
    def masks(workers):
        dl = DataLoader(_Items(16), batch_size=4, num_workers=workers, collate_fn=Collator(VOCAB, MESH_IDS, seed=7))
        return [b["text_ids"] for b in dl]
    a, b = masks(2), masks(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # reproducible
    single = masks(0)
    assert not all(torch.equal(x, y) for x, y in zip(a, single))


def test_s2s_targets_teach_the_final_sep():
    col = Collator(VOCAB, MESH_IDS, task_probs=(1, 0, 0), seed=0)
    hits = 0
    for _ in range(50):
        b = col(items(8))
        last = b["text_valid"].sum(1) - 1
        hits += int((b["text_targets"][torch.arange(8), last] == VOCAB.sep_id).sum())
    assert 0.05 < hits / 400 < 0.5, hits  # the [SEP] is an MLM candidate like a word


def test_from_pretrained_keeps_ablation_config(tmp_path):
    cfg = ClinicalBertConfig.ablation("cd_mmm_imm_dense", "tiny", vocab_size=len(VOCAB))
    m = ClinicalBert(cfg)
    m.save_pretrained(tmp_path / "m")
    m2 = ClinicalBert.from_pretrained(tmp_path / "m")
    assert m2.config == cfg and m2.config.tasks == cfg.tasks
    with pytest.raises(ValueError, match="do not override architecture"):
        ClinicalBert.from_pretrained(tmp_path / "m", hidden_size=64)


def test_synthetic_studies_through_loader_collator_and_model(tmp_path):
    from clinical_bert import data, synthetic
    from clinical_bert.masks import mesh_word_ids
    root = synthetic.make_dataset(tmp_path / "mimic", 24, seed=0, layout="mimic", size=64)
    ds = data.MimicCxrDataset(root, "train", size=64, min_count=1)
    col = Collator(ds.vocab, mesh_word_ids(ds.vocab), max_len=20, seed=0)  # tiny: max_text_len 20
    b = col([ds[i] for i in range(min(8, len(ds)))])
    cfg = ClinicalBertConfig.tiny(vocab_size=len(ds.vocab))
    out = ClinicalBert(cfg)(b)
    assert math.isfinite(out.loss.item()) and set(out.losses) == {"s2s", "bi", "mmm", "cd", "imm"}
    assert (b["tags"] == 1).any(), "synthetic reports should contain MeSH words"


# ---- IMM word features (imm_words) ----

def test_imm_words_config():
    assert ClinicalBertConfig.paper().imm_words == "joint"  # the paper's reading
    assert ClinicalBertConfig.small().imm_words == "text_only"
    assert ClinicalBertConfig().imm_words == "joint"  # config.json of older versions: what they trained with
    with pytest.raises(ValueError, match="imm_words='text'; use one of"):
        ClinicalBertConfig.tiny(imm_words="text")


def _imm_e(model, b):
    with torch.no_grad():
        h, f, _ = model.encode(b["images"], b["text_ids"], b["task"], b["text_valid"])
        return model.imm_word_features(h, b, f.shape[1])


def test_text_only_imm_words_do_not_see_the_film():
    from clinical_bert.masks import batch_attention_mask
    torch.manual_seed(0)
    b = Collator(VOCAB, MESH_IDS, seed=0)(items(8))
    other = {**b, "images": torch.randn_like(b["images"])}
    joint = ClinicalBert(BASE).eval()
    text = ClinicalBert(replace(BASE, imm_words="text_only")).eval()
    text.load_state_dict(joint.state_dict())
    valid = b["text_valid"]
    assert (_imm_e(joint, b) - _imm_e(joint, other))[valid].abs().max() > 1e-3  # joint: the words copy the film
    e = _imm_e(text, b)
    assert torch.equal(e, _imm_e(text, other))  # text_only: the same words whatever the film
    # the same as the full sequence with the words barred from [CLS] v [SEP] (the construction of the prose)
    with torch.no_grad():
        h, f, x = text.encode(b["images"], b["text_ids"], b["task"], valid)
        S = f.shape[1] + 2
        mask = batch_attention_mask(b["task"], S, valid).clone()
        mask[:, :, S:, :S] = False
        pos, seg = text.layout(f.shape[1], 0, x.shape[1], len(x))
        ref = text.encoder_step(x, pos, seg, mask)[0][:, S:]
    assert (e - ref)[valid].abs().max() < 1e-5
    # the IMM term still reads the film through the regions f, and differs from the joint one
    with torch.no_grad():
        assert text(b).losses["imm"] != pytest.approx(joint(b).losses["imm"].item(), abs=1e-4)
        assert text(b).losses["imm"] != pytest.approx(text(other).losses["imm"].item(), abs=1e-4)


# ---- a training step without host syncs; the masked losses equal the indexed ones ----

def _step(model, b):
    model(b).loss.backward()


def test_pretraining_step_has_at_most_two_syncs():
    torch.manual_seed(0)
    for cfg in (BASE, replace(BASE, imm_words="text_only", cd_on="all")):
        m = ClinicalBert(cfg).train()
        b = Collator(VOCAB, MESH_IDS, task_probs=cfg.task_probs, seed=0)(items(8))
        assert b["tasks_present"] == ("s2s", "bi", "mmm")
        counts = count_syncs(_step, m, b)
        assert sum(counts.values()) <= 2, dict(counts)
        # without the Collator's tasks_present the model asks the tensor: the counter sees it
        hand = {k: v for k, v in b.items() if k != "tasks_present"}
        assert sum(count_syncs(_step, m, hand).values()) > sum(counts.values())



def test_uint8_films_train_as_the_float_pipeline_bit_for_bit():
    "Grey uint8 films (as the data sets yield them) give the float pipeline's losses and gradients exactly."
    from torchvision.transforms import v2

    from clinical_bert.images import IMAGENET_MEAN, IMAGENET_STD
    ref = v2.Compose([v2.ToImage(), v2.Grayscale(num_output_channels=3), v2.ToDtype(torch.float32, scale=True),
                      v2.Normalize(IMAGENET_MEAN, IMAGENET_STD), v2.ToPureTensor()])  # normalised in the data set
    g = torch.Generator().manual_seed(0)
    its = items(6)
    for it in its:
        it["image"] = torch.randint(0, 256, (1, 64, 64), generator=g, dtype=torch.uint8)
    b = Collator(VOCAB, MESH_IDS, seed=0)(its)
    assert b["images"].dtype == torch.uint8 and b["images"].shape == (6, 1, 64, 64)
    old = {**b, "images": torch.stack([ref(x) for x in b["images"]])}
    runs = []
    for batch in (b, old):
        torch.manual_seed(0)
        m = ClinicalBert(replace(BASE, input_norm="imagenet")).train()
        out = m(batch)
        out.loss.backward()
        runs.append((out.losses, m.visual.backbone.conv0.weight.grad))
    (la, ga), (lb, gb) = runs
    assert la.keys() == lb.keys() == {"s2s", "bi", "mmm", "cd", "imm"}
    assert all(torch.equal(la[k], lb[k]) for k in la) and torch.equal(ga, gb)

def _reference_losses(m, batch):
    "The losses computed with boolean indexing and data-dependent shapes (the implementation replaced)."
    import torch.nn.functional as F
    from clinical_bert.imm import imm_loss
    from clinical_bert.masks import BI, IGNORE, TASK_NAMES, batch_attention_mask
    c = m.config
    task, valid, targets = batch["task"], batch["text_valid"], batch["text_targets"]
    h, f, x = m.encode(batch["images"], batch["text_ids"], task, valid)
    R = f.shape[1]
    zero = h.sum() * 0
    sel = targets != IGNORE
    ce = F.cross_entropy(m.lm_head(h[:, R + 2:][sel]).float(), targets[sel], reduction="none")
    tok_task = task[:, None].expand_as(targets)[sel]
    out = {}
    for t in c.lm_tasks:
        k = tok_task == TASK_NAMES.index(t)
        out[t] = ce[k].mean() if k.any() else zero
    if "cd" in c.tasks or c.mode == "rrg":
        bi = task == BI
        feats = h[:, [0, R + 1]]
        film_only = c.cd_on == "image" or c.mode == "rrg"
        if c.cd_on == "all" and not film_only:
            nb = ~bi
            pos, seg = m.layout(R, 0, x.shape[1], int(nb.sum()), x.device)
            mask = batch_attention_mask(torch.full_like(task[nb], BI), R + 2, valid[nb])
            feats = feats.clone()
            feats[nb] = m.encoder_step(x[nb], pos, seg, mask)[0][:, [0, R + 1]]
            rows = torch.ones_like(bi)
        else:
            rows = ~bi if film_only else bi
        out["cd"] = (F.binary_cross_entropy_with_logits(m.cd_head(feats[rows, 0], feats[rows, 1]).float(),
                                                        batch["labels"][rows].float()) if rows.any() else zero)
        if c.mode == "rrg":
            out["cd"] = c.rrg_cd * out["cd"]
    if c.mode == "pretrain" and "imm" in c.tasks:
        wm = batch["word_mask"]
        rows = (task != MMM) & wm.any(1)
        out["imm"] = (imm_loss(h[rows, R + 2:].float(), f[rows].float(), batch["tags"][rows], wm[rows], c.imm_k,
                               c.rho1, c.rho2, c.tau, c.rsa_sparsity, c.imm_loss) if rows.any() else zero)
    return out


@pytest.mark.parametrize("kw,probs", [
    (dict(), None), (dict(cd_on="all"), None), (dict(cd_on="image"), None), (dict(imm_loss="literal"), None),
    (dict(imm_loss="contrastive_eq7"), None), (dict(), (0, 0, 1)), (dict(cd_on="image"), (0, 1, 0)),
    (dict(mode="rrg", rrg_cd=2.0), None),
])
def test_masked_losses_equal_the_indexed_ones(kw, probs):
    cfg = replace(BASE, **kw)
    torch.manual_seed(0)
    m = ClinicalBert(cfg).train()  # no dropout in BASE: two forwards give the same numbers
    b = Collator(VOCAB, MESH_IDS, mode=cfg.mode, task_probs=probs or cfg.task_probs, seed=1)(items(8))
    got, want = m(b).terms, _reference_losses(m, b)
    assert set(got) == set(want)
    for k in want:
        assert got[k].item() == pytest.approx(want[k].item(), abs=1e-5), k
    if not kw and probs is None:  # and the same gradients
        g1 = torch.autograd.grad(sum(got.values()), list(m.parameters()), allow_unused=True)
        g2 = torch.autograd.grad(sum(want.values()), list(m.parameters()), allow_unused=True)
        for (n, _), a, c in zip(m.named_parameters(), g1, g2):
            assert (a is None) == (c is None) or (a if c is None else c).abs().max() == 0, n
            if a is not None and c is not None:
                assert (a - c).abs().max() < 1e-5, n


def test_from_pretrained_names_missing_and_unexpected_weights(tmp_path):
    "An architecture override that does not fit the file names the weights, in one ValueError (was a TypeError)."
    ClinicalBert(ClinicalBertConfig.tiny()).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"weights missing \['bert\.encoder\.layer\.2\.") as e:
        ClinicalBert.from_pretrained(tmp_path / "m", num_hidden_layers=3)
    assert "do not override architecture fields" in str(e.value)
    with pytest.raises(ValueError, match=r"1[0-9] unexpected \['bert\.encoder\.layer\.1\."):
        ClinicalBert.from_pretrained(tmp_path / "m", num_hidden_layers=1)
