"""Training throughput of the full Clinical-BERT training step through `learner.Learner`, per preset.

Usage: python benchmarks/bench_train.py [--presets tiny small] [--paper] [--steps N] [--batch B] [--threads 1]
                                        [--device cpu|cuda|cuda:N] [--precision fp32|bf16]
                                        [--peak-tflops T] [--json FILE]

What is timed is what `train.pretrain` runs: the Collator (task sampling s2s : bi : MMM =
0.5 : 0.25 : 0.25, MLM / MMM masking, padding) over in-memory items (random images, random reports
with MeSH words), the eq. 8 loss, backward, gradient clipping, AdamW with its parameter groups, the
schedule, per-task loss logging. Side by side in one run:
  (a) ClinicalBert as shipped (SDPA, the mask built once per forward, LM head on predicted positions);
  (b) the straightforward baseline of benchmarks/bench_model.py (eager attention, additive masks rebuilt
      per layer, the LM head on every text position), same weights, through the same Learner.
Printed per preset: samples/s (median of the Learner's logged rates after a warm-up), peak memory of
each variant alone in its own process (CPU: max RSS minus RSS before training; CUDA:
max_memory_allocated), and their ratios. The FLOPs of one training sample are counted with
torch.utils.flop_counter (forward + backward of the model variant), and for the paper preset also
estimated by hand (benchlib.paper_train_flops: DenseNet121 at 224 px 5.7 GFLOP + BERT-base over 151
positions, 2 FLOPs per weight per token + attention, 26.5 GFLOP, forward; training 3x: 96.6 GFLOP).
Model FLOPs utilisation = samples/s x FLOPs per sample / the card's dense bf16 peak (benchlib's table by
device name, e.g. 989 TFLOP/s for an H100 SXM or H200; `--peak-tflops` for other cards). The paper
reports about 50 samples/s per RTX 3090.

`--paper` adds the paper preset (BERT-base + DenseNet121 at 224 px, 100 words) and is meant for a GPU
(`--device cuda --precision bf16`). A bare `cuda` is `cuda:LOCAL_RANK`. Each variant runs in a child
process; when one dies the script stops at once with the child's exit code and stderr tail.
"""
import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import baseline_loss, rss_mb  # noqa: E402  (same baseline as the model benchmark)
from benchlib import RANDOM_INIT, is_cuda, mfu, paper_train_flops, peak_tflops, resolve_device, run_main, spawn  # noqa: E402

SETTINGS = {  # preset: (micro-batch, words per report, vocabulary size, optimizer steps timed)
    "tiny": (8, 20, 100, 30),
    "small": (32, 60, 1000, 12),
    "paper": (64, 100, 760, 12),
}
PAPER_SAMPLES_PER_GPU = 50.0  # 2 x RTX 3090, 48 h for 50 epochs of MIMIC-CXR


def make_items(cfg, n, L, seed=0):
    "n data set items as the loaders give them: image, input_ids, tags (MeSH = the first tenth of the words), labels."
    g = torch.Generator().manual_seed(seed)
    mesh = set(range(5, 5 + max(1, (cfg.vocab_size - 5) // 10)))
    shape = (3, cfg.image_size, cfg.image_size)
    items = []
    for i in range(n):
        ids = torch.randint(5, cfg.vocab_size, (L,), generator=g).tolist()
        items.append({"id": str(i), "image": torch.randn(shape, generator=g), "input_ids": ids,
                      "tags": [int(t in mesh) for t in ids], "labels": (torch.rand(14, generator=g) < 0.3).float()})
    return items, sorted(mesh)


def build(preset, variant, device, batch=0):
    from clinical_bert.masks import Collator
    from clinical_bert.config import ClinicalBertConfig
    from clinical_bert.model import ClinicalBert, ClinicalBertOutput
    from clinical_bert.text import Vocab

    B, L, V, _ = SETTINGS[preset]
    B = batch or B
    torch.manual_seed(0)
    cfg = ClinicalBertConfig.preset(preset, vocab_size=V, attn_implementation="sdpa" if variant == "model" else "eager",
                                    **RANDOM_INIT)

    class Baseline(ClinicalBert):
        def forward(self, batch):
            loss = baseline_loss(self, batch)
            return ClinicalBertOutput(loss, {"loss": loss.detach()})

    model = (ClinicalBert if variant == "model" else Baseline)(cfg)
    vocab = Vocab([f"w{i}" for i in range(V - 5)])
    return model, vocab, cfg, B, L


def run_variant(preset, variant, steps, threads, device, precision, batch, q):
    "Train `steps` optimizer steps (after 3 warm-up steps) in this process; samples/s, peak memory, FLOPs."
    from clinical_bert.learner import Learner
    from clinical_bert.masks import Collator
    from clinical_bert.optim import TrainConfig

    torch.set_num_threads(threads)
    model, vocab, cfg, B, L = build(preset, variant, device, batch)
    warm = 3
    items, mesh = make_items(cfg, B * (steps + warm), L)
    collate = Collator(vocab, mesh, mode="pretrain", task_probs=cfg.task_probs, max_len=L)
    flops = count_flops(model, collate(items[:B]), device) / B if variant == "model" else float("nan")
    out = tempfile.mkdtemp(prefix="bench_train-")
    tc = TrainConfig(epochs=1, batch_size=B, out_dir=out, progress=False, tensorboard=False, log_every=1,
                     device=device, precision=precision, min_free_bytes=0, find_unused_parameters=True)
    before = rss_mb()
    if is_cuda(device):
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats()
    Learner(model, items, None, collate, tc).fit()
    peak = (torch.cuda.max_memory_allocated() / 2**20 if is_cuda(device)
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before)
    import csv
    rates = [float(r["value"]) for r in csv.DictReader(open(Path(out) / "metrics.csv"))
             if r["name"] == "samples_per_s"][warm:]
    q.put(dict(samples_s=sorted(rates)[len(rates) // 2], peak_mb=peak, flops=flops,
               params=sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())))


def count_flops(model, batch, device) -> float:
    "Forward + backward FLOPs of one training step on `batch` (torch's FLOP counter)."
    from torch.utils.flop_counter import FlopCounterMode

    from clinical_bert.distributed import to_device
    model.to(device).train()
    b = to_device(batch, torch.device(device))
    with FlopCounterMode(display=False) as fc:
        model(b).loss.backward()
    model.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=list(SETTINGS))
    ap.add_argument("--paper", action="store_true", help="add the paper preset (a GPU job)")
    ap.add_argument("--steps", type=int, default=0, help="timed optimizer steps (0: the preset's default)")
    ap.add_argument("--batch", type=int, default=0, help="micro-batch (0: the preset's default)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (machines here are shared)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu, cuda (= cuda:LOCAL_RANK) or cuda:N")
    ap.add_argument("--precision", default=None, choices=["fp32", "bf16"], help="default: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the card's dense bf16 peak in TFLOP/s (default: benchlib's table by device name)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    a = ap.parse_args(argv)
    a.device = resolve_device(a.device)
    presets = list(dict.fromkeys(a.presets + (["paper"] if a.paper else [])))
    cuda = is_cuda(a.device)
    prec = a.precision or ("bf16" if cuda else "fp32")
    name = torch.cuda.get_device_name(a.device) if cuda else f"CPU, {a.threads} thread(s)"
    peak = peak_tflops(name, a.peak_tflops) if cuda else a.peak_tflops
    print(f"{name}, {prec}; Learner step: Collator + eq. 8 loss + backward + clipping + AdamW groups + schedule")
    print(f"peak for MFU: {f'{peak:.0f} TFLOP/s' if peak else 'unknown (pass --peak-tflops; MFU not printed)'}")
    print(f"{'preset':6s} {'params':>8s} {'B':>3s} | {'model s/s':>9s} {'peak MB':>8s} | {'baseline s/s':>12s} "
          f"{'peak MB':>8s} | {'speed-up':>8s} {'mem ratio':>9s} | {'GFLOP/sample':>12s} {'MFU':>6s}")
    results = {}
    for preset in presets:
        steps = a.steps or SETTINGS[preset][3]
        m = spawn(run_variant, preset, "model", steps, a.threads, a.device, prec, a.batch)
        b = spawn(run_variant, preset, "baseline", steps, a.threads, a.device, prec, a.batch)
        util = mfu(m["samples_s"], m["flops"], peak)
        results[preset] = {"model": m, "baseline": b, "mfu": util, "peak_tflops": peak, "device": name,
                           "precision": prec}
        print(f"{preset:6s} {m['params'] / 1e6:7.2f}M {a.batch or SETTINGS[preset][0]:3d} | {m['samples_s']:9.1f} {m['peak_mb']:8.0f} | "
              f"{b['samples_s']:12.1f} {b['peak_mb']:8.0f} | {m['samples_s'] / b['samples_s']:7.2f}x "
              f"{m['peak_mb'] / max(b['peak_mb'], 1e-9):8.2f}x | {m['flops'] / 1e9:12.2f} "
              f"{'' if util != util else f'{100 * util:5.1f}%'}", flush=True)
        if preset == "paper":
            est_flops = paper_train_flops(SETTINGS["paper"][1])
            est = mfu(m["samples_s"], est_flops, peak)
            results[preset]["hand_count_gflop"], results[preset]["mfu_hand_count"] = est_flops / 1e9, est
            print(f"       paper preset: {m['samples_s']:.0f} samples/s = {m['samples_s'] / PAPER_SAMPLES_PER_GPU:.1f}x "
                  f"the paper's ~{PAPER_SAMPLES_PER_GPU:.0f}/s per RTX 3090; MFU "
                  f"{'n/a' if est != est else f'{100 * est:.1f}%'} with the hand count of {est_flops / 1e9:.1f} "
                  f"GFLOP/sample (goal: >= 1000 samples/s on one H100-class GPU)")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(run_main(main))
