"""``jina-vdb serve``: a real uvicorn in a subprocess on 127.0.0.1, the tiny model, httpx."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serve_helpers import API_KEY, Server

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def post(server: Server, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", AUTH)
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=120, **kw)


def embed(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    r = post(server, "/v1/embeddings", body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def png_base64(color: tuple[int, int, int], size: tuple[int, int] = (40, 32)) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def same_length_texts(embedder: Any, n: int) -> list[str]:
    """``n`` distinct queries of one token length: batched rows then pad to the same width."""
    candidates = [f"query number {i} about topic {i * 7 % 13}" for i in range(1000)]
    fast = embedder.tokenizer.backend_tokenizer
    prefixed = ["Query: " + c for c in candidates]  # as the encoder tokenises them
    lengths = [len(e.ids) for e in fast.encode_batch(prefixed, add_special_tokens=False)]
    common, _ = Counter(lengths).most_common(1)[0]
    chosen = [t for t, n_tok in zip(candidates, lengths, strict=True) if n_tok == common]
    assert len(chosen) >= n, f"only {len(chosen)} candidates of {common} tokens"
    return chosen[:n]


# ---------------------------------------------------------------- health, docs


def test_health_ready_docs(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/embeddings" in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200
    page = httpx.get(f"{server.url}/")  # the search page (no headless browser here)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="search"' in page.text and "/v1/collections" in page.text


# ---------------------------------------------------------------- embeddings


def test_embeddings_equal_direct_encoding(server: Server, tiny_embedder: Any) -> None:
    texts = ["a short query", "a somewhat longer passage about vector databases"]
    body = embed(server, {"model": "jina-embeddings-v4", "input": texts, "task": "retrieval.query"})
    direct = tiny_embedder.encode_text(
        texts, task="retrieval", prompt_name="query", multivector=False
    )
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert [d["index"] for d in body["data"]] == [0, 1]
    np.testing.assert_array_equal(got, direct.dense)  # bit-identical on CPU
    assert body["usage"]["total_tokens"] == int(direct.token_counts.sum())
    assert body["model"] == "jina-embeddings-v4"


def test_embeddings_tasks_dims_base64_multivector(server: Server, tiny_embedder: Any) -> None:
    texts = ["def add(a, b): return a + b"]
    dims = sorted(tiny_embedder.matryoshka_dims)
    body = embed(
        server,
        {
            "input": [{"text": texts[0]}],
            "task": "code.passage",
            "dimensions": dims[0],
            "embedding_type": "base64",
        },
    )
    direct = tiny_embedder.encode_text(
        texts, task="code", prompt_name="passage", truncate_dim=dims[0], multivector=False
    )
    vec = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vec, direct.dense[0])

    body = embed(server, {"input": texts, "task": "text-matching", "return_multivector": True})
    direct = tiny_embedder.encode_text(texts, task="text-matching", prompt_name="query")
    got = np.array(body["data"][0]["embeddings"], dtype=np.float32)
    assert "embedding" not in body["data"][0]
    np.testing.assert_array_equal(got, direct.multivectors[0])

    # float16 base64: half the bytes, the float32 rows rounded to half precision
    body = embed(
        server, {"input": texts, "task": "code.passage", "embedding_type": "base64_float16"}
    )
    full = tiny_embedder.encode_text(texts, task="code", prompt_name="passage", multivector=False)
    half = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f2")
    assert half.shape == full.dense[0].shape
    np.testing.assert_array_equal(half, full.dense[0].astype(np.float16))
    body = embed(
        server,
        {
            "input": texts,
            "task": "text-matching",
            "return_multivector": True,
            "embedding_type": "base64_float16",
        },
    )
    rows = [np.frombuffer(base64.b64decode(t), dtype="<f2") for t in body["data"][0]["embeddings"]]
    np.testing.assert_array_equal(np.stack(rows), direct.multivectors[0].astype(np.float16))


def test_embeddings_images_and_mixed_inputs(server: Server, tiny_embedder: Any) -> None:
    red, blue = png_base64((200, 20, 20)), png_base64((10, 10, 220), (28, 56))
    body = embed(
        server,
        {
            "input": [{"image": red}, "some text", {"image": f"data:image/png;base64,{blue}"}],
            "task": "retrieval.passage",
        },
    )
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    images = tiny_embedder.encode_image(
        [base64.b64decode(red), base64.b64decode(blue)], task="retrieval", multivector=False
    )
    text = tiny_embedder.encode_text(
        ["some text"], task="retrieval", prompt_name="passage", multivector=False
    )
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_array_equal(got[[0, 2]], images.dense)
    np.testing.assert_array_equal(got[1], text.dense[0])


def test_concurrent_clients_are_batched_and_ordered(server: Server, tiny_embedder: Any) -> None:
    """64 clients at once: each gets its own rows, in order; the worker merged requests."""
    clients = 64
    texts = same_length_texts(tiny_embedder, 2 * clients)
    requests = [texts[2 * k : 2 * k + 2] for k in range(clients)]  # two texts per client

    async def run_all() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=clients)  # one connection per client
        async with httpx.AsyncClient(
            base_url=server.url, headers=AUTH, timeout=120, limits=limits
        ) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/v1/embeddings", json={"input": pair, "task": "retrieval.query"})
                    for pair in requests
                )
            )
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        return [r.json() for r in responses]

    before = batch_counts(server)
    bodies = asyncio.run(run_all())
    direct = tiny_embedder.encode_text(
        texts, task="retrieval", prompt_name="query", multivector=False
    )
    for k, body in enumerate(bodies):
        assert [d["index"] for d in body["data"]] == [0, 1]
        got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
        np.testing.assert_array_equal(got, direct.dense[2 * k : 2 * k + 2])
    after = batch_counts(server)
    batches = after["count"] - before["count"]
    merged = batches - (after["le1"] - before["le1"])
    assert after["sum"] - before["sum"] == clients  # every request counted once
    assert merged >= 1, f"no batch held more than one request ({batches} batches, {clients})"


def batch_counts(server: Server) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics").text

    def value(pattern: str) -> float:
        m = re.search(pattern + r" ([0-9.e+]+)$", text, flags=re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    return {
        "count": value(r"^jina_vdb_batch_requests_count"),
        "sum": value(r"^jina_vdb_batch_requests_sum"),
        "le1": value(r'^jina_vdb_batch_requests_bucket\{le="1\.0"\}'),
    }


def test_metrics_show_routes_and_queue(server: Server) -> None:
    embed(server, {"input": ["metrics please"]})
    text = httpx.get(f"{server.url}/metrics").text
    assert 'jina_vdb_request_seconds_count{method="POST",route="/v1/embeddings",status="200"}' in (
        text
    )
    assert "jina_vdb_queue_depth" in text and "jina_vdb_tokens_total" in text
    assert "jina_vdb_task_switches_total" in text


# ---------------------------------------------------------------- errors, limits, security


def test_api_key_required(server: Server) -> None:
    r = post(server, "/v1/embeddings", {"input": ["x"]}, headers={})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    wrong = {"Authorization": "Bearer not-the-key"}
    assert post(server, "/v1/embeddings", {"input": ["x"]}, headers=wrong).status_code == 401
    assert API_KEY not in server.log()  # never logged


def test_limits_and_validation(server: Server, tiny_embedder: Any) -> None:
    r = post(server, "/v1/embeddings", {"input": ["x"] * 65})
    assert r.status_code == 413
    assert "input" in r.json()["detail"] and "64" in r.json()["detail"]

    long_text = "word " * 9000
    r = post(server, "/v1/embeddings", {"input": ["ok", long_text], "truncate": False})
    assert r.status_code == 413 and "input[1]" in r.json()["detail"]
    assert "8192" in r.json()["detail"]

    r = post(server, "/v1/embeddings", {"input": ["x"], "task": "retrieval"})
    assert r.status_code == 422 and "task" in r.text
    r = post(server, "/v1/embeddings", {"input": ["fine", "   "]})
    assert r.status_code == 422 and "input[1]" in r.json()["detail"]
    r = post(server, "/v1/embeddings", {"input": ["x"], "dimensions": 7})
    assert r.status_code == 422 and "dimensions" in r.json()["detail"]
    r = post(server, "/v1/embeddings", {"input": ["x"], "unknown_field": 1})
    assert r.status_code == 422 and "unknown_field" in r.text


def test_body_size_limit(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A small --max-body-bytes: a bigger body is 413 naming the limit, a small one works."""
    srv = Server(tiny_checkpoint, tmp_path / "log", "--max-body-bytes", "2000")
    try:
        srv.wait_ready()
        big = httpx.post(f"{srv.url}/v1/embeddings", json={"input": ["y" * 3000]}, timeout=60)
        assert big.status_code == 413 and "2000" in big.json()["detail"]
        ok = httpx.post(f"{srv.url}/v1/embeddings", json={"input": ["small"]}, timeout=60)
        assert ok.status_code == 200
    finally:
        srv.stop()


def test_image_urls_refused(server: Server) -> None:
    local = f"{server.url}/healthz"  # a loopback address: refused before any request
    r = post(server, "/v1/embeddings", {"input": [{"image": local}]})
    assert r.status_code == 403
    assert "input[0].image" in r.json()["detail"] and "private" in r.json()["detail"]
    r = post(server, "/v1/embeddings", {"input": ["t", {"image": "file:///etc/passwd"}]})
    assert r.status_code == 422 and "input[1].image" in r.json()["detail"]
    r = post(server, "/v1/embeddings", {"input": [{"image": "/etc/passwd"}]})
    assert r.status_code == 422 and "local paths" in r.json()["detail"]


# ---------------------------------------------------------------- overflow, SIGTERM


def test_overflow_503_then_sigterm_drains(
    tiny_checkpoint: Path, tmp_path: Path, tiny_embedder: Any
) -> None:
    """Queue of one, worker waiting 1.5 s for company: a third concurrent request is refused
    with 503 + Retry-After while the accepted ones finish correctly; then SIGTERM with a
    request in flight: it is answered, then the server exits."""
    srv = Server(tiny_checkpoint, tmp_path / "log", "--max-queue", "1", "--max-wait-ms", "1500")
    try:
        srv.wait_ready()
        texts = ["first", "second", "third"]

        async def three() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=120) as client:

                async def one(text: str, delay: float) -> httpx.Response:
                    await asyncio.sleep(delay)
                    return await client.post("/v1/embeddings", json={"input": [text]})

                return await asyncio.gather(*(one(t, 0.2 * i) for i, t in enumerate(texts)))

        responses = asyncio.run(three())
        codes = [r.status_code for r in responses]
        assert codes[0] == 200 and 503 in codes, codes
        for text, r in zip(texts, responses, strict=True):
            if r.status_code == 503:
                assert r.headers["Retry-After"].isdigit()
                continue
            direct = tiny_embedder.encode_text(
                [text], task="retrieval", prompt_name="passage", multivector=False
            )
            np.testing.assert_array_equal(
                np.array(r.json()["data"][0]["embedding"], dtype=np.float32), direct.dense[0]
            )

        result: dict[str, Any] = {}

        def in_flight() -> None:
            result["r"] = httpx.post(
                f"{srv.url}/v1/embeddings", json={"input": ["late"]}, timeout=60
            )

        thread = threading.Thread(target=in_flight)
        thread.start()
        time.sleep(0.5)  # the request now waits in the batcher (1.5 s for company)
        # uvicorn drains, then re-raises the signal it caught: the exit is "killed by SIGTERM".
        assert srv.terminate() in (0, -signal.SIGTERM)
        thread.join(30)
        assert result["r"].status_code == 200 and len(result["r"].json()["data"]) == 1
    finally:
        srv.stop()
