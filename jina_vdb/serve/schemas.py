"""Request and response bodies (pydantic): the OpenAPI schema at ``/docs`` comes from these.

``/v1/embeddings`` follows Jina's hosted embeddings API for jina-embeddings-v4 (see the
README, "HTTP server", for how it was read and where it differs).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.query import SearchMode

#: The hosted API's dotted task names -> (LoRA task, prompt name).
TASKS: dict[str, tuple[str, str]] = {
    "retrieval.query": ("retrieval", "query"),
    "retrieval.passage": ("retrieval", "passage"),
    "text-matching": ("text-matching", "query"),
    "code.query": ("code", "query"),
    "code.passage": ("code", "passage"),
}
TaskName = Literal[
    "retrieval.query", "retrieval.passage", "text-matching", "code.query", "code.passage"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not ignored


class TextInput(_Strict):
    text: str


class ImageInput(_Strict):
    image: str = Field(description="An http(s) URL, a data: URI, or base64 image bytes.")


InputItem = str | TextInput | ImageInput


class EmbeddingsRequest(_Strict):
    model: str | None = Field(
        default=None, description="Accepted for compatibility; the server's model is used."
    )
    input: list[InputItem] | str = Field(description="Texts, or {text} / {image} objects.")
    task: TaskName = "retrieval.passage"
    dimensions: int | None = Field(default=None, description="A Matryoshka dim (truncation).")
    return_multivector: bool = False
    embedding_type: Literal["float", "base64", "base64_float16"] = Field(
        default="float",
        description="float: JSON numbers; base64: little-endian float32 bytes, base64; "
        "base64_float16: little-endian float16 bytes, base64 (half the size).",
    )
    late_chunking: bool = Field(default=False, description="Not supported: must be false.")
    truncate: bool = Field(
        default=True, description="false: a text over the token limit is refused (413)."
    )


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str | None = None
    embeddings: list[list[float]] | list[str] | None = None


class Usage(BaseModel):
    total_tokens: int
    prompt_tokens: int


class EmbeddingsResponse(BaseModel):
    model: str
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    usage: Usage


class ErrorResponse(BaseModel):
    detail: str


# ---------------------------------------------------------------- collections


class SearchRequest(_Strict):
    query: str | None = Field(default=None, description="The query text.")
    image: str | None = Field(default=None, description="Or an image query: URL or base64.")
    mode: SearchMode = SearchMode.HYBRID
    limit: int = Field(default=10, ge=1)
    prefetch_limit: int = Field(default=100, ge=1)
    filter: dict[str, Any] | list[str] | None = Field(
        default=None,
        description='JSON filter ({"key": "k", "eq": v}, {"key": "k", "any": [..]}, '
        '{"key": "k", "gte": n}, {"and"|"or": [..]}, {"not": f}) or CLI-style strings '
        '["k=v", "n>=3"] (AND).',
    )
    task: Literal["retrieval", "text-matching", "code"] = "retrieval"
    allow_model_mismatch: bool = False


class SearchHit(BaseModel):
    id: int | str
    score: float
    payload: dict[str, Any]


class SearchResponse(BaseModel):
    collection: str
    mode: SearchMode
    multivector: bool = Field(description="The collection stores token vectors (MaxSim).")
    query_tokens: int = Field(description="Tokens of the embedded query (MaxSim's scale).")
    hits: list[SearchHit]


class PointIn(_Strict):
    id: int | str
    text: str | None = None
    image: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class UpsertRequest(_Strict):
    points: list[PointIn]
    task: Literal["retrieval", "text-matching", "code"] = "retrieval"
    allow_model_mismatch: bool = False


class UpsertResponse(BaseModel):
    collection: str
    upserted: int
    total_tokens: int


class DeleteRequest(_Strict):
    ids: list[int | str]


class DeleteResponse(BaseModel):
    collection: str
    deleted: int
