"""Triton kernels of the exact solver's fused path (see :func:`rankseg._triton.exact.exact_masks`).

Imported only when triton is. Conventions as in :mod:`rankseg._triton.kernels`: rows of float32 probabilities,
bins of :func:`rankseg._triton.kernels._key`, int64 fixed-point sums. The scores are float64.
"""

import triton
import triton.language as tl

from rankseg._triton.kernels import _bins

# Quadrature of rankseg._quadrature: exp-sinh nodes t = c exp(pi/2 sinh x), trapezoid step 0.09 in x (the
# constants are written out in the kernels: pi / 2 = 1.5707963267948966).


@triton.jit
def _asinh(z):
    a = tl.abs(z)
    v = tl.log(a + tl.sqrt(a * a + 1))
    return tl.where(z < 0, -v, v)


@triton.jit
def _recip_gap(var, a, m):
    """eps with E[1/(a + X)] <= (1 + eps) / (a + m), as :func:`rankseg._exact._reciprocal_gap`."""
    m = tl.maximum(m, 0.0)
    delta = tl.minimum(tl.sqrt(80.0 / tl.maximum(m, 1.0)), 1.0)
    tail = m * m * tl.exp(-delta * delta * m / 2) / (a * (a + m))
    split = var / ((a + m) * (a + (1 - delta) * m)) + tail
    return tl.minimum(var / ((a + m) * tl.maximum(a, 1e-300)), split)


@triton.jit
def _ratio(total, n, mu, DICE: tl.constexpr):
    """RMA score (smooth 0) of a set of n pixels of mass total."""
    if DICE:
        return 2 * total / (n + mu + 1)
    else:
        den = mu + n - total
        return tl.where(den > 0, total / tl.maximum(den, 1e-300), 0.0)


@triton.jit
def _ratio_upper(total, n, mu, DICE: tl.constexpr):
    """:func:`_ratio` for an upper bound on a set's mass: +inf where that bound leaves no positive IoU denominator
    (the bound then says nothing)."""
    if DICE:
        return 2 * total / (n + mu + 1)
    else:
        den = mu + n - total
        return tl.where(den > 0, total / tl.maximum(den, 1e-300), float("inf"))


@triton.jit
def exact_window_kernel(
    hist_ptr,
    mu_ptr,
    solve_ptr,
    klo_ptr,
    khi_ptr,
    cnt_ptr,
    nhi_ptr,
    hi_ptr,
    node_ptr,
    ok_ptr,
    stats_ptr,
    d,
    inv_scale: tl.float64,
    slack: tl.float64,
    max_y: tl.float64,
    min_mass: tl.float64,
    tol: tl.float64,
    max_nodes,
    max_terms,
    DICE: tl.constexpr,
    NB: tl.constexpr,
    BASE: tl.constexpr,
    SHIFT: tl.constexpr,
):
    """Per row (one program each), from its bin counts: the bins [k_lo, k_hi] that certainly hold the exact
    optimum's last pixel, so the exact masks select every pixel above bin k_hi and none below bin k_lo.

    Within each bin k (ranks n_gt(k) + 1 .. n_ge(k)) the RMA score is at most its value at one of the two end
    ranks with every bin's mass at its upper edge, and the exact score at most that times 1 + eps (the gap of
    :func:`rankseg._exact._score_gap` at the bin's first rank, with Var <= mu - sum of squares at the lower
    edges); the best exact score is at least L, the best RMA score of a bin-edge set with each mass at its lower
    edge. A bin whose bound stays below L cannot hold the optimum.

    Also per row: the count above the band (n_hi) and in it, the float32 threshold hi with p > hi exactly for the
    pixels above the band, the quadrature (c, x_lo, node count, series terms; nodes for every tau >= n_hi + 1 as
    in :func:`rankseg._exact._band_masks`) and whether the row takes this path (solved, mass >= min_mass, nodes
    with y <= max_y, at most max_nodes nodes and max_terms terms). stats (5,) int64 gets the band total, the
    largest band, the rows solved but not ok, and the largest node and term counts (atomics).
    """
    row = tl.program_id(0)
    k, cnt, lower, upper = _bins(hist_ptr, row, NB, BASE, SHIFT)
    c64 = cnt.to(tl.float64)
    n_ge = tl.cumsum(cnt, 0, reverse=True)
    n_gt = n_ge - cnt
    s_lo_ge = tl.cumsum(c64 * lower, 0, reverse=True)
    s_hi_ge = tl.cumsum(c64 * upper, 0, reverse=True)
    s_hi_gt = s_hi_ge - c64 * upper
    mu = tl.load(mu_ptr + row).to(tl.float64) * inv_scale
    # Var = mu - sum p^2, with mu's truncation (< d units) added
    var = tl.maximum(mu + d * inv_scale - tl.sum(c64 * lower * lower, 0), 0.0) * (1 + slack)
    p_top = tl.minimum(tl.max(tl.where(cnt > 0, upper, 0.0), 0), 1.0)
    level = tl.max(_ratio(s_lo_ge, n_ge.to(tl.float64), mu, DICE), 0) * (1 - slack)
    first = n_gt.to(tl.float64) + 1
    last = n_ge.to(tl.float64)
    # S_tau <= s_hi_gt + (tau - n_gt) upper inside the bin: the bound is linear-fractional in tau, so its
    # largest value is at an end
    r_up = tl.maximum(_ratio_upper(s_hi_gt + upper, first, mu, DICE), _ratio_upper(s_hi_ge, last, mu, DICE))
    if DICE:
        a = first + 1
        eps = (1 + _recip_gap(var, a, mu - 1)) * (1 + p_top / (a + mu - 1)) - 1
    else:
        eps = _recip_gap(var, first, mu - s_hi_ge)
    cand = (cnt > 0) & (r_up * (1 + eps) * (1 + slack) >= level)
    k_lo = tl.min(tl.where(cand, k, NB), 0)
    k_hi = tl.max(tl.where(cand, k, -1), 0)
    has = k_hi >= 0
    n_hi = tl.sum(tl.where(k > k_hi, cnt, 0), 0)
    count = tl.sum(tl.where((k >= k_lo) & (k <= k_hi), cnt, 0), 0)
    s_band = tl.sum(tl.where(k >= k_lo, c64 * upper, 0.0), 0)  # >= the mass of every candidate set

    # quadrature for every tau >= n_hi + 1 (rankseg._exact._band_masks; rankseg._quadrature.nodes)
    if DICE:
        a_min = n_hi.to(tl.float64) + 1
        m_out = mu
    else:
        a_min = tl.maximum(n_hi.to(tl.float64), 1.0)
        m_out = tl.maximum(mu - s_band, 0.0)
    horizon = 38.0 / a_min
    a_eff = a_min + m_out * (1 - tl.exp(-horizon)) / horizon
    c = 1 / (mu + a_eff)
    x_lo = _asinh(tl.log(1e-13 / (d + mu + 1) / c) / 1.5707963267948966)
    x_hi = _asinh(tl.log(38.0 / a_eff / c) / 1.5707963267948966)
    n_nodes = tl.maximum(tl.ceil((x_hi - x_lo) / 0.09), 1.0)
    x_top = x_lo + n_nodes * 0.09
    t_top = c * tl.exp((tl.exp(x_top) - tl.exp(-x_top)) / 2 * 1.5707963267948966)
    y_top = 1 - tl.exp(-t_top)
    y_safe = tl.minimum(tl.maximum(y_top, 1e-300), 0.999)
    # least M with mu y^(M + 1) / ((M + 1) (1 - y)) <= tol: the log G series' remainder (and the Dice terms')
    terms = tl.maximum(tl.ceil(tl.log(tol * (1 - y_safe) / tl.maximum(mu, 1.0)) / tl.log(y_safe)), 2.0)

    solve = tl.load(solve_ptr + row) != 0
    ok = solve & has & (mu >= min_mass) & (y_top <= max_y) & (n_nodes + 1 <= max_nodes) & (terms <= max_terms)
    k_lo = tl.where(ok, k_lo, NB)
    k_hi = tl.where(ok, k_hi, NB - 1)
    count = tl.where(ok, count, 0)
    n_hi = tl.where(ok, n_hi, 0)
    hi = (((k_hi + BASE) << SHIFT) - 1).to(tl.float32, bitcast=True)  # p > hi exactly when key(p) > k_hi
    tl.store(klo_ptr + row, k_lo)
    tl.store(khi_ptr + row, k_hi)
    tl.store(cnt_ptr + row, count)
    tl.store(nhi_ptr + row, n_hi)
    tl.store(hi_ptr + row, hi)
    base = node_ptr + row.to(tl.int64) * 4
    tl.store(base, c)
    tl.store(base + 1, x_lo)
    tl.store(base + 2, tl.where(ok, n_nodes, 0.0))
    tl.store(base + 3, tl.where(ok, terms, 0.0))
    tl.store(ok_ptr + row, ok.to(tl.int8))
    tl.atomic_add(stats_ptr, count)
    tl.atomic_max(stats_ptr + 1, count)
    tl.atomic_add(stats_ptr + 2, (solve & ~ok).to(tl.int64))
    tl.atomic_max(stats_ptr + 3, tl.where(ok, n_nodes, 0.0).to(tl.int64) + 1)
    tl.atomic_max(stats_ptr + 4, tl.where(ok, terms, 0.0).to(tl.int64))


@triton.jit
def _nodes(node_ptr, row, KT: tl.constexpr):
    """The row's quadrature nodes t, weights w and y = 1 - e^-t (KT wide; nodes past the count have w = 0)."""
    base = node_ptr + row.to(tl.int64) * 4
    c = tl.load(base)
    x_lo = tl.load(base + 1)
    n_nodes = tl.load(base + 2)
    kk = tl.arange(0, KT)
    x = x_lo + kk.to(tl.float64) * 0.09
    sinh = (tl.exp(x) - tl.exp(-x)) / 2
    cosh = (tl.exp(x) + tl.exp(-x)) / 2
    t = c * tl.exp(sinh * 1.5707963267948966)
    w = tl.where(kk.to(tl.float64) <= n_nodes, cosh * t * (0.09 * 1.5707963267948966), 0.0)
    # 1 - e^-t without cancellation for small t
    small = t * (1 - t / 2 * (1 - t / 3 * (1 - t / 4)))
    y = tl.where(t < 1e-3, small, 1 - tl.exp(-t))
    return t, w, y


@triton.jit
def _band_terms(b, y, inb, DICE: tl.constexpr):
    """(BJ, KT) per band pixel and node: b / (1 - b y) (Dice) or log(1 - b y) (IoU); 0 outside the band."""
    by = b[:, None] * y[None, :]
    if DICE:
        v = b[:, None] / (1 - by)
    else:
        v = tl.log(1 - by)
    return tl.where(inb[:, None], v, 0.0)


@triton.jit
def exact_block_sums_kernel(
    bval_ptr,
    start_ptr,
    cnt_ptr,
    node_ptr,
    sums_ptr,
    bsum_ptr,
    nblk,
    DICE: tl.constexpr,
    BJ: tl.constexpr,
    KT: tl.constexpr,
):
    """Per (row, block of BJ sorted band ranks): the block's sums of the band terms at every node (KT) and of
    its values, for the prefix sums across blocks. Grid (R, nblk)."""
    row = tl.program_id(0)
    blk = tl.program_id(1)
    at = row.to(tl.int64) * nblk + blk
    kk = tl.arange(0, KT)
    count = tl.load(cnt_ptr + row)
    j = blk * BJ + tl.arange(0, BJ)
    inb = j < count
    b = tl.load(bval_ptr + tl.load(start_ptr + row) + j, mask=inb, other=0.0).to(tl.float64)
    t, w, y = _nodes(node_ptr, row, KT)
    tl.store(sums_ptr + at * KT + kk, tl.sum(_band_terms(b, y, inb, DICE), 0))
    tl.store(bsum_ptr + at, tl.sum(b, 0))


@triton.jit
def exact_block_scores_kernel(
    bval_ptr,
    start_ptr,
    cnt_ptr,
    nhi_ptr,
    node_ptr,
    rowpow_ptr,
    above_ptr,
    mu_ptr,
    off_ptr,
    boff_ptr,
    best_ptr,
    arg_ptr,
    nblk,
    unit: tl.float64,
    MP: tl.constexpr,
    DICE: tl.constexpr,
    BJ: tl.constexpr,
    KT: tl.constexpr,
):
    """Per (row, block of BJ sorted band ranks): the exact expected score (smooth 0) of the top-tau set for
    tau = n_hi + j + 1 at each band rank j of the block, and the block's best score with its first rank.

    log G(t_k) = -sum_m P_m y^m / m from the row's fixed-point power sums (P_1 = mu); the pixels above the band
    enter through their power sums A_m: sum p / (1 - p y) = sum_m A_(m+1) y^m (Dice), sum log(1 - p y) =
    -sum_m A_m y^m / m (IoU); the band's own pixels directly, prefix-summed (the earlier blocks' sums come in
    ``off`` / ``boff``). Grid (R, nblk)."""
    row = tl.program_id(0)
    blk = tl.program_id(1)
    at = row.to(tl.int64) * nblk + blk
    count = tl.load(cnt_ptr + row)
    j = blk * BJ + tl.arange(0, BJ)
    inb = j < count
    if blk * BJ >= count:
        tl.store(best_ptr + at, float("-inf"))
        tl.store(arg_ptr + at, 0)
    else:
        kk = tl.arange(0, KT)
        b = tl.load(bval_ptr + tl.load(start_ptr + row) + j, mask=inb, other=0.0).to(tl.float64)
        t, w, y = _nodes(node_ptr, row, KT)
        terms = tl.load(node_ptr + row.to(tl.int64) * 4 + 3).to(tl.int32)
        pw = row.to(tl.int64) * MP
        mu = tl.load(mu_ptr + row).to(tl.float64) * unit
        # log G and the terms of the pixels above the band, by their power series in y
        y_m = y
        log_g = -mu * y
        if DICE:
            hi_terms = tl.load(above_ptr + pw).to(tl.float64) * unit + tl.zeros([KT], dtype=tl.float64)
        else:
            hi_terms = tl.zeros([KT], dtype=tl.float64)
        for m in range(1, terms + 1):
            a_m = tl.load(above_ptr + pw + m - 1).to(tl.float64) * unit  # A_m
            if m > 1:
                log_g -= tl.load(rowpow_ptr + pw + m - 2).to(tl.float64) * unit * y_m / m
            if DICE:
                hi_terms += tl.load(above_ptr + pw + m).to(tl.float64) * unit * y_m  # A_(m+1) y^m
            else:
                hi_terms -= a_m * y_m / m
            y_m = y_m * y
        cum = tl.cumsum(_band_terms(b, y, inb, DICE), 0) + tl.load(off_ptr + at * KT + kk)[None, :]
        tau = (tl.load(nhi_ptr + row) + j + 1).to(tl.float64)
        log_w = tl.log(tl.maximum(w, 1e-300))
        if DICE:
            expo = (log_w + log_g)[None, :] - (tau + 1)[:, None] * t[None, :]
            vals = tl.exp(expo) * (hi_terms[None, :] + cum)
            score = 2 * tl.sum(tl.where(w[None, :] > 0, vals, 0.0), 1)
        else:
            s_above = tl.load(above_ptr + pw).to(tl.float64) * unit
            total = s_above + tl.load(boff_ptr + at) + tl.cumsum(b, 0)
            expo = (log_w + log_g - hi_terms)[None, :] - cum - tau[:, None] * t[None, :]
            vals = tl.exp(expo)
            score = total * tl.sum(tl.where(w[None, :] > 0, vals, 0.0), 1)
            score = tl.where(total > 0, score, 0.0)
        score = tl.where(inb, score, float("-inf"))
        best = tl.max(score, 0)
        tl.store(best_ptr + at, best)
        tl.store(arg_ptr + at, tl.min(tl.where(score == best, j, 2**30), 0).to(tl.int64))


@triton.jit
def exact_select_kernel(
    best_ptr,
    arg_ptr,
    ok_ptr,
    start_ptr,
    bidx_ptr,
    mask_ptr,
    nblk,
    BLOCK: tl.constexpr,
):
    """Per row (one program each): the best band rank over the blocks (the first of equal scores, i.e. the
    smallest tau) and the mask bits of the band pixels up to it, in their sorted order (value descending, index
    ascending among equal values: exactly tau pixels, as :func:`rankseg._band.mask_at_rank`)."""
    row = tl.program_id(0)
    if tl.load(ok_ptr + row) != 0:
        base = row.to(tl.int64) * nblk
        best = tl.full([], float("-inf"), tl.float64)
        best_j = tl.full([], 0, tl.int64)
        for b0 in range(0, nblk, BLOCK):
            ii = b0 + tl.arange(0, BLOCK)
            inside = ii < nblk
            v = tl.load(best_ptr + base + ii, mask=inside, other=float("-inf"))
            a = tl.load(arg_ptr + base + ii, mask=inside, other=0)
            m = tl.max(v, 0)
            first = tl.min(tl.where((v == m) & inside, a, 2**62), 0)
            better = m > best
            best_j = tl.where(better, first, best_j)
            best = tl.where(better, m, best)
        start = tl.load(start_ptr + row)
        n_take = (best_j + 1).to(tl.int32)
        for q0 in range(0, n_take, BLOCK):
            q = q0 + tl.arange(0, BLOCK)
            take = q < n_take
            idx = tl.load(bidx_ptr + start + q, mask=take, other=0)
            tl.store(mask_ptr + idx, tl.full([BLOCK], 1, dtype=tl.int1), mask=take)


@triton.jit
def sort_keys_kernel(bval_ptr, bidx_ptr, key_ptr, n, d, BLOCK: tl.constexpr):
    """key = row * 2^31 + (bits(1.0) - bits(p)) for the band entries (pixel order within a row already): a
    stable sort on it orders each row's band by value, descending, and pixels of equal value by index."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = i < n
    x = tl.load(bval_ptr + i, mask=inside, other=0.0)
    idx = tl.load(bidx_ptr + i, mask=inside, other=0)
    bits = x.to(tl.int32, bitcast=True).to(tl.int64)
    tl.store(key_ptr + i, (idx // d) * 2147483648 + (1065353216 - bits), mask=inside)


__all__ = [
    "exact_block_scores_kernel",
    "exact_block_sums_kernel",
    "exact_select_kernel",
    "exact_window_kernel",
    "sort_keys_kernel",
]
