"""Token-aware text chunking with overlap.

Chunks are exact slices of the original text (cut at token boundaries, outer whitespace
stripped), so a search hit can quote its source. Token counts come from the model's own
tokenizer when one is given; without one, whitespace-separated words stand in for tokens
(an approximation, documented as such).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Default chunk size in tokens. The model reads 32k tokens, so chunking is a choice for
#: retrieval granularity, not a necessity: the default is generous.
DEFAULT_CHUNK_TOKENS = 2048
DEFAULT_CHUNK_OVERLAP = 128

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    """One slice of a text.

    Attributes:
        index: position of the chunk in its text (0-based).
        text: the slice, outer whitespace stripped.
        tokens: number of tokens in the slice.
        start: character offset of the slice in the original text.
        end: character offset one past the slice's end.
    """

    index: int
    text: str
    tokens: int
    start: int
    end: int


def check_chunking(chunk_tokens: int, overlap: int) -> None:
    """Validate a chunk size and overlap (raises ValueError showing the bad values)."""
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be a positive int, got {chunk_tokens!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < chunk_tokens:
        raise ValueError(
            f"chunk overlap must be an int in [0, chunk_tokens={chunk_tokens}), got {overlap!r}"
        )


def token_offsets(text: str, tokenizer: Any | None = None) -> list[tuple[int, int]]:
    """Character span of every token of ``text`` (no special tokens added).

    Uses the fast tokenizer's backend directly (no max-length warning on long files);
    falls back to calling the tokenizer with ``return_offsets_mapping``; without a
    tokenizer, words stand in for tokens.
    """
    if tokenizer is None:
        return [m.span() for m in _WORD.finditer(text)]
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(
        tokenizer, "_tokenizer", None
    )
    if backend is not None and hasattr(backend, "encode"):
        offsets = backend.encode(text, add_special_tokens=False).offsets
    else:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
    return [(int(a), int(b)) for a, b in offsets]


def count_tokens(text: str, tokenizer: Any | None = None) -> int:
    """Number of tokens in ``text`` (words when no tokenizer is given)."""
    return len(token_offsets(text, tokenizer))


def chunk_text(
    text: str,
    tokenizer: Any | None = None,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> list[Chunk]:
    """Split ``text`` into windows of at most ``chunk_tokens`` tokens sharing ``overlap`` tokens.

    A text that fits in one window gives one chunk (the whole text, stripped); an empty
    or whitespace-only text gives none. Consecutive chunks share exactly ``overlap``
    tokens, and the last window ends at the text's last token.

    Args:
        text: the text to split.
        tokenizer: a Hugging Face tokenizer (``JinaV4Embedder.tokenizer``), or None for words.
        chunk_tokens: window size in tokens.
        overlap: tokens shared by consecutive windows, in ``[0, chunk_tokens)``.

    Returns:
        The chunks, in text order.
    """
    check_chunking(chunk_tokens, overlap)
    if not text.strip():
        return []
    offsets = token_offsets(text, tokenizer)
    if not offsets:
        return []
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = min(start + chunk_tokens, len(offsets))
        a, b = offsets[start][0], offsets[end - 1][1]
        piece = text[a:b]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            chunks.append(
                Chunk(len(chunks), stripped, end - start, a + lead, a + lead + len(stripped))
            )
        if end == len(offsets):
            return chunks
        start = end - overlap
