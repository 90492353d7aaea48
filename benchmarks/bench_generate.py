"""Speed of cached versus uncached report generation (clinical_bert.generate) on the `paper` preset.

Usage:
  python benchmarks/bench_generate.py                      # CPU: batch 2, beam 1, max_len 60 and 100
  python benchmarks/bench_generate.py --max-len 100 --batch 8 --repeats 1   # CPU, the batch evaluation uses
  python benchmarks/bench_generate.py --beam 5 --repeats 1
  python benchmarks/bench_generate.py --device cuda --batch 64 --beam 5   # bf16 autocast, ms per image
  python benchmarks/bench_generate.py --preset tiny --batch 2 --max-len 4 --repeats 1   # a smoke run

The model is the paper preset (BERT-base, DenseNet121 at 224 px, vocabulary 760 as IU X-Ray)
with random weights: speed does not depend on the weights as long as both modes do the same
number of steps, so `[SEP]` is forbidden until max_len (min_len = max_len). For each max_len the
two modes run interleaved (cached, uncached, cached, ...) and the fastest of --repeats runs counts.
Cached decoding encodes the source once and then two positions per step; uncached re-encodes
`[CLS] v [SEP] w_1..w_t [MASK]` every step. The script also checks that both give the same tokens.
Goals (issue 7): cached >= 10x uncached at max_len 100 on a CPU; <= 5 ms per image at batch 64,
beam 5 on a GPU (the paper reports 0.1 s per image). A bare `--device cuda` is `cuda:LOCAL_RANK`.
"""
import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

from clinical_bert.generate import generate
from clinical_bert.config import ClinicalBertConfig
from clinical_bert.model import ClinicalBert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import RANDOM_INIT, resolve_device  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda (= cuda:LOCAL_RANK) or cuda:N")
    p.add_argument("--preset", default="paper", choices=["tiny", "small", "paper"], help="model size (paper: the timing)")
    p.add_argument("--batch", type=int, default=2, help="images per generate call")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy; the paper: 5)")
    p.add_argument("--max-len", type=int, nargs="+", default=[60, 100], help="words per report")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per mode and max_len (fastest counts)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (on a shared 2-core machine, 2 threads made every small op wait for a core)")
    p.add_argument("--vocab", type=int, default=760, help="vocabulary size (IU X-Ray: 760)")
    p.add_argument("--modes", default="cached,uncached", help="comma-separated: cached, uncached")
    p.add_argument("--dtype", default=None, help="autocast dtype: bf16 or fp32 (default: bf16 on cuda, fp32 on cpu)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p.parse_args(argv)


def timed(model, x, use_cache, max_len, beam, autocast, device):
    "(seconds, ids) of one generate call that runs all max_len steps."
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with autocast():
        ids = generate(model, x, beam_size=beam, max_len=max_len, min_len=max_len, use_cache=use_cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, ids


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(resolve_device(a.device))
    dtype = a.dtype or ("bf16" if device.type == "cuda" else "fp32")
    if dtype == "bf16":
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext
    modes = [m.strip() for m in a.modes.split(",")]
    torch.manual_seed(0)
    cfg = ClinicalBertConfig.preset(a.preset, vocab_size=a.vocab, max_text_len=max(a.max_len), **RANDOM_INIT)
    model = ClinicalBert(cfg).to(device).eval()
    x = torch.randn(a.batch, 3, cfg.image_size, cfg.image_size, device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}, {a.threads} threads"
    print(f"{a.preset} preset, random weights, {name}; batch {a.batch}, beam {a.beam}, {dtype}, "
          f"fastest of {a.repeats}; torch {torch.__version__}")
    timed(model, x[:1], True, 2, a.beam, autocast, device)  # warm-up (allocator, kernels)
    rows = []
    for L in a.max_len:
        best, ids = {m: float("inf") for m in modes}, {}
        for _ in range(a.repeats):
            for m in modes:  # interleaved, so that drifts of the machine hit both modes
                t, ids[m] = timed(model, x, m == "cached", L, a.beam, autocast, device)
                best[m] = min(best[m], t)
        same = ids["cached"] == ids["uncached"] if len(ids) == 2 else None
        rows.append((L, best, same))
    print(f"{'max_len':>7} " + " ".join(f"{m + ' img/s':>15} {m + ' ms/img':>16}" for m in modes)
          + ("   ratio  same tokens" if len(modes) == 2 else ""))
    for L, best, same in rows:
        line = f"{L:>7} " + " ".join(f"{a.batch / best[m]:>15.3f} {1e3 * best[m] / a.batch:>16.1f}" for m in modes)
        if len(modes) == 2:
            line += f"  {best['uncached'] / best['cached']:>6.1f}x  {same}"
        print(line)
    if a.json:
        Path(a.json).write_text(json.dumps({
            "device": name, "preset": a.preset, "batch": a.batch, "beam": a.beam, "dtype": dtype,
            "rows": [{"max_len": L, "same_tokens": same, **{f"{m}_ms_per_image": 1e3 * best[m] / a.batch for m in modes}}
                     for L, best, same in rows]}, indent=1))


if __name__ == "__main__":
    main()
