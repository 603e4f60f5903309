"""``qdrant+http://HOST:PORT`` talks to PORT (issue 9 item 12).

Before, gRPC always went to 6334, perhaps another server. A listener on a free port records
what arrives: an HTTP request for REST, the HTTP/2 preface for gRPC.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import CollectionNotFoundError, ConnectorError
from connectors.qdrant import QdrantStore
from connectors.stores import open_store, parse_store_url

REPO = Path(__file__).resolve().parents[2]
REPLY = b'{"result":{"exists":false},"status":"ok","time":0.0}'


class Listener:
    """Accepts connections on a free port; answers HTTP requests with 'no such collection'."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    data = conn.recv(4096)
                except OSError:
                    continue
                self.received.append(data)
                if data.startswith((b"GET", b"POST", b"PUT")):
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(REPLY)}\r\nConnection: close\r\n\r\n".encode()
                        + REPLY
                    )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def test_rest_goes_to_the_port_in_the_url(listener):
    with pytest.raises(CollectionNotFoundError, match=f"127.0.0.1:{listener.port}"):
        QdrantStore.open("docs", url=f"http://127.0.0.1:{listener.port}")
    assert any(r.startswith(b"GET /collections/docs/exists") for r in listener.received)
    with pytest.raises(CollectionNotFoundError):
        open_store(f"qdrant+http://127.0.0.1:{listener.port}", "docs")
    assert len([r for r in listener.received if r.startswith(b"GET")]) == 2


def test_grpc_only_when_asked_and_then_on_the_port_given(listener):
    with pytest.raises(ValueError, match=f"names port {listener.port}.*grpc_port"):
        QdrantStore.open("docs", url=f"http://127.0.0.1:{listener.port}", prefer_grpc=True)
    assert listener.received == []  # refused before connecting anywhere
    with pytest.raises(ConnectorError):
        open_store(f"qdrant+grpc://127.0.0.1:{listener.port}", "docs")
    assert listener.received and all(r.startswith(b"PRI * HTTP/2.0") for r in listener.received)


def test_store_url_forms():
    assert parse_store_url("qdrant+grpc://h:7001").location == "grpc://h:7001"
    assert parse_store_url("qdrant+grpcs://h").server
    with pytest.raises(ValueError, match="milvus\\+http"):
        parse_store_url("milvus+grpc://h:19530")


def test_cli_honours_the_port(listener):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jina_vdb.cli",
            "info",
            "--store",
            f"qdrant+http://127.0.0.1:{listener.port}",
            "-c",
            "docs",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert f"127.0.0.1:{listener.port}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert any(r.startswith(b"GET /collections/docs/exists") for r in listener.received)
