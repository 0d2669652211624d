"""Checkpoint I/O: atomic saves, safe (``weights_only``) loads, and the errors a user can act on."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing or does not fit the requested run."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint where one was expected."""


class ClassCountMismatchError(CheckpointError, ValueError):
    """The checkpoint was trained for another number of classes than the dataset has."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Save ``state`` with ``torch.save`` to a temporary file next to ``path``, then rename it over ``path``,
    so a job killed mid-write never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain containers only).

    Raises:
        CheckpointNotFoundError: if ``path`` is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def check_num_classes(
    checkpoint_classes: int, dataset_classes: int, path: str | os.PathLike[str], name: str
) -> None:
    """Refuse a checkpoint whose class count differs from the dataset's, naming both numbers."""
    if int(checkpoint_classes) != int(dataset_classes):
        raise ClassCountMismatchError(
            f"checkpoint {path} was trained for {checkpoint_classes} classes, but dataset {name!r} has "
            f"{dataset_classes}; pick the matching dataset= or ckpt_path="
        )


def check_same_model(saved: dict[str, Any], current: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse to resume a checkpoint whose model config differs (other than ``encoder_weights``, which only
    matters at initialisation), naming the differing keys."""
    keys = (set(saved) | set(current)) - {"encoder_weights"}
    diff = sorted(k for k in keys if saved.get(k) != current.get(k))
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff)
        raise CheckpointError(
            f"cannot resume {path}: it was trained with another model config ({changes}). Use "
            "resume=false to start over, or another paths.checkpoint_dir"
        )
