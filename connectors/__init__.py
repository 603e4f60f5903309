"""jina-vdb connectors: store jina-embeddings-v4 vectors in Qdrant and Milvus.

Never imports torch, transformers or PIL: querying stored vectors needs none of them.
Backends (``connectors.qdrant``, ``connectors.milvus``) are imported on first use.
"""

from __future__ import annotations

from .base import VectorStore as VectorStore
from .errors import (
    CollectionNotFoundError as CollectionNotFoundError,
    ConnectorError as ConnectorError,
    MissingDependencyError as MissingDependencyError,
    QueryError as QueryError,
    RecordError as RecordError,
    SchemaMismatchError as SchemaMismatchError,
    StoreLockedError as StoreLockedError,
    StoreUnavailableError as StoreUnavailableError,
)
from .filters import And as And, AnyOf as AnyOf, Eq as Eq, Filter as Filter, Not as Not, Or as Or, Range as Range
from .query import Hit as Hit, Query as Query, SearchMode as SearchMode
from .records import Record as Record, records_from_batch as records_from_batch
from .spec import CollectionSpec as CollectionSpec, Quantization as Quantization, VectorDtype as VectorDtype

__all__ = [
    "And", "AnyOf", "CollectionNotFoundError", "CollectionSpec", "ConnectorError", "Eq", "Filter",
    "Hit", "MissingDependencyError", "Not", "Or", "Quantization", "Query", "QueryError", "Range",
    "Record", "RecordError", "SchemaMismatchError", "SearchMode", "StoreLockedError",
    "StoreUnavailableError", "VectorDtype", "VectorStore", "records_from_batch",
]
