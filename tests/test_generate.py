"""Report generation: cached decoding equals re-encoding the whole sequence, on several random
models, multi-view inputs and eager attention; `ClinicalBert.generate`, and the decoder imports without
the model; a save / load round trip decodes the same reports; one host read per decoding step.
"""
import subprocess
import sys

import pytest
import torch

from clinical_bert.generate import generate, generate_reports
from clinical_bert.config import ClinicalBertConfig
from clinical_bert.model import ClinicalBert
from clinical_bert.text import SEP_ID, Vocab


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def random_model(seed, sep_bias=3.0, **kw):
    "A tiny random model with spread logits (no near ties) and a [SEP] that competes with the words."
    torch.manual_seed(seed)
    m = ClinicalBert(ClinicalBertConfig.tiny(vocab_size=40, initializer_range=0.5, **kw)).eval()
    with torch.no_grad():
        m.lm_head.decoder.bias[SEP_ID] = sep_bias
    return m


def images(n, seed, views=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 3, 64, 64) if not views else (n, views, 3, 64, 64)
    return torch.randn(shape, generator=g) + torch.linspace(0, 3, n).view(n, *[1] * (len(shape) - 1))


def assert_same(model, x, **kw):
    a, sa = generate(model, x, return_scores=True, **kw)
    b, sb = generate(model, x, return_scores=True, use_cache=False, **kw)
    assert a == b
    for s, t in zip(sa, sb):
        assert len(s) == len(t)
        torch.testing.assert_close(torch.tensor(s), torch.tensor(t), atol=1e-5, rtol=0)
    return a


def spread_lengths(model, x, **kw):
    "Raise the [SEP] bias until the reports of `x` end at different lengths (rows leave the batch)."
    for bias in torch.arange(1.5, 8.0, 0.1).tolist():
        with torch.no_grad():
            model.lm_head.decoder.bias[SEP_ID] = bias
        lengths = [len(r) for r in generate(model, x, **kw)]
        if len(set(lengths)) > 1:
            return lengths
    raise AssertionError("no [SEP] bias gives reports of different lengths")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("beam", [1, 4])
def test_cached_equals_uncached(seed, beam):
    m, x = random_model(seed), images(5, seed)
    lengths = spread_lengths(m, x, beam_size=beam, max_len=16)
    out = assert_same(m, x, beam_size=beam, max_len=16)
    assert [len(r) for r in out] == lengths and max(lengths) <= 16


def test_cached_equals_uncached_with_options():
    m = random_model(8)
    assert_same(m, images(3, 0), beam_size=3, max_len=14, min_len=5, length_penalty=1.0, no_repeat_ngram=2)


def test_multi_view_and_eager_attention():
    x = images(3, 4, views=2)
    assert_same(random_model(5, n_views=2), x, beam_size=3, max_len=12)
    assert_same(random_model(5, n_views=2, attn_implementation="eager"), x, beam_size=3, max_len=12)
    sdpa = generate(random_model(5, n_views=2), x, beam_size=3, max_len=12)
    assert sdpa == generate(random_model(5, n_views=2, attn_implementation="eager"), x, beam_size=3, max_len=12)


def test_rrg_model_decodes_with_the_cache():
    # RRG fine-tuning trains s2s and MMM only, even when config.tasks still lists "bi"
    m = random_model(2, mode="rrg")
    assert "bi" in m.config.tasks
    assert_same(m, images(2, 1), beam_size=2, max_len=8)


def test_bidirectional_model_refused_for_the_cache():
    m = random_model(2, tasks=("bi", "cd"))
    with pytest.raises(ValueError, match="use_cache=False"):
        generate(m, images(2, 1), max_len=5)
    assert len(generate(m, images(2, 1), max_len=5, use_cache=False)) == 2


def test_model_generate_method_and_import_direction():
    m, x = random_model(3), images(3, 2)
    assert m.generate(x, beam_size=3, max_len=10) == generate(m, x, beam_size=3, max_len=10)
    assert m.generate(x, beam_size=3, max_len=10, use_cache=False) == generate(m, x, beam_size=3, max_len=10)
    # generate is a decoder the model imports; it names the model for type hints only (TYPE_CHECKING)
    code = ("import sys, torch; import clinical_bert.generate; "
            "assert 'clinical_bert.model' not in sys.modules, 'generate imports the model'; "
            "from clinical_bert.config import ClinicalBertConfig; from clinical_bert.model import ClinicalBert; "
            "m = ClinicalBert(ClinicalBertConfig.tiny(vocab_size=30)); "
            "out = m.generate(torch.randn(2, 3, 64, 64), beam_size=2, max_len=4); "
            "assert len(out) == 2 and all(len(r) <= 4 for r in out), out; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_from_pretrained_round_trip(tmp_path):
    m, x = random_model(4), images(3, 3)
    before = m.generate(x, beam_size=3, max_len=12)
    loaded = ClinicalBert.from_pretrained(m.save_pretrained(tmp_path / "model"))
    assert loaded.generate(x, beam_size=3, max_len=12) == before
    vocab = Vocab([f"w{i}" for i in range(35)])
    texts = generate_reports(loaded, vocab, x, beam_size=3, max_len=12)
    assert texts == [vocab.decode(r) for r in before]


def test_bf16_autocast_runs():
    m, x = random_model(6), images(2, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, scores = generate(m, x, beam_size=2, max_len=6, return_scores=True)
    assert all(len(r) <= 6 and all(5 <= w < 40 or w == 1 for w in r) for r in out)
    assert all(isinstance(v, float) and v <= 0 for s in scores for v in s)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_cached_equals_uncached():
    m = random_model(7).cuda()
    torch.backends.cuda.matmul.allow_tf32 = False
    assert_same(m, images(4, 6).cuda(), beam_size=5, max_len=16)


def test_beam_search_reads_the_device_once_per_step():
    "Finished hypotheses stay on the device: one host read per step (which images go on) and one at the end."
    from clinical_bert.learner import count_syncs
    m, x = random_model(1), images(5, 1)
    assert max(len(r) for r in generate(m, x, beam_size=4, max_len=16)) == 16  # the search runs all 16 steps
    for use_cache in (True, False):
        c8, c16 = (count_syncs(generate, m, x, beam_size=4, max_len=n, use_cache=use_cache) for n in (8, 16))
        assert set(c16) <= {"tolist", "repeat_interleave"}, dict(c16)  # no nonzero, .item() or boolean index
        assert c16["tolist"] <= 16 and sum(c16.values()) - sum(c8.values()) <= 8, (dict(c8), dict(c16))
