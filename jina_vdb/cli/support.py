"""What the CLI needs besides its commands: logging, models, specs, output formatting.

The embedder (torch) is imported inside functions only, so ``jina-vdb info`` and
``--help`` start without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import typer

from connectors.payload_index import normalize_indexes
from connectors.spec import STORAGE_PRESETS, CollectionSpec, MuveraParams, Quantization
from jina_vdb.payload import INDEXED_PAYLOAD

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "jinaai/jina-embeddings-v4"
TINY = "tiny"
_OUR_LOGGERS = ("connectors", "embedder", "jina_vdb")


def setup_logging(verbose: bool, store: str | None = None) -> None:
    """WARNING and up by default; --verbose: DEBUG for jina-vdb's own loggers.

    ``store``: the ``--store`` URL; for Milvus, pymilvus' own logging is silenced unless
    ``verbose`` (it logs every failed request at ERROR with a traceback through a stderr
    handler it installs at import, while the CLI prints one line per error).
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    for name in _OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose and store is not None and store.strip().startswith("milvus"):
        _silence_pymilvus()


def _silence_pymilvus() -> None:
    try:
        import pymilvus  # noqa: F401 - its import configures its loggers: override after it
    except ImportError:
        return  # opening the store says what is missing
    for name in list(logging.root.manager.loggerDict):
        if name == "pymilvus" or name.startswith("pymilvus."):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def show_progress_logs() -> None:
    """One-line progress logs (``jina_vdb.progress`` at INFO) for stderr that is not a terminal."""
    logging.getLogger("jina_vdb.progress").setLevel(logging.INFO)


@contextlib.contextmanager
def cli_errors(verbose: bool) -> Iterator[None]:
    """Turn any error into one line on stderr and exit code 1 (the traceback with --verbose)."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as e:
        if verbose:
            traceback.print_exc()
        message = " ".join(str(e).split()) or type(e).__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


def progress_safe_logging() -> contextlib.AbstractContextManager[None]:
    """Log records printed above the tqdm bar instead of through it."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()  # the root logger's console handler; ours propagate to it


@contextlib.contextmanager
def store_errors(store: str, collection: str) -> Iterator[None]:
    """Opening a collection: errors in CLI terms (flags and commands, not Python calls)."""
    from connectors.errors import CollectionNotFoundError, SchemaMismatchError

    try:
        yield
    except CollectionNotFoundError:
        raise CliError(
            f"no collection {collection!r} in {store}; create it by ingesting into it: "
            f"jina-vdb ingest PATH --store {store} --collection {collection}"
        ) from None
    except SchemaMismatchError as e:
        raise CliError(
            f"collection {collection!r} in {store} cannot be used as asked: {e}. Choose another "
            "--collection, or leave out --dim, --prefetch-dims, --no-multivector and the "
            "--tokens-/--dense-on-disk/in-memory flags to use the collection as it is"
        ) from e


class CliError(ValueError):
    """A command-line error whose message is written for the command line."""


def query_image(path: Path) -> Any:
    """``search --image PATH``: the decoded image, or an error naming the flag and the file."""
    from jina_vdb.sources.images import load_image_checked

    try:
        return load_image_checked(str(path))
    except (ValueError, OSError) as e:
        raise CliError(f"--image {path}: {e}") from e


# -- models ---------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The cache folder: $JINA_VDB_CACHE, else $XDG_CACHE_HOME/jina-vdb, else ~/.cache/jina-vdb."""
    if os.environ.get("JINA_VDB_CACHE"):
        return Path(os.environ["JINA_VDB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jina-vdb"


def tiny_checkpoint() -> Path:
    """The tiny random checkpoint, generated once into the cache (keyed by the generator's code)."""
    from embedder import testing

    key = hashlib.sha256(inspect.getsource(testing).encode()).hexdigest()[:12]
    target = cache_dir() / f"tiny-{key}"
    if (target / "model.safetensors.index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="tiny-", dir=target.parent))
    try:
        testing.make_tiny_checkpoint(scratch, seed=0)
        try:
            os.replace(scratch, target)  # atomic: concurrent runs never see half a checkpoint
        except OSError:
            if not (target / "model.safetensors.index.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("tiny checkpoint written to %s", target)
    return target


def load_encoder(
    model: str, *, device: str | None = None, dtype: str | None = None, compile: bool = False
) -> Any:
    """``--model``: "tiny", a local checkpoint folder, or a hub id (clear error when offline).

    ``compile``: ``--compile``, the compiled decoder with its default options.
    """
    from embedder import JinaV4Embedder

    kwargs: dict[str, Any] = {"device": device, "dtype": dtype, "compile": compile}
    return _from_checkpoint(lambda where: JinaV4Embedder.from_pretrained(where, **kwargs), model)


def describe_model(model: str) -> Any:
    """``--model`` described without its weights (``embedder.describe_checkpoint``): the
    tokenizer, dims, identity and sizes of a model that other processes load."""
    from embedder import describe_checkpoint

    return _from_checkpoint(describe_checkpoint, model)


def _from_checkpoint(build: Callable[[str | Path], Any], model: str) -> Any:
    if model == TINY:
        return build(tiny_checkpoint())
    local = Path(model).expanduser().is_dir()
    try:
        return build(model)
    except Exception as e:
        if local or not _looks_offline(e):
            raise
        raise RuntimeError(
            f"cannot download {model!r} from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0]}). Offline? Use --model tiny (a tiny random model, runs "
            "anywhere) or --model PATH (a local copy of the checkpoint)"
        ) from e


def model_location(model: str) -> str:
    """``--model`` as another process loads it: "tiny" is the generated checkpoint's folder."""
    return str(tiny_checkpoint()) if model == TINY else model


def _looks_offline(error: BaseException) -> bool:
    names = {t.__name__ for t in type(error).__mro__}
    markers = {
        "LocalEntryNotFoundError",
        "ConnectionError",
        "ConnectError",
        "OfflineModeIsEnabled",
        "HfHubHTTPError",
        "TimeoutException",
        "RepositoryNotFoundError",
        "GatedRepoError",
    }
    return bool(names & markers) or "connect" in str(error).lower()


def model_dims(encoder: Any) -> tuple[int, ...]:
    return tuple(sorted(int(d) for d in encoder.matryoshka_dims))


@dataclass(frozen=True)
class TokenStorage:
    """``ingest``'s pooling / quantization options for a new collection (None: not given)."""

    token_pooling: int | None = None
    token_quantization: Quantization | None = None
    dense_quantization: Quantization | None = None
    #: A ``connectors.spec.STORAGE_PRESETS`` name; the options above override its fields.
    preset: str | None = None

    def given(self) -> bool:
        return any(v is not None for v in astuple(self))

    def check(self, multivector: bool) -> None:
        """Refuse token options without token vectors (before the model loads)."""
        if not multivector and (self.token_pooling or self.token_quantization):
            raise ValueError(
                "--token-pooling and --token-quantization apply to token vectors: they "
                "cannot go with --no-multivector"
            )
        if not multivector and self.preset:
            raise ValueError(
                f"--storage {self.preset} stores token vectors compactly: it cannot go with "
                "--no-multivector"
            )
        self.spec_fields()  # conflicting options fail before the model loads

    def spec_fields(self) -> dict[str, Any]:
        none = Quantization.NONE
        preset = dict(STORAGE_PRESETS[self.preset]) if self.preset else {}
        if self.token_quantization is not None and preset.get("multivector_dtype") == "uint8":
            raise ValueError(
                f"--token-quantization needs float token vectors; --storage {self.preset} "
                "stores them as uint8 (use one or the other)"
            )
        return {
            **preset,
            "token_pooling": self.token_pooling or preset.get("token_pooling"),
            "multivector_quantization": self.token_quantization or none,
            "quantization": self.dense_quantization or preset.get("quantization", none),
        }


def build_spec(
    encoder: Any,
    *,
    dim: int | None,
    prefetch_dims: str | None,
    multivector: bool,
    placement: tuple[bool | None, bool | None] = (None, None),
    muvera: MuveraParams | None = None,
    storage: TokenStorage = TokenStorage(),
) -> tuple[CollectionSpec, bool]:
    """The spec for ``ingest`` (defaults follow the model), and whether any option was given.

    ``placement``: (tokens on disk, dense on disk) from the flags; None leaves a new
    collection to the backend's default and an existing one as it is. ``muvera``: the
    MUVERA encoding to store (``parse_muvera``), None for none. ``storage``: token pooling
    and quantization (any of them given makes the spec explicit, like the other options).
    """
    dims = model_dims(encoder)
    full = dims[-1]
    explicit = (
        dim is not None
        or prefetch_dims is not None
        or not multivector
        or any(p is not None for p in placement)
        or muvera is not None
        or storage.given()
    )
    if muvera is not None and not multivector:
        raise ValueError("--muvera encodes the token vectors: it cannot go with --no-multivector")
    dim = full if dim is None else dim
    if dim > full:
        raise ValueError(
            f"--dim {dim} is larger than the model's dense vector ({full}); valid: {list(dims)}"
        )
    if dim not in dims:
        logger.warning("--dim %d is not one of the model's Matryoshka dims %s", dim, list(dims))
    prefetch = (
        parse_dims(prefetch_dims)
        if prefetch_dims is not None
        else tuple(d for d in dims[:1] if d < dim)
    )
    tokens_on_disk, dense_on_disk = placement
    spec = CollectionSpec(
        dim=dim,
        prefetch_dims=prefetch,
        multivector=multivector,
        multivector_on_disk=tokens_on_disk,
        dense_on_disk=dense_on_disk,
        muvera=muvera,
        **storage.spec_fields(),
        payload_indexes=normalize_indexes(INDEXED_PAYLOAD),
    )
    return spec, explicit


def parse_muvera(enabled: bool, params: str | None) -> MuveraParams | None:
    """``--muvera`` / ``--muvera-params k_sim=4,dim_proj=16,r_reps=10,seed=1`` (which implies
    ``--muvera``; unset keys keep their defaults) as the spec's MuveraParams, or None."""
    if params is None:
        return MuveraParams() if enabled else None
    fields: dict[str, Any] = {}
    for part in params.split(","):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            fields[key.strip()] = int(value)
        except ValueError:
            valid = ", ".join(MuveraParams.__dataclass_fields__)
            raise ValueError(
                f"--muvera-params takes comma-separated key=int pairs ({valid}), got {part!r}"
            ) from None
    try:
        return MuveraParams.from_value(fields)
    except ValueError as e:
        raise ValueError(f"--muvera-params {params!r}: {e}") from None


def parse_dims(text: str) -> tuple[int, ...]:
    """``--prefetch-dims``: "128", "128,256", or "none" / "" for no prefetch vector."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"--prefetch-dims must be comma-separated ints like 128,256 or 'none', got {text!r}"
        ) from None


def source_path(path: Path) -> str:
    """A path as sources name it in payloads (absolute, symlinks resolved, posix)."""
    try:
        return path.resolve().as_posix()
    except (OSError, RuntimeError):  # a symlink loop
        return Path(os.path.abspath(path)).as_posix()


def parse_meta(items: Sequence[str]) -> dict[str, Any]:
    """``--meta key=value`` (repeatable); ints and true/false are typed."""
    meta: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--meta must look like key=value, got {item!r}")
        v: Any = value
        if value.lower() in ("true", "false"):
            v = value.lower() == "true"
        elif value.lstrip("-").isdigit():
            v = int(value)
        meta[key.strip()] = v
    return meta


def disk_bytes(backend: str, location: str, collection: str) -> dict[str, Any]:
    """Bytes on disk of an embedded store: the collection's folder (qdrant-edge) or the
    whole Milvus Lite database (all its collections). Empty for servers."""
    path = Path(location) / collection if backend == "qdrant" else Path(location)
    if not path.exists():
        return {}
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    # Allocated blocks, not st_size: qdrant-edge preallocates sparse files (~230 MB apparent).
    total = sum(
        getattr(st, "st_blocks", st.st_size // 512) * 512 for st in (p.stat() for p in files)
    )
    what = "collection folder" if backend == "qdrant" else "database file (all collections)"
    return {"disk_bytes": total, "disk": f"{total / 2**20:.1f} MiB ({what})"}


# -- output ---------------------------------------------------------------------------------
def print_mapping(data: dict[str, Any], *, indent: int = 0) -> None:
    """A nested dict as aligned ``key: value`` lines."""
    width = max((len(str(k)) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, dict) and value:
            typer.echo(" " * indent + f"{key}:")
            print_mapping(value, indent=indent + 2)
        else:
            typer.echo(" " * indent + f"{str(key) + ':':<{width + 1}} {value}")


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
