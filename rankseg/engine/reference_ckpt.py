"""Checkpoints of the JMLR authors' trainer: recognise them, read them as data, and file their results.

The published networks behind Dai & Li (JMLR 2023) were trained by the authors' fork of the
``pytorch-segmentation`` trainer. Each ``checkpoint-epoch{N}.pth`` holds a dict::

    {"arch": "DataParallel", "epoch": N, "state_dict": {"module.<name>": tensor, ...},
     "optimizer": {...}, "monitor_best": float or numpy float, "config": <the run's config.json>}

and the run folder holds the same config as ``config.json``. This module

* reads such a file with :func:`rankseg.engine.checkpoint.read_checkpoint_file` (``weights_only=True``), allowing
  only what those files hold besides tensors and plain containers: NumPy scalars (``monitor_best`` is a rounded
  NumPy float when the trainer monitored the validation loss). Anything else is refused;
* checks the structure and the embedded config against ``config.json`` beside the file (when present);
* maps the config's architecture, loader and loss onto this project's configs
  (``model=ref_pspnet|ref_deeplabv3plus|ref_fcn8``, ``dataset=voc2012|cityscapes|kvasir_seg``,
  ``loss=ce|focal|bce|soft_dice|b_soft_dice|lovasz_softmax``), refusing a command line that names others;
* derives the run identity from that config (plus the checkpoint's epoch), so results go to
  ``results/runs/{dataset}/{model}/{loss}/reference-epoch{N}-{hash8}/``;
* loads the weights strictly: the ``module.`` prefix of ``DataParallel`` is removed, every key must be used
  and every shape must match, and a mismatch names the keys.

Nothing in the file is instantiated or executed: the network is built from ``cfg.model``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from rankseg.engine.checkpoint import CheckpointError, check_num_classes
from rankseg.models.reference import (
    REFERENCE_ARCHS,
    ReferenceStateDictError,
    load_reference_state_dict,
    reference_model_config,
)

__all__ = [
    "REFERENCE_ARCHS",
    "REFERENCE_DATASETS",
    "REFERENCE_LOSSES",
    "ReferenceRun",
    "is_reference_checkpoint",
    "load_reference_weights",
    "read_reference_checkpoint",
    "reference_identity",
    "reference_names",
    "reference_overrides",
]

#: ``train_loader.type`` -> (our dataset config, its number of classes, overrides that select the same train split).
REFERENCE_DATASETS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "VOC": ("voc2012", 21, ()),
    "VOCAugmented": ("voc2012", 21, ("dataset.train_split=train_aug",)),
    "CityScapes": ("cityscapes", 19, ()),
    "kvasirSEG": ("kvasir_seg", 2, ()),
}
#: ``loss`` -> our loss config. ``BCEDiceLoss`` (named by the published VOC config, absent from the code) is the
#: sigmoid global soft Dice ``BDiceLoss`` (paper_protocol.md §4).
REFERENCE_LOSSES = {
    "CrossEntropyLoss2d": "ce",
    "FocalLoss": "focal",
    "BCEWithLogitsLoss2d": "bce",
    "DiceLoss": "soft_dice",
    "BDiceLoss": "b_soft_dice",
    "BCEDiceLoss": "b_soft_dice",
    "LovaszSoftmax": "lovasz_softmax",
}
#: Loader arguments that do not change the trained network (paths, workers).
_LOADER_ARGS_OUTSIDE_IDENTITY = ("data_dir", "num_workers")
_CONFIG_JSON = "config.json"
#: Keys of the embedded config that must agree with ``config.json`` beside the file.
_COMPARED = ("arch", "train_loader", "loss", "ignore_index", "optimizer", "trainer")


def is_reference_checkpoint(state: Any) -> bool:
    """Whether a loaded file looks like the reference trainer's (``state_dict`` + ``config`` with ``arch``)."""
    return (
        isinstance(state, Mapping)
        and "state_dict" in state
        and "model" not in state
        and (isinstance(state.get("config"), Mapping) or "epoch" in state)
    )


@dataclass(frozen=True)
class ReferenceRun:
    """A reference checkpoint, read and checked: its config, epoch, weights and our names for it."""

    path: Path
    config: dict[str, Any]
    epoch: int
    weights: dict[str, torch.Tensor]
    dataset: str
    num_classes: int
    model: str
    model_overrides: dict[str, Any]
    loss: str
    dataset_overrides: tuple[str, ...]

    def overrides(self) -> list[str]:
        """The command-line overrides that select this network's configs."""
        return reference_overrides(self.path, self.config, "")


def _fail(path: Path, problem: str, fix: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a usable checkpoint of the reference trainer: {problem}. {fix}")


def _config_beside(path: Path) -> dict[str, Any] | None:
    """``config.json`` next to the checkpoint, parsed as JSON (data only), or None if there is none."""
    beside = path.parent / _CONFIG_JSON
    if not beside.is_file():
        return None
    try:
        data = json.loads(beside.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{beside} (the config of checkpoint {path}) is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{beside} (the config of checkpoint {path}) holds a {type(data).__name__}, not a dict")
    return data


def _choice(path: Path, table: Mapping[str, Any], value: Any, what: str, fix: str) -> Any:
    if not isinstance(value, str) or value not in table:
        known = ", ".join(sorted(table))
        raise _fail(path, f"its config names {what} {value!r}; this project knows {known}", fix)
    return table[value]


def reference_names(
    path: Path, config: Mapping[str, Any], fix: str
) -> tuple[str, int, str, dict[str, Any], str, tuple[str, ...]]:
    """Our (dataset, its class count, model, model keys, loss, extra dataset overrides) for a reference
    ``config.json``; the model keys are what :func:`rankseg.models.reference.reference_model_config` says the
    architecture needs (e.g. PSPNet's ``encoder_name`` from ``arch.args.backbone``).

    Raises:
        CheckpointError: the config lacks ``arch``, ``train_loader`` or ``loss``, or names one this project
            cannot rebuild (the message lists the known ones).
    """
    for key, kind in (("arch", Mapping), ("train_loader", Mapping), ("loss", str)):
        if not isinstance(config.get(key), kind):
            raise _fail(path, f"its config lacks {key!r} (keys found: {sorted(map(str, config))[:10]})", fix)
    _choice(path, REFERENCE_ARCHS, config["arch"].get("type"), "the architecture", fix)
    try:
        model, model_keys = reference_model_config(config["arch"])
    except ValueError as err:
        raise _fail(path, str(err), fix) from None
    dataset, num_classes, extra = _choice(
        path, REFERENCE_DATASETS, config["train_loader"].get("type"), "the dataset loader", fix
    )
    loss = _choice(path, REFERENCE_LOSSES, config["loss"], "the loss", fix)
    return dataset, num_classes, model, model_keys, loss, extra


def _model_default(model: str, key: str) -> Any:
    """The value of ``key`` in ``configs/model/{model}.yaml`` (None if the file or key is absent)."""
    path = Path(__file__).resolve().parents[2] / "configs" / "model" / f"{model}.yaml"
    return OmegaConf.load(path).get(key) if path.is_file() else None


def reference_overrides(path: Path, config: Mapping[str, Any], fix: str) -> list[str]:
    """The evaluate.py overrides that select the configs of a reference ``config.json`` (see
    :func:`reference_names`), e.g. ``["dataset=voc2012", "model=ref_pspnet", "loss=ce"]``; model keys appear
    only where they differ from the model config's defaults."""
    dataset, _, model, model_keys, loss, extra = reference_names(path, config, fix)
    out = [f"dataset={dataset}", f"model={model}", f"loss={loss}", *extra]
    out += [f"model.{k}={v}" for k, v in model_keys.items() if _model_default(model, k) != v]
    return out


def read_reference_checkpoint(path: str | Path, state: Mapping[str, Any], fix: str) -> ReferenceRun:
    """Check a loaded reference checkpoint (``state``, read by ``read_checkpoint_file``) and map it to our names.

    Args:
        path: the ``.pth`` file (``config.json`` is looked for beside it).
        state: what the file holds.
        fix: what the user can do, appended to every message.

    Raises:
        CheckpointError: the structure, the config or ``config.json`` is malformed, the two configs disagree,
            or the architecture, loader or loss is not one this project can rebuild; the message names it.
    """
    path = Path(path)
    weights = state.get("state_dict")
    if not isinstance(weights, Mapping) or not weights:
        raise _fail(path, "its 'state_dict' entry is not a mapping of parameter names to tensors", fix)
    bad = [str(k) for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise _fail(path, f"its 'state_dict' holds entries that are not named tensors ({bad[:4]})", fix)
    embedded, beside = state.get("config"), _config_beside(path)
    if embedded is not None and not isinstance(embedded, Mapping):
        raise _fail(path, f"its 'config' entry is a {type(embedded).__name__}, not a dict", fix)
    if embedded is None and beside is None:
        raise _fail(path, f"it holds no 'config' and there is no {_CONFIG_JSON} beside it", fix)
    config = dict(embedded if embedded is not None else beside)  # type: ignore[arg-type]
    if embedded is not None and beside is not None:
        differ = [k for k in _COMPARED if embedded.get(k) != beside.get(k)]
        if differ:
            raise _fail(
                path,
                f"the config stored in it and {path.parent / _CONFIG_JSON} disagree on {differ}, so it is unclear "
                "which run it is",
                "Put the checkpoint in its own run folder (with its own config.json) or remove the stray config.json",
            )
    dataset, num_classes, model, model_keys, loss, extra = reference_names(path, config, fix)
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise _fail(path, f"its 'epoch' entry is {epoch!r}, not a non-negative integer", fix)
    return ReferenceRun(
        path=path,
        config=config,
        epoch=epoch,
        weights=dict(weights),
        dataset=dataset,
        num_classes=num_classes,
        model=model,
        model_overrides=model_keys,
        loss=loss,
        dataset_overrides=extra,
    )


def check_reference_fits(ref: ReferenceRun, cfg: DictConfig) -> None:
    """Refuse a command line whose dataset, model or loss is not the one the reference config names.

    Raises:
        CheckpointError: naming what the checkpoint is and the overrides that select it.
        ClassCountMismatchError: the dataset config's class count differs from the reference loader's.
    """
    chosen = {"dataset": cfg.dataset.name, "model": cfg.model.name, "loss": cfg.loss.name}
    wanted = {"dataset": ref.dataset, "model": ref.model, "loss": ref.loss}
    for override in ref.dataset_overrides:  # e.g. the SBD-augmented train list of VOCAugmented
        key, value = override.split("=", 1)
        chosen[key], wanted[key] = OmegaConf.select(cfg, key), value
    for key, value in ref.model_overrides.items():  # e.g. the backbone the reference PSPNet was built with
        chosen[f"model.{key}"], wanted[f"model.{key}"] = cfg.model.get(key), value
    differ = {k: (chosen[k], wanted[k]) for k in chosen if chosen[k] != wanted[k]}
    if differ:
        arch, loader = ref.config["arch"].get("type"), ref.config["train_loader"].get("type")
        said = "; ".join(f"{k}={b!r} there, {a!r} here" for k, (a, b) in differ.items())
        raise CheckpointError(
            f"{ref.path} is a reference {arch} trained on {loader} with {ref.config['loss']} ({said}). "
            f"Evaluate it with: python evaluate.py {' '.join(ref.overrides())} ckpt_path={ref.path}"
        )
    check_num_classes(ref.num_classes, cfg.dataset.num_classes, ref.path, cfg.dataset.name)


def reference_identity(ref: ReferenceRun, cfg: DictConfig) -> dict[str, Any]:
    """The run identity of a reference checkpoint: what its config says about the trained network.

    Holds the loader (type and arguments, without paths and workers), the architecture, the loss (ours and the
    reference's name), the epochs, the training batch, the optimizer and schedule, and the checkpoint's epoch
    (two epochs of one run are two networks). The reference trainer records no seed (``seed: null``).
    """
    config = ref.config
    loader = config["train_loader"]
    loader_args = {k: v for k, v in dict(loader.get("args") or {}).items() if k not in _LOADER_ARGS_OUTSIDE_IDENTITY}
    loss_node = OmegaConf.to_container(cfg.loss, resolve=True)
    assert isinstance(loss_node, dict)
    optimizer = {"optimizer": config.get("optimizer"), "lr_scheduler": config.get("lr_scheduler")}
    return {
        "format": "reference",
        "dataset": {
            "name": ref.dataset,
            "num_classes": ref.num_classes,
            "ignore_index": config.get("ignore_index", 255),
            "train": {"loader": loader.get("type"), **loader_args},
        },
        "model": {"name": ref.model, "arch": dict(config["arch"])},
        "loss": {
            "name": ref.loss,
            "reference": config["loss"],
            "activation": loss_node.get("activation", "softmax"),
            "proper": bool(loss_node.get("proper", False)),
        },
        "seed": None,
        "epochs": (config.get("trainer") or {}).get("epochs"),
        "batch_size": (loader.get("args") or {}).get("batch_size"),
        "optimizer": optimizer,
        "epoch": ref.epoch,
    }


def load_reference_weights(model: torch.nn.Module, ref: ReferenceRun, fix: str) -> dict[str, torch.Tensor]:
    """Load ``ref``'s weights into ``model`` strictly (``module.`` removed, every key used, every shape equal)
    and return them.

    Raises:
        CheckpointError: naming the missing and unexpected keys and the shape mismatches.
    """
    try:
        load_reference_state_dict(model, ref.weights)
    except ReferenceStateDictError as err:
        raise CheckpointError(f"the weights in {ref.path} do not fit model {ref.model!r}: {err}. {fix}") from None
    return model.state_dict()
