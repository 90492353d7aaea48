"""The benchmarks' own checks: the device check's smoke run, the FLOP arithmetic, children that die."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import benchlib  # noqa: E402
from benchlib import ChildFailed, spawn  # noqa: E402


# --- children for spawn (module level: a spawned process imports them by name) ---------------------------

def _answer(x, q):
    q.put(x * 2)


def _dies(code, q):
    print("child: about to die", file=sys.stderr, flush=True)
    os._exit(code)


def _raises(q):
    raise ValueError("bad input in the child")


def _hangs(q):
    import time
    time.sleep(600)


def test_spawn_returns_the_result():
    assert spawn(_answer, 21, timeout=120) == 42


def test_spawn_dead_child_fails_fast_with_its_exit_code():
    # a generous timeout: the error must come from noticing the death, not from the timeout
    with pytest.raises(ChildFailed) as e:
        spawn(_dies, 3, timeout=300)
    assert e.value.exitcode == 3
    assert "exit code 3" in str(e.value) and "about to die" in str(e.value)
    assert "timed out" not in str(e.value)


def test_spawn_exception_in_child_shows_its_traceback():
    with pytest.raises(ChildFailed) as e:
        spawn(_raises, timeout=300)
    assert e.value.exitcode == 1 and "ValueError: bad input in the child" in str(e.value)


def test_spawn_hung_child_is_killed_at_the_timeout():
    with pytest.raises(ChildFailed, match="timed out after 3 s") as e:
        spawn(_hangs, timeout=3)
    assert e.value.exitcode is not None and e.value.exitcode < 0  # killed


def test_run_main_exits_with_the_childs_code():
    def main(argv):
        spawn(_dies, 5, timeout=300)
    assert benchlib.run_main(main) == 5


# --- devices and FLOP arithmetic --------------------------------------------------------------------------

def test_resolve_device(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert benchlib.resolve_device("cuda") == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert benchlib.resolve_device("cuda") == "cuda:3"
    assert benchlib.resolve_device("cuda:1") == "cuda:1" and benchlib.resolve_device("cpu") == "cpu"


def test_peak_tflops_by_card_name():
    p = benchlib.peak_tflops
    assert p("NVIDIA H100 80GB HBM3") == 989 and p("NVIDIA H200") == 989
    assert p("NVIDIA H100 PCIe") == 756  # not the SXM figure
    assert p("NVIDIA A100-SXM4-80GB") == 312 and p("NVIDIA A10") == 125 and p("NVIDIA L40S") == 362
    assert p("Some Future GPU") is None and p("Some Future GPU", 500) == 500 and p("NVIDIA H200", 1.0) == 1.0


def test_mfu_arithmetic():
    # BERT-base over 151 positions: 2 x 85M weights x 151 + attention 4 x 12 x 151^2 x 768 = 26.5 GFLOP forward
    enc = benchlib.transformer_forward_flops(151, 12 * benchlib.bert_layer_params(768, 3072), 12, 768)
    assert abs(enc - 26.49e9) < 0.01e9
    total = benchlib.paper_train_flops(100)
    assert total == pytest.approx(3 * (5.7e9 + enc))
    assert benchlib.mfu(1000, total, 989) == pytest.approx(1000 * total / 989e12)
    assert 0.09 < benchlib.mfu(1000, total, 989) < 0.10
    assert benchlib.mfu(1000, total, None) != benchlib.mfu(1000, total, None)  # NaN without a peak


def test_densenet121_forward_flops_at_224(one_thread):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models import densenet121

    m = densenet121(weights=None).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m.features(torch.zeros(1, 3, 224, 224))  # the visual extractor uses the features only
    assert fc.get_total_flops() == pytest.approx(benchlib.DENSENET121_FLOPS_224, rel=0.05)


def test_transformer_flops_match_the_counter(one_thread):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertConfig, BertModel

    d, ff, n, T = 32, 64, 2, 7
    c = BertConfig(vocab_size=50, hidden_size=d, num_hidden_layers=n, num_attention_heads=2, intermediate_size=ff,
                   attn_implementation="eager")
    model = BertModel(c, add_pooling_layer=False).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(input_ids=torch.ones(1, T, dtype=torch.long))
    assert fc.get_total_flops() == benchlib.transformer_forward_flops(T, n * benchlib.bert_layer_params(d, ff), n, d)


# --- the device check --------------------------------------------------------------------------------------

def test_gpu_check_smoke(tmp_path):
    "bash benchmarks/gpu_check.sh --smoke: every step on CPU at tiny size, a summary naming the steps."
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--smoke", str(tmp_path)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    passed = summary.split("passed :")[1].splitlines()[0]
    for s in ("env", "train", "model", "generate", "pipeline"):
        assert f"{s}(" in passed, summary
    assert "FAILED" not in summary and "not run" not in summary
    for f in ("train.json", "model.json", "generate.json", "pipeline.json", "gpu.txt"):
        assert (tmp_path / f).stat().st_size > 0, f


def test_gpu_check_stops_at_the_first_failing_step(tmp_path):
    "A failing step ends the script with its exit code and a line naming it; later steps are not run."
    env = {**os.environ, "PYTHON": sys.executable}
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text(f'#!/bin/sh\ncase "$1" in *bench_train*) echo boom >&2; exit 7;; esac\n'
                                 f'exec {sys.executable} "$@"\n')
    (fake / "python").chmod(0o755)
    env["PYTHON"] = str(fake / "python")
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--smoke", "--only", "env,train,model",
                        str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 7, r.stdout + r.stderr
    assert "step 'train' FAILED: exit code 7" in r.stdout
    summary = (tmp_path / "out/summary.txt").read_text()
    assert "env(" in summary and "not run: model" in summary and "generate" not in summary


def test_gpu_check_step_over_its_time_limit_is_stopped(tmp_path):
    env = {**os.environ, "GPU_CHECK_TIME_SCALE": "0.001"}  # every limit 1 s
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nsleep 120\n")
    fake.chmod(0o755)
    env["PYTHON"] = str(fake)
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--smoke", "--only", "train",
                        str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 124 and "step 'train' FAILED: timed out after 1 s" in r.stdout, r.stdout + r.stderr
