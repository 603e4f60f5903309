"""Input normalisation: every accepted text and image form, and every rejection, for real.

Images are built in memory with PIL; URLs are served by a real ``http.server`` on
127.0.0.1 in a background thread. No mocks.
"""

from __future__ import annotations

import base64
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image, features

from embedder import fetch
from embedder.errors import ImageInputError, InputError, OptionError, TextInputError
from embedder.inputs import load_image, load_images, validate_texts

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png(color: tuple[int, int, int] = RED, size: tuple[int, int] = (8, 6)) -> bytes:
    return encode(Image.new("RGB", size, color))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels (a few bytes of data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(64))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def noisy_rgb(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """Incompressible pixels, so that cutting the file short really loses image data."""
    return Image.frombytes(
        "RGB", size, bytes((i * 7919) % 251 for i in range(size[0] * size[1] * 3))
    )


# --- local HTTP server


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/drip"):
            self._drip(headers_too=self.path.startswith("/drip-headers"))
            return
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/redirect-ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/image.png")
            self.end_headers()
            return
        status, content_type, body = self.routes.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if self.path != "/no-length":  # HTTP/1.0: the body then ends when the connection closes
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, *, headers_too: bool) -> None:
        """One byte every 0.2 s: each read is quick, the whole download never ends."""
        head = b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
        body = png(RED)
        stream = head + body if headers_too else body
        if not headers_too:
            self.wfile.write(head)
        try:
            for k in range(len(stream)):
                self.wfile.write(stream[k : k + 1])
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:  # the client gave up: the deadline worked
            pass

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    _Handler.routes = {
        "/red.png": (200, "image/png", png(RED)),
        "/no-length": (200, "image/png", png(RED)),
        "/slow": (200, "image/png", png(RED)),
        "/page.html": (200, "text/html", b"<html><body>login</body></html>"),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True  # the /slow handler must not hold up teardown
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# --- texts


def test_texts_list_and_tuple_are_returned_as_lists() -> None:
    assert validate_texts(["a", " b "]) == ["a", " b "]
    assert validate_texts(("x",)) == ["x"]


def test_bare_string_must_be_wrapped() -> None:
    with pytest.raises(TextInputError, match=r"single str; wrap it in a list"):
        validate_texts("hello")


@pytest.mark.parametrize("texts", [[], ()])
def test_empty_text_batch(texts: object) -> None:
    with pytest.raises(TextInputError, match="at least one item"):
        validate_texts(texts)


@pytest.mark.parametrize("texts", [(t for t in ["a"]), {"a": 1}, 3, None])
def test_texts_not_a_sequence(texts: object) -> None:
    with pytest.raises(TextInputError, match="expected a list or tuple of texts"):
        validate_texts(texts)


@pytest.mark.parametrize(
    ("bad", "received"),
    [(None, "got None"), (3, "got int"), (b"bytes", "got bytes"), (["x"], "got list")],
)
def test_non_string_text_names_index_and_type(bad: object, received: str) -> None:
    with pytest.raises(TextInputError, match=received) as info:
        validate_texts(["ok", "fine", bad])
    assert info.value.index == 2
    assert str(info.value).startswith("item 2: ")


@pytest.mark.parametrize(
    "blank",
    [
        "",
        "   ",
        "\n\t ",
        "\u3000",
        "\x00",
        "\x00" * 5000,  # past the fast path's first 256 characters
        " \x00\x01\x7f\n",
        "\u200b",
        "\u200b\u200c\u200d\u2060\ufeff \u00ad",  # zero-width, BOM, soft hyphen
    ],
)
def test_texts_without_visible_characters_are_rejected(blank: str) -> None:
    with pytest.raises(TextInputError, match=r"^item 1: text has no visible characters") as info:
        validate_texts(["ok", blank])
    assert info.value.index == 1


@pytest.mark.parametrize("text", ["\u200bword", "\x00 7", "🙂", "\u00e9", "\x00" * 300 + "a"])
def test_texts_with_one_visible_character_are_kept(text: str) -> None:
    assert validate_texts([text]) == [text]


@pytest.mark.parametrize(
    ("text", "where"),
    [("ab\ud800cd", "U\\+D800 at character 2"), ("\udfff", "U\\+DFFF at character 0")],
)
def test_lone_surrogate_names_the_item(text: str, where: str) -> None:
    with pytest.raises(TextInputError, match=rf"^item 2: text has a lone surrogate {where}"):
        validate_texts(["ok", "fine", text])


def test_input_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        validate_texts([None])
    assert issubclass(ImageInputError, InputError)


# --- PIL images


def _pixel(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    assert image.mode == "RGB"
    return image.getpixel(xy)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("mode", "color", "expected"),
    [
        ("RGB", RED, RED),
        ("RGBA", (255, 0, 0, 255), RED),
        ("RGBA", (255, 0, 0, 0), RED),  # the reference drops alpha: stored colour kept
        ("LA", (0, 0), (0, 0, 0)),
        ("L", 128, (128, 128, 128)),
        ("1", 1, WHITE),
        ("CMYK", (0, 255, 255, 0), RED),
        ("I;16", 65535, WHITE),  # not clipped: 16-bit full scale maps to 255
        ("I;16", 32896, (128, 128, 128)),
        ("YCbCr", (76, 85, 255), (254, 0, 0)),
        ("RGBa", (255, 0, 0, 255), RED),
    ],
)
def test_pil_modes_become_rgb(mode: str, color: object, expected: tuple[int, int, int]) -> None:
    image = load_image(Image.new(mode, (5, 4), color))  # type: ignore[arg-type]
    assert image.size == (5, 4)
    assert _pixel(image) == pytest.approx(expected, abs=2)


def _transparent_rgba() -> Image.Image:
    """Every alpha level, over colours that compositing would change."""
    values = bytes((i * 37 + c * 91) % 256 for i in range(16 * 16) for c in range(4))
    return Image.frombytes("RGBA", (16, 16), values)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "RGBa", "La"])
def test_transparent_images_follow_the_reference_convert_rgb(mode: str) -> None:
    source = _transparent_rgba().convert(mode)
    for given in (source, encode(source) if mode in ("RGBA", "LA") else source):
        reference = (source.convert("LA") if mode == "La" else source).convert("RGB")
        assert load_image(given).tobytes() == reference.tobytes()


def test_palette_image_with_transparent_index_keeps_its_colour() -> None:
    palette_image = Image.new("P", (2, 1), 0)
    palette_image.putpalette([*RED, *BLUE] + [0] * 762)
    palette_image.putpixel((1, 0), 1)
    palette_image.info["transparency"] = 0
    image = load_image(encode(palette_image))
    assert (_pixel(image, (0, 0)), _pixel(image, (1, 0))) == (RED, BLUE)
    composited = load_image(encode(palette_image), background=WHITE)
    assert (_pixel(composited, (0, 0)), _pixel(composited, (1, 0))) == (WHITE, BLUE)


def test_compositing_onto_a_background_is_an_explicit_option() -> None:
    half_red = Image.new("RGBA", (2, 2), (255, 0, 0, 128))
    assert _pixel(load_image(half_red, background=WHITE)) == pytest.approx((255, 127, 127), abs=1)
    assert _pixel(load_image(half_red, background=BLUE)) == pytest.approx((128, 0, 127), abs=1)
    assert _pixel(load_image(half_red)) == RED


@pytest.mark.parametrize(
    "background", [(255, 255), (0, 0, 256), "white", (1.0, 0, 0), (True, 0, 0)]
)
def test_bad_background_is_refused(background: object) -> None:
    with pytest.raises(OptionError, match="background must be None or an RGB tuple"):
        load_image(png(), background=background)  # type: ignore[arg-type]


def test_32_bit_and_float_images_are_stretched() -> None:
    for mode, low, high in [("I", -1000, 70000), ("F", 0.0, 0.5)]:
        source = Image.new(mode, (2, 1), low)  # type: ignore[arg-type]
        source.putpixel((1, 0), high)
        image = load_image(source)
        assert (_pixel(image, (0, 0)), _pixel(image, (1, 0))) == ((0, 0, 0), WHITE)


def test_rgb_pil_image_is_returned_as_is() -> None:
    source = Image.new("RGB", (3, 3), RED)
    assert load_image(source) is source


def test_lazily_opened_pil_image(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(png())
    with Image.open(path) as lazy:
        assert _pixel(load_image(lazy)) == RED


def test_lazily_opened_truncated_pil_image_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(encode(noisy_rgb())[:-300])
    with (
        Image.open(path) as lazy,
        pytest.raises(ImageInputError, match=r"^item 4: cannot convert PIL image"),
    ):
        load_image(lazy, index=4)


# --- files, bytes, base64, data URIs


def test_path_str_and_pathlib(tmp_path: Path) -> None:
    path = tmp_path / "red image.png"  # a space in the name is still a path
    path.write_bytes(png(size=(7, 3)))
    for source in (str(path), path):
        image = load_image(source)
        assert (image.size, _pixel(image)) == ((7, 3), RED)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_raw_bytes(wrap: type) -> None:
    assert _pixel(load_image(wrap(png(BLUE)))) == BLUE


def test_base64_string_in_every_spelling() -> None:
    data = png(BLUE)
    standard = base64.b64encode(data).decode()
    spellings = [
        standard,
        base64.urlsafe_b64encode(data).decode(),
        base64.encodebytes(data).decode(),  # MIME: line breaks every 76 characters
    ]
    for text in spellings:
        assert _pixel(load_image(text)) == BLUE


def test_data_uris() -> None:
    encoded = base64.b64encode(png(BLUE)).decode()
    for uri in [
        f"data:image/png;base64,{encoded}",
        f"DATA:image/png;BASE64,{encoded.rstrip('=')}",  # case and missing padding tolerated
        f"data:;base64,{encoded}",
    ]:
        assert _pixel(load_image(uri)) == BLUE


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("JPEG", {"quality": 95}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("PPM", {}),
    ],
)
def test_other_formats(fmt: str, params: dict[str, object]) -> None:
    image = load_image(encode(Image.new("RGB", (16, 16), RED), fmt, **params))
    assert _pixel(image, (8, 8)) == pytest.approx(RED, abs=3)


@pytest.mark.skipif(not features.check("webp"), reason="this Pillow build has no WebP support")
def test_webp() -> None:
    image = load_image(encode(Image.new("RGBA", (16, 16), (0, 0, 255, 255)), "WEBP", lossless=True))
    assert _pixel(image, (8, 8)) == BLUE


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (6, 6), color) for color in (RED, BLUE)]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0
    )
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 2
    assert _pixel(load_image(buffer.getvalue())) == RED


def test_multipage_tiff_gives_its_first_page() -> None:
    pages = [Image.new("RGB", (6, 6), color) for color in (BLUE, RED)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert _pixel(load_image(data)) == BLUE


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(Image.new("RGB", (40, 20), RED), "JPEG", exif=exif.tobytes())
    assert load_image(data).size == (20, 40)


def test_load_images_keeps_order_and_accepts_mixed_kinds(tmp_path: Path) -> None:
    path = tmp_path / "blue.png"
    path.write_bytes(png(BLUE))
    sources = [
        Image.new("L", (2, 2), 255),
        path,
        png(RED),
        base64.b64encode(png(BLUE)).decode(),
        "data:image/png;base64," + base64.b64encode(png(RED)).decode(),
    ]
    images = load_images(sources)
    assert [_pixel(image) for image in images] == [WHITE, BLUE, RED, BLUE, RED]
    assert load_images(tuple(sources[:1]))[0].mode == "RGB"


# --- HTTP


def test_http_url(server: str) -> None:
    assert _pixel(load_image(f"{server}/red.png")) == RED


def test_http_url_without_content_length(server: str) -> None:
    assert _pixel(load_image(f"{server}/no-length")) == RED


def test_http_404_names_url_and_status(server: str) -> None:
    url = f"{server}/missing.png"
    with pytest.raises(
        ImageInputError, match=r"^item 1: HTTP 404 .* fetching http://127\.0\.0\.1:\d+/missing\.png"
    ):
        load_images([f"{server}/red.png", url])


def test_http_timeout(server: str) -> None:
    start = time.monotonic()
    with pytest.raises(ImageInputError, match=r"timed out after 0\.3 s fetching .*/slow"):
        load_image(f"{server}/slow", timeout=0.3)
    assert time.monotonic() - start < 0.9


def test_connection_refused_names_url() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        ImageInputError, match=rf"could not fetch http://127\.0\.0\.1:{port}/x\.png"
    ):
        load_image(f"http://127.0.0.1:{port}/x.png")


def test_non_image_response_names_content_type(server: str) -> None:
    with pytest.raises(
        ImageInputError,
        match=r"page\.html \(Content-Type text/html\) is not in a supported image format",
    ):
        load_image(f"{server}/page.html")


def test_redirect_to_ftp_is_refused(server: str) -> None:
    with pytest.raises(ImageInputError, match=r"HTTP 302 redirect to non-http\(s\) URL 'ftp://"):
        load_image(f"{server}/redirect-ftp")


@pytest.mark.parametrize("route", ["/drip", "/drip-headers"])
def test_slow_drip_hits_the_overall_deadline(server: str, route: str) -> None:
    # Every read returns within 0.2 s, far under the timeout: only a deadline for the
    # whole download stops this (a per-read timeout waited forever).
    start = time.monotonic()
    with pytest.raises(ImageInputError, match=rf"^item 0: timed out after 1 s fetching .*{route}"):
        load_images([f"{server}{route}"], timeout=1.0)
    assert time.monotonic() - start < 5.0  # not a speed check: a hang would never return


def test_secrets_in_urls_are_redacted_in_every_message(server: str) -> None:
    host = server.removeprefix("http://")
    secret_urls = {
        f"http://alice:pw-123@{host}/missing.png?token=tok-123&size=2": r"fetch http://\*\*\*@127",
        f"http://{host}/missing.png?key=key-123": r"HTTP 404 .*png\?key=\*\*\*$",
        f"http://{host}/drip?sig=sig-123&key=key-123#frag-123": "timed out",
        f"ftp://bob:pw-123@{host}/a.png?X-Amz-Signature=sig-123": "URL scheme 'ftp'",
    }
    for url, expected in secret_urls.items():
        with pytest.raises(ImageInputError, match=expected) as info:
            load_image(url, timeout=0.5)
        message = str(info.value)
        assert not any(s in message for s in ("pw-123", "tok-123", "sig-123", "key-123", "frag"))
        assert "***" in message
    assert (
        fetch.redact_url("https://u:p@h:8/p/a.png?token=t&x")
        == "https://***@h:8/p/a.png?token=***&x"
    )
    assert fetch.redact_url("http://h/a.png") == "http://h/a.png"


def test_errors_never_quote_file_contents(tmp_path: Path) -> None:
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:SECRET-LINE:/root:/bin/bash\n")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(png()[:20] + b"SECRET-BYTES" * 10)
    for path in (secret, corrupt):
        with pytest.raises(ImageInputError) as info:
            load_image(str(path))
        assert "SECRET" not in str(info.value) and "root:x" not in str(info.value)
    with pytest.raises(ImageInputError, match=r"\d+ bytes of text\)"):
        load_image(secret)


def _gradient(size: tuple[int, int]) -> Image.Image:
    w, h = size
    return (
        Image.linear_gradient("L")
        .resize(size)
        .convert("RGB")
        .transpose(Image.Transpose.ROTATE_90 if w < h else Image.Transpose.FLIP_LEFT_RIGHT)
    )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_images_far_over_the_pixel_budget_are_reduced_at_load(fmt: str) -> None:
    budget = 50_000
    big = _gradient((3000, 2000))
    image = load_image(encode(big, fmt), max_pixels=budget)
    # at least 4x the budget kept for the processor's own resize, at most ~4x more than that
    assert 4 * budget <= image.width * image.height <= 16 * 4 * budget
    assert abs(image.width / image.height - 1.5) < 0.02
    expected = big.resize(image.size, Image.Resampling.BOX)
    diff = max(abs(a - b) for a, b in zip(image.tobytes(), expected.tobytes(), strict=True))
    assert diff <= 12  # the same picture, box-averaged
    assert load_image(encode(big, fmt)).size == (3000, 2000)  # no budget: full size
    small = _gradient((500, 400))
    assert load_image(small, max_pixels=budget) is small  # under 4x the budget: untouched


def test_extreme_aspect_ratio_keeps_its_short_side() -> None:
    image = load_image(Image.new("RGB", (20000, 60), RED), max_pixels=3136)
    assert image.height >= 56


@pytest.mark.parametrize("route", ["/red.png", "/no-length"])
def test_download_size_cap(server: str, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "MAX_DOWNLOAD_BYTES", 20)
    monkeypatch.setattr(fetch, "_READ_CHUNK_BYTES", 8)
    with pytest.raises(ImageInputError, match=r"larger than the download limit of 20 bytes"):
        load_image(server + route)


# --- rejected sources


@pytest.mark.parametrize(
    ("source", "scheme"),
    [
        ("file:///etc/hosts", "file"),
        ("ftp://example.com/a.png", "ftp"),
        ("s3://bucket/a.png", "s3"),
        ("gs:bucket/a", "gs"),
    ],
)
def test_other_schemes_are_refused(source: str, scheme: str) -> None:
    with pytest.raises(
        ImageInputError, match=rf"URL scheme '{scheme}' is not supported.*http:// or https:// URL"
    ):
        load_image(source)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageInputError, match=r"image file not found: '.*nope\.png'"):
        load_image(missing)
    with pytest.raises(
        ImageInputError, match=r"^item 0: image file not found: '.*nope\.png' \(nor is it a URL"
    ):
        load_images([str(missing)])
    for relative in ["images/cat.jpeg", "C:\\images\\cat.png", "~/cat"]:
        with pytest.raises(ImageInputError, match=r"image file not found: "):
            load_image(relative)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="is a directory"):
        load_image(str(tmp_path))


@pytest.mark.parametrize(
    "text", ["not an image", "abcd", base64.b64encode(b"plain text, not pixels").decode()]
)
def test_strings_that_are_nothing_we_know(text: str) -> None:
    with pytest.raises(
        ImageInputError, match="is not an existing file, an http\\(s\\) URL, a data URI or a base64"
    ):
        load_image(text)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("data:image/png;base64", "malformed data URI"),
        ("data:image/png;base64,@@@@", "not contain valid base64"),
    ],
)
def test_bad_data_uris(uri: str, message: str) -> None:
    with pytest.raises(ImageInputError, match=message):
        load_image(uri)


@pytest.mark.parametrize("source", [None, 3, 1.5, ["nested"], {"a": 1}])
def test_unsupported_source_types(source: object) -> None:
    with pytest.raises(ImageInputError, match=r"^item 2: unsupported image input of type"):
        load_images([png(), png(), source])


def test_empty_string_source() -> None:
    with pytest.raises(ImageInputError, match="empty string"):
        load_image("  ")


@pytest.mark.parametrize("single", ["a.png", b"bytes", Image.new("RGB", (1, 1)), Path("a.png")])
def test_load_images_needs_a_list(single: object) -> None:
    with pytest.raises(ImageInputError, match="wrap it in a list"):
        load_images(single)


@pytest.mark.parametrize("sources", [[], (), None, (s for s in ["a"])])
def test_load_images_empty_or_not_a_sequence(sources: object) -> None:
    with pytest.raises(
        ImageInputError, match=r"at least one item|expected a list or tuple of images"
    ):
        load_images(sources)


# --- corrupt and unsupported data


def test_random_bytes_are_an_unsupported_format() -> None:
    with pytest.raises(
        ImageInputError, match=r"^item 2: image data is not in a supported image format"
    ):
        load_images([png(), png(), bytes(range(256))])


def test_text_file_is_an_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n")
    with pytest.raises(
        ImageInputError, match=r"image file '.*notes\.txt' is not in a supported image format"
    ):
        load_image(path)


def test_pdf_gets_a_specific_hint() -> None:
    with pytest.raises(ImageInputError, match="is a PDF, not an image; render its pages"):
        load_image(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(fmt: str) -> None:
    data = encode(noisy_rgb(), fmt)
    with pytest.raises(ImageInputError, match=r"^item 2: image data is corrupt or truncated"):
        load_images([png(), png(), data[: len(data) // 2]])


def test_truncated_base64_image_is_reported_as_corrupt() -> None:
    data = encode(noisy_rgb())
    cut = data[: len(data) // 2]
    cut = cut[: len(cut) // 3 * 3]  # keep the base64 free of padding issues
    with pytest.raises(ImageInputError, match="base64 image is corrupt or truncated"):
        load_image(base64.b64encode(cut).decode())


def test_corrupted_png_data() -> None:
    data = bytearray(encode(noisy_rgb()))
    start = data.index(b"IDAT") + 40
    data[start : start + 200] = bytes(200)  # zero out compressed pixel data
    with pytest.raises(ImageInputError, match="corrupt or truncated"):
        load_image(bytes(data))


# --- decompression bombs


def test_header_claiming_huge_dimensions_is_a_bomb() -> None:
    with pytest.raises(
        ImageInputError,
        match=r"^item 1: .* has 10,000,000,000 pixels, over PIL's decompression-bomb",
    ) as info:
        load_images([png(), png_header_only(100_000, 100_000)])
    message = str(info.value)
    assert f"{Image.MAX_IMAGE_PIXELS:,} pixels" in message
    assert "PIL.Image.MAX_IMAGE_PIXELS = " in message
    assert isinstance(info.value.__cause__, Image.DecompressionBombError)


@pytest.mark.parametrize("side", [12, 20])  # 144 px: PIL only warns; 400 px: PIL raises
def test_lowered_limit_turns_warning_and_error_into_input_errors(
    side: int, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(
        ImageInputError,
        match=rf"has {side * side} pixels, over PIL's decompression-bomb limit of 100 pixels",
    ):
        load_image(png(size=(side, side)))
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_raising_the_limit_lets_the_image_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageInputError):
        load_image(png(size=(20, 20)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert load_image(png(size=(20, 20))).size == (20, 20)
