"""Labelled retrieval sets in the BEIR layout: read, checked whole before anything is stored.

    DATA/corpus.jsonl        {"_id": "d1", "title": "...", "text": "..."} per line
    DATA/queries.jsonl       {"_id": "q1", "text": "..."} per line
    DATA/qrels/SPLIT.tsv     header "query-id<TAB>corpus-id<TAB>score", then one row per
                             judged (query, document) pair; score: an int grade (0 = judged
                             not relevant)

As BEIR's own loader does: only the queries that appear in the split's qrels are evaluated
(``queries.jsonl`` usually holds every split's queries), and a document is embedded as its
title and text joined by a space. Unlike it, every problem is an error naming the file and
line: a malformed line, a repeated id, a qrels row naming a query or a document that does
not exist. Documents with neither title nor text cannot be embedded: they are left out with
a warning (they can then never be retrieved). Pure Python: no model, no database client.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")


class DatasetError(ValueError):
    """A BEIR-layout file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class CorpusDoc:
    """One corpus line: its BEIR id (the record id), what is embedded, and where it is."""

    id: str
    text: str  # title + " " + text, as BEIR embeds it
    line: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BeirDataset:
    """A checked dataset: the split's queries, their judgements, and the corpus' ids.

    The corpus texts are not held: :func:`iter_corpus` reads them again when ingesting.
    """

    root: Path
    split: str
    corpus_ids: frozenset[str]
    queries: dict[str, str]  # query id -> text, only the queries with qrels, in file order
    qrels: dict[str, dict[str, int]]  # query id -> corpus id -> grade
    unjudged_queries: int = 0  # queries in queries.jsonl without qrels in this split
    empty_docs: int = 0  # documents with neither title nor text (not ingested)

    @property
    def corpus_path(self) -> Path:
        return self.root / CORPUS_FILE

    def limited(self, n: int | None) -> BeirDataset:
        """The first ``n`` queries only (all when None)."""
        if n is None or n >= len(self.queries):
            return self
        keep = dict(list(self.queries.items())[:n])
        return dataclasses.replace(self, queries=keep, qrels={q: self.qrels[q] for q in keep})


def load_dataset(root: str | Path, split: str = "test") -> BeirDataset:
    """Read and check a BEIR-layout folder (every line of every file) for one split.

    Raises:
        DatasetError: a missing file, a malformed line, a repeated id, a qrels row naming an
            unknown query or document, or a split without a single judged query.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (expected a BEIR-layout dataset folder)")
    qrels_path = root / QRELS_DIR / f"{split}.tsv"
    if not qrels_path.is_file():
        found = sorted(p.stem for p in (root / QRELS_DIR).glob("*.tsv"))
        have = f"splits found: {', '.join(found)}" if found else f"no {QRELS_DIR}/*.tsv at all"
        raise DatasetError(f"{qrels_path}: no such file (--split {split}); {have}")
    corpus_ids, empty = _corpus_ids(root / CORPUS_FILE)
    all_queries = _queries(root / QUERIES_FILE)
    qrels = _qrels(qrels_path, set(all_queries), corpus_ids)
    if not qrels:
        raise DatasetError(f"{qrels_path}: no judged (query, document) rows")
    queries = {q: text for q, text in all_queries.items() if q in qrels}
    unjudged = len(all_queries) - len(queries)
    if unjudged:
        logger.info("%d queries have no qrels in split %r: not evaluated", unjudged, split)
    return BeirDataset(root, split, frozenset(corpus_ids), queries, qrels, unjudged, empty)


def iter_corpus(path: Path) -> Iterator[CorpusDoc]:
    """The corpus documents that can be embedded, in file order (the file was checked)."""
    for line, obj in _json_lines(path):
        doc = _corpus_doc(obj, path, line)
        if doc.text:
            yield doc


# -- files -------------------------------------------------------------------------------------
def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, decoded one by one so a bad byte names its line."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file (a BEIR-layout folder holds it)") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read it ({e.strerror or e})") from e
    with f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DatasetError(f"{path}:{lineno}: not UTF-8 text ({e.reason})") from None


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a DatasetError naming a bad line."""
    for lineno, text in _lines(path):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def _string_id(obj: dict[str, Any], path: Path, line: int) -> str:
    value = obj.get("_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{path}:{line}: '_id' must be a non-empty string, got {value!r}")
    return value


def _string_field(obj: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DatasetError(f"{path}:{line}: {key!r} must be a string, got {type(value).__name__}")
    return value


def _corpus_doc(obj: dict[str, Any], path: Path, line: int) -> CorpusDoc:
    doc_id = _string_id(obj, path, line)
    if "text" not in obj:
        raise DatasetError(f"{path}:{line}: a corpus line needs 'text' (and '_id', 'title')")
    title = _string_field(obj, "title", path, line).strip()
    text = _string_field(obj, "text", path, line).strip()
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise DatasetError(f"{path}:{line}: 'metadata' must be a JSON object")
    joined = f"{title} {text}".strip()
    return CorpusDoc(doc_id, joined, line, dict(metadata or {}))


def _corpus_ids(path: Path) -> tuple[dict[str, int], int]:
    """Every corpus id -> its line, and how many documents are empty (warned about)."""
    ids: dict[str, int] = {}
    empty: list[str] = []
    for line, obj in _json_lines(path):
        doc = _corpus_doc(obj, path, line)
        if doc.id in ids:
            raise DatasetError(f"{path}:{line}: '_id' {doc.id!r} repeats line {ids[doc.id]}")
        ids[doc.id] = line
        if not doc.text:
            empty.append(f"{doc.id!r} (line {line})")
    if not ids:
        raise DatasetError(f"{path}: no documents")
    if empty:
        logger.warning(
            "%s: %d documents have neither title nor text and are not ingested (they can "
            "never be retrieved): %s",
            path,
            len(empty),
            ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else ""),
        )
    return ids, len(empty)


def _queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, obj in _json_lines(path):
        qid = _string_id(obj, path, line)
        if qid in lines:
            raise DatasetError(f"{path}:{line}: '_id' {qid!r} repeats line {lines[qid]}")
        text = _string_field(obj, "text", path, line)
        if not text.strip():
            raise DatasetError(f"{path}:{line}: query {qid!r} has no 'text'")
        queries[qid], lines[qid] = text, line
    if not queries:
        raise DatasetError(f"{path}: no queries")
    return queries


def _qrels(path: Path, queries: set[str], corpus: dict[str, int]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    for lineno, raw in _lines(path):
        row = raw.rstrip("\r\n").split("\t")
        if lineno == 1:
            if tuple(c.strip().lower() for c in row) != QRELS_HEADER:
                raise DatasetError(
                    f"{path}:1: expected the header {chr(9).join(QRELS_HEADER)!r} "
                    f"(tab-separated), got {raw.rstrip()!r}"
                )
            continue
        if not raw.strip():
            continue
        qid, doc, grade = _qrels_row(row, path, lineno)
        if qid not in queries:
            raise DatasetError(f"{path}:{lineno}: query-id {qid!r} is not in {QUERIES_FILE}")
        if doc not in corpus:
            raise DatasetError(f"{path}:{lineno}: corpus-id {doc!r} is not in {CORPUS_FILE}")
        if (qid, doc) in seen:
            raise DatasetError(
                f"{path}:{lineno}: ({qid!r}, {doc!r}) is judged twice (first on line "
                f"{seen[qid, doc]})"
            )
        seen[qid, doc] = lineno
        qrels.setdefault(qid, {})[doc] = grade
    return qrels


def _qrels_row(row: list[str], path: Path, lineno: int) -> tuple[str, str, int]:
    if len(row) != 3:
        raise DatasetError(
            f"{path}:{lineno}: expected 3 tab-separated columns (query-id, corpus-id, score), "
            f"got {len(row)}"
        )
    qid, doc, score = (c.strip() for c in row)
    if not qid or not doc:
        raise DatasetError(f"{path}:{lineno}: empty query-id or corpus-id")
    try:
        grade = int(score)
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: score must be an int, got {score!r}") from None
    return qid, doc, grade
