"""Build experiment components from their Hydra config nodes (``_target_`` instantiation, no registries).

Config nodes may carry metadata next to the constructor arguments (``name``, ``backbone_prefixes``,
``proper``, ``activation``); :func:`instantiate_component` drops those the target does not accept.
"""

from __future__ import annotations

import functools
import inspect
import os
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from rankseg.models.aux import attach_aux_head
from rankseg.models.weights import check_pretrained_weights
from rankseg.predict import PredictionRule

META_KEYS = ("name", "backbone_prefixes", "proper", "activation", "main_weight", "aux_weight")


def _as_dict(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def instantiate_component(cfg: DictConfig | Mapping[str, Any], **overrides: Any) -> Any:
    """``hydra.utils.instantiate`` after removing metadata keys that the ``_target_`` does not take."""
    node = _as_dict(cfg)
    node.update(overrides)
    target = get_object(node["_target_"])
    params = inspect.signature(target).parameters
    for key in META_KEYS:
        # Checked against named parameters only: smp models swallow **kwargs (forwarding them to the encoder).
        if key in node and key not in params:
            node.pop(key)
    return _instantiate(node)


def _instantiate(node: DictConfig | dict[str, Any]) -> Any:
    """``hydra.utils.instantiate``, but setup errors (missing data or weights) surface as themselves instead
    of wrapped in ``InstantiationException``, so the entrypoints can report them in one line."""
    from rankseg.engine import user_errors

    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, user_errors()):
            raise err.__cause__ from None
        raise


def build_dataset(dataset_cfg: DictConfig, split: str) -> torch.utils.data.Dataset:
    """Instantiate ``dataset_cfg[split]`` (``train`` or ``val``)."""
    return _instantiate(dataset_cfg[split])


def build_model(model_cfg: DictConfig | Mapping[str, Any], pretrained: bool = True) -> nn.Module:
    """Instantiate a segmentation network; ImageNet weights must already be cached (see
    :func:`rankseg.models.check_pretrained_weights`). ``pretrained=False`` forces ``encoder_weights=None``
    (evaluation, where a checkpoint supplies every weight).

    ``head_dropout: p`` (a config key, not a constructor argument) adds channel dropout with probability p to the
    input of an smp model's ``segmentation_head`` in training mode, as the RankSEG-RMA heads have (0.1). It is a
    forward pre-hook: no parameter and no state-dict key changes, and evaluation is unaffected.
    ``aux_channels: n`` adds the RankSEG-RMA auxiliary head (:func:`rankseg.models.aux.attach_aux_head`); its
    loss weight is ``aux_weight`` (read by the training loop, as ``main_weight``)."""
    node = _as_dict(model_cfg)
    dropout = node.pop("head_dropout", None)
    aux_channels = node.pop("aux_channels", None)
    if dropout and not 0 < float(dropout) < 1:
        raise ValueError(f"model.head_dropout must be in [0, 1), got {dropout}; use 0 for none")
    model = _build_network(node, pretrained)
    if aux_channels:  # an auxiliary head for training (rankseg.models.aux), with the main head's dropout
        attach_aux_head(model, int(aux_channels), int(node["classes"]), float(dropout or 0.0))
    if dropout:
        head = getattr(model, "segmentation_head", None)
        if not isinstance(head, nn.Module):
            raise ValueError(
                f"model.head_dropout={dropout} needs a model with a segmentation_head (smp models); "
                f"{type(model).__name__} has none: remove model.head_dropout"
            )
        head.register_forward_pre_hook(functools.partial(_channel_dropout, float(dropout)))
    return model


def _channel_dropout(p: float, module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: Dropout2d on the head's input while training."""
    return (torch.nn.functional.dropout2d(args[0], p, module.training), *args[1:])


def _build_network(node: dict[str, Any], pretrained: bool) -> nn.Module:
    if not pretrained:
        node["encoder_weights"] = None
    if node["_target_"].startswith("rankseg.models.Reference"):
        return instantiate_component(node)  # checks encoder_weights itself: its weights come from a checkpoint
    source = "torchvision" if node["_target_"].endswith("FCN8s") else "smp"
    weights = check_pretrained_weights(node.get("encoder_name", ""), node.get("encoder_weights"), source=source)
    if source == "torchvision" or weights is None:
        return instantiate_component(node)
    if str(node.get("encoder_name", "")).startswith("tu-"):
        # timm reads the checked local file itself (pretrained_cfg_overlay): no hub lookup, no network.
        return instantiate_component(node, encoder_weights=True, pretrained_cfg_overlay={"file": str(weights)})
    # smp would resolve the same file through huggingface_hub, which may query the network unless
    # HF_HUB_OFFLINE is set; loading the checked local file ourselves guarantees no network access.
    from safetensors.torch import load_file

    model = instantiate_component(node, encoder_weights=None)
    model.encoder.load_state_dict(load_file(weights, device="cpu"))
    return model


def build_loss(loss_cfg: DictConfig | Mapping[str, Any]) -> nn.Module:
    """Instantiate a training loss ``loss(logits, target)``."""
    return instantiate_component(loss_cfg)


def build_rules(predict_cfg: DictConfig | Mapping[str, Any]) -> dict[str, PredictionRule]:
    """Instantiate the prediction rules of the ``predict`` group, keyed by rule name (config order)."""
    return {str(name): instantiate_component(node) for name, node in _as_dict(predict_cfg).items()}


def param_groups(
    model: nn.Module,
    backbone_prefixes: list[str] | tuple[str, ...],
    lr: float,
    backbone_mult: float,
    no_decay_1d: bool = False,
):
    """Optimizer parameter groups: backbone parameters (name starts with one of ``backbone_prefixes``) at
    ``lr * backbone_mult``, the rest at ``lr``; frozen parameters are left out. ``no_decay_1d`` puts the 1-D
    parameters (biases, norm scales) of each part into a group of its own with ``weight_decay=0`` (the
    RankSEG-RMA recipe)."""
    parts: dict[str, list[nn.Parameter]] = {"head": [], "backbone": [], "head_no_decay": [], "backbone_no_decay": []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            part = "backbone" if name.startswith(tuple(backbone_prefixes)) else "head"
            parts[part + ("_no_decay" if no_decay_1d and param.dim() == 1 else "")].append(param)
    groups = []
    for name, params in parts.items():
        group = {"params": params, "lr": lr * (backbone_mult if name.startswith("backbone") else 1.0), "name": name}
        if name.endswith("_no_decay"):
            group["weight_decay"] = 0.0
        groups.append(group)
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module, backbone_prefixes: list[str], opt_cfg: Mapping[str, Any]
) -> torch.optim.Optimizer:
    """The optimizer of ``configs/training.yaml``'s ``optimizer`` node: ``name`` sgd (default; the JMLR protocol,
    with ``momentum``) or adamw (RankSEG-RMA; ``betas``, default (0.9, 0.999)); ``no_decay_1d`` as in
    :func:`param_groups`. Keys absent from older configs take the values that reproduce those runs."""
    name = str(opt_cfg.get("name", "sgd")).lower()
    lr, mult = float(opt_cfg["lr"]), float(opt_cfg["backbone_lr_mult"])
    groups = param_groups(model, backbone_prefixes, lr, mult, bool(opt_cfg.get("no_decay_1d", False)))
    if name == "sgd":
        return torch.optim.SGD(
            groups, lr=lr, momentum=float(opt_cfg["momentum"]), weight_decay=float(opt_cfg["weight_decay"])
        )
    if name == "adamw":
        betas = tuple(float(b) for b in opt_cfg.get("betas", (0.9, 0.999)))
        return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=float(opt_cfg["weight_decay"]))
    raise ValueError(f"optimizer.name must be sgd or adamw, got {name!r}")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def seed_step(seed: int, iteration: int, rank: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) for training step ``iteration`` of process ``rank``.

    Every random draw of a step (dropout, a loss's sampling) then depends on ``(seed, iteration, rank)`` only,
    not on what ran before, so a run resumed at any iteration continues exactly as it would have.
    """
    words = np.random.SeedSequence([seed, iteration, rank]).generate_state(2)
    step_seed = int(words[0]) | int(words[1]) << 32
    random.seed(step_seed)
    np.random.seed(int(words[0]))
    torch.manual_seed(step_seed)


def init_worker(_: int) -> None:
    """DataLoader ``worker_init_fn``: derive NumPy/Python seeds from torch's per-worker seed (for datasets that
    draw from them) and leave SIGINT/SIGTERM to the main process (see :mod:`rankseg.engine.signals`)."""
    from rankseg.engine.signals import ignore_stop_signals

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    ignore_stop_signals()


class EpochSampler(torch.utils.data.Sampler[int]):
    """A shuffled order that depends only on ``(seed, epoch)``, started at ``start``: a resumed run continues
    the interrupted epoch on exactly the samples it had not seen, without loading the others.

    With ``world_size > 1`` (``batch_size`` global, divisible by ``world_size``) rank ``r`` yields the
    ``r``-th ``batch_size / world_size`` samples of each global batch of that same order, and only whole global
    batches (the single-process loader drops the last partial one too). A DataLoader with the per-rank batch
    size then gives every rank its share of the single-process batch, so ``start`` (a multiple of the global
    batch) means the same thing at any world size: checkpoints resume across world sizes.
    ``set_epoch`` is there for the ``DistributedSampler`` protocol.
    """

    def __init__(
        self,
        num_samples: int,
        seed: int,
        epoch: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int | None = None,
    ) -> None:
        if world_size > 1 and (batch_size is None or batch_size % world_size):
            raise ValueError(f"batch_size {batch_size} must be a multiple of the world size {world_size}")
        self.num_samples, self.seed, self.epoch, self.start = num_samples, seed, epoch, start
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=gen)[self.start :]
        if self.world_size == 1:
            return order
        bs, part = self.batch_size, self.batch_size // self.world_size  # type: ignore[operator]
        batches = order[: len(order) // bs * bs].view(-1, bs)
        return batches[:, self.rank * part : (self.rank + 1) * part].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        return iter(self._order().tolist())

    def __len__(self) -> int:
        remaining = max(self.num_samples - self.start, 0)
        if self.world_size == 1:
            return remaining
        return remaining // self.batch_size * (self.batch_size // self.world_size)  # type: ignore[operator]
