"""What a Ray job needs around Ray itself: importing it, bounded retries, readable failures.

``require_ray`` imports it or names the ``[ray]`` extra; ``retries_named`` passes bounded
retry counts to Ray Data without its deprecation warning; ``job_errors`` turns a failed
job into one IngestError naming its first cause.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from types import ModuleType

from .._deps import require
from ..errors import IngestError


def require_ray() -> ModuleType:
    """``ray`` with Ray Data, or MissingDependencyError naming the ``[ray]`` extra."""
    require("ray.data", "for ingest on Ray (--ray)")
    return require("ray", "for ingest on Ray (--ray)")


@contextlib.contextmanager
def retries_named() -> Iterator[None]:
    """Pass ``max_retries`` / ``max_restarts`` / ``max_task_retries`` without Ray's warning.

    Ray Data 2.60 deprecates passing them as remote args but has no named parameter for
    them yet, and its own default for actors is to restart and retry forever: an item that
    kills its worker every time would never end the job. Bounded retries are the point.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        yield


@contextlib.contextmanager
def job_errors(ray: ModuleType) -> Iterator[None]:
    """A failed Ray job as one IngestError naming its first cause (not Ray's wrapped traceback)."""
    try:
        yield
    except ray.exceptions.RayError as e:
        cause: BaseException = e
        while isinstance(cause, ray.exceptions.RayError) or type(cause).__name__ in (
            "UserCodeException",
        ):
            inner = getattr(cause, "cause", None) or cause.__cause__
            if inner is None or inner is cause:
                break
            cause = inner
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else ""
        raise IngestError(f"the Ray job failed: {type(cause).__name__}: {message}"[:2000]) from e
