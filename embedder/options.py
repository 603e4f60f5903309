"""Torch-free model facts and closed option sets: tasks, prompt names, dims, budgets.

The one place that names what jina-embeddings-v4 accepts and what its defaults are. It
imports neither torch nor transformers, so the application (sources, CLI help texts and
defaults) can read these facts without loading the model; ``embedder.config`` and the
encoder import them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from .errors import OptionError

_E = TypeVar("_E", bound="_ClosedSet")

QUERY_PREFIX = "Query: "
PASSAGE_PREFIX = "Passage: "

#: Matryoshka widths of the dense vector (config.json ``matryoshka_dims``); the last is full.
MATRYOSHKA_DIMS = (128, 256, 512, 1024, 2048)
#: Width of each per-token vector (config.json ``multi_vector_projector_dim``).
MULTI_VECTOR_DIM = 128
#: The processor's default pixel cap per image (preprocessor_config.json ``max_pixels``):
#: 768 * 28 * 28, i.e. at most 768 image tokens. May be raised per call.
DEFAULT_MAX_PIXELS = 602112
#: Longest text in tokens (prompt prefix included); longer ones are cut on the right.
DEFAULT_MAX_LENGTH = 32768
#: Padded tokens per forward. 64k keeps an H100/H200 busy with length-sorted batches;
#: CPUs gain nothing from large batches and would only hold more memory.
DEFAULT_BATCH_TOKENS = {"cuda": 65536, "cpu": 8192}


class _ClosedSet(str, Enum):
    """A str-Enum whose ``parse`` accepts a member or its value and names the valid values."""

    @classmethod
    def parse(cls: type[_E], value: object, *, what: str | None = None) -> _E:
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            for member in cls:
                if member.value == value:
                    return member
        raise OptionError(
            f"unknown {what or cls.__name__} {value!r}; expected one of {cls.listing()}"
        )

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The members' values, in declaration order."""
        return tuple(m.value for m in cls)

    @classmethod
    def listing(cls) -> str:
        """``'a', 'b', 'c'``: the valid values for an error message."""
        return ", ".join(repr(v) for v in cls.values())

    def __str__(self) -> str:
        return self.value


class Task(_ClosedSet):
    """The three LoRA task adapters of jina-embeddings-v4."""

    RETRIEVAL = "retrieval"
    TEXT_MATCHING = "text-matching"
    CODE = "code"


class PromptName(_ClosedSet):
    """Which side of an asymmetric task a text is on."""

    QUERY = "query"
    PASSAGE = "passage"


class MultivectorDType(_ClosedSet):
    """The numpy dtype of the returned multi-vectors (the dense vector is always float32)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"


class Packing(_ClosedSet):
    """How a batch's sequences reach the decoder.

    ``padded``: one row per sequence, right-padded to the longest (the reference path).
    ``packed``: all sequences concatenated into one row, attention kept within each
    sequence (variable-length attention), positions restarting per sequence: no compute
    spent on padding. ``auto``: packed on CUDA (bf16/fp16 with torch's varlen kernel),
    padded elsewhere.
    """

    AUTO = "auto"
    PACKED = "packed"
    PADDED = "padded"


def prompt_prefix(task: Task, prompt_name: PromptName) -> str:
    """The text prepended to an input before tokenisation.

    ``retrieval`` and ``code`` are asymmetric: queries get ``"Query: "`` and passages
    ``"Passage: "``. ``text-matching`` is symmetric and always uses ``"Query: "``.

    This is intentionally the *intended* rule, not the reference implementation's exact
    behaviour: the reference applies the symmetric rule only when the task is set as a
    model property, so ``encode_text(task="text-matching", prompt_name="passage")`` gets
    ``"Passage: "`` there. Here both sides of a text-matching pair always get the same
    prefix, so similarities stay symmetric whichever side a text was encoded as.
    """
    if task is Task.TEXT_MATCHING or prompt_name is PromptName.QUERY:
        return QUERY_PREFIX
    return PASSAGE_PREFIX


class CompileBackend(_ClosedSet):
    """The ``torch.compile`` backend of the compiled decoder (see :mod:`embedder.compiled`)."""

    #: Generated kernels (Triton on CUDA, C++ on CPU): the fast one.
    INDUCTOR = "inductor"
    #: Traced and decomposed but run by eager kernels: checks tracing without codegen (tests).
    AOT_EAGER = "aot_eager"
    #: Traced only: the cheapest check that the stack compiles without graph breaks.
    EAGER = "eager"


#: Longest single query (tokens, prompt included) replayed from a CUDA graph; longer ones
#: run the compiled decoder without a graph. One graph per length bucket up to this.
DEFAULT_GRAPH_MAX_LENGTH = 512
#: Compiled graph variants allowed before new shapes run eagerly (with a WARNING): with
#: dynamic batch and length dims padded batches need 2 (dynamo specialises batch 1),
#: packed rows on CUDA 2 more (the varlen kernel's max length turns dynamic on the second).
DEFAULT_MAX_COMPILES = 6


@dataclass(frozen=True)
class CompileOptions:
    """Opt-in compiled hot path of the decoder (off by default; see README "Compiled decoder").

    Attributes:
        backend: The ``torch.compile`` backend.
        cuda_graphs: Replay single queries (batch of 1, at most ``graph_max_length``
            tokens) from CUDA graphs captured per length bucket. None: on for CUDA, off
            on CPU. True on a CPU device is refused (CUDA graphs need CUDA).
        graph_max_length: Longest single query replayed from a graph.
        max_compiles: Bound on compiled variants of the decoder; past it, a shape that
            would recompile runs eagerly and a WARNING says so.
    """

    backend: CompileBackend = CompileBackend.INDUCTOR
    cuda_graphs: bool | None = None
    graph_max_length: int = DEFAULT_GRAPH_MAX_LENGTH
    max_compiles: int = DEFAULT_MAX_COMPILES

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend", CompileBackend.parse(self.backend, what="backend"))
        if self.cuda_graphs not in (None, True, False):
            raise OptionError(f"cuda_graphs must be True, False or None, got {self.cuda_graphs!r}")
        for name in ("graph_max_length", "max_compiles"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"{name} must be a positive int, got {value!r}")
