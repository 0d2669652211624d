"""Checkpoint I/O: atomic saves, safe loads that validate what they read, and the errors a user can act on.

A checkpoint is data, possibly from elsewhere: it is read with ``torch.load(..., weights_only=True)`` (tensors and
plain containers only), its structure is checked before anything uses it, and nothing in it is ever executed or
instantiated (the network is built from the project's own configs; see :mod:`rankseg.engine.evaluate`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rankseg.experiments._io import atomic_write

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "ClassCountMismatchError",
    "check_num_classes",
    "load_checkpoint",
    "read_checkpoint_file",
    "check_same_run",
    "save_checkpoint",
    "stored_identity",
    "weights_sha256",
]

#: Keys every checkpoint written by train.py has.
REQUIRED_KEYS = ("model", "config", "iteration")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, foreign, or does not fit the requested run."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint where one was expected."""


class ClassCountMismatchError(CheckpointError, ValueError):
    """The checkpoint was trained for another number of classes than the dataset has."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Save ``state`` with ``torch.save`` to a temporary file next to ``path``, then rename it over ``path``,
    so a job killed mid-write never leaves a truncated checkpoint behind."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def _read_failure(path: Path, err: Exception) -> str:
    text = str(err)
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsupported:
        return (
            f"it holds a Python object of type {unsupported.group(1)}, and checkpoints are read as data "
            "(torch.load with weights_only=True: tensors and plain containers only), so it was refused"
        )
    if path.stat().st_size == 0:
        return "the file is empty"
    first = text.strip().splitlines()[0][:160] if text.strip() else type(err).__name__
    return f"it is truncated, corrupt or not a torch checkpoint ({type(err).__name__}: {first})"


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    hint: str | None = None,
    state: Any = None,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` and check its structure.

    Args:
        path: the ``.pt`` file.
        map_location: passed to ``torch.load``.
        hint: what the user can do about a bad file (appended to every error message); a default names
            ``resume=false``, deleting the file and ``ckpt_path=``.
        state: what the file holds, if the caller read it already (:func:`read_checkpoint_file`).

    Raises:
        CheckpointNotFoundError: ``path`` is not a file.
        CheckpointError: the file is empty, corrupt, holds objects other than tensors and plain containers, or
            is not a checkpoint of this project (e.g. a bare ``state_dict``); the message names the file.
    """
    path = Path(path)
    fix = hint or (
        "Delete it, start the run over with resume=false, or point ckpt_path= at a checkpoint written by train.py"
    )
    if state is None:
        state = read_checkpoint_file(path, map_location, fix)
    problem = _structure_problem(state)
    if problem:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py: {problem}. {fix}")
    return state


def _numpy_scalar_globals() -> list[Any]:
    """The globals a NumPy scalar pickles to, under the names NumPy 1.x and 2.x write (numbers, never code)."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed: list[Any] = [scalar, np.dtype]
    allowed += [(scalar, f"numpy.{core}.multiarray.scalar") for core in ("core", "_core")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, f"{n}DType") for n in ("Float64", "Float32", "Float16", "Int64", "Int32", "Bool")]
    return allowed


def read_checkpoint_file(path: str | os.PathLike[str], map_location: str | torch.device, fix: str) -> Any:
    """What a checkpoint file holds, read as data: ``torch.load(..., weights_only=True)`` (tensors and plain
    containers) plus NumPy scalars, which checkpoints of other trainers hold (e.g. a rounded NumPy loss).

    Raises:
        CheckpointNotFoundError: ``path`` is not a file.
        CheckpointError: the file is empty, corrupt, or holds other objects; the message names the file and
            ends with ``fix``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any parse failure of an untrusted file is reported as such
        raise CheckpointError(f"cannot read checkpoint {path}: {_read_failure(path, err)}. {fix}") from None


def _structure_problem(state: Any) -> str | None:
    """Why ``state`` is not one of our checkpoints, or None."""
    if not isinstance(state, Mapping):
        return f"it holds a {type(state).__name__}, not a dict"
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return "it is a bare state_dict (parameter names and tensors, no training config)"
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        return f"it lacks {missing} (keys found: {sorted(map(str, state))[:8]})"
    weights = state["model"]
    if not isinstance(weights, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        return "its 'model' entry is not a mapping of parameter names to tensors"
    config = state["config"]
    sections = ("dataset", "model", "loss")
    if not isinstance(config, Mapping) or not all(isinstance(config.get(k), Mapping) for k in sections):
        return "its 'config' entry lacks the dataset, model and loss sections"
    if not isinstance(state["iteration"], int):
        return "its 'iteration' entry is not an integer"
    return None


def weights_sha256(weights: Mapping[str, torch.Tensor]) -> str:
    """Content hash of a state dict: names, dtypes, shapes and bytes of every tensor, in name order.

    The same network hashes alike whatever else its checkpoint holds (optimizer state, save reason, commit),
    so results keyed by it survive a re-save but not a retraining that changed a single weight.
    """
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def check_num_classes(checkpoint_classes: int, dataset_classes: int, path: str | os.PathLike[str], name: str) -> None:
    """Refuse a checkpoint whose class count differs from the dataset's, naming both numbers."""
    if int(checkpoint_classes) != int(dataset_classes):
        raise ClassCountMismatchError(
            f"checkpoint {path} was trained for {checkpoint_classes} classes, but dataset {name!r} has "
            f"{dataset_classes}; pick the matching dataset= or ckpt_path="
        )


def stored_identity(state: Mapping[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The run identity (:func:`rankseg.engine.runs.run_identity`) of a loaded checkpoint's stored config.

    Raises:
        CheckpointError: the stored config lacks a key of the identity (a foreign or pre-release checkpoint).
    """
    from rankseg.engine.runs import run_identity

    try:
        return run_identity(state["config"])
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(
            f"{path} records no complete training config (missing {err}), so it cannot be matched to a run of "
            "this project. Retrain with train.py, or delete the file"
        ) from None


def check_same_run(
    state: Mapping[str, Any], path: str | os.PathLike[str], identity: Mapping[str, Any], problem: str, fix: str
) -> None:
    """Refuse a loaded checkpoint whose stored run identity differs from ``identity``.

    Raises:
        CheckpointError: ``"{problem} (key=stored there, requested here; ...). {fix}"``.
    """
    from rankseg.engine.runs import config_diff, describe_diff

    diff = config_diff(stored_identity(state, path), identity)
    if diff:
        raise CheckpointError(f"{problem} ({describe_diff(diff)}). {fix}")
