"""The collection routes: list, describe, search, upsert and delete points in ``--store``.

Each collection is opened once, on first use, and kept open (an embedded qdrant-edge
collection is then locked by the server's process). Store calls are blocking: they run
in the threadpool, one at a time per collection (a lock each), never on the event loop.
Queries and points are embedded through the same batcher as ``/v1/embeddings``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Response
from fastapi import Query as Param
from starlette.concurrency import run_in_threadpool

from connectors.base import VectorStore
from connectors.errors import CollectionNotFoundError, QueryError
from connectors.filters import And, Eq
from connectors.query import Query, SearchMode, build_plan
from connectors.records import Record
from connectors.stores import list_collections, open_store
from embedder.options import PromptName, Task
from jina_vdb.model_record import ModelMismatchError, check_model, model_record

from .batcher import Rows
from .embeddings import LimitError, Runtime, invalid
from .filter_json import FilterSyntaxError, parse_filter
from .schemas import (
    DeleteRequest,
    DeleteResponse,
    SearchHit,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
    UpsertResponse,
)
from .thumbnails import NoThumbnail, Thumbnails

T = TypeVar("T")


class Collections:
    """Open collections of one store, each with the lock that serialises its calls."""

    def __init__(self, store: str | None) -> None:
        self.store = store
        self._open: dict[str, tuple[VectorStore, threading.Lock]] = {}
        self._guard = threading.Lock()

    def _where(self) -> str:
        if self.store is None:
            raise HTTPException(
                status_code=404, detail="this server was started without --store: no collections"
            )
        return self.store

    def names(self) -> list[str]:
        return list_collections(self._where())

    def _get(self, name: str) -> tuple[VectorStore, threading.Lock]:
        store = self._where()
        with self._guard:
            if name not in self._open:
                self._open[name] = (open_store(store, name), threading.Lock())
            return self._open[name]

    async def call(self, name: str, fn: Callable[[VectorStore], T]) -> T:
        """``fn(store)`` in the threadpool, under the collection's lock; 404 if absent."""

        def run() -> T:
            try:
                db, lock = self._get(name)
            except CollectionNotFoundError as e:
                raise HTTPException(status_code=404, detail=str(e)) from None
            with lock:
                return fn(db)

        return await run_in_threadpool(run)

    def close(self) -> None:
        with self._guard:
            for db, lock in self._open.values():
                with lock:
                    db.close()
            self._open.clear()


def collection_router(rt: Runtime, cols: Collections, dependencies: list[Any]) -> APIRouter:
    router = APIRouter(prefix="/v1/collections", tags=["collections"], dependencies=dependencies)

    @router.get("")
    async def list_all() -> dict[str, Any]:
        """The collections in the server's store."""
        names = await run_in_threadpool(cols.names)
        return {"store": cols.store, "collections": names}

    @router.get("/{name}")
    async def describe(name: str) -> dict[str, Any]:
        """Spec, count and layout of one collection."""
        info = await cols.call(name, lambda db: db.info())
        return json.loads(json.dumps(info, default=str))  # type: ignore[no-any-return]

    @router.post("/{name}/search", response_model=SearchResponse)
    async def search(name: str, req: SearchRequest) -> SearchResponse:
        """Embed the query (text or image) and search the collection."""
        if (req.query is None) == (req.image is None):
            raise invalid("give either 'query' (text) or 'image' (exactly one)")
        try:
            flt = parse_filter(req.filter)
        except FilterSyntaxError as e:
            raise invalid(str(e)) from None
        task = Task.parse(req.task)
        spec = await cols.call(name, lambda db: db.spec)
        try:  # a mode the collection cannot run (muvera without the field) before embedding
            build_plan(spec, req.mode, limit=req.limit, prefetch_limit=req.prefetch_limit)
        except QueryError as e:
            raise invalid(str(e)) from None
        multivector = spec.multivector and req.mode is not SearchMode.DENSE
        record = model_record(rt.encoder, [task.value])
        await cols.call(name, lambda db: _check(db, record, "search", req.allow_model_mismatch))
        if req.query is not None:
            rows = await rt.embed_texts(
                [req.query],
                task=task,
                prompt=PromptName.QUERY,
                dim=None,
                multivector=multivector,
                field="query",
                positions=[0],
            )
        else:
            rows = await rt.embed_images(
                [req.image or ""], task=task, dim=None, multivector=multivector, field="image"
            )
        query = Query(
            dense=rows.dense[0], multivector=rows.multivectors[0] if rows.multivectors else None
        )

        def run(db: VectorStore) -> list[Any]:
            return db.search(
                query, mode=req.mode, limit=req.limit, prefetch_limit=req.prefetch_limit, filter=flt
            )

        try:
            hits = await cols.call(name, run)
        except ValueError as e:
            raise invalid(str(e)) from None
        return SearchResponse(
            collection=name,
            mode=req.mode,
            multivector=spec.multivector,
            query_tokens=int(rows.token_counts[0]),
            hits=[SearchHit(id=h.id, score=float(h.score), payload=h.payload) for h in hits],
        )

    @router.post("/{name}/points", response_model=UpsertResponse)
    async def upsert(name: str, req: UpsertRequest) -> UpsertResponse:
        """Embed points (texts as passages, images) and upsert them by id (idempotent)."""
        if len(req.points) > rt.settings.max_items:
            raise LimitError(
                f"points: {len(req.points)} is over the limit of {rt.settings.max_items} per "
                "request (max_items)"
            )
        for i, p in enumerate(req.points):
            if (p.text is None) == (p.image is None):
                raise invalid(f"points[{i}] (id {p.id!r}): give either 'text' or 'image'")
        task = Task.parse(req.task)
        spec = await cols.call(name, lambda db: db.spec)
        record = model_record(rt.encoder, [task.value])
        ingest_record = None if record is None else {**record, "tasks": []}
        await cols.call(
            name, lambda db: _check(db, ingest_record, "ingest", req.allow_model_mismatch)
        )
        texts = [(i, p.text) for i, p in enumerate(req.points) if p.text is not None]
        images = [(i, p.image) for i, p in enumerate(req.points) if p.image is not None]
        rows_at: dict[int, tuple[Rows, int]] = {}
        tokens = 0
        if texts:
            rows = await rt.embed_texts(
                [t for _, t in texts],
                task=task,
                prompt=PromptName.PASSAGE,
                dim=None,
                multivector=spec.multivector,
                field="points",
                positions=[i for i, _ in texts],
            )
            tokens += int(rows.token_counts.sum())
            rows_at.update({i: (rows, k) for k, (i, _) in enumerate(texts)})
        if images:
            rows = await rt.embed_images(
                [s for _, s in images],
                task=task,
                dim=None,
                multivector=spec.multivector,
                field="points",
                positions=[i for i, _ in images],
            )
            tokens += int(rows.token_counts.sum())
            rows_at.update({i: (rows, k) for k, (i, _) in enumerate(images)})
        records = []
        for i, p in enumerate(req.points):
            rows, k = rows_at[i]
            multi = rows.multivectors[k] if rows.multivectors is not None else None
            records.append(
                Record(id=p.id, dense=rows.dense[k], multivector=multi, payload=p.payload)
            )
        try:
            count = await cols.call(name, lambda db: db.upsert(records))
        except ValueError as e:
            raise invalid(str(e)) from None
        return UpsertResponse(collection=name, upserted=count, total_tokens=tokens)

    @router.delete("/{name}/points", response_model=DeleteResponse)
    async def delete(name: str, req: DeleteRequest) -> DeleteResponse:
        """Delete points by id (ids that do not exist are no error)."""
        await cols.call(name, lambda db: db.delete(req.ids))
        return DeleteResponse(collection=name, deleted=len(req.ids))

    thumbs = Thumbnails(max_pixels=rt.settings.max_image_pixels)

    @router.get(
        "/{name}/points/{point_id}/thumbnail",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 404: {"description": "No thumbnail."}},
    )
    async def thumbnail(
        name: str, point_id: str, size: int = Param(default=256, ge=16, le=1024)
    ) -> Response:
        """A PNG thumbnail of an image / PDF-page point, rendered from its source file.

        Only the file the point's payload names, and only when its sha256 is the one
        stored at ingest (see ``jina_vdb.serve.thumbnails``).
        """
        point = await cols.call(name, lambda db: _point(db, point_id))
        if point is None:
            raise HTTPException(404, detail=f"collection {name!r} has no point {point_id!r}")
        try:
            png = await run_in_threadpool(thumbs.png, point.payload, size)
        except NoThumbnail as e:
            raise HTTPException(404, detail=f"point {point_id!r}: {e}") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "private"})

    return router


def _point(db: VectorStore, point_id: str) -> Record | None:
    """The point with this id: an int id when it is all digits, else (or if absent) a string."""
    candidates: list[int | str] = [int(point_id)] if point_id.isdigit() else []
    for candidate in [*candidates, point_id]:
        try:
            found = db.get([candidate])
        except ValueError:  # RecordError: an id form this store does not take
            continue
        if found:
            return _page_point(db, found[0])
    return None


def _page_point(db: VectorStore, point: Record) -> Record:
    """A PDF page's text point -> that page's image point (its sha256 is the file's)."""
    p = point.payload
    source, page = p.get("source"), p.get("page")
    if p.get("kind") != "pdf_text" or not isinstance(source, str) or not isinstance(page, int):
        return point
    flt = And((Eq("source", source), Eq("page", page), Eq("kind", "pdf_page")))
    return next(iter(db.scan(flt, page_size=1)), point)


def _check(db: VectorStore, record: dict[str, Any] | None, action: str, allow: bool) -> None:
    try:
        check_model(db, record, action=action, allow_mismatch=allow)
    except ModelMismatchError as e:
        raise HTTPException(status_code=409, detail=str(e)) from None
