"""HTTP(S) image downloads with an overall deadline, a byte cap and redacted URLs.

A socket timeout bounds each connect or read, not the download: a server that sends one
byte every 2 s keeps a 10 s read timeout happy forever. So the download runs on a
daemon worker thread and the caller waits at most ``timeout`` seconds for the whole of
it (DNS, connect, TLS, headers, body). When the deadline passes, the caller gets an
error at once and the worker's sockets are shut down, which ends its blocked read.

URLs are quoted only through :func:`redact_url`: user info (``user:pw@``) and every
query value (``?token=...``, ``sig=``, ``key=``...) are replaced by ``***``.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .errors import ImageInputError

logger = logging.getLogger(__name__)

#: Seconds allowed for one whole download (connect, headers and body together).
DEFAULT_TIMEOUT_S = 10.0
#: Largest body accepted; a bigger one is refused as soon as it passes this size.
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
_READ_CHUNK_BYTES = 1024 * 1024
_REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` with user info and every query / fragment value replaced by ``***``.

    Query names stay (they help to tell URLs apart); their values may be tokens or
    signatures, and which names carry secrets is not knowable in general.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 host: show no part of it
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_REDACTED}@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{name}={_REDACTED}" if sep else name
        for name, sep, _ in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    fragment = _REDACTED if parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s): urllib would otherwise also follow ``ftp://``."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise urllib.error.HTTPError(
                newurl,
                code,
                f"redirect to non-http(s) URL {redact_url(newurl)!r} refused",
                headers,
                fp,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Download:
    """One download on a worker thread; its sockets can be shut down from another thread."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self.done = threading.Event()
        self.cancelled = threading.Event()
        self.result: tuple[bytes | None, str] | None = None
        self.error: BaseException | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self.result = self._get()
        except BaseException as e:  # handed to the waiting caller
            self.error = e
        finally:
            self.done.set()

    def cancel(self) -> None:
        """Stop the worker: shut its sockets so a blocked connect or read returns now."""
        self.cancelled.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed, or not connected yet
                pass

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        if self.cancelled.is_set():
            self.cancel()
        return sock

    def _get(self) -> tuple[bytes | None, str]:
        download = self

        def create_connection(*args: Any, **kwargs: Any) -> socket.socket:
            return download._track(socket.create_connection(*args, **kwargs))

        class HTTPConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                self._create_connection = create_connection
                super().connect()

        class HTTPSConnection(http.client.HTTPSConnection):
            def connect(self) -> None:
                self._create_connection = create_connection
                super().connect()
                download._track(self.sock)  # the TLS socket that replaced the raw one

        class HTTPHandler(urllib.request.HTTPHandler):
            def http_open(self, req: Any) -> Any:
                return self.do_open(HTTPConnection, req)

        class HTTPSHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: Any) -> Any:
                context = self._context  # type: ignore[attr-defined]  # urllib's own, private
                return self.do_open(HTTPSConnection, req, context=context)

        opener = urllib.request.build_opener(_HttpOnlyRedirects, HTTPHandler, HTTPSHandler)
        headers = {"Accept": "image/*", "User-Agent": "jina-vdb"}
        request = urllib.request.Request(self.url, headers=headers)
        with opener.open(request, timeout=self.timeout) as response:
            return self._read_capped(response), response.headers.get_content_type()

    def _read_capped(self, response: http.client.HTTPResponse) -> bytes | None:
        """The whole body, or None as soon as it exceeds ``MAX_DOWNLOAD_BYTES``."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_DOWNLOAD_BYTES:
            return None
        chunks: list[bytes] = []
        total = 0
        # read1: return what one socket read gives, so a slow drip does not hide in a
        # buffered read that waits for a full chunk.
        while not self.cancelled.is_set() and (chunk := response.read1(_READ_CHUNK_BYTES)):
            total += len(chunk)
            if total > MAX_DOWNLOAD_BYTES:
                return None
            chunks.append(chunk)
        return b"".join(chunks)


def fetch(url: str, *, timeout: float, index: int | None) -> tuple[bytes, str]:
    """Download ``url`` within ``timeout`` seconds in all; return (body, content type).

    Raises:
        ImageInputError: HTTP error, network error, deadline passed, body over
            ``MAX_DOWNLOAD_BYTES`` (the message quotes the URL redacted).
    """
    shown = redact_url(url)
    if not timeout > 0:
        raise ImageInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    logger.debug("fetching image %s from %s (deadline %g s)", index, shown, timeout)
    download = _Download(url, timeout)
    worker = threading.Thread(target=download.run, name="jina-vdb-fetch", daemon=True)
    worker.start()
    try:
        finished = download.done.wait(timeout)
    except BaseException:  # KeyboardInterrupt: do not leave the worker reading
        download.cancel()
        raise
    if not finished:
        download.cancel()
        raise ImageInputError(
            f"timed out after {timeout:g} s fetching {shown} (a deadline for the whole "
            "download); pass a larger timeout= if the server is slow",
            index=index,
        )
    if download.error is not None:
        message = _error_message(shown, download.error, timeout)
        raise ImageInputError(message, index=index) from download.error
    data, content_type = download.result or (None, "")
    if data is None:
        raise ImageInputError(
            f"image at {shown} is larger than the download limit of {MAX_DOWNLOAD_BYTES:,} "
            "bytes (embedder.fetch.MAX_DOWNLOAD_BYTES)",
            index=index,
        )
    return data, content_type


def _error_message(shown: str, error: BaseException, timeout: float) -> str:
    if isinstance(error, urllib.error.HTTPError):
        error.close()
        return f"HTTP {error.code} {error.reason} fetching {shown}"
    reason: object = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s fetching {shown}; pass a larger timeout= if slow"
    if isinstance(error, ValueError):  # urllib quotes the raw URL in these: say only the kind
        return f"could not fetch {shown}: invalid URL ({type(error).__name__})"
    return f"could not fetch {shown}: {reason}"
