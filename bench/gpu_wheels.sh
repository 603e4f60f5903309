#!/usr/bin/env bash
# Wheels the GPU machine lacks, downloaded here into .whl/ (git-ignored) to travel with a
# `run` call as `carry: [".whl"]`. The GPU image (python 3.12, torch 2.11, transformers 5.17,
# numpy, pillow, safetensors, tokenizers, typer, tqdm, grpcio, protobuf, httpx, portalocker,
# pytest, ...) has everything else the GPU session imports; see bench/GPU.md.
#   required: qdrant-edge-py (ingest_rate.py's store), pypdfium2 (its PDF pages)
#   for collecting tests/connectors under `pytest -m gpu`: qdrant-client + pydantic 2.11
#   (2.11: needs typing-extensions >= 4.12 only, which the image has; 2.12+ wants newer).
# Not carried: pymilvus, milvus-lite, fastapi/uvicorn (Milvus and server tests need no GPU;
# pytest runs with --continue-on-collection-errors). Never torch.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  qdrant-edge-py==0.9.0
  pypdfium2==5.15.2
  qdrant-client==1.20.0
  pydantic==2.11.7
  pydantic-core==2.33.2
  annotated-types==0.8.0
  typing-inspection==0.4.1
)
mkdir -p .whl
PY=${PYTHON:-python3}
for spec in "${WHEELS[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "$spec" 2>&1 | grep -v "^WARNING: Location" || true
done
# One version per name (an old download beside a new one stops the install there).
dupes=$(ls .whl/*.whl | xargs -n1 basename | cut -d- -f1 | sort | uniq -d)
if [[ -n "$dupes" ]]; then echo "two versions of: $dupes (remove the old .whl files)" >&2; exit 1; fi
ls -l .whl
total=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "total $((total / 1048576)) MiB of wheels (the working tree and carried paths: 64 MiB per call)"
if (( total > 40 * 1048576 )); then echo "over 40 MiB: too close to the 64 MiB limit" >&2; exit 1; fi
