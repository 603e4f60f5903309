"""The search page at ``/`` in a real headless Chromium (selenium + the system's chromedriver).

Skipped, with the reason, when selenium, Chromium or chromedriver is missing
(``.ci/browser.sh`` installs the Debian packages where it can). Set ``JINA_VDB_SCREENSHOT``
to a path to keep the screenshot (docs/search-page.png is made that way).
"""

from __future__ import annotations

import base64
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
    options.add_argument("--window-size=1100,900")
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
        cells = tr.find_elements(By.TAG_NAME, "td")
        source = tr.find_element(By.CSS_SELECTOR, "td.source")
        rows.append(
            {
                "score": cells[1].text,
                "source": source.get_attribute("title"),
                "shown": source.text,
                "page": cells[3].text,
                "text": cells[4].text,
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
    rows = rendered_rows(driver)
    hits = api_search(corpus_server, {"query": query, "mode": "dense", "limit": 5})
    assert_rows_match(rows, hits)
    assert any(r["text"] for r in rows) and any(r["page"] for r in rows)
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
    assert_rows_match(rendered_rows(driver), hits)
