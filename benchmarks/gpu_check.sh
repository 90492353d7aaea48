#!/usr/bin/env bash
# The prepared device check for a GPU machine: the paper preset with bf16.
#   training samples/s, peak memory and model FLOPs utilisation (bench_train --paper),
#   the training step against the plain baseline (bench_model),
#   cached vs uncached decoding and ms per image at batch 64, beam 5 (bench_generate).
# Usage (repository root, venv active): bash benchmarks/gpu_check.sh [OUT_DIR]
# Results go to OUT_DIR (default $OUT, else runs/gpu_check) as text and JSON; copy the numbers
# into benchmarks/RESULTS.md with the card's name (nvidia-smi's first line is in gpu.txt).
set -euo pipefail
out="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$out"
python - <<'PY' | tee "$out/gpu.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
p = torch.cuda.get_device_properties(0)
print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$out/gpu.txt" || true
run() {  # name, command...: one benchmark, its output kept even when it fails
  local name=$1; shift
  echo "== $name: $*" | tee -a "$out/log.txt"
  if ! "$@" 2>&1 | tee "$out/$name.txt"; then echo "!! $name failed" | tee -a "$out/log.txt"; fi
}
run train python benchmarks/bench_train.py --presets small --paper --device cuda --precision bf16 --json "$out/train.json"
run model python benchmarks/bench_model.py --presets paper --device cuda
run generate python benchmarks/bench_generate.py --device cuda --batch 64 --beam 5
echo "results in $out"
