"""``POST /v1/embeddings``: a request's inputs -> batcher jobs -> the hosted API's response.

Texts and images of one request become (at most) two jobs, one per modality, run
concurrently through the shared batcher; the response lists every input at its index.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from embedder.inputs import text_problem
from embedder.options import PromptName, Task, prompt_prefix

from .batcher import Batcher, BatchKey, Rows
from .images import ImageFetchError, image_bytes
from .schemas import (
    TASKS,
    EmbeddingItem,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ImageInput,
    TextInput,
    Usage,
)
from .settings import ServeSettings

#: Requests with fewer characters are tokenised on the event loop; longer ones in a thread.
_INLINE_TOKENIZE_CHARS = 4096


class LimitError(HTTPException):
    """A request over one of the server's limits: 413 naming the field and the limit."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=413, detail=message)


def invalid(message: str) -> HTTPException:
    return HTTPException(status_code=422, detail=message)


@dataclass(frozen=True)
class Runtime:
    """What the routes share: the loaded model, its batcher, the settings."""

    encoder: Any
    batcher: Batcher
    settings: ServeSettings
    model_name: str

    def check_dim(self, dimensions: int | None, field: str = "dimensions") -> int | None:
        """A Matryoshka dim for ``truncate_dim`` (None: full), or 422 listing the valid ones."""
        if dimensions is None:
            return None
        dims = sorted(int(d) for d in self.encoder.matryoshka_dims)
        if dimensions not in dims:
            raise invalid(f"{field}: {dimensions} is not one of the model's dims {dims}")
        return None if dimensions == dims[-1] else dimensions

    async def count_tokens(self, texts: list[str], task: Task, prompt: PromptName) -> list[int]:
        """Tokens of ``prefix + text`` per text, as the encoder will count them."""
        prefix = prompt_prefix(task, prompt)
        fast = self.encoder.tokenizer.backend_tokenizer

        def count() -> list[int]:
            encoded = fast.encode_batch([prefix + t for t in texts], add_special_tokens=False)
            return [len(e.ids) for e in encoded]

        if sum(len(t) for t in texts) < _INLINE_TOKENIZE_CHARS:
            return count()  # tens of microseconds: cheaper than a thread hop
        return await run_in_threadpool(count)

    async def embed_texts(
        self,
        texts: list[str],
        *,
        task: Task,
        prompt: PromptName,
        dim: int | None,
        multivector: bool,
        field: str,
        truncate: bool = True,
        positions: list[int] | None = None,
    ) -> Rows:
        """Validate texts (naming ``field[i]``) and embed them through the batcher."""
        where = positions if positions is not None else list(range(len(texts)))
        for i, text in zip(where, texts, strict=True):
            problem = text_problem(text) if isinstance(text, str) else "not a string"
            if problem:
                raise invalid(f"{field}[{i}]: {problem}")
        counts = await self.count_tokens(texts, task, prompt)
        limit = self.settings.max_tokens_per_text
        if not truncate:
            for i, n in zip(where, counts, strict=True):
                if n > limit:
                    raise LimitError(
                        f"{field}[{i}]: {n} tokens (prompt prefix included) is over the "
                        f"limit of {limit} tokens per text (max_tokens_per_text)"
                    )
        cost = sum(min(n, limit) for n in counts)
        key = BatchKey("text", task, prompt, dim, multivector)
        return await self.batcher.submit(key, texts, cost)

    async def embed_images(
        self,
        sources: list[str],
        *,
        task: Task,
        dim: int | None,
        multivector: bool,
        field: str,
        positions: list[int] | None = None,
    ) -> Rows:
        """Fetch / decode image strings (naming ``field[i]``) and embed them."""
        where = positions if positions is not None else list(range(len(sources)))
        s = self.settings
        try:
            data = await asyncio.gather(
                *(
                    image_bytes(
                        src,
                        f"{field}[{i}].image",
                        max_bytes=s.max_image_bytes,
                        timeout_s=s.url_timeout_s,
                        allow_private=s.allow_private_urls,
                    )
                    for i, src in zip(where, sources, strict=True)
                )
            )
        except ImageFetchError as e:
            raise HTTPException(status_code=e.status, detail=str(e)) from None
        cost = len(data) * int(self.encoder.image_token_count())
        key = BatchKey("image", task, PromptName.PASSAGE, dim, multivector)
        return await self.batcher.submit(key, data, cost)


#: ``embedding_type`` -> the little-endian dtype of its base64 bytes (None: JSON floats).
_WIRE_DTYPES: dict[str, str | None] = {"float": None, "base64": "<f4", "base64_float16": "<f2"}


def _b64(vec: np.ndarray, dtype: str) -> str:
    """Little-endian bytes, base64 (numpy: ``np.frombuffer(b64decode(s), dtype)``)."""
    return base64.b64encode(np.ascontiguousarray(vec, dtype=dtype).tobytes()).decode()


def _item(
    index: int, rows: Rows, row: int, *, multivector: bool, wire: str | None
) -> EmbeddingItem:
    if not multivector:
        vec = rows.dense[row]  # (d,)
        return EmbeddingItem(index=index, embedding=_b64(vec, wire) if wire else vec.tolist())
    if rows.multivectors is None:
        raise RuntimeError("internal error: multi-vectors were asked for but not computed")
    tokens = rows.multivectors[row]  # (t, 128)
    if wire:
        return EmbeddingItem(index=index, embeddings=[_b64(t, wire) for t in tokens])
    return EmbeddingItem(index=index, embeddings=tokens.astype(np.float32).tolist())


async def create_embeddings(rt: Runtime, req: EmbeddingsRequest) -> EmbeddingsResponse:
    inputs = [req.input] if isinstance(req.input, str) else list(req.input)
    if not inputs:
        raise invalid("input: give at least one text or image")
    if len(inputs) > rt.settings.max_items:
        raise LimitError(
            f"input: {len(inputs)} items is over the limit of {rt.settings.max_items} "
            "per request (max_items)"
        )
    if req.late_chunking:
        raise invalid("late_chunking: not supported by this server (send late_chunking=false)")
    task_name, prompt_name = TASKS[req.task]
    task, prompt = Task.parse(task_name), PromptName.parse(prompt_name)
    multivector = req.return_multivector
    dim = None if multivector else rt.check_dim(req.dimensions)
    texts: list[tuple[int, str]] = []
    images: list[tuple[int, str]] = []
    for i, item in enumerate(inputs):
        if isinstance(item, ImageInput):
            images.append((i, item.image))
        else:
            texts.append((i, item.text if isinstance(item, TextInput) else item))
    jobs = []
    if texts:
        jobs.append(
            rt.embed_texts(
                [t for _, t in texts],
                task=task,
                prompt=prompt,
                dim=dim,
                multivector=multivector,
                field="input",
                truncate=req.truncate,
                positions=[i for i, _ in texts],
            )
        )
    if images:
        jobs.append(
            rt.embed_images(
                [s for _, s in images],
                task=task,
                dim=dim,
                multivector=multivector,
                field="input",
                positions=[i for i, _ in images],
            )
        )
    results = await asyncio.gather(*jobs)
    data: list[EmbeddingItem] = []
    tokens = 0
    wire = _WIRE_DTYPES[req.embedding_type]
    for group, rows in zip([g for g in (texts, images) if g], results, strict=True):
        tokens += int(rows.token_counts.sum())
        for row, (index, _) in enumerate(group):
            data.append(_item(index, rows, row, multivector=multivector, wire=wire))
    data.sort(key=lambda d: d.index)
    return EmbeddingsResponse(
        model=req.model or rt.model_name,
        data=data,
        usage=Usage(total_tokens=tokens, prompt_tokens=tokens),
    )
