"""The reference implementation's way of running the model, on this project's weights.

What jina-embeddings-v4's own ``encode_text`` / ``encode_image`` do per call, emulated
so that every throughput figure of ``embed_throughput.py`` is also a ratio against it:

* batches of 8 items **in input order** (no sorting by length: padding to each batch's
  longest item), tokenised per batch on the calling thread;
* LoRA **unmerged**: every adapted Linear (the 7 decoder projections of every layer, and
  the multi-vector projector) computes ``base(x) + scale * B(A(x))`` on every forward, as
  peft's LoRA layer does (written here: no peft dependency);
* the causal-LM forward: **all hidden states** kept (``output_hidden_states=True``) and
  **full-vocabulary logits** computed for every token (the checkpoint ties the LM head to
  the token embeddings, so the head is the embedding matrix: vocab x hidden);
* transformers' own attention (``sdpa``; in the vision tower a Python loop over the
  windows), not this project's batched windows, packed rows or compiled decoder;
* bf16 autocast on CUDA, as the reference wraps its forward;
* dense and multi-vector from **two passes** (the reference returns one kind per call).

The pooling and the projector are this project's (the same math as the reference's).
The live weights must still hold the base weights (no task merged yet): the wrappers add
the task's low-rank update on the fly, so the project's first merge afterwards is exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embedder import PromptName, Task
from embedder.options import DEFAULT_MAX_LENGTH, prompt_prefix

REFERENCE_BATCH = 8
#: The attribute transformers sets on a model once its output-capturing hooks are in.
_HOOKED = "_output_capturing_hooks_installed"


class UnmergedLoRALinear(nn.Module):
    """``base(x) + scale * B(A(x))``: a LoRA-adapted Linear with the update not merged.

    Args:
        base: The Linear holding the base weight ``W0`` (out, in); left unchanged.
        a: (r, in) factor.
        b: (out, r) factor.
        scale: ``lora_alpha / r``.
    """

    def __init__(self, base: nn.Linear, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.base = base
        self.a = a
        self.b = b
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = F.linear(F.linear(x.to(self.a.dtype), self.a), self.b)  # (..., out) via rank r
        return self.base(x) + low * self.scale


@contextlib.contextmanager
def reference_mode(emb: Any, task: Task) -> Iterator[list[Any]]:
    """Run ``emb``'s model the reference's way (see the module docstring) inside the block.

    Yields the list where each forward leaves its hidden states and logits (clear it after
    a batch: the reference frees them when its output object goes).
    """
    if emb._lora.active is not None:
        raise RuntimeError(
            f"task {emb._lora.active.value} is merged into the live weights: run the "
            "reference-style path before the project path's first encode"
        )
    model = emb._model
    factors = emb._lora.factors[task]
    # transformers installs forward hooks to collect hidden states on first use; they stay
    # unless removed, and torch.compile of the project's decoder cannot trace them.
    hooks_before = {id(m): set(m._forward_hooks) for m in model.modules()}
    hooked_before = {id(m): vars(m).get(_HOOKED) for m in model.modules()}
    swapped: list[tuple[nn.Module, str, nn.Linear]] = []
    for name, linear in model.lora_targets().items():
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        f = factors[name]
        setattr(owner, leaf, UnmergedLoRALinear(linear, f.a, f.b, emb._lora.scale))
        swapped.append((owner, leaf, linear))
    lm = model.model.language_model
    head = lm.embed_tokens.weight  # (vocab, H): tied LM head
    held: list[Any] = []
    plain_forward = lm.forward

    def causal_lm_forward(*args: Any, **kwargs: Any) -> Any:
        out = plain_forward(*args, output_hidden_states=True, **kwargs)
        logits = F.linear(out.last_hidden_state, head)  # (B, L, vocab)
        held.append((out.hidden_states, logits))
        return out

    lm.forward = causal_lm_forward
    # transformers' own attention everywhere (the project's packed-capable decoder attention
    # and batched vision windows off), and no compiled decoder.
    configs = {id(m.config): m.config for m in model.model.modules() if hasattr(m, "config")}
    impl = {k: c._attn_implementation for k, c in configs.items()}
    for c in configs.values():
        c._attn_implementation = "sdpa"
    compiled, model.compiled_decoder = getattr(model, "compiled_decoder", None), None
    autocast: Any = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if emb.device.type == "cuda"
        else contextlib.nullcontext()
    )
    try:
        with autocast:
            yield held
    finally:
        del lm.forward  # back to the class's forward
        for owner, leaf, linear in swapped:
            setattr(owner, leaf, linear)
        for k, c in configs.items():
            c._attn_implementation = impl[k]
        model.compiled_decoder = compiled
        for m in model.modules():
            for handle in set(m._forward_hooks) - hooks_before.get(id(m), set()):
                del m._forward_hooks[handle]
                m._forward_hooks_with_kwargs.pop(handle, None)
                m._forward_hooks_always_called.pop(handle, None)
            if vars(m).get(_HOOKED) != hooked_before.get(id(m)):
                vars(m).pop(_HOOKED, None)
        held.clear()


def _run_batches(
    emb: Any, n: int, prepare: Any, held: list[Any]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Two passes over batches of 8 in input order: dense first, then multi-vector."""
    dense: list[np.ndarray] = []
    multi: list[np.ndarray] = []
    for multivector in (False, True):
        for start in range(0, n, REFERENCE_BATCH):
            inputs = prepare(start, min(n, start + REFERENCE_BATCH)).to(emb.device)
            out = emb._model(inputs, multivector=multivector)
            if multivector:
                rows = out.multi[out.mask].float().cpu().numpy()  # (sum t_i, P)
                lengths = out.mask.sum(dim=1).tolist()
                multi.extend(np.split(rows, np.cumsum(lengths)[:-1]))
            else:
                dense.append(out.dense.float().cpu().numpy())  # (B, H)
            held.clear()
    return np.concatenate(dense), multi


def encode_texts(
    emb: Any,
    texts: Sequence[str],
    task: Task = Task.RETRIEVAL,
    prompt_name: PromptName = PromptName.QUERY,
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Dense (n, H), multi-vectors [(t_i, P)] and the real token count, reference-style."""
    prefix = prompt_prefix(task, prompt_name)
    tokens = 0

    def prepare(start: int, stop: int) -> Any:
        nonlocal tokens
        ids, _ = emb._processor.tokenize_texts(
            texts[start:stop], [prefix] * (stop - start), DEFAULT_MAX_LENGTH
        )
        tokens += sum(len(s) for s in ids)
        return emb._processor.collate_text(ids)

    with reference_mode(emb, task) as held:
        dense, multi = _run_batches(emb, len(texts), prepare, held)
    return dense, multi, tokens // 2  # each text was tokenised once per pass


def encode_images(
    emb: Any, images: Sequence[Any], max_pixels: int, task: Task = Task.RETRIEVAL
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Dense (n, H) and multi-vectors [(t_i, P)] of PIL images, reference-style."""

    def prepare(start: int, stop: int) -> Any:
        return emb._processor.collate_images(images[start:stop], max_pixels)

    with reference_mode(emb, task) as held:
        return _run_batches(emb, len(images), prepare, held)
