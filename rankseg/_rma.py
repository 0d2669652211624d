"""RankSEG-RMA: the reciprocal-moment approximation of the expected Dice / IoU (Wang & Dai, 2025).

Per row (one image, one class) with mu = sum(p) and the top-tau set of size tau and mass S, the RMA scores are

    Dice:  2 S / (mu + tau + 1 + s) + s / (mu + tau + s)        IoU:  (S + s) / (mu - S + tau + s)

and tau = 0 scores s / (mu + s) (0 when s = 0). Ties go to the smaller tau.

Dice with s = 0 and IoU with any s are ratios of two set functions that are linear in the selected pixels,
so the optimum is a threshold on p and no sort is needed: the Dinkelbach iteration v <- score({p > cut(v)}),
with cut(v) = v / 2 (Dice) or v / (1 + v) (IoU), rises monotonically to the optimum and stops when the set no
longer changes (a handful of passes). The smallest optimal set is {p > cut(v*)}, which is what the sort-based
reference returns under its smaller-tau tie rule. Dice with s > 0 is a sum of two ratios; it uses a sort.
"""

from __future__ import annotations

import torch

from rankseg import _multiclass
from rankseg._common import row_chunks, row_sums64, sort_descending, threshold_below, top_tau_mask
from rankseg._validation import (
    check_policy,
    check_prob_values,
    check_probs_structure,
    check_pruning_prob,
    check_safe_screening,
    check_smooth,
)

__all__ = ["rankseg_rma"]

_MAX_ITERS = 200


class _Ratio:
    """The ratio objective of one metric: score(S, n), the cut c(v) and F(v) = max_A [num(A) - v den(A)].

    Dice (s = 0): num = 2 S, den = mu + 1 + n, c(v) = v / 2.
    IoU: num = S + s, den = mu + s + n - S, c(v) = v / (1 + v).
    F is convex, decreasing, F(v*) = 0 at the optimal score v*, its slope is at most -(mu + 1) (Dice) or
    -(mu + s) (IoU), and F(v) = k(v) * sum_i max(p_i - c(v), 0) + const(v) needs one cheap pass.
    """

    def __init__(self, metric: str, smooth: float, mu: torch.Tensor) -> None:
        self.dice = metric == "dice"
        self.s = smooth
        self.mu = mu
        self.slope = mu + 1 if self.dice else (mu + smooth).clamp_min(1e-300)

    def score(self, total: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        if self.dice:
            return 2 * total / (self.mu + n + 1)
        den = self.mu - total + n + self.s
        return torch.where(den > 0, (total + self.s) / den.clamp_min(1e-300), torch.zeros_like(den))

    def cut(self, v: torch.Tensor) -> torch.Tensor:
        return v / 2 if self.dice else v / (1 + v)

    def f_from_excess(self, v: torch.Tensor, excess: torch.Tensor) -> torch.Tensor:
        """F(v) from excess = sum_i max(p_i - c(v), 0)."""
        if self.dice:
            return 2 * excess - v * (self.mu + 1)
        return (1 + v) * excess + self.s - v * (self.mu + self.s)


def _dinkelbach(p: torch.Tensor, obj: _Ratio, thr: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Iterate v <- score({p > c(v)}) from the set {p > thr} until the set stops changing.

    ``p`` may be zero-padded (zeros are never selected because thresholds are >= 0) and only entries where
    ``valid`` is True are counted. Returns the final cut in float64; the optimal set is {p > cut}.
    """
    f64 = torch.float64
    sel = (p > thr.unsqueeze(1)) & valid
    n = sel.sum(1)
    for _ in range(_MAX_ITERS):
        cut = obj.cut(obj.score(torch.where(sel, p, 0).sum(1, dtype=f64), n.to(f64)))
        sel = (p > cut.unsqueeze(1)) & valid
        n_new = sel.sum(1)
        if torch.equal(n_new, n):
            break  # the selected set no longer changes: its score is optimal
        n = n_new
    return cut


def _ratio_cut(p: torch.Tensor, metric: str, smooth: float) -> torch.Tensor:
    """Optimal threshold per row for the ratio objectives (Dice with s = 0, IoU): select p > result.

    Phase 1 brackets the optimal score v* from below with secant steps on F (one clamp-and-sum pass each;
    from the left of the root of a convex decreasing F every secant step stays a lower bound). Phase 2 gathers
    the pixels above the lower bound's cut (a superset of the optimal set, usually only slightly larger) and
    runs the exact Dinkelbach iteration on them. F at the lower bound is recomputed exactly on the gathered
    pixels; a row where float32 rounding broke the bound falls back to the iteration over the whole row.

    Shape:
        p: (r, d) float32/float64.  output: (r,) in p's dtype.
    """
    f64 = torch.float64
    obj = _Ratio(metric, smooth, p.sum(1, dtype=f64))
    d = p.shape[1]
    # v0 = 0 (F = num of the empty set's bound) and v1 = score of the whole row: both lower bounds.
    v_prev = torch.zeros_like(obj.mu)
    f_prev = 2 * obj.mu if obj.dice else obj.mu + smooth
    v = obj.score(obj.mu, torch.full_like(obj.mu, d))
    for _ in range(_MAX_ITERS):
        c = obj.cut(v).to(p.dtype).unsqueeze(1)
        f = obj.f_from_excess(v, (p - c).clamp_min_(0).sum(1, dtype=f64))
        if bool(((f / obj.slope) <= 1e-4 * v).all()):
            break
        step = f * (v - v_prev) / (f_prev - f).clamp_min(1e-300)
        v_prev, f_prev = v, f
        v = torch.where(f > 0, v + step, v)
    v_lo = (v * (1 - 1e-6)).clamp_min(0)

    cut_lo = obj.cut(v_lo)
    thr = threshold_below(cut_lo, p.dtype)
    sel = p > thr.unsqueeze(1)
    n = sel.sum(1)
    vals = p[sel]
    pos = torch.arange(vals.numel(), device=p.device) - torch.repeat_interleave(n.cumsum(0) - n, n)
    rid = torch.repeat_interleave(torch.arange(p.shape[0], device=p.device), n)
    packed = torch.zeros(p.shape[0], int(n.max()) if n.numel() else 0, dtype=p.dtype, device=p.device)
    packed[rid, pos] = vals
    valid = torch.zeros(packed.shape, dtype=torch.bool, device=p.device)
    valid[rid, pos] = True
    excess = torch.where(valid, packed.to(f64) - cut_lo.unsqueeze(1), 0).sum(1)
    ok = obj.f_from_excess(v_lo, excess) >= 0
    cut = _dinkelbach(packed, obj, thr, valid)
    if not bool(ok.all()):
        bad = (~ok).nonzero().squeeze(1)
        sub = _Ratio(metric, smooth, obj.mu[bad])
        full = torch.ones(p[bad].shape, dtype=torch.bool, device=p.device)
        cut[bad] = _dinkelbach(p[bad], sub, torch.full_like(sub.mu, 0.5).to(p.dtype), full)
    return threshold_below(cut, p.dtype)


def _dice_smooth_tau(vals: torch.Tensor, smooth: float) -> torch.Tensor:
    """RMA Dice tau for s > 0 from rows sorted in descending order; ties to the smaller tau.

    Scores are shifted by -1 (pi - 1 = 2S/(N + 1) - (mu + tau)/N with N = mu + tau + s), which keeps their
    differences exact in float64 even for very large s.
    """
    f64 = torch.float64
    cums = vals.cumsum(1, dtype=f64)
    mu = cums[:, -1:]
    tau = torch.arange(0, vals.shape[1] + 1, device=vals.device, dtype=f64).unsqueeze(0)
    total = torch.cat([torch.zeros_like(mu), cums], 1)
    big_n = mu + tau + smooth
    score = 2 * total / (big_n + 1) - (mu + tau) / big_n
    return score.argmax(1)


def rma_row_masks(rows: torch.Tensor, metric: str, smooth: float, solve: torch.Tensor) -> torch.Tensor:
    """RMA masks for every row; rows with ``solve`` False stay empty.

    Shape:
        rows: (R, d) compute dtype.  solve: (R,) bool.  output: (R, d) bool.
    """
    out = torch.zeros(rows.shape, dtype=torch.bool, device=rows.device)
    idx = solve.nonzero().squeeze(1)
    if idx.numel() == 0:
        return out
    input_bytes = rows.numel() * rows.element_size()
    use_sort = metric == "dice" and smooth > 0
    # Measured peak temporaries per pixel of a chunk (float32 rows, including the output mask): the sort
    # path ~61-67 bytes, the threshold path ~41-50 (float64 sums, packing of the candidate pixels).
    per_row = rows.shape[1] * (72 if use_sort else 56)
    for sl in row_chunks(idx.numel(), per_row, input_bytes, rows.device):
        ids = idx[sl]
        p = rows[ids]
        if use_sort:
            vals = sort_descending(p)
            out[ids] = top_tau_mask(p, vals, _dice_smooth_tau(vals, smooth))
        else:
            out[ids] = p > _ratio_cut(p, metric, smooth).unsqueeze(1)
    return out


def rma_delta(probs: torch.Tensor, masks: torch.Tensor, metric: str, smooth: float):
    """Increment functions (0.0.8's "RMA-score") for the multiclass overlap resolution.

    Returns the selection count per pixel and ``delta(p, image_index)``: the RMA score gain of adding each
    pixel to each class's uniquely-owned set.
    """
    tau, mass, count = _multiclass.owned_stats(probs, masks)
    mu = row_sums64(probs)
    s = smooth
    if metric == "dice":
        # Dice gain is affine in p: a * p + b.
        big_n = mu + tau + s
        a = 2 / (big_n + 2)
        b = 2 * mass / (big_n + 2) - 2 * mass / (big_n + 1)
        if s > 0:
            b = b + s / (big_n + 1) - s / big_n

        def delta(p: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
            return a[img] * p.to(torch.float64) + b[img]

    else:
        base = tau + mu - mass + s
        num0 = mass + s
        old = torch.where(base > 0, num0 / base.clamp_min(1e-300), torch.zeros_like(base))

        def delta(p: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
            p = p.to(torch.float64)
            return (num0[img] + p) / (base[img] + 1 - p) - old[img]

    return count, delta


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
    if metric not in ("dice", "iou"):
        raise ValueError("metric should be iou or dice")
    if output_mode not in ("multiclass", "multilabel"):
        raise ValueError("output_mode should be multiclass or multilabel")
    if unassigned_policy == "void" and output_mode != "multiclass":
        raise ValueError("unassigned_policy='void' is only supported when output_mode='multiclass'")
    if void_index != 255 and (output_mode != "multiclass" or unassigned_policy != "void"):
        raise ValueError("a non-default void_index requires output_mode='multiclass' and unassigned_policy='void'")
    smooth = check_smooth(smooth)
    pruning_prob = check_pruning_prob(pruning_prob)
    check_safe_screening(safe_screening)
    with torch.no_grad():
        check_prob_values(probs)
        if output_mode == "multiclass":
            unassigned_policy, void_index = check_policy(unassigned_policy, void_index, probs.shape[1])
        return _rma(probs, metric, smooth, output_mode, pruning_prob, unassigned_policy, void_index)


def _rma(probs, metric, smooth, output_mode, pruning_prob, unassigned_policy, void_index) -> torch.Tensor:
    # ~40 bytes per pixel and class for the increments: gathered probabilities, masks and float64 gains.
    return _multiclass.solve(
        probs,
        lambda rows, solve: rma_row_masks(rows, metric, smooth, solve),
        lambda flat, masks: rma_delta(flat, masks, metric, smooth),
        output_mode,
        pruning_prob,
        unassigned_policy,
        void_index,
        8 * 5,
    )
