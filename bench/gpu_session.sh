#!/usr/bin/env bash
# Every GPU figure owed by issues 13 and 17, in one prepared run (< 6 min on one H200).
#
#   bash bench/gpu_session.sh            # on the GPU machine, through the `run` tool
#   bash bench/gpu_session.sh --smoke    # dry run here: tiny model, every step, ~2-4 min on CPU
#
# Steps, each under its own time cap (a step that hits its cap or fails is logged and the
# next one runs; JSON lines are written per stage, so a capped step keeps what it measured):
#   1. embed_throughput.py  project vs reference-style path, MFU; the project path again
#                           padded and compiled (each option on/off)   -> throughput.jsonl
#   2. gpu_memory.py        issue 17: peaks, 12 GB budget, task switches -> memory.jsonl
#   3. ingest_rate.py       full ingest vs embed-only; again with the writer process and
#                           the preprocessing workers off               -> ingest.jsonl
#   4. pytest -m gpu        the GPU-marked tests                         -> session.log
# then gpu_summary.py merges the summaries into summary.json and prints the README rows.
# Output (at most 8 files, as the `run` tool returns them): $OUT/{env.txt, session.log,
# steps.jsonl, throughput.jsonl, memory.jsonl, ingest.jsonl, summary.json}. OUT defaults to
# bench/results/gpu-session. Carried wheels (.whl/, from bench/gpu_wheels.sh) are
# installed into /tmp/site first; torch is never installed. See bench/GPU.md.
set -uo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
EXTRA=()
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    *) EXTRA+=("$arg") ;;  # passed to embed_throughput.py (e.g. an embedder option flag)
  esac
done
OUT=${OUT:-bench/results/gpu-session}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
LOG="$OUT/session.log"
: >"$LOG"
: >"$OUT/steps.jsonl"
rm -f "$OUT"/throughput.jsonl "$OUT"/memory.jsonl "$OUT"/ingest.jsonl "$OUT"/summary.json
SESSION_START=$(date +%s)

if ((!SMOKE)) && compgen -G ".whl/*.whl" >/dev/null; then  # cp312 wheels: the GPU image's python
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 || echo "wheel install failed (see above)" >>"$LOG"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{
  date -u
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "transformers", "numpy", "PIL", "tokenizers", "safetensors", "qdrant_edge",
             "pypdfium2", "qdrant_client", "pydantic", "typer", "pytest"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as exc:  # report every missing import, then go on
        print(name, "MISSING:", type(exc).__name__, exc)
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
} >"$OUT/env.txt" 2>&1

# step NAME CAP_SECONDS COMMAND...: run under a cap, log its output, record rc and seconds.
step() {
  local name=$1 cap=$(($2 * SCALE))
  shift 2
  local start=$(date +%s)
  echo "=== $name (cap ${cap}s): $*" >>"$LOG"
  timeout -k 15 "$cap" "$@" >>"$LOG" 2>&1
  local rc=$?
  local secs=$(($(date +%s) - start))
  echo "=== $name: rc $rc after ${secs}s" >>"$LOG"
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $secs, \"cap\": $cap}" >>"$OUT/steps.jsonl"
  echo "[session] $name: rc $rc, ${secs}s (cap ${cap}s)"
}

if ((SMOKE)); then
  MODEL=(--model tiny --smoke)
  SCALE=3  # the caps are sized for the GPU; a small shared CPU takes longer
  VARIANTS=(--variants packed,compiled)  # CPU: the primary run is padded
  INGEST=(--preset tiny --texts 16 --pdf-pages 4 --also-off)
else
  MODEL=()
  SCALE=1
  # CUDA: the primary run is packed (packing=auto) with the vision tower on varlen.
  VARIANTS=(--variants padded,vision-grouped,compiled)
  INGEST=(--texts 128 --pdf-pages 8 --also-off)
fi
# Caps add up to 360 s. The compiled variant runs last inside the throughput step: if its
# compile outlasts the cap, only its own figures are lost (JSON lines are per stage).
step throughput 185 "$PY" bench/embed_throughput.py "${MODEL[@]}" "${VARIANTS[@]}" \
  "${EXTRA[@]}" --json "$OUT/throughput.jsonl"
step memory 65 "$PY" bench/gpu_memory.py "${MODEL[@]}" --switch-calls 4 \
  --call-passages 128 --json "$OUT/memory.jsonl"
step ingest 55 "$PY" bench/ingest_rate.py "${INGEST[@]}" --json "$OUT/ingest.jsonl"
step pytest_gpu 55 "$PY" -m pytest -m gpu -q -rA -p no:cacheprovider \
  --continue-on-collection-errors tests
"$PY" bench/gpu_summary.py "$OUT" >>"$LOG" 2>&1
echo "[session] done in $(($(date +%s) - SESSION_START))s; results in $OUT"
tail -n 40 "$LOG"
