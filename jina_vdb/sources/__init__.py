"""Sources: files, folders, JSONL and PDF pages -> items to embed (text chunks or images).

Application code, not model code: it reads the file system and the PDF renderer, and hands
the embedder plain texts and images.
"""

from __future__ import annotations

from jina_vdb.ingest_types import Ignored as Ignored

from .files import Item as Item
from .files import ItemError as ItemError
from .files import Modality as Modality
from .files import SourceError as SourceError
from .files import SourceOptions as SourceOptions
from .files import count_files as count_files
from .files import iter_items as iter_items
from .files import stable_id as stable_id

__all__ = [
    "Ignored",
    "Item",
    "ItemError",
    "Modality",
    "SourceError",
    "SourceOptions",
    "count_files",
    "iter_items",
    "stable_id",
]
