"""Two processes create the same new qdrant-edge collection at once (issue 9, item 5).

Before: the loser got a raw FileNotFoundError / WAL error, and in some runs the spec file
said one dim while the shard had the other, so every later write failed. Now a collection is
built in a hidden folder and published with one rename: one process wins, the other opens
the winner's collection (same spec), or gets SchemaMismatchError (another spec) or
StoreLockedError (the winner holds it open); spec and shard always agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from connectors import Record, SchemaMismatchError
from connectors.qdrant import QdrantStore

REPO = Path(__file__).resolve().parents[2]

CREATOR = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from connectors import CollectionSpec
    from connectors.qdrant import QdrantStore

    root, go, dim = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    while not go.exists():
        time.sleep(0.001)
    try:
        store = QdrantStore.create("race", path=root, dim=dim, prefetch_dims=(8,))
    except Exception as e:
        print(json.dumps({{"error": type(e).__name__, "message": str(e)}}))
    else:
        print(json.dumps({{"dim": store.spec.dim}}))
        time.sleep(0.3)  # hold it open a moment, as a real ingest would
        store.close()
    """
)


def _race(tmp_path: Path, dims: tuple[int, int], round_: int) -> list[dict]:
    root = tmp_path / f"round{round_}"
    go = tmp_path / f"go{round_}"
    script = CREATOR.format(repo=str(REPO))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(root), str(go), str(d)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in dims
    ]
    time.sleep(1.5)  # both interpreters started and waiting
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.slow
@pytest.mark.parametrize("dims", [(32, 48), (32, 32)], ids=["different-specs", "same-spec"])
def test_concurrent_create_one_wins_spec_and_shard_agree(tmp_path, dims):
    for round_ in range(3):
        results = _race(tmp_path, dims, round_)
        winners = [r for r in results if "dim" in r]
        assert winners, results
        for r in results:
            if "error" in r:
                assert r["error"] in ("SchemaMismatchError", "StoreLockedError"), r
                assert "race" in r["message"]
        root = tmp_path / f"round{round_}"
        assert [p.name for p in root.iterdir()] == ["race"], "a temporary folder was left"
        store = QdrantStore.open("race", path=root)
        try:
            dim = store.spec.dim
            assert dim in [w["dim"] for w in winners]
            rng = np.random.default_rng(round_)
            store.upsert([Record(1, rng.standard_normal(dim), rng.standard_normal((3, 128)))])
            assert store.count() == 1
        finally:
            store.close()


def test_a_spec_file_over_another_shard_is_refused_clearly(tmp_path):
    """What the old race could leave behind: the spec says one dim, the shard another."""
    QdrantStore.create("race", path=tmp_path, dim=32, prefetch_dims=(8,)).close()
    spec_file = tmp_path / "race" / "jina_vdb.json"
    spec_file.write_text(spec_file.read_text().replace('"dim": 32', '"dim": 48'))
    with pytest.raises(SchemaMismatchError, match="is damaged.*'dense': 48.*'dense': 32"):
        QdrantStore.open("race", path=tmp_path)
