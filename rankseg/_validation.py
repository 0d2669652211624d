"""Argument validation shared by every entry point.

The checks, their order and their messages follow the PyPI release ``rankseg`` 0.0.8 so that code written
against it sees the same exceptions. The one deliberate difference: ``solver="exact"`` is implemented here
(Dice and IoU, both output modes), so it is listed among the supported solvers instead of being refused.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch

from rankseg._common import row_max

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_METRICS = {"dice": "dice", "iou": "iou", "acc": "accuracy", "accuracy": "accuracy"}
_OUTPUT_MODES = ("multiclass", "multilabel")

# Canonical spelling of each solver, as shown in messages.
_SOLVER_NAMES = {
    "rma": "RMA",
    "ba": "BA",
    "trna": "TRNA",
    "ba+trna": "BA+TRNA",
    "tr": "TR",
    "argmax": "argmax",
    "exact": "exact",
}

# (metric, output_mode, single_channel) -> supported solvers, in display order.
_SUPPORT: dict[tuple[str, str, bool], tuple[str, ...]] = {
    ("dice", "multiclass", False): ("rma", "exact"),
    ("dice", "multilabel", False): ("rma", "ba", "trna", "ba+trna", "exact"),
    ("dice", "multilabel", True): ("rma", "ba", "trna", "ba+trna", "exact"),
    ("iou", "multiclass", False): ("rma", "exact"),
    ("iou", "multilabel", False): ("rma", "exact"),
    ("iou", "multilabel", True): ("rma", "exact"),
    ("accuracy", "multiclass", False): ("argmax",),
    ("accuracy", "multilabel", False): ("tr", "argmax"),
    ("accuracy", "multilabel", True): ("tr",),
}

_MULTICLASS_PARAMS = ("unassigned_policy", "void_index")


def _allowed_params(solver: str, output_mode: str) -> tuple[str, ...]:
    if solver == "rma":
        return ("safe_screening",) + (_MULTICLASS_PARAMS if output_mode == "multiclass" else ())
    if solver == "exact":
        return _MULTICLASS_PARAMS if output_mode == "multiclass" else ()
    if solver in ("ba", "trna", "ba+trna"):
        return ("eps",)
    return ()


@dataclass(frozen=True)
class Call:
    """A validated call: normalised names plus the solver parameters."""

    metric: str
    output_mode: str
    solver: str
    smooth: float
    pruning_prob: float
    params: dict[str, Any] = field(default_factory=dict)


def check_probs_structure(probs: Any) -> None:
    """Type, dtype and shape checks (no data access, no device sync)."""
    if not isinstance(probs, torch.Tensor):
        raise TypeError("probs must be a torch.Tensor")
    if probs.dtype not in _FLOAT_DTYPES:
        raise TypeError("probs must have a real floating-point dtype")
    if probs.ndim < 3:
        raise ValueError("probs must have shape (batch_size, num_class, *image_shape)")
    if probs.shape[1] == 0:
        raise ValueError("probs must contain at least one class")
    if any(s == 0 for s in probs.shape[2:]):
        raise ValueError("probs spatial dimensions must be non-empty")


def check_prob_values(probs: torch.Tensor) -> torch.Tensor | None:
    """Finite values in [0, 1], as in 0.0.8. Returns the row maxima (:func:`rankseg._common.row_max`), which
    the solvers reuse for pruning, or None for an empty input."""
    if probs.numel() == 0:
        return None
    maxima = row_max(probs) if probs.ndim >= 3 else probs.amax().reshape(1)
    lo, hi = float(probs.amin()), float(maxima.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("probs must contain only finite values")
    if lo < 0 or hi > 1:
        raise ValueError("probs must be in the range [0, 1]")
    return maxima


def check_real(name: str, value: Any) -> float:
    """A real, finite number; bool, str and tensors are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    return value


def check_smooth(smooth: Any) -> float:
    smooth = check_real("smooth", smooth)
    if smooth < 0:
        raise ValueError("smooth must be greater than or equal to 0")
    return smooth


def check_pruning_prob(pruning_prob: Any) -> float:
    pruning_prob = check_real("pruning_prob", pruning_prob)
    if not 0 <= pruning_prob <= 1:
        raise ValueError("pruning_prob must be in the range [0, 1]")
    return pruning_prob


def check_eps(eps: Any) -> float:
    eps = check_real("eps", eps)
    if not 0 < eps < 1:
        raise ValueError("eps must be in the range (0, 1)")
    return eps


def check_safe_screening(value: Any) -> bool | str:
    if isinstance(value, bool) or (isinstance(value, str) and value == "auto"):
        return value
    raise TypeError("safe_screening must be a bool or 'auto'")


def check_policy(unassigned_policy: Any, void_index: Any, num_class: int) -> tuple[str, int]:
    """The multiclass unassigned-pixel policy and its void label."""
    if unassigned_policy not in ("max_score", "void"):
        raise ValueError("unassigned_policy should be max_score or void")
    if isinstance(void_index, bool) or not isinstance(void_index, numbers.Integral):
        raise TypeError("void_index must be an int")
    void_index = int(void_index)
    if not -(2**63) <= void_index < 2**63:
        raise ValueError("void_index must be representable as torch.int64")
    if unassigned_policy == "void" and 0 <= void_index < num_class:
        raise ValueError("void_index must lie outside the valid class index range [0, num_class)")
    return unassigned_policy, void_index


def _display(solver: str) -> str:
    return _SOLVER_NAMES.get(solver, solver)


def validate_call(
    probs: Any,
    metric: Any,
    smooth: Any,
    output_mode: Any,
    solver: Any,
    pruning_prob: Any,
    solver_params: dict[str, Any],
) -> Call:
    """Steps 1-7 of 0.0.8's validation order; value checks are left to the solver (step 8)."""
    check_probs_structure(probs)
    for name, value in (("metric", metric), ("output_mode", output_mode), ("solver", solver)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string")
    smooth = check_smooth(smooth)
    pruning_prob = check_pruning_prob(pruning_prob)

    metric_key = metric.strip().lower()
    if metric_key not in _METRICS:
        raise ValueError(f"Unknown metric: {metric_key}")
    metric_key = _METRICS[metric_key]
    mode = output_mode.strip().lower()
    if mode not in _OUTPUT_MODES:
        raise ValueError(f"Unknown output mode: {mode}")
    single = probs.shape[1] == 1
    if single and mode == "multiclass":
        raise ValueError(
            "Single-channel probabilities cannot produce a binary multiclass label map; use "
            "output_mode='multilabel' or provide background and foreground channels"
        )

    solver_key = solver.strip().lower()
    supported = _SUPPORT[(metric_key, mode, single)]
    if solver_key not in supported:
        where = f"metric='{metric_key}' with output_mode='{mode}'" + (
            ", single-channel input" if single else ""
        )
        names = ", ".join(_display(s) for s in supported)
        raise ValueError(
            f"solver '{_display(solver_key) if solver_key in _SOLVER_NAMES else solver.strip()}' "
            f"is not supported for {where}; supported solvers: {names}"
        )

    allowed = _allowed_params(solver_key, mode)
    unknown = sorted(k for k in solver_params if k not in allowed)
    if unknown:
        msg = f"solver '{_display(solver_key)}' does not accept solver parameters: {', '.join(unknown)}"
        if solver_key not in ("tr", "argmax"):
            msg += f"; allowed parameters: {', '.join(allowed)}" if allowed else "; allowed parameters: none"
        raise TypeError(msg)
    if "void_index" in solver_params and solver_params.get("unassigned_policy", "max_score") != "void":
        raise ValueError("void_index requires unassigned_policy='void'")
    return Call(metric_key, mode, solver_key, smooth, pruning_prob, dict(solver_params))
