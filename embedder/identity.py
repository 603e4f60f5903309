"""Which checkpoint made a vector: a name, a revision and a fingerprint of config and weights.

A collection records the identity of the model that filled it, so a query embedded by
another model (the tiny random one, another fine-tune, a new revision) is refused instead
of returning meaningless neighbours. The fingerprint samples the weight files rather than
hashing them whole: 3 MiB per file (start, middle, end; the start holds the safetensors
header with every tensor's name, dtype, shape and offset) plus every config file, so it costs
milliseconds even for the 7.5 GB checkpoint while any re-training, re-quantisation or
different LoRA adapter changes it. It does not depend on the device or dtype a model is
loaded with: the same files give the same fingerprint everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

#: Bytes read at the start, middle and end of each weight file.
SAMPLE_BYTES = 1 << 20
#: Files that decide what a checkpoint computes (the tokenizer included: it maps text to ids).
_CONFIG_NAMES = frozenset(
    {"config.json", "adapter_config.json", "preprocessor_config.json", "tokenizer.json"}
)


@dataclass(frozen=True)
class ModelIdentity:
    """What a collection records about the model that made its vectors.

    Attributes:
        name: the hub id or folder the model was loaded from (informational).
        revision: the hub snapshot (commit) when loaded from the hub cache, else "".
        fingerprint: 16 hex digits over the config and weight files; two models are the
            same model when their fingerprints are equal.
    """

    name: str
    revision: str
    fingerprint: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def checkpoint_fingerprint(folder: Path) -> str:
    """Fingerprint of a checkpoint folder (see the module docstring)."""
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and (p.suffix == ".safetensors" or p.name in _CONFIG_NAMES)
    )
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        with path.open("rb") as f:
            if path.suffix != ".safetensors" or size <= 3 * SAMPLE_BYTES:
                digest.update(f.read())
                continue
            for offset in (0, size // 2, size - SAMPLE_BYTES):
                f.seek(offset)
                digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def checkpoint_identity(name: str, folder: Path) -> ModelIdentity:
    """The identity of the checkpoint in ``folder``, loaded as ``name``."""
    # Hub cache layout: .../models--org--name/snapshots/<commit>/
    revision = folder.name if folder.parent.name == "snapshots" else ""
    return ModelIdentity(name=name, revision=revision, fingerprint=checkpoint_fingerprint(folder))
