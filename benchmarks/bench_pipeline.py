"""Input-pipeline throughput of one DataLoader worker on CPU, and how many workers feed 1,000 samples/s.

Usage: python benchmarks/bench_pipeline.py [--n 8] [--width 2500] [--height 3000] [--size 224] [--batch 64]
                                           [--words 100] [--repeats 3] [--target 1000] [--json FILE] [--smoke]

One process, one torch thread: what one worker does for one pre-training sample, timed per source
(best of --repeats passes over --n synthetic films of width x height, the size of a MIMIC-CXR JPEG):
  (a) memory-mapped cache (images.ImageCache): read the resized uint8 copy, random crop (the model normalises on the device);
  (b) full-size JPEG (data.load_image(path)): decode, resize, random crop;
  (c) the same JPEG through the loaders' path, data.load_image(path, size): PIL's draft mode lets the decoder
      scale by 1/2, 1/4 or 1/8 (the smallest scale whose shorter side is >= images.resize_for(size)), so far
      fewer pixels are produced and resized;
  (d) the Collator (masks.Collator, pre-training mode, --batch items of --words words): its cost per sample.
Printed per image source: ms per sample, samples/s per worker (the image plus its share of collation)
and the workers needed for --target samples/s; the speed-up of (c) over (b) and how far the draft-mode
image differs from the full decode after the resize. `--smoke` runs the same at a tiny size in seconds.
"""
import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clinical_bert.images import GreyToRGBNormalize, ImageCache, image_transform, load_image, resize_for


def write_films(out: Path, n: int, width: int, height: int, seed: int = 0) -> list[Path]:
    "n grey JPEGs of width x height: smooth shapes of a film plus pixel grain (quality 95)."
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        low = rng.integers(0, 255, (max(2, height // 128), max(2, width // 128)), dtype=np.uint8)  # ~13 px cells at 256
        x = np.asarray(Image.fromarray(low).resize((width, height), Image.BILINEAR), dtype=np.int16)
        x = np.clip(x + rng.integers(-8, 8, x.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        p = out / f"film{k:03d}.jpg"
        Image.fromarray(x).save(p, quality=95)
        paths.append(p)
    return paths


def per_item(paths, read, transform, repeats: int) -> float:
    "Seconds per image of read + transform, best of `repeats` passes."
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in paths:
            transform(torch.from_numpy(np.array(read(p)))[None])
        best = min(best, time.perf_counter() - t0)
    return best / len(paths)


def collate_per_sample(size: int, batch: int, words: int, repeats: int, vocab_size: int = 760) -> float:
    "Seconds per sample of masks.Collator (pre-training) on grey uint8 (1, size, size) items, as the data sets yield them."
    from clinical_bert.masks import Collator
    from clinical_bert.text import Vocab

    g = torch.Generator().manual_seed(0)
    vocab = Vocab([f"w{i}" for i in range(vocab_size - 5)])
    mesh = list(range(5, 5 + (vocab_size - 5) // 10))
    items = []
    for i in range(batch):
        ids = torch.randint(5, vocab_size, (words,), generator=g).tolist()
        items.append({"id": str(i), "image": torch.randint(0, 256, (1, size, size), generator=g, dtype=torch.uint8), "input_ids": ids,
                      "tags": [int(t in mesh) for t in ids], "labels": (torch.rand(14, generator=g) < 0.3).float()})
    collate = Collator(vocab, mesh, mode="pretrain", max_len=words)
    collate(items)  # warm-up
    best = float("inf")
    for _ in range(max(repeats, 3)):
        t0 = time.perf_counter()
        collate(items)
        best = min(best, time.perf_counter() - t0)
    return best / batch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="synthetic films")
    ap.add_argument("--width", type=int, default=2500, help="film width (px)")
    ap.add_argument("--height", type=int, default=3000, help="film height (px)")
    ap.add_argument("--size", type=int, default=224, help="model input size")
    ap.add_argument("--batch", type=int, default=64, help="Collator batch size")
    ap.add_argument("--words", type=int, default=100, help="words per report")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes (best kept)")
    ap.add_argument("--target", type=float, default=1000.0, help="samples/s the pipeline must feed")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--smoke", action="store_true", help="small sizes: 2 films of 1250 x 1500, batch 8, 20 words")
    a = ap.parse_args(argv)
    if a.smoke:
        a.n, a.width, a.height, a.batch, a.words, a.repeats = 2, 1250, 1500, 8, 20, 1
    torch.set_num_threads(1)
    side = resize_for(a.size)
    transform = image_transform(a.size, train=True)
    with tempfile.TemporaryDirectory(prefix="bench_pipeline-") as d:
        d = Path(d)
        paths = write_films(d / "films", a.n, a.width, a.height)
        cache = ImageCache(d / "cache", a.size)
        for p in paths:
            cache.get(p)  # built once, outside the timing
        t = {
            "cache": per_item(paths, cache.get, transform, a.repeats),
            "jpeg": per_item(paths, load_image, transform, a.repeats),
            "jpeg_draft": per_item(paths, lambda p: load_image(p, a.size), transform, a.repeats),
        }
        full = cache.resized(load_image(paths[0])).astype(np.float32)  # same resize, full vs draft decode
        draft = cache.resized(load_image(paths[0], a.size)).astype(np.float32)
        h, w = min(full.shape[0], draft.shape[0]), min(full.shape[1], draft.shape[1])
        diff = np.abs(full[:h, :w] - draft[:h, :w])
        draft_shape = load_image(paths[0], a.size).shape
        item = transform(torch.from_numpy(np.array(cache.get(paths[0])))[None])  # what a data set yields
        u8, f32 = item.nbytes, GreyToRGBNormalize()(item).nbytes  # the uint8 item; the float32 RGB one if the data set normalised
    coll = collate_per_sample(a.size, a.batch, a.words, a.repeats)
    print(f"{a.n} grey JPEGs of {a.width}x{a.height}, model input {a.size} px (resize to {side}), one thread; "
          f"Collator: batch {a.batch}, {a.words} words")
    print(f"draft mode decodes {a.width}x{a.height} at {draft_shape[1]}x{draft_shape[0]}; after the resize it "
          f"differs from the full decode by {diff.mean():.2f} grey levels on average (max {diff.max():.0f})")
    print(f"{'source':28s} {'image ms':>9s} {'+ collate ms':>12s} {'samples/s/worker':>17s} "
          f"{'workers for ' + format(a.target, '.0f') + '/s':>17s}")
    names = {"cache": "memory-mapped cache", "jpeg": "full-size JPEG", "jpeg_draft": "JPEG, draft mode"}
    rows = {}
    for k, s in t.items():
        rate = 1.0 / (s + coll)
        rows[k] = {"image_ms": 1e3 * s, "collate_ms": 1e3 * coll, "samples_s_per_worker": rate,
                   "workers_for_target": math.ceil(a.target / rate)}
        print(f"{names[k]:28s} {1e3 * s:9.2f} {1e3 * coll:12.3f} {rate:17.1f} {rows[k]['workers_for_target']:17d}")
    print(f"{'Collator alone':28s} {'':9s} {1e3 * coll:12.3f} {1 / coll:17.1f} {math.ceil(a.target * coll):17d}")
    ratio = t["jpeg"] / t["jpeg_draft"]
    print(f"draft-mode decoding: {ratio:.1f}x the full decode per image ({1e3 * t['jpeg']:.1f} -> "
          f"{1e3 * t['jpeg_draft']:.1f} ms); the cache: {t['jpeg'] / t['cache']:.0f}x")
    print(f"bytes per image sent to the device (measured on a transformed item, {tuple(item.shape)} "
          f"{item.dtype}): {u8:,} (uint8 x 1 channel, normalised on the device) instead of {f32:,} "
          f"(float32 x 3 channels normalised in the data set), {f32 / u8:.0f}x less")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "films": [a.n, a.width, a.height], "size": a.size, "batch": a.batch, "words": a.words,
            "target": a.target, "rows": rows, "collate_ms": 1e3 * coll, "draft_speedup": ratio,
            "draft_shape": list(draft_shape), "draft_mean_abs_diff": float(diff.mean()),
            "draft_max_abs_diff": float(diff.max()), "bytes_per_image": u8, "bytes_per_image_float32_rgb": f32}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
