#!/usr/bin/env bash
# The device check: the first thing to run on a lent GPU machine. It cannot hang: every step runs under a
# time limit (coreutils `timeout`), the first failing step stops the script with a line naming it, and a
# summary (also in summary.txt) says which steps passed. Steps, in order:
#   env       torch, CUDA and the card's name (gpu.txt)
#   dryrun    clinical-bert reproduce --preset paper --dry-run --device cuda: the paper-size job end to end on
#             the card (bf16 on CUDA); skipped with a note where `reproduce` has no --dry-run
#   train     bench_train.py --presets paper, bf16: samples/s, peak memory, model FLOPs utilisation (train.json)
#   model     bench_model.py --presets paper: the training step against the plain baseline, same loss (model.json)
#   generate  bench_generate.py --batch 64 --beam 5 --max-len 100: cached vs uncached decoding (generate.json)
#   pipeline  bench_pipeline.py: input-pipeline samples/s per worker on this machine's CPU (pipeline.json)
#
# Usage: bash benchmarks/gpu_check.sh [--smoke] [--keep-going] [--only step,step,...] [OUT_DIR]
#   --smoke       the same steps on CPU at tiny size, a few seconds each (CI runs this)
#   --keep-going  run the remaining steps after a failure (the exit status is still the first failure's)
#   --only        run only these steps (e.g. --only env,train)
#   OUT_DIR       default $OUT, else runs/gpu_check (runs/gpu_check_smoke with --smoke). Each step writes
#                 <step>.txt (its output) and, where it has one, <step>.json; log.txt has every command.
# Environment: PYTHON (default python), GPU_CHECK_TIME_SCALE (multiplies every time limit, default 1),
#   PEAK_TFLOPS (the card's dense bf16 peak for the MFU, where benchlib's table does not know the card).
# Works from a fresh clone with the package installed (pip install -e .) or not: the repository is put on
# PYTHONPATH, and `clinical-bert` is called as `python -c 'from clinical_bert.cli import main ...'`.
# Copy the figures into benchmarks/RESULTS.md with the card's name (first line of gpu.txt).
set -uo pipefail

smoke=0 keep_going=0 only="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --keep-going) keep_going=1 ;;
    --only) only="${2:?--only needs a comma-separated list of steps}"; shift ;;
    --only=*) only="${1#--only=}" ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) out="$1" ;;
  esac
  shift
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "$out" ]; then
  if [ -n "${OUT:-}" ]; then out="$OUT"; elif [ $smoke = 1 ]; then out="$root/runs/gpu_check_smoke"; else out="$root/runs/gpu_check"; fi
fi
mkdir -p "$out" && out="$(cd "$out" && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}" MPLBACKEND="${MPLBACKEND:-Agg}"
PY="${PYTHON:-python}"
CB=("$PY" -c 'import sys; from clinical_bert.cli import main; sys.exit(main(sys.argv[1:]))')
scale="${GPU_CHECK_TIME_SCALE:-1}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
: > "$out/log.txt"

all_steps=(env dryrun train model generate pipeline)
passed=() skipped=() failed=() ran=" " first_rc=0
summary() {
  local s notrun=()
  for s in "${all_steps[@]}"; do
    [[ "$ran" == *" $s "* ]] || { wanted "$s" && notrun+=("$s"); }
  done
  {
    echo "== gpu_check summary ($([ $smoke = 1 ] && echo smoke, CPU || echo GPU)); results in $out"
    echo "passed : ${passed[*]:-none}"
    [ ${#skipped[@]} -gt 0 ] && echo "skipped: ${skipped[*]}"
    [ ${#failed[@]} -gt 0 ] && echo "FAILED : ${failed[*]}"
    [ ${#notrun[@]} -gt 0 ] && echo "not run: ${notrun[*]}"
  } | tee "$out/summary.txt"
  rm -rf "$tmp"
}
trap summary EXIT

wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

step() {  # name, time limit in seconds, command...: one step under `timeout`, its output kept in <name>.txt
  local name=$1 limit rc t0=$SECONDS
  limit=$(awk -v a="$2" -v s="$scale" 'BEGIN { t = int(a * s); printf "%d", t < 1 ? 1 : t }'); shift 2
  wanted "$name" || return 0
  ran+="$name "
  echo "== [$name] (limit ${limit}s): $*" | tee -a "$out/log.txt"
  timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then
    passed+=("$name($((SECONDS - t0))s)")
    echo "== [$name] passed in $((SECONDS - t0)) s" | tee -a "$out/log.txt"
    return 0
  fi
  local why="exit code $rc"
  case "$rc" in 124|137) why="timed out after ${limit} s (exit code $rc)" ;; esac
  failed+=("$name($why)")
  echo "!! step '$name' FAILED: $why; its output: $out/$name.txt" | tee -a "$out/log.txt"
  [ "$first_rc" = 0 ] && first_rc=$rc
  if [ $keep_going = 0 ]; then exit "$rc"; fi
}

skip() {  # name, reason
  wanted "$1" || return 0
  ran+="$1 "
  skipped+=("$1(${2%%:*})")
  echo "== [$1] skipped: $2" | tee -a "$out/log.txt" | tee "$out/$1.txt"
}

# --- env: the interpreter, torch, the card --------------------------------------------------------------
if [ $smoke = 1 ]; then dev=cpu; else dev=cuda; fi
cat > "$tmp/env_check.py" <<'PY'
import platform, sys, torch, clinical_bert
smoke = sys.argv[1] == "1"
if not smoke and not torch.cuda.is_available():
    sys.exit("env: torch sees no CUDA device; on a CPU machine run gpu_check.sh --smoke")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s), "
          f"torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}")
else:
    print(f"CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, no CUDA (smoke run)")
print(f"python {sys.version.split()[0]}, clinical_bert from {clinical_bert.__file__}")
PY
step env 120 "$PY" "$tmp/env_check.py" "$smoke"
[ -f "$out/env.txt" ] && cp "$out/env.txt" "$out/gpu.txt"
if [ $smoke = 0 ] && wanted env && command -v nvidia-smi >/dev/null; then
  timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$out/gpu.txt" || true
fi

# --- dryrun: the paper-size job on the device, before any throughput measurement ------------------------
if wanted dryrun; then
  help="$(timeout 120 "${CB[@]}" reproduce --help 2>&1)"
  if ! grep -q -- "--dry-run" <<<"$help"; then
    skip dryrun "clinical-bert reproduce has no --dry-run option yet: nothing to run"
  else
    extra=()
    grep -q -- "--precision" <<<"$help" && [ $smoke = 0 ] && extra+=(--precision bf16)
    if [ $smoke = 1 ]; then
      step dryrun 240 "${CB[@]}" reproduce --preset tiny --only pretrain --dry-run --device cpu \
        --runs-dir "$tmp/runs" --figures-dir "$tmp/figures"
    else
      step dryrun 420 "${CB[@]}" reproduce --preset paper --dry-run --device cuda "${extra[@]}" \
        --runs-dir "$tmp/runs" --figures-dir "$tmp/figures"
    fi
  fi
fi

# --- throughput -----------------------------------------------------------------------------------------
peak=()
[ -n "${PEAK_TFLOPS:-}" ] && peak=(--peak-tflops "$PEAK_TFLOPS")
if [ $smoke = 1 ]; then
  step train 180 "$PY" benchmarks/bench_train.py --presets tiny --steps 2 --device cpu --precision fp32 \
    "${peak[@]}" --json "$out/train.json"
  step model 180 "$PY" benchmarks/bench_model.py --presets tiny --steps 2 --device cpu --json "$out/model.json"
  step generate 120 "$PY" benchmarks/bench_generate.py --preset tiny --device cpu --batch 2 --beam 2 \
    --max-len 4 --repeats 1 --json "$out/generate.json"
  step pipeline 120 "$PY" benchmarks/bench_pipeline.py --smoke --json "$out/pipeline.json"
else
  step train 420 "$PY" benchmarks/bench_train.py --presets paper --device cuda --precision bf16 \
    "${peak[@]}" --json "$out/train.json"
  step model 240 "$PY" benchmarks/bench_model.py --presets paper --device cuda --json "$out/model.json"
  step generate 300 "$PY" benchmarks/bench_generate.py --device cuda --batch 64 --beam 5 --max-len 100 \
    --repeats 2 --json "$out/generate.json"
  step pipeline 180 "$PY" benchmarks/bench_pipeline.py --json "$out/pipeline.json"
fi
exit "$first_rc"
