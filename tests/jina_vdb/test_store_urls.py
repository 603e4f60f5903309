"""Store URLs (the CLI's --store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import CollectionSpec
from connectors.stores import StoreURL, open_store, parse_store_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("qdrant:./data", StoreURL("qdrant", "./data", False)),
        ("qdrant+http://host:6333", StoreURL("qdrant", "http://host:6333", True)),
        ("qdrant+https://x.cloud.qdrant.io", StoreURL("qdrant", "https://x.cloud.qdrant.io", True)),
        ("milvus:./milvus.db", StoreURL("milvus", "./milvus.db", False)),
        (" milvus+http://localhost:19530 ", StoreURL("milvus", "http://localhost:19530", True)),
    ],
)
def test_valid_store_urls(url: str, expected: StoreURL) -> None:
    parsed = parse_store_url(url)
    assert parsed == expected and parse_store_url(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "unknown store URL"),
        ("qdrant:", "unknown store URL"),
        ("qdrant:http://host:6333", "unknown store URL"),  # a server needs qdrant+http://
        ("milvus+ftp://host", "unknown store URL"),
        ("qdrant+http://key:secret@host:6333", "must not contain credentials"),
    ],
)
def test_bad_store_urls_name_the_valid_forms(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_store_url(url)
    assert "secret" not in str(info.value)


def test_max_tokens_is_accepted_on_milvus_lite(tmp_path: Path) -> None:
    spec = CollectionSpec(dim=64, prefetch_dims=(16,))
    with open_store(f"milvus:{tmp_path / 'm.db'}", "docs", spec=spec, max_tokens=2064) as store:
        assert store.count() == 0 and not spec.differences(
            store.spec
        )  # token rows: no per-record bound needed
