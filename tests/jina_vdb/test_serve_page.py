"""The search page at ``/`` in a real headless Chromium (selenium + the system's chromedriver).

Skipped, with the reason, when selenium, Chromium or chromedriver is missing
(``.ci/browser.sh`` installs the Debian packages where it can). Set ``JINA_VDB_SCREENSHOT``
to a path to keep the screenshot (docs/search-page.png is made that way).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import Server

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'jina-vdb[test]')")
    binary = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip(
            "no Chromium and chromedriver on PATH (Debian: apt-get install chromium "
            "chromium-driver; bash .ci/browser.sh does it when it may)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1100,1250")
    # The system's chromedriver, named: selenium then never downloads one.
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def api_search(server: Server, body: dict[str, Any]) -> list[dict[str, Any]]:
    r = httpx.post(f"{server.url}/v1/collections/corpus/search", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["hits"]  # type: ignore[no-any-return]


def rendered_rows(driver: Any) -> list[dict[str, Any]]:
    """The results table as the user sees it, one dict per row."""
    from selenium.webdriver.common.by import By

    rows = []
    for tr in driver.find_elements(By.CSS_SELECTOR, "#hits tbody tr"):

        def td(name: str, tr: Any = tr) -> Any:
            return tr.find_element(By.CSS_SELECTOR, f"td.{name}")

        images = tr.find_elements(By.CSS_SELECTOR, "td.thumb img")
        rows.append(
            {
                "score": td("score").text,
                "source": td("source").get_attribute("title"),
                "shown": td("source").text,
                "page": td("page").text,
                "text": td("text").text,
                # (width, height) of a loaded thumbnail, None without one
                "thumb": driver.execute_script(
                    "const i = arguments[0]; return i.complete && i.naturalWidth ? "
                    "[i.naturalWidth, i.naturalHeight] : null",
                    images[0],
                )
                if images
                else None,
            }
        )
    return rows


def submit_and_wait(driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.getElementById('status').textContent = ''")
    driver.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
    WebDriverWait(driver, 60).until(
        lambda d: (
            "hits" in d.find_element(By.ID, "status").text
            or "error" in (d.find_element(By.ID, "status").get_attribute("class") or "")
        )
    )
    status = driver.find_element(By.ID, "status")
    assert "error" not in (status.get_attribute("class") or ""), status.text


def assert_rows_match(rows: list[dict[str, Any]], hits: list[dict[str, Any]]) -> None:
    assert len(rows) == len(hits) > 0
    for row, hit in zip(rows, hits, strict=True):
        p = hit["payload"]
        assert row["score"] == f"{hit['score']:.4f}"
        assert row["source"] == p["source"] and row["shown"] == Path(p["source"]).name
        assert row["page"] == (str(p["page"]) if "page" in p else "")
        assert row["text"] == " ".join(p.get("text", "")[:300].split())  # as rendered
        if p["kind"] in ("image", "pdf_page", "pdf_text"):  # rendered from the source file
            assert row["thumb"] is not None and max(row["thumb"]) == 192, row
        else:
            assert row["thumb"] is None, row


def wait_for_thumbnails(driver: Any, count: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    script = (
        "return [...document.querySelectorAll('td.thumb img')]"
        ".filter((i) => i.complete && i.naturalWidth > 0).length"
    )
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(script) >= count)


def test_search_page_in_a_browser(
    browser: Any, corpus_server: Server, corpus_dir: Path, tmp_path: Path
) -> None:
    """Type a query, pick mode and limit, submit: the table shows the API's hits (score,
    source, page, text); then the same with an image picked instead of a text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    driver.get(f"{corpus_server.url}/")
    WebDriverWait(driver, 30).until(
        lambda d: (
            [o.text for o in Select(d.find_element(By.ID, "collection")).options] == ["corpus"]
        )
    )
    query = "night train to Vienna"
    driver.find_element(By.ID, "query").send_keys(query)
    Select(driver.find_element(By.ID, "mode")).select_by_visible_text("dense")
    Select(driver.find_element(By.ID, "limit")).select_by_visible_text("5")
    submit_and_wait(driver)
    hits = api_search(corpus_server, {"query": query, "mode": "dense", "limit": 5})
    pictures = [h for h in hits if h["payload"]["kind"] in ("image", "pdf_page", "pdf_text")]
    wait_for_thumbnails(driver, len(pictures))
    rows = rendered_rows(driver)
    assert_rows_match(rows, hits)
    assert any(r["text"] for r in rows) and any(r["page"] for r in rows) and pictures
    shot = Path(os.environ.get("JINA_VDB_SCREENSHOT") or tmp_path / "search-page.png")
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0

    # an image query: the picked file goes to the API as a data: URI
    picture = corpus_dir / "red.png"
    driver.find_element(By.ID, "image").send_keys(str(picture))
    Select(driver.find_element(By.ID, "mode")).select_by_visible_text("hybrid")
    Select(driver.find_element(By.ID, "limit")).select_by_visible_text("10")
    submit_and_wait(driver)
    image = "data:image/png;base64," + base64.b64encode(picture.read_bytes()).decode()
    hits = api_search(corpus_server, {"image": image, "mode": "hybrid", "limit": 10})
    wait_for_thumbnails(driver, sum(h["payload"]["kind"] != "text" for h in hits))
    assert_rows_match(rendered_rows(driver), hits)


# ---------------------------------------------------------------- thumbnails


def thumbnail(server: Server, point_id: object, size: int = 64) -> httpx.Response:
    url = f"{server.url}/v1/collections/corpus/points/{point_id}/thumbnail?size={size}"
    return httpx.get(url, timeout=60)


def test_thumbnails_of_images_and_pdf_pages(corpus_server: Server) -> None:
    from PIL import Image

    hits = api_search(corpus_server, {"query": "maps", "mode": "dense", "limit": 50})
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for hit in hits:
        by_kind.setdefault(hit["payload"]["kind"], []).append(hit)

    r = thumbnail(corpus_server, by_kind["image"][0]["id"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(r.content))
    assert picture.size == (64, 48) and picture.getpixel((32, 24)) == (200, 40, 40)

    pages = {h["payload"]["page"]: h for h in by_kind["pdf_page"]}
    shots = {}
    for page, hit in pages.items():
        r = thumbnail(corpus_server, hit["id"], size=100)
        assert r.status_code == 200, r.text
        shots[page] = Image.open(io.BytesIO(r.content))
        assert shots[page].height == 100 and abs(shots[page].width - 77) <= 1  # Letter
    assert shots[1].tobytes() != shots[2].tobytes()  # each page its own render
    text_page = by_kind["pdf_text"][0]  # a page's text hit shows that page
    r = thumbnail(corpus_server, text_page["id"], size=100)
    page = text_page["payload"]["page"]
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).tobytes() == (
        shots[page].tobytes()
    )

    r = thumbnail(corpus_server, by_kind["text"][0]["id"])
    assert r.status_code == 404 and "kind 'text'" in r.json()["detail"]
    r = thumbnail(corpus_server, "no-such-point")
    assert r.status_code == 404 and "no point 'no-such-point'" in r.json()["detail"]
    assert thumbnail(corpus_server, by_kind["image"][0]["id"], size=5000).status_code == 422


def test_thumbnails_never_read_other_files(
    corpus_server: Server, corpus_dir: Path, tmp_path: Path
) -> None:
    """Points written through the API may name any path: nothing but a file whose sha256 is
    the one in the payload is rendered, no path in the URL reaches the disk, and what comes
    back is never the file's bytes."""
    from PIL import Image

    secret = tmp_path / "secret.png"
    Image.new("RGB", (40, 40), (1, 2, 3)).save(secret)
    passwd = Path("/etc/passwd")
    passwd_sha = hashlib.sha256(passwd.read_bytes()).hexdigest()
    red = corpus_dir / "red.png"
    hostile = {
        "wrong-hash": ({"kind": "image", "source": str(secret), "sha256": "0" * 64}, "sha256"),
        # the real image of the corpus, claimed with another hash (and not served from cache)
        "cached-file": ({"kind": "image", "source": str(red), "sha256": "1" * 64}, "sha256"),
        "relative": (
            {"kind": "image", "source": "../" * 12 + "etc/passwd", "sha256": passwd_sha},
            "absolute",
        ),
        "not-an-image": ({"kind": "image", "source": str(passwd), "sha256": passwd_sha}, "image"),
        "device": (
            {"kind": "pdf_page", "source": "/dev/zero", "page": 1, "sha256": "0" * 64},
            "regular file",
        ),
        "directory": ({"kind": "image", "source": "/etc", "sha256": "0" * 64}, "regular file"),
        "no-file": ({"kind": "image", "source": "/nonexistent/x.png", "sha256": "0"}, "readable"),
    }
    points = [{"id": k, "text": k, "payload": p} for k, (p, _) in hostile.items()]
    url = f"{corpus_server.url}/v1/collections/corpus/points"
    assert httpx.post(url, json={"points": points}, timeout=60).status_code == 200
    try:
        red_id = next(
            h["id"]
            for h in api_search(corpus_server, {"query": "x", "mode": "dense", "limit": 50})
            if h["payload"].get("source") == str(red) and h["id"] not in hostile
        )
        assert thumbnail(corpus_server, red_id).status_code == 200  # now in the cache
        for point_id, (_, reason) in hostile.items():
            r = thumbnail(corpus_server, point_id)
            assert r.status_code == 404 and reason in r.json()["detail"], (point_id, r.text)
            assert "root:" not in r.text
        for path in ("..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..", "%2E%2E"):
            r = thumbnail(corpus_server, path)
            assert r.status_code == 404 and "root:" not in r.text, (path, r.text)
    finally:
        httpx.request("DELETE", url, json={"ids": list(hostile)}, timeout=60)
