"""Run identity: which training run a config means, and where its checkpoint and results live.

A *run* is the resolved training config minus everything that cannot change the trained network:

* ``dataset``: ``name``, ``num_classes``, ``ignore_index`` and the ``train`` node (split, crop, augmentation
  switches, generation parameters) without its ``root``;
* ``model`` and ``loss``: the whole nodes;
* ``seed``, ``epochs``, ``batch_size`` (the global training batch) and ``optimizer``.

Paths, logging, progress, stopping points (``max_iters``, ``max_minutes``), evaluation settings and the numerical
environment (device, AMP, world size, SyncBatchNorm) are not part of it: a preempted run may resume on another
GPU or with another number of processes, and is still the same run (the checkpoint records that environment).

The run's name is ``{tag}-{hash8}``: the tag holds a few salient values (encoder, seed) for humans, the hash is
the first 8 hex digits of the SHA-256 of the canonical JSON of the identity. Its files::

    {paths.checkpoint_dir}/{dataset}/{model}/{loss}/{run}/last.pt        checkpoint (train.py writes)
    {paths.checkpoint_dir}/{dataset}/{model}/{loss}/{run}/run.json       the identity, for lookups
    {paths.results_dir}/runs/{dataset}/{model}/{loss}/{run}/metrics.json scores (evaluate.py writes)

``train.py`` and ``evaluate.py`` compose the same identity from the same keys (``configs/training.yaml``), so
``python evaluate.py seed=1`` finds what ``python train.py seed=1`` trained.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

__all__ = [
    "CHECKPOINT_FILE",
    "RUN_FILE",
    "check_path_component",
    "config_diff",
    "describe_diff",
    "identity_digest",
    "run_identity",
    "run_key",
    "run_name",
]

CHECKPOINT_FILE = "last.pt"
RUN_FILE = "run.json"
#: Top-level training keys that belong to the run (besides the dataset, model and loss nodes).
TRAINING_KEYS = ("seed", "epochs", "batch_size", "optimizer")
_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _plain(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def run_identity(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The part of a training config that defines the network it trains (see the module docstring).

    Args:
        cfg: a composed train or evaluate config, or the resolved config stored in a checkpoint.

    Raises:
        KeyError: ``cfg`` lacks one of the keys above (e.g. a config from another project).
    """
    plain = _plain(cfg)
    dataset = plain["dataset"]
    train = {k: v for k, v in dict(dataset["train"]).items() if k != "root"}
    identity: dict[str, Any] = {
        "dataset": {
            "name": dataset["name"],
            "num_classes": dataset["num_classes"],
            "ignore_index": dataset["ignore_index"],
            "train": train,
        },
        "model": plain["model"],
        "loss": plain["loss"],
    }
    for key in TRAINING_KEYS:
        identity[key] = plain[key]
    holdout = float(plain.get("calibration_holdout") or 0.0)
    if holdout > 0:  # only when set, so that runs without a hold-out keep their names
        identity["calibration_holdout"] = holdout
    return identity


def calibration_holdout_indices(num_images: int, fraction: float, seed: int) -> list[int]:
    """The train images a run keeps out of training for temperature scaling (``calibration_holdout``).

    A seeded permutation's first ``round(fraction * N)`` images (at least 1, at most N - 1), sorted; [] for 0.
    """
    if fraction <= 0 or num_images < 2:
        return []
    k = min(num_images - 1, max(1, round(fraction * num_images)))
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(int(seed)))
    return sorted(order[:k].tolist())


def _canonical(value: Any) -> Any:
    """JSON-ready value in which ``1`` and ``1.0`` (a command-line ``lr=1``) hash alike."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    return value


def identity_digest(identity: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a run identity."""
    text = json.dumps(_canonical(identity), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(value)).strip("._") or "x"


def run_name(identity: Mapping[str, Any]) -> str:
    """``{tag}-{hash8}``, e.g. ``resnet101-seed0-1a2b3c4d`` (tag: encoder if the model has one, seed); a network
    of the reference trainer (:mod:`rankseg.engine.reference_ckpt`) is ``reference-epoch300-1a2b3c4d``."""
    if identity.get("format") == "reference":
        return f"reference-epoch{_slug(identity.get('epoch'))}-{identity_digest(identity)[:8]}"
    parts = []
    encoder = identity["model"].get("encoder_name")
    if encoder:
        parts.append(_slug(encoder))
    parts.append(f"seed{_slug(identity['seed'])}")
    return f"{'-'.join(parts)}-{identity_digest(identity)[:8]}"


def run_key(identity: Mapping[str, Any]) -> Path:
    """``{dataset}/{model}/{loss}/{run}``: the run's place below the checkpoint and results folders."""
    names = [check_path_component(identity[k]["name"], f"{k}.name") for k in ("dataset", "model", "loss")]
    return Path(*names, run_name(identity))


def check_path_component(value: Any, key: str) -> str:
    """``value`` if it can name a folder (letters, digits, ``_.+-``, not starting with a dot).

    Raises:
        ValueError: naming the key, the value and the rule.
    """
    text = str(value)
    if not isinstance(value, str) or not _COMPONENT.match(text):
        raise ValueError(
            f"{key}={text!r} names a folder of every run, so it must be letters, digits and _ . + - "
            f"(not starting with . or -, no /); set {key}= to such a name"
        )
    return text


def flatten_config(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (``optimizer.lr``); empty mappings stay leaves."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten_config(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def config_diff(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, stored value, requested value)`` for every leaf that differs (canonical comparison);
    a key missing on one side has the value ``<absent>``."""
    a, b = flatten_config(_canonical(stored)), flatten_config(_canonical(requested))
    absent = "<absent>"
    keys = sorted(set(a) | set(b))
    return [(k, a.get(k, absent), b.get(k, absent)) for k in keys if a.get(k, absent) != b.get(k, absent)]


def describe_diff(diff: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    """``key=stored there, requested here; ...`` for the first ``limit`` entries of :func:`config_diff`."""
    parts = [f"{k}={a!r} there, {b!r} here" for k, a, b in diff[:limit]]
    if len(diff) > limit:
        parts.append(f"and {len(diff) - limit} more")
    if any(k == "batch_size" for k, _, _ in diff):
        parts.append("(batch_size is the training batch; eval_batch_size sets the evaluation batch)")
    return "; ".join(parts)
