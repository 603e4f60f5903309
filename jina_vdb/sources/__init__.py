"""Sources: files, folders, JSONL and PDF pages -> items to embed (text chunks or images).

Application code, not model code: it reads the file system and the PDF renderer, and hands
the embedder plain texts and images. A bad source is yielded as a
:class:`~jina_vdb.errors.Failure` (or raised as :class:`~jina_vdb.errors.SourceError` in
strict mode), a file left out on purpose as :class:`~jina_vdb.errors.Ignored`; every
item's payload follows :class:`~jina_vdb.payload.Payload`.
"""

from __future__ import annotations

from ..errors import Failure as Failure
from ..errors import Ignored as Ignored
from ..errors import SourceError as SourceError
from .files import iter_items as iter_items
from .items import Item as Item
from .items import Modality as Modality
from .items import SourceOptions as SourceOptions
from .items import stable_id as stable_id
from .walk import count_files as count_files

__all__ = [
    "Failure",
    "Ignored",
    "Item",
    "Modality",
    "SourceError",
    "SourceOptions",
    "count_files",
    "iter_items",
    "stable_id",
]
