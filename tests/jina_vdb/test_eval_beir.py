"""The BEIR-layout reader: the fixture as BEIR reads it, and every bad input named by file:line."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from jina_vdb.evaluation.beir import DatasetError, iter_corpus, load_dataset

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "beir_tiny"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A writable copy of the fixture."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "beir"))


def test_fixture_split_test(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="jina_vdb.evaluation"):
        data = load_dataset(FIXTURE, "test")
    assert len(data.corpus_ids) == 20
    assert list(data.queries) == ["q1", "q2", "q3", "q4", "q5", "q7"]  # file order, q6: dev only
    assert data.unjudged_queries == 1
    assert "1 queries have no qrels in split 'test'" in caplog.text
    assert data.qrels["q1"] == {"d01": 2, "d03": 1, "d02": 0}
    assert data.qrels["q7"] == {"d16": 0}  # judged, nothing relevant: evaluated, scores 0
    assert list(data.limited(2).queries) == ["q1", "q2"]
    assert set(data.limited(2).qrels) == {"q1", "q2"}
    dev = load_dataset(FIXTURE, "dev")
    assert list(dev.queries) == ["q6"] and dev.unjudged_queries == 6


def test_corpus_texts_join_title_and_text() -> None:
    docs = {d.id: d for d in iter_corpus(FIXTURE / "corpus.jsonl")}
    assert docs["d01"].text.startswith("Berlin Berlin is the capital")
    assert docs["d19"].text.startswith("The Rhine")  # empty title: the text alone
    assert docs["d20"].line == 20


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("corpus.jsonl", '{"_id": "d03"', '{"_id": "d03",,', r"corpus.jsonl:3: not valid JSON"),
        (
            "corpus.jsonl",
            '"_id": "d05"',
            '"_id": "d04"',
            r"corpus.jsonl:5: '_id' 'd04' repeats line 4",
        ),
        ("corpus.jsonl", '"_id": "d07"', '"_id": ""', r"corpus.jsonl:7: '_id' must be a non-empty"),
        (
            "corpus.jsonl",
            '"text": "Paris',
            '"body": "Paris',
            r"corpus.jsonl:2: a corpus line needs 'text'",
        ),
        (
            "corpus.jsonl",
            '"title": "Rust"',
            '"title": 3',
            r"corpus.jsonl:6: 'title' must be a string",
        ),
        (
            "queries.jsonl",
            '{"_id": "q2"',
            '["q2"]\n{"_id": "q2"',
            r"queries.jsonl:2: expected a JSON object, got list",
        ),
        (
            "queries.jsonl",
            '"text": "largest planet in the solar system"',
            '"text": "  "',
            r"queries.jsonl:3: query 'q3' has no 'text'",
        ),
        (
            "qrels/test.tsv",
            "q2\td07\t1",
            "q2\td99\t1",
            r"test.tsv:6: corpus-id 'd99' is not in corpus.jsonl",
        ),
        (
            "qrels/test.tsv",
            "q2\td07\t1",
            "q9\td07\t1",
            r"test.tsv:6: query-id 'q9' is not in queries.jsonl",
        ),
        (
            "qrels/test.tsv",
            "q2\td07\t1",
            "q2\td07\thigh",
            r"test.tsv:6: score must be an int, got 'high'",
        ),
        (
            "qrels/test.tsv",
            "q2\td07\t1",
            "q2 d07 1",
            r"test.tsv:6: expected 3 tab-separated columns",
        ),
        (
            "qrels/test.tsv",
            "q2\td07\t1",
            "q2\td06\t1",
            r"test.tsv:6: \('q2', 'd06'\) is judged twice \(first on line 5\)",
        ),
        (
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore",
            "q0\td01\t1",
            r"test.tsv:1: expected the header",
        ),
    ],
)
def test_bad_inputs_name_file_and_line(
    data: Path, file: str, old: str, new: str, message: str
) -> None:
    _rewrite(data / file, old, new)
    with pytest.raises(DatasetError, match=message):
        load_dataset(data, "test")


def test_missing_files(data: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError,
        match=r"qrels/train.tsv: no such file \(--split train\); "
        r"splits found: dev, test",
    ):
        load_dataset(data, "train")
    (data / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries.jsonl: no such file"):
        load_dataset(data, "test")
    with pytest.raises(DatasetError, match=r"nowhere: no such folder"):
        load_dataset(tmp_path / "nowhere")
    shutil.rmtree(data / "qrels")
    with pytest.raises(DatasetError, match=r"no qrels/\*.tsv at all"):
        load_dataset(data, "test")


def test_not_utf8_names_the_line(data: Path) -> None:
    with (data / "queries.jsonl").open("ab") as f:
        f.write(b'{"_id": "q8", "text": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=r"queries.jsonl:8: not UTF-8"):
        load_dataset(data, "test")


def test_documents_without_text_are_left_out_with_a_warning(
    data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _rewrite(
        data / "corpus.jsonl",
        '"title": "Tea", "text": "Green and black tea come from the '
        'leaves of the same plant, Camellia sinensis."',
        '"title": "", "text": " "',
    )
    with caplog.at_level(logging.WARNING):
        loaded = load_dataset(data, "test")
    assert loaded.empty_docs == 1 and "d20" in loaded.corpus_ids
    assert (
        "1 documents have neither title nor text" in caplog.text
        and "'d20' (line 20)" in caplog.text
    )
    assert [d.id for d in iter_corpus(data / "corpus.jsonl")][-1] == "d19"


def test_a_split_without_rows_is_refused(data: Path) -> None:
    (data / "qrels" / "empty.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(DatasetError, match=r"empty.tsv: no judged"):
        load_dataset(data, "empty")
