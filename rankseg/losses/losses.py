"""Focal, one-vs-rest BCE and soft Dice losses, each with the ignore index handled explicitly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rankseg.metrics import IGNORE_INDEX


def one_hot_with_ignore(
    target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """One-hot encode a label map and return the mask of labelled pixels.

    Returns:
        ``(onehot, valid)``: ``onehot`` is float with all-zero rows at ignored pixels; ``valid`` is bool.

    Shape:
        - target: (B, *S)
        - onehot: (B, C, *S); valid: (B, 1, *S)
    """
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe.long(), num_classes).movedim(-1, 1).to(torch.float32)
    valid = valid.unsqueeze(1)
    return onehot * valid, valid


class FocalLoss(nn.Module):
    """Multiclass focal loss on the softmax, as in the reference ``FocalLoss`` (no alpha).

    Per pixel ``CE_i = -log p_{y_i}`` (0 at ignored pixels) and ``loss_i = (1 - exp(-CE_i))**gamma * CE_i``.

    Args:
        gamma: focusing parameter; 0 gives cross-entropy.
        ignore_index: label of unlabelled pixels.
        mean_over_ignored: if True (the reference), average over *all* pixels, ignored ones contributing 0;
            if False, average over labelled pixels only, so ``gamma=0`` equals ``nn.CrossEntropyLoss``.
    """

    def __init__(self, gamma: float = 2.0, ignore_index: int = IGNORE_INDEX, mean_over_ignored: bool = True):
        super().__init__()
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.mean_over_ignored = mean_over_ignored

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        ce = F.cross_entropy(logits.float(), target.long(), ignore_index=self.ignore_index, reduction="none")
        loss = (1.0 - torch.exp(-ce)) ** self.gamma * ce if self.gamma else ce
        if self.mean_over_ignored:
            return loss.mean()
        return loss.sum() / (target != self.ignore_index).sum().clamp_min(1)


class BCEOneVsRestLoss(nn.Module):
    """Binary cross-entropy of each class's sigmoid against the one-hot target (one-vs-rest).

    Args:
        ignore_index: label of unlabelled pixels.
        ignore_as_negative: if True (the reference ``BCEWithLogitsLoss2d``), unlabelled pixels count as
            negatives for every class; if False (default), they are left out of the mean.
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, ignore_as_negative: bool = False):
        super().__init__()
        self.ignore_index = ignore_index
        self.ignore_as_negative = ignore_as_negative

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        onehot, valid = one_hot_with_ignore(target, logits.shape[1], self.ignore_index)
        loss = F.binary_cross_entropy_with_logits(logits.float(), onehot, reduction="none")
        if self.ignore_as_negative:
            return loss.mean()
        weight = valid.expand_as(loss)
        return (loss * weight).sum() / weight.sum().clamp_min(1)


class SoftDiceLoss(nn.Module):
    """One global soft Dice over the batch and all classes: ``1 - (2 sum(p*y) + s) / (sum(p) + sum(y) + s)``.

    With ``activation="softmax"`` this is the paper's Soft-Dice (reference ``DiceLoss``); with
    ``activation="sigmoid"`` it is B-Soft-Dice (reference ``BDiceLoss``, one-vs-rest). Unlike the reference,
    ignored pixels are masked out rather than relabelled in place as ``target.min()``.

    Args:
        activation: ``"softmax"`` or ``"sigmoid"``.
        smooth: additive smoothing ``s`` (1 in the reference).
        ignore_index: label of unlabelled pixels.
    """

    def __init__(self, activation: str = "softmax", smooth: float = 1.0, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
        self.activation = activation
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()
        probs = logits.softmax(1) if self.activation == "softmax" else logits.sigmoid()
        onehot, valid = one_hot_with_ignore(target, logits.shape[1], self.ignore_index)
        probs = probs * valid
        inter = (probs * onehot).sum()
        return 1.0 - (2.0 * inter + self.smooth) / (probs.sum() + onehot.sum() + self.smooth)
