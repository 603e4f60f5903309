"""How many token vectors one record can have, asked of the loaded model.

Milvus' Array-of-Structs layout fixes the most token vectors per record when a collection
is created (``max_tokens``). The bound depends on the model, not on the database: a text
chunk is its tokens plus the prompt prefix, an image is the processor's image tokens at the
pixel budget plus the prompt template. The encoder knows both, so the application asks it
and hands the number to ``connectors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.milvus.struct_layout import SERVER_ARRAY_CAP
from embedder.options import PromptName

if TYPE_CHECKING:
    from embedder import JinaV4Embedder

#: A chunk is cut at token boundaries of the whole text and tokenised again on its own,
#: after the prompt: a word cut at either edge may split into a few more tokens.
EDGE_RETOKENISATION_TOKENS = 8


def max_tokens_per_record(
    encoder: JinaV4Embedder, *, chunk_tokens: int, max_pixels: int | None, max_length: int
) -> int:
    """Token vectors one ingested text chunk or image yields, at most.

    Args:
        encoder: the loaded model.
        chunk_tokens: the sources' chunk size (texts are chunked to it).
        max_pixels: the per-image pixel budget (None: the model's default).
        max_length: the encoder's cut-off for one text (prompt included).
    """
    prompt = max(encoder.prompt_token_count(t, PromptName.PASSAGE) for t in encoder.tasks)
    text = min(max_length, chunk_tokens + prompt + EDGE_RETOKENISATION_TOKENS)
    return max(text, encoder.image_token_count(max_pixels))


def milvus_max_tokens(
    encoder: JinaV4Embedder, *, chunk_tokens: int, max_pixels: int | None, max_length: int
) -> int:
    """``max_tokens`` for a new Milvus collection: the per-record bound, capped at Milvus'
    default array capacity (longer records are refused with a RecordError naming them, and
    reported as failed)."""
    bound = max_tokens_per_record(
        encoder, chunk_tokens=chunk_tokens, max_pixels=max_pixels, max_length=max_length
    )
    return min(SERVER_ARRAY_CAP, bound)
