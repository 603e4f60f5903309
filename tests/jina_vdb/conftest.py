"""Fixtures for the ingestion and CLI tests (the tiny checkpoint comes from tests/conftest.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import API_KEY, Server

#: The embedded stores every ingestion test runs on: name -> store URL inside a folder.
STORES = {
    "qdrant-edge": lambda tmp: f"qdrant:{tmp / 'qdrant'}",
    "milvus-lite": lambda tmp: f"milvus:{tmp / 'milvus.db'}",
}


@pytest.fixture(params=sorted(STORES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh embedded store URL, once per backend."""
    return STORES[request.param](tmp_path)


@pytest.fixture(autouse=True)
def _restore_log_levels() -> Iterator[None]:
    """The CLI sets jina-vdb's logger levels; put them back so other tests see the defaults."""
    names = ("connectors", "embedder")
    saved = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


# -- jina-vdb serve: one real server per session, shared by the server test modules ----------
@pytest.fixture(scope="session")
def serve_store_url(tiny_embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An embedded qdrant-edge store holding an empty collection "docs" made for the model."""
    from connectors.stores import open_store
    from jina_vdb.cli.support import build_spec
    from jina_vdb.model_record import model_record, with_model

    url = f"qdrant:{tmp_path_factory.mktemp('store') / 'qdrant'}"
    spec, _ = build_spec(tiny_embedder, dim=None, prefetch_dims=None, multivector=True)
    open_store(
        url, "docs", spec=with_model(spec, model_record(tiny_embedder, ["retrieval"]))
    ).close()
    return url


@pytest.fixture(scope="session")
def server(
    tiny_checkpoint: Path, serve_store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    flags = ("--api-key", API_KEY, "--max-items", "64", "--store", serve_store_url, "--verbose")
    srv = Server(tiny_checkpoint, log, *flags)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


# -- a server over an ingested folder (texts, an image, a PDF): the search page, thumbnails ---
@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small folder: two text files, a PNG and a two-page PDF."""
    from PIL import Image

    from jina_vdb.sources.samples import minimal_pdf

    root = tmp_path_factory.mktemp("corpus")
    (root / "trains.md").write_text(
        "# Trains\n\nThe night train from Paris reaches Vienna in the morning.", encoding="utf-8"
    )
    (root / "food.txt").write_text("Paella is a rice dish from Valencia.", encoding="utf-8")
    Image.new("RGB", (320, 240), (200, 40, 40)).save(root / "red.png")
    (root / "guide.pdf").write_bytes(minimal_pdf([["Rail guide", "page one"], ["Maps"]]))
    return root


@pytest.fixture(scope="session")
def corpus_server(
    tiny_checkpoint: Path,
    tiny_embedder: Any,
    corpus_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """``jina-vdb serve`` (no API key) over collection "corpus": ``corpus_dir`` ingested."""
    from connectors.stores import open_store
    from jina_vdb.cli.support import build_spec
    from jina_vdb.ingest import IngestOptions, ingest
    from jina_vdb.model_record import model_record, with_model
    from jina_vdb.sources import Item, SourceOptions, iter_items

    url = f"qdrant:{tmp_path_factory.mktemp('corpus-store') / 'qdrant'}"
    spec, _ = build_spec(tiny_embedder, dim=None, prefetch_dims=None, multivector=True)
    spec = with_model(spec, model_record(tiny_embedder, ["retrieval"]))
    opts = SourceOptions(pdf_dpi=30)
    items = [
        i
        for i in iter_items([corpus_dir], tokenizer=tiny_embedder.tokenizer, options=opts)
        if isinstance(i, Item)
    ]
    with open_store(url, "corpus", spec=spec) as store:  # closed: the server opens it
        ingest(items, tiny_embedder, store, IngestOptions(progress=False))
    log = tmp_path_factory.mktemp("corpus-serve") / "server.log"
    srv = Server(tiny_checkpoint, log, "--store", url)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
