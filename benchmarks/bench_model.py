"""Training-step speed of ClinicalBert (forward + backward of the eq. 8 loss) against a straightforward baseline.

Usage: python benchmarks/bench_model.py [--presets tiny small paper] [--threads 1] [--steps 5]
                                        [--device cpu|cuda|cuda:N] [--json FILE]

For each preset, one pre-training batch (random images, random reports with MeSH words, the
Collator's task mix s2s : bi : MMM = 0.5 : 0.25 : 0.25) is timed through
  (a) ClinicalBert as shipped: SDPA attention, the boolean (B, 1, T, T) mask built once per
      forward, the LM head only at the predicted positions;
  (b) a baseline written the plain way, with the same weights: eager attention, fp32, the
      additive mask rebuilt for every layer, the LM head over every text position.
Both compute the same losses (checked: equal in eval mode). Printed: samples/s (median step time,
the two variants' steps alternating in one process so that other load on a shared machine hits
both alike), peak memory of each (each variant alone in its own process: CPU ru_maxrss minus the
RSS before the first training step; CUDA max_memory_allocated), and their ratios.
Batch sizes: tiny 8, small 32, paper 2 (few steps: BERT-base + DenseNet121 on CPU is slow).
A bare `cuda` is `cuda:LOCAL_RANK`. Each variant runs in a child process; when one dies the script stops
at once with the child's exit code and the tail of its stderr (benchlib.spawn).
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import RANDOM_INIT, is_cuda, resolve_device, run_main, spawn  # noqa: E402,F401  (spawn: bench_train imports it from here)

SETTINGS = {  # preset: (batch size, words per report, vocabulary size, timed steps)
    "tiny": (8, 20, 100, 20),
    "small": (32, 40, 1000, 10),
    "paper": (2, 60, 760, 3),
}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_batch(cfg, B, L, seed=0):
    from clinical_bert.masks import Collator
    from clinical_bert.text import Vocab

    vocab = Vocab([f"w{i}" for i in range(cfg.vocab_size - 5)])
    mesh_ids = list(range(5, 5 + max(1, (cfg.vocab_size - 5) // 10)))  # first tenth of the words: MeSH
    g = torch.Generator().manual_seed(seed)
    shape = (3, cfg.image_size, cfg.image_size) if cfg.n_views == 1 else (cfg.n_views, 3, cfg.image_size, cfg.image_size)
    items = []
    for i in range(B):
        ids = torch.randint(5, cfg.vocab_size, (L,), generator=g).tolist()
        items.append({"id": str(i), "image": torch.randn(shape, generator=g), "input_ids": ids,
                      "tags": [int(t in mesh_ids) for t in ids], "labels": (torch.rand(14, generator=g) < 0.3).float()})
    return Collator(vocab, mesh_ids, task_probs=cfg.task_probs, max_len=L, seed=seed)(items)


def baseline_loss(model, batch):
    "Eq. 8 the plain way: eager attention, additive masks rebuilt per layer, LM head on every text position."
    from clinical_bert.masks import IGNORE, TASK_NAMES, attention_mask

    c = model.config
    src, f = model.encode_source(batch["images"])
    x = torch.cat([src, model.word_embeddings(batch["text_ids"])], 1)
    B, T = x.shape[:2]
    R = f.shape[1]
    pos, seg = model.layout(R, 0, T, B, x.device)
    h = model.bert.embeddings(inputs_embeds=x, position_ids=pos, token_type_ids=seg)
    for layer in model.bert.encoder.layer:
        masks = []
        for b in range(B):  # per sample, per layer, on the activations' device
            m = attention_mask(R + 2, T - R - 2, "bi" if batch["task"][b] == 1 else "s2s").to(x.device)
            m[:, R + 2:] &= batch["text_valid"][b][None, :]
            masks.append(torch.zeros(T, T, device=x.device).masked_fill(~m, torch.finfo(torch.float32).min))
        h = layer(h, attention_mask=torch.stack(masks)[:, None])
        h = h[0] if isinstance(h, tuple) else h
    logits = model.lm_head(h[:, R + 2:])  # (B, L, vocab): every text position
    ce = F.cross_entropy(logits.transpose(1, 2), batch["text_targets"], reduction="none")  # (B, L)
    valid = batch["text_targets"] != IGNORE
    losses = {}
    for t in c.lm_tasks:
        m = valid & (batch["task"] == TASK_NAMES.index(t))[:, None]
        losses[t] = ce[m].mean() if m.any() else ce.sum() * 0
    if "cd" in c.tasks:
        losses["cd"] = model._cd_loss(h, x, batch, R)[0]
    if "imm" in c.tasks:
        losses["imm"] = model._imm_loss(h, f, batch, R)
    return sum(losses.values())


def _setup(preset, variant, device, state=None):
    from clinical_bert.config import ClinicalBertConfig
    from clinical_bert.model import ClinicalBert

    B, L, V, _ = SETTINGS[preset]
    torch.manual_seed(0)
    cfg = ClinicalBertConfig.preset(preset, vocab_size=V, attn_implementation="sdpa" if variant == "model" else "eager",
                                    **RANDOM_INIT)
    model = ClinicalBert(cfg).to(device)
    if state is not None:
        model.load_state_dict(state)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in make_batch(cfg, B, L).items()}
    loss = (lambda: model(batch).loss) if variant == "model" else (lambda: baseline_loss(model, batch))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()
    return model, batch, loss, step


def run_memory(preset, variant, threads, device, q):
    "Peak memory of one warm-up and one timed training step of one variant, alone in this process."
    torch.set_num_threads(threads)
    model, batch, loss, step = _setup(preset, variant, device)
    model.eval()
    with torch.no_grad():
        check = loss().item()  # same losses in eval mode (no dropout), compared by the parent
    model.train()
    before = rss_mb()
    if is_cuda(device):
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats()
    step(); step()
    if is_cuda(device):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    q.put(dict(peak_mb=peak, check=check, params=params, batch=len(batch["ids"]),
               T=batch["text_ids"].shape[1] + model.config.n_regions + 2))


def run_timing(preset, threads, steps, device, q):
    "Median step time of both variants, alternating steps so that other load hits both alike."
    torch.set_num_threads(threads)
    m, *_, step_m = _setup(preset, "model", device)
    _, _, _, step_b = _setup(preset, "baseline", device, m.state_dict())
    sync = torch.cuda.synchronize if is_cuda(device) else (lambda: None)
    times = {"model": [], "baseline": []}
    step_m(); step_b()  # warm-up
    for _ in range(steps or SETTINGS[preset][3]):
        for name, fn in (("model", step_m), ("baseline", step_b)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    B = SETTINGS[preset][0]
    q.put({k: B / sorted(v)[len(v) // 2] for k, v in times.items()})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"], choices=list(SETTINGS))
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run (machines here are shared)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (0: the preset's default)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda (= cuda:LOCAL_RANK) or cuda:N")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    a = ap.parse_args(argv)
    a.device = resolve_device(a.device)
    results = {}
    print(f"device {a.device}, {a.threads} thread(s); forward + backward + AdamW step of the eq. 8 loss")
    print(f"{'preset':6s} {'params':>8s} {'B':>3s} {'T':>4s} | {'model s/s':>9s} {'peak MB':>8s} | "
          f"{'baseline s/s':>12s} {'peak MB':>8s} | {'speed-up':>8s} {'mem ratio':>9s} | loss match")
    for preset in a.presets:
        m = spawn(run_memory, preset, "model", a.threads, a.device)
        b = spawn(run_memory, preset, "baseline", a.threads, a.device)
        speed = spawn(run_timing, preset, a.threads, a.steps, a.device)
        m["samples_s"], b["samples_s"] = speed["model"], speed["baseline"]
        same = abs(m["check"] - b["check"]) <= 1e-4 * max(1.0, abs(b["check"]))
        results[preset] = {"model": m, "baseline": b, "same_loss": same}
        print(f"{preset:6s} {m['params'] / 1e6:7.2f}M {m['batch']:3d} {m['T']:4d} | {m['samples_s']:9.1f} "
              f"{m['peak_mb']:8.0f} | {b['samples_s']:12.1f} {b['peak_mb']:8.0f} | "
              f"{m['samples_s'] / b['samples_s']:7.2f}x {m['peak_mb'] / max(b['peak_mb'], 1e-9):8.2f}x | "
              f"{'yes' if same else 'NO'} ({m['check']:.4f} vs {b['check']:.4f})", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"device": a.device, "results": results}, indent=1))


if __name__ == "__main__":
    sys.exit(run_main(main))
