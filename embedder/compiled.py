"""Compiled decoder hot path (opt-in): torch.compile with shape buckets, CUDA graphs per query.

What is compiled, and why only that. transformers' ``Qwen2_5_VLModel.forward`` has
data-dependent steps that break a graph or recompile per batch: ``get_rope_index`` walks
``input_ids.tolist()`` per sequence, the vision tower's window index is built in Python
from ``grid_thw`` and our windowed attention groups windows by ``cu_seqlens.tolist()``
(:mod:`.attention`), and ``create_causal_mask`` inspects the mask's values to choose
between ``is_causal`` and an explicit mask. The decoder-layer stack has none of that: its
shapes are (batch, length, hidden) and its control flow is fixed. So
:class:`DecoderStack` runs rotary embedding -> every decoder layer -> final RMSNorm with
an attention mask it builds itself from per-token segment ids, and that is what is
compiled (``fullgraph=True``: a graph break is an error, not a slow path). Embedding
lookup, M-RoPE positions and the vision tower stay eager around it.

Shapes. Batch and length are marked dynamic, so one compiled graph serves every batch
(dynamo specialises batch 1, hence a second graph). Inputs are still padded up to
buckets (:func:`bucket`: at most 8 sizes per octave, so at most 12.5 % extra tokens, and
lengths a multiple of 16, which SDPA's masked kernels want): a small, repeating set of
shapes keeps allocator and kernel choices stable and is what CUDA graphs need. Added
padding is a separate segment (id -1) that real tokens never attend to; padded rows and
columns are sliced off, so real tokens' outputs are those of the unpadded input.

Recompiles are counted by a wrapping backend. Past ``max_compiles`` a shape that would
recompile runs the same stack eagerly and a WARNING says so (never a silent fallback).

Single queries on CUDA (batch 1, length up to ``graph_max_length``) replay a CUDA graph
captured per length bucket (2 per octave), so a short query costs one replay instead of
~36 layers x ~15 kernel launches from Python. Graphs read the live weights' storage:
LoRA task switches copy into those tensors in place (:mod:`.lora`), so a captured graph
stays valid across tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .errors import OptionError
from .options import CompileOptions

logger = logging.getLogger(__name__)

#: Length buckets are multiples of this (SDPA's memory-efficient kernel aligns masks to 16).
LENGTH_STEP = 16


def bucket(n: int, *, min_step: int = 1, per_octave: int = 8) -> int:
    """``n`` rounded up to a multiple of ``max(min_step, 2**floor(log2 n) / per_octave)``.

    At most ``per_octave`` sizes per power of two, so padding adds at most ``1/per_octave``
    of ``n`` once ``n`` is past ``min_step * per_octave``.
    """
    if n < 1:
        raise ValueError(f"cannot bucket a size of {n}")
    step = max(min_step, (1 << (n.bit_length() - 1)) // per_octave)
    return -(-n // step) * step


def query_bucket(length: int, max_length: int) -> int:
    """The CUDA-graph length for a single query: 2 buckets per octave, capped at ``max_length``.

    16, 32, 48, 64, 96, 128, 192, 256, 384, 512: ten graphs cover queries up to 512 tokens.
    """
    if length > max_length:
        raise ValueError(f"a query of {length} tokens is longer than the graphs' {max_length}")
    return max(length, min(bucket(length, min_step=LENGTH_STEP, per_octave=2), max_length))


@dataclass
class CompileStats:
    """Counters of the compiled decoder (for logs, benchmarks and tests)."""

    graphs_compiled: int = 0  # graphs handed to the backend (first compile + recompiles)
    eager_calls: int = 0  # calls run eagerly because the compile limit was reached
    cuda_graphs_captured: int = 0
    cuda_graph_replays: int = 0


class DecoderStack(nn.Module):
    """Rotary embedding -> decoder layers -> final norm, with a mask built from segment ids.

    Shares (does not copy) the language model's modules. ``segments`` (B, L) int64 gives
    each token's sequence id within its row; -1 marks padding. A token attends to earlier
    tokens of its own segment (causal), and padding only to itself, so no softmax row is
    empty and no NaN appears even in all-padding rows. One row per sequence is the padded
    layout (segments 0 / -1); several ids in a row is a packed row.
    """

    def __init__(self, language_model: nn.Module) -> None:
        super().__init__()
        self.layers = cast(nn.ModuleList, language_model.layers)
        self.rotary_emb = cast(nn.Module, language_model.rotary_emb)
        self.norm = cast(nn.Module, language_model.norm)

    def forward(
        self,
        embeds: torch.Tensor,
        segments: torch.Tensor,
        position_ids: torch.Tensor,
        cu_seqlens: torch.Tensor | None = None,
        max_length: int | None = None,
    ) -> torch.Tensor:
        rope = self.rotary_emb(embeds, position_ids)  # (cos, sin), each (B, L, head_dim)
        if cu_seqlens is not None:
            # One packed row: the decoder's packed attention (embedder.attention, set up by
            # embedder.packing) reads the boundaries; no (L, L) mask is built.
            packed: dict[str, Any] = {"cu_seq_lens_q": cu_seqlens, "cu_seq_lens_k": cu_seqlens}
            packed |= {"max_length_q": max_length, "max_length_k": max_length}
            hidden = embeds  # (1, N, H)
            for layer in self.layers:
                hidden = _hidden(
                    layer(hidden, attention_mask=None, position_embeddings=rope, **packed)
                )
            return self.norm(hidden)  # (1, N, H)
        length = embeds.shape[1]
        pos = torch.arange(length, device=embeds.device)  # (L,)
        causal = pos[:, None] >= pos[None, :]  # (L, L) query i may see key j <= i
        same = segments[:, :, None] == segments[:, None, :]  # (B, L, L)
        real_key = (segments >= 0)[:, None, :]  # (B, 1, L)
        diagonal = pos[:, None] == pos[None, :]  # (L, L)
        mask = (causal & ((same & real_key) | diagonal)).unsqueeze(1)  # (B, 1, L, L) bool
        hidden = embeds  # (B, L, H)
        for layer in self.layers:
            hidden = _hidden(layer(hidden, attention_mask=mask, position_embeddings=rope))
        return self.norm(hidden)  # (B, L, H)


def _hidden(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """A decoder layer's hidden states: transformers 5 returns them, 4.x a 1-tuple."""
    return out[0] if isinstance(out, tuple) else out


class _CountingBackend:
    """A torch.compile backend that counts the graphs it is given, then delegates."""

    def __init__(self, name: str, stats: CompileStats) -> None:
        from torch._dynamo.backends.registry import lookup_backend

        self._inner = lookup_backend(name)
        self._name = name
        self._stats = stats

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable:
        self._stats.graphs_compiled += 1
        logger.info("compiling the decoder (%s, graph %d)", self._name, self._stats.graphs_compiled)
        return self._inner(gm, list(example_inputs))


class CompiledDecoder:
    """Drop-in for the language model's forward on (embeds, attention mask, positions).

    Called by :meth:`embedder.model.JinaV4Model.forward` when compiling is enabled.
    """

    def __init__(self, language_model: nn.Module, device: torch.device, options: CompileOptions):
        from .attention import DECODER_ATTENTION

        attn = cast(Any, language_model).config._attn_implementation
        if attn not in ("sdpa", DECODER_ATTENTION):
            # The stack hands the layers a boolean mask, which only SDPA reads as such.
            raise OptionError(
                f"the compiled decoder needs attn_implementation='sdpa', the model has {attn!r}"
            )
        if options.cuda_graphs and device.type != "cuda":
            raise OptionError(
                f"cuda_graphs=True needs a CUDA device, the model is on {device.type!r}; "
                "leave cuda_graphs unset (None) to use them only on CUDA"
            )
        self.options = options
        self.stats = CompileStats()
        self._stack = DecoderStack(language_model)
        self._backend = _CountingBackend(options.backend.value, self.stats)
        self._compiled = torch.compile(self._stack, backend=self._backend, fullgraph=True)
        self._eager_shapes: set[tuple[int, int, bool]] = set()
        self._graphs: _QueryGraphs | None = None
        use_graphs = device.type == "cuda" if options.cuda_graphs is None else options.cuda_graphs
        if use_graphs:
            self._graphs = _QueryGraphs(self._run_compiled, options.graph_max_length, self.stats)
        logger.info(
            "compiled decoder on: backend %s, CUDA graphs for single queries %s",
            options.backend.value,
            f"up to {options.graph_max_length} tokens" if use_graphs else "off",
        )

    def __call__(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """(B, L, H), (B, L) 1 = real token, (3, B, L) -> (B, L, H) after the final norm."""
        segments = attention_mask.long() - 1  # (B, L): 0 real, -1 padding
        return self.run_segments(embeds, segments, position_ids)

    def run_segments(
        self, embeds: torch.Tensor, segments: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """As ``__call__`` with segment ids (B, L) (-1 = padding): packed rows use this."""
        bsz, length = segments.shape
        if self._graphs is not None and bsz == 1 and length <= self.options.graph_max_length:
            return self._graphs(embeds, segments, position_ids)
        rows, cols = bucket(bsz), bucket(length, min_step=LENGTH_STEP)
        out = self._run_compiled(*pad_inputs(embeds, segments, position_ids, rows, cols))
        return out[:bsz, :length]  # (B, L, H)

    def run_packed(
        self,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        segment: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_length: int,
    ) -> torch.Tensor:
        """One packed row (see :mod:`.packing`): (1, N, H), (3, 1, N), (N,), (S + 1,) -> (N, H).

        The row's token count is bucketed (64 sizes per octave: at most 1.6 % added); the
        added tail is one more sequence, sliced off. A row of one sequence is a batch of
        one (CUDA graphs for short queries). Where the varlen kernel serves (CUDA,
        bf16/fp16) attention reads ``cu_seqlens``; elsewhere the segment mask stands in.
        """
        total = embeds.shape[1]
        if cu_seqlens.shape[0] == 2:  # one sequence: exactly a batch of one
            return self.run_segments(embeds, torch.zeros_like(segment)[None], position_ids)[0]
        cols = bucket(total, min_step=LENGTH_STEP, per_octave=64)
        # (1, N'), (1, N'), (3, 1, N'): the tail is zeros, segment -1, position 0
        embeds, seg, position_ids = pad_inputs(embeds, segment[None], position_ids, 1, cols)
        if not _varlen_serves(embeds):
            return self._run_compiled(embeds, seg, position_ids)[0, :total]  # (N, H)
        tail = cu_seqlens.new_full((1,), cols)  # the padding tail is one more sequence
        cu = torch.cat([cu_seqlens, tail]) if cols > total else cu_seqlens  # (S + 2,)
        longest = bucket(max(max_length, cols - total), min_step=LENGTH_STEP)
        return self._run_compiled(embeds, seg, position_ids, cu, longest)[0, :total]

    def _run_compiled(
        self,
        embeds: torch.Tensor,
        segments: torch.Tensor,
        position_ids: torch.Tensor,
        *packed: Any,
    ) -> torch.Tensor:
        shape = (embeds.shape[0], embeds.shape[1], bool(packed))
        args = (embeds, segments, position_ids, *packed)
        if shape in self._eager_shapes:
            self.stats.eager_calls += 1
            return self._stack(*args)
        for t, dims in ((embeds, (0, 1)), (segments, (0, 1)), (position_ids, (1, 2))):
            for d in dims:
                torch._dynamo.maybe_mark_dynamic(t, d)
        if packed:
            torch._dynamo.maybe_mark_dynamic(packed[0], 0)  # cu_seqlens: sequences + 1
        if self.stats.graphs_compiled < self.options.max_compiles:
            return self._compiled(*args)
        try:
            with torch.compiler.set_stance("fail_on_recompile"):
                return self._compiled(*args)
        except RuntimeError as e:  # dynamo raises a plain RuntimeError for this stance
            if "fail_on_recompile" not in str(e):
                raise
            logger.warning(
                "compiled decoder: the limit of %d compiled graphs is reached; inputs of "
                "shape (batch %d, length %d%s) run eagerly from now on",
                self.options.max_compiles,
                *shape[:2],
                ", packed" if packed else "",
            )
            self._eager_shapes.add(shape)
            self.stats.eager_calls += 1
            return self._stack(*args)


def _varlen_serves(embeds: torch.Tensor) -> bool:
    """Whether packed attention runs torch's varlen kernel here (else: the segment mask)."""
    from . import attention

    fast = embeds.is_cuda and embeds.dtype in (torch.bfloat16, torch.float16)
    return fast and attention.varlen_available()


def pad_inputs(
    embeds: torch.Tensor, segments: torch.Tensor, position_ids: torch.Tensor, rows: int, cols: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad (B, L, H), (B, L), (3, B, L) to ``rows`` x ``cols``: zeros, segment -1, position 0."""
    bsz, length = segments.shape
    if (rows, cols) == (bsz, length):
        # Contiguous copies: dynamo guards on strides, and the text path's positions are
        # an expanded view (stride 0), so the same shape would otherwise compile twice.
        return embeds.contiguous(), segments.contiguous(), position_ids.contiguous()
    extra_l, extra_b = cols - length, rows - bsz
    embeds = F.pad(embeds, (0, 0, 0, extra_l, 0, extra_b))  # (rows, cols, H)
    segments = F.pad(segments, (0, extra_l, 0, extra_b), value=-1)  # (rows, cols)
    position_ids = F.pad(position_ids, (0, extra_l, 0, extra_b))  # (3, rows, cols)
    return embeds, segments, position_ids


class _QueryGraphs:
    """One CUDA graph per query length bucket (batch 1), captured on first use.

    Static input buffers are filled (and their tails reset to padding) before each
    replay; the output is cloned at once, so graphs may share one memory pool (a later
    capture may reuse an earlier graph's freed intermediates, never a live output).
    """

    def __init__(
        self,
        run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        max_length: int,
        stats: CompileStats,
    ) -> None:
        self._run = run
        self._max_length = max_length
        self._stats = stats
        self._pool: Any = None
        # bucket length -> (graph, static embeds, segments, positions, output)
        self._graphs: dict[int, tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
        self._graphs = {}

    def __call__(
        self, embeds: torch.Tensor, segments: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        length = segments.shape[1]
        cols = query_bucket(length, self._max_length)
        entry = self._graphs.get(cols)
        if entry is None:
            entry = self._capture(embeds, cols)
        graph, s_embeds, s_segments, s_pos, s_out = entry
        s_embeds[:, :length].copy_(embeds)
        s_embeds[:, length:].zero_()
        s_segments[:, :length].copy_(segments)
        s_segments[:, length:].fill_(-1)
        s_pos[..., :length].copy_(position_ids)
        s_pos[..., length:].zero_()
        graph.replay()
        self._stats.cuda_graph_replays += 1
        return s_out[:, :length].clone()  # (1, L, H), off the graph's memory

    def _capture(
        self, like: torch.Tensor, cols: int
    ) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        device = like.device
        s_embeds = torch.zeros(1, cols, like.shape[-1], dtype=like.dtype, device=device)
        s_segments = torch.zeros(1, cols, dtype=torch.long, device=device)
        s_pos = torch.zeros(3, 1, cols, dtype=torch.long, device=device)
        # Warm up on a side stream (compiles this shape, initialises cuBLAS), then capture.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._run(s_embeds, s_segments, s_pos)
        torch.cuda.current_stream(device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (the serve batcher's, the prepare worker) may use
        # CUDA while this thread captures.
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            s_out = self._run(s_embeds, s_segments, s_pos)  # (1, cols, H)
        entry = (graph, s_embeds, s_segments, s_pos, s_out)
        self._graphs[cols] = entry
        self._stats.cuda_graphs_captured += 1
        logger.info("captured a CUDA graph for single queries of up to %d tokens", cols)
        return entry
