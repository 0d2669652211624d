"""Checks of a resolved train or evaluate config before any work starts.

Every problem a user can cause on the command line (a batch size of 0, ``device=cuda`` on a machine without a
GPU, ``predict=[]``, a class of interest outside the class range, a name that would escape the results folder)
raises one :class:`ConfigError` naming the key, the value and the fix; the entrypoints print it and exit with
status 2 instead of failing minutes later with a traceback.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from rankseg.engine.inference import inference_settings
from rankseg.engine.runs import check_path_component

__all__ = ["ConfigError", "check_evaluate_config", "check_train_config"]


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what to set instead."""


def _component(value: Any, key: str) -> None:
    try:
        check_path_component(value, key)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(cfg: DictConfig, key: str, minimum: int, optional: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    if not _is_int(value) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{key} must be {kind}, got {value!r}; set e.g. {key}={max(minimum, 1)}")


def _number(cfg: DictConfig, key: str, minimum: float, strict: bool, optional: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ConfigError(f"{key} must be a number {bound}, got {value!r}")


def _check_device(cfg: DictConfig) -> None:
    name = str(cfg.device)
    if name == "auto" or name == "cpu":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={name!r} is not a device; use device=auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"device={name} but no CUDA GPU is visible to torch (torch.cuda.is_available() is False); "
                "use device=cpu, or device=auto to take a GPU when there is one"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device={name} but only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1})")


def _check_dataset(cfg: DictConfig) -> None:
    ds = cfg.dataset
    _component(ds.name, "dataset.name")
    _int(cfg, "dataset.num_classes", 1)
    _int(cfg, "dataset.ignore_index", 0)
    _int(cfg, "dataset.num_workers", 0)
    num_classes = int(ds.num_classes)
    names = ds.get("class_names")
    if names is not None and len(names) != num_classes:
        raise ConfigError(
            f"dataset.class_names has {len(names)} names but dataset.num_classes is {num_classes}; make them agree"
        )
    coi = ds.get("classes_of_interest")
    if coi is not None and coi != "all":
        values = list(coi)
        bad = [v for v in values if not _is_int(v) or not 0 <= v < num_classes]
        if not values or bad:
            raise ConfigError(
                f"dataset.classes_of_interest={values} must list class indices in [0, {num_classes}) "
                f"(bad: {bad or 'empty list'}); e.g. dataset.classes_of_interest=[1,2] or 'all'"
            )


def _check_run_keys(cfg: DictConfig) -> None:
    """Keys of the run identity (``configs/training.yaml``) and the names that become folders."""
    _component(cfg.model.name, "model.name")
    _component(cfg.loss.name, "loss.name")
    _int(cfg, "seed", 0)
    _int(cfg, "epochs", 1)
    _int(cfg, "batch_size", 1)
    _number(cfg, "optimizer.lr", 0.0, strict=True)
    _number(cfg, "optimizer.momentum", 0.0, strict=False)
    _number(cfg, "optimizer.weight_decay", 0.0, strict=False)
    _number(cfg, "optimizer.backbone_lr_mult", 0.0, strict=False)
    _number(cfg, "optimizer.poly_power", 0.0, strict=False)
    # Keys of the RankSEG-RMA recipe; absent in the JMLR protocol (configs/experiment/rma_*.yaml set them).
    name = OmegaConf.select(cfg, "optimizer.name")
    if name is not None and str(name).lower() not in ("sgd", "adamw"):
        raise ConfigError(f"optimizer.name must be sgd or adamw, got {name!r}")
    _int(cfg, "optimizer.total_iters", 1, optional=True)
    _number(cfg, "optimizer.warmup_ratio", 0.0, strict=False, optional=True)
    _number(cfg, "optimizer.warmup_start_factor", 0.0, strict=False, optional=True)


def _check_common(cfg: DictConfig) -> None:
    _check_dataset(cfg)
    _check_run_keys(cfg)
    _check_device(cfg)
    holdout = cfg.get("calibration_holdout", 0.0)
    if holdout is not None and not (
        isinstance(holdout, int | float) and not isinstance(holdout, bool) and 0 <= holdout < 1
    ):
        raise ConfigError(f"calibration_holdout must be a number in [0, 1), got {holdout!r}")


def check_train_config(cfg: DictConfig) -> None:
    """Validate a composed ``train`` config (see the module docstring).

    Raises:
        ConfigError: the first problem found.
    """
    _check_common(cfg)
    _int(cfg, "max_iters", 1, optional=True)
    _int(cfg, "save_every_iters", 1, optional=True)
    _int(cfg, "log_every", 1)
    _number(cfg, "max_minutes", 0.0, strict=True, optional=True)
    _number(cfg, "save_every_minutes", 0.0, strict=True, optional=True)
    resume = cfg.get("resume")
    if not isinstance(resume, bool) and not (isinstance(resume, str) and resume.strip()):
        raise ConfigError(f"resume must be true, false or the path of a run, got {resume!r}")


def check_evaluate_config(cfg: DictConfig) -> None:
    """Validate a composed ``evaluate`` config (see the module docstring).

    Raises:
        ConfigError: the first problem found.
    """
    _check_common(cfg)
    _int(cfg, "eval_batch_size", 1)
    predict = cfg.get("predict")
    if not predict:
        raise ConfigError(
            "predict is empty: name at least one rule, e.g. predict=[threshold,argmax,rankdice] "
            "(the rules are the files in configs/predict/)"
        )
    for name in predict:
        _component(name, f"predict.{name}")
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and not (isinstance(ckpt, str) and ckpt.strip()):
        raise ConfigError(f"ckpt_path must be a path or null, got {ckpt!r}")
    fmt = cfg.get("ckpt_format")
    if fmt not in (None, "auto", "project", "reference"):
        raise ConfigError(f"ckpt_format must be auto, project or reference, got {fmt!r}")
    _check_calibration(cfg)
    try:  # inference.mode/window/stride/flip (rankseg/engine/inference.py)
        inference_settings(cfg.get("inference"))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_calibration(cfg: DictConfig) -> None:
    """``calibrate`` and ``calibration.*`` (rankseg/engine/calibration.py); absent keys take their defaults."""
    mode = cfg.get("calibrate")
    if mode not in (None, False, "none", "temperature"):
        raise ConfigError(f"calibrate must be none or temperature, got {mode!r}")
    if cfg.get("calibration") is None:
        return
    _int(cfg, "calibration.num_bins", 1, optional=True)
    _int(cfg, "calibration.seed", 0, optional=True)
    _int(cfg, "calibration.max_pixels", 1, optional=True)
    _number(cfg, "calibration.fraction", 0.0, strict=True, optional=True)
    fraction = OmegaConf.select(cfg, "calibration.fraction")
    if fraction is not None and fraction > 1:
        raise ConfigError(f"calibration.fraction must be in (0, 1] (a share of the train images), got {fraction!r}")
