"""Optional dependencies: every package imports without its extras, and the first use of a
missing one raises MissingDependencyError naming the extra to install.

Each check runs in a fresh interpreter with the packages blocked by a ``sys.meta_path``
finder, so it behaves as an install without that extra would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPTIONAL = (
    "torch",
    "transformers",
    "safetensors",
    "tokenizers",
    "huggingface_hub",
    "PIL",
    "tqdm",
    "qdrant_client",
    "qdrant_edge",
    "pymilvus",
    "milvus_lite",
    "pypdfium2",
    "typer",
    "charset_normalizer",
    "scipy",
    "ray",
    "pybase64",
)


def _run(blocked: tuple[str, ...], body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a new interpreter where the ``blocked`` top-level packages are absent."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        BLOCKED = {set(blocked)!r}

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Blocker())
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def test_every_package_imports_with_no_optional_dependency(tmp_path: Path) -> None:
    modules = [
        "embedder",
        "embedder.options",
        "connectors",
        "connectors.stores",
        "connectors.qdrant",
        "connectors.milvus",
        "jina_vdb",
        "jina_vdb.errors",
        "jina_vdb.payload",
        "jina_vdb.sizing",
        "jina_vdb.cli",
    ]
    body = f"""
    import json
    for name in {modules!r}:
        __import__(name)
    import embedder
    print(json.dumps([embedder.Task.values(), sorted({{m.split('.')[0] for m in sys.modules}})]))
    """
    proc = _run(OPTIONAL, body, tmp_path)
    assert proc.returncode == 0, proc.stderr
    tasks, loaded = json.loads(proc.stdout)
    assert tasks == ["retrieval", "text-matching", "code"]
    assert not set(loaded) & set(OPTIONAL)


@pytest.mark.parametrize(
    ("blocked", "body", "extra"),
    [
        (
            ("torch",),
            "import embedder\nembedder.JinaV4Embedder",
            "model",
        ),
        (
            ("qdrant_edge",),
            "from connectors.qdrant import QdrantStore\n"
            "QdrantStore.create('c', path='q', dim=8, prefetch_dims=(), multivector=False)",
            "qdrant",
        ),
        (
            ("qdrant_client",),
            "from connectors.qdrant import QdrantStore\n"
            "QdrantStore.create('c', local=':memory:', dim=8, prefetch_dims=(), multivector=False)",
            "qdrant",
        ),
        (
            ("pymilvus",),
            "from connectors.milvus import MilvusStore\n"
            "MilvusStore.create('c', uri='m.db', dim=8, prefetch_dims=(), multivector=False)",
            "milvus",
        ),
        (
            ("milvus_lite",),
            "from connectors.milvus import MilvusStore\n"
            "MilvusStore.create('c', uri='m.db', dim=8, prefetch_dims=(), multivector=False)",
            "milvus",
        ),
        (
            ("pybase64",),  # the packed token layout's (Milvus Lite's default) base64
            "import numpy as np\n"
            "from connectors import Record\n"
            "from connectors.milvus import MilvusStore\n"
            "store = MilvusStore.create('c', uri='m.db', dim=8, prefetch_dims=())\n"
            "store.upsert([Record(1, np.ones(8), np.eye(4, 128))])",
            "milvus",
        ),
        (
            ("scipy",),
            "import numpy as np\n"
            "from connectors import CollectionSpec, Record\n"
            "from connectors.records import prepare_record\n"
            "spec = CollectionSpec(dim=8, prefetch_dims=(), token_pooling=2)\n"
            "prepare_record(Record(1, np.ones(8), np.eye(4, 128)), spec)",
            "pooling",
        ),
    ],
    ids=["torch", "qdrant-edge", "qdrant-client", "pymilvus", "milvus-lite", "pybase64", "scipy"],
)
def test_first_use_names_the_extra(
    blocked: tuple[str, ...], body: str, extra: str, tmp_path: Path
) -> None:
    wrapped = (
        "try:\n" + textwrap.indent(body, "    ") + "\nexcept ImportError as e:\n"
        "    print(type(e).__module__, type(e).__name__, e, sep='|')\n"
        "else:\n"
        "    print('no error')\n"
    )
    proc = _run(blocked, wrapped, tmp_path)
    assert proc.returncode == 0, proc.stderr
    module, name, message = proc.stdout.strip().split("|", 2)
    assert name == "MissingDependencyError", proc.stdout
    assert module.split(".")[0] in ("embedder", "connectors", "jina_vdb")
    assert f"pip install 'jina-vdb[{extra}]'" in message


def test_the_command_without_typer_says_which_extra_in_one_line(tmp_path: Path) -> None:
    proc = _run(("typer",), "from jina_vdb.cli import main\nmain()", tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: typer is required for the jina-vdb command: pip install 'jina-vdb[cli]'"
    ]


def test_a_pdf_without_pypdfium2_is_reported_naming_the_extra(tmp_path: Path) -> None:
    body = (
        "from jina_vdb.sources import Failure, iter_items\n"
        "from jina_vdb.sources.samples import minimal_pdf\n"
        "open('a.pdf', 'wb').write(minimal_pdf([['x']]))\n"
        "print([i.reason for i in iter_items(['a.pdf']) if isinstance(i, Failure)])\n"
    )
    proc = _run(("pypdfium2",), body, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'jina-vdb[pdf]'" in proc.stdout


def test_ingest_on_ray_without_ray_says_which_extra_in_one_line(tmp_path: Path) -> None:
    """``--ray`` without the extra: the install hint, before any model is loaded."""
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    body = (
        "sys.argv = ['jina-vdb', 'ingest', 'a.txt', '--store', 'qdrant:q', '--model', "
        "'no-such-model', '--ray', 'local']\n"
        "from jina_vdb.cli import main\nmain()"
    )
    proc = _run(("ray",), body, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: ray[data] is required for ingest on Ray (--ray): pip install 'jina-vdb[ray]'"
    ]
