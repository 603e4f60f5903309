"""Image inputs from HTTP clients: base64 / data URIs decoded here, URLs fetched here.

The encoder accepts local paths too; a server must not (a client could read any file the
server can), so a request's image string becomes bytes before it reaches the model: only
http(s) URLs, data URIs and base64 are taken.

A URL's host is resolved once; every address it resolves to must be public (not private,
loopback, link-local, reserved, multicast or unspecified) unless the server was started
with ``--allow-private-urls``; the connection then goes to the first checked address
itself, with the original ``Host`` header and TLS server name (SNI, and the certificate
is checked against that name), so no second resolution happens that a DNS-rebinding
server could answer with a private address. Redirects are not followed (each hop would
need the same check). The download has a size cap (a larger declared Content-Length is
refused before the body is read) and one deadline for the whole download.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from embedder.fetch import redact_url


class ImageFetchError(ValueError):
    """An image input that cannot be used; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


async def resolve_checked(url: str, where: str, *, allow_private: bool) -> str:
    """The address to connect to for ``url``: resolved once, every answer checked."""
    parts = httpx.URL(url)
    host = parts.host
    if not host:
        raise ImageFetchError(f"{where}: URL has no host: {redact_url(url)}")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, parts.port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ImageFetchError(f"{where}: cannot resolve {host!r}: {e}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))  # resolver's order
    if not addresses:
        raise ImageFetchError(f"{where}: {host!r} resolves to no address")
    private = sorted(a for a in addresses if not _is_public(a))
    if private and not allow_private:
        raise ImageFetchError(
            f"{where}: {redact_url(url)} resolves to a private, loopback or link-local "
            f"address ({', '.join(private)}); refused (start the server with "
            "--allow-private-urls to allow it)",
            status=403,
        )
    return addresses[0]


async def fetch_image(
    url: str, where: str, *, max_bytes: int, timeout_s: float, allow_private: bool
) -> bytes:
    """Download an http(s) image: refused hosts, size cap, one overall deadline."""
    shown = redact_url(url)

    async def fetch() -> bytes:
        address = await resolve_checked(url, where, allow_private=allow_private)
        return await _download(url, address, where, max_bytes, timeout_s)

    try:
        return await asyncio.wait_for(fetch(), timeout_s)
    except asyncio.TimeoutError:
        raise ImageFetchError(f"{where}: {shown} took longer than {timeout_s} s") from None
    except httpx.HTTPError as e:
        raise ImageFetchError(f"{where}: cannot download {shown}: {type(e).__name__}") from None


async def _download(url: str, address: str, where: str, max_bytes: int, timeout_s: float) -> bytes:
    """GET ``url`` from ``address`` (an IP): Host header and SNI keep the URL's own name."""
    shown = redact_url(url)
    parts = httpx.URL(url)
    pinned = parts.copy_with(host=address.split("%", 1)[0])
    headers = {"Host": parts.netloc.decode("ascii")}
    extensions = {"sni_hostname": parts.host} if parts.scheme == "https" else {}
    async with httpx.AsyncClient(follow_redirects=False, timeout=timeout_s) as client:
        request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
        response = await client.send(request, stream=True)
        try:
            if response.is_redirect:
                raise ImageFetchError(
                    f"{where}: {shown} redirects; redirects are not followed (give the final URL)"
                )
            if response.status_code != 200:
                raise ImageFetchError(f"{where}: {shown} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_big(where, shown, max_bytes)
            body = bytearray()
            async for chunk in response.aiter_bytes():  # decoded: a gzip bomb is capped too
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise _too_big(where, shown, max_bytes)
            return bytes(body)
        finally:
            await response.aclose()


def _too_big(where: str, shown: str, max_bytes: int) -> ImageFetchError:
    return ImageFetchError(
        f"{where}: {shown} is larger than the {max_bytes}-byte image limit", status=413
    )


def decode_image_string(text: str, where: str, *, max_bytes: int) -> bytes:
    """A data URI or a base64 string -> bytes (anything else is refused, naming the field)."""
    payload = text
    if text.startswith("data:"):
        head, sep, payload = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise ImageFetchError(f"{where}: a data URI must be data:image/...;base64,<data>")
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageFetchError(
            f"{where}: image is larger than the {max_bytes}-byte image limit", status=413
        )
    compact = "".join(payload.split())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            raise ImageFetchError(
                f"{where}: not an http(s) URL, a data: URI or base64 image data "
                "(local paths are not read by the server)"
            ) from None


async def image_bytes(
    text: str, where: str, *, max_bytes: int, timeout_s: float, allow_private: bool
) -> bytes:
    """One request image string -> bytes, by its form."""
    scheme = urlsplit(text).scheme.lower() if "://" in text[:16] else ""
    if scheme in ("http", "https"):
        return await fetch_image(
            text, where, max_bytes=max_bytes, timeout_s=timeout_s, allow_private=allow_private
        )
    if scheme:
        raise ImageFetchError(f"{where}: only http:// and https:// URLs are fetched, got {scheme}:")
    data = decode_image_string(text, where, max_bytes=max_bytes)
    if not _looks_like_image(data):
        raise ImageFetchError(
            f"{where}: the base64 data is not an image PIL can read; give an http(s) URL, a "
            "data: URI or base64 image bytes (local paths are not read by the server)"
        )
    return data


def _looks_like_image(data: bytes) -> bool:
    """PIL recognises the header (reads a few bytes; decoding happens in the model worker)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError, ValueError):
        return False
