"""Milvus backend: ``MilvusStore`` on a Milvus server (Array-of-Structs MaxSim, Milvus >= 2.6.4)
or a Milvus Lite file (token rows). pymilvus is imported at first use, not here."""

from __future__ import annotations

from .convert import Layout as Layout
from .store import MilvusStore as MilvusStore

__all__ = ["Layout", "MilvusStore"]
