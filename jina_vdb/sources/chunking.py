"""Token-aware text chunking with overlap.

Chunks are exact slices of the original text (cut at token boundaries, outer whitespace
stripped), so a search hit can quote its source. Token counts come from the model's own
tokenizer when one is given; without one, whitespace-separated words stand in for tokens
(an approximation, documented as such).

Streaming: a text is tokenised in segments of about ``SEGMENT_CHARS`` characters, cut
after a line break (else at a space), and chunks are yielded as soon as they are known.
Tokenising a 32 MiB file whole took 10 GB and ~1 minute (the tokenizer keeps every token's
string, offsets and masks); by segments it holds one segment's tokens and one window. A
text shorter than one segment is tokenised whole, exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from embedder.inputs import is_blank

#: Default chunk size in tokens. The model reads 32k tokens, so chunking is a choice for
#: retrieval granularity, not a necessity: the default is generous.
DEFAULT_CHUNK_TOKENS = 2048
DEFAULT_CHUNK_OVERLAP = 128

#: Characters tokenised at a time (a segment's tokens are the only ones held at once).
SEGMENT_CHARS = 1 << 18

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
    """Number of tokens in ``text`` (words when no tokenizer is given), segment by segment."""
    return sum(len(spans) for spans in _segment_offsets(text, tokenizer))


def chunk_text(
    text: str,
    tokenizer: Any | None = None,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> list[Chunk]:
    """All chunks of ``text`` as a list (see :func:`iter_chunks`)."""
    return list(iter_chunks(text, tokenizer, chunk_tokens=chunk_tokens, overlap=overlap))


def iter_chunks(
    text: str,
    tokenizer: Any | None = None,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> Iterator[Chunk]:
    """Split ``text`` into windows of at most ``chunk_tokens`` tokens sharing ``overlap`` tokens.

    A text that fits in one window gives one chunk (the whole text, stripped); a text with
    nothing visible gives none. Consecutive chunks share exactly ``overlap`` tokens, and
    the last window ends at the text's last token. Chunks are yielded as the text is
    tokenised, segment by segment (memory stays flat for any length).

    Args:
        text: the text to split.
        tokenizer: a Hugging Face tokenizer (``JinaV4Embedder.tokenizer``), or None for words.
        chunk_tokens: window size in tokens.
        overlap: tokens shared by consecutive windows, in ``[0, chunk_tokens)``.

    Yields:
        The chunks, in text order.
    """
    check_chunking(chunk_tokens, overlap)
    if is_blank(text):
        return
    spans: list[tuple[int, int]] = []  # token spans from global token index ``base`` on
    base = start = index = 0  # ``start``: global index of the next window's first token
    segments = _segment_offsets(text, tokenizer)
    more = True
    while more:
        segment = next(segments, None)
        more = segment is not None
        spans.extend(segment or ())
        total = base + len(spans)
        # Emit a window only once it is known whether it is the last one.
        while start < total and (total - start > chunk_tokens or not more):
            end = min(start + chunk_tokens, total)
            a, b = spans[start - base][0], spans[end - 1 - base][1]
            chunk = _chunk(text, index, a, b, end - start)
            if chunk is not None:
                yield chunk
                index += 1
            if end == total and not more:
                return
            start = end - overlap
        del spans[: start - base]
        base = start


def _chunk(text: str, index: int, a: int, b: int, tokens: int) -> Chunk | None:
    piece = text[a:b]
    stripped = piece.strip()
    if not stripped:
        return None
    lead = len(piece) - len(piece.lstrip())
    return Chunk(index, stripped, tokens, a + lead, a + lead + len(stripped))


def _segment_offsets(text: str, tokenizer: Any | None) -> Iterator[list[tuple[int, int]]]:
    """Token spans of ``text``, one list per segment, in text coordinates."""
    pos = 0
    while pos < len(text):
        cut = _cut(text, pos)
        spans = token_offsets(text[pos:cut], tokenizer)
        yield [(a + pos, b + pos) for a, b in spans]
        pos = cut


def _cut(text: str, pos: int) -> int:
    """End of the segment starting at ``pos``: where a token surely starts.

    After a line break that a non-space follows, else before a space between two
    non-spaces (BPE tokens carry their leading space), else a hard cut.
    """
    hard = pos + SEGMENT_CHARS
    if hard >= len(text):
        return len(text)
    floor = pos + SEGMENT_CHARS // 2
    i = text.rfind("\n", floor, hard)
    while i > floor and text[i + 1].isspace():
        i = text.rfind("\n", floor, i)
    if i > floor:
        return i + 1
    i = text.rfind(" ", floor, hard)
    while i > floor and (text[i + 1].isspace() or text[i - 1].isspace()):
        i = text.rfind(" ", floor, i)
    return i if i > floor else hard
