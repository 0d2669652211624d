"""An auxiliary segmentation head on an smp model's second-deepest encoder stage, for training only (the
RankSEG-RMA recipe: a 3x3 conv-BN-ReLU to 256 channels, channel dropout, a 1x1 classifier, logits resized to
the input; its loss weighs 0.5 next to 0.5 on the main logits).

:func:`attach_aux_head` adds the head as ``model.aux_head`` (its parameters join the state dict under
``aux_head.``) and two forward hooks: one keeps the encoder's stage output while training, the other makes the
model return ``(logits, aux_logits)`` in training mode. In evaluation mode the model is unchanged: it returns its
logits alone and never runs the head. The hooks are module-level functions that keep no reference to the model,
so copies of the model carry working hooks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AuxHead", "attach_aux_head"]


class AuxHead(nn.Sequential):
    """conv 3x3 (no bias) - BN - ReLU - Dropout2d - conv 1x1 to the classes."""

    def __init__(self, in_channels: int, channels: int, classes: int, dropout: float = 0.1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(channels, classes, 1),
        )


def _keep_stage(encoder: nn.Module, args: Any, output: Any) -> None:
    """Encoder forward hook: keep the second-deepest stage's features while training."""
    if encoder.training:
        encoder.__dict__["_aux_input"] = output[-2]


def _with_aux(model: nn.Module, args: Any, output: Any) -> Any:
    """Model forward hook: in training mode return (logits, aux_logits at the input's size)."""
    features = model.encoder.__dict__.pop("_aux_input", None)
    if not model.training or features is None:
        return None
    size = args[0].shape[-2:]
    aux = F.interpolate(model.aux_head(features), size=size, mode="bilinear", align_corners=False)
    return output, aux


def attach_aux_head(model: nn.Module, channels: int, classes: int, dropout: float = 0.1) -> nn.Module:
    """Give an smp model (``encoder`` with ``out_channels``) an auxiliary head on its second-deepest stage.

    Raises:
        ValueError: the model has no smp-style encoder.
    """
    encoder = getattr(model, "encoder", None)
    stages = getattr(encoder, "out_channels", None)
    if not isinstance(encoder, nn.Module) or not stages or len(stages) < 2:
        raise ValueError(
            f"model.aux_channels needs an smp model (an encoder with out_channels); {type(model).__name__} has "
            "none: remove model.aux_channels and model.aux_weight"
        )
    model.aux_head = AuxHead(int(stages[-2]), int(channels), int(classes), float(dropout))
    encoder.register_forward_hook(_keep_stage)
    model.register_forward_hook(_with_aux)
    return model


def aux_loss(
    loss_fn: nn.Module, output: Any, targets: torch.Tensor, main_weight: float = 1.0, aux_weight: float = 0.0
) -> torch.Tensor:
    """The training loss: main_weight x loss(logits) + aux_weight x loss(aux_logits).

    ``output`` is the model's training output: logits, or ``(logits, aux_logits)`` from a model with an auxiliary
    head (:func:`attach_aux_head`, or ``ReferencePSPNet(use_aux=True)``). A positive ``aux_weight`` needs the pair.

    Raises:
        ValueError: aux_weight > 0 but the model returned no auxiliary logits.
    """
    pair = isinstance(output, tuple | list) and len(output) == 2
    if aux_weight:
        if not pair or output[1].shape != output[0].shape:
            raise ValueError(
                "model.aux_weight > 0 but the model returns no auxiliary logits in training: set model.aux_channels "
                "(smp models) or model.use_aux=true (ref_pspnet), or model.aux_weight=0"
            )
        return main_weight * loss_fn(output[0], targets) + aux_weight * loss_fn(output[1], targets)
    logits = output[0] if isinstance(output, tuple | list) else output
    loss = loss_fn(logits, targets)
    return loss if main_weight == 1.0 else main_weight * loss
