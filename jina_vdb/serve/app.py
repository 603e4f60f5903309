"""The FastAPI app: routes, auth, body limit, metrics and access logs around one model.

Built by :func:`create_app` around an already-loaded encoder, so tests and the CLI share it.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedder.errors import InputError, OptionError

from .batcher import Batcher, BatcherStoppedError, QueueFullError
from .collections import Collections, collection_router
from .embeddings import Runtime, create_embeddings
from .metrics import Metrics
from .schemas import EmbeddingsRequest, EmbeddingsResponse
from .settings import ServeSettings

logger = logging.getLogger(__name__)
access_log = logging.getLogger("jina_vdb.serve.access")


class BodyLimit:
    """Pure ASGI middleware: a body over ``max_bytes`` is answered 413 before it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send, int(declared))
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(seen)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as e:
            await self._refuse(scope, send, e.size)

    async def _refuse(self, scope: Scope, send: Send, size: int) -> None:
        detail = (
            f"request body: {size} bytes is over the limit of {self.max_bytes} bytes "
            "(max_body_bytes)"
        )
        await JSONResponse({"detail": detail}, status_code=413)(scope, _no_receive, send)


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _key_check(api_key: str | None) -> Callable[[Request], None]:
    expected = None if api_key is None else api_key.encode()

    def require_key(request: Request) -> None:
        if expected is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_key


def create_app(encoder: Any, settings: ServeSettings, *, model_name: str) -> FastAPI:
    """The app around a loaded encoder; the batcher starts and drains with the app's lifespan."""
    metrics = Metrics()
    batcher = Batcher(
        encoder,
        max_queue=settings.max_queue,
        max_wait_s=settings.max_wait_ms / 1000,
        task_patience_s=settings.task_patience_ms / 1000,
        batch_tokens=settings.batch_tokens,
        max_items=max(settings.max_items, 1),
        max_length=settings.max_tokens_per_text,
        on_batch=metrics.on_batch,
    )
    rt = Runtime(encoder, batcher, settings, model_name)
    cols = Collections(settings.store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        logger.info("serving %s with %r", model_name, settings)
        try:
            yield
        finally:
            batcher.stop()  # uvicorn has already finished the in-flight requests
            cols.close()

    app = FastAPI(
        title="jina-vdb",
        summary="jina-embeddings-v4 embeddings (dense + multi-vector) and vector search.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.state.metrics = metrics
    auth = [Depends(_key_check(settings.api_key))]

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            seconds = time.perf_counter() - started
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            metrics.latency.labels(template, request.method, str(status)).observe(seconds)
            metrics.queue_depth.set(batcher.depth)
            client = request.client.host if request.client else "-"
            access_log.info(
                "method=%s route=%s status=%d ms=%.1f client=%s",
                request.method,
                template,
                status,
                seconds * 1000,
                client,
            )

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(QueueFullError)
    async def queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
        metrics.rejected.inc()
        return JSONResponse(
            {"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)}
        )

    @app.exception_handler(BatcherStoppedError)
    async def stopping(request: Request, exc: BatcherStoppedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(InputError)
    @app.exception_handler(OptionError)
    async def bad_input(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    page = (Path(__file__).parent / "static" / "index.html").read_bytes()

    @app.get("/", include_in_schema=False)
    async def search_page() -> Response:
        """The search page: static HTML + JS calling the /v1 routes."""
        return Response(page, media_type="text/html; charset=utf-8")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Ready: the model is loaded and its worker runs (and the store answers, if any)."""
        problems = [] if batcher.running else ["model worker is not running"]
        if settings.store is not None:
            try:
                await run_in_threadpool(cols.names)
            except Exception as e:
                problems.append(f"store {settings.store} does not answer: {e}")
        body = {"status": "ok" if not problems else "unavailable", "model": model_name}
        if problems:
            body["problems"] = "; ".join(problems)
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post(
        "/v1/embeddings",
        response_model=EmbeddingsResponse,
        response_model_exclude_none=True,
        tags=["embeddings"],
        dependencies=auth,
    )
    async def embeddings(req: EmbeddingsRequest) -> EmbeddingsResponse:
        """Embed texts and images (Jina embeddings API format)."""
        return await create_embeddings(rt, req)

    app.include_router(collection_router(rt, cols, auth))
    return app
