#!/usr/bin/env bash
# Every GPU figure owed by issues 13 and 17, in one prepared run (< 6 min on one H200).
#
#   bash bench/gpu_session.sh            # on the GPU machine, through the `run` tool
#   bash bench/gpu_session.sh --smoke    # dry run here: tiny model, every step, ~2-4 min on CPU
#   bash bench/gpu_session.sh --smoke --wheels   # the same, installing .whl/ as the real run does
#
# Steps, each under its own time cap (a step that hits its cap or fails is logged and the
# next one runs; JSON lines are written per stage, so a capped step keeps what it measured):
#   0. gpu_preflight.py     versions, every import, torch's CUDA API, the tiny model on the
#                           device (seconds); fatal (no CUDA, no torch/embedder): stop here
#   1. embed_throughput.py  project vs reference-style path, MFU; the project path again
#                           padded and compiled (each option on/off)   -> throughput.jsonl
#   2. gpu_memory.py        issue 17: peaks, 12 GB budget, task switches -> memory.jsonl
#   3. ingest_rate.py       full ingest vs embed-only; again with the writer process and
#                           the preprocessing workers off               -> ingest.jsonl
#   4. pytest -m gpu        the GPU-marked tests (the files that use the marker) -> session.log
# then gpu_summary.py merges the summaries into summary.json and prints the README rows.
# Output (at most 8 files, as the `run` tool returns them): $OUT/{env.txt, session.log,
# steps.jsonl, throughput.jsonl, memory.jsonl, ingest.jsonl, summary.json}. OUT defaults to
# bench/results/gpu-session. Carried wheels (.whl/, from bench/gpu_wheels.sh) are
# installed into $SITE (default /tmp/site) first; torch is never installed. See bench/GPU.md.
set -uo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
WHEELS=1
EXTRA=()
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1; WHEELS=${WHEELS_SET:-0} ;;
    --wheels) WHEELS=1; WHEELS_SET=1 ;;
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

SITE=${SITE:-/tmp/site}
if ((WHEELS)) && compgen -G ".whl/*.whl" >/dev/null; then  # cp312 wheels: the GPU image's python
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl >>"$LOG" 2>&1 || echo "wheel install failed (see above)" >>"$LOG"
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
elif ((WHEELS)); then
  echo "no .whl/*.whl (bash bench/gpu_wheels.sh): the ingest step and tests/connectors lack" \
    "qdrant-edge-py, pypdfium2, qdrant-client" | tee -a "$LOG"
fi
{
  date -u
  nvidia-smi 2>&1 || echo "no nvidia-smi"
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
  return "$rc"
}

if ((SMOKE)); then
  MODEL=(--model tiny --smoke)
  PREFLIGHT=()
  SCALE=3  # the caps are sized for the GPU; a small shared CPU takes longer
  VARIANTS=(--variants packed,vision-grouped,compiled)  # CPU: the primary run is padded
  # The writer process and the spawned preprocessing workers: on by default on CUDA only.
  INGEST=(--preset tiny --texts 16 --pdf-pages 4 --also-off --writer-process on
    --preprocess-workers 2)
else
  MODEL=()
  PREFLIGHT=(--require-cuda)
  SCALE=1
  # CUDA: the primary run is packed (packing=auto) with the vision tower on varlen.
  VARIANTS=(--variants padded,vision-grouped,compiled)
  INGEST=(--texts 128 --pdf-pages 8 --also-off)
fi
# Caps add up to 400 s. The compiled variant runs last inside the throughput step: if its
# compile outlasts the cap, only its own figures are lost (JSON lines are per stage).
step preflight 40 "$PY" bench/gpu_preflight.py "${PREFLIGHT[@]}" --env "$OUT/env.txt"
PREFLIGHT_RC=$?
grep -a "^\[preflight\]" "$LOG" || true  # versions and verdict, first in the output
if ((PREFLIGHT_RC == 2)); then
  echo "[session] preflight is fatal: no measuring step runs (see env.txt)"
else
  step throughput 185 "$PY" bench/embed_throughput.py "${MODEL[@]}" "${VARIANTS[@]}" \
    "${EXTRA[@]}" --json "$OUT/throughput.jsonl"
  step memory 65 "$PY" bench/gpu_memory.py "${MODEL[@]}" --switch-calls 4 \
    --call-passages 128 --json "$OUT/memory.jsonl"
  step ingest 55 "$PY" bench/ingest_rate.py "${INGEST[@]}" --json "$OUT/ingest.jsonl"
  # Only the files that use the marker: the others' imports (pymilvus, fastapi: not carried)
  # would fail collection and turn the step's rc to 1.
  mapfile -t GPU_TESTS < <(grep -rlE --include="test_*.py" "pytest\.mark\.gpu" tests | sort)
  step pytest_gpu 55 "$PY" -m pytest -m gpu -q -rA -p no:cacheprovider \
    --continue-on-collection-errors "${GPU_TESTS[@]}"
fi
"$PY" bench/gpu_summary.py "$OUT" >>"$LOG" 2>&1
echo "[session] done in $(($(date +%s) - SESSION_START))s; results in $OUT"
tail -n 40 "$LOG"
