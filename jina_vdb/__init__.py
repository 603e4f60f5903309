"""jina-vdb, the application: wires the jina-embeddings-v4 model (``embedder``) to a vector
database (``connectors``).

``jina_vdb.sources`` turns files, folders, JSONL and PDFs into items to embed;
``jina_vdb.ingest`` is the resumable reader -> encoder -> writer pipeline; ``jina_vdb.cli``
is the ``jina-vdb`` command. Dependencies point one way: this package imports both
libraries, and neither library imports it.
"""

from __future__ import annotations

from .errors import Failure as Failure
from .errors import Ignored as Ignored
from .errors import IngestError as IngestError
from .errors import JinaVdbError as JinaVdbError
from .errors import MissingDependencyError as MissingDependencyError
from .errors import SourceError as SourceError
from .payload import Payload as Payload

__all__ = [
    "Failure",
    "Ignored",
    "IngestError",
    "JinaVdbError",
    "MissingDependencyError",
    "Payload",
    "SourceError",
]
