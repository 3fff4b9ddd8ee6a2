#!/usr/bin/env bash
# GPU checks of streamseg, for a machine with CUDA and no network (docs/BENCHMARKS.md):
#   1. installs what is missing from wheels carried in a folder (pip --no-index);
#   2. runs the CUDA-only tests (pytest -m cuda);
#   3. benches ConvNeXt-L (random weights, official config) at 1080p in fp32 and bf16:
#      forward only, end to end with and without overlay, capacity (replayed outputs), live,
#      and the end-to-end loop under torch.cuda.set_sync_debug_mode (--sync-debug); and the
#      forward with the weights in channels_last against the default memory format;
#   4. writes OUT/results.json and OUT/results.md (streamseg/bench/gpu_report.py) next to the
#      raw bench JSON, logs and steps.tsv.
#
# usage: .ci/gpu.sh [--dry-run] [--wheels DIR] OUT
#   --dry-run     print every command instead of running it (the report is still written,
#                 from whatever OUT holds: no GPU needed)
#   --wheels DIR  wheels to install from (default: $WHEELS); without it nothing is installed
#                 and streamseg must import already
# environment: PYTHON (python3), MODEL (fcclip-convnext-large), SIZE (1080x1920), FRAMES (16),
#   BATCH (4), REPEATS (2), PRECISIONS ("fp32 bf16"; "tf32" also measures TensorFloat-32),
#   STEP_TIMEOUT (seconds per step, 400)
# exit: 0 when every step passed, 1 when one failed (the report is written either way),
#   2 for bad usage or no CUDA.
set -euo pipefail

dry_run=0
wheels="${WHEELS:-}"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --wheels) shift; wheels="${1:-}" ;;
    --wheels=*) wheels="${1#--wheels=}" ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "gpu.sh: unknown option $1" >&2; exit 2 ;;
    *) if [ -n "$out" ]; then echo "gpu.sh: one OUT folder only" >&2; exit 2; fi; out="$1" ;;
  esac
  shift
done
if [ -z "$out" ]; then
  echo "usage: .ci/gpu.sh [--dry-run] [--wheels DIR] OUT" >&2
  exit 2
fi
if [ -n "$wheels" ] && [ ! -d "$wheels" ]; then
  echo "gpu.sh: --wheels $wheels: not a folder" >&2
  exit 2
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
python="${PYTHON:-python3}"
model="${MODEL:-fcclip-convnext-large}"
size="${SIZE:-1080x1920}"
frames="${FRAMES:-16}"
batch="${BATCH:-4}"
repeats="${REPEATS:-2}"
precisions="${PRECISIONS:-fp32 bf16}"
step_timeout="${STEP_TIMEOUT:-400}"
steps="$out/steps.tsv"
failed=0

# run NAME STDOUT STDERR CMD...: run one step (or, dry, print it), its output to the files
# (- = the terminal); its exit code and seconds go to steps.tsv.
run() {
  local name="$1" stdout="$2" stderr="$3"
  shift 3
  local shown="+ $*"
  [ "$stdout" != - ] && shown="$shown >$stdout"
  [ "$stderr" != - ] && shown="$shown 2>$stderr"
  echo "$shown" >&2
  if [ "$dry_run" = 1 ]; then
    return 0
  fi
  local began rc
  began=$(date +%s)
  set +e
  if [ "$stdout" != - ] && [ "$stderr" != - ]; then
    "$@" >"$stdout" 2>"$stderr"
  elif [ "$stdout" != - ]; then
    "$@" >"$stdout"
  elif [ "$stderr" != - ]; then
    "$@" 2>"$stderr"
  else
    "$@"
  fi
  rc=$?
  set -e
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - began))" >>"$steps"
  if [ "$rc" != 0 ]; then
    echo "gpu.sh: step $name failed (exit $rc)" >&2
    failed=1
  fi
  return 0
}

if [ "$dry_run" = 0 ]; then
  : >"$steps"
fi

# 1. Install what is missing (pip skips what is already there, torch included): the dev extra
# as the README's test command does, else (wheels of the app's or browser's packages absent)
# the batch extra and the test runner.
if [ -n "$wheels" ]; then
  pip_install=("$python" -m pip install -q --no-index --find-links "$wheels")
  # --no-index cannot fetch setuptools for an isolated build: use the installed one.
  if "$python" -c "import setuptools" 2>/dev/null; then
    pip_install+=(--no-build-isolation)
  fi
  echo "+ ${pip_install[*]} -e .[dev]  (else: -e .[batch] pytest pytest-timeout)" >&2
  if [ "$dry_run" = 0 ]; then
    if ! "${pip_install[@]}" -e ".[dev]" >"$out/install.log" 2>&1; then
      run install "$out/install-fallback.log" - "${pip_install[@]}" -e ".[batch]" pytest pytest-timeout
    fi
  fi
elif ! "$python" -c "import streamseg, pytest, distributed" 2>/dev/null; then
  if [ "$dry_run" = 1 ]; then
    echo "gpu.sh: (dry run) streamseg, pytest or dask is not importable and no --wheels given" >&2
  else
    echo "gpu.sh: streamseg, pytest or dask is not importable: give --wheels DIR" >&2
    exit 2
  fi
fi

# The machine, for the record.
if [ "$dry_run" = 0 ]; then
  {
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    "$python" -c "import sys, torch; print(sys.version.split()[0], torch.__version__, \
torch.version.cuda, torch.cuda.is_available(), torch.cuda.device_count())"
    echo "cpus: $(nproc)"
  } >"$out/environment.txt" 2>&1 || true
  if ! "$python" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu.sh: torch sees no CUDA device here (see $out/environment.txt)" >&2
    "$python" -m streamseg.bench.gpu_report "$out" || true
    exit 2
  fi
fi

# 2. CUDA-only tests: the files that hold them (collecting the whole suite would import the
# app's and browser tests' packages, which a GPU box may lack).
mapfile -t cuda_tests < <(grep -l "pytest.mark.cuda" tests/test_*.py)
run pytest-cuda "$out/pytest-cuda.txt" - \
  timeout "$step_timeout" "$python" -m pytest -q -m cuda -p no:cacheprovider "${cuda_tests[@]}"

# 3. ConvNeXt-L at 1080p: every part of the report in one run per precision.
for precision in $precisions; do
  name="bench-${model}-${size}-${precision}"
  run "$name" "$out/$name.json" "$out/$name.log" \
    timeout "$step_timeout" "$python" -m streamseg bench --model "$model" --size "$size" \
    --device cuda --precision "$precision" --frames "$frames" --batch-size "$batch" \
    --repeats "$repeats" --capacity --live --sync-debug --json
done

# 3b. The network's forward in the default and the channels_last memory format, per precision
# (streamseg turns channels_last on only where this measures faster).
for precision in $precisions; do
  name="memory-format-${precision}"
  run "$name" - "$out/$name.log" \
    timeout "$step_timeout" "$python" -m streamseg.bench.memory_format --model "$model" \
    --size "$size" --device cuda --precision "$precision" --frames "$batch" --repeats 3 \
    --out "$out/$name.json"
done

# 4. The report (no GPU needed: a dry run writes it too, from whatever OUT holds).
echo "+ $python -m streamseg.bench.gpu_report $out" >&2
"$python" -m streamseg.bench.gpu_report "$out" || failed=1
if [ "$dry_run" = 1 ]; then
  echo "gpu.sh: dry run: nothing was installed, tested or measured" >&2
fi
exit "$failed"
