"""The Triton kernels (imported only when triton is; see :mod:`rankseg._triton.rma` for what each pass does).

Conventions: a "row" is one (image, class) of the (R, d) row view; probabilities are float32; every sum that
decides a mask is an int64 sum of values truncated to fixed point (``scale`` = 2^fx units per 1), so it is
exact whatever the order of the additions; counts are integers. ``key`` maps a probability to one of NB
logarithmic bins (float32 exponent and 7 mantissa bits; bin 0 holds everything below 2^-15).
"""

import triton
import triton.language as tl

# Bins: key = (bits(p) >> SHIFT) - BASE + 1, clamped to [0, NB - 1]; BASE is bits(2^-15) >> SHIFT, so bin k >= 1
# holds [edge(k - 1), edge(k)) with edge(j) = float(bits (j + BASE) << SHIFT), and p = 1 falls in bin 1921.
NB = 2048
SHIFT = 16
BASE = (127 - 15) << (23 - SHIFT)


@triton.jit
def _key(x, NB: tl.constexpr, BASE: tl.constexpr, SHIFT: tl.constexpr):
    bits = x.to(tl.int32, bitcast=True)
    return tl.minimum(tl.maximum((bits >> SHIFT) - BASE + 1, 0), NB - 1)


@triton.jit
def _fixed(x, scale):
    """Fixed-point int64 of float values (truncated: the same integer whatever the order it is added in)."""
    return (x.to(tl.float64) * scale).to(tl.int64)


@triton.jit
def row_hist_kernel(
    p_ptr,
    hist_ptr,
    mu_ptr,
    d,
    span,
    scale: tl.float64,
    BLOCK: tl.constexpr,
    NB: tl.constexpr,
    BASE: tl.constexpr,
    SHIFT: tl.constexpr,
):
    """Pass 1 (reads p once): per row, the bin counts of its values and its fixed-point sum mu.
    Grid (R, cdiv(d, span)): each program adds its span's counts and sum with integer atomics."""
    row = tl.program_id(0)
    start = tl.program_id(1) * span
    end = tl.minimum(start + span, d)
    base = p_ptr + row.to(tl.int64) * d
    hist = tl.zeros([NB], dtype=tl.int32)
    acc = tl.zeros([BLOCK], dtype=tl.int64)
    for off in range(start, end, BLOCK):
        offs = off + tl.arange(0, BLOCK)
        inside = offs < end
        x = tl.load(base + offs, mask=inside, other=0.0)
        hist += tl.histogram(_key(x, NB, BASE, SHIFT), NB, mask=inside)
        acc += _fixed(x, scale)
    tl.atomic_add(hist_ptr + row.to(tl.int64) * NB + tl.arange(0, NB), hist)
    tl.atomic_add(mu_ptr + row, tl.sum(acc, 0))


@triton.jit
def _cut(v, DICE: tl.constexpr):
    if DICE:
        return v / 2
    else:
        return v / (1 + v)


@triton.jit
def _score(total, n, mu, smooth, DICE: tl.constexpr):
    """Ratio score of a set of n pixels of mass total (Dice with s = 0, or IoU with smoothing s), float64."""
    if DICE:
        return 2 * total / (n + mu + 1)
    else:
        den = mu + smooth + n - total
        return tl.where(den > 0, (total + smooth) / tl.maximum(den, 1e-300), 0.0)


@triton.jit
def _bins(hist_ptr, row, NB: tl.constexpr, BASE: tl.constexpr, SHIFT: tl.constexpr):
    """A row's bins: index k, count (int64) and the float64 edges [lower, upper) of each (bin 0 from 0)."""
    k = tl.arange(0, NB)
    cnt = tl.load(hist_ptr + row.to(tl.int64) * NB + k).to(tl.int64)
    upper = ((k + BASE) << SHIFT).to(tl.float32, bitcast=True).to(tl.float64)
    lower = ((k - 1 + BASE) << SHIFT).to(tl.float32, bitcast=True).to(tl.float64)
    return k, cnt, tl.where(k == 0, 0.0, lower), upper


@triton.jit
def bracket_kernel(
    hist_ptr,
    mu_ptr,
    solve_ptr,
    klo_ptr,
    khi_ptr,
    cnt_ptr,
    nabove_ptr,
    vstart_ptr,
    inv_scale: tl.float64,
    smooth: tl.float64,
    slack: tl.float64,
    DICE: tl.constexpr,
    NB: tl.constexpr,
    BASE: tl.constexpr,
    SHIFT: tl.constexpr,
):
    """Per row (one program each), from its bin counts: certified bounds v_lo <= v* <= v_hi of the optimal
    ratio score, the bins [k_lo, k_hi] that hold every pixel whose side of the optimal cut is undecided, the
    band's size and the number of pixels above it. Rows not solved get an empty band and nothing above.

    v_lo: the best score of a bin-edge set {key >= k} with each bin's mass at its lower edge (a feasible set,
    under-valued). v_hi = v_lo + F(v_lo) / slope with F bounded above by putting each bin's mass at its upper
    edge (F is convex, decreasing, with slopes <= -slope, and F(v*) = 0).
    """
    row = tl.program_id(0)
    k, cnt, lower, upper = _bins(hist_ptr, row, NB, BASE, SHIFT)
    c64 = cnt.to(tl.float64)
    n_ge = tl.cumsum(cnt, 0, reverse=True)
    s_ge = tl.cumsum(c64 * lower, 0, reverse=True)
    mu = tl.load(mu_ptr + row).to(tl.float64) * inv_scale
    v_lo = tl.max(_score(s_ge, n_ge.to(tl.float64), mu, smooth, DICE), 0)
    v_lo = tl.maximum(v_lo, 0.0)
    if DICE:
        f_up = tl.sum(c64 * tl.maximum(2 * upper - v_lo, 0.0), 0) - v_lo * (mu + 1)
        slope = mu + 1
    else:
        f_up = tl.sum(c64 * tl.maximum((1 + v_lo) * upper - v_lo, 0.0), 0) + smooth - v_lo * (mu + smooth)
        slope = tl.maximum(mu + smooth, 1e-300)
    v_hi = v_lo + tl.maximum(f_up, 0.0) / slope
    v_start = v_lo * (1 - slack)
    lo_cut = (_cut(v_start, DICE) * (1 - slack)).to(tl.float32)
    hi_cut = (_cut(v_hi * (1 + slack), DICE) * (1 + slack) + 1e-30).to(tl.float32)
    k_lo = _key(lo_cut, NB, BASE, SHIFT)
    k_hi = _key(hi_cut, NB, BASE, SHIFT)
    solve = tl.load(solve_ptr + row) != 0
    k_lo = tl.where(solve, k_lo, NB)
    k_hi = tl.where(solve, k_hi, NB - 1)
    in_band = (k >= k_lo) & (k <= k_hi)
    tl.store(klo_ptr + row, k_lo)
    tl.store(khi_ptr + row, k_hi)
    tl.store(cnt_ptr + row, tl.sum(tl.where(in_band, cnt, 0), 0))
    tl.store(nabove_ptr + row, tl.sum(tl.where(k > k_hi, cnt, 0), 0))
    tl.store(vstart_ptr + row, v_start)


@triton.jit
def gather_kernel(
    p_ptr,
    mask_ptr,
    klo_ptr,
    khi_ptr,
    start_ptr,
    fill_ptr,
    bval_ptr,
    bidx_ptr,
    sabove_ptr,
    d,
    span,
    scale: tl.float64,
    BLOCK: tl.constexpr,
    NB: tl.constexpr,
    BASE: tl.constexpr,
    SHIFT: tl.constexpr,
):
    """Pass 2 (reads p once, writes the mask): pixels above the band are selected and summed (fixed point);
    band pixels are written to the row's slice of the band buffers (value and flat index, in any order) and
    left unselected for :func:`dinkelbach_kernel`; the rest is unselected. Grid (R, cdiv(d, span))."""
    row = tl.program_id(0)
    start = tl.program_id(1) * span
    end = tl.minimum(start + span, d)
    row_base = row.to(tl.int64) * d
    k_lo = tl.load(klo_ptr + row)
    k_hi = tl.load(khi_ptr + row)
    first = tl.load(start_ptr + row)
    acc = tl.zeros([BLOCK], dtype=tl.int64)
    for off in range(start, end, BLOCK):
        offs = off + tl.arange(0, BLOCK)
        inside = offs < end
        x = tl.load(p_ptr + row_base + offs, mask=inside, other=0.0)
        key = _key(x, NB, BASE, SHIFT)
        above = (key > k_hi) & inside
        tl.store(mask_ptr + row_base + offs, above, mask=inside)
        acc += tl.where(above, _fixed(x, scale), 0)
        band = (key >= k_lo) & (key <= k_hi) & inside
        n_band = tl.sum(band.to(tl.int64), 0)
        if n_band > 0:
            pos = first + tl.atomic_add(fill_ptr + row, n_band) + tl.cumsum(band.to(tl.int64), 0) - 1
            tl.store(bval_ptr + pos, x, mask=band)
            tl.store(bidx_ptr + pos, row_base + offs, mask=band)
    tl.atomic_add(sabove_ptr + row, tl.sum(acc, 0))


@triton.jit
def dinkelbach_kernel(
    bval_ptr,
    bidx_ptr,
    start_ptr,
    cnt_ptr,
    vstart_ptr,
    nabove_ptr,
    sabove_ptr,
    mu_ptr,
    mask_ptr,
    nsel_ptr,
    iters_ptr,
    scale: tl.float64,
    inv_scale: tl.float64,
    smooth: tl.float64,
    max_iters,
    DICE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Per row (one program each): Dinkelbach steps v <- max(v, score({p > cut(v)})) over the band's pixels only,
    from a lower bound v_start whose cut lies at the band's bottom, until the selected count repeats; then the
    band pixels above the final cut are set in the mask. Sums are fixed point, so the steps do not depend on
    the band's order."""
    row = tl.program_id(0)
    first = tl.load(start_ptr + row)
    count = tl.load(cnt_ptr + row)
    v = tl.load(vstart_ptr + row)
    n_above = tl.load(nabove_ptr + row)
    s_above = tl.load(sabove_ptr + row)
    mu = tl.load(mu_ptr + row).to(tl.float64) * inv_scale
    n_prev = n_above - 1
    n_tot = n_above
    cut = _cut(v, DICE)
    it = 0
    running = 1
    while running != 0:
        cut = _cut(v, DICE)
        n = tl.zeros([BLOCK], dtype=tl.int64)
        s = tl.zeros([BLOCK], dtype=tl.int64)
        for off in range(0, count, BLOCK):
            offs = off + tl.arange(0, BLOCK)
            inside = offs < count
            x = tl.load(bval_ptr + first + offs, mask=inside, other=0.0)
            sel = (x.to(tl.float64) > cut) & inside
            n += sel.to(tl.int64)
            s += tl.where(sel, _fixed(x, scale), 0)
        n_tot = n_above + tl.sum(n, 0)
        total = (s_above + tl.sum(s, 0)).to(tl.float64) * inv_scale
        score = _score(total, n_tot.to(tl.float64), mu, smooth, DICE)
        it += 1
        done = (n_tot == n_prev) | (it >= max_iters)
        running = tl.where(done, 0, 1)
        v = tl.where(done, v, tl.maximum(v, score))
        n_prev = n_tot
    for off in range(0, count, BLOCK):
        offs = off + tl.arange(0, BLOCK)
        inside = offs < count
        x = tl.load(bval_ptr + first + offs, mask=inside, other=0.0)
        idx = tl.load(bidx_ptr + first + offs, mask=inside, other=0)
        tl.store(mask_ptr + idx, x.to(tl.float64) > cut, mask=inside)
    tl.store(nsel_ptr + row, n_tot)
    tl.store(iters_ptr + row, it)


@triton.jit
def owned_kernel(
    p_ptr,
    mask_ptr,
    tau_ptr,
    mass_ptr,
    mu_ptr,
    nsel_ptr,
    d,
    C,
    span,
    scale: tl.float64,
    CP: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Multiclass pass 1 (reads p and the masks once): per (image, class) the number and fixed-point mass of
    the pixels it alone selects, its fixed-point row sum mu and its selected count. Grid (B, cdiv(d, span))."""
    img = tl.program_id(0)
    start = tl.program_id(1) * span
    end = tl.minimum(start + span, d)
    cls = tl.arange(0, CP)
    real = cls < C
    row_base = (img * C + cls).to(tl.int64) * d
    tau = tl.zeros([CP], dtype=tl.int64)
    mass = tl.zeros([CP], dtype=tl.int64)
    mu = tl.zeros([CP], dtype=tl.int64)
    nsel = tl.zeros([CP], dtype=tl.int64)
    for off in range(start, end, BLOCK):
        offs = off + tl.arange(0, BLOCK)
        both = real[:, None] & (offs < end)[None, :]
        ptrs = row_base[:, None] + offs[None, :]
        sel = tl.load(mask_ptr + ptrs, mask=both, other=0).to(tl.int32)
        x = tl.load(p_ptr + ptrs, mask=both, other=0.0)
        fx = _fixed(x, scale)
        alone = (sel != 0) & (tl.sum(sel, 0) == 1)[None, :]
        tau += tl.sum(alone.to(tl.int64), 1)
        mass += tl.sum(tl.where(alone, fx, 0), 1)
        mu += tl.sum(fx, 1)
        nsel += tl.sum(sel.to(tl.int64), 1)
    at = img * C + cls
    tl.atomic_add(tau_ptr + at, tau, mask=real)
    tl.atomic_add(mass_ptr + at, mass, mask=real)
    tl.atomic_add(mu_ptr + at, mu, mask=real)
    tl.atomic_add(nsel_ptr + at, nsel, mask=real)


@triton.jit
def resolve_kernel(
    p_ptr,
    mask_ptr,
    a_ptr,
    b_ptr,
    active_ptr,
    out_ptr,
    d,
    C,
    span,
    void_index,
    DICE: tl.constexpr,
    VOID: tl.constexpr,
    CP: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Multiclass pass 2 (reads p and the masks once, writes the labels): every pixel takes the first class with
    the largest increment among its eligible ones (selecting classes; active classes where none selects).
    Increments in float32 with 0.0.8's expressions: Dice (p - a) b, IoU (p - a (1 - p)) / (b + (1 - p)), with
    the per-class constants a, b computed by the caller. Grid (B, cdiv(d, span))."""
    img = tl.program_id(0)
    start = tl.program_id(1) * span
    end = tl.minimum(start + span, d)
    cls = tl.arange(0, CP)
    real = cls < C
    row_base = (img * C + cls).to(tl.int64) * d
    a = tl.load(a_ptr + img * C + cls, mask=real, other=0.0)[:, None]
    b = tl.load(b_ptr + img * C + cls, mask=real, other=1.0)[:, None]
    active = (tl.load(active_ptr + img * C + cls, mask=real, other=0) != 0)[:, None]
    for off in range(start, end, BLOCK):
        offs = off + tl.arange(0, BLOCK)
        px = offs < end
        both = real[:, None] & px[None, :]
        ptrs = row_base[:, None] + offs[None, :]
        sel = tl.load(mask_ptr + ptrs, mask=both, other=0).to(tl.int32)
        x = tl.load(p_ptr + ptrs, mask=both, other=0.0)
        unassigned = tl.sum(sel, 0) == 0
        eligible = (sel != 0) | (unassigned[None, :] & active)
        if DICE:
            gain = (x - a) * b
        else:
            rest = 1.0 - x
            gain = tl.math.div_rn(x - a * rest, b + rest)
        gain = tl.where(eligible, gain, -1e30)
        gain = tl.where(real[:, None], gain, float("-inf"))
        label = tl.argmax(gain, 0, tie_break_left=True).to(tl.int64)
        if VOID:
            label = tl.where(unassigned, void_index, label)
        tl.store(out_ptr + img.to(tl.int64) * d + offs, label, mask=px)


__all__ = [
    "bounds_kernel",
    "BASE", "NB", "SHIFT", "bracket_kernel", "dinkelbach_kernel", "gather_kernel", "owned_kernel",
    "resolve_kernel", "row_hist_kernel", "row_powers_kernel", "triton",
]  # fmt: skip


@triton.jit
def bounds_kernel(p_ptr, rowmax_ptr, low_ptr, bad_ptr, d, span, BLOCK: tl.constexpr):
    """Value checks in one read: per row its largest finite value, over all rows the smallest finite value and the
    number of non-finite values (atomics of max, min and a count: the same result in any order). Grid (R,
    cdiv(d, span)); ``rowmax`` starts at -inf, ``low`` at +inf."""
    row = tl.program_id(0)
    start = tl.program_id(1) * span
    end = tl.minimum(start + span, d)
    base = p_ptr + row.to(tl.int64) * d
    hi = tl.full([BLOCK], float("-inf"), tl.float32)
    lo = tl.full([BLOCK], float("inf"), tl.float32)
    bad = tl.zeros([BLOCK], dtype=tl.int32)
    for off in range(start, end, BLOCK):
        offs = off + tl.arange(0, BLOCK)
        inside = offs < end
        x = tl.load(base + offs, mask=inside, other=0.0)
        finite = (x == x) & (tl.abs(x) != float("inf"))
        bad += (inside & ~finite).to(tl.int32)
        keep = inside & finite
        hi = tl.maximum(hi, tl.where(keep, x, float("-inf")))
        lo = tl.minimum(lo, tl.where(keep, x, float("inf")))
    tl.atomic_max(rowmax_ptr + row, tl.max(hi, 0))
    tl.atomic_min(low_ptr, tl.min(lo, 0))
    tl.atomic_add(bad_ptr, tl.sum(bad, 0))


@triton.jit
def row_powers_kernel(
    p_ptr,
    hi_ptr,
    out_ptr,
    above_ptr,
    d,
    span,
    n_pow,
    n_above,
    scale: tl.float64,
    BLOCK: tl.constexpr,
    MP: tl.constexpr,
):
    """Exact solver's power sums in one read (``out`` and ``above`` (R, MP) start at 0). Per row:

    * out[m], m < n_pow: the int64 sum over the row of trunc(q scale), q = p^(m + 2) formed by repeated float32
      products (p p, then times p), as :func:`rankseg._exact._row_powers` forms them;
    * above[m], m < n_above: the same over the pixels p > hi (the row's threshold) of q = p^(m + 1) formed by
      repeated float64 products, as :func:`rankseg._exact._above_powers` forms them.

    scale is a power of two, so q scale is exact and its truncation is the same integer on every path.
    Grid (R, cdiv(d, span))."""
    row = tl.program_id(0)
    start = tl.program_id(1) * span
    end = tl.minimum(start + span, d)
    base = p_ptr + row.to(tl.int64) * d
    hi = tl.load(hi_ptr + row)
    ms = tl.arange(0, MP)
    acc = tl.zeros([MP], dtype=tl.int64)
    acc_hi = tl.zeros([MP], dtype=tl.int64)
    for off in range(start, end, BLOCK):
        offs = off + tl.arange(0, BLOCK)
        inside = offs < end
        x = tl.load(base + offs, mask=inside, other=0.0)
        q = x
        for m in range(0, n_pow):
            q = q * x
            acc += tl.where(ms == m, tl.sum(_fixed(q, scale), 0), 0)
        if n_above > 0:
            above = inside & (x > hi)
            if tl.sum(above.to(tl.int32), 0) > 0:
                x64 = tl.where(above, x.to(tl.float64), 0.0)
                q64 = x64
                for m in range(0, n_above):
                    acc_hi += tl.where(ms == m, tl.sum((q64 * scale).to(tl.int64), 0), 0)
                    q64 = q64 * x64
    at = row.to(tl.int64) * MP + ms
    tl.atomic_add(out_ptr + at, acc, mask=ms < n_pow)
    tl.atomic_add(above_ptr + at, acc_hi, mask=ms < n_above)
