"""What RankSEG chose: the prediction together with each (image, class)'s mask size tau and cutoff.

:func:`rankseg_details` takes the arguments of :func:`rankseg.functional.rankseg`, validates them the same way
(same order, same messages) and returns the same prediction, plus a :class:`RankSEGDetails`:

* ``tau``: the size of the class's own binary mask, the one the solver chose for the (image, class) row by
  itself. In multilabel mode this is the output mask, so ``tau == pred.sum(spatial dims)``. In multiclass mode it
  is the mask *before* the overlap resolution of :mod:`rankseg._multiclass`: the final label map may give some of
  those pixels to another class that also selected them, and (``unassigned_policy="max_score"``) pixels no class
  selected to the class with the largest increment, so the class's final region can be smaller or larger.
* ``cutoff``: the smallest probability in that mask; NaN where the mask is empty (tau = 0, also every row
  removed by ``pruning_prob``). Every RankSEG solver (RMA, BA, TRNA, BA+TRNA, exact) and TR select an upper
  set of the row, so the mask holds every pixel with ``p > cutoff`` and only pixels with ``p >= cutoff``
  (pixels equal to the cutoff may be split by index order). The argmax solver's one-hot masks are not upper
  sets; for them ``cutoff`` is still the smallest probability kept.

Passes besides the solver's: one count and one masked minimum per row over the masks the solver built (the
masks are captured where the solver hands them to the overlap resolution, so nothing is solved twice).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from rankseg import _exact, _multiclass
from rankseg._ba import _rankdice_ba
from rankseg._common import as_rows, count_true, row_chunks, use_numpy
from rankseg._rma import rma_gains, rma_row_masks
from rankseg._validation import check_eps, check_prob_values, check_rma_call, validate_call

__all__ = ["RankSEGDetails", "rankseg_details"]


class RankSEGDetails(NamedTuple):
    """Per (image, class): the size and the smallest probability of the class's own binary mask.

    Attributes:
        tau: int64 (B, C), pixels in the mask (multiclass: before the overlap resolution).
        cutoff: (B, C) in the compute dtype (float32 for float16/bfloat16 input, else the input's), the
            smallest probability in the mask; NaN where it is empty.
    """

    tau: torch.Tensor
    cutoff: torch.Tensor


@torch.no_grad()
def rankseg_details(
    probs: torch.Tensor,
    metric: str = "dice",
    smooth: float = 0.0,
    output_mode: str = "multiclass",
    solver: str = "RMA",
    pruning_prob: float = 0.5,
    **solver_params: Any,
) -> tuple[torch.Tensor, RankSEGDetails]:
    """:func:`rankseg.functional.rankseg` that also says which mask size and cutoff it chose per image and class.

    Args:
        probs, metric, smooth, output_mode, solver, pruning_prob, solver_params: as for
            :func:`rankseg.functional.rankseg` (every solver, both output modes).

    Returns:
        ``(prediction, details)``: the prediction equals ``rankseg.functional.rankseg(...)``'s for the same
        arguments; ``details`` is a :class:`RankSEGDetails` (see the module docstring for multiclass mode).

    Raises:
        TypeError, ValueError: those of :func:`rankseg.functional.rankseg`, with its messages.

    Shape:
        - probs: (B, C, *S)
        - prediction: (B, C, *S) bool (multilabel) or (B, *S) int64 (multiclass)
        - details.tau, details.cutoff: (B, C)

    Example:
        >>> import torch
        >>> from rankseg import rankseg_details
        >>> probs = torch.rand(2, 3, 8, 8).softmax(1)
        >>> labels, details = rankseg_details(probs, metric="dice", output_mode="multiclass")
        >>> details.tau.shape, details.cutoff.dtype
        (torch.Size([2, 3]), torch.float32)
    """
    call = validate_call(probs, metric, smooth, output_mode, solver, pruning_prob, solver_params)
    params = call.params
    shape = tuple(probs.shape[:2])
    if call.solver in ("ba", "trna", "ba+trna"):
        eps = check_eps(params.get("eps", 1e-4))
        maxima = check_prob_values(probs)
        masks = _rankdice_ba(probs, call.solver.upper(), call.smooth, eps, call.pruning_prob, maxima)
        return masks, _mask_details(as_rows(probs), masks.reshape(shape[0] * shape[1], -1), shape)

    if call.metric == "accuracy":
        from rankseg.functional import _accuracy  # at call time: rankseg.functional imports this module

        check_prob_values(probs)
        pred = _accuracy(probs, call.solver, call.output_mode)
        masks = pred if call.output_mode == "multilabel" else _one_hot(pred, shape[1])
        return pred, _mask_details(as_rows(probs), masks.reshape(shape[0] * shape[1], -1), shape)

    # RMA and exact: the checks of rankseg.functional.rankseg, then its solver run through _multiclass.solve
    # with the row solver wrapped so that the per-class masks are read where they are handed on.
    smooth, mode, pruning_prob, policy, void_index, maxima = check_rma_call(probs, call)
    width, name = probs.shape[-1], call.metric
    if call.solver == "rma":

        def row_masks(rows, solve, mx):
            return rma_row_masks(rows, name, smooth, solve, width, mx)

        gains = rma_gains(name, smooth)
    else:

        def row_masks(rows, solve, mx):
            return _exact.exact_row_masks(rows, name, smooth, solve, width, mx)

        def gains(flat, masks, count):
            return _exact.exact_gains(flat, masks, count, name, smooth)

    found: list[RankSEGDetails] = []

    def capture(rows: torch.Tensor, solve: torch.Tensor, mx: torch.Tensor) -> torch.Tensor:
        masks = row_masks(rows, solve, mx)
        found.append(_mask_details(rows, masks, shape))
        return masks

    pred = _multiclass.solve(probs, capture, gains, mode, pruning_prob, policy, void_index, maxima)
    return pred, found[0]


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, *S) int64 -> (B, C, *S) bool."""
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, *([1] * (labels.dim() - 1)))
    return labels.unsqueeze(1) == classes


def _mask_details(rows: torch.Tensor, masks: torch.Tensor, shape: tuple[int, int]) -> RankSEGDetails:
    """Size and smallest selected value of every row's mask.

    Shape:
        rows: (R, d) compute dtype.  masks: (R, d) bool.  output: two (B, C) tensors, R = B * C.
    """
    tau = count_true(masks, 1)
    cutoff = _masked_min(rows, masks)
    cutoff = torch.where(tau > 0, cutoff, torch.full_like(cutoff, float("nan")))
    return RankSEGDetails(tau.reshape(shape), cutoff.reshape(shape))


def _masked_min(rows: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Smallest value of each row where ``masks`` is True (+inf for an empty mask), in ``rows``' dtype.

    On CPU one NumPy reduction with ``where=`` (no temporary); elsewhere ``torch.where`` + ``amin`` on chunks
    of rows whose temporary stays within the chunk budget.

    Shape:
        rows: (R, d).  masks: (R, d) bool.  output: (R,).
    """
    n_rows, d = rows.shape
    if n_rows == 0 or d == 0:
        return torch.full((n_rows,), float("inf"), dtype=rows.dtype, device=rows.device)
    if use_numpy(rows, masks):
        values, keep = rows.contiguous().numpy(), masks.contiguous().numpy()
        out = np.minimum.reduce(values, axis=1, where=keep, initial=np.inf)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=values.dtype))
    out = torch.empty(n_rows, dtype=rows.dtype, device=rows.device)
    inf = torch.tensor(float("inf"), dtype=rows.dtype, device=rows.device)
    per_row = d * (rows.element_size() + 1)
    for sl in row_chunks(n_rows, per_row, rows.numel() * rows.element_size(), rows.device):
        out[sl] = torch.where(masks[sl], rows[sl], inf).amin(1)
    return out
