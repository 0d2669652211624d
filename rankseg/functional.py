"""Functional interface: ``rankseg(probs, ...)``, the drop-in for ``rankseg.functional.rankseg`` of 0.0.8."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from rankseg import _exact, _multiclass, _rma
from rankseg._ba import _rankdice_ba, rankdice_ba
from rankseg._details import rankseg_details as rankseg_details  # + tau/cutoff; not a 0.0.8 name: not in __all__
from rankseg._rma import rankseg_rma
from rankseg._validation import (
    check_eps,
    check_prob_values,
    check_rma_call,
    validate_call,
    validate_finite_real,
    validate_probability_tensor,
)

# The names 0.0.8 exposes in ``rankseg.functional`` (its entry point and the helpers it imports there).
__all__ = ["rankseg", "rankseg_rma", "rankdice_ba", "validate_probability_tensor", "validate_finite_real"]

_ARGMAX_MULTILABEL_WARNING = (
    "The argmax solver returns non-overlapping one-hot masks in multilabel tensor format. Use the TR solver "
    "when labels should be thresholded independently."
)


@torch.no_grad()
def rankseg(
    probs: torch.Tensor,
    metric: str = "dice",
    smooth: float = 0.0,
    output_mode: str = "multiclass",
    solver: str = "RMA",
    pruning_prob: float = 0.5,
    **solver_params: Any,
) -> torch.Tensor:
    """Segmentation masks that maximise the expected Dice, IoU or accuracy under ``probs``.

    Args:
        probs: per-pixel probabilities (B, C, *spatial) with at least one spatial dim; float16, bfloat16,
            float32 or float64 (half types are computed in float32). Softmax outputs for multiclass use,
            sigmoid outputs for multilabel use. Not modified.
        metric: "dice", "iou", or "acc"/"accuracy" (case and surrounding spaces ignored).
        smooth: smoothing s >= 0 of the target metric (ignored for accuracy).
        output_mode: "multiclass" (one label per pixel) or "multilabel" (one mask per class).
        solver: "RMA" (default; Dice and IoU), "BA", "TRNA", "BA+TRNA" (Dice, multilabel), "exact" (Dice and
            IoU, both modes: maximises the exact expected score), "TR" or "argmax" (accuracy).
        pruning_prob: a class whose largest probability in an image is <= this gets an empty mask
            (ignored for accuracy).
        **solver_params: RMA: ``safe_screening`` (accepted, not needed); RMA/exact multiclass:
            ``unassigned_policy`` ("max_score" or "void") and ``void_index`` (int, default 255);
            BA/TRNA/BA+TRNA: ``eps`` (default 1e-4).

    Returns:
        multilabel: bool (B, C, *spatial); multiclass: int64 (B, *spatial); on the input's device.

    Raises:
        TypeError, ValueError: with the messages of rankseg 0.0.8 (README, tests/test_validation.py).
    """
    call = validate_call(probs, metric, smooth, output_mode, solver, pruning_prob, solver_params)
    params = call.params
    if call.solver in ("ba", "trna", "ba+trna"):
        eps = check_eps(params.get("eps", 1e-4))
        maxima = check_prob_values(probs)
        return _rankdice_ba(probs, call.solver.upper(), call.smooth, eps, call.pruning_prob, maxima)

    if call.metric == "accuracy":
        check_prob_values(probs)
        return _accuracy(probs, call.solver, call.output_mode)

    # RMA and exact: the checks of 0.0.8's rankseg_rma, which its rankseg() calls with the solver parameters.
    smooth, mode, pruning_prob, policy, void_index, maxima = check_rma_call(probs, call)
    args = (probs, call.metric, smooth, mode, pruning_prob, policy, void_index, maxima)
    if call.solver == "rma":
        return _rma._rma(*args)
    return _exact_solve(*args)


def _accuracy(probs: torch.Tensor, solver: str, output_mode: str) -> torch.Tensor:
    if solver == "tr":
        return probs > 0.5
    labels = probs.argmax(1)
    if output_mode == "multiclass":
        return labels
    warnings.warn(_ARGMAX_MULTILABEL_WARNING, UserWarning, stacklevel=3)
    classes = torch.arange(probs.shape[1], device=probs.device).view(1, -1, *([1] * (probs.ndim - 2)))
    return labels.unsqueeze(1) == classes


def _exact_solve(probs, metric, smooth, output_mode, pruning_prob, policy, void_index, maxima=None) -> torch.Tensor:
    return _multiclass.solve(
        probs,
        lambda rows, solve, mx: _exact.exact_row_masks(rows, metric, smooth, solve, probs.shape[-1], mx),
        lambda flat, masks, count: _exact.exact_gains(flat, masks, count, metric, smooth),
        output_mode,
        pruning_prob,
        policy,
        void_index,
        maxima,
    )
