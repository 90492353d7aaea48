"""Speed of the synthetic chest-radiograph benchmark (clinical_bert.synthetic) on one CPU core.

Usage: python benchmarks/bench_synthetic.py [--n 200] [--size 256] [--seed 0] [--dir /dev/shm]

Times, in one process:
  (a) baseline: rendering films over the whole frame at once (strip = size),
  (b) rendering in strips of 64 rows (the default: cache-sized temporaries, lungs drawn in their box only),
  (c) make_dataset end to end (render + JPEG/PNG + masks + CSV/JSON) for each layout, one worker,
and prints films per second (wall clock, and CPU time of this process, which other jobs on a shared machine
disturb less), the strip speed-up (b / a) and the ratio to the 100 films/s target. `--dir` chooses where (c)
writes: creating files and folders costs kernel time that depends on the file system (tmpfs vs a disk).
The studies are the data set's own (about 30% normal, the rest with 1-4 findings).
"""
import argparse
import os
import tempfile
import time

import numpy as np

from clinical_bert.synth_render import render
from clinical_bert.synthetic import LAYOUTS, make_dataset, make_study, patient_index

TARGET = 100.0  # films per second on one core at 256 px (issue 4)


def studies(n, seed, size):
    return [make_study(seed, i, p, k, size) for i, (p, k) in enumerate(patient_index(seed, n))]


def films_per_s(sts, strip, repeat=2):
    "Best of `repeat` timings of rendering every study's first film: (wall clock, CPU time) films per second."
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        for s in sts:
            render(s["pt"], s["findings"], s["views"][0], strip=strip)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    return len(sts) / best, len(sts) / best_cpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="folder for make_dataset's output (default: the system's temp folder)")
    a = ap.parse_args(argv)
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    except (AttributeError, OSError):
        pass
    sts = studies(a.n, a.seed, a.size)
    render(sts[0]["pt"], sts[0]["findings"], sts[0]["views"][0])  # warm-up (noise table)
    whole, whole_cpu = films_per_s(sts, strip=a.size)
    strips, strips_cpu = films_per_s(sts, strip=64)
    print(f"render {a.n} films at {a.size} px, one core (wall clock / CPU time):")
    print(f"  whole frame (baseline): {whole:7.1f} / {whole_cpu:7.1f} films/s")
    print(f"  strips of 64 rows     : {strips:7.1f} / {strips_cpu:7.1f} films/s  ({strips / whole:.2f}x the baseline, "
          f"{strips / TARGET:.2f}x the {TARGET:.0f} films/s target)")
    # every layout into one folder, deleted only at the end: on an ext4 disk without a journal, creating a file
    # right after many deletions costs up to 1.5 ms of kernel time (recently freed inodes are skipped), which
    # would charge one layout for the clean-up of the one before
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        for layout in LAYOUTS:
            t, c = time.perf_counter(), time.process_time()
            make_dataset(os.path.join(d, layout), a.n, a.seed, layout, a.size)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            films = a.n * (2 if layout == "iu" else 1)
            print(f"  make_dataset {layout:6s}   : {films / dt:7.1f} / {films / dc:7.1f} films/s written "
                  f"({films / dt / TARGET:.2f}x target; in {d})")


if __name__ == "__main__":
    main()
