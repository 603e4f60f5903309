"""Rule zero: data flows one way, checked in fresh interpreters (no earlier import hides a leak).

``connectors`` never imports torch, transformers or PIL (a user who only queries stored
vectors needs none of them), and the Qdrant packages load only when a store is opened.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "PIL", "peft")


def _imported_after(modules: list[str]) -> set[str]:
    """Top-level package names in sys.modules after importing ``modules`` in a new interpreter."""
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _connector_modules() -> list[str]:
    modules = [
        "connectors",
        "connectors.qdrant",
        "connectors.qdrant.convert",
        "connectors.qdrant.store",
    ]
    if importlib.util.find_spec("connectors.milvus") is not None:
        modules.append("connectors.milvus")
    return modules


def test_connectors_do_not_import_torch_transformers_or_pil():
    loaded = _imported_after(_connector_modules())
    assert not loaded & set(HEAVY), f"connectors imported {sorted(loaded & set(HEAVY))}"


def test_qdrant_packages_load_lazily():
    loaded = _imported_after(["connectors", "connectors.qdrant", "connectors.qdrant.convert"])
    assert "qdrant_client" not in loaded and "qdrant_edge" not in loaded


def test_opening_a_store_still_needs_no_torch(tmp_path):
    script = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from connectors.qdrant import QdrantStore\n"
        "spec = dict(dim=8, prefetch_dims=(), multivector=False)\n"
        f"QdrantStore.create('b', path={str(tmp_path)!r}, **spec).close()\n"
        "QdrantStore.create('b', local=':memory:', **spec).close()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert not loaded & set(HEAVY), f"opening Qdrant stores imported {sorted(loaded & set(HEAVY))}"


@pytest.mark.skipif(importlib.util.find_spec("embedder") is None, reason="no embedder package")
def test_embedder_does_not_import_database_clients():
    loaded = _imported_after(["embedder"])
    clients = {"qdrant_client", "qdrant_edge", "pymilvus", "milvus_lite"}
    assert not loaded & clients, f"embedder imported {sorted(loaded & clients)}"


# --- one-way dependencies, read from the source (lazy imports inside functions included)

_FORBIDDEN = {
    # package: top-level names it must never import, at module level or inside a function
    "connectors": {"embedder", "jina_vdb", "torch", "transformers", "PIL", "peft"},
    "embedder": {
        "connectors",
        "jina_vdb",
        "qdrant_client",
        "qdrant_edge",
        "pymilvus",
        "milvus_lite",
    },
}


def _imports_of(path: Path) -> set[str]:
    """Top-level names imported anywhere in a module (absolute imports only)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(_FORBIDDEN))
def test_libraries_never_import_each_other_or_the_application(package):
    offenders = {
        str(path.relative_to(REPO)): sorted(_imports_of(path) & _FORBIDDEN[package])
        for path in sorted((REPO / package).rglob("*.py"))
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{package} imports what it must not: {offenders}"


def test_the_application_package_holds_no_library_code():
    """``jina_vdb`` depends on both libraries; the libraries' folders hold no app modules."""
    app_modules = {"cli", "cli_support", "demo", "ingest", "ingest_types"}
    source_modules = {"sources", "jsonl", "pdf", "chunking", "samples"}
    assert not {p.stem for p in (REPO / "connectors").glob("*.py")} & app_modules
    assert not {p.stem for p in (REPO / "embedder").glob("*.py")} & source_modules


def test_only_the_distributed_package_imports_ray():
    """ray is the ``[ray]`` extra of ``jina_vdb.distributed`` alone (lazily, at first use)."""
    offenders = sorted(
        str(path.relative_to(REPO))
        for package in ("embedder", "connectors", "jina_vdb")
        for path in (REPO / package).rglob("*.py")
        if "ray" in _imports_of(path) and "distributed" not in path.parts
    )
    assert not offenders, f"only jina_vdb/distributed may import ray: {offenders}"
    assert "ray" not in _imported_after(["jina_vdb.distributed", "jina_vdb.cli.app"])
