"""``jina-vdb serve --store``: the collection routes, against a real qdrant-edge store."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from serve_helpers import Server
from test_serve import AUTH, post

pytestmark = pytest.mark.slow

DOCS = [
    ("a", "The train from Paris to Lyon takes two hours.", {"kind": "travel", "n": 1}),
    ("b", "Paella is a rice dish from Valencia.", {"kind": "food", "n": 2}),
    ("c", "Berlin is the capital of Germany.", {"kind": "travel", "n": 3}),
    ("d", "Sushi combines rice, fish and vinegar.", {"kind": "food", "n": 4}),
]


def get(server: Server, path: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers=AUTH, timeout=60)


def test_collections_points_search_delete(server: Server, tiny_embedder: Any) -> None:
    assert get(server, "/v1/collections").json()["collections"] == ["docs"]
    points = [{"id": i, "text": t, "payload": p} for i, t, p in DOCS]
    r = post(server, "/v1/collections/docs/points", {"points": points})
    assert r.status_code == 200, r.text
    assert r.json()["upserted"] == 4 and r.json()["total_tokens"] > 0
    again = post(server, "/v1/collections/docs/points", {"points": points})  # idempotent
    assert again.status_code == 200
    info = get(server, "/v1/collections/docs").json()
    assert info["count"] == 4 and info["spec"]["multivector"] is True

    query = "a rice dish"
    q = tiny_embedder.encode_text([query], task="retrieval", prompt_name="query").dense[0]
    docs = tiny_embedder.encode_text(
        [t for _, t, _ in DOCS], task="retrieval", prompt_name="passage", multivector=False
    ).dense
    expected = sorted(zip(docs @ q, [i for i, _, _ in DOCS], strict=True), reverse=True)

    r = post(server, "/v1/collections/docs/search", {"query": query, "mode": "dense", "limit": 4})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert [h["id"] for h in hits] == [i for _, i in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [s for s, _ in expected], atol=1e-5)
    assert hits[0]["payload"] == next(p for i, _, p in DOCS if i == hits[0]["id"])

    body = {"query": query, "limit": 4, "filter": {"key": "kind", "eq": "food"}}
    hits = post(server, "/v1/collections/docs/search", body).json()["hits"]
    assert sorted(h["id"] for h in hits) == ["b", "d"]  # hybrid (default mode)
    body = {"query": query, "mode": "fusion", "filter": ["kind=travel", "n>=2"]}
    assert [h["id"] for h in post(server, "/v1/collections/docs/search", body).json()["hits"]] == [
        "c"
    ]
    body = {
        "query": query,
        "filter": {"or": [{"key": "n", "lt": 2}, {"not": {"key": "n", "any": [1, 2, 3]}}]},
    }
    hits = post(server, "/v1/collections/docs/search", body).json()["hits"]
    assert sorted(h["id"] for h in hits) == ["a", "d"]

    r = httpx.request(
        "DELETE", f"{server.url}/v1/collections/docs/points", json={"ids": ["a"]}, headers=AUTH
    )
    assert r.status_code == 200 and r.json()["deleted"] == 1
    assert get(server, "/v1/collections/docs").json()["count"] == 3


def test_collection_errors(server: Server) -> None:
    r = post(server, "/v1/collections/nope/search", {"query": "x"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = post(server, "/v1/collections/docs/search", {"query": "x", "filter": {"key": "k"}})
    assert r.status_code == 422 and "filter" in r.json()["detail"]
    r = post(server, "/v1/collections/docs/search", {"query": "x", "filter": {"and": [{"x": 1}]}})
    assert r.status_code == 422 and "filter.and[0]" in r.json()["detail"]
    r = post(server, "/v1/collections/docs/points", {"points": [{"id": 1}]})
    assert r.status_code == 422 and "points[0]" in r.json()["detail"]
    r = post(server, "/v1/collections/docs/search", {"query": "x", "image": "abc"})
    assert r.status_code == 422
    r = post(server, "/v1/collections/docs/search", {"query": "x", "mode": "muvera"})
    assert r.status_code == 422
    assert "mode 'muvera' needs the collection's MUVERA field" in r.json()["detail"]
    assert httpx.get(f"{server.url}/v1/collections").status_code == 401  # no key


def test_cli_search_with_server(server: Server) -> None:
    """``jina-vdb search --server``: the server's hits, printed by the CLI, no model loaded."""
    import json
    import subprocess

    from ingest_helpers import REPO, cli_command, subprocess_env
    from serve_helpers import API_KEY

    post(server, "/v1/collections/docs/points", {"points": [{"id": "z", "text": "rice"}]})
    expected = post(
        server, "/v1/collections/docs/search", {"query": "rice", "mode": "dense", "limit": 3}
    ).json()["hits"]
    cmd = cli_command(
        "search",
        "rice",
        "--server",
        server.url,
        "--collection",
        "docs",
        "--mode",
        "dense",
        "--limit",
        "3",
        "--json",
    )
    env = subprocess_env(JINA_VDB_API_KEY=API_KEY)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert [h["id"] for h in hits] == [str(h["id"]) for h in expected]
    assert [h["score"] for h in hits] == pytest.approx([h["score"] for h in expected])

    env = subprocess_env(JINA_VDB_API_KEY="wrong")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "401" in done.stderr and len(done.stderr.splitlines()) == 1


def test_muvera_mode_through_the_server(
    server: Server, serve_store_url: str, tiny_embedder: Any
) -> None:
    """A collection with a MUVERA field: points embedded by the server get their encoding,
    and muvera search with candidates covering the collection equals exact MaxSim."""
    from connectors import MuveraParams
    from connectors.stores import open_store
    from jina_vdb.cli.support import build_spec
    from jina_vdb.model_record import model_record, with_model

    spec, _ = build_spec(
        tiny_embedder,
        dim=None,
        prefetch_dims=None,
        multivector=True,
        muvera=MuveraParams(k_sim=3, dim_proj=8, r_reps=4),
    )
    record = model_record(tiny_embedder, ["retrieval"])
    open_store(serve_store_url, "mv", spec=with_model(spec, record)).close()
    points = [{"id": i, "text": t, "payload": p} for i, t, p in DOCS]
    assert post(server, "/v1/collections/mv/points", {"points": points}).status_code == 200
    assert get(server, "/v1/collections/mv").json()["spec"]["muvera"]["k_sim"] == 3
    body = {"query": "a rice dish", "limit": 3, "prefetch_limit": 4}
    muvera = post(server, "/v1/collections/mv/search", {**body, "mode": "muvera"})
    exact = post(server, "/v1/collections/mv/search", {**body, "mode": "multivector"})
    assert muvera.status_code == 200, muvera.text
    assert [h["id"] for h in muvera.json()["hits"]] == [h["id"] for h in exact.json()["hits"]]
    assert muvera.json()["mode"] == "muvera" and len(muvera.json()["hits"]) == 3
