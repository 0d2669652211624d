"""Turning per-class masks into one label map (0.0.8's overlap resolution, any solver's scores).

Each class first solves its own binary problem. A pixel selected by exactly one class keeps it. A pixel selected
by several classes goes to the one whose score rises most when the pixel is added to its uniquely-owned set
(ties: lowest class index). A pixel selected by none goes, under ``unassigned_policy="max_score"``, to the active
class (one that selected something in that image; every class if none did) with the largest increment, or gets
``void_index`` under ``"void"``.

The increments are evaluated for every pixel and class in chunks of pixels (the RMA scores are affine or
rational in p; the exact scores' are polynomials in p, see :func:`rankseg._exact.exact_gains`), so nothing is
gathered across the class dimension and no strided argmax over classes is taken. On CUDA the RMA increments
are evaluated by two fused Triton passes instead (:func:`rankseg._triton.rma.resolve`: owned-set statistics,
then increments and argmax per pixel), without a host sync.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rankseg import _triton
from rankseg._common import as_rows, prune_rows, row_chunks, row_max, row_sums64, use_numpy

# gains(pixels) -> increments (B, C, n) of every image and class at a slice of the pixels (prepared per
# image and class once by the solver's ``(probs, masks, count) -> gains`` factory).
GainsFn = Callable[[slice], torch.Tensor]
# Ineligible classes get this score: below any increment (|increment| <= 2 for Dice and IoU scores).
_BIG = 1e30


def selection_count(masks: torch.Tensor) -> torch.Tensor:
    """Number of classes selecting each pixel. Shape: (B, C, d) bool -> (B, d) uint8 (int32 for C >= 256)."""
    narrow = torch.uint8 if masks.shape[1] < 256 else torch.int32
    return masks.view(torch.uint8).sum(1, dtype=narrow)


def owned_stats(probs: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per (image, class): size and probability mass of the uniquely-owned pixels, and the selection count.

    Shape:
        probs: (B, C, d) compute dtype.  masks: (B, C, d) bool.
        output: tau (B, C) float64, mass (B, C) float64, count (B, d) (:func:`selection_count`).
    """
    count = selection_count(masks)
    unique = masks & (count == 1).unsqueeze(1)
    tau = row_sums64(unique.view(torch.uint8))
    mass = row_sums64(probs, unique)
    return tau, mass, count


def first_argmax(x: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum over dim 1, like ``x.argmax(1)`` but without its slow strided loop on CPU.

    The maximum is a plain reduction; the first class reaching it is the largest of (C - c) over the hits.

    Shape: (b, C, n) -> (b, n) int64.
    """
    n_cls = x.shape[1]
    best = x.amax(1, keepdim=True)
    if use_numpy(x) and x.is_contiguous():
        hit = torch.from_numpy(np.equal(x.numpy(), best.numpy()))
    else:
        hit = x == best
    wdtype = torch.uint8 if n_cls < 256 else torch.int32
    weights = torch.arange(n_cls, 0, -1, dtype=wdtype, device=x.device).view(1, n_cls, 1)
    hits = hit.view(torch.uint8) if wdtype == torch.uint8 else hit.to(wdtype)
    return n_cls - (hits * weights).amax(1).long()


def resolve(
    probs: torch.Tensor,
    masks: torch.Tensor,
    count: torch.Tensor,
    gains: GainsFn,
    unassigned_policy: str,
    void_index: int,
) -> torch.Tensor:
    """Label map from per-class masks and the solver's increments.

    Every pixel takes the first class with the largest increment among its eligible ones: the selecting
    classes when some class selects it (which makes single-selection pixels keep their class), the active
    classes otherwise. Pixels are processed in chunks whose (B, C, n) temporaries stay within the input size.

    Shape:
        probs: (B, C, d).  masks: (B, C, d) bool.  count: (B, d).  output: (B, d) int64.
    """
    n_img, n_cls, d = masks.shape
    labels = torch.empty(n_img, d, dtype=torch.int64, device=probs.device)
    active = masks.view(torch.uint8).amax(2) > 0  # (a bool any() over the pixels is 40x slower on CPU)
    active = active | ~active.any(1, keepdim=True)  # an image with no active class: every class is eligible
    inactive = ~active
    any_inactive = bool(inactive.any())
    unassigned = count == 0
    # Temporaries per pixel and class: the increments, one more float (the eligibility offset, or a
    # temporary of the increments themselves) in p's dtype, the bool and uint8 masks of the argmax.
    input_bytes = probs.numel() * probs.element_size()
    per_pixel = n_img * n_cls * (3 * probs.element_size() + 3)
    # half the usual budget: the row solvers' scratch buffer and the masks are still alive here
    for sl in row_chunks(d, per_pixel, input_bytes // 2, probs.device):
        gain = gains(sl)
        # eligible: selecting classes, or every pixel of an active class where nothing is selected
        keep = (masks[:, :, sl] | unassigned[:, sl].unsqueeze(1)).view(torch.uint8).to(gain.dtype)
        # + 0 where eligible (exact), -BIG elsewhere (|gain| << ulp(BIG), so gain - BIG rounds to -BIG)
        gain.add_(keep.sub_(1), alpha=_BIG)
        del keep
        if any_inactive:
            gain.masked_fill_(inactive.unsqueeze(2), -2 * _BIG)
        labels[:, sl] = first_argmax(gain)
        del gain
    if unassigned_policy == "void":
        labels.masked_fill_(unassigned, void_index)
    return labels


def solve(
    probs: torch.Tensor,
    row_masks: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    gains: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], GainsFn],
    output_mode: str,
    pruning_prob: float,
    unassigned_policy: str,
    void_index: int,
    maxima: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run a per-row solver and shape its output: bool masks (multilabel) or a resolved label map (multiclass).

    Args:
        probs: (B, C, *spatial) probabilities.
        row_masks: ``(rows, solve, maxima) -> masks`` on the (B * C, d) row view; rows with ``solve`` False
            stay empty; ``maxima`` are the rows' largest values.
        gains: ``(probs (B, C, d), masks (B, C, d), count (B, d)) -> gains``, the solver's own increments
            (a :data:`GainsFn`).
        maxima: the rows' maxima if already computed (:func:`rankseg._common.row_max`).
    """
    n_img, n_cls = probs.shape[:2]
    rows = as_rows(probs)
    if maxima is None:
        maxima = row_max(probs)
    masks = row_masks(rows, prune_rows(rows, pruning_prob, maxima), maxima)
    if output_mode == "multilabel":
        return masks.reshape(probs.shape)
    flat = rows.reshape(n_img, n_cls, rows.shape[1])
    masks = masks.reshape(n_img, n_cls, rows.shape[1])
    fused = getattr(gains, "fused", None)
    if fused is not None and _triton.enabled(flat, masks):
        from rankseg._triton import rma as kernels

        if kernels.supports_resolve(*fused):
            labels = kernels.resolve(flat, masks, *fused, unassigned_policy, void_index)
            return labels.reshape((n_img,) + tuple(probs.shape[2:]))
    count = selection_count(masks)
    labels = resolve(flat, masks, count, gains(flat, masks, count), unassigned_policy, void_index)
    return labels.reshape((n_img,) + tuple(probs.shape[2:]))
