"""Issue 9 at the CLI, in subprocesses: bad inputs reported while the rest is written, one
Ctrl-C stops a run stuck on a slow-drip URL, --prune, JSONL image paths kept inside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ingest_helpers import REPO, cli_command, subprocess_env
from PIL import Image

from connectors.stores import open_store


def _ingest(*args: str, checkpoint: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = cli_command("ingest", *args, "--model", str(checkpoint), "--device", "cpu", "-q")
    return subprocess.run(
        cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout
    )


def _failed(stdout: str) -> dict[str, str]:
    """``  failed: SOURCE: REASON`` lines -> {file name (with :line): reason}."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("  failed: "):
            source, _, reason = line.removeprefix("  failed: ").partition(": ")
            out[Path(source).name] = reason
    return out


def test_bad_files_and_lines_are_reported_and_the_rest_written(
    store_url: str, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("a good text file", encoding="utf-8")
    (folder / "blank.txt").write_text("\u200b\u200d\ufeff \n" * 20, encoding="utf-8")  # ignored
    os.symlink("loop.md", folder / "loop.md")
    Image.new("RGB", (7000, 20), "red").save(folder / "wide.png")  # aspect ratio 350
    Image.new("RGB", (20, 9000), "blue").save(folder / "tall.png")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    (folder / "notes.txt.png").write_text("PRIVATE-NOTES", encoding="utf-8")  # not an image
    lines = [
        {"id": "it's ok", "text": "an id with a quote"},
        {"id": 2**70, "text": "an int id beyond 64 bits"},
        {"id": "j3", "text": "surrogate in meta", "who": "\ud800"},
        {"id": "j4", "image": str(secret)},
        {"id": "j5", "image": "../secret.txt"},
        {"id": "j6", "image": "notes.txt.png"},
        {"id": "j7", "text": "a good line"},
    ]
    (folder / "lines.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    done = _ingest(str(folder), "--store", store_url, checkpoint=tiny_checkpoint)
    assert done.returncode == 0, done.stderr[-2000:]
    failed = _failed(done.stdout)
    quoted_id_refused = failed.pop("lines.jsonl:1", None)  # a store may refuse such an id
    assert set(failed) == {
        "loop.md",
        "wide.png",
        "tall.png",
        "notes.txt.png",
        "lines.jsonl:2",
        "lines.jsonl:3",
        "lines.jsonl:4",
        "lines.jsonl:5",
        "lines.jsonl:6",
    }, done.stdout
    assert "outside" in failed["lines.jsonl:4"] and "outside" in failed["lines.jsonl:5"]
    for text in ("TOP-SECRET", "PRIVATE-NOTES"):
        assert text not in done.stdout + done.stderr
    with open_store(store_url, "docs") as store:
        ids = {r.id for r in store.scan()}
        assert "j7" in ids and ("it's ok" in ids) == (quoted_id_refused is None)
        assert store.count() == 3 - (quoted_id_refused is not None)  # good.txt, good lines


@pytest.fixture
def drip_server() -> Iterator[tuple[str, threading.Event]]:
    """``/drip.png``: headers at once, then one byte every 0.3 s (no per-read timeout fires)."""
    asked = threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            asked.set()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"\x00")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/drip.png", asked
    httpd.shutdown()
    httpd.server_close()


def test_one_sigint_stops_an_ingest_stuck_on_a_slow_drip_url(
    drip_server: tuple[str, threading.Event], tmp_path: Path, tiny_checkpoint: Path
) -> None:
    url, asked = drip_server
    path = tmp_path / "lines.jsonl"
    texts = [{"text": f"line number {i}"} for i in range(6)]
    path.write_text("\n".join(json.dumps(x) for x in [*texts, {"image": url}]), encoding="utf-8")
    store_url = f"qdrant:{tmp_path / 'q'}"
    cmd = cli_command(
        "ingest", str(path), "--store", store_url, "--model", str(tiny_checkpoint),
        "--device", "cpu", "-q", "--batch-size", "2", "--image-timeout", "600",
    )  # fmt: skip
    env = subprocess_env(no_proxy="127.0.0.1", NO_PROXY="127.0.0.1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert asked.wait(240), "the ingest never fetched the image"
        time.sleep(1.0)  # the reader is now blocked in the download
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)  # the deadline is 600 s: only SIGINT ends it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert stderr.decode().strip().endswith("interrupted")
    with open_store(store_url, "docs") as store:
        kept = store.count()
    path.write_text("\n".join(json.dumps(x) for x in texts), encoding="utf-8")
    again = _ingest(str(path), "--store", store_url, checkpoint=tiny_checkpoint)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.startswith(f"added {6 - kept}, skipped {kept} (unchanged)"), again.stdout


def test_prune_deletes_records_of_files_that_no_longer_exist(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.txt").write_text(f"the text of file {name}", encoding="utf-8")
    store_url = f"qdrant:{tmp_path / 'q'}"
    assert _ingest(str(folder), "--store", store_url, checkpoint=tiny_checkpoint).returncode == 0
    (folder / "b.txt").unlink()
    kept = _ingest(str(folder), "--store", store_url, checkpoint=tiny_checkpoint)
    with open_store(store_url, "docs") as store:
        assert store.count() == 3 and "pruned" not in kept.stdout  # not asked to prune
    pruned = _ingest(str(folder), "--store", store_url, "--prune", checkpoint=tiny_checkpoint)
    assert pruned.returncode == 0 and ", pruned 1," in pruned.stdout, pruned.stdout
    with open_store(store_url, "docs") as store:
        sources = {Path(r.payload["source"]).name for r in store.scan()}
    assert sources == {"a.txt", "c.txt"}
