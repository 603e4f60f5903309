"""The GPU session's first step (seconds): versions, imports, torch's CUDA API, a tiny model.

Run by ``bench/gpu_session.sh`` before the measuring steps, so that a version problem on
the GPU machine shows in its first seconds instead of as a failed step minutes later:

* the versions of every package the later steps import (also appended to ``--env``);
* every module those steps import (the embedder, the benches, the ingest pipeline, the
  carried wheels), each as ok or the error it raised;
* the CUDA-only torch API the project calls (``torch.cuda.graph``, ``set_stance``, ...) and
  the varlen kernel adapter (``embedder.attention``), called on meta tensors: the adapter's
  arguments are checked against the installed ``varlen_attn`` without running a kernel;
* the tiny random model on the device: texts (packed on CUDA) and one image (vision windows
  through the varlen kernel on CUDA), finite vectors of the right shapes.

Exit status: 0 all ok; 1 something that costs one step (a carried wheel, the varlen kernel,
the tiny model); 2 fatal (torch, transformers or the embedder cannot be imported, or
``--require-cuda`` without a CUDA device): the session stops there.

    python bench/gpu_preflight.py --require-cuda --env env.txt   # the GPU machine
    python bench/gpu_preflight.py                                # here: the CPU path
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
sys.path.insert(0, str(ROOT / "bench"))

PACKAGES = ("torch", "transformers", "numpy", "PIL", "tokenizers", "safetensors",
            "huggingface_hub", "triton", "typer", "tqdm", "pytest", "qdrant_edge",
            "pypdfium2", "qdrant_client", "pydantic")  # fmt: skip
# module -> what fails without it (None: everything, the session stops)
MODULES = {
    "torch": None, "transformers": None, "embedder.encoder": None, "embedder.model": None,
    "embedder.attention": None, "embedder.packing": None, "embedder.compiled": None,
    "embedder.testing": None, "benchkit": None, "reference_style": "throughput",
    "throughput_project": "throughput", "qdrant_edge": "ingest", "pypdfium2": "ingest",
    "connectors.stores": "ingest", "jina_vdb.ingest": "ingest", "jina_vdb.sources": "ingest",
    "qdrant_client": "pytest collection (tests/connectors)", "pydantic": "pytest collection",
}  # fmt: skip
CUDA_API = ("cuda.synchronize", "cuda.get_device_name", "cuda.empty_cache",
            "cuda.set_per_process_memory_fraction", "cuda.mem_get_info",
            "cuda.max_memory_allocated", "cuda.max_memory_reserved", "cuda.memory_reserved",
            "cuda.reset_peak_memory_stats", "cuda.current_stream", "cuda.stream", "cuda.Stream",
            "cuda.CUDAGraph", "cuda.graph", "cuda.graph_pool_handle", "cuda.current_device",
            "_dynamo.reset", "_dynamo.maybe_mark_dynamic", "compiler.set_stance")  # fmt: skip
KEYWORDS = {"cuda.graph": ("pool", "capture_error_mode")}


def say(lines: list[str], text: str) -> None:
    print(f"[preflight] {text}", flush=True)
    lines.append(text)


def versions(lines: list[str]) -> None:
    say(lines, f"python {platform.python_version()}")
    for name in PACKAGES:
        try:
            mod = importlib.import_module(name)
            say(lines, f"{name} {getattr(mod, '__version__', '?')}")
        except Exception as exc:  # noqa: BLE001 - report every missing import, then go on
            say(lines, f"{name} MISSING: {type(exc).__name__}: {exc}")


def imports(lines: list[str]) -> int:
    status = 0
    for name, costs in MODULES.items():
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - each failure is reported with what it costs
            say(lines, f"FAIL import {name}: {type(exc).__name__}: {exc} (costs: {costs or 'all'})")
            status = max(status, 1 if costs else 2)
    return status


def torch_api(lines: list[str]) -> int:
    import torch

    from embedder import attention

    status = 0
    for name in CUDA_API:
        obj: object = torch
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            say(lines, f"FAIL torch.{name} is missing in torch {torch.__version__}")
            status = 1
            continue
        missing = [k for k in KEYWORDS.get(name, ()) if k not in inspect.signature(obj).parameters]  # type: ignore[arg-type]
        if missing:
            say(lines, f"FAIL torch.{name} takes no {missing}")
            status = 1
    run = attention._varlen_kernel()
    if run is None:
        say(lines, "FAIL no usable torch.nn.attention.varlen: packed paths run SDPA per segment")
        return 1
    # Decoder shapes (16 query heads, 2 key/value heads, d 128), causal; vision ones (d 80).
    cu = torch.tensor([0, 4, 10], dtype=torch.int32).to("meta")
    for heads_kv, dim, causal in ((2, 128, True), (16, 80, False)):
        q = torch.empty(10, 16, dim, device="meta", dtype=torch.bfloat16)
        kv = torch.empty(10, heads_kv, dim, device="meta", dtype=torch.bfloat16)
        out = run(q, kv, kv, cu, 6, dim**-0.5, causal)
        if tuple(out.shape) != (10, 16, dim):
            say(lines, f"FAIL varlen adapter returned {tuple(out.shape)}, not (10, 16, {dim})")
            status = 1
    say(lines, f"torch API: {'ok' if status == 0 else 'see FAIL lines'}; cuda "
               f"{torch.cuda.is_available()} {torch.version.cuda}")  # fmt: skip
    return status


def tiny_model(lines: list[str], device: str) -> int:
    import numpy as np
    from PIL import Image

    from embedder.testing import random_embedder

    start = time.perf_counter()
    dtype = "bfloat16" if device == "cuda" else "float32"
    try:
        emb = random_embedder("tiny", device=device, dtype=dtype, seed=0)
        texts = emb.encode_text(["a short query", "a longer passage " * 20, "x"], task="retrieval")
        page = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8))
        images = emb.encode_image([page], task="retrieval", max_pixels=50_000)
    except Exception as exc:  # noqa: BLE001 - the step's verdict, with the error
        say(lines, f"FAIL tiny model on {device}: {type(exc).__name__}: {exc}")
        return 1
    finite = all(np.isfinite(b.dense).all() for b in (texts, images))
    ok = finite and texts.dense.shape[0] == 3 and images.dense.shape[0] == 1
    say(lines, f"tiny model on {device} ({dtype}, packed: {emb.packed}): "
               f"{'ok' if ok else 'FAIL (shapes or non-finite values)'}, "
               f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--require-cuda", action="store_true", help="no CUDA device: exit 2")
    p.add_argument("--env", default=None, help="append the report to this file")
    args = p.parse_args(argv)
    lines: list[str] = []
    versions(lines)
    status = imports(lines)
    if status < 2:
        import torch

        if args.require_cuda and not torch.cuda.is_available():
            say(lines, "FAIL torch sees no CUDA device: the session stops here")
            status = 2
        else:
            status = max(status, torch_api(lines))
            device = "cuda" if torch.cuda.is_available() else "cpu"
            status = max(status, tiny_model(lines, device))
    say(lines, f"verdict: {('ok', 'partial', 'fatal')[status]}")
    if args.env:
        with open(args.env, "a") as fh:
            fh.write("".join(f"{line}\n" for line in lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
