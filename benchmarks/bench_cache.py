"""Speed-up of the preprocessing cache (clinical_bert.images.ImageCache) over decoding the source images.

Usage: python benchmarks/bench_cache.py [--n 48] [--side 1024] [--size 224] [--epochs 2]

Writes a small folder of radiograph-sized images (the synthetic benchmark's MIMIC layout when
clinical_bert.synthetic exists, else random-texture PNG and JPEG files of --side pixels), then
times one epoch of reading every image
  (a) from the source: decode + resize + crop + normalise, as an uncached data set does each epoch,
  (b) from the cache: memory-mapped uint8 .npy + crop + normalise,
and prints the ratio. The one-off cost of building the cache is printed too. One CPU thread.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clinical_bert.images import ImageCache, image_transform, load_image


def write_images(out: Path, n: int, side: int, seed: int = 0) -> list[Path]:
    "Source images: the synthetic benchmark's films if available, else smooth random textures."
    try:
        from clinical_bert.synthetic import make_dataset

        make_dataset(out, n=n, seed=seed, layout="mimic", size=side)
        paths = sorted(p for p in out.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
        if paths:
            return paths[:n]
    except ImportError:
        pass
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        low = rng.integers(0, 255, (side // 16, side // 16), dtype=np.uint8)  # smooth, film-like texture
        x = np.asarray(Image.fromarray(low).resize((side, side), Image.BILINEAR), dtype=np.int16)
        x = np.clip(x + rng.integers(-8, 8, x.shape), 0, 255).astype(np.uint8)
        p = out / f"img{k:03d}.{'jpg' if k % 2 else 'png'}"
        Image.fromarray(x).save(p, quality=95)
        paths.append(p)
    return paths


def epoch(paths, read, transform) -> float:
    "Seconds for one pass reading and transforming every image."
    t0 = time.perf_counter()
    for p in paths:
        transform(torch.from_numpy(np.array(read(p)))[None])
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="number of source images")
    ap.add_argument("--side", type=int, default=1024, help="side of the random source images (px)")
    ap.add_argument("--size", type=int, default=224, help="model input size")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (best kept)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        paths = write_images(d / "src", args.n, args.side)
        shape = load_image(paths[0]).shape
        transform = image_transform(args.size, train=True)
        cache = ImageCache(d / "cache", args.size)
        t0 = time.perf_counter()
        for p in paths:
            cache.get(p)
        build = time.perf_counter() - t0
        src = min(epoch(paths, load_image, transform) for _ in range(args.epochs))
        hit = min(epoch(paths, cache.get, transform) for _ in range(args.epochs))
        resize = lambda x: cache.resized(x)  # the reading step alone: decode + resize vs memory-mapped read
        src_read = min(epoch(paths, load_image, lambda x: resize(x[0].numpy())) for _ in range(args.epochs))
        hit_read = min(epoch(paths, cache.get, lambda x: x) for _ in range(args.epochs))
        n = len(paths)
        print(f"{n} images of {shape[1]}x{shape[0]} ({', '.join(sorted({p.suffix for p in paths}))}), "
              f"model input {args.size} px, 1 thread")
        print(f"decode every epoch : {1e3 * src / n:7.2f} ms/item ({1e3 * src_read / n:.2f} ms reading + resizing)")
        print(f"memory-mapped cache: {1e3 * hit / n:7.2f} ms/item ({1e3 * hit_read / n:.2f} ms reading); "
              f"building it once: {1e3 * build / n:.2f} ms/image")
        print(f"speed-up per epoch: {src / hit:.1f}x for the whole item (crop + normalise included), "
              f"{src_read / hit_read:.0f}x for the reading step")


if __name__ == "__main__":
    main()
