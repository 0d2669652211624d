"""RankSEG-RMA: the reciprocal-moment approximation of the expected Dice / IoU (Wang & Dai, 2025).

Per row (one image, one class) with mu = sum(p) and the top-tau set of size tau and mass S, the RMA scores are

    Dice:  2 S / (mu + tau + 1 + s) + s / (mu + tau + s)        IoU:  (S + s) / (mu - S + tau + s)

and tau = 0 scores s / (mu + s) (0 when s = 0). Ties go to the smaller tau.

Dice with s = 0 and IoU with any s are ratios of two set functions that are linear in the selected pixels,
so the optimum is a threshold on p and no sort is needed (:mod:`rankseg._band`): a sample of each row and one
exact count-and-sum pass bracket the optimal score, the pixels between the bracket's cuts are gathered, and
the Dinkelbach iteration v <- score({p > cut(v)}) on them alone (cut(v) = v / 2 for Dice, v / (1 + v) for
IoU) finds the smallest optimal set {p > cut(v*)}, which is what the sort-based reference returns under its
smaller-tau tie rule. Dice with s > 0 is a sum of two ratios; it sorts its rows.

On CUDA (float32, triton importable) the ratio objectives run as fused Triton passes instead
(:mod:`rankseg._triton.rma`): one read for a per-row histogram of the values, one read that writes the mask
and gathers the band of undecided pixels (bins around the cut certified by the histogram), Dinkelbach steps on
the band alone; one host sync sizes the band buffer. The torch code here stays the reference they are tested
against.

Multiclass output uses 0.0.8's increments, evaluated for every pixel and class with its formulas and working
dtype (:func:`rma_gains`, :mod:`rankseg._multiclass`).
"""

from __future__ import annotations

import numpy as np
import torch

from rankseg import _multiclass, _triton
from rankseg._band import (
    RMA_SAMPLE,
    Ratio,
    band_dinkelbach,
    band_for_bracket,
    mask_above,
    ratio_bracket,
    ratio_masks_at_estimate,
    start_score,
)
from rankseg._common import (
    fixed_bits,
    masks_by_chunks,
    row_chunks,
    scratch,
    sort_descending,
    top_tau_mask,
    use_numpy,
)
from rankseg._validation import check_probs_structure, check_rma_args

__all__ = ["rankseg_rma"]


def _ratio_masks(p: torch.Tensor, metric: str, smooth: float, width: int, p_max: torch.Tensor) -> torch.Tensor:
    """RMA masks for the ratio objectives (Dice with s = 0, IoU with any s), without sorting.

    The optimum is a threshold on p (see :mod:`rankseg._band`): a sample and one exact pass bracket the
    optimal score, the pixels whose values lie between the bracket's cuts are gathered, and Dinkelbach steps
    on them alone find the cut of the smallest optimal set (the sort-based rule's smaller-tau tie).

    Shape:
        p: (r, d) float32/float64.  p_max: (r,) row maxima.  output: (r, d) bool.
    """
    f64 = torch.float64
    ratio = Ratio(metric, smooth, p.sum(1).to(f64))
    # The best single pixel is a feasible set: its score is a floor for the prediction.
    v, _ = start_score(p, ratio, p_max, width, RMA_SAMPLE)
    work = scratch(p.shape, p.dtype, p.device)
    if use_numpy(p) and p.dtype in (torch.float32, torch.float64) and p.is_contiguous():
        return ratio_masks_at_estimate(p, ratio, v, work)
    bracket = ratio_bracket(p, ratio, v, work)
    band = band_for_bracket(p, ratio, bracket, work=work, sort=False)
    del work
    return mask_above(band, band_dinkelbach(band, ratio, bracket.v_lo))


def _sorted_tau(vals: torch.Tensor, metric: str, smooth: float) -> torch.Tensor:
    """RMA tau from rows sorted in descending order (Dice with s > 0, IoU with s > 1e6); ties to the smaller tau.

    Dice scores are shifted by -1 (pi - 1 = 2S/(N + 1) - (mu + tau)/N with N = mu + tau + s), which keeps their
    differences exact in float64. Above s = 1e6 both metrics use the scores scaled by s, s (pi - 1), as 0.0.8
    does: Dice 2S/(1 + (a + 1)/s) - a/(1 + a/s), IoU (2S - a)/(1 + (a - S)/s), a = mu + tau. Their first-order
    terms (2S - a) then decide exactly, so as s grows the rule tends to p > 1/2 with p = 1/2 left out; the
    unscaled differences, O(1/s^2) there, would be rounding noise.

    Shape:
        vals: (R, d) sorted descending.  output: (R,) int64 in [0, d].
    """
    f64 = torch.float64
    cums = vals.cumsum(1, dtype=f64)
    mu = cums[:, -1:]
    tau = torch.arange(0, vals.shape[1] + 1, device=vals.device, dtype=f64).unsqueeze(0)
    total = torch.cat([torch.zeros_like(mu), cums], 1)
    a = mu + tau
    if smooth > _SCALED_SMOOTH:
        if metric == "dice":
            score = 2 * total / (1 + (a + 1) / smooth) - a / (1 + a / smooth)
        else:
            score = (2 * total - a) / (1 + (a - total) / smooth)
    else:
        big_n = a + smooth
        score = 2 * total / (big_n + 1) - a / big_n
    return score.argmax(1)


def rma_row_masks(
    rows: torch.Tensor,
    metric: str,
    smooth: float,
    solve: torch.Tensor,
    width: int = 1,
    maxima: torch.Tensor | None = None,
) -> torch.Tensor:
    """RMA masks for every row; rows with ``solve`` False stay empty.

    Args:
        width: the last spatial size (the sampling stride is chosen coprime with it).
        maxima: the rows' largest values, if known.

    Shape:
        rows: (R, d) compute dtype.  solve: (R,) bool.  output: (R, d) bool.
    """
    use_sort = (metric == "dice" and smooth > 0) or smooth > _SCALED_SMOOTH
    if not use_sort and _triton.enabled(rows):
        from rankseg._triton import rma as fused

        return fused.ratio_masks(rows, metric, smooth, solve)

    def solve_chunk(p: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if use_sort:
            vals = sort_descending(p)
            return top_tau_mask(p, vals, _sorted_tau(vals, metric, smooth))
        return _ratio_masks(p, metric, smooth, width, p.amax(1) if maxima is None else maxima[ids])

    # Peak temporaries per pixel of a chunk (float32 rows): the sort path ~61-67 bytes; the band path one
    # row-sized scratch tensor (which also holds a bool temporary) besides the output mask.
    return masks_by_chunks(rows, solve, rows.shape[1] * (72 if use_sort else rows.element_size()), solve_chunk)


# 0.0.8 switches to scaled increments above this smoothing (differences would round away otherwise).
_SCALED_SMOOTH = 1e6


def _fixed_row_sums(p: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row sums of float32 values, all and where ``mask``, each rounded once from an exact int64 fixed-point sum.

    Values are truncated to multiples of 2^-fx (:func:`rankseg._common.fixed_bits`; p 2^fx is exact in float32)
    and added as integers, so the results do not depend on the order of the additions: NumPy, torch (any
    device) and the Triton kernels (:mod:`rankseg._triton.rma`) get the same bits, hence the same labels.

    Shape: p (b, C, d) float32, mask (b, C, d) bool -> two (b, C, 1) float32.
    """
    b, c, d = p.shape
    bits = fixed_bits(d)
    scale = float(2**bits)
    total = torch.zeros(b, c, dtype=torch.int64, device=p.device)
    masked = torch.zeros_like(total)
    host = use_numpy(p) and p.is_contiguous() and mask.is_contiguous()
    for sl in row_chunks(d, b * c * 16, max(p.numel(), 2**20), p.device):
        if host:
            q = np.multiply(p[:, :, sl].numpy(), np.float32(scale)).astype(np.int64)
            total += torch.from_numpy(q.sum(2))
            masked += torch.from_numpy(np.add.reduce(q, axis=2, where=mask[:, :, sl].numpy()))
        else:
            q = p[:, :, sl] * scale  # exact in float32; the int64 sums truncate each value as they read it
            total += q.sum(2, dtype=torch.int64)
            masked += q.masked_fill_(~mask[:, :, sl], 0).sum(2, dtype=torch.int64)
    unit = 2.0**-bits
    return tuple((x.to(torch.float64) * unit).to(p.dtype).unsqueeze(2) for x in (total, masked))


def _masked_row_sums(p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sums over the last dim of the entries where ``mask`` is True, in p's dtype. Shape: (b, C, d) -> (b, C, 1)."""
    if use_numpy(p) and p.is_contiguous() and mask.is_contiguous():
        out = np.add.reduce(p.numpy(), axis=2, where=mask.numpy(), keepdims=True)
        return torch.from_numpy(np.ascontiguousarray(out))
    return torch.where(mask, p, 0).sum(2, keepdim=True)


def rma_gains(metric: str, smooth: float):
    """Dense RMA increments (0.0.8's "RMA-score") for the multiclass overlap resolution.

    For each image and class with uniquely-owned set A (size tau, mass m) and row mean mu, the increment of
    adding a pixel of probability p, with 0.0.8's formulas and working dtype:

    * Dice, s = 0:  2 (p - m / D) / (D + 1) with D = tau + mu + 1 (the factored difference of the scores);
    * Dice, s > 0:  2 (p N - m) / (N (N + 1)) - s / ((N - 1) N) with N = D + s (-1 for an empty, certainly
      empty class), rescaled by s above s = 1e6;
    * IoU:  (p - b (1 - p)) / (E + 1 - p) with E = tau + mu - m + s and b = (m + s) / E (0/0 = 0), rescaled
      above s = 1e6.

    Returns:
        ``(probs (B, C, d), masks, count) -> gains``, a :data:`rankseg._multiclass.GainsFn` factory.
    """
    s = smooth

    def prepare(probs: torch.Tensor, masks: torch.Tensor, count: torch.Tensor):
        unique = masks & (count == 1).unsqueeze(1)
        if probs.dtype == torch.float32:  # order-free sums: the same labels on every path
            pb_mean, m = _fixed_row_sums(probs, unique)
        else:
            pb_mean, m = probs.sum(2, keepdim=True), _masked_row_sums(probs, unique)
        tau = unique.view(torch.uint8).sum(2, keepdim=True, dtype=torch.int32).to(probs.dtype)
        del unique
        # The expressions and their evaluation order are 0.0.8's, so the increments round identically.
        if metric == "dice":
            offset = tau + pb_mean + 1
            if s == 0:
                k1, k2 = m / offset, 2.0 / (offset + 1)
                return lambda sl: (probs[:, :, sl] - k1).mul_(k2)
            if s > _SCALED_SMOOTH:
                base, mid, nxt = 1.0 + (offset - 1) / s, 1.0 + offset / s, 1.0 + (offset + 1) / s

                def scaled(sl: slice) -> torch.Tensor:
                    return 2 * (probs[:, :, sl] * mid - m / s) / (mid * nxt) - 1.0 / (base * mid)

                return scaled
            denom = offset + s
            base = denom - 1
            safe = torch.where(base == 0, torch.ones_like(base), base)

            def smoothed(sl: slice) -> torch.Tensor:
                raw = 2 * (probs[:, :, sl] * denom - m) / (denom * (denom + 1))
                raw -= s / (safe * denom)
                return torch.where(base == 0, torch.full_like(raw, -1.0), raw)

            return smoothed
        offset = tau + pb_mean - m
        if s > _SCALED_SMOOTH:
            mid = 1.0 + offset / s

            def iou_scaled(sl: slice) -> torch.Tensor:
                p = probs[:, :, sl]
                nxt = 1.0 + (offset - p + 1) / s
                return (p * mid - (1.0 + m / s) * (1.0 - p)) / (mid * nxt)

            return iou_scaled
        denom = offset + s
        safe = torch.where(denom == 0, torch.ones_like(denom), denom)
        base = (m + s) / safe

        def iou(sl: slice) -> torch.Tensor:
            p = probs[:, :, sl]
            rest = 1 - p
            raw = p - base * rest
            return raw.div_(denom + rest)

        return iou

    # the fused resolution on CUDA (rankseg._triton.rma.resolve) evaluates these increments itself
    prepare.fused = (metric, smooth)
    return prepare


def rankseg_rma(
    probs: torch.Tensor,
    metric: str = "dice",
    smooth: float = 0.0,
    output_mode: str = "multiclass",
    pruning_prob: float = 0.5,
    unassigned_policy: str = "max_score",
    void_index: int = 255,
    safe_screening: bool | str = False,
) -> torch.Tensor:
    """RankSEG with the RMA solver (Dice or IoU), without a sort for Dice (s = 0) and IoU.

    Args:
        probs: probabilities (B, C, *spatial), values in [0, 1].
        metric: "dice" or "iou".
        smooth: smoothing constant s >= 0 of the target metric.
        output_mode: "multilabel" (one binary mask per class, masks may overlap) or "multiclass" (label map).
        pruning_prob: a class whose largest probability in an image is <= this gets an empty mask.
        unassigned_policy: multiclass only: "max_score" or "void" for pixels no class selects.
        void_index: label written for unassigned pixels under the "void" policy.
        safe_screening: accepted for compatibility with 0.0.8; the threshold solver needs no screening.

    Returns:
        multilabel: bool (B, C, *spatial); multiclass: int64 (B, *spatial). On the input's device.
    """
    check_probs_structure(probs)
    with torch.no_grad():
        metric, smooth, output_mode, pruning_prob, policy, void_index, maxima = check_rma_args(
            probs, metric, smooth, output_mode, pruning_prob, unassigned_policy, void_index, safe_screening
        )
        return _rma(probs, metric, smooth, output_mode, pruning_prob, policy, void_index, maxima)


def _rma(probs, metric, smooth, output_mode, pruning_prob, unassigned_policy, void_index, maxima=None) -> torch.Tensor:
    return _multiclass.solve(
        probs,
        lambda rows, solve, mx: rma_row_masks(rows, metric, smooth, solve, probs.shape[-1], mx),
        rma_gains(metric, smooth),
        output_mode,
        pruning_prob,
        unassigned_policy,
        void_index,
        maxima,
    )
