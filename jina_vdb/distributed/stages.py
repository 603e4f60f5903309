"""The Ray Data job's stages: plain functions and classes over column batches, no ray import.

Ray Data calls them with ``batch_format="numpy"``: a batch is a dict of column -> array.
Every Python object crosses the object store pickled into a ``binary`` column (items,
payloads, decoded images, vectors): Arrow cannot type a payload's free-form ``meta`` or a
ragged ``(t_i, 128)`` token matrix across rows, and pickle protocol 5 copies a numpy array's
buffer as is. ``bench/ray_ingest.py`` measures what this costs per item.

Rows through the job:

- listing (``expand_listing``): ``file_no``, ``entries`` (one file's Items, Failures and
  Ignored, pickled) -> the driver checks ids against the store;
- work (``select_wanted`` -> ``load_rows``): one row per item to encode: ``file_no``,
  ``item``, ``content`` (the decoded image, rendered page or text, images shrunk to the
  pixel budget) or ``failure``;
- encoded (``EncodeWorker``): ``file_no``, ``key`` (id, payload), ``vectors`` (dense row,
  token matrix or None), ``cost``, ``image``, ``seconds`` (its share of the encode time),
  or ``failure``;
- written (``StoreWriter``, server stores only): ``file_no``, ``cost``, ``image``,
  ``seconds``, ``failure``.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from connectors.records import Record

from ..errors import Failure, Ignored, IngestError
from ..ingest_types import IngestOptions, failure_of
from ..pipeline.steps import call_encoder, is_item_fault, upsert_or_isolate
from ..sources.files import file_entries
from ..sources.items import Item, Modality, SourceOptions

logger = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]
_EMPTY = b""


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=5)


def loads(data: Any) -> Any:
    return pickle.loads(data)


def column(values: Sequence[Any]) -> np.ndarray:
    """An object column of bytes (numpy would otherwise turn a list of bytes into ``S`` dtype)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def file_row(path: Path, root: Path | None) -> bytes:
    """A file found by ``walk_files``, as the listing and work stages receive it."""
    return dumps((path, root))


# -- CPU tasks: listing, re-reading, loading -------------------------------------------------
def expand_listing(batch: Batch, *, tokenizer: Any, options: SourceOptions) -> Batch:
    """Each file's entries (text read, decoded and chunked; images and PDFs hashed)."""
    entries = []
    for data in batch["file"]:
        path, root = loads(data)
        entries.append(dumps(list(file_entries(path, root, tokenizer=tokenizer, options=options))))
    return {"file_no": np.asarray(batch["file_no"], dtype=np.int64), "entries": column(entries)}


def select_wanted(batch: Batch, *, wanted: Mapping[int, set[Any] | None]) -> Batch:
    """The listed items the driver found missing from the store (``wanted``: ids per file,
    None for all of them); files absent from ``wanted`` have nothing to encode.

    The listing's own entries, kept in the object store: a file is read and chunked once,
    and the items encoded are exactly the items checked.
    """
    file_nos: list[int] = []
    items: list[bytes] = []
    for file_no, data in zip(batch["file_no"], batch["entries"], strict=True):
        no = int(file_no)
        if no not in wanted:
            continue
        ids = wanted[no]
        given = set()  # the first item with an id, as the listing counted it
        for entry in entries_of(data):
            if not isinstance(entry, Item) or entry.id in given:
                continue
            if ids is None or entry.id in ids:
                given.add(entry.id)
                file_nos.append(no)
                items.append(dumps(entry))
    return {
        "file_no": np.asarray(file_nos, dtype=np.int64),
        "item": column(items),
        "failure": column([_EMPTY] * len(items)),
    }


def load_rows(batch: Batch, *, fit: Callable[[Any], Any]) -> Batch:
    """Load each item's content: decode images, render PDF pages (a failure is reported).

    Images leave at the size the encoder would resize them to (``fit``, an
    ``embedder.ImageFit``): the same vectors, a fraction of the bytes in transit.
    """
    contents: list[bytes] = []
    failures: list[bytes] = list(batch["failure"])
    for i, data in enumerate(batch["item"]):
        if failures[i]:
            contents.append(_EMPTY)
            continue
        item: Item = loads(data)
        try:
            content = item.load()
            if item.modality is Modality.IMAGE:
                content = fit(content)
            contents.append(dumps(content))
        except Exception as e:  # noqa: BLE001 - a bad item fails alone, reported
            contents.append(_EMPTY)
            failures[i] = dumps(failure_of(item, e))
    return {**batch, "content": column(contents), "failure": column(failures)}


# -- the encoder actor -----------------------------------------------------------------------
class EncodeWorker:
    """One model replica (a Ray actor); encodes a batch of loaded rows.

    Args:
        model: checkpoint folder or hub id, loaded by ``JinaV4Embedder.from_pretrained``.
        device: "cuda" for a GPU actor (Ray sets its visible device), else "cpu".
        multivector: keep the token vectors (the collection's spec says).
        options: the batching options (texts by count and token budget, images by count).
    """

    def __init__(self, model: str, device: str, multivector: bool, options: IngestOptions) -> None:
        from embedder import JinaV4Embedder

        self.encoder: Any = JinaV4Embedder.from_pretrained(model, device=device)
        self.multivector, self.opts = multivector, options
        logger.info("encode worker: %s on %s", model, device)

    def __call__(self, batch: Batch) -> Batch:
        n = len(batch["file_no"])
        items: list[Item | None] = [loads(d) if d else None for d in batch["item"]]
        failures: list[bytes] = list(batch["failure"])
        vectors: list[bytes] = [_EMPTY] * n
        todo = [i for i in range(n) if not failures[i]]
        contents = {i: loads(batch["content"][i]) for i in todo}
        texts = [i for i in todo if _item(items, i).modality is Modality.TEXT]
        images = [i for i in todo if _item(items, i).modality is Modality.IMAGE]
        groups = [(g, True) for g in self._text_groups(texts, items)]
        step = self.opts.image_batch
        groups += [(images[lo : lo + step], False) for lo in range(0, len(images), step)]
        started = time.perf_counter()
        for group, text in groups:
            for i, result in self._encode(group, items, contents, text=text):
                if isinstance(result, Failure):
                    failures[i] = dumps(result)
                else:
                    vectors[i] = dumps(result)
        columns = _encoded_columns(batch["file_no"], items, vectors, failures)
        # The encode time, a share per row: the driver sums it into stage_seconds["encode"].
        columns["seconds"] = np.full(n, (time.perf_counter() - started) / max(n, 1))
        return columns

    def _text_groups(self, texts: list[int], items: list[Item | None]) -> Iterator[list[int]]:
        """Text batches as the local pipeline sends them: by count and by token budget."""
        group: list[int] = []
        tokens = 0
        for i in texts:
            group.append(i)
            tokens += int(_item(items, i).cost)
            if len(group) >= self.opts.text_batch or tokens >= self.opts.text_batch_tokens:
                yield group
                group, tokens = [], 0
        if group:
            yield group

    def _encode(
        self, group: list[int], items: list[Item | None], contents: dict[int, Any], *, text: bool
    ) -> list[tuple[int, Any]]:
        """(row, (dense, tokens) or Failure) for each row; a failing batch is retried one by
        one (bad inputs fail alone; a batch whose every item fails otherwise raises)."""
        try:
            return self._vectors(group, items, contents, text=text)
        except Exception as e:
            if len(group) == 1:
                return [(group[0], failure_of(_item(items, group[0]), e))]
            logger.info("a batch of %d failed to encode (%s); retrying one by one", len(group), e)
            batch_error = e
        results: list[tuple[int, Any]] = []
        broken = 0
        for i in group:
            try:
                results += self._vectors([i], items, contents, text=text)
            except Exception as e:
                results.append((i, failure_of(_item(items, i), e)))
                broken += not is_item_fault(e)
        if broken == len(group):
            raise IngestError(
                f"the encoder failed on every item of a batch of {len(group)}: {batch_error}"
            ) from batch_error
        return results

    def _vectors(
        self, group: list[int], items: list[Item | None], contents: dict[int, Any], *, text: bool
    ) -> list[tuple[int, Any]]:
        out = call_encoder(
            self.encoder,
            [_item(items, i) for i in group],
            [contents[i] for i in group],
            text=text,
            multivector=self.multivector,
            options=self.opts,
        )
        multis = out.multivectors
        return [
            (i, (out.dense[k], None if multis is None else multis[k])) for k, i in enumerate(group)
        ]


def _item(items: list[Item | None], i: int) -> Item:
    item = items[i]
    if item is None:  # rows without an item carry a failure and are never encoded
        raise ValueError(f"row {i} has no item")
    return item


def _encoded_columns(
    file_nos: np.ndarray, items: list[Item | None], vectors: list[bytes], failures: list[bytes]
) -> Batch:
    keys = [_EMPTY if it is None else dumps((it.id, it.payload)) for it in items]
    costs = [0 if it is None else int(it.cost) for it in items]
    kinds = [it is not None and it.modality is Modality.IMAGE for it in items]
    return {
        "file_no": np.asarray(file_nos, dtype=np.int64),
        "key": column(keys),
        "vectors": column(vectors),
        "failure": column(failures),
        "cost": np.asarray(costs, dtype=np.int64),
        "image": np.asarray(kinds, dtype=bool),
    }


# -- writing ---------------------------------------------------------------------------------
def write_encoded(
    store: Any,
    batch: Batch,
    options: IngestOptions,
    lock: Any = None,
) -> list[bytes]:
    """Upsert a batch of encoded rows in ``write_batch`` slices; each row's failure (or b"").

    Rows that already carry a failure are left as they are; a record the store refuses
    fails alone (``upsert_or_isolate``); the store itself failing raises.
    """
    failures: list[bytes] = list(batch["failure"])
    ready = [i for i, f in enumerate(failures) if not f]
    step = options.write_batch
    for lo in range(0, len(ready), step):
        rows = ready[lo : lo + step]
        records = []
        for i in rows:
            record_id, payload = loads(batch["key"][i])
            dense, tokens = loads(batch["vectors"][i])
            records.append(Record(id=record_id, dense=dense, multivector=tokens, payload=payload))

        def refused(k: int, error: Exception, rows: list[int] = rows) -> None:
            record_id, payload = loads(batch["key"][rows[k]])
            failures[rows[k]] = dumps(_failure(record_id, payload, error))

        upsert_or_isolate(store, records, lock or contextlib.nullcontext(), refused)
    return failures


@dataclass(frozen=True)
class _Written:
    id: Any
    payload: dict[str, Any]


def _failure(record_id: Any, payload: dict[str, Any], error: Exception) -> Failure:
    return failure_of(_Written(record_id, payload), error)


class StoreWriter:
    """A writer actor for a server store (Qdrant / Milvus by URL): one connection each.

    Returns the written rows without their vectors, for the driver's summary.
    """

    def __init__(self, url: str, collection: str, options: IngestOptions) -> None:
        from connectors.stores import open_store

        self.store = open_store(url, collection)
        self.opts = options

    def __call__(self, batch: Batch) -> Batch:
        failures = write_encoded(self.store, batch, self.opts)
        return {
            "file_no": batch["file_no"],
            "cost": batch["cost"],
            "image": batch["image"],
            "failure": column(failures),
            "seconds": batch["seconds"],
        }

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.store.close()


def entries_of(data: bytes) -> list[Item | Failure | Ignored]:
    """One listed file's entries (the listing's ``entries`` cell)."""
    return list(loads(data))
