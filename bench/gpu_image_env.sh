#!/usr/bin/env bash
# A venv with the GPU image's versions (python 3.12, torch 2.11.0+cu130,
# transformers 5.17.0, numpy 2.5.2, ...), on this CPU-only machine, to run what the GPU
# session runs before it gets a GPU (bench/GPU.md, "Checked on CPU with the GPU image's
# versions"):
#
#   bash bench/gpu_image_env.sh [/tmp/gpuenv]      # ~0.8 GB of downloads, ~2.3 GB on disk
#   bash bench/gpu_wheels.sh
#   PYTHON=/tmp/gpuenv/bin/python SITE=/tmp/gpusite OUT=/tmp/gpusmoke \
#     bash bench/gpu_session.sh --smoke --wheels
#   PYTHONPATH=/tmp/gpusite /tmp/gpuenv/bin/python -m pytest -m "not slow" tests/embedder
#
# torch is PyPI's CUDA wheel (the image's build) without its nvidia-* packages (several
# GB): bench/cuda_stubs.py gives it stub CUDA libraries, so it runs on the CPU and sees no
# device. The project is not installed (the image runs it from the checkout either).
set -euo pipefail
cd "$(dirname "$0")/.."
ENV=${1:-/tmp/gpuenv}
PY312=${PY312:-python3.12}
if ! "$PY312" -V >/dev/null 2>&1; then  # a pyenv shim with no 3.12 selected: its own 3.12
  PY312=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)
  [[ -n "$PY312" ]] || { echo "no python3.12 (set PY312)" >&2; exit 1; }
fi
"$PY312" -m venv "$ENV"
PY="$ENV/bin/python"
pip_install() { "$PY" -m pip install -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
"$PY" -m pip download -q --no-deps torch==2.11.0 -d "$ENV/wheels" 2>&1 | grep -v "^WARNING" || true
pip_install --no-deps "$ENV"/wheels/torch-2.11.0-*.whl
rm -rf "$ENV/wheels"
# pip then lists torch's nvidia-* / cuda-toolkit packages, and peft's accelerate, as missing
# dependencies after each install: expected, they are left out on purpose.
# torch's pure-Python dependencies, then the image's packages at its versions (bench/GPU.md)
pip_install filelock "typing-extensions>=4.10" "setuptools<82" "sympy>=1.13.3" networkx \
  jinja2 fsspec
pip_install transformers==5.17.0 numpy==2.5.2 huggingface_hub==1.33.0 safetensors==0.8.0 \
  tokenizers==0.23.2 pillow typer tqdm pytest hypothesis portalocker httpx grpcio protobuf \
  psutil scipy urllib3 requests
pip_install --no-deps triton==3.6.0 peft  # in the image (peft's accelerate too, unused here)
"$PY" bench/cuda_stubs.py "$ENV"
"$PY" - <<'EOF'
import platform

import numpy
import torch
import transformers

assert not torch.cuda.is_available()
print("python", platform.python_version(), "torch", torch.__version__, "transformers",
      transformers.__version__, "numpy", numpy.__version__, "(CPU only)")
EOF
du -sh "$ENV"
