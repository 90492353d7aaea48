"""What the benchmarks share: a child-process runner that fails fast, the device name, FLOP arithmetic.

- `spawn(target, *args, timeout=...)` runs `target(*args, queue)` in a fresh process and returns what it
  put on the queue. It polls the child: when the child dies (exception, segfault, out of memory) or runs
  past `timeout`, the parent raises `ChildFailed` within a second or so, with the exit code and the last
  lines of the child's stderr, instead of waiting on the queue forever.
- `resolve_device("cuda")` is `cuda:LOCAL_RANK` (0 outside torchrun): `torch.cuda.set_device` and DDP's
  `device_ids` need an index.
- `train_flops_per_sample` / `mfu`: model FLOPs utilisation = samples/s x training FLOPs per sample / the
  card's dense bf16 peak (`peak_tflops`, from a table of known cards or `--peak-tflops`).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import tempfile
import time
from pathlib import Path

# --- devices -------------------------------------------------------------------------------------------


def resolve_device(name: str) -> str:
    "'cuda' -> 'cuda:LOCAL_RANK' (0 without torchrun); anything else unchanged."
    if name == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return name


def is_cuda(device) -> bool:
    return str(device).split(":")[0] == "cuda"


# Random weights: speed does not depend on them, and a GPU machine has no network for ImageNet / BERT weights.
RANDOM_INIT = dict(backbone_weights="none", encoder_init="none")

# --- FLOP arithmetic -----------------------------------------------------------------------------------

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets, matched as
# substrings of torch.cuda.get_device_name(), first match wins (so "H100 PCIe" before "H100", "A100"
# before "A10", "L40S" before "L4"). Cards not listed: pass --peak-tflops.
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "GH200": 989.0,
    "H200": 989.0,
    "H100": 989.0,  # SXM ("NVIDIA H100 80GB HBM3")
    "H800": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "A10": 125.0,
    "L4": 121.0,
}

DENSENET121_FLOPS_224 = 5.7e9  # forward, one 224 px image: about 2.87 G multiply-adds, 2 FLOPs each


def peak_tflops(device_name: str, override: float | None = None) -> float | None:
    "Dense bf16 peak of a card by its name (None if unknown); `override` wins."
    if override:
        return float(override)
    for key, tf in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return tf
    return None


def transformer_forward_flops(n_tokens: int,  # T, positions of one sequence
                              params: float,  # weights of the encoder's matrix multiplications (no embeddings)
                              n_layers: int,  # encoder layers
                              d_model: int,  # hidden size
                              ) -> float:
    "Forward FLOPs of one sequence: 2 per weight per token, plus QK^T and AV (4 T d per token per layer)."
    return n_tokens * (2 * params + 4 * n_layers * n_tokens * d_model)


def bert_layer_params(d_model: int, d_ff: int) -> int:
    "Weights multiplied per token in one BERT layer: Q, K, V, output (4 d^2) and the feed-forward (2 d d_ff)."
    return 4 * d_model * d_model + 2 * d_model * d_ff


def train_flops_per_sample(image_flops: float,  # forward FLOPs of the visual backbone on one sample's films
                           n_tokens: int, n_layers: int, d_model: int, d_ff: int) -> float:
    "Training FLOPs of one sample: 3 x the forward (the backward costs twice the forward)."
    enc = transformer_forward_flops(n_tokens, n_layers * bert_layer_params(d_model, d_ff), n_layers, d_model)
    return 3 * (image_flops + enc)


def paper_train_flops(n_words: int = 100) -> float:
    "The paper preset: DenseNet121 at 224 px + BERT-base over 49 regions + [CLS] + [SEP] + the words."
    return train_flops_per_sample(DENSENET121_FLOPS_224, 49 + 2 + n_words, 12, 768, 3072)


def mfu(samples_per_s: float, flops_per_sample: float, peak: float | None) -> float:
    "Model FLOPs utilisation: achieved FLOP/s over the peak (TFLOP/s); NaN when the peak is unknown."
    if not peak:
        return float("nan")
    return samples_per_s * flops_per_sample / (peak * 1e12)


# --- child processes -----------------------------------------------------------------------------------


class ChildFailed(RuntimeError):
    "A benchmark child process died or timed out; `.exitcode` is its exit code (negative: killed by a signal)."

    def __init__(self, msg: str, exitcode: int | None):
        super().__init__(msg)
        self.exitcode = exitcode


def _child(target, args, q, err_path):
    "Child side: stderr to a file (the parent prints its tail on failure), then the target."
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 2)
    os.close(fd)
    target(*args, q)
    sys.stderr.flush()


def _tail(path: str, n: int = 25) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _describe(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"exit code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"exit code {code}"
    return f"exit code {code}"


def spawn(target, *args, timeout: float | None = 1800.0, poll: float = 0.2):
    "Run `target(*args, q)` in a spawned process; return its first `q.put`. Raise ChildFailed fast if it dies."
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    fd, err_path = tempfile.mkstemp(prefix="bench-child-", suffix=".stderr")
    os.close(fd)
    name = getattr(target, "__name__", str(target))
    p = ctx.Process(target=_child, args=(target, args, q, err_path))  # not a daemon: it may start DataLoader workers
    t0 = time.monotonic()
    p.start()
    try:
        while True:
            try:
                res = q.get(timeout=poll)
                break
            except queue.Empty:
                pass
            if not p.is_alive():
                try:  # the result may have been put just before a clean exit
                    res = q.get(timeout=1.0)
                    break
                except queue.Empty:
                    p.join()
                    raise ChildFailed(f"benchmark child {name}{args} died with {_describe(p.exitcode)} and no "
                                      f"result; last lines of its stderr:\n{_tail(err_path)}", p.exitcode) from None
            if timeout is not None and time.monotonic() - t0 > timeout:
                p.kill()
                p.join()
                raise ChildFailed(f"benchmark child {name}{args} timed out after {timeout:.0f} s (killed); last "
                                  f"lines of its stderr:\n{_tail(err_path)}", p.exitcode)
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
            p.join()
        elif p.exitcode:
            raise ChildFailed(f"benchmark child {name}{args} sent a result, then exited with "
                              f"{_describe(p.exitcode)}:\n{_tail(err_path)}", p.exitcode)
        return res
    finally:
        if p.is_alive():
            p.kill()
        os.unlink(err_path)


def run_main(main, argv=None) -> int:
    "Run a benchmark's main(); a ChildFailed ends it with one message and the child's exit code (1 if none)."
    try:
        main(argv)
    except ChildFailed as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = e.exitcode
        return 128 - code if code is not None and code < 0 else (code or 1)
    return 0
