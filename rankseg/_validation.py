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

from rankseg import _triton
from rankseg._common import row_max

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SUPPORTED_PROB_DTYPES = _FLOAT_DTYPES  # 0.0.8's public name

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

_SINGLE_CHANNEL = (
    "Single-channel probabilities cannot produce a binary multiclass label map; use output_mode='multilabel' or "
    "provide background and foreground channels"
)


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
    if probs.ndim >= 3 and _triton.enabled(probs):  # CUDA: one fused read (rankseg._triton.rma.value_bounds)
        from rankseg._triton.rma import value_bounds

        maxima, lo, hi, bad = value_bounds(probs)
        if bad:
            raise ValueError("probs must contain only finite values")
        if lo < 0 or hi > 1:
            raise ValueError("probs must be in the range [0, 1]")
        return maxima
    maxima = row_max(probs) if probs.ndim >= 3 else probs.amax().reshape(1)
    # one host sync for both bounds (each float() would be one)
    lo, hi = torch.stack([probs.amin().to(maxima.dtype), maxima.max()]).tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("probs must contain only finite values")
    if lo < 0 or hi > 1:
        raise ValueError("probs must be in the range [0, 1]")
    return maxima


def validate_probability_tensor(
    probs: Any, *, check_values: bool = True, return_bounds: bool = False
) -> tuple[float, float] | None:
    """0.0.8's public check of a probability tensor: structure, then (optionally) values.

    Args:
        probs: the tensor to check, (B, C, *spatial).
        check_values: also scan the values (finite, in [0, 1]); this reads the whole tensor.
        return_bounds: return the (min, max) of the values found by the scan.

    Returns:
        (min, max) as Python floats when ``check_values`` and ``return_bounds`` and the tensor is non-empty;
        otherwise None.
    """
    check_probs_structure(probs)
    if not check_values or probs.numel() == 0:
        return None
    lo, hi = (float(v) for v in torch.aminmax(probs.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("probs must contain only finite values")
    if lo < 0 or hi > 1:
        raise ValueError("probs must be in the range [0, 1]")
    return (lo, hi) if return_bounds else None


def validate_finite_real(name: str, value: Any) -> float:
    """0.0.8's public check of a real, finite number (bool, str and tensors refused); returns it as float."""
    return check_real(name, value)


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


def _norm(value: Any) -> Any:
    """A string argument as 0.0.8 matches it (stripped, lower case); anything else unchanged."""
    return value.strip().lower() if isinstance(value, str) else value


def check_integral(name: str, value: Any) -> int:
    """An int (bool refused), as 0.0.8's ``validate_integral``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int")
    return int(value)


validate_integral = check_integral  # 0.0.8's public name


def check_rma_args(
    probs: torch.Tensor,
    metric: Any,
    smooth: Any,
    output_mode: Any,
    pruning_prob: Any,
    unassigned_policy: Any,
    void_index: Any,
    safe_screening: Any,
) -> tuple[str, float, str, float, str, int, torch.Tensor | None]:
    """The argument checks of 0.0.8's ``rankseg_rma``, in its order, after the structural checks.

    Values first (finite, then in [0, 1]), then the types of metric, output_mode, unassigned_policy and
    safe_screening, smooth, pruning_prob, the normalised names, single-channel multiclass, the policy's name,
    void_index's type, and the policy/void_index combinations.

    Returns:
        (metric, smooth, output_mode, pruning_prob, policy, void_index, row maxima or None for an empty input).
    """
    maxima = check_prob_values(probs)
    for name, value in (("metric", metric), ("output_mode", output_mode), ("unassigned_policy", unassigned_policy)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string")
    check_safe_screening(safe_screening)
    smooth = check_smooth(smooth)
    pruning_prob = check_pruning_prob(pruning_prob)
    metric, output_mode, policy = _norm(metric), _norm(output_mode), _norm(unassigned_policy)
    if metric not in ("iou", "dice"):
        raise ValueError("metric should be iou or dice")
    if output_mode not in _OUTPUT_MODES:
        raise ValueError("output_mode should be multiclass or multilabel")
    if output_mode == "multiclass" and probs.shape[1] == 1:
        raise ValueError(_SINGLE_CHANNEL)
    if policy not in ("max_score", "void"):
        raise ValueError("unassigned_policy should be max_score or void")
    void_index = check_integral("void_index", void_index)
    if output_mode == "multilabel" and policy != "max_score":
        raise ValueError("unassigned_policy='void' is only supported when output_mode='multiclass'")
    if void_index != 255 and (output_mode != "multiclass" or policy != "void"):
        raise ValueError("a non-default void_index requires output_mode='multiclass' and unassigned_policy='void'")
    if output_mode == "multiclass" and policy == "void":
        if not -(2**63) <= void_index < 2**63:
            raise ValueError("void_index must be representable as torch.int64")
        if 0 <= void_index < probs.shape[1]:
            raise ValueError("void_index must lie outside the valid class index range [0, num_class)")
    return metric, smooth, output_mode, pruning_prob, policy, void_index, maxima


def check_rma_call(probs: torch.Tensor, call: Call) -> tuple[float, str, float, str, int, torch.Tensor | None]:
    """The checks of 0.0.8's ``rankseg_rma`` for a validated ``rankseg()`` call (RMA and exact solvers), which
    0.0.8's ``rankseg()`` runs with the call's solver parameters.

    Returns:
        (smooth, output_mode, pruning_prob, policy, void_index, row maxima or None).
    """
    params = call.params
    _, smooth, mode, pruning_prob, policy, void_index, maxima = check_rma_args(
        probs,
        call.metric,
        call.smooth,
        call.output_mode,
        call.pruning_prob,
        params.get("unassigned_policy", "max_score"),
        params.get("void_index", 255),
        params.get("safe_screening", False),
    )
    return smooth, mode, pruning_prob, policy, void_index, maxima


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
        raise ValueError(_SINGLE_CHANNEL)

    solver_key = solver.strip().lower()
    supported = _SUPPORT[(metric_key, mode, single)]
    if solver_key not in supported:
        where = f"metric={metric_key!r} with output_mode={mode!r}" + (", single-channel input" if single else "")
        # 0.0.8's list of supported solvers: "exact" works here but is not advertised, so messages stay equal.
        names = ", ".join(_display(s) for s in supported if s != "exact")
        raise ValueError(f"solver {_display(solver_key)!r} is not supported for {where}; supported solvers: {names}")

    allowed = _allowed_params(solver_key, mode)
    unknown = sorted(k for k in solver_params if k not in allowed)
    if unknown:
        msg = f"solver '{_display(solver_key)}' does not accept solver parameters: {', '.join(unknown)}"
        if solver_key not in ("tr", "argmax"):
            msg += f"; allowed parameters: {', '.join(allowed)}" if allowed else "; allowed parameters: none"
        raise TypeError(msg)
    if "void_index" in solver_params and _norm(solver_params.get("unassigned_policy", "max_score")) != "void":
        raise ValueError("void_index requires unassigned_policy='void'")
    return Call(metric_key, mode, solver_key, smooth, pruning_prob, dict(solver_params))
