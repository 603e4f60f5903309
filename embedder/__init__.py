"""jina-embeddings-v4 on transformers' Qwen2.5-VL: dense, Matryoshka and multi-vector embeddings.

Heavy names (torch, transformers) load lazily on first attribute access (PEP 562), so
``import embedder`` stays cheap: the errors and the closed option sets (``Task``,
``PromptName``, ``MultivectorDType``, ``Packing``, ``CompileOptions``, from
:mod:`embedder.options`) work without torch.
Without the ``[model]`` extra, the first heavy name raises MissingDependencyError.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError as CheckpointError
from .errors import EmbedderError as EmbedderError
from .errors import ImageInputError as ImageInputError
from .errors import InputError as InputError
from .errors import MissingDependencyError as MissingDependencyError
from .errors import OptionError as OptionError
from .errors import TextInputError as TextInputError
from .options import CompileBackend as CompileBackend
from .options import CompileOptions as CompileOptions
from .options import MultivectorDType as MultivectorDType
from .options import Packing as Packing
from .options import PromptName as PromptName
from .options import Task as Task

if TYPE_CHECKING:
    from .description import ImageFit as ImageFit
    from .description import ModelDescription as ModelDescription
    from .description import describe_checkpoint as describe_checkpoint
    from .encoder import JinaV4Embedder as JinaV4Embedder
    from .outputs import EmbeddingBatch as EmbeddingBatch
    from .testing import make_tiny_checkpoint as make_tiny_checkpoint

_LAZY = {
    "JinaV4Embedder": ".encoder",
    "ModelDescription": ".description",
    "ImageFit": ".description",
    "describe_checkpoint": ".description",
    "EmbeddingBatch": ".outputs",
    "make_tiny_checkpoint": ".testing",
}

# import name -> pip name of what the [model] extra installs
_MODEL_PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "safetensors": "safetensors",
    "tokenizers": "tokenizers",
    "huggingface_hub": "huggingface-hub",
    "PIL": "pillow",
    "tqdm": "tqdm",
}

__all__ = [
    "CheckpointError",
    "CompileBackend",
    "CompileOptions",
    "EmbedderError",
    "EmbeddingBatch",
    "ImageFit",
    "ImageInputError",
    "InputError",
    "JinaV4Embedder",
    "MissingDependencyError",
    "ModelDescription",
    "MultivectorDType",
    "OptionError",
    "Packing",
    "PromptName",
    "Task",
    "TextInputError",
    "describe_checkpoint",
    "make_tiny_checkpoint",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module, __name__), name)
    except ModuleNotFoundError as e:
        root = (e.name or "").split(".")[0]
        if root not in _MODEL_PACKAGES:
            raise
        raise MissingDependencyError(
            f"{_MODEL_PACKAGES[root]} is required for embedder.{name}: "
            "pip install 'jina-vdb[model]'"
        ) from e
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
