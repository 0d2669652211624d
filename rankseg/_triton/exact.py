"""The exact solver's passes on CUDA with Triton (:mod:`rankseg._exact`).

``row_powers`` (:func:`row_powers`): one read of the input for every row's fixed-point power sums
sum_j p_j^m, m = 2 .. M (the series of log G in the band path of :func:`rankseg._exact._band_masks`), and those
of the pixels above the band, m = 1 .. M' (its H and log Q terms), where the torch reference makes one pass per
power over the row and gathers the pixels above the band. The powers are the same float32 (row) and float64
(above the band) products as the reference's and each is truncated to the same fixed-point integer before an
int64 sum, so the sums, and with them the masks, equal the reference's bit for bit whatever the block sizes and
the order in which the atomics land.

``exact_masks`` (:func:`exact_masks`): the whole exact solver at smooth 0 (Dice and IoU) for (R, d) float32 rows,
in seven kernels, a few torch ops (two sorts of the band) and one host sync:

1. ``row_hist`` (one read, shared with RMA): per row the counts in 2048 logarithmic bins and the sum mu;
2. ``exact_window``: per row, from the bins, the bins [k_lo, k_hi] that certainly hold the exact optimum's last
   pixel (a bin's best possible exact score, RMA at its upper-edge mass times 1 + eps, against the best RMA
   score at lower-edge mass; the bounds of :func:`rankseg._exact._score_gap`), the quadrature nodes for the
   ranks of that band and whether the row takes this path; the sizes of the band buffers, read by **the one
   host sync**;
3. ``row_powers`` (one read): the row's fixed-point power sums and those above the band;
4. ``gather`` (one read, shared with RMA): writes the mask of the pixels above the band and the band pixels'
   values and indices;
5. two stable sorts (by index, then by row and value: the band in decreasing order, equal values in index
   order, the tie rule of :func:`rankseg._band.mask_at_rank`);
6. ``exact_block_sums`` and ``exact_block_scores``: per block of band ranks, the exact expected score of every
   rank by quadrature (log G and the pixels above the band from power series, the band's pixels directly,
   prefix sums across blocks by one torch cumsum) and the block's best;
7. ``exact_select``: per row the best rank (the smallest tau among equal scores) and the mask bits of the band
   pixels up to it.

Rows the window cannot take (mass < 64, nodes with y > 0.3: small objects) are flagged and solved by the torch
path. Masks equal the torch path's wherever the float64 scores of two neighbouring ranks are not within their
rounding of each other (the two paths sum the same integrals in different orders).
"""

from __future__ import annotations

import torch

from rankseg._triton import interpreting
from rankseg._triton._launch import launch
from rankseg._triton.rma import _Geometry, _kernels, gather, row_hist

__all__ = ["MAX_POWERS", "exact_masks", "row_powers"]

# Powers per call (the kernel's accumulator width; the band path asks for at most 59).
MAX_POWERS = 64


def row_powers(
    rows: torch.Tensor, n_pow: int, scale: float, hi: torch.Tensor | None = None, n_above: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """int64 sums over each row of trunc(p^m scale), m = 2 .. n_pow + 1, and over its pixels p > hi of
    trunc(p^m scale), m = 1 .. n_above, in one read.

    Shape:
        rows: (R, d) float32.  hi: (R,) float32 (needed when n_above > 0).  outputs: (R, n_pow) and
        (R, n_above) int64.
    """
    for name, n in (("n_pow", n_pow), ("n_above", n_above)):
        if not 0 <= n <= MAX_POWERS:
            raise ValueError(f"{name} must be in [0, {MAX_POWERS}], got {n}")
    k = _kernels()
    p = rows.contiguous()
    n_rows, d = p.shape
    out = torch.zeros(2, n_rows, MAX_POWERS, dtype=torch.int64, device=p.device)
    if n_rows == 0 or d == 0 or n_pow + n_above == 0:
        return out[0, :, :n_pow], out[1, :, :n_above]
    if hi is None:
        if n_above:
            raise ValueError("n_above > 0 needs the thresholds hi")
        hi = torch.ones(n_rows, dtype=torch.float32, device=p.device)
    hi = hi.to(torch.float32).contiguous()
    geo = _Geometry(p)
    launch(k.row_powers_kernel, (n_rows, geo.parts), (p, hi, out[0], out[1], d, geo.span, n_pow, n_above,
           float(scale)), BLOCK=geo.block, MP=MAX_POWERS, reads=p.numel() * 4 + n_rows * 4,
           writes=n_rows * geo.parts * (n_pow + n_above) * 8)  # fmt: skip
    return out[0, :, :n_pow], out[1, :, :n_above]


# The exact window (see exact_masks): relative slack on the bounds, the node and series limits of the torch band
# path (rankseg._exact._BAND_MAX_Y, _BAND_MIN_MASS), the tolerance of the log G series (per row) and the ranks per
# scoring program.
_SLACK = 1e-6
_MAX_Y = 0.3
_MIN_MASS = 64.0
_SERIES_TOL = 1e-12
_MAX_NODES = 128
# Bytes the per-block node sums may take at least (beyond this and the input's size, blocks take more ranks).
_SUMS_MIN_BUDGET = 2**26


def _rank_block() -> int:
    return 256 if interpreting() else 32


def exact_masks(rows: torch.Tensor, metric: str, solve: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Exact-solver masks at smooth 0 (see the module docstring); rows with ``solve`` False stay empty.

    Returns the masks and the rows this path did not solve (None when there are none): their masks are empty and
    the caller solves them otherwise.

    Shape:
        rows: (R, d) float32.  solve: (R,) bool.  outputs: (R, d) bool and (n,) int64 row indices.
    """
    k = _kernels()
    from rankseg._triton import exact_kernels as ek

    p = rows.contiguous()
    n_rows, d = p.shape
    dev = p.device
    if n_rows == 0 or d == 0:
        return torch.zeros((n_rows, d), dtype=torch.bool, device=dev), None
    geo = _Geometry(p)
    scale, unit = geo.scale, geo.unit
    dice = metric == "dice"
    i64, f64 = torch.int64, torch.float64
    hist, mu = row_hist(p, geo)

    k_lo = torch.empty(n_rows, dtype=torch.int32, device=dev)
    k_hi = torch.empty_like(k_lo)
    count = torch.empty(n_rows, dtype=i64, device=dev)
    n_hi = torch.empty_like(count)
    hi = torch.empty(n_rows, dtype=torch.float32, device=dev)
    node = torch.empty(n_rows, 4, dtype=f64, device=dev)
    ok = torch.empty(n_rows, dtype=torch.int8, device=dev)
    stats = torch.zeros(5, dtype=i64, device=dev)
    flags = solve.view(torch.uint8) if solve.dtype == torch.bool else solve.to(torch.uint8)
    launch(ek.exact_window_kernel, (n_rows,), (hist, mu, flags, k_lo, k_hi, count, n_hi, hi, node, ok, stats, d,
           unit, _SLACK, _MAX_Y, _MIN_MASS, _SERIES_TOL, _MAX_NODES, MAX_POWERS - 1), DICE=dice, **geo.bins,
           reads=n_rows * (k.NB * 4 + 9), writes=n_rows * 62 + 40)  # fmt: skip
    total, widest, n_bad, n_nodes, terms = stats.tolist()  # the one host sync: sizes every buffer below
    bad = None
    if n_bad:
        bad = (flags.bool() & (ok == 0)).nonzero().squeeze(1)
    starts = torch.cumsum(count, 0) - count
    mask, band_vals, band_idx, _ = gather(p, geo, k_lo, k_hi, starts, total)
    if total == 0:
        return mask, bad
    row_pow, above = row_powers(p, max(terms - 1, 0), scale, hi, terms + 1)

    # the band of each row in decreasing order, equal values in index order
    band_idx, order = torch.sort(band_idx)
    band_vals = band_vals[order]
    keys = torch.empty(total, dtype=i64, device=dev)
    key_block = 1024
    launch(ek.sort_keys_kernel, (-(-total // key_block),), (band_vals, band_idx, keys, total, d), BLOCK=key_block,
           reads=total * 12, writes=total * 8)  # fmt: skip
    order = torch.sort(keys, stable=True)[1]
    band_vals, band_idx = band_vals[order], band_idx[order]

    kt = max(16, 1 << (max(n_nodes, 1) - 1).bit_length())
    # ranks per program: more where the per-block node sums (two (R, blocks, kt) float64 buffers) would pass the
    # input's size (rows whose band is most of the row)
    bj, budget = _rank_block(), max(p.numel() * p.element_size(), _SUMS_MIN_BUDGET)
    while bj < 1024 and 2 * n_rows * -(-widest // bj) * kt * 8 > budget:
        bj *= 2
    nblk = -(-widest // bj)
    sums = torch.empty(n_rows, nblk, kt, dtype=f64, device=dev)
    bsum = torch.empty(n_rows, nblk, dtype=f64, device=dev)
    launch(ek.exact_block_sums_kernel, (n_rows, nblk), (band_vals, starts, count, node, sums, bsum, nblk),
           DICE=dice, BJ=bj, KT=kt, reads=total * 4 + n_rows * 56,
           writes=sums.numel() * 8 + bsum.numel() * 8)  # fmt: skip
    off = torch.cumsum(sums, 1).sub_(sums)  # exclusive prefix over the blocks
    boff = torch.cumsum(bsum, 1).sub_(bsum)
    best = torch.empty(n_rows, nblk, dtype=f64, device=dev)
    arg = torch.empty(n_rows, nblk, dtype=i64, device=dev)
    launch(ek.exact_block_scores_kernel, (n_rows, nblk), (band_vals, starts, count, n_hi, node, row_pow, above, mu,
           off, boff, best, arg, nblk, unit), MP=MAX_POWERS, DICE=dice, BJ=bj, KT=kt,
           reads=total * 4 + off.numel() * 8 + n_rows * (2 * MAX_POWERS * 8 + 80),
           writes=best.numel() * 16)  # fmt: skip
    sel_block = 1024
    launch(ek.exact_select_kernel, (n_rows,), (best, arg, ok, starts, band_idx, mask, nblk), BLOCK=sel_block,
           reads=best.numel() * 16 + total * 8, writes=total)  # fmt: skip
    return mask, bad
