"""RankDice with the refined-normal approximations of the JMLR paper: BA, TRNA and BA+TRNA.

Each (image, class) row is solved independently (multilabel output). For a row with probabilities sorted in
decreasing order p_(1) >= ... >= p_(d), prefix sums S_tau and Gamma ~ PoissonBinomial(p), the expected Dice of
the top-tau mask is approximated as (s = smooth)

    BA:    pi(tau) = 2 S_tau E[1 / (Gamma + tau + s + 1)] + s E[1 / (Gamma + tau + s)]
    TRNA:  pi(tau) = sum_l 2 w_tau(l) / (l + tau + s + 1) + s E[1 / (Gamma + tau + s)],
           w_tau(l) = sum_{j <= tau} p_(j) P(Gamma_{-j} = l),

with Gamma and the leave-one-out counts Gamma_{-j} replaced by the refined normal law of
:mod:`rankseg.distribution` restricted to the central 1 - eps interval of Gamma and renormalised there.
tau = 0 scores s E[1 / (Gamma + s)] (0 when s = 0), the search runs over tau <= tau_up (JMLR Lemma 3:
the first tau with S_tau >= (tau + s + d) p_(tau+1), else d), and ties go to the smaller tau. BA+TRNA
uses BA on rows whose "Cohen's d" 1/sigma is below 0.2 and TRNA elsewhere.

Everything is vectorised over rows and candidate sizes. BA with smooth 0 needs no full sort
(:func:`_ba_band_masks`): its score lies within a factor 1 + eps0 of a ratio whose cut :mod:`rankseg._band`
brackets by one pass, so only a band of ranks around that cut is gathered, sorted and scored, and the ranks
outside are certified by concavity; rows it cannot certify (and TRNA, smooth > 0) sort their rows. On sorted
rows BA scores a grid of ~sqrt(tau_up) sizes per row
exactly, bounds the score between grid points (S_tau is concave, the reciprocal moments convex) and scores in
full only the blocks that can hold the maximum; reciprocal moments E[1/(Gamma + a)] come from a 28-term
series in the support's central moments (direct sums near the origin). TRNA builds its leave-one-out pmfs as
(tau x support) blocks and accumulates them with a cumulative sum over j. Rows are processed in chunks whose
temporaries stay within a fixed memory budget; the only host synchronisations are a handful of per-chunk
sizes.

Example::

    python -c "import torch; from rankseg._ba import rankdice_ba; \
print(rankdice_ba(torch.rand(1, 2, 8, 8)).sum((2, 3)))"
"""

from __future__ import annotations

import math

import torch

from ._band import (
    SCORE_SLACK,
    Ratio,
    band_for_bracket,
    mask_at_rank,
    ratio_bracket,
    start_score,
    superlevel_inside,
)
from ._common import scratch
from ._common import sort_descending as _sort_descending
from ._common import top_tau_mask as _top_tau_mask
from ._validation import check_eps, check_prob_values, check_probs_structure, check_pruning_prob, check_smooth
from .distribution import _central_support, _continuous_cdf

__all__ = ["rankdice_ba"]

_SOLVERS = ("BA", "TRNA", "BA+TRNA")
# A row (or leave-one-out row) whose variance is below this is treated as a point mass at round(mean):
# P(Gamma != nearest integer of its mean) <= 4 var, so the refined normal would only add noise (its skew
# m3 / var^1.5 blows up as var -> 0 and the clipped CDF stops being a distribution).
_VAR_FLOOR = 1e-10
# BA+TRNA: BA when 1 / sigma < 0.2, i.e. sigma > 5 (0.0.8's "Cohen's d" rule).
_BA_MIN_SIGMA = 5.0
# Working-memory budget per chunk: max(4 x input bytes, this). Module-level so tests can force tiny chunks.
_MIN_BUDGET_BYTES = 256 * 2**20
# Temporaries of the BA pass, in bytes per pixel of a row (sorted copy, p(1-p), float64 cumsum, mask).
_BA_BYTES_PER_PIXEL = 48
# Reciprocal moments use a 28-term series where support half-width / (mean + tau) <= 1/4 (error < 2e-17).
_SERIES_RHO = 0.25
_SERIES_TERMS = 28
# float64 temporaries of one TRNA (tau x support) block, in bytes per element.
_TRNA_BYTES_PER_ELEMENT = 96


@torch.no_grad()
def rankdice_ba(
    probs: torch.Tensor,
    solver: str = "BA",
    smooth: float = 0.0,
    eps: float = 1e-4,
    pruning_prob: float = 0.5,
) -> torch.Tensor:
    """Dice-optimal multilabel masks with the BA, TRNA or BA+TRNA approximation of RankDice.

    Args:
        probs: per-class probabilities; float16/bfloat16 are promoted to float32, float32 and float64 keep
            their precision. Never modified.
        solver: "BA", "TRNA" or "BA+TRNA" (case and surrounding spaces ignored); anything else raises
            ``ValueError("Unknown solver: <NAME>")`` with the upper-cased name.
        smooth: Dice smoothing s >= 0.
        eps: tail mass in (0, 1) left out of the truncated support of Gamma.
        pruning_prob: a row whose maximum probability is <= pruning_prob gets an empty mask.

    Returns:
        Boolean masks: each (image, class) row selects its tau most probable pixels (equal probabilities
        are taken in index order).

    Shape:
        probs: (B, C, *spatial), any number >= 1 of spatial dims, B may be 0.
        output: (B, C, *spatial), torch.bool, on probs' device.
    """
    # 0.0.8's order: structure and values, the solver's type and name, smooth, eps, pruning_prob.
    check_probs_structure(probs)
    maxima = check_prob_values(probs)
    if not isinstance(solver, str):
        raise TypeError("solver must be a string")
    name = solver.strip().upper()
    if name not in _SOLVERS:
        raise ValueError(f"Unknown solver: {name}")
    smooth = check_smooth(smooth)
    eps = check_eps(eps)
    pruning_prob = check_pruning_prob(pruning_prob)
    return _rankdice_ba(probs, name, smooth, eps, pruning_prob, maxima)


def _rankdice_ba(probs, name, smooth, eps, pruning_prob, maxima) -> torch.Tensor:
    """:func:`rankdice_ba` after validation (``maxima``: the rows' maxima from the value check)."""
    work = torch.float64 if probs.dtype == torch.float64 else torch.float32
    n_rows = probs.shape[0] * probs.shape[1]
    rows = probs.reshape(n_rows, math.prod(probs.shape[2:])).to(work)  # a view whenever possible; only read
    out = torch.zeros(rows.shape, dtype=torch.bool, device=rows.device)
    if rows.numel() == 0:
        return out.reshape(probs.shape)
    active = maxima > pruning_prob
    idx = active.nonzero().squeeze(1)
    all_active = idx.numel() == n_rows
    d = rows.shape[1]
    budget = max(4 * probs.numel() * probs.element_size(), _MIN_BUDGET_BYTES)
    # Without a sort (BA, smooth 0) the temporaries are one row-sized scratch tensor and the band.
    fast = name in ("BA", "BA+TRNA") and smooth == 0.0
    per_pixel = rows.element_size() + 2 if fast else _BA_BYTES_PER_PIXEL
    step = max(1, budget // (per_pixel * d))
    for start in range(0, idx.numel(), step):
        # Whole chunks of rows, never single rows: the loop runs once for inputs up to the budget.
        if all_active:
            sel = slice(start, min(start + step, n_rows))
            p = rows[sel].contiguous()
        else:
            sel = idx[start : start + step]
            p = rows.index_select(0, sel)
        if fast:
            masks, ok = _ba_band_masks(p, eps, name, probs.shape[-1], maxima[sel], budget)
            if bool(ok.all()):
                out[sel] = masks
                continue
            rest = (~ok).nonzero().squeeze(1)
            masks[rest] = _sorted_masks(p[rest], smooth, eps, name, budget)
            out[sel] = masks
        else:
            out[sel] = _sorted_masks(p, smooth, eps, name, budget)
    return out.reshape(probs.shape)


def _sorted_masks(p: torch.Tensor, smooth: float, eps: float, name: str, budget: int) -> torch.Tensor:
    """Masks from a full sort of every row (TRNA, smooth > 0, and rows the band path cannot certify)."""
    p_sorted = _sort_descending(p)
    return _top_tau_mask(p, p_sorted, _ba_tau(p_sorted, smooth, eps, name, budget=budget))


def _ba_tau(
    p_sorted: torch.Tensor,
    smooth: float,
    eps: float,
    solver: str,
    budget: int | None = None,
) -> torch.Tensor:
    """Optimal mask size of each row under the BA, TRNA or BA+TRNA score.

    Degenerate rows (variance <= 1e-10, e.g. all probabilities in {0, 1}) use a point mass at the integer
    nearest their mean instead of the refined normal; a pmf that vanishes on the truncated support (possible
    only for extreme skew) falls back the same way. No NaN reaches the argmax.

    Args:
        p_sorted: probabilities of each row in decreasing order (float32 or float64).
        smooth: Dice smoothing s >= 0.
        eps: tail mass left out of the truncated support.
        solver: "BA", "TRNA" or "BA+TRNA" (upper case).
        budget: bytes of temporaries allowed for the blocked evaluations (default: the module minimum).

    Returns:
        tau in [0, d] per row; tau = 0 means an empty mask.

    Shape:
        p_sorted: (R, d). output: (R,), int64.
    """
    if solver not in _SOLVERS:
        raise ValueError(f"Unknown solver: {solver}")
    n_rows, d = p_sorted.shape
    dev = p_sorted.device
    if n_rows == 0:
        return torch.zeros(0, dtype=torch.int64, device=dev)
    budget = _MIN_BUDGET_BYTES if budget is None else budget
    p = p_sorted

    # Moments of Gamma, accumulated in float64; p(1-p) is exactly 0 for p in {0, 1}, so rows of hard labels
    # get var == 0 exactly and take the point-mass path.
    csum = torch.cumsum(p, dim=1, dtype=torch.float64)
    mu = csum[:, -1]
    # In-place steps: fresh row-sized temporaries cost page faults that dominate these cheap passes.
    q = torch.sub(1.0, p).mul_(p)
    var = q.sum(1, dtype=torch.float64)
    m3 = torch.mul(p, -2.0).add_(1.0).mul_(q).sum(1, dtype=torch.float64)
    del q

    tau_up = _search_bound(p, csum, smooth)

    scale, skew, low, up, pmf = _support(d, mu, var, m3, eps)

    if solver == "BA":
        return _ba_search(p, csum, pmf, low, tau_up, smooth, budget)
    if solver == "TRNA":
        trna_rows = torch.arange(n_rows, device=dev)
        tau = torch.zeros(n_rows, dtype=torch.int64, device=dev)
    else:
        use_ba = scale > _BA_MIN_SIGMA
        trna_rows = (~use_ba).nonzero().squeeze(1)
        ba_rows = use_ba.nonzero().squeeze(1)
        if ba_rows.numel() == n_rows:  # the usual case on real images (sigma >> 5): no row copies
            return _ba_search(p, csum, pmf, low, tau_up, smooth, budget)
        tau = torch.zeros(n_rows, dtype=torch.int64, device=dev)
        if ba_rows.numel() > 0:
            tau[ba_rows] = _ba_search(
                p.index_select(0, ba_rows),
                csum.index_select(0, ba_rows),
                pmf.index_select(0, ba_rows),
                low.index_select(0, ba_rows),
                tau_up.index_select(0, ba_rows),
                smooth,
                budget,
            )
    if trna_rows.numel() > 0:
        sub = lambda t: t.index_select(0, trna_rows)  # noqa: E731
        tau_sub = sub(tau_up)
        t_trna = int(tau_sub.max())
        score = _trna_scores(
            sub(p), sub(mu), sub(var), sub(m3), sub(low), sub(up), sub(pmf), t_trna, smooth, budget
        )
        tau[trna_rows] = _argmax_upto(score, tau_sub)
    return tau


def _support(d: int, mu: torch.Tensor, var: torch.Tensor, m3: torch.Tensor, eps: float):
    """Refined-normal shape, truncated support [low, up] of Gamma and its renormalised pmf on it.

    Shape:
        mu, var, m3: (R,) float64.  outputs: scale, skew (R,); low, up (R,) int64; pmf (R, W) float64.
    """
    scale, skew = _rn_shape(var, m3)
    low, up = _central_support(d, mu, scale, skew, eps)
    low, up = low.to(torch.int64), up.to(torch.int64)
    width = int((up - low).max()) + 1
    grid = low.unsqueeze(1) + torch.arange(width, device=mu.device)
    pmf = _support_pmf(mu.unsqueeze(1), scale.unsqueeze(1), skew.unsqueeze(1), grid, low, up)
    return scale, skew, low, up, pmf


def _ba_band_masks(
    p: torch.Tensor, eps: float, solver: str, width: int, p_max: torch.Tensor, budget: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """BA masks (smooth 0) from a partial sort around the cut; rows it cannot certify are flagged.

    The BA score 2 S_tau E[1 / (Gamma + tau + 1)] lies between the ratio L(tau) = 2 S_tau / (tau + 1 + m)
    (Jensen; m, V and low the mean, variance and smallest support point of the truncated pmf) and
    L(tau) (1 + eps0) with eps0 = V / ((1 + m) (1 + low)), since E[1 / (a + X)] <= 1 / (a + m) +
    V / ((a + m)^2 (a + low)). So tau can only be optimal where L(tau) >= best / (1 + eps0): a few ranks
    around the cut of the ratio L, which :mod:`rankseg._band` brackets without sorting. The band of those
    ranks is gathered and sorted, every tau in it is scored exactly as the sort-based search would, and
    :func:`rankseg._band.superlevel_inside` proves that the ranks outside cannot reach the best score. The
    search bound tau_up (Lemma 3) is applied inside the band; it provably cannot fall above the band's top
    when S_(n_hi) <= (n_hi + d) hi, which is checked. BA+TRNA rows with sigma <= 5 (TRNA rows) are flagged.

    Shape:
        p: (r, d) float32/float64.  p_max: (r,) row maxima.  outputs: masks (r, d) bool, ok (r,) bool (masks
        of rows with ok False are not meaningful).
    """
    f64 = torch.float64
    r, d = p.shape
    work = scratch(p.shape, p.dtype, p.device)
    mu = p.sum(1).to(f64)
    q = torch.sub(1.0, p, out=work).mul_(p)  # p (1 - p)
    var = q.sum(1).to(f64)
    m3 = var - 2 * q.mul_(p).sum(1).to(f64)  # sum p (1 - p) (1 - 2 p)
    del q
    scale, _, low, _, pmf = _support(d, mu, var, m3, eps)
    grid = (low.unsqueeze(1) + torch.arange(pmf.shape[1], device=p.device)).to(f64)
    m = (pmf * grid).sum(1)
    v_pmf = (pmf * (grid - m.unsqueeze(1)) ** 2).sum(1)
    eps0 = v_pmf / ((1 + m) * (1 + low.to(f64))) * (1 + 1e-6) + 1e-12
    ratio = Ratio("dice", 0.0, m)
    v0, _ = start_score(p, ratio, p_max, width)
    bracket = ratio_bracket(p, ratio, v0, work)
    # the window of candidate ranks is about sqrt(eps0) wide in relative value; retries widen it
    widen = 4 * eps0.sqrt() * ratio.cut(bracket.v_hi)
    band = band_for_bracket(p, ratio, bracket, widen, work=work, sort=True)
    del work
    taus = band.n_hi.unsqueeze(1) + torch.arange(band.vals.shape[1] + 1, device=p.device)
    total = band.prefix()
    valid = band.valid()
    # Lemma 3 inside the band: tau_up is the first tau with S_tau >= (tau + d) p_(tau+1)
    nxt = band.vals.to(f64)
    stop = (total[:, :-1] >= (taus[:, :-1] + d).to(f64) * nxt) & valid[:, 1:]
    first_stop = torch.where(stop.any(1), stop.to(torch.uint8).argmax(1), band.count)
    valid &= torch.arange(valid.shape[1], device=p.device).unsqueeze(0) <= first_stop.unsqueeze(1)
    c1, _ = _terms_at(pmf, low, taus.clamp_max(d), 0.0, budget)
    score = (2.0 * total * c1).masked_fill(~valid, -torch.inf)
    best = score.amax(1)
    tau = band.n_hi + score.argmax(1)
    # the slack covers the float32 sums behind S and the moments
    ok = superlevel_inside(band, ratio, best / (1 + eps0) * (1 - SCORE_SLACK), d)
    # tau_up cannot fall above the band: for tau < n_hi, S_tau < S_(n_hi) - (n_hi - tau) hi and p_(tau+1) > hi
    ok &= total[:, 0] <= band.hi.to(f64) * (band.n_hi + d).to(f64)
    ok &= torch.isfinite(best)
    if solver == "BA+TRNA":
        ok &= scale > _BA_MIN_SIGMA
    return mask_at_rank(band, torch.where(ok, tau, band.n_hi)), ok


def _search_bound(p: torch.Tensor, csum: torch.Tensor, smooth: float) -> torch.Tensor:
    """JMLR Lemma 3 bound: the first tau in 1..d with S_tau >= (tau + s + d) p_(tau+1), p_(d+1) = 0.

    The test is monotone in tau (if it holds at tau, then S_(tau+1) = S_tau + p_(tau+1) >=
    (tau + 1 + s + d) p_(tau+1) >= (tau + 1 + s + d) p_(tau+2)), so a vectorised bisection of ~log2(d) gathers
    finds the first success without materialising the test for every tau.

    Shape:
        p: (R, d) sorted decreasingly; csum: (R, d) float64 prefix sums; output: (R,) int64 in [1, d].
    """
    n_rows, d = p.shape
    lo = torch.ones(n_rows, dtype=torch.int64, device=p.device)
    hi = torch.full_like(lo, d)  # tau = d always passes
    for _ in range(max(1, d.bit_length())):
        mid = (lo + hi) // 2
        s_mid = csum.gather(1, (mid - 1).unsqueeze(1)).squeeze(1)
        p_next = p.gather(1, mid.clamp(max=d - 1).unsqueeze(1)).squeeze(1).to(torch.float64)
        p_next = torch.where(mid >= d, torch.zeros_like(p_next), p_next)
        ok = s_mid >= (mid.to(torch.float64) + (smooth + d)) * p_next
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid + 1)
    return hi


def _rn_shape(var: torch.Tensor, m3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and skew of the refined normal; (0, 0) (a point mass) for variances <= the floor.

    Shape:
        var, m3: same shape; outputs: that shape.
    """
    degenerate = var <= _VAR_FLOOR
    scale = torch.where(degenerate, torch.zeros_like(var), var.clamp_min(0.0).sqrt())
    safe = torch.where(degenerate, torch.ones_like(var), var * scale)
    skew = torch.where(degenerate, torch.zeros_like(var), m3 / safe)
    return scale, skew


def _support_pmf(
    loc: torch.Tensor,
    scale: torch.Tensor,
    skew: torch.Tensor,
    grid: torch.Tensor,
    low: torch.Tensor,
    up: torch.Tensor,
) -> torch.Tensor:
    """Continuity-corrected refined-normal pmf on each row's support [low, up], renormalised to sum 1.

    Evaluates the CDF once per cell edge (width + 1 edges) and differences it, clamps negative masses (a
    non-monotone CDF at large skew) to 0, zeroes the padding beyond ``up``, and renormalises. Where nothing
    is left, all mass goes to the support point nearest ``loc`` (the scale-0 rounding rule).

    Shape:
        loc, scale, skew: (R, ..., 1) parameters (extra dims index leave-one-out variants).
        grid: (R, W) int64 support points ``low + arange(W)``; low, up: (R,) int64.
        output: broadcast of (R, ..., W), float64.
    """
    extra = loc.dim() - 2  # number of leave-one-out dims between R and W
    g = grid.to(torch.float64).reshape(grid.shape[0], *([1] * extra), grid.shape[1])
    edges = torch.cat([g - 0.5, g[..., -1:] + 0.5], dim=-1)
    cdf = _continuous_cdf(edges, loc, scale, skew)
    pmf = (cdf[..., 1:] - cdf[..., :-1]).clamp_min(0.0)
    up_b = up.reshape(-1, *([1] * (extra + 1))).to(torch.float64)
    low_b = low.reshape(-1, *([1] * (extra + 1))).to(torch.float64)
    pmf = pmf * (g <= up_b)
    total = pmf.sum(-1, keepdim=True)
    empty = ~(total > 0.0)
    nearest = torch.minimum(torch.maximum(torch.ceil(loc - 0.5), low_b), up_b)
    fallback = (g == nearest).to(pmf.dtype)
    return torch.where(empty, fallback, pmf / torch.where(empty, torch.ones_like(total), total))


def _kernels(m: torch.Tensor, smooth: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Kernels of the two Dice terms at Gamma + tau = m, for the score 2 S_tau E[k1] + E[k2].

    For s < 1: k1 = 1/(m+s+1) and k2 = s/(m+s) (None for s = 0, where the tau = 0 score is 0). For s >= 1
    the equivalent scaled score s (pi - 1) is used, k1 = s/(m+s+1) and k2 = -s m/(m+s): pi is then
    1 - O(d/s) and pi - 1 would lose its digits to cancellation. All kernels are convex and decreasing in m,
    which the block bounds of :func:`_ba_search` rely on.
    """
    if smooth >= 1.0:
        return smooth / (m + (smooth + 1.0)), -m * (smooth / (m + smooth))  # no s * m: s may be near 1e308
    k1 = 1.0 / (m + (smooth + 1.0))
    return k1, (smooth / (m + smooth) if smooth > 0.0 else None)


def _terms_at(
    pmf: torch.Tensor, low: torch.Tensor, taus: torch.Tensor, smooth: float, budget: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """E[k1(Gamma + tau)] and E[k2(Gamma + tau)] (see :func:`_kernels`) at given candidate sizes.

    With the support written as l = ctr + h x, |x| <= 1, each expectation is a reciprocal moment
    E[1 / (a + h x)] = (1/a) sum_k E[x^k] (-h/a)^k with a = ctr + tau + const. Where h/a <= 1/4 the series
    is summed by Horner's rule to 28 terms (truncation error < 2e-17 relative), so a candidate costs 28
    multiply-adds instead of a pass over the support; the remaining entries (tau + mean small against the
    support width) are summed directly over the support.

    Shape:
        pmf: (R, W) float64 on support points low + arange(W); low: (R,) int64; taus: (R, n) int64.
        outputs: (R, n) float64 each.
    """
    n_rows, width = pmf.shape
    dev = pmf.device
    half = max(0.5 * (width - 1), 0.5)
    x = (torch.arange(width, dtype=torch.float64, device=dev) - 0.5 * (width - 1)) / half
    powers = x.unsqueeze(1) ** torch.arange(_SERIES_TERMS, dtype=torch.float64, device=dev)
    mom = pmf @ powers  # (R, K): E[x^k]
    ctr = low.to(torch.float64).unsqueeze(1) + 0.5 * (width - 1)
    u = ctr + taus.to(torch.float64)  # E[Gamma + tau] up to the centring

    def series(a: torch.Tensor, start: int) -> torch.Tensor:
        # sum_{k >= start} E[x^k] z^k with z = -h/a, by Horner's rule.
        z = -half / a
        acc = mom[:, -1:].expand_as(a)
        for k in range(_SERIES_TERMS - 2, start - 1, -1):
            acc = acc * z + mom[:, k : k + 1]
        return acc * z if start == 1 else acc

    a1 = u + (smooth + 1.0)
    scale1 = smooth if smooth >= 1.0 else 1.0
    c1 = series(a1, 0) * (scale1 / a1)
    if smooth == 0.0:
        c2 = torch.zeros_like(c1)
        a_min = a1
    else:
        a2 = u + smooth
        if smooth < 1.0:
            c2 = smooth * series(a2, 0) / a2
        else:
            # -s E[(Gamma+tau)/(Gamma+tau+s)] = -s (u - s (R(a2) - 1)) / a2 with R(a2) - 1 = O(h/a2):
            # no cancellation even for s >> d.
            c2 = -(smooth / a2) * (u - smooth * series(a2, 1))
        a_min = a2

    near = (half / a_min > _SERIES_RHO).nonzero()
    if near.numel() == 0:
        return c1, c2
    offs = torch.arange(width, dtype=torch.float64, device=dev)
    step = max(1, budget // (4 * 8 * width))
    for j in range(0, near.shape[0], step):
        # Chunks of (row, tau) entries, only to bound the (P, W) temporaries.
        r, i = near[j : j + step, 0], near[j : j + step, 1]
        m = (low[r] + taus[r, i]).to(torch.float64).unsqueeze(1) + offs
        k1, k2 = _kernels(m, smooth)
        w = pmf.index_select(0, r)
        c1[r, i] = (k1 * w).sum(1)
        if k2 is not None:
            c2[r, i] = (k2 * w).sum(1)
    return c1, c2


def _s_at(csum: torch.Tensor, taus: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Prefix sums S_tau (S_0 = 0) at (row, tau) pairs; ``rows`` selects a row per entry of ``taus``.

    Shape:
        csum: (R, d); taus: (R, n), or (P, n) with rows: (P,); output: taus' shape, float64.
    """
    d = csum.shape[1]
    idx = (taus - 1).clamp_min(0)
    if rows is None:
        vals = csum.gather(1, idx)
    else:
        vals = csum.reshape(-1)[rows.unsqueeze(1) * d + idx]
    return torch.where(taus > 0, vals, torch.zeros_like(vals))


def _ba_search(
    p: torch.Tensor,
    csum: torch.Tensor,
    pmf: torch.Tensor,
    low: torch.Tensor,
    tau_up: torch.Tensor,
    smooth: float,
    budget: int,
) -> torch.Tensor:
    """Exact argmax over tau = 0..tau_up of the BA score, scoring only blocks that can hold the maximum.

    The score 2 S_tau E[k1(Gamma+tau)] + E[k2(Gamma+tau)] is first computed exactly on a grid of ~sqrt(T)
    sizes per row. Between two grid points a < b, S_tau <= min(S_a + (tau - a) p_(a+1), S_b) (p is sorted
    decreasingly, so S is concave) and both expectations lie below their chords (their kernels are convex
    in tau), so a concave quadratic bounds the score on the block. Only blocks whose bound reaches the best
    grid score (less a 1e-9 relative margin for rounding) are scored in full. The result is the same
    first maximiser a full scan would give, at a small fraction of the O(T W) work of scoring every tau.

    Shape:
        p, csum: (R, d); pmf: (R, W); low, tau_up: (R,) int64; output: (R,) int64.
    """
    n_rows, d = p.shape
    dev = p.device
    t_max = int(tau_up.max())
    block = max(8, math.isqrt(t_max) + 1)
    n_blocks = -(-t_max // block)
    taus_g = torch.minimum(
        torch.arange(n_blocks + 1, device=dev).unsqueeze(0) * block, tau_up.unsqueeze(1)
    )  # (R, G+1), ends at tau_up; repeated points make empty blocks
    c1g, c2g = _terms_at(pmf, low, taus_g, smooth, budget)
    s_g = _s_at(csum, taus_g)
    first_g = 2.0 * s_g * c1g
    score_g = torch.nan_to_num(first_g + c2g, nan=-torch.inf)
    best = score_g.amax(1)
    # Rounding slack, relative to the size of the two terms (they can nearly cancel in the scaled form).
    margin = 1e-9 * (first_g.abs() + c2g.abs()).nan_to_num(posinf=0.0).amax(1, keepdim=True) + 1e-300

    a, b = taus_g[:, :-1], taus_g[:, 1:]
    length = (b - a).to(torch.float64)
    safe_len = length.clamp_min(1.0)
    p_a = p.gather(1, a.clamp(max=d - 1)).to(torch.float64)  # p_(a+1)
    s_a, s_b = s_g[:, :-1], s_g[:, 1:]
    dc1 = (c1g[:, 1:] - c1g[:, :-1]) / safe_len
    dc2 = (c2g[:, 1:] - c2g[:, :-1]) / safe_len
    # f(t) = 2 (S_a + t p_a)(c1_a + t dc1) + c2_a + t dc2 on t in [0, length]: a concave quadratic.
    q2 = 2.0 * p_a * dc1
    q1 = 2.0 * (s_a * dc1 + p_a * c1g[:, :-1]) + dc2
    q0 = score_g[:, :-1]
    vertex = (-q1 / (2.0 * q2).clamp(max=-1e-300)).clamp(min=0.0)
    t_star = torch.where(q2 < 0, torch.minimum(vertex, length), torch.where(q1 > 0, length, 0.0))
    ub = torch.minimum(q0 + t_star * (q1 + t_star * q2), 2.0 * s_b * c1g[:, :-1] + c2g[:, :-1])
    cand = ((b - a) >= 2) & (ub >= best.unsqueeze(1) - margin)

    tau_best = _first_at(score_g, taus_g, best)
    pairs = cand.nonzero()
    if pairs.numel() == 0:
        return tau_best
    inner = torch.arange(1, block, device=dev)
    width = pmf.shape[1]
    step = max(1, budget // (4 * 8 * block * width))
    pair_score, pair_tau = [], []
    for j in range(0, pairs.shape[0], step):
        # Chunks of candidate blocks, only to bound the (P, block, W) temporaries.
        r, k = pairs[j : j + step, 0], pairs[j : j + step, 1]
        a_p, b_p = a[r, k], b[r, k]
        taus = a_p.unsqueeze(1) + inner
        taus = torch.minimum(taus, (b_p - 1).unsqueeze(1))  # pad with an in-block duplicate
        c1, c2 = _terms_at(pmf.index_select(0, r), low.index_select(0, r), taus, smooth, budget)
        sc = 2.0 * _s_at(csum, taus, rows=r) * c1 + c2
        sc = torch.where(torch.isnan(sc), torch.full_like(sc, -torch.inf), sc)
        at = sc.argmax(1)  # first maximiser within the block
        pair_score.append(sc.gather(1, at.unsqueeze(1)).squeeze(1))
        pair_tau.append(taus.gather(1, at.unsqueeze(1)).squeeze(1))
    pair_score, pair_tau = torch.cat(pair_score), torch.cat(pair_tau)
    rows = pairs[:, 0]
    best_all = best.scatter_reduce(0, rows, pair_score, reduce="amax")
    tau_best = _first_at(score_g, taus_g, best_all)
    hit = torch.where(pair_score >= best_all[rows], pair_tau, torch.full_like(pair_tau, d + 1))
    tau_pairs = torch.full_like(tau_best, d + 1).scatter_reduce(0, rows, hit, reduce="amin")
    return torch.minimum(tau_best, tau_pairs)


def _first_at(score: torch.Tensor, taus: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Smallest tau whose score reaches ``best`` (d + 1 sentinel where none does; rows always have one).

    Shape:
        score, taus: (R, n); best: (R,); output: (R,) int64.
    """
    big = torch.iinfo(torch.int64).max
    hit = torch.where(score >= best.unsqueeze(1), taus, torch.full_like(taus, big))
    return hit.amin(1)


def _trna_scores(
    p: torch.Tensor,
    mu: torch.Tensor,
    var: torch.Tensor,
    m3: torch.Tensor,
    low: torch.Tensor,
    up: torch.Tensor,
    pmf: torch.Tensor,
    t_max: int,
    smooth: float,
    budget: int,
) -> torch.Tensor:
    """TRNA scores ``2 sum_l w_tau(l) k1(l + tau) + E[k2(Gamma + tau)]`` for tau = 0..t_max.

    Gamma_{-j} takes the moments of the row minus pixel j (mean clamped at 0); its pmf lives on the row's
    support [low, up] and is renormalised there like Gamma's. The (tau x support) matrix of weighted
    leave-one-out pmfs is built in blocks of candidate sizes and cumulated over j, carrying the running sum
    from block to block.

    Shape:
        p: (R, d) sorted decreasingly; mu, var, m3 (float64), low, up (int64): (R,); pmf: (R, W).
        output: (R, t_max + 1) float64.
    """
    n_rows, width = pmf.shape
    dev = p.device
    grid = low.unsqueeze(1) + torch.arange(width, device=dev)
    gridf = grid.to(torch.float64).unsqueeze(1)
    pmf_col = pmf.unsqueeze(2)
    out = pmf.new_empty(n_rows, t_max + 1)
    out[:, :1] = _terms_at(pmf, low, torch.zeros_like(low).unsqueeze(1), smooth, budget)[1]  # tau = 0
    carry = pmf.new_zeros(n_rows, 1, width)
    block = max(1, budget // (_TRNA_BYTES_PER_ELEMENT * n_rows * (width + 1)))
    for t0 in range(1, t_max + 1, block):
        # Blocks of candidate sizes, only to bound the (R, block, W) temporaries.
        t1 = min(t0 + block, t_max + 1)
        pj = p[:, t0 - 1 : t1 - 1].to(torch.float64)
        qj = pj * (1.0 - pj)
        var_j = (var.unsqueeze(1) - qj).clamp_min(0.0)
        scale, skew = _rn_shape(var_j, m3.unsqueeze(1) - qj * (1.0 - 2.0 * pj))
        loc = (mu.unsqueeze(1) - pj).clamp_min(0.0)
        loo = _support_pmf(loc.unsqueeze(2), scale.unsqueeze(2), skew.unsqueeze(2), grid, low, up)
        w = torch.cumsum(pj.unsqueeze(2) * loo, dim=1) + carry
        carry = w[:, -1:]
        taus = torch.arange(t0, t1, dtype=torch.float64, device=dev).reshape(1, -1, 1)
        k1, k2 = _kernels(gridf + taus, smooth)
        first = 2.0 * (w * k1).sum(-1)
        out[:, t0:t1] = first if k2 is None else first + torch.bmm(k2, pmf_col).squeeze(2)
    return out


def _argmax_upto(score: torch.Tensor, tau_up: torch.Tensor) -> torch.Tensor:
    """First maximiser of each row's score over tau = 0..tau_up (NaN counts as -inf).

    Shape:
        score: (R, T + 1); tau_up: (R,) int64 <= T; output: (R,) int64.
    """
    taus = torch.arange(score.shape[1], device=score.device)
    bad = (taus.unsqueeze(0) > tau_up.unsqueeze(1)) | torch.isnan(score)
    # torch.argmax returns the first maximal index, which breaks ties towards the smaller tau.
    return score.masked_fill(bad, -torch.inf).argmax(1)
