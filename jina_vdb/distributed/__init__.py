"""Ingest past one machine: the resumable pipeline as a Ray Data job (the ``[ray]`` extra).

Importing this package does not import ray; ``ray_ingest`` does, and without the extra it
raises MissingDependencyError naming it.
"""

from __future__ import annotations

from .job import ray_ingest as ray_ingest
from .options import RayOptions as RayOptions
from .ray_support import require_ray as require_ray

__all__ = ["RayOptions", "ray_ingest", "require_ray"]
