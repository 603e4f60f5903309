"""Real folders through the CLI, in a subprocess: names that are not UTF-8, legacy encodings,
files that are ignored or broken, and the messages a user reads about them (issue 16)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from ingest_helpers import REPO, cli_command, subprocess_env
from PIL import Image

from jina_vdb.sources import stable_id
from jina_vdb.sources.samples import minimal_pdf

pytestmark = pytest.mark.slow

JAPANESE = (
    "# 日本語のコメントです。東京から新幹線で行けます。\nx = '富士山は日本で一番高い山です'\n"
)
#: file -> (bytes, encoding recorded in the payload)
TEXTS = {
    b"caf\xe9.txt": (b"Caf\xe9 au lait, cr\xe8me br\xfbl\xe9e.\n", "cp1252"),
    b"utf16le.txt": ("\ufeffUTF-16 little endian, héllo".encode("utf-16-le"), "utf-16-le"),
    b"utf16be.txt": ("\ufeffUTF-16 big endian, héllo".encode("utf-16-be"), "utf-16-be"),
    b"cp1252.md": ("“Smart quotes” — cost 5 € in the café.\n".encode("cp1252"), "cp1252"),
    b"sjis_cookie.py": (
        "# -*- coding: shift_jis -*-\nx = '富士山'\n".encode("shift_jis"),
        "shift_jis",
    ),
    b"sjis.py": (JAPANESE.encode("shift_jis"), "cp932"),
    b"plain.txt": (b"Plain UTF-8 text.\n", "utf-8"),
}


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(JINA_VDB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    return subprocess.run(
        cli_command(*args), cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _messy_folder(root: Path) -> Path:
    """A folder as found on a real disk (bytes names: some are not UTF-8)."""
    folder = os.fsencode(root / "corpus")
    os.makedirs(folder)
    for name, (data, _) in TEXTS.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    with open(os.path.join(folder, b"binary.txt"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    for i in range(3):
        with open(os.path.join(folder, b"icon%d.svg" % i), "wb") as f:
            f.write(b'<svg xmlns="http://www.w3.org/2000/svg"/>')
    open(os.path.join(folder, b"empty.md"), "wb").close()
    os.symlink(os.fsencode(root / "gone.txt"), os.path.join(folder, b"dangling.txt"))
    Image.new("RGB", (32, 32), "red").save(os.fsdecode(os.path.join(folder, b"pic\xff.png")))
    with open(os.path.join(folder, b"r\xe9sum\xe9.pdf"), "wb") as f:
        f.write(minimal_pdf([["Page one of the report"]]))
    with open(os.path.join(folder, b"broken.pdf"), "wb") as f:
        f.write(b"%PDF-1.4 not really a PDF")
    lines = [{"id": "a", "text": "first line"}, {"id": "b", "text": "x"}, {"id": "a", "text": "y"}]
    with open(os.path.join(folder, b"lines.jsonl"), "w", encoding="utf-8") as f:
        f.write("{not json\n" + "\n".join(json.dumps(line) for line in lines))
    return Path(os.fsdecode(folder))


def test_stable_ids_of_utf8_names_are_unchanged() -> None:
    """Re-runs keep skipping what is stored: ids of UTF-8 names hash exactly as before."""
    source = "/data/notes/résumé 日本.txt"
    old = hashlib.sha256("\x00".join((source, "chunk=0", "abc")).encode("utf-8"))
    assert stable_id(source, "chunk=0", "abc") == old.hexdigest()[:32]
    raw = os.fsdecode(b"/data/caf\xe9.txt")  # the surrogate escape of byte 0xE9
    expected = hashlib.sha256(b"/data/caf\xe9.txt\x00chunk=0\x00abc").hexdigest()[:32]
    assert stable_id(raw, "chunk=0", "abc") == expected


def test_a_real_folder_ingests_every_name_and_encoding_and_accounts_for_every_file(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    corpus = _messy_folder(tmp_path)
    store = ("--store", f"qdrant:{tmp_path / 'q'}", "--model", str(tiny_checkpoint))
    # stderr is a pipe, not a terminal: one-line progress logs (here one per file)
    run = cli(
        "ingest", str(corpus), *store, "--device", "cpu", "--log-every", "0", cache=tmp_path / "c"
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    # 7 texts + 1 image + a PDF page and its text layer + 2 JSONL lines; 4 failed, 4 ignored
    assert lines[0].startswith(
        "added 12, skipped 0 (unchanged), failed 4, ignored 4, duplicates in input 1 "
    )
    assert "; 0 images/pages" not in lines[0]
    failed = {line for line in lines if line.startswith("  failed: ")}
    assert {line.split(" (")[0] for line in failed} == {
        f"  failed: {corpus}/binary.txt: binary data, not text",
        f"  failed: {corpus}/dangling.txt: broken symbolic link to {tmp_path}/gone.txt",
        f"  failed: {corpus}/broken.pdf: cannot open PDF",  # the path once, not twice
        f"  failed: {corpus}/lines.jsonl:1: Expecting property name enclosed in double quotes: "
        "line 1 column 2",
    }
    assert (
        f"  duplicate: {corpus}/lines.jsonl:4: id 'a' is already used by {corpus}/lines.jsonl:2; "
        "only the first is ingested"
    ) in lines
    progress = [line for line in run.stderr.splitlines() if "jina_vdb.progress" in line]
    counted = [line for line in progress if " files (" in line]  # (also: store status lines)
    files = len(os.listdir(corpus))
    assert len(counted) >= 3 and f"ingest: {files}/{files} files (100%)" in counted[-1]
    assert all(f"/{files} files (" in line for line in counted)
    assert "  ignored: 3 (unsupported type .svg), 1 (empty file)" in lines
    assert not any(f"{corpus}/icon0.svg" in line for line in lines)  # listed with --verbose only

    again = cli("ingest", str(corpus), *store, "--device", "cpu", "-q", "-v", cache=tmp_path / "c")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("added 0, skipped 12 (unchanged), failed 4, ignored 4,")
    assert "jina_vdb.progress" not in again.stderr  # --quiet
    listed = [line for line in again.stdout.splitlines() if line.startswith("  ignored: /")]
    assert sorted(listed) == [
        f"  ignored: {corpus}/empty.md: empty file",
        *(f"  ignored: {corpus}/icon{i}.svg: unsupported type .svg" for i in range(3)),
    ]

    found = cli("search", "café", *store, "--limit", "20", "--json", cache=tmp_path / "c")
    assert found.returncode == 0, found.stderr
    payloads = {Path(h["payload"]["source"]).name: h["payload"] for h in json.loads(found.stdout)}
    for name, (_, encoding) in TEXTS.items():
        shown = name.decode("utf-8", "backslashreplace")
        assert payloads[shown]["encoding"] == encoding, shown
    assert payloads["caf\\xe9.txt"]["text"] == "Café au lait, crème brûlée."
    assert payloads["sjis.py"]["text"] == JAPANESE.strip()
    # names that are not UTF-8: readable in "source", exact in "source_b64"
    for shown, raw in [
        ("caf\\xe9.txt", b"caf\xe9.txt"),
        ("pic\\xff.png", b"pic\xff.png"),
        ("r\\xe9sum\\xe9.pdf", b"r\xe9sum\xe9.pdf"),
    ]:
        payload = payloads[shown]
        assert base64.b64decode(payload["source_b64"]) == os.fsencode(corpus) + b"/" + raw
    assert "source_b64" not in payloads["plain.txt"]

    missing = cli("search", "--image", str(tmp_path / "nope.png"), *store, cache=tmp_path / "c")
    assert missing.returncode == 1 and missing.stderr.startswith(
        f"error: --image {tmp_path}/nope.png: image file not found"
    )
    assert "item 0" not in missing.stderr


def test_cli_errors_name_the_flag_not_python(tmp_path: Path, tiny_checkpoint: Path) -> None:
    store = f"qdrant:{tmp_path / 'q'}"
    none = cli("search", "q", "--store", store, "-c", "absent", cache=tmp_path / "c")
    assert none.returncode == 1 and none.stderr.strip() == (
        f"error: no collection 'absent' in {store}; create it by ingesting into it: "
        f"jina-vdb ingest PATH --store {store} --collection absent"
    )
    folder = tmp_path / "scans"
    folder.mkdir()
    Image.new("RGB", (60, 60), "white").save(folder / "scan.png")  # 3,600 pixels
    model = ("--store", store, "--model", str(tiny_checkpoint), "--device", "cpu", "-q")
    bomb = cli("ingest", str(folder), *model, "--max-image-pixels", "1000", cache=tmp_path / "c")
    assert bomb.returncode == 0, bomb.stderr
    assert bomb.stdout.startswith("added 0, skipped 0 (unchanged), failed 1")
    (line,) = [x for x in bomb.stdout.splitlines() if x.startswith("  failed:")]
    assert line.startswith(
        f"  failed: {folder}/scan.png: image has 3,600 pixels, over the decompression-bomb "
        "limit of 1,000 pixels; if you trust it, raise the limit with --max-image-pixels N"
    )
    assert "`" not in line and "item 0" not in line
    fine = cli("ingest", str(folder), *model, "--max-image-pixels", "4000", cache=tmp_path / "c")
    assert fine.returncode == 0 and fine.stdout.startswith("added 1, skipped 0")


def _search_corpus(root: Path) -> Path:
    for sub in ("alpha", "beta"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text(f"# package {sub}\nVALUE = 1\n", encoding="utf-8")
    (root / "notes, v1.md").write_text("Notes with a comma in the name.", encoding="utf-8")
    code = "\n".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(40))
    (root / "long.py").write_text(code, encoding="utf-8")
    lines = [{"id": 7, "text": "an integer id"}, {"id": "s", "text": "a string id"}]
    (root / "records.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    return root


def test_search_output_names_paths_places_and_the_score_scale(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    corpus = _search_corpus(tmp_path / "corpus")
    store = ("--store", f"qdrant:{tmp_path / 'q'}", "--model", str(tiny_checkpoint))
    run = cli("ingest", str(corpus), *store, "--chunk-tokens", "64", "--chunk-overlap", "0",
              "-q", cache=tmp_path / "c")  # fmt: skip
    assert run.returncode == 0, run.stderr

    plain = cli("search", "package", *store, "--limit", "50", cache=tmp_path / "c")
    assert plain.returncode == 0, plain.stderr
    note, header, *rows = plain.stdout.splitlines()
    assert (
        note.startswith("score: MaxSim, the sum over the query's ") and "--score-per-token" in note
    )
    assert header.split() == ["rank", "maxsim", "kind", "source"]
    shown = {row.split()[3].split(":")[0] for row in rows}
    # the two __init__.py are told apart by their folder; unique names stay short
    assert {"alpha/__init__.py", "beta/__init__.py", "long.py", "records.jsonl"} <= shown
    assert any(row.split()[3] == "records.jsonl:2" for row in rows)  # JSONL: the line
    code_lines = sorted(int(r.split()[3].split(":")[1]) for r in rows if "long.py:" in r)
    assert code_lines[0] == 1 and len(code_lines) > 2 and code_lines[1] > 1  # chunk start lines

    def scores(*extra: str) -> tuple[list[dict], str]:
        out = cli("search", "package", *store, "--limit", "5", "--json", *extra,
                  cache=tmp_path / "c")  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout), out.stderr

    summed, _ = scores()
    per_token, _ = scores("--score-per-token")
    assert all(isinstance(h["id"], str) for h in summed) and {"7", "s"} <= {
        h["id"] for h in json.loads(cli("search", "id", *store, "--json", "-f", "kind=text",
                                        "--limit", "50", cache=tmp_path / "c").stdout)
    }  # fmt: skip
    ratios = {round(a["score"] / b["score"], 3) for a, b in zip(summed, per_token, strict=True)}
    (ratio,) = ratios  # one query token count divides every score
    assert ratio == int(ratio) >= 1 and per_token[0]["score_kind"] == "maxsim/token"
    fused, _ = scores("--mode", "fusion")
    assert fused[0]["score_kind"] == "rrf" and 0 < fused[0]["score"] <= 2 / 61
    refused = cli(
        "search", "x", *store, "--mode", "dense", "--score-per-token", cache=tmp_path / "c"
    )
    assert refused.returncode == 1 and "--score-per-token divides MaxSim" in refused.stderr

    # a value with a comma, quoted; a key no record has: a warning, not silence
    comma, _ = scores("-f", f'source="{corpus}/notes, v1.md"')
    assert [Path(h["payload"]["source"]).name for h in comma] == ["notes, v1.md"]
    none, warned = scores("-f", "lang=en")
    assert none == [] and "warning: no record in this collection has the field 'lang'" in warned
    assert "source" in warned.split("fields: ")[1]


def test_progress_bar_on_a_terminal_has_a_total_and_an_eta(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """stderr is a pseudo-terminal: a tqdm bar counting files out of the walked total."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"d{i}.txt").write_text(f"document number {i}", encoding="utf-8")
    (folder / "logo.svg").write_text("<svg/>", encoding="utf-8")  # ignored, still a file
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    env = subprocess_env(JINA_VDB_CACHE=str(tmp_path / "c"), HF_HUB_OFFLINE="1")
    cmd = cli_command("ingest", str(folder), "--store", f"qdrant:{tmp_path / 'q'}",
                      "--model", str(tiny_checkpoint), "--device", "cpu")  # fmt: skip
    with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=slave) as proc:
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        out = proc.stdout.read().decode() if proc.stdout else ""
    os.close(master)
    assert proc.returncode == 0, out
    bar = b"".join(chunks).decode(errors="replace")
    assert re.search(r"ingest: 100%\|.*\| 4/4 \[\d\d:\d\d<\d\d:\d\d", bar), bar[-1000:]
    assert "file/s" in bar and out.startswith("added 3, skipped 0 (unchanged), failed 0")
