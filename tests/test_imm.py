"""The contrastive IMM loss against report length (clinical_bert.imm): on a batch where every report's
words are regions of its own image, eq. 7's S lets the longest report win for every image, the
length-invariant S° of `imm_loss(kind="contrastive")` pairs each image with its own report; plus
gradient, shape and padding checks of that loss."""
import pytest
import torch

from clinical_bert.imm import IMM_LOSSES, SCORES, imm_loss, imm_score, imm_scores

pytestmark = pytest.mark.usefixtures("one_thread")


def aligned_batch(lengths=(20, 40, 60, 80), R=16, D=32, seed=0, noise=0.0):
    "Images (B, R, D) and reports whose words are regions of their own image (plus noise), padded."
    g = torch.Generator().manual_seed(seed)
    B, L = len(lengths), max(lengths)
    f = torch.randn(B, R, D, generator=g)
    e = f[torch.arange(B)[:, None], torch.randint(R, (B, L), generator=g)]
    e = e + noise * torch.randn(e.shape, generator=g)
    wm = torch.arange(L) < torch.tensor(lengths)[:, None]
    return e, f, (torch.rand(B, L, generator=g) < 0.3).long() * wm, wm


def test_names():
    assert IMM_LOSSES[0] == "contrastive" and {"literal", "contrastive_eq7"} <= set(IMM_LOSSES)
    assert SCORES == ("eq7", "weighted")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eq7_score_prefers_the_longest_report(seed):
    "The flaw of the contrastive_eq7 form: every image scores the 80-word report highest."
    e, f, t, wm = aligned_batch(seed=seed)
    assert imm_scores(e, f, t, wm).argmax(1).tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize("seed,noise,lengths", [(0, 0.0, (20, 40, 60, 80)), (1, 0.5, (20, 40, 60, 80)),
                                                (2, 1.0, (80, 60, 40, 20)), (3, 0.5, (5, 80, 12, 50, 33))])
def test_weighted_score_pairs_each_image_with_its_report(seed, noise, lengths):
    e, f, t, wm = aligned_batch(lengths, seed=seed, noise=noise)
    S = imm_scores(e, f, t, wm, score="weighted")
    own = list(range(len(lengths)))
    assert S.argmax(1).tolist() == own  # each image's best report is its own
    assert S.argmax(0).tolist() == own  # each report's best image is its own


def test_loss_on_the_aligned_batch():
    e, f, t, wm = aligned_batch()
    assert imm_loss(e, f, t, wm).item() < 1e-6  # default: contrastive over S°
    assert imm_loss(e, f, t, wm, kind="contrastive_eq7").item() > 5
    lit = imm_loss(e, f, t, wm, kind="literal")  # unchanged: -mean S / tau
    assert lit.item() == pytest.approx(-(imm_score(e, f, t, wm) / 0.01).mean().item(), rel=1e-5)


def test_weighted_score_length_invariance_and_range():
    torch.manual_seed(0)
    e, f = torch.randn(3, 6, 8), torch.randn(3, 9, 8)
    wm = torch.arange(6) < torch.tensor([6, 4, 1])[:, None]
    t = (torch.rand(3, 6) < 0.5).long() * wm
    S = imm_scores(e, f, t, wm, k=4, score="weighted")
    assert S.shape == (3, 3) and (S.abs() <= 1 + 1e-6).all()
    rep = lambda x: x.repeat_interleave(3, 1)  # every word three times
    torch.testing.assert_close(imm_scores(rep(e), f, rep(t), rep(wm), k=4, score="weighted"), S)
    torch.testing.assert_close(imm_score(e, f, t, wm, k=4, score="weighted"), S.diagonal())
    with pytest.raises(ValueError, match="use one of"):
        imm_scores(e, f, t, wm, score="length")


@pytest.mark.parametrize("kind", IMM_LOSSES)
def test_padding_does_not_change_the_loss(kind):
    e, f, t, wm = aligned_batch((7, 3, 5), noise=1.0)
    base = imm_loss(e, f, t, wm, kind=kind)
    extra = torch.zeros(3, 4, dtype=torch.bool)
    e2 = torch.cat([e, torch.randn(3, 4, e.shape[-1])], 1).masked_fill(~torch.cat([wm, extra], 1)[..., None], 3.0)
    t2 = torch.cat([t | ~wm, torch.ones(3, 4, dtype=t.dtype)], 1)  # tags on padding too
    torch.testing.assert_close(imm_loss(e2, f, t2, torch.cat([wm, extra], 1), kind=kind), base, rtol=1e-5, atol=1e-5)


def test_gradients_of_the_contrastive_loss():
    torch.manual_seed(0)
    e = torch.randn(4, 7, 8, requires_grad=True)
    f = torch.randn(4, 9, 8, requires_grad=True)
    wm = torch.arange(7) < torch.tensor([7, 2, 5, 1])[:, None]
    t = (torch.rand(4, 7) < 0.4).long()
    loss = imm_loss(e, f, t, wm, k=3)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(e.grad).all() and torch.isfinite(f.grad).all()
    assert e.grad[wm].abs().sum(-1).min() > 0 and f.grad.abs().sum() > 0
    assert e.grad[~wm].abs().sum() == 0  # no gradient at padding positions
    assert imm_loss(e[:1], f[:1], t[:1], wm[:1]).item() == pytest.approx(0.0, abs=1e-6)  # one pair: no negatives
