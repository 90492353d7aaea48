"""Integration tests of `clinical_bert.learner` that need real processes.

- A training subprocess killed with SIGKILL at a random step (after its first checkpoint), or
  half-way through writing a checkpoint, resumes and ends with weights bit-identical to a run
  that was never interrupted (CPU, deterministic kernels, dropout on, a collate function that
  draws noise from its own generator), with 0 or 2 DataLoader workers.
- The collate function's draws differ across epochs, ranks and batches (so across workers),
  and do not depend on the number of workers.
- Device and worker defaults, the device-side non-finite guard, the host-sync count of one
  optimizer step, and `compile_visual`.
- Clinical-BERT itself (tiny preset, `masks.Collator` with its own generator) resumes bit-exact.
- Two CPU processes under `torchrun` with the gloo backend keep identical parameters and
  match one process with the doubled batch (the toy losses are means over the samples).

This file is also the child script: `python tests/test_learner.py train|ddp OUT_DIR ...`.
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1",
       "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
STEPS = 36  # train mode: 3 epochs x 12 optimizer steps (96 images, batch 4, 2 micro-batches per step)
CKPT_EVERY = 5


# ---------------------------------------------------------------- child side
class NoisyCollate:
    "default_collate plus image noise from its own generator (as masks.Collator draws masks from its own)."
    def __init__(self):
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, items):
        from torch.utils.data import default_collate
        b = default_collate(items)
        b["image"] = b["image"] + 0.1 * torch.randn(b["image"].shape, generator=self.generator)
        return b


def child(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "ddp"])
    ap.add_argument("out_dir")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--sleep", type=float, default=0.0)  # seconds after each optimizer step
    ap.add_argument("--die-in-save", type=int, default=0)  # SIGKILL itself inside the N-th checkpoint write
    ap.add_argument("--p-drop", type=float, default=None)  # dropout (default: 0.1 train, 0 ddp)
    ap.add_argument("--workers", type=int, default=0)  # DataLoader workers
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    import clinical_bert.distributed as D
    import clinical_bert.learner as L
    import clinical_bert.optim as O
    import clinical_bert.resume as R

    if a.die_in_save:  # the checkpoint files are written and synced; the kill lands before the rename
        calls, replace_dir = [0], R.replace_dir

        def dying_replace_dir(tmp, dst):
            calls[0] += 1
            if calls[0] == a.die_in_save:
                os.kill(os.getpid(), signal.SIGKILL)
            replace_dir(tmp, dst)
        R.replace_dir = dying_replace_dir

    def report(lrn, event):
        if event == "after_step" and lrn.is_main:
            print(f"step {lrn.step}", flush=True)
        if a.sleep:
            time.sleep(a.sleep)

    torch.manual_seed(0)
    if a.mode == "train":
        n, epochs, p_drop = 96, 3, 0.1
    else:
        n, epochs, p_drop = 64, 2, 0.0  # no dropout: one and two processes must compute the same function
    model = O.ToyTwoTask(p_drop=p_drop if a.p_drop is None else a.p_drop)
    cfg = O.TrainConfig(lr=1e-2, lr_visual=5e-3, epochs=epochs, batch_size=a.batch, accum_steps=2,
                        ckpt_every=CKPT_EVERY if a.mode == "train" else 3, log_every=1, out_dir=a.out_dir,
                        progress=False, deterministic=True, num_workers=a.workers)
    collate = NoisyCollate() if a.mode == "train" else None  # ddp: one and two processes must see the same inputs
    lrn = L.Learner(model, O.ToyImages(n, seed=1), O.ToyImages(16, seed=2), collate_fn=collate, cfg=cfg,
                    callbacks=[report])
    lrn.fit()
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in D.unwrap(lrn.model).state_dict().items()},
              str(Path(a.out_dir) / f"final-rank{lrn.rank}.safetensors"))
    print("done", flush=True)


# ---------------------------------------------------------------- test side
def run_child(*args, **kw):
    return subprocess.run([sys.executable, str(HERE), *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=180, **kw)


def weights(path):
    from safetensors.torch import load_file
    return load_file(str(path))


def assert_bit_identical(a, b, what):
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"{what}: tensors differ: {diff}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    "Final weights of an uninterrupted run."
    out = tmp_path_factory.mktemp("reference")
    r = run_child("train", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("step ") == STEPS
    return weights(out / "final-rank0.safetensors")


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_at_random_step_then_resume_is_bit_exact(tmp_path, reference, workers):
    "The reference ran without workers: with per-batch seeds the worker count changes nothing either."
    kill_at = random.Random(time.time_ns()).randint(CKPT_EVERY + 1, STEPS - 3)
    proc = subprocess.Popen([sys.executable, str(HERE), "train", str(tmp_path), "--sleep", "0.02",
                             "--workers", str(workers)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == f"step {kill_at}":
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"the child was not killed (rc {proc.returncode}): {proc.stderr.read()[-2000:]}"
    from clinical_bert.resume import latest_checkpoint
    last = latest_checkpoint(tmp_path)
    assert last is not None and int(last.name.split("-")[1]) >= CKPT_EVERY
    assert not (tmp_path / "final-rank0.safetensors").exists()
    r = run_child("train", tmp_path, "--workers", workers)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from {last}" in r.stderr + r.stdout
    assert_bit_identical(reference, weights(tmp_path / "final-rank0.safetensors"),
                         f"{workers} workers, killed at step {kill_at}")


def test_sigkill_inside_checkpoint_write_then_resume_is_bit_exact(tmp_path, reference):
    r = run_child("train", tmp_path, "--die-in-save", 3)  # checkpoints at steps 5, 10, then dies writing 15
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    ck = tmp_path / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == [".tmp-step-00000015-" + p.name.rsplit("-", 1)[1]
                                                    for p in ck.glob(".tmp-*")] + ["step-00000005", "step-00000010"]
    r = run_child("train", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not list(ck.glob(".tmp-*")), "the interrupted write was not cleaned up"
    assert_bit_identical(reference, weights(tmp_path / "final-rank0.safetensors"), "killed inside a checkpoint write")


def test_ddp_two_gloo_processes_match_one_process_with_doubled_batch(tmp_path):
    ddp, one = tmp_path / "ddp", tmp_path / "one"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(HERE), "ddp", str(ddp), "--batch", "4"], env=ENV, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    r1 = run_child("ddp", one, "--batch", "8")
    assert r1.returncode == 0, r1.stderr[-3000:]
    w0, w1, w = (weights(ddp / "final-rank0.safetensors"), weights(ddp / "final-rank1.safetensors"),
                 weights(one / "final-rank0.safetensors"))
    assert_bit_identical(w0, w1, "rank 0 vs rank 1")
    torch.manual_seed(0)
    from clinical_bert.optim import ToyTwoTask
    init = ToyTwoTask().state_dict()
    for k in w:
        assert not torch.equal(w[k], init[k]), f"{k} did not train"
        torch.testing.assert_close(w0[k], w[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: DDP vs one process: {m}")
    # only rank 0 wrote: one progress stream, one TensorBoard file, each metric row once
    assert r.stdout.count("step 8\n") == 1
    assert len(list((ddp / "tb").glob("events.out.tfevents.*"))) == 1
    import pandas as pd
    m, m1 = pd.read_csv(ddp / "metrics.csv"), pd.read_csv(one / "metrics.csv")
    assert not m.duplicated(["step", "split", "name"]).any()
    key = ["step", "split", "name"]
    both = m.merge(m1, on=key).query("name != 'samples_per_s'")
    assert len(both) == len(m1) - (m1.name == "samples_per_s").sum()
    torch.testing.assert_close(torch.tensor(both.value_x.values), torch.tensor(both.value_y.values),
                               rtol=1e-4, atol=1e-5)  # logged losses (averaged over ranks) and lrs agree
    from clinical_bert.resume import list_checkpoints
    assert [p.name for p in list_checkpoints(ddp)] == [p.name for p in list_checkpoints(one)]


def test_clinical_bert_with_collator_resumes_bit_exact(tmp_path):
    "The real model (tiny preset) and masks.Collator through the loop: a crash at step 3 and a resume give the same weights."
    from clinical_bert.learner import Learner
    from clinical_bert.masks import Collator
    from clinical_bert.config import ClinicalBertConfig
    from clinical_bert.model import ClinicalBert
    from clinical_bert.optim import TrainConfig
    from clinical_bert.text import Vocab
    words = "the heart is normal no pleural effusion pneumothorax lungs are clear mild cardiomegaly opacity".split()
    vocab, mesh = Vocab(words), {"effusion", "pneumothorax", "cardiomegaly", "opacity"}

    def data(n, seed):
        g = torch.Generator().manual_seed(seed)
        out = []
        for i in range(n):
            ws = [words[j] for j in torch.randint(len(words), (6,), generator=g)] + ["effusion"]
            out.append({"id": str(i), "image": torch.randn(3, 32, 32, generator=g),
                        "input_ids": [vocab.stoi[w] for w in ws], "tags": [int(w in mesh) for w in ws],
                        "labels": torch.where(torch.rand(14, generator=g) < 0.3, 1.0, float("nan"))})
        return out

    class Crash(Exception):
        pass

    def run(out, crash=None):
        def cb(lrn, event):
            if event == "after_step" and lrn.step == crash:
                raise Crash
        torch.manual_seed(0)
        model = ClinicalBert(ClinicalBertConfig.tiny(vocab_size=len(vocab)))  # dropout on
        cfg = TrainConfig(lr=1e-3, lr_visual=5e-4, epochs=2, batch_size=4, accum_steps=2, ckpt_every=2,
                          out_dir=str(out), progress=False, deterministic=True, tensorboard=False)
        lrn = Learner(model, data(24, 1), data(8, 2), collate_fn=Collator(vocab, [vocab.stoi[w] for w in mesh]),
                      cfg=cfg, callbacks=[cb])
        lrn.fit()
        return lrn

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = run(tmp_path / "a")
        with pytest.raises(Crash):
            run(tmp_path / "b", crash=3)
        b = run(tmp_path / "b")
    finally:
        torch.set_num_threads(n)
    assert b.resumed_from.name == "step-00000002"
    assert_bit_identical(a.model.state_dict(), b.model.state_dict(), "ClinicalBert resumed at step 2")
    assert set(a.history[-1]) >= {"valid_loss", "valid_s2s", "valid_bi", "valid_mmm", "valid_cd", "valid_imm"}
    assert a.history == b.history
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "a" / "best").iterdir()}
    groups = {g["name"]: g["param_names"] for g in a.opt.param_groups}
    assert all(n.startswith("visual.backbone.") for n in groups["visual/decay"] + groups["visual/no_decay"])
    assert any("LayerNorm" in n for n in groups["rest/no_decay"])


@pytest.mark.skipif("slow" not in os.environ.get("CLINICAL_BERT_TEST_FLAGS", "data").split(),
                    reason="slow (three torchrun launches); CLINICAL_BERT_TEST_FLAGS='data slow' runs it")
def test_ddp_sigkill_inside_checkpoint_write_then_resume_is_bit_exact(tmp_path):
    "Each rank resumes its own RNG stream (dropout on) and the data position; rank 0 dies writing a checkpoint."
    def torchrun(out, *extra):
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               str(HERE), "ddp", str(out), "--p-drop", "0.1", *extra], env=ENV, capture_output=True,
                              text=True, timeout=240)
    r = torchrun(tmp_path / "ref")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    # 4 optimizer steps per epoch: a checkpoint at step 3 (mid-epoch), then rank 0 dies writing step 4's (epoch end)
    r = torchrun(tmp_path / "run", "--die-in-save", "2")
    assert r.returncode != 0 and not (tmp_path / "run" / "final-rank0.safetensors").exists()
    r = torchrun(tmp_path / "run")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "checkpoints/step-00000003 (epoch 1, batch 6, step 3)" in r.stdout + r.stderr
    for rank in (0, 1):
        assert_bit_identical(weights(tmp_path / "ref" / f"final-rank{rank}.safetensors"),
                             weights(tmp_path / "run" / f"final-rank{rank}.safetensors"), f"rank {rank}")

# ---------------------------------------------------------------- streams, devices, syncs (in-process)
def _collator_and_items():
    from clinical_bert.masks import Collator
    from clinical_bert.text import Vocab
    words = "the heart is normal no pleural effusion lungs are clear mild cardiomegaly".split()
    vocab = Vocab(words)
    ids = [vocab.stoi[w] for w in words]
    item = {"id": "x", "image": torch.zeros(3, 8, 8), "input_ids": ids, "tags": [int(w == "effusion") for w in words],
            "labels": torch.zeros(14)}
    return Collator(vocab, [vocab.stoi["effusion"]]), [dict(item, id=str(i)) for i in range(16)]


def _draws(workers, epoch, rank=0, world_size=1):
    "masks.Collator's draws for the batches of `epoch` on `rank` through the Learner's loader (identical items)."
    from clinical_bert import learner as L, optim as O
    col, items = _collator_and_items()
    lrn = L.Learner(O.ToyTwoTask(), items, collate_fn=col, cfg=O.TrainConfig(batch_size=4, num_workers=workers))
    lrn.device, lrn.rank, lrn.world_size = torch.device("cpu"), rank, world_size
    loader, _ = lrn._loader(items, epoch, 0, True)
    out = [torch.cat([b["task"][:, None], b["text_ids"], b["text_targets"]], 1) for b in loader]
    lrn._loaders.clear()
    return out


def test_collator_draws_differ_across_epochs_ranks_and_workers_and_match_for_any_worker_count():
    "Every item is the same report, so a difference between two batches can only come from the draws."
    e0, e1 = _draws(2, 0), _draws(2, 1)
    assert len(e0) == 4
    for a, b in zip(e0, e1):  # the same batch position in two epochs (the old per-worker seed repeated these)
        assert not torch.equal(a, b)
    assert not torch.equal(e0[0], e0[1])  # batches 0 and 1 come from worker 0 and worker 1
    r0, r1 = _draws(2, 0, 0, 2), _draws(2, 0, 1, 2)
    for a, b in zip(r0, r1):  # the two ranks' k-th batches
        assert not torch.equal(a, b)
    for a, b in zip(e0, _draws(0, 0)):  # no workers, or two: the same masks
        assert torch.equal(a, b)


def test_collator_crosses_into_spawned_workers():
    "Inside reproduce's side-by-side training processes DataLoader workers are spawned, so the Collator is pickled."
    import pickle
    col, items = _collator_and_items()
    col.generator.manual_seed(7)
    copy = pickle.loads(pickle.dumps(col))  # its generator's state travels with it
    assert torch.equal(torch.rand(5, generator=copy.generator), torch.rand(5, generator=col.generator))
    batches = [[b["text_ids"] for b in torch.utils.data.DataLoader(items, batch_size=4, num_workers=2, collate_fn=col,
                                                                    multiprocessing_context="spawn")] for _ in range(2)]
    assert len(batches[0]) == 4  # a Generator pickled as such kills the worker ("unable to resize file")
    assert all(torch.equal(a, b) for a, b in zip(*batches))  # each worker's stream is seeded, run after run


def test_bare_cuda_means_cuda_local_rank(monkeypatch):
    from clinical_bert.learner import pick_device
    from clinical_bert.optim import TrainConfig
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device(TrainConfig(device="cuda")) == torch.device("cuda", 1)
    assert pick_device(TrainConfig(device="cuda:0")) == torch.device("cuda", 0)
    assert pick_device(TrainConfig(device="cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(TrainConfig()) == torch.device("cuda", 1)


def test_workers_persist_and_prefetch(tmp_path):
    from clinical_bert import distributed as D, learner as L, optim as O
    lrn = L.Learner(O.ToyTwoTask(), O.ToyImages(32), cfg=O.TrainConfig(batch_size=8, num_workers=2, prefetch_factor=3))
    lrn.device = torch.device("cpu")
    dl, n = lrn._loader(lrn.train_data, 0, 1, True)
    assert (dl.num_workers, dl.persistent_workers, dl.prefetch_factor, n, len(dl)) == (2, True, 3, 4, 3)
    assert lrn._loader(lrn.train_data, 1, 0, True)[0] is dl  # one training loader for the whole fit
    assert L.Learner(O.ToyTwoTask(), O.ToyImages(32)).cfg.num_workers is None  # resolved per device
    assert D.resolve_workers(None, torch.device("cpu")) == 0 and D.resolve_workers(None, torch.device("cuda", 0), 16, 2) == 8


def test_tasks_present_is_decided_on_the_cpu_and_kept_by_to_device():
    from clinical_bert.distributed import to_device
    from clinical_bert.learner import count_syncs
    col, items = _collator_and_items()
    b = col(items[:8])
    names = ("s2s", "bi", "mmm")
    assert b["tasks_present"] == tuple(names[t] for t in sorted(set(b["task"].tolist())))
    moved = to_device(b, torch.device("cpu"))
    assert type(moved["tasks_present"]) is tuple and moved["tasks_present"] == b["tasks_present"]
    assert count_syncs(lambda: set(moved["tasks_present"])) == {}


def _toy_learner(tmp_path, **kw):
    from clinical_bert import learner as L, optim as O
    torch.manual_seed(0)
    cfg = O.TrainConfig(**{**dict(lr=1e-2, lr_visual=1e-2, batch_size=8, accum_steps=2, log_every=100,
                                  out_dir=str(tmp_path), progress=False, tensorboard=False), **kw})
    return L.Learner(O.ToyTwoTask(), O.ToyImages(64, seed=1), cfg=cfg)


def _one_step(lrn, batches):
    from clinical_bert.distributed import to_device
    sums = {}
    for i, b in enumerate(batches):
        lrn._forward_backward(to_device(b, lrn.device), len(batches), i == len(batches) - 1, sums)
    return lrn._optimizer_step(sums, len(batches))


def test_one_optimizer_step_makes_no_host_sync(tmp_path):
    "Counted with count_syncs on the CPU: fused AdamW takes the finite flag on the device; the host reads it on log steps."
    import itertools
    from clinical_bert.learner import count_syncs
    lrn = _toy_learner(tmp_path)
    lrn.setup()
    batches = list(itertools.islice(lrn._loader(lrn.train_data, 0, 0, True)[0], 2))
    _one_step(lrn, batches)
    assert count_syncs(_one_step, lrn, batches) == {}
    assert count_syncs(_one_step, lrn, batches) == {}
    assert count_syncs(lrn._check_pending) == {"tolist": 1}  # both steps' flags in one read
    slow = _toy_learner(tmp_path / "unfused", fused=False)
    slow.setup()
    _one_step(slow, batches)
    assert count_syncs(_one_step, slow, batches)["tolist"] == 1  # without fusing, the flag is read every step


def test_non_finite_gradient_never_reaches_the_weights(tmp_path):
    "The check is read only at the epoch end here (log_every=100): the bad steps were skipped on the device."
    from clinical_bert.distributed import unwrap
    lrn, snap = _toy_learner(tmp_path, epochs=1), {}

    def cb(l, event):
        if event == "after_step" and l.step == 2:
            snap.update({k: v.clone() for k, v in unwrap(l.model).state_dict().items()})
            unwrap(l.model).nan_task = "b"
    lrn.callbacks.append(cb)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at optimizer step 3 \(epoch 1, micro-batches 5-6 "
                                                 r"of the epoch\): task 'b' = nan; that step did not update the weights"):
        lrn.fit()
    assert lrn.step == 4  # it ran on to the epoch end, where the flags are read
    assert_bit_identical(snap, unwrap(lrn.model).state_dict(), "weights after the non-finite steps")
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())


@pytest.mark.skipif("slow" not in os.environ.get("CLINICAL_BERT_TEST_FLAGS", "data").split(),
                    reason="slow (torch.compile builds C++ kernels on the CPU); CLINICAL_BERT_TEST_FLAGS='data slow' runs it")
def test_compile_visual_runs_a_step(tmp_path):
    from clinical_bert.distributed import unwrap
    lrn = _toy_learner(tmp_path, epochs=1, compile_visual=True)
    lrn.train_data = lrn.train_data.__class__(16, seed=1)
    lrn.fit()
    assert lrn.step == 1 and "model.safetensors" in {p.name for p in (tmp_path / "checkpoints" / "step-00000001").iterdir()}
    assert list(unwrap(lrn.model).state_dict()) == list(type(unwrap(lrn.model))().state_dict())  # names unchanged


if __name__ == "__main__":
    child()
