"""Run files: atomic writes with the user's umask, an OS lock for read-modify-write, the git commit, JSON without
NaN."""

from __future__ import annotations

import fcntl
import json
import math
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rankseg.experiments._io import atomic_write, atomic_write_text

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "file_lock", "git_commit", "nan_to_none"]


def nan_to_none(value: Any) -> Any:
    """Recursively replace float NaN/inf by None (JSON ``null``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON (NaN -> null) atomically."""
    return atomic_write_text(path, json.dumps(nan_to_none(data), indent=2, allow_nan=False) + "\n")


@contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive OS lock (``flock``) on the hidden file ``.{name}.lock`` next to ``path``.

    Files replaced atomically cannot be locked themselves (the lock would stay on the replaced inode), so
    every read-modify-write of ``path`` takes this sibling lock instead; other processes wait for it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def git_commit() -> str | None:
    """The commit of the repository holding this file (``-dirty`` with local changes to tracked files outside
    ``results/``, i.e. to the code and configs that produce numbers), or None.

    Changes under ``results/`` do not count: the make targets that rebuild the shipped results write there while
    they run, and their own output says nothing about the code that produced it."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha or None
