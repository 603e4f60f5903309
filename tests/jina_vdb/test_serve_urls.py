"""Image URLs: size cap, deadline, redirects and the private-address check (DNS rebinding).

A local HTTP server in the test process serves a good PNG, a too-big body (declared and
chunked), a hanging response, a slow drip and a redirect; the ``jina-vdb serve`` under
test runs with ``--allow-private-urls`` so it may fetch from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serve_helpers import Server

pytestmark = pytest.mark.slow

MAX_IMAGE_BYTES = 5000
URL_TIMEOUT_S = 1.0


def png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (30, 20), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


class Origin(ThreadingHTTPServer):
    """The image host: records each request's Host header."""

    daemon_threads = True
    hosts: list[str]


class Handler(BaseHTTPRequestHandler):
    server: Origin

    def log_message(self, *args: Any) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hosts.append(self.headers.get("Host", ""))
        big = b"\0" * (MAX_IMAGE_BYTES * 3)
        if self.path == "/img.png":
            self._send(png_bytes())
        elif self.path == "/big":  # Content-Length declared: refused before the body
            self._send(big)
        elif self.path == "/big-chunked":  # no length: counted while reading
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(big), 1000):
                self.wfile.write(b"3e8\r\n" + big[i : i + 1000] + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/hang":  # no answer at all
            time.sleep(URL_TIMEOUT_S * 4)
        elif self.path == "/drip":  # each read is quick, the whole download is not
            self.send_response(200)
            self.send_header("Content-Length", "40")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(URL_TIMEOUT_S / 8)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/img.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    srv = Origin(("127.0.0.1", 0), Handler)
    srv.hosts = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def url_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    flags = (
        "--allow-private-urls",
        "--max-image-bytes",
        str(MAX_IMAGE_BYTES),
        "--url-timeout-s",
        str(URL_TIMEOUT_S),
    )
    srv = Server(tiny_checkpoint, tmp_path_factory.mktemp("urls") / "server.log", *flags)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def embed_url(server: Server, url: str) -> httpx.Response:
    body = {"input": ["text first", {"image": url}], "task": "retrieval.passage"}
    return httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=60)


def test_url_image_cap_timeout_redirect(
    url_server: Server, origin: Origin, tiny_embedder: Any
) -> None:
    base = f"http://127.0.0.1:{origin.server_address[1]}"
    r = embed_url(url_server, f"{base}/img.png")
    assert r.status_code == 200, r.text
    direct = tiny_embedder.encode_image([png_bytes()], task="retrieval", multivector=False)
    got = np.array(r.json()["data"][1]["embedding"], dtype=np.float32)
    np.testing.assert_array_equal(got, direct.dense[0])
    assert origin.hosts[-1] == f"127.0.0.1:{origin.server_address[1]}"

    for path in ("/big", "/big-chunked"):
        r = embed_url(url_server, base + path)
        detail = r.json()["detail"]
        assert r.status_code == 413 and "input[1].image" in detail, (path, detail)
        assert f"{MAX_IMAGE_BYTES}-byte image limit" in detail
    for path in ("/hang", "/drip"):
        r = embed_url(url_server, base + path)
        detail = r.json()["detail"]
        assert r.status_code == 422 and "input[1].image" in detail, (path, detail)
        assert f"longer than {URL_TIMEOUT_S} s" in detail
    r = embed_url(url_server, f"{base}/redirect")
    assert r.status_code == 422 and "redirects are not followed" in r.json()["detail"]
    r = embed_url(url_server, f"{base}/missing")
    assert r.status_code == 422 and "HTTP 404" in r.json()["detail"]
    assert httpx.get(f"{url_server.url}/healthz").status_code == 200  # still serving


# ---------------------------------------------------------------- DNS: resolve once, pin


class FakeDns:
    """``socket.getaddrinfo`` answering chosen names (a rebinding server's answers, in turn);
    every other name goes to the real resolver."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return self.real(host, port, *args, **kw)
        self.asked.append(name)
        turn = self.answers[name][min(len(self.asked) - 1, len(self.answers[name]) - 1)]
        family = lambda a: socket.AF_INET6 if ":" in a else socket.AF_INET  # noqa: E731
        return [(family(a), socket.SOCK_STREAM, 6, "", (a, int(port or 0))) for a in turn]


def fetch(url: str, *, allow_private: bool) -> bytes:
    from jina_vdb.serve.images import fetch_image

    return asyncio.run(
        fetch_image(
            url, "input[0].image", max_bytes=10**6, timeout_s=5, allow_private=allow_private
        )
    )


def test_the_checked_address_is_the_one_connected_to(
    origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebinding name answers 127.0.0.1 first, then an unroutable address: the download
    reaches the first answer, with the URL's own Host header, after a single resolution."""
    port = origin.server_address[1]
    dns = FakeDns({"rebind.test": [["127.0.0.1"], ["10.255.255.1"]]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    assert fetch(f"http://rebind.test:{port}/img.png", allow_private=True) == png_bytes()
    assert dns.asked == ["rebind.test"]
    assert origin.hosts[-1] == f"rebind.test:{port}"


def test_any_private_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """One private address among public ones is enough to refuse, before any connection."""
    from jina_vdb.serve.images import ImageFetchError

    dns = FakeDns(
        {
            "mixed.test": [["93.184.215.14", "10.1.2.3"]],
            "mapped.test": [["::ffff:127.0.0.1"]],
            "linklocal.test": [["169.254.169.254"]],
        }
    )
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    for name, address in (
        ("mixed.test", "10.1.2.3"),
        ("mapped.test", "::ffff:127.0.0.1"),
        ("linklocal.test", "169.254.169.254"),
    ):
        with pytest.raises(ImageFetchError) as e:
            fetch(f"http://{name}/x.png", allow_private=False)
        assert e.value.status == 403 and address in str(e.value), str(e.value)
        assert "--allow-private-urls" in str(e.value)
