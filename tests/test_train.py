"""The training commands as a user runs them: `clinical-bert pretrain | finetune-rrg | finetune-rd` in
subprocesses on the tiny synthetic benchmark.

- A pre-training killed with SIGKILL after its first checkpoint and started again with the same command
  resumes and ends with the same weights as a run that was never interrupted.
- Two CPU processes under `torchrun` (gloo) pre-train with DistributedDataParallel
  (find_unused_parameters: the CD head idles in batches without a bidirectional sample), fine-tune and
  write one model folder.
- The chain pretrain -> finetune-rrg -> finetune-rd through the console commands.
- `--cache-dir`: the first run writes the image cache, a second run reads it and trains to the same losses;
  under two gloo processes rank 0 writes it while the other waits.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1",
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
       "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
SCRIPT = Path(sys.executable).parent / "clinical-bert"  # the console script
CLI = [sys.executable, str(SCRIPT)]


def run(args, cwd, timeout=300):
    r = subprocess.run(CLI + list(map(str, args)), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    "The tiny synthetic benchmark, written once for the module."
    from clinical_bert.splits import synthetic_benchmark
    return synthetic_benchmark(tmp_path_factory.mktemp("data"), "tiny", seed=0)


PRE = ["pretrain", "--preset", "tiny", "--epochs", "2", "--ckpt-every", "2", "--no-progress"]


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def test_sigkill_then_same_command_resumes_to_the_same_weights(tmp_path, data):
    run(PRE + ["--data", data["mimic"], "--out", "ref"], tmp_path)
    cmd = CLI + PRE + ["--data", str(data["mimic"]), "--out", "run"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = tmp_path / "run" / "checkpoints"
    t0 = time.time()
    while not any(p.name.startswith("step-") for p in ckpts.glob("step-*")) and proc.poll() is None:
        assert time.time() - t0 < 120, "no checkpoint appeared"
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed; raise --epochs"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "best" / "vocab.json").exists()
    r = run(PRE + ["--data", data["mimic"], "--out", "run"], tmp_path)
    assert "resumed from" in r.stdout + r.stderr
    a, b = weights(tmp_path / "ref" / "best"), weights(tmp_path / "run" / "best")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "run" / "best" / "vocab.json").read_text() == (tmp_path / "ref" / "best" / "vocab.json").read_text()


def test_chain_through_the_commands(tmp_path, data):
    from clinical_bert.model_dir import load_model
    run(["pretrain", "--preset", "tiny", "--data", data["mimic"], "--out", "pre", "--epochs", "1", "--no-progress"], tmp_path)
    run(["finetune-rrg", "--preset", "tiny", "--data", data["iu"], "--init", "pre/best", "--out", "rrg", "--epochs", "1",
         "--no-progress"], tmp_path)
    run(["finetune-rd", "--preset", "tiny", "--data", data["nih"], "--init", "rrg/best", "--out", "rd", "--epochs", "1",
         "--no-progress"], tmp_path)
    pre, rrg, rd = (load_model(tmp_path / d / "best") for d in ("pre", "rrg", "rd"))
    assert (pre[0].config.mode, rrg[0].config.mode, rd[0].config.mode) == ("pretrain", "rrg", "rd")
    assert rrg[0].config.n_views == 2 and rd[0].config.n_views == 1
    # RRG moves onto IU X-Ray's own words (the paper's per-data-set vocabulary); RD keeps the RRG model's
    from clinical_bert.splits import load_splits
    iu_words = load_splits(data["iu"], "iu", "tiny")["train"].vocab.itos
    assert rrg[1].itos == iu_words != pre[1].itos and rd[1].itos == rrg[1].itos
    shared = [w for w in pre[1].itos if w in set(rrg[1].itos)]
    assert len(shared) > 5  # specials and the words both data sets know carry their rows across
    # --finetune-vocab pretrained keeps the pre-trained vocabulary, and the data are encoded with it
    run(["finetune-rrg", "--preset", "tiny", "--data", data["iu"], "--init", "pre/best", "--out", "rrg-pre", "--epochs",
         "1", "--finetune-vocab", "pretrained", "--no-progress"], tmp_path)
    assert load_model(tmp_path / "rrg-pre" / "best")[1].itos == pre[1].itos
    # a fine-tuning without a model folder is the no-pre-training row, and says how it was built
    r = run(["finetune-rd", "--preset", "tiny", "--data", data["nih"], "--out", "rd0", "--epochs", "1",
             "--bert", "none", "--no-progress"], tmp_path)
    assert "no pre-training: encoder random" in r.stdout


def test_bad_data_folder_names_the_missing_file(tmp_path, data):
    r = subprocess.run(CLI + ["pretrain", "--preset", "tiny", "--data", str(data["nih"]), "--out", "x"], cwd=tmp_path,
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "mimic-cxr-2.0.0-split.csv" in r.stderr


def test_ddp_two_gloo_processes(tmp_path, data):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(SCRIPT), "pretrain", "--preset", "tiny", "--data", str(data["mimic"]),
                        "--out", "ddp", "--epochs", "1", "--device", "cpu", "--no-progress", "--cache-dir", "cache"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.count("model folder:") == 1  # rank 0 only
    best = tmp_path / "ddp" / "best"
    assert (best / "vocab.json").is_file() and (best / "model.safetensors").is_file()
    import csv
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")))
    assert any(r["name"] == "cd" for r in rows) and any(r["name"] == "valid_loss" for r in rows)
    assert any((tmp_path / "cache").rglob("*.npy")) and not any((tmp_path / "cache").rglob("*.part.npy"))


def test_cache_dir_written_once_then_reused(tmp_path, data):
    import csv
    cache = tmp_path / "cache"
    args = ["pretrain", "--preset", "tiny", "--data", data["mimic"], "--epochs", "1", "--threads", "1",
            "--no-progress", "--cache-dir", cache]
    run(args + ["--out", "a"], tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}
    assert len(stamps) >= 100 and not any(".part" in p.name for p in stamps)  # one film per study of 160
    run(args + ["--out", "b"], tmp_path)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")} == stamps  # read, not written again
    losses = lambda d: [(r["step"], r["name"], r["value"]) for r in csv.DictReader(open(tmp_path / d / "metrics.csv"))
                        if r["name"] != "samples_per_s"]  # every value but the timing
    assert losses("a") == losses("b") and len(losses("a")) > 5


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory):
    "A MIMIC-CXR-layout benchmark at the paper's 224 px cut to 8 training and 2 validation films (two DDP steps)."
    import csv
    from clinical_bert.splits import synthetic_benchmark
    d = synthetic_benchmark(tmp_path_factory.mktemp("paper"), "paper", seed=0, layouts=("mimic",),
                            n_samples={"mimic": 100})["mimic"]
    split = d / "mimic-cxr-2.0.0-split.csv"
    rows = list(csv.DictReader(open(split)))
    keep = [r for r in rows if r["split"] == "train"][:8] + [r for r in rows if r["split"] == "validate"][:2]
    assert len(keep) == 10, "the 100-study benchmark has no validation film"
    with open(split, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return d


def test_ddp_paper_shapes_two_gloo_processes(tmp_path, paper_data):
    "Two steps of paper-shape pre-training (224 px, DenseNet121, BERT-base 12 x 768, 100 words) as two gloo processes."
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(SCRIPT), "pretrain", "--preset", "paper", "--data", str(paper_data), "--bert", "none",
                        "--backbone-weights", "none", "--out", "ddp-paper", "--epochs", "1", "--batch-size", "2",
                        "--accum-steps", "1", "--device", "cpu", "--threads", "1", "--no-progress"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    from clinical_bert.model_dir import load_model
    import csv
    model, vocab = load_model(tmp_path / "ddp-paper" / "best")
    c = model.config
    assert (c.image_size, c.hidden_size, c.num_hidden_layers, c.max_text_len, c.n_regions) == (224, 768, 12, 100, 49)
    assert (c.backbone_weights, c.encoder_init) == ("none", "none")  # the opt-out is recorded
    steps = {int(row["step"]) for row in csv.DictReader(open(tmp_path / "ddp-paper" / "metrics.csv")) if row["name"] == "loss"}
    assert max(steps) == 2, steps  # 8 films / (2 processes x 2 per batch) = 2 optimizer steps
