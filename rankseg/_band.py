"""Partial sorts around a cut, so that no solver sorts whole rows.

Every solver keeps the tau largest probabilities of a row, and each score it maximises depends on the row
only through tau, the prefix sum S_tau of the sorted values and a few row-wide statistics. The optimum lies
next to the cut of the RMA ratio problem (:class:`Ratio`), which is found without sorting:

1. a strided sample of each row predicts the optimal ratio score v (:func:`estimate`);
2. one exact pass counts and sums the pixels above cut(v) (:func:`count_sum_above`); a Dinkelbach step and
   the convexity of the parametric function turn that into a certified bracket [v_lo, v_hi] of the optimal
   score, a few percent wide (:func:`ratio_bracket`);
3. one comparison pair and one nonzero over the rows gather the band, the pixels whose values lie between
   the bracket's cuts (optionally widened), with exact counts and sums above it (:func:`gather_band`);
4. the solver scores the band (sorted, or unsorted for the ratio objectives, :func:`band_dinkelbach`) and
   proves that no tau outside it can do better (:func:`superlevel_inside`);
5. the output mask is the band's lower comparison {p > lo} with the band pixels that lost their place
   cleared (:func:`clear`, :func:`mask_at_rank`).

RMA on CPU takes a shorter route (:func:`ratio_masks_at_estimate`): the pass of step 2 also writes the set
{p > cut(v)} as the output mask, and the sign of the Dinkelbach gap puts the optimal cut on one side of
cut(v), so the band has cut(v) as one end and needs one comparison, not two.

Shapes follow :mod:`rankseg._common`: ``p`` is a (r, d) block of rows in the compute dtype. On CPU the
pixel-level comparisons and gathers use NumPy, several times faster than torch there.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from rankseg._common import count_true, sort_descending, threshold_below, use_numpy

__all__ = [
    "Band",
    "Bracket",
    "above_band",
    "Ratio",
    "band_dinkelbach",
    "band_for_bracket",
    "clear",
    "count_sum_above",
    "estimate",
    "gather_band",
    "mask_above",
    "mask_at_rank",
    "power_sums",
    "ragged_count_sum",
    "ratio_bracket",
    "ratio_masks_at_estimate",
    "sample",
    "segment_sums",
    "start_score",
    "superlevel_inside",
]

_F64 = torch.float64
# Pixels per row of the sample that predicts the cut (a sort of this many values per row is cheap).
_SAMPLE = 1024
# The RMA estimate path (:func:`ratio_masks_at_estimate`) pays for every band pixel twice (its nonzero and its
# Dinkelbach steps): a larger sample, whose estimate leaves a narrower band, is worth its sort there.
RMA_SAMPLE = 2048
# Refine the bracket with another pass only while it is wider than this (relative): the band it spans is
# then still a small share of the row.
_BRACKET_TOL = 0.25
_MAX_PASSES = 6
# :func:`ratio_masks_at_estimate` gathers the band of brackets up to this wide (relative) rather than pay
# for the general path's further passes: a wider band costs little next to the fixed cost of that path.
_ESTIMATE_TOL = 1.0
# Relative slack on certified bounds: covers float32 rounding of the sums (~1e-7 relative).
_SLACK = 1e-5
# Relative slack of comparisons between scores computed from float32 sums (S, moments, power sums: ~1e-6
# relative at worst) and rigorous bounds, so that the certificates of the band solvers hold for the true scores.
SCORE_SLACK = 1e-6
_MAX_ITERS = 200
# Least entries of one block of int64 pixel indices over {p > lo} (2 MiB).
_INDEX_BLOCK = 2**18
# Values per chunk of the float64 power sums of a ragged array (1 MiB of float64).
_POWER_CHUNK = 2**17


def _on_cpu(t: torch.Tensor) -> bool:
    return use_numpy(t)


def sample(p: torch.Tensor, width: int, size: int = _SAMPLE) -> torch.Tensor:
    """About ``size`` pixels of each row, at a stride coprime with ``width`` (the last spatial size), so
    that the sample sweeps across image columns instead of repeating the same few.

    Shape:
        p: (r, d).  output: (r, m) contiguous, m = ceil(d / stride).
    """
    d = p.shape[1]
    k = max(1, d // size)
    while k > 1 and math.gcd(k, max(width, 1)) != 1:
        k += 1
    return p[:, ::k].contiguous()


class Ratio:
    """The ratio objectives max_A num(A) / den(A) over sets A of pixels (|A| = n, mass S, m a row mean).

    * Dice (smooth 0): num = 2 S, den = n + m + 1; the optimal set is {p > v / 2}.
    * IoU: num = S + s, den = m + s + n - S; the optimal set is {p > v / (1 + v)}.

    F(v) = max_A [num(A) - v den(A)] is convex and decreasing, F(v*) = 0 at the optimal score v*, the
    maximiser at v is {p > cut(v)}, and every slope of F is at most -``slope`` (-(m + 1), resp. -(m + s)).
    The smallest optimal set is {p > cut(v*)}, so ties go to the smaller n. For any threshold c,
    F(v) > 0 at v = cut^-1(c) exactly when c < cut(v*), and F(v) = num - v den of {p > c}: so
    score({p > c}) > cut^-1(c) certifies that c lies below the optimal cut.
    """

    def __init__(self, metric: str, smooth: float, m: torch.Tensor | np.ndarray) -> None:
        self.metric = metric
        self.dice = metric == "dice"
        self.s = 0.0 if self.dice else smooth
        self.m = m
        self.slope = (m + 1) if self.dice else _clamp_min(m + smooth, 1e-300)

    def take(self, idx: torch.Tensor) -> Ratio:
        """The same objective for a subset of the rows."""
        return Ratio(self.metric, self.s, self.m[idx])

    def numpy(self) -> Ratio:
        """The same objective on NumPy arrays (CPU): its methods then take and return arrays."""
        return Ratio(self.metric, self.s, self.m.numpy())

    def num_den(self, total, n):
        m = self.m if total.ndim == 1 else self.m[:, None]
        if self.dice:
            return 2 * total, n + m + 1
        return total + self.s, m + self.s + n - total

    def score(self, total, n):
        num, den = self.num_den(total, n)
        if self.dice:  # den = n + m + 1 >= 1
            return num / den
        return _where(den > 0, num / _clamp_min(den, 1e-300), 0.0)

    def cut(self, v):
        return v / 2 if self.dice else v / (1 + v)

    def gap(self, v, total, n):
        """num - v den of the set (total, n): F(v) when the set is {p > cut(v)}."""
        num, den = self.num_den(total, n)
        return num - (v if total.ndim == 1 else v[:, None]) * den


def _where(cond, a, b):
    """``where`` for torch tensors or NumPy arrays (b may be a Python scalar)."""
    if isinstance(cond, np.ndarray):
        return np.where(cond, a, b)
    return torch.where(cond, a, b)


def _clamp_min(x, low: float):
    return np.maximum(x, low) if isinstance(x, np.ndarray) else x.clamp_min(low)


def estimate(sub: torch.Tensor, d: int, ratio: Ratio) -> torch.Tensor:
    """Optimal ratio score predicted from a sample of each row: the sort-based rule on the sorted sample, with
    its counts and sums scaled by d / m.

    Shape:
        sub: (r, m).  output: (r,) float64.
    """
    vals = sort_descending(sub).to(_F64)
    scale = d / sub.shape[1]
    total = vals.cumsum(1).mul_(scale)
    n = torch.arange(1, vals.shape[1] + 1, device=sub.device, dtype=_F64).mul_(scale)
    return ratio.score(total, n.unsqueeze(0)).amax(1)


def start_score(
    p: torch.Tensor, ratio: Ratio, p_max: torch.Tensor, width: int, size: int = _SAMPLE
) -> tuple[torch.Tensor, torch.Tensor]:
    """The estimate that :func:`ratio_bracket` starts from: the prediction of a sample of about ``size``
    pixels per row (:func:`estimate`), at least the score of the best single pixel (a feasible set), and the
    sample itself.

    Shape:
        p: (r, d).  p_max: (r,) row maxima.  outputs: (r,) float64 and the (r, m) sample.
    """
    sub = sample(p, width, size)
    return torch.maximum(ratio.score(p_max.to(_F64), torch.ones_like(ratio.m)), estimate(sub, p.shape[1], ratio)), sub


# ---------------------------------------------------------------------------------------------- bracket


def count_sum_above(
    p: torch.Tensor, thr: torch.Tensor, work: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact count and float64 sum of the entries of each row strictly above ``thr``, in one pass.

    With t = max(p - thr, 0): t > 0 exactly where p > thr (IEEE subtraction of distinct numbers never gives
    0), the sum of t is S - n thr (small terms, so the float32 sum keeps S accurate, unlike a sum of
    max(p, thr)), and the sum of sign(t) is the count (exact in float32 below 2^24 pixels).

    Args:
        work: optional scratch tensor like ``p`` (overwritten); writing into it is several times faster than
            allocating a fresh row-sized temporary on CPU.

    Shape:
        p: (r, d).  thr: (r,) in p's dtype.  output: n (r,) int64, S (r,) float64.
    """
    t = torch.sub(p, thr.unsqueeze(1), out=work) if work is not None else p - thr.unsqueeze(1)
    t.clamp_min_(0)
    excess = t.sum(1).to(_F64)
    if p.dtype == torch.float32 and p.shape[1] >= 2**24:
        n = count_true(t > 0, 1)
    else:
        n = t.sign_().sum(1).round().to(torch.int64)
    return n, excess + n.to(_F64) * thr.to(_F64)


class Bracket(NamedTuple):
    """Certified bounds v_lo <= v* <= v_hi and exact statistics of one split {p > thr} (thr in the band)."""

    v_lo: torch.Tensor
    v_hi: torch.Tensor
    thr: torch.Tensor
    n: torch.Tensor
    total: torch.Tensor


def _pass(p: torch.Tensor, ratio: Ratio, v, work: torch.Tensor | None):
    """One exact pass at the estimate v: the split {p > cut(v)} and the bracket [lower, upper] it certifies.

    v and the outputs are NumPy arrays when ``ratio`` is (CPU), else tensors."""
    host = isinstance(v, np.ndarray)
    c = threshold_below(torch.from_numpy(ratio.cut(v)) if host else ratio.cut(v), p.dtype)
    n, total = count_sum_above(p, c, work)
    if host:
        c, n, total = c.numpy(), n.numpy(), total.numpy()
    lower = ratio.score(total, n)
    f = ratio.gap(v, total, n)
    upper = _where(f < 0, v, v + f / ratio.slope)
    return c, n, total, lower, upper


def ratio_bracket(p: torch.Tensor, ratio: Ratio, v: torch.Tensor, work: torch.Tensor | None = None) -> Bracket:
    """Certified bracket of the optimal ratio score of every row from an estimate v, by one exact pass.

    The pass counts and sums {p > cut(v)}: its score is a lower bound of v* (a Dinkelbach step, accurate to
    about the squared error of v), and F(v) = num - v den of that set bounds v* from above: v* <= v when
    F(v) < 0, else v* <= v + F(v) / slope. Rows whose bracket is still wider than 25% (the sample missed
    their object) get further passes from their lower bound. On CPU the per-row arithmetic runs in NumPy.

    Shape:
        p: (r, d).  v: (r,) float64.  outputs: (r,) each.
    """
    host = _on_cpu(p)
    if host:
        ratio, v = ratio.numpy(), v.numpy()
    maximum, minimum = (np.maximum, np.minimum) if host else (torch.maximum, torch.minimum)
    thr, n, total, v_lo, v_hi = _pass(p, ratio, v, work)
    for _ in range(_MAX_PASSES - 1):
        wide = (v_hi - v_lo) > _BRACKET_TOL * _clamp_min(v_lo, 1e-300)
        if not bool(wide.any()):
            break
        ids = np.flatnonzero(wide) if host else wide.nonzero().squeeze(1)
        rows = p[torch.from_numpy(ids)] if host else p[ids]
        c, n_t, s_t, lo_t, hi_t = _pass(rows, ratio.take(ids), v_lo[ids], None)
        thr[ids], n[ids], total[ids] = c, n_t, s_t
        v_lo[ids] = maximum(lo_t, v_lo[ids])
        v_hi[ids] = minimum(hi_t, v_hi[ids])
    if host:
        return Bracket(*(torch.from_numpy(x) for x in (v_lo, v_hi, thr, n, total)))
    return Bracket(v_lo, v_hi, thr, n, total)


# ---------------------------------------------------------------------------------------------- bands


class Band(NamedTuple):
    """The pixels of each row in (lo, hi] and exact statistics of the pixels above hi.

    Attributes:
        vals: (r, W) band values, padded with -1 after ``count`` entries; in decreasing order when gathered
            with ``sort=True``, else in pixel order.
        count: (r,) int64 band sizes.
        n_hi: (r,) int64 number of pixels > hi (ranks 1..n_hi), so the band holds ranks n_hi+1 .. n_hi+count.
        s_hi: (r,) float64 their sum.
        lo, hi: (r,) thresholds in p's dtype.
        above_lo: (r, d) bool, p > lo (a fresh tensor): the mask that keeps the whole band. Output masks
            start from it (:func:`clear`).
        flat, fvals: (N,) the band pixels in pixel order: flat index into (r, d) and value.
        starts: (r + 1,) offsets of each row's band pixels in ``flat`` / ``fvals``.
    """

    vals: torch.Tensor
    count: torch.Tensor
    n_hi: torch.Tensor
    s_hi: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    above_lo: torch.Tensor
    flat: torch.Tensor
    fvals: torch.Tensor
    starts: torch.Tensor

    def prefix(self) -> torch.Tensor:
        """S_tau for tau = n_hi + j, j = 0..W (float64; sorted bands; entries past ``count`` repeat)."""
        v = self.vals.to(_F64).clamp_min(0)
        return self.s_hi.unsqueeze(1) + torch.cat([torch.zeros_like(v[:, :1]), v.cumsum(1)], 1)

    def valid(self) -> torch.Tensor:
        """(r, W + 1) bool: j <= count, the ranks the band covers."""
        j = torch.arange(self.vals.shape[1] + 1, device=self.vals.device)
        return j.unsqueeze(0) <= self.count.unsqueeze(1)

    def per_pixel(self, x: torch.Tensor) -> torch.Tensor:
        """A per-row (r,) tensor repeated over each row's band pixels: (N,)."""
        if _on_cpu(x):
            return torch.from_numpy(np.repeat(x.numpy(), self.count.numpy()))
        return torch.repeat_interleave(x, self.count, output_size=self.fvals.numel())


def _bool_scratch(work: torch.Tensor | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A bool (r, d) NumPy array in the memory of a float scratch tensor (None if there is none)."""
    if work is None or not work.is_contiguous() or not use_numpy(work):
        return None
    size = shape[0] * shape[1]
    raw = work.view(torch.uint8).reshape(-1).numpy()
    return raw[:size].view(np.bool_).reshape(shape) if raw.size >= size else None


def _split_above(a: np.ndarray, above_lo: np.ndarray, hi: np.ndarray):
    """The pixels of {p > lo} split at hi: the band's flat indices and values, and the values of every pixel
    above lo in pixel order with the band's zeroed, with row offsets (NumPy, rows of ``a``).

    One nonzero over {p > lo}, taken in blocks of rows so that its int64 indices (8 bytes a pixel) stay
    within a quarter of the pixels or ``_INDEX_BLOCK`` entries, whichever is more.
    """
    r, d = a.shape
    step = max(1, max(_INDEX_BLOCK, r * d // 4) // max(d, 1))
    flats, bvals, parts = [], [], []
    counts = np.zeros(r, dtype=np.int64)
    for b0 in range(0, r, step):
        b1 = min(r, b0 + step)
        idx = np.flatnonzero(above_lo[b0:b1])
        vals = a[b0:b1].reshape(-1)[idx]
        starts = np.searchsorted(idx, np.arange(b1 - b0 + 1, dtype=np.int64) * d)
        counts[b0:b1] = np.diff(starts)
        pick = np.flatnonzero(vals <= np.repeat(hi[b0:b1], counts[b0:b1]))
        flats.append(idx[pick] + b0 * d)
        bvals.append(vals[pick])
        vals[pick] = 0
        parts.append(vals)
    starts_all = np.zeros(r + 1, dtype=np.int64)
    np.cumsum(counts, out=starts_all[1:])
    join = (lambda xs: xs[0]) if len(parts) == 1 else np.concatenate
    return join(flats), join(bvals), join(parts), starts_all


def gather_band(
    p: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    split: Bracket,
    work: torch.Tensor | None = None,
    sort: bool = True,
    with_above: bool = False,
):
    """The band values of each row in (lo, hi] and the exact count and sum above ``hi``.

    ``split`` holds exact statistics of {p > split.thr} with lo <= split.thr <= hi; the band pixels above
    split.thr are subtracted from them, so no pass over the pixels above the band is needed. Two comparisons
    and one nonzero over the rows; everything else touches band pixels only.

    Args:
        work: optional float scratch like ``p`` whose memory holds a bool temporary (CPU).
        sort: sort the packed band values (False leaves them in pixel order, for solvers that need no ranks).
        with_above: also return the pixels above the band as :func:`above_band` does (sharing its nonzero).

    Returns:
        the :class:`Band`, or (band, values, offsets) with ``with_above``.

    Shape:
        p: (r, d).  lo, hi: (r,) in p's dtype with lo <= split.thr <= hi.
    """
    r, d = p.shape
    if _on_cpu(p) and p.dtype in (torch.float32, torch.float64):
        a = p.detach().contiguous().numpy()
        above_lo = np.greater(a, lo.numpy()[:, None])
        grid = np.arange(r + 1, dtype=np.int64) * d
        if with_above:
            flat, fvals, vals_all, starts_all = _split_above(a, above_lo, hi.numpy())
            above_vals = (torch.from_numpy(vals_all), torch.from_numpy(starts_all))
        else:
            inside = np.less_equal(a, hi.numpy()[:, None], out=_bool_scratch(work, (r, d)))
            inside &= above_lo
            flat = np.flatnonzero(inside)
            fvals = a.reshape(-1)[flat]
            del inside
        starts = np.searchsorted(flat, grid)
        count = np.diff(starts)
        row = np.repeat(np.arange(r), count)
        above = fvals > split.thr.numpy()[row]
        n_hi = split.n.numpy() - np.bincount(row, weights=above, minlength=r).astype(np.int64)
        s_hi = split.total.numpy() - np.bincount(row, weights=np.where(above, fvals, 0), minlength=r)
        packed = np.full((r, max(int(count.max()) if r else 0, 1)), -1.0, dtype=a.dtype)
        packed[row, np.arange(flat.size) - starts[row]] = fvals
        if sort:
            packed = -np.sort(-packed, axis=1)
        out = (packed, count, n_hi, s_hi)
        vals, count, n_hi, s_hi = (torch.from_numpy(np.ascontiguousarray(x)) for x in out)
        flat, fvals, starts, above_lo = (torch.from_numpy(x) for x in (flat, fvals, starts, above_lo))
        band = Band(vals, count, n_hi, s_hi, lo, hi, above_lo, flat, fvals, starts)
        return (band, *above_vals) if with_above else band
    above_lo = p > lo.unsqueeze(1)
    inside = above_lo & (p <= hi.unsqueeze(1))
    flat = inside.reshape(-1).nonzero().squeeze(1)
    count = count_true(inside, 1)
    del inside
    starts = torch.cat([torch.zeros_like(count[:1]), count.cumsum(0)])
    row = flat // d
    fvals = p.reshape(-1)[flat]
    above = fvals > split.thr[row]
    n_hi = split.n - torch.zeros_like(split.n).index_add_(0, row, above.to(split.n.dtype))
    s_hi = split.total - torch.zeros_like(split.total).index_add_(0, row, torch.where(above, fvals, 0).to(_F64))
    packed = torch.full((r, max(int(count.max()) if r else 0, 1)), -1.0, dtype=p.dtype, device=p.device)
    packed[row, torch.arange(flat.numel(), device=p.device) - starts[row]] = fvals
    if sort:
        packed = torch.sort(packed, dim=1, descending=True).values
    band = Band(packed, count, n_hi, s_hi, lo, hi, above_lo, flat, fvals, starts)
    return (band, *above_band(p, band)) if with_above else band


def band_for_bracket(
    p: torch.Tensor,
    ratio: Ratio,
    br: Bracket,
    widen: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
    work: torch.Tensor | None = None,
    sort: bool = True,
    with_above: bool = False,
):
    """The band of cuts cut(v) for v in the bracket (with slack), optionally widened by ``widen`` (p units;
    a pair widens the lower and the upper end by different amounts). Returns what :func:`gather_band` does."""
    lo_c = ratio.cut(br.v_lo * (1 - _SLACK))
    hi_c = ratio.cut(br.v_hi * (1 + _SLACK) + 1e-300)
    if widen is not None:
        down, up = widen if isinstance(widen, tuple) else (widen, widen)
        lo_c, hi_c = lo_c - down, hi_c + up
    lo = torch.minimum(threshold_below(lo_c.clamp(-1.0, 2.0), p.dtype), br.thr)
    hi = torch.maximum(threshold_below(hi_c.clamp(-1.0, 2.0), p.dtype), br.thr)
    return gather_band(p, lo, hi, br, work, sort, with_above)


def clear(band: Band, keep: torch.Tensor) -> torch.Tensor:
    """The mask {p > lo} with the band pixels where ``keep`` (N,) is False removed (modifies band.above_lo)."""
    mask = band.above_lo
    if _on_cpu(keep):
        drop = band.flat.numpy()[~keep.numpy()]
        if drop.size:
            mask.numpy().reshape(-1)[drop] = False
        return mask
    drop = band.flat[~keep]
    if drop.numel():
        mask.view(-1)[drop] = False
    return mask


def mask_above(band: Band, thr: torch.Tensor) -> torch.Tensor:
    """Mask p > thr for a threshold inside each row's band (lo <= thr <= hi). Shape: thr (r,) -> (r, d)."""
    if _on_cpu(thr):
        return clear(band, torch.from_numpy(band.fvals.numpy() > np.repeat(thr.numpy(), band.count.numpy())))
    return clear(band, band.fvals > band.per_pixel(thr))


def _row_popcount(mask: np.ndarray) -> np.ndarray | None:
    """True entries per row of a contiguous bool (r, d) array by 64-bit popcounts (None where d % 8 != 0 or
    NumPy lacks ``bitwise_count``)."""
    if mask.shape[1] % 8 or not hasattr(np, "bitwise_count") or not mask.flags.c_contiguous:
        return None
    return np.bitwise_count(mask.view(np.uint64)).sum(1, dtype=np.int64)


def _sparse_flatnonzero(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of a contiguous bool array with few, scattered True entries (a band), word by word.

    NumPy's nonzero is slow on isolated True entries (0.57 ms for a 0.9% band of 2.75M pixels); the nonzero
    8-byte words are found first (a comparison over an eighth as many entries) and only their bytes are
    scanned (0.4 ms there). Falls back to the
    plain nonzero for sizes not a multiple of 8 and for dense masks.
    """
    flat = mask.reshape(-1)
    if flat.size % 8 or not flat.flags.c_contiguous:
        return np.flatnonzero(flat)
    words = flat.view(np.uint64)
    hit = np.flatnonzero(words != 0)
    if 4 * hit.size > words.size:
        return np.flatnonzero(flat)
    pos = np.flatnonzero(words[hit].view(np.bool_))
    return (hit[pos >> 3] << 3) | (pos & 7)


def ratio_masks_at_estimate(p: torch.Tensor, ratio: Ratio, v: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    """Masks {p > cut(v*)} of the ratio objective (CPU, float32/float64 rows), with one end of every band at
    the estimate's cut c0 = cut(v).

    One exact pass at c0 counts and sums {p > c0} and writes that set as the output mask. The sign of
    F(v) = num - v den of it tells on which side of c0 the optimal cut lies (F < 0: below, the band is
    (lo, c0] with lo the cut of the pass's score; F > 0: above, the band is (c0, hi] with hi from the
    bracket's upper bound), so one more comparison, at the band's other end, and an exclusive or with the
    mask give the band. Dinkelbach steps on the band find the cut (:func:`band_dinkelbach`) and the band
    pixels of the mask are set to p > cut. Rows where F(v) is within rounding of 0 or the bracket is wide
    (the sample missed the object) are solved by the general path (:func:`ratio_bracket`,
    :func:`band_for_bracket`).

    Shape:
        p: (r, d) contiguous.  v: (r,) float64.  work: scratch like p (overwritten).  output: (r, d) bool.
    """
    r, d = p.shape
    a = p.numpy()
    rn = ratio.numpy()
    v_np = v.numpy()
    c0 = threshold_below(torch.from_numpy(rn.cut(v_np)), p.dtype)
    t = torch.sub(p, c0.unsqueeze(1), out=work)
    t.clamp_min_(0)
    excess = t.sum(1).to(_F64).numpy()
    out = torch.empty((r, d), dtype=torch.bool)
    out.copy_(t)  # t > 0 exactly where p > c0
    mask = out.numpy()
    n0 = _row_popcount(mask)
    if n0 is None:
        n0 = t.sign_().sum(1).round().to(torch.int64).numpy()
    del t
    c0n = c0.numpy()
    s0 = excess + n0 * c0n.astype(np.float64)
    v_lo = rn.score(s0, n0)
    num, den = rn.num_den(s0, n0)
    f = num - v_np * den
    v_hi = np.where(f < 0, v_np, v_np + f / rn.slope)
    slack = SCORE_SLACK * np.abs(num) + SCORE_SLACK * np.abs(v_np * den)  # scaled first: num ~ s may be ~1e308
    below = f < -slack
    above = f > slack
    general = ~(below | above) | ((v_hi - v_lo) > _ESTIMATE_TOL * np.maximum(v_lo, 1e-300))
    lo = threshold_below(torch.from_numpy(np.clip(rn.cut(v_lo * (1 - _SLACK)), -1.0, 2.0)), p.dtype).numpy()
    hi = threshold_below(torch.from_numpy(np.clip(rn.cut(v_hi * (1 + _SLACK) + 1e-300), -1.0, 2.0)), p.dtype)
    other = np.where(below, np.minimum(lo, c0n), np.maximum(hi.numpy(), c0n))
    other[general] = c0n[general]  # no band: these rows are redone below
    band = np.greater(a, other[:, None], out=_bool_scratch(work, (r, d)))
    np.bitwise_xor(band, mask, out=band)
    flat = _sparse_flatnonzero(band)
    del band
    fvals = a.reshape(-1)[flat]
    starts = np.searchsorted(flat, np.arange(r + 1, dtype=np.int64) * d)
    count = np.diff(starts)
    row = np.repeat(np.arange(r), count)
    band_sum = np.bincount(row, weights=fvals, minlength=r)
    n_hi = np.where(below, n0, n0 - count)
    s_hi = np.where(below, s0, s0 - band_sum)
    tensors = [torch.from_numpy(x) for x in (count, n_hi, s_hi, flat, fvals, starts)]
    none = torch.empty(0)
    band_t = Band(none, tensors[0], tensors[1], tensors[2], none, none, out, *tensors[3:])
    cut = _dinkelbach_numpy(band_t, rn, v_lo)
    thr = threshold_below(torch.from_numpy(cut), p.dtype).numpy()
    mask.reshape(-1)[flat] = fvals > thr[row]
    if general.any():
        ids = torch.from_numpy(np.flatnonzero(general))
        rows = p[ids]
        sub_ratio = ratio.take(ids)
        bracket = ratio_bracket(rows, sub_ratio, v[ids])
        sub_band = band_for_bracket(rows, sub_ratio, bracket, sort=False)
        out[ids] = mask_above(sub_band, band_dinkelbach(sub_band, sub_ratio, bracket.v_lo))
    return out


def band_dinkelbach(band: Band, ratio: Ratio, v_lo: torch.Tensor) -> torch.Tensor:
    """Cut of the smallest optimal set of the ratio objective, by Dinkelbach steps on the band's pixels only.

    Started from a lower bound v_lo of v* whose cut lies in the band, every iterate v <- score({p > cut(v)})
    stays a lower bound and rises to v*, so every set it visits is the band's upper part plus the pixels
    above it; it stops when the set no longer changes, which makes the score optimal and {p > cut} the
    smallest optimal set. Works on unsorted bands; on CPU it runs in NumPy over the packed band pixels.

    Shape:
        v_lo: (r,) float64.  output: (r,) threshold in the band's dtype: select p > output.
    """
    if _on_cpu(band.fvals):
        return threshold_below(torch.from_numpy(_dinkelbach_numpy(band, ratio.numpy(), v_lo.numpy())), band.vals.dtype)
    vals = band.vals.to(_F64)  # the -1 padding is never selected: cuts are >= 0
    v = v_lo
    n_prev = None
    for _ in range(_MAX_ITERS):
        cut = ratio.cut(v)
        sel = vals > cut.unsqueeze(1)
        n = band.n_hi + sel.sum(1)
        if n_prev is not None and torch.equal(n, n_prev):
            break
        v = torch.maximum(v, ratio.score(band.s_hi + torch.where(sel, vals, 0).sum(1), n.to(_F64)))
        n_prev = n
    return threshold_below(cut, band.vals.dtype)


def _dinkelbach_numpy(band: Band, ratio: Ratio, v: np.ndarray) -> np.ndarray:
    """:func:`band_dinkelbach`'s iteration on the band pixels in pixel order (NumPy arrays); returns the cut."""
    r = band.count.numel()
    count = band.count.numpy()
    row = np.repeat(np.arange(r), count)
    vals = band.fvals.numpy().astype(np.float64)
    n_hi, s_hi = band.n_hi.numpy(), band.s_hi.numpy()
    n_prev = None
    for _ in range(_MAX_ITERS):
        cut = ratio.cut(v)
        sel = vals > cut[row]
        n = n_hi + np.bincount(row[sel], minlength=r)
        if n_prev is not None and np.array_equal(n, n_prev):
            break
        v = np.maximum(v, ratio.score(s_hi + np.bincount(row, weights=np.where(sel, vals, 0.0), minlength=r), n))
        n_prev = n
    return cut


def superlevel_inside(
    band: Band, ratio: Ratio, level: torch.Tensor, d: int, side: str = "both", pre: torch.Tensor | None = None
) -> torch.Tensor:
    """Whether every tau with ratio score >= ``level`` lies strictly inside the band's ranks.

    g(tau) = num(S_tau, tau) - level * den(S_tau, tau) is concave in tau (S_tau is concave) and g >= 0 exactly
    where the ratio score reaches ``level``; if the band holds a maximiser of the ratio score (by
    construction), g < 0 at a band end (or the end is rank 0 or d) confines the superlevel set on that side.

    Args:
        side: "top" (ranks above the band, tau < n_hi), "bottom" (tau > n_hi + count) or "both".
        pre: ``band.prefix()`` if the caller has it.

    Shape:
        level: (r,) float64.  output: (r,) bool.
    """
    if pre is None:
        pre = band.prefix()
    n_lo = band.n_hi + band.count
    out = torch.ones_like(band.count, dtype=torch.bool)
    if side in ("top", "both"):
        g_top = ratio.gap(level, pre[:, 0], band.n_hi.to(_F64))
        out &= (g_top < 0) | (band.n_hi == 0)
    if side in ("bottom", "both"):
        low_end = pre.gather(1, band.count.unsqueeze(1)).squeeze(1)
        out &= (ratio.gap(level, low_end, n_lo.to(_F64)) < 0) | (n_lo == d)
    return out


def mask_at_rank(band: Band, tau: torch.Tensor) -> torch.Tensor:
    """Mask of the tau largest entries of each row, tau within a sorted band's ranks [n_hi, n_hi + count].

    Pixels equal to the tau-th largest value are taken in index order until tau are selected (the rule of
    :func:`rankseg._common.top_tau_mask`), so exactly tau pixels are selected. Modifies band.above_lo.

    Shape:
        tau: (r,) int64.  output: (r, d) bool.
    """
    j = tau - band.n_hi
    width = band.vals.shape[1]
    kth = band.vals.gather(1, (j - 1).clamp(0, width - 1).unsqueeze(1)).squeeze(1)
    kth = torch.where(j > 0, kth, band.hi)  # j = 0: only the pixels above the band
    # Common case: no row has more pixels equal to its tau-th value than it can take, so {p >= kth} (none of
    # the band for j = 0) holds exactly tau pixels.
    kth_px = band.per_pixel(torch.where(j > 0, kth, torch.full_like(kth, torch.inf)))
    ge = band.fvals >= kth_px
    counts = torch.cat([torch.zeros_like(j[:1]), ge.to(torch.int64).cumsum(0)])
    if bool(((counts[band.starts[1:]] - counts[band.starts[:-1]]) == j).all()):
        return clear(band, ge)
    kth_px = band.per_pixel(kth)
    gt = band.fvals > kth_px
    tied = (band.fvals == kth_px) & band.per_pixel(j > 0)
    # rank of each tied pixel among its row's tied pixels, in pixel order; keep the first `room`
    csum = tied.to(torch.int64).cumsum(0)
    before = torch.cat([torch.zeros_like(csum[:1]), csum])[band.starts[:-1]]
    n_gt = torch.cat([torch.zeros_like(csum[:1]), gt.to(torch.int64).cumsum(0)])
    room = j - (n_gt[band.starts[1:]] - n_gt[band.starts[:-1]])
    return clear(band, gt | (tied & ((csum - band.per_pixel(before)) <= band.per_pixel(room))))


def above_band(p: torch.Tensor, band: Band) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels of each row above its band's lower threshold, with the band's own pixels zeroed: a ragged
    array whose power sums are those of the pixels above the band (p > hi).

    Read from the band's mask {p > lo} (call before the mask is turned into an output).

    Returns:
        values (N,) in pixel order (p's dtype; 0 for band pixels) and row offsets (r + 1,) int64.
    """
    r, d = p.shape
    if _on_cpu(p) and p.dtype in (torch.float32, torch.float64):
        a = p.detach().contiguous().numpy().reshape(-1)
        flat = np.flatnonzero(band.above_lo.numpy())
        vals = a[flat]
        starts = np.searchsorted(flat, np.arange(r + 1, dtype=np.int64) * d)
        vals[vals <= np.repeat(band.hi.numpy(), np.diff(starts))] = 0
        return torch.from_numpy(vals), torch.from_numpy(starts)
    mask = p > band.hi.unsqueeze(1)
    counts = count_true(mask, 1)
    return p[mask], torch.cat([torch.zeros_like(counts[:1]), counts.cumsum(0)])


def power_sums(x: torch.Tensor, starts: torch.Tensor, terms: int, first: int = 1) -> torch.Tensor:
    """Per-segment float64 sums of x^m, m = first .. terms, of a ragged array (see :func:`segment_sums`).

    Shape:
        x: (N,).  starts: (r + 1,).  output: (r, terms - first + 1).
    """
    r = starts.numel() - 1
    out = torch.zeros(r, max(terms - first + 1, 0), dtype=_F64, device=x.device)
    if x.numel() == 0 or terms < first:
        return out
    if _on_cpu(x):
        xs, st = x.numpy(), starts.numpy()
        o = out.numpy()
        # float64 powers of one chunk of the values at a time (a float64 copy of all of them would be twice
        # their size); each chunk's part of every segment is summed and added to the segment's row
        for c0 in range(0, xs.size, _POWER_CHUNK):
            c1 = min(c0 + _POWER_CHUNK, xs.size)
            r0 = int(np.searchsorted(st, c0, side="right")) - 1
            r1 = int(np.searchsorted(st, c1 - 1, side="right"))  # rows r0 .. r1 - 1 meet the chunk
            cuts = np.clip(st[r0:r1 + 1], c0, c1) - c0
            idx, empty = np.minimum(cuts[:-1], c1 - c0 - 1), cuts[1:] == cuts[:-1]
            part = xs[c0:c1]
            q = part.astype(np.float64)  # multiplied by the values as they are (no float64 copy of them)
            for _ in range(first - 1):
                q *= part
            for m in range(first, terms + 1):
                sums = np.add.reduceat(q, idx)
                sums[empty] = 0.0
                o[r0:r1, m - first] += sums
                if m < terms:
                    q *= part
        return out
    xs = x.to(_F64)
    q = xs**first
    for m in range(first, terms + 1):
        out[:, m - first] = segment_sums(q, starts)
        if m < terms:
            q.mul_(xs)
    return out


def ragged_count_sum(vals: torch.Tensor, starts: torch.Tensor, thr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Count and float64 sum of each row's ragged values strictly above ``thr`` (r,). Output: (r,) each."""
    if _on_cpu(vals):
        v, st = vals.numpy(), starts.numpy()
        r = st.size - 1
        if v.size == 0:
            return torch.zeros(r, dtype=torch.int64), torch.zeros(r, dtype=_F64)
        above = v > np.repeat(thr.numpy(), np.diff(st))
        idx, empty = np.minimum(st[:-1], v.size - 1), np.diff(st) == 0
        n = np.where(empty, 0, np.add.reduceat(above, idx, dtype=np.int64))
        total = np.where(empty, 0.0, np.add.reduceat(np.where(above, v, 0), idx, dtype=np.float64))
        return torch.from_numpy(n), torch.from_numpy(total)
    else:
        counts = starts[1:] - starts[:-1]
        above = vals > torch.repeat_interleave(thr, counts, output_size=vals.numel())
        both = torch.stack([above.to(_F64), torch.where(above, vals, 0).to(_F64)], 1)
    sums = segment_sums(both, starts)
    return sums[:, 0].round().to(torch.int64), sums[:, 1]


def segment_sums(x: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Sums of the consecutive segments starts[i] .. starts[i+1] - 1 of x along dim 0 (float64).

    Shape:
        x: (N, *rest).  starts: (r + 1,) int64.  output: (r, *rest) float64.
    """
    r = starts.numel() - 1
    counts = starts[1:] - starts[:-1]
    if x.shape[0] == 0:
        return torch.zeros((r,) + tuple(x.shape[1:]), dtype=_F64, device=x.device)
    if _on_cpu(x):
        xn = x.numpy()
        out = np.add.reduceat(xn, np.minimum(starts[:-1].numpy(), xn.shape[0] - 1), axis=0, dtype=np.float64)
        empty = (counts.numpy() == 0).reshape((r,) + (1,) * (xn.ndim - 1))
        return torch.from_numpy(np.where(empty, 0.0, out))
    row = torch.repeat_interleave(torch.arange(r, device=x.device), counts)
    out = torch.zeros((r,) + tuple(x.shape[1:]), dtype=_F64, device=x.device)
    return out.index_add_(0, row, x.to(_F64))
