"""jina-vdb connectors: store jina-embeddings-v4 vectors in Qdrant and Milvus.

Never imports torch, transformers or PIL: querying stored vectors needs none of them.
Backends (``connectors.qdrant``, ``connectors.milvus``) are imported on first use.
"""

from __future__ import annotations

from .base import VectorStore as VectorStore
from .errors import (
    BackendError as BackendError,
)
from .errors import (
    CollectionNotFoundError as CollectionNotFoundError,
)
from .errors import (
    ConnectorError as ConnectorError,
)
from .errors import (
    MissingDependencyError as MissingDependencyError,
)
from .errors import (
    PartialWriteError as PartialWriteError,
)
from .errors import (
    QueryError as QueryError,
)
from .errors import (
    RecordError as RecordError,
)
from .errors import (
    RejectedRecordError as RejectedRecordError,
)
from .errors import (
    SchemaMismatchError as SchemaMismatchError,
)
from .errors import (
    StoreLockedError as StoreLockedError,
)
from .errors import (
    StoreUnavailableError as StoreUnavailableError,
)
from .errors import (
    TransientServerError as TransientServerError,
)
from .errors import (
    UnavailableWriteError as UnavailableWriteError,
)
from .errors import (
    UnsupportedSpecError as UnsupportedSpecError,
)
from .filters import (
    And as And,
)
from .filters import (
    AnyOf as AnyOf,
)
from .filters import (
    Eq as Eq,
)
from .filters import (
    Filter as Filter,
)
from .filters import (
    Not as Not,
)
from .filters import (
    Or as Or,
)
from .filters import (
    Range as Range,
)
from .payload_index import PayloadType as PayloadType
from .query import Hit as Hit
from .query import Query as Query
from .query import SearchMode as SearchMode
from .records import Record as Record
from .records import records_from_batch as records_from_batch
from .spec import (
    CollectionSpec as CollectionSpec,
)
from .spec import (
    MuveraParams as MuveraParams,
)
from .spec import (
    Quantization as Quantization,
)
from .spec import (
    VectorDtype as VectorDtype,
)

__all__ = [
    "And",
    "AnyOf",
    "BackendError",
    "CollectionNotFoundError",
    "CollectionSpec",
    "ConnectorError",
    "Eq",
    "Filter",
    "Hit",
    "MissingDependencyError",
    "MuveraParams",
    "Not",
    "Or",
    "PartialWriteError",
    "PayloadType",
    "Quantization",
    "Query",
    "QueryError",
    "Range",
    "Record",
    "RecordError",
    "RejectedRecordError",
    "SchemaMismatchError",
    "SearchMode",
    "StoreLockedError",
    "StoreUnavailableError",
    "TransientServerError",
    "UnavailableWriteError",
    "UnsupportedSpecError",
    "VectorDtype",
    "VectorStore",
    "records_from_batch",
]
