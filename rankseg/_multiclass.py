"""Turning per-class masks into one label map (0.0.8's overlap resolution, any solver's scores).

Each class first solves its own binary problem. A pixel selected by exactly one class keeps it. A pixel selected
by several classes goes to the one whose score rises most when the pixel is added to its uniquely-owned set
(ties: lowest class index). A pixel selected by none goes, under ``unassigned_policy="max_score"``, to the active
class (one that selected something in that image; every class if none did) with the largest increment, or gets
``void_index`` under ``"void"``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rankseg._common import as_rows, prune_rows, row_chunks, row_max, row_sums64

# delta(p, image_index) -> increments: p is (n, C) probabilities of n pixels, image_index (n,) their image.
DeltaFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# gains(images) -> increments (b, C, d) for a slice of images, every pixel and class (cheap enough for the RMA
# scores and for the exact scores' polynomial form, and it avoids gathering pixels across the class dim).
DenseFn = Callable[[slice], torch.Tensor]
# Ineligible classes get this score: below any increment (|increment| <= 2 for Dice and IoU scores).
_BIG = 1e30


def owned_stats(probs: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per (image, class): size and probability mass of the uniquely-owned pixels, and the selection count.

    Shape:
        probs: (B, C, d) compute dtype.  masks: (B, C, d) bool.
        output: tau (B, C) float64, mass (B, C) float64, count (B, d) int64.
    """
    # Summing a bool tensor directly first copies it to int64 (8 bytes per pixel and class); a narrow
    # accumulator and chunked float64 sums keep the temporaries small.
    count = selection_count(masks)
    unique = masks & (count == 1).unsqueeze(1)
    tau = row_sums64(unique.view(torch.uint8))
    mass = row_sums64(probs, unique)
    return tau, mass, count


def _owner(masks: torch.Tensor) -> torch.Tensor:
    """The selecting class of every pixel that exactly one class selects (other pixels: any value).

    Shape: (B, C, d) bool -> (B, d) int64.
    """
    n_cls = masks.shape[1]
    if n_cls > 256:
        return masks.to(torch.uint8).argmax(1)
    # Sum of the selecting classes' indices: exact where one class selects (wraps elsewhere, which is
    # overwritten), and a plain reduction instead of a strided argmax over the class dimension.
    classes = torch.arange(n_cls, dtype=torch.uint8, device=masks.device).view(1, n_cls, 1)
    return (masks.view(torch.uint8) * classes).sum(1, dtype=torch.uint8).long()


def resolve(
    probs: torch.Tensor,
    masks: torch.Tensor,
    count: torch.Tensor,
    delta: DeltaFn,
    unassigned_policy: str,
    void_index: int,
    delta_bytes_per_pixel: int,
) -> torch.Tensor:
    """Label map from per-class masks.

    Shape:
        probs: (B, C, d).  masks: (B, C, d) bool.  count: (B, d) number of classes selecting each pixel.
        output: (B, d) int64.
    """
    n_img, n_cls, _ = masks.shape
    labels = _owner(masks)
    if unassigned_policy == "void":
        labels = torch.where(count == 0, torch.full_like(labels, void_index), labels)
        need = count >= 2
    else:
        need = count != 1
    img_idx, pix_idx = need.nonzero(as_tuple=True)
    if img_idx.numel() == 0:
        return labels
    active = masks.any(2)
    active = active | ~active.any(1, keepdim=True)  # an image with no active class: every class is eligible
    input_bytes = probs.numel() * probs.element_size()
    for sl in row_chunks(img_idx.numel(), n_cls * delta_bytes_per_pixel, input_bytes, probs.device):
        bi, pi = img_idx[sl], pix_idx[sl]
        p = probs[bi, :, pi]  # (n, C)
        sel = masks[bi, :, pi]
        eligible = torch.where((count[bi, pi] >= 1).unsqueeze(1), sel, active[bi])
        gain = delta(p, bi)
        gain = torch.where(eligible, gain, torch.full_like(gain, -float("inf")))
        labels[bi, pi] = gain.argmax(1)
    return labels


def selection_count(masks: torch.Tensor) -> torch.Tensor:
    """Number of classes selecting each pixel. Shape: (B, C, d) bool -> (B, d) int64."""
    narrow = torch.uint8 if masks.shape[1] < 256 else torch.int32
    return masks.view(torch.uint8).sum(1, dtype=narrow).long()


def first_argmax(x: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum over dim 1, like ``x.argmax(1)`` but without its slow strided loop on CPU.

    The maximum is a plain reduction; the first class reaching it is the largest of (C - c) over the hits.

    Shape: (b, C, d) -> (b, d) int64.
    """
    n_cls = x.shape[1]
    best = x.amax(1, keepdim=True)
    if x.device.type == "cpu" and x.is_contiguous():
        hit = torch.from_numpy(np.equal(x.numpy(), best.numpy()))
    else:
        hit = x == best
    wdtype = torch.uint8 if n_cls < 256 else torch.int32
    weights = torch.arange(n_cls, 0, -1, dtype=wdtype, device=x.device).view(1, n_cls, 1)
    hits = hit.view(torch.uint8) if wdtype == torch.uint8 else hit.to(wdtype)
    return n_cls - (hits * weights).amax(1).long()


def resolve_dense(
    probs: torch.Tensor,
    masks: torch.Tensor,
    count: torch.Tensor,
    gains: DenseFn,
    unassigned_policy: str,
    void_index: int,
) -> torch.Tensor:
    """Label map from per-class masks with increments evaluated for every pixel and class.

    Every pixel takes the first class with the largest increment among its eligible ones: the selecting
    classes when some class selects it (which makes single-selection pixels keep their class), the active
    classes otherwise. Images are processed in chunks that keep the (b, C, d) temporaries within 3x the input.

    Shape:
        probs: (B, C, d).  masks: (B, C, d) bool.  count: (B, d).  output: (B, d) int64.
    """
    n_img, n_cls, d = masks.shape
    labels = torch.empty(n_img, d, dtype=torch.int64, device=probs.device)
    active = masks.view(torch.uint8).amax(2) > 0  # (a bool any() over the pixels is 40x slower on CPU)
    active = active | ~active.any(1, keepdim=True)  # an image with no active class: every class is eligible
    unassigned = count == 0
    # Temporaries per pixel and class: the increments and the eligibility factor in p's dtype plus two bool
    # masks, i.e. 2.5x a float32 input; chunks of images may use up to 3x the input (the budget for the
    # whole call is 4x).
    input_bytes = probs.numel() * probs.element_size()
    per_image = n_cls * d * (2 * probs.element_size() + 2)
    for sl in row_chunks(n_img, per_image, 3 * input_bytes, probs.device):
        gain = gains(sl)
        # eligible: selecting classes, or every pixel of an active class where nothing is selected
        keep = (masks[sl] | unassigned[sl].unsqueeze(1)).view(torch.uint8).to(gain.dtype)
        gain.mul_(keep)
        gain.add_(keep.sub_(1).mul_(_BIG))  # 0 where eligible, -BIG elsewhere (exact, no rounding of gain)
        inactive = ~active[sl]
        if bool(inactive.any()):
            gain.masked_fill_(inactive.unsqueeze(2), -2 * _BIG)
        labels[sl] = first_argmax(gain)
        del gain, keep
    if unassigned_policy == "void":
        labels.masked_fill_(unassigned, void_index)
    return labels


def solve(
    probs: torch.Tensor,
    row_masks: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    deltas: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, DeltaFn]],
    output_mode: str,
    pruning_prob: float,
    unassigned_policy: str,
    void_index: int,
    delta_bytes_per_pixel: int,
    maxima: torch.Tensor | None = None,
    dense: bool = False,
) -> torch.Tensor:
    """Run a per-row solver and shape its output: bool masks (multilabel) or a resolved label map (multiclass).

    Args:
        probs: (B, C, *spatial) probabilities.
        row_masks: ``(rows, solve, maxima) -> masks`` on the (B * C, d) row view; rows with ``solve`` False
            stay empty; ``maxima`` are the rows' largest values.
        deltas: the solver's own increments: ``(probs (B, C, d), masks (B, C, d)) -> (count, delta)`` with a
            :data:`DeltaFn` evaluated on the pixels that need it, or, when ``dense``,
            ``(probs, masks, count) -> gains``, a :data:`DenseFn`.
        delta_bytes_per_pixel: temporary bytes ``delta`` needs per pixel and class (sizes its chunks).
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
    if dense:
        count = selection_count(masks)
        labels = resolve_dense(flat, masks, count, deltas(flat, masks, count), unassigned_policy, void_index)
    else:
        count, delta = deltas(flat, masks)
        labels = resolve(flat, masks, count, delta, unassigned_policy, void_index, delta_bytes_per_pixel)
    return labels.reshape((n_img,) + tuple(probs.shape[2:]))
