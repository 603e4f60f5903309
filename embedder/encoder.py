"""JinaV4Embedder: load a checkpoint, encode texts and images into an EmbeddingBatch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from .backoff import MemoryBackoff, Rows
from .batching import Batch, Pipeline, plan_batches, progress_enabled
from .config import ModelSpec, resolve_device, resolve_dtype
from .errors import EmbedderError, OptionError
from .fetch import DEFAULT_TIMEOUT_S
from .identity import ModelIdentity, checkpoint_identity
from .inputs import ImageSource, validate_texts
from .loading import load_model, load_tokenizer, read_image_spec, resolve_checkpoint
from .lora import TaskLoRA
from .model import EmbedderOutput, JinaV4Model, ModelInputs
from .options import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_MAX_LENGTH,
    CompileOptions,
    MultivectorDType,
    Packing,
    PromptName,
    Task,
    prompt_prefix,
)
from .outputs import EmbeddingBatch
from .packing import enable_packing, forward_packed, pack, resolve_packing
from .prepared import ImagePreparer, PreparedImage, load_batch
from .processing import Processor
from .transfer import pinning, to_host

if TYPE_CHECKING:
    from .compiled import CompileStats

logger = logging.getLogger(__name__)

TaskArg = str | Task | Sequence[str | Task]


@dataclass(frozen=True)
class _CallOptions:
    """The validated per-call options shared by ``encode_text`` and ``encode_image``.

    Attributes:
        dim: dense output width (a Matryoshka dim or the full hidden size).
        multivector: run the projector and return the per-token vectors.
        batch_tokens: padded tokens per forward.
        multivector_dtype: torch dtype the per-token vectors are cast to before the copy.
    """

    dim: int
    multivector: bool
    batch_tokens: int
    multivector_dtype: torch.dtype


class JinaV4Embedder:
    """jina-embeddings-v4: dense (Matryoshka) and multi-vector embeddings from one forward.

    Build it with :meth:`from_pretrained`. All three task adapters stay loaded; a call may
    give one task for every item or one per item. One instance runs one call at a time
    (the active task's LoRA is merged into shared weights): do not call it from several
    threads at once.
    """

    def __init__(
        self,
        model: JinaV4Model,
        lora: TaskLoRA,
        processor: Processor,
        *,
        device: torch.device,
        dtype: torch.dtype,
        packing: str | Packing = Packing.AUTO,
    ) -> None:
        self._model = model
        self._lora = lora
        self._processor = processor
        self._device = device
        self._dtype = dtype
        #: Halves the batch budget on an out-of-memory, for the rest of this embedder's life.
        self._backoff = MemoryBackoff(device)
        #: (name, folder) of the checkpoint, for ``identity``; None when built otherwise.
        self._checkpoint: tuple[str, Path] | None = None
        self._identity: ModelIdentity | None = None
        attn = model.model.language_model.config._attn_implementation
        self._packed = resolve_packing(Packing.parse(packing, what="packing"), device, dtype, attn)
        if self._packed:
            enable_packing(model)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        attn_implementation: str = "sdpa",
        packing: str | Packing = Packing.AUTO,
        compile: bool | CompileOptions = False,
    ) -> JinaV4Embedder:
        """Load a checkpoint in the jinaai/jina-embeddings-v4 layout.

        Args:
            name_or_path: A local folder, or a hub id (downloaded with huggingface_hub).
            device: Default: CUDA when available, else CPU.
            dtype: Default: bfloat16 on CUDA, float32 on CPU.
            attn_implementation: transformers attention backend ("sdpa", "eager",
                "flash_attention_2" when flash-attn is installed).
            packing: "packed" runs each batch as one row without padding (variable-length
                attention), "padded" as right-padded rows; "auto" packs on CUDA in
                bf16/fp16 and pads elsewhere. "packed" needs ``attn_implementation="sdpa"``.
            compile: True (default options) or CompileOptions: see :meth:`enable_compile`.

        Raises:
            CheckpointError: A file is missing, or tensor names / shapes do not match
                (the message lists them).
        """
        folder = resolve_checkpoint(name_or_path)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        logger.info("attention implementation: %s", attn_implementation)
        model, lora = load_model(folder, dev, dt, attn_implementation)
        processor = Processor(load_tokenizer(folder), read_image_spec(folder), model.config)
        embedder = cls(model, lora, processor, device=dev, dtype=dt, packing=packing)
        embedder._checkpoint = (str(name_or_path), folder)
        if compile is not False:
            embedder.enable_compile(None if compile is True else compile)
        return embedder

    def enable_compile(self, options: CompileOptions | None = None) -> None:
        """Run the decoder through ``torch.compile`` (and CUDA graphs for single queries).

        Opt-in: the first batch of each new kind pays the compile (seconds to minutes);
        outputs match the eager path to float rounding. See :mod:`embedder.compiled`.

        Raises:
            OptionError: An option this device cannot honour (CUDA graphs on a CPU).
        """
        from .compiled import CompiledDecoder

        opts = options if options is not None else CompileOptions()
        if not isinstance(opts, CompileOptions):
            raise OptionError(f"compile options must be CompileOptions, got {opts!r}")
        decoder = CompiledDecoder(self._model.model.language_model, self._device, opts)
        self._model.compiled_decoder = decoder

    def disable_compile(self) -> None:
        """Back to the eager decoder (compiled code and CUDA graphs are dropped)."""
        self._model.compiled_decoder = None

    @property
    def compile_stats(self) -> CompileStats | None:
        """Counters of the compiled decoder (graphs compiled, replays...); None when off."""
        decoder = self._model.compiled_decoder
        return getattr(decoder, "stats", None)

    # ------------------------------------------------------------------ properties

    @property
    def tokenizer(self) -> Any:
        """The checkpoint's Hugging Face tokenizer (e.g. for token-aware chunking)."""
        return self._processor.tokenizer

    @property
    def matryoshka_dims(self) -> tuple[int, ...]:
        return self._model.spec.matryoshka_dims

    @property
    def spec(self) -> ModelSpec:
        return self._model.spec

    @property
    def tasks(self) -> tuple[Task, ...]:
        return self._lora.tasks

    @property
    def identity(self) -> ModelIdentity | None:
        """Name, revision and fingerprint of the checkpoint (None if not loaded from one).

        What a vector collection records so that it is only queried with this model.
        """
        if self._identity is None and self._checkpoint is not None:
            self._identity = checkpoint_identity(*self._checkpoint)
        return self._identity

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def packed(self) -> bool:
        """Whether batches run packed into one row (see ``packing`` in :meth:`from_pretrained`)."""
        return self._packed

    # ------------------------------------------------------------------ sizes

    def image_token_count(self, max_pixels: int | None = None) -> int:
        """The most per-token vectors one image yields at ``max_pixels`` (template included).

        Args:
            max_pixels: The pixel budget (default: preprocessor_config.json's).
        """
        return self._processor.image_token_count(max_pixels)

    def image_preparer(self, max_pixels: int | None = None) -> ImagePreparer:
        """A picklable function: image source -> :class:`PreparedImage` for ``encode_image``
        at this pixel budget; run it in worker processes to take image decoding and
        preprocessing off the encoder's thread (``jina_vdb.preprocess``)."""
        return ImagePreparer(
            self._processor.image_spec, self._processor.check_max_pixels(max_pixels)
        )

    def prompt_token_count(
        self, task: str | Task, prompt_name: str | PromptName = PromptName.PASSAGE
    ) -> int:
        """Tokens the prompt prefix adds to a text of this task and side."""
        return self._processor.prompt_token_count(task, prompt_name)

    # ------------------------------------------------------------------ encoding

    def encode_text(
        self,
        texts: Sequence[str],
        *,
        task: TaskArg,
        prompt_name: str | PromptName = PromptName.QUERY,
        truncate_dim: int | None = None,
        multivector: bool = True,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_tokens: int | None = None,
        multivector_dtype: str | MultivectorDType = MultivectorDType.FLOAT32,
        show_progress: bool | None = None,
    ) -> EmbeddingBatch:
        """Embed texts as ``prefix + text`` (no chat template, no BOS).

        Args:
            texts: Non-empty strings (empty / whitespace-only ones are rejected).
            task: "retrieval", "text-matching" or "code", or one per text.
            prompt_name: "query" or "passage"; text-matching always uses "Query: ".
            truncate_dim: A Matryoshka dim (config ``matryoshka_dims``); the dense vector
                is sliced and L2-normalised again. None: config ``truncate_dim`` or full.
            multivector: False skips the projector and the per-token transfer.
            max_length: Longer inputs (prefix included) are cut on the right, with one
                WARNING per call giving how many were cut.
            batch_tokens: Tokens per forward, padding included unless packed (default 64k
                on CUDA, 8k on CPU).
            multivector_dtype: "float32" or "float16" for the multi-vectors.
            show_progress: A progress bar; None shows it when this logger emits INFO.

        Raises:
            TextInputError: A bad text (the message names its index).
            OptionError: A bad option value (the message lists the valid ones).
        """
        items = validate_texts(texts)
        tasks = self._tasks_per_item(task, len(items))
        name = PromptName.parse(prompt_name, what="prompt_name")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise OptionError(f"max_length must be a positive int, got {max_length!r}")
        opts = self._options(truncate_dim, multivector, batch_tokens, multivector_dtype)
        prefixes = [prompt_prefix(t, name) for t in tasks]
        ids, truncated = self._processor.tokenize_texts(items, prefixes, max_length)
        if truncated:
            logger.warning(
                "%d of %d texts were longer than max_length=%d tokens (prompt prefix "
                "included) and were truncated on the right (first: item %d)",
                len(truncated),
                len(items),
                max_length,
                truncated[0],
            )

        def prepare(batch: Batch) -> ModelInputs:
            return self._processor.collate_text([ids[i] for i in batch.indices])

        costs = [len(seq) for seq in ids]
        return self._run(costs, tasks, prepare, opts, show_progress, "encode_text")

    def encode_image(
        self,
        images: Sequence[ImageSource | PreparedImage],
        *,
        task: TaskArg,
        truncate_dim: int | None = None,
        multivector: bool = True,
        max_pixels: int | None = None,
        batch_tokens: int | None = None,
        multivector_dtype: str | MultivectorDType = MultivectorDType.FLOAT32,
        show_progress: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        background: tuple[int, int, int] | None = None,
    ) -> EmbeddingBatch:
        """Embed images (PIL, path, http(s) URL, bytes, base64, data URI, or a PreparedImage
        from :meth:`image_preparer`) in the image template.

        The dense vector averages ``<|vision_start|>`` .. ``<|vision_end|>`` inclusive; the
        multi-vectors keep every token of the template.

        Args:
            images: The image sources.
            task: "retrieval", "text-matching" or "code", or one per image.
            truncate_dim: As in :meth:`encode_text`.
            multivector: As in :meth:`encode_text`.
            max_pixels: Resize cap per image (default preprocessor_config.json's,
                602112 = 768 image tokens for jina-embeddings-v4); may be raised per call.
            batch_tokens: As in :meth:`encode_text`.
            multivector_dtype: As in :meth:`encode_text`.
            show_progress: As in :meth:`encode_text`.
            timeout: Seconds allowed for each URL download as a whole.
            background: Composite transparent images onto this RGB colour; None (default)
                drops alpha like the reference's ``convert("RGB")``.

        Raises:
            ImageInputError: An image that cannot be read (the message names its index).
            OptionError: A bad option value.
        """
        pixels = self._processor.check_max_pixels(max_pixels)
        # Decoded images far over the budget are reduced at load (memory: see decoding.py).
        pil = load_batch(images, timeout=timeout, background=background, max_pixels=pixels)
        tasks = self._tasks_per_item(task, len(pil))
        opts = self._options(truncate_dim, multivector, batch_tokens, multivector_dtype)
        grids = [self._processor.image_grid(im, pixels, i) for i, im in enumerate(pil)]
        costs = [self._processor.image_sequence_length(g) for g in grids]

        def prepare(batch: Batch) -> ModelInputs:
            return self._processor.collate_images([pil[i] for i in batch.indices], pixels)

        return self._run(costs, tasks, prepare, opts, show_progress, "encode_image")

    # ------------------------------------------------------------------ internals

    def _tasks_per_item(self, task: TaskArg, n: int) -> list[Task]:
        if task is None:
            raise OptionError(
                f"task is required: one of {[t.value for t in self.tasks]} (or one per item)"
            )
        if isinstance(task, (str, Task)):
            tasks = [Task.parse(task, what="task")] * n
        elif isinstance(task, Sequence):
            if len(task) != n:
                raise OptionError(
                    f"got {len(task)} tasks for {n} items; give one task or one per item"
                )
            tasks = [Task.parse(t, what="task") for t in task]
        else:
            raise OptionError(
                f"task must be one of {[t.value for t in Task]} (a str or Task) or a list with "
                f"one per item, got {task!r}"
            )
        absent = sorted({t.value for t in tasks} - {t.value for t in self.tasks})
        if absent:
            raise OptionError(f"task(s) {absent} have no adapter in this checkpoint")
        return tasks

    def _options(
        self,
        truncate_dim: int | None,
        multivector: bool,
        batch_tokens: int | None,
        multivector_dtype: str | MultivectorDType,
    ) -> _CallOptions:
        if batch_tokens is None:
            batch_tokens = DEFAULT_BATCH_TOKENS.get(self._device.type, DEFAULT_BATCH_TOKENS["cpu"])
        if isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int) or batch_tokens < 1:
            raise OptionError(f"batch_tokens must be a positive int, got {batch_tokens!r}")
        mv_dtype = MultivectorDType.parse(multivector_dtype, what="multivector_dtype")
        return _CallOptions(
            dim=self._model.spec.resolve_truncate_dim(truncate_dim),
            multivector=bool(multivector),
            batch_tokens=batch_tokens,
            multivector_dtype=torch.float16
            if mv_dtype is MultivectorDType.FLOAT16
            else torch.float32,
        )

    def _run(
        self,
        costs: list[int],
        tasks: list[Task],
        prepare: Callable[[Batch], ModelInputs],
        opts: _CallOptions,
        show_progress: bool | None,
        desc: str,
    ) -> EmbeddingBatch:
        n = len(costs)
        dense = np.empty((n, opts.dim), dtype=np.float32)
        multi: list[np.ndarray] | None = [] if opts.multivector else None
        slots: list[np.ndarray | None] = [None] * n
        counts = np.asarray(costs, dtype=np.int64)
        prepare = pinning(prepare, self._device)  # CUDA: pinned on the preparing thread
        one_copy = self._device.type != "cpu"  # one device-to-host copy per batch

        def forward(batch: Batch, inputs: ModelInputs) -> Rows:
            self._lora.activate(cast(Task, batch.group))  # grouped by task above
            out = self._forward(inputs, opts.multivector)
            return to_host(out, opts.dim, opts.multivector_dtype, one_copy=one_copy)

        def run(batch: Batch, inputs: ModelInputs) -> Rows:
            return self._backoff.run(batch, inputs, forward, prepare, costs)

        budget = self._backoff.budget(opts.batch_tokens)
        batches = plan_batches(costs, budget, groups=tasks, packed=self._packed)
        show = progress_enabled(show_progress, logger)
        for batch, (d, mv) in Pipeline(prepare, run)(batches, total=n, show=show, desc=desc):
            idx = list(batch.indices)
            dense[idx] = d
            if mv is not None:
                for i, arr in zip(idx, mv, strict=True):
                    slots[i] = arr
        if multi is not None:
            multi = [s for s in slots if s is not None]
            if len(multi) != n:
                raise EmbedderError(f"internal error: {n - len(multi)} items got no multi-vectors")
        return EmbeddingBatch(dense=dense, multivectors=multi, token_counts=counts)

    def _forward(self, inputs: ModelInputs, multivector: bool) -> EmbedderOutput:
        if self._packed:
            packed = pack(inputs, self._model.config).to(self._device)
            return forward_packed(self._model, packed, multivector=multivector)
        return self._model(inputs.to(self._device), multivector=multivector)
