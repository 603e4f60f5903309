"""Shared pieces of the GPU benchmarks: corpus, timing, FLOP estimates, JSON lines.

Used by ``embed_throughput.py`` and ``gpu_memory.py`` (run as scripts: ``bench/`` is on
``sys.path``). Nothing here is a test; the numbers are what the GPU session reports.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

#: Dense bf16 matrix rate of one H100/H200 SXM by the vendor's datasheet (TFLOP/s). The
#: benchmarks also measure a large bf16 matmul on the device and report MFU against both.
DATASHEET_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4}


# ---------------------------------------------------------------------- options


def add_model_args(p: Any) -> None:
    """``--preset``, ``--device``, ``--dtype``: which random model, where (an argparse parser)."""
    p.add_argument("--preset", default="tiny", help="embedder.testing preset: tiny, mid, full")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")


# ---------------------------------------------------------------------- corpus


def make_texts(tokenizer: Any, lengths: list[int], rng: np.random.Generator) -> list[str]:
    """Random word salad cut to the wanted token counts (re-tokenising may move a few)."""
    from embedder.testing import _CORPUS

    words = _CORPUS.split()
    texts = []
    for n in lengths:
        salad = " ".join(rng.choice(words, size=n + 8))
        ids = tokenizer(salad, add_special_tokens=False)["input_ids"][:n]
        texts.append(tokenizer.decode(ids).strip() or "x")
    return texts


def passage_lengths(n: int, median: int, longest: int, rng: np.random.Generator) -> list[int]:
    """Log-normal token counts (sigma 0.75) around ``median``; the first is ``longest``."""
    lengths = np.exp(rng.normal(math.log(median), 0.75, size=n)).astype(int)
    lengths = np.clip(lengths, 8, longest)
    lengths[0] = longest
    return lengths.tolist()


def random_pages(n: int, size: str, rng: np.random.Generator) -> list[Any]:
    """``n`` random-noise RGB pages of ``size`` ("WxH"): nothing compresses or repeats."""
    from PIL import Image

    width, height = (int(v) for v in size.split("x"))
    return [
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(n)
    ]


# ---------------------------------------------------------------------- timing


def sync(device: Any) -> None:
    if getattr(device, "type", "") == "cuda":
        import torch

        torch.cuda.synchronize(device)


def timed(device: Any, fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and its wall time in seconds, the device's queue drained on both sides."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def reset_peak(device: Any) -> None:
    """Start a new peak: cached blocks released first, so the reserved peak is this run's."""
    if getattr(device, "type", "") == "cuda":
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: Any) -> tuple[float | None, float | None]:
    """(max allocated, max reserved) GiB since the last :func:`reset_peak`; None on CPU."""
    if getattr(device, "type", "") != "cuda":
        return None, None
    import torch

    return (
        torch.cuda.max_memory_allocated(device) / 2**30,
        torch.cuda.max_memory_reserved(device) / 2**30,
    )


# ---------------------------------------------------------------------- FLOPs and peak


class FlopModel:
    """Forward FLOPs from the model's own shapes (2 x multiply-adds of its Linears).

    Text: ``2 x`` the decoder's projection parameters per token (5.55 GFLOP for the 3B
    backbone, the spec's figure; attention scores add ~1 % at passage lengths and are
    left out). A page: the vision tower's Linears per patch (the merger per merged token)
    plus attention scores of the windowed and full-attention blocks, plus the decoder
    per token of the templated sequence (~8.3 TFLOP at 602,112 px).
    """

    def __init__(self, model: Any) -> None:
        from torch import nn

        lm_targets = [lin for name, lin in model.lora_targets().items() if ".layers." in name]
        self.per_text_token = 2.0 * sum(lin.weight.numel() for lin in lm_targets)
        visual = model.model.visual
        cfg = visual.config
        per_patch = 0
        per_merged = 0
        for name, mod in visual.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv3d)):
                if name.startswith("merger"):
                    per_merged += mod.weight.numel()
                else:
                    per_patch += mod.weight.numel()
        self._vision_per_patch = 2.0 * per_patch
        self._vision_per_merged = 2.0 * per_merged
        self._hidden = cfg.hidden_size
        self._depth = cfg.depth
        self._full_blocks = len(cfg.fullatt_block_indexes)
        window_patches = (cfg.window_size // cfg.patch_size) ** 2
        self._window = window_patches
        self._merge2 = cfg.spatial_merge_size**2

    def text(self, tokens: int) -> float:
        return tokens * self.per_text_token

    def page(self, patches: int, sequence_tokens: int) -> float:
        """One image of ``patches`` vision patches in a templated sequence of that length."""
        d = self._hidden
        windowed = (self._depth - self._full_blocks) * 4.0 * patches * min(self._window, patches)
        full = self._full_blocks * 4.0 * patches * patches
        vision = (
            patches * self._vision_per_patch
            + patches // self._merge2 * self._vision_per_merged
            + (windowed + full) * d
        )
        return vision + self.text(sequence_tokens)


def measured_bf16_tflops(device: Any, n: int = 8192, reps: int = 10) -> float | None:
    """A large bf16 matmul's rate on ``device`` (TFLOP/s): the ceiling MFU is read against."""
    if getattr(device, "type", "") != "cuda":
        return None
    import torch

    x = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=device, dtype=torch.bfloat16)

    def products(count: int) -> None:
        for _ in range(count):
            torch.mm(x, y)

    products(3)  # warm-up: cuBLAS heuristics, clocks up
    _, secs = timed(device, lambda: products(reps))
    x = y = torch.empty(0)
    torch.cuda.empty_cache()
    return 2.0 * n**3 * reps / secs / 1e12


def datasheet_bf16_tflops(device: Any) -> float | None:
    if getattr(device, "type", "") != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    return next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)


# ---------------------------------------------------------------------- reporting


class Report:
    """Printed rows, a markdown table at the end, and JSON lines (one per stage + summary).

    Args:
        bench: The benchmark's name, on every JSON line.
        json_path: Where to append JSON lines; None: print only.
    """

    def __init__(self, bench: str, json_path: str | None) -> None:
        self.bench = bench
        self.rows: list[tuple[str, str, str]] = []
        self.summary: dict[str, Any] = {}
        self._path = Path(json_path) if json_path else None

    def row(self, stage: str, value: str, detail: str = "") -> None:
        self.rows.append((stage, value, detail))
        print(f"[bench] {stage:<34} {value:>18}  {detail}", flush=True)

    def emit(self, stage: str, **fields: Any) -> None:
        """One JSON line for ``stage``; its non-underscore keys also go into the summary."""
        clean = {k.lstrip("_"): _plain(v) for k, v in fields.items()}
        self.summary.update({k: _plain(v) for k, v in fields.items() if not k.startswith("_")})
        self._write({"bench": self.bench, "stage": stage, **clean})

    def finish(self, **extra: Any) -> None:
        self.summary.update({k: _plain(v) for k, v in extra.items()})
        self._write({"bench": self.bench, "stage": "summary", **self.summary})
        if not self.rows:
            return
        print("\n| stage | result | detail |\n|---|---:|---|")
        for stage, value, detail in self.rows:
            print(f"| {stage} | {value} | {detail} |")

    def _write(self, line: dict[str, Any]) -> None:
        if self._path is None:
            return
        with self._path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def _plain(v: Any) -> Any:
    """JSON-safe: numpy scalars to Python, floats rounded, non-finite to None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    return v


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b
