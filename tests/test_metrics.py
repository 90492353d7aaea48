"""Integration checks of clinical_bert.metrics that read badly inside a notebook:
a missing Java runtime, the shared METEOR process under threads, its restart after a crash,
and its shutdown at interpreter exit."""
import os
import subprocess
import sys
import threading
import time
import warnings

import pytest

from clinical_bert import labeler, metrics

REFS = ["The heart is normal in size. The lungs are clear.",
        "There is a small left pleural effusion. No pneumothorax.",
        "Mild cardiomegaly. No focal consolidation, effusion or pneumothorax."]
HYPS = ["The heart is normal in size. The lungs are clear.",
        "Small left pleural effusion. The lungs are clear.",
        ""]


def test_missing_java_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java
    for meteor in (True, False):  # the PTB tokenizer needs Java too, so meteor=False does not avoid it
        with pytest.raises(RuntimeError, match="apt-get install default-jre-headless"):
            metrics.nlg_scores(REFS, HYPS, meteor=meteor)
    with pytest.raises(RuntimeError, match="`java` is not on PATH"):
        metrics.ptb_tokenize(["a"])


def test_one_meteor_process_shared_by_threads():
    metrics.close_meteor()
    barrier, got = threading.Barrier(8), []

    def start():
        barrier.wait()
        got.append(metrics.meteor_scorer())

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert len(got) == 8 and all(m is got[0] for m in got), "threads started more than one METEOR process"
    pid = got[0].meteor_p.pid

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the empty hypothesis warns
        alone = metrics.nlg_scores(REFS, HYPS)
        results, errors = [], []

        def score(hyps):
            try: results.append((hyps, metrics.nlg_scores(REFS, hyps)))
            except Exception as e: errors.append(e)

        variants = [HYPS, REFS, HYPS[::-1], REFS]
        threads = [threading.Thread(target=score, args=(h,)) for h in variants]
        for t in threads: t.start()
        for t in threads: t.join(timeout=120)
    assert not errors, errors
    assert len(results) == len(variants)
    for hyps, s in results:
        if hyps is HYPS: assert s == alone
        if hyps is REFS: assert s["METEOR"] == pytest.approx(1.0)
    assert metrics.meteor_scorer().meteor_p.pid == pid, "the METEOR process was not reused"


def test_meteor_restarts_after_its_process_died():
    m = metrics.meteor_scorer()
    m.meteor_p.kill()
    m.meteor_p.wait(timeout=10)
    s = metrics.nlg_scores(REFS, REFS)  # starts a new process instead of hanging or failing
    assert s["METEOR"] == pytest.approx(1.0)
    assert metrics.meteor_scorer() is not m


def test_meteor_dying_during_a_call_raises_and_frees_its_lock(monkeypatch):
    m = metrics.meteor_scorer()
    m.meteor_p.kill()
    m.meteor_p.wait(timeout=10)
    monkeypatch.setattr(metrics, "meteor_scorer", lambda: m)  # skip the restart check: the process dies mid-call
    with pytest.raises(RuntimeError, match="METEOR's Java process failed"):
        metrics.nlg_scores(REFS, REFS)
    assert not m.lock.locked(), "a failed call left pycocoevalcap's lock held (later calls would hang)"
    monkeypatch.undo()
    assert metrics.meteor_scorer() is not m
    assert metrics.nlg_scores(REFS, REFS)["METEOR"] == pytest.approx(1.0)


def test_meteor_process_closed_at_exit():
    code = ("from clinical_bert import metrics; m = metrics.meteor_scorer(); "
            "print(m.meteor_p.pid, flush=True)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    pid = int(out.stdout.split()[0])
    # Without the hook, Java would live on for seconds (it exits on stdin EOF only after loading
    # its paraphrase table), so the child must be gone at once.
    for _ in range(10):  # the interpreter exited; its atexit hook killed and reaped the Java child
        try: os.kill(pid, 0)
        except ProcessLookupError: return
        time.sleep(0.1)
    os.kill(pid, 9)
    pytest.fail(f"METEOR's Java process {pid} outlived the Python process")


def test_ce_scores_through_the_labeler():
    texts = ["There is a small left pleural effusion. No pneumothorax.",
             "The heart is enlarged. There is mild pulmonary edema.",
             "No acute cardiopulmonary abnormality. The lungs are clear."]
    ce = metrics.ce_scores(texts, texts)
    assert ce["ce_micro_f1"] == 1.0
    assert [k.split("/", 1)[1] for k in ce if k.startswith("ce_f1/")] == list(labeler.CHEXPERT_LABELS)
    # a hypothesis that misses the edema and adds nothing: precision stays 1, recall drops
    # ("No pneumothorax." alone would be a No Finding positive, a false positive)
    worse = metrics.ce_scores(texts, [texts[0], "The heart is enlarged.", texts[2]])
    assert worse["ce_micro_precision"] == 1.0 and worse["ce_micro_recall"] < 1.0
    assert metrics.ce_scores(labeler.label_reports(texts), texts) == ce  # a label frame instead of texts


def test_bare_strings_are_refused():
    with pytest.raises(TypeError, match="refs is one str"):
        metrics.nlg_scores(REFS[0], HYPS, meteor=False)
    with pytest.raises(TypeError, match="hyps is one str"):
        metrics.nlg_scores(REFS, HYPS[0], meteor=False)
    with pytest.raises(TypeError, match="hyps is one str.*pass a list of reports"):
        metrics.ce_scores(REFS, "No effusion.")


def test_bootstrap_vectorised_statistics():
    import numpy as np
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, (200, 14)), rng.integers(0, 2, (200, 14))
    names = [f"o{i}" for i in range(14)]
    ci = metrics.bootstrap_ci(metrics.ce_stats(y, p), lambda s, n: metrics.ce_from_stats(s, n, names))
    assert all(c.lo <= c.point <= c.hi for c in ci.values())
    full = metrics.ce_scores(pd_frame(y, names), pd_frame(p, names))
    assert ci["ce_micro_f1"].point == pytest.approx(full["ce_micro_f1"], abs=1e-12)
    assert ci["ce_example_f1"].point == pytest.approx(full["ce_example_f1"], abs=1e-12)
    a = rng.random(300)
    assert metrics.paired_bootstrap(a, a)["verdict"] == "not distinguishable (p = 1)"
    assert metrics.paired_bootstrap(a + 0.05, a)["verdict"] == "higher, p < 0.001"  # two-sided p, the tables' rule
    assert metrics.bootstrap_ci(a, seed=3) == metrics.bootstrap_ci(a, seed=3)


def pd_frame(x, names):
    import pandas as pd
    return pd.DataFrame(x, columns=names)


def test_ptb_tokenizer_prints_nothing(capfd):
    "The Java tokenizer's 'PTBTokenizer tokenized N tokens' line no longer reaches stderr (reproduce's output, the docs)."
    from clinical_bert.metrics import ptb_tokenize
    assert ptb_tokenize(["No pleural effusion.", "Heart size is normal."]) == ["no pleural effusion", "heart size is normal"]
    out, err = capfd.readouterr()
    assert "PTBTokenizer" not in out + err, err
    import sys
    print("after", file=sys.stderr)  # descriptor 2 is given back
    assert "after" in capfd.readouterr().err
