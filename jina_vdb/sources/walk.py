"""The folder walk: which files a list of paths names, in the order they are read."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .items import SourceOptions

_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", ".git", ".hg", ".svn", ".venv", "venv"})


def count_files(
    paths: Iterable[str | os.PathLike[str]], options: SourceOptions | None = None
) -> int:
    """How many files ``iter_items`` will read (the folder walk alone: for a progress total)."""
    return sum(1 for _ in walk_files(paths, options or SourceOptions()))


def walk_files(
    paths: Iterable[str | os.PathLike[str]], opts: SourceOptions
) -> Iterator[tuple[Path, Path | None]]:
    """The files ``iter_items`` reads, in its order: (file, the folder it was found in, or
    None for a file named directly); ``file_entries`` reads one."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            for path in _walk_folder(root, opts):
                yield path, root
        else:
            yield root, None  # missing files are reported by _file_items


def _walk_folder(root: Path, opts: SourceOptions) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d for d in dirs if d not in _SKIPPED_DIRS and (opts.hidden or not d.startswith("."))
        )
        for name in sorted(files):
            if not opts.hidden and name.startswith("."):
                continue
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if opts.include and not any(
                fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in opts.include
            ):
                continue
            if any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in opts.exclude):
                continue
            yield path
