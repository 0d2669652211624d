"""RMA on CUDA with Triton: the ratio masks (Dice with s = 0, IoU) and the multiclass overlap resolution.

Value checks (:func:`value_bounds`, called by :func:`rankseg._validation.check_prob_values` on CUDA): ``bounds``
reads the input once for the row maxima, the smallest value and the count of non-finite values; one host sync.

Masks (:func:`ratio_masks`), for (R, d) float32 rows, two reads of the input and one host sync:

1. ``row_hist``: one read; per row the counts of its values in 2048 logarithmic bins and its sum mu;
2. ``bracket``: per row, certified bounds on the optimal score from the bins (each bin's mass at its lower or
   upper edge), hence the bins [k_lo, k_hi] that hold every pixel whose side of the optimal cut is undecided
   (the band), the band's size and the count above it;
3. one cumsum of the band sizes and **one host sync** (the total) to allocate the band buffers;
4. ``gather``: one read; writes the mask (pixels above the band), the fixed-point sum above the band, and the
   band pixels' values and flat indices;
5. ``dinkelbach``: per row, Dinkelbach steps over the band only, from the lower bound, to the smallest optimal
   set; writes the band pixels' mask bits.

The answer is {p > cut(v*)} as in :func:`rankseg._band.band_dinkelbach`; sums are int64 fixed point (exact
for p >= 2^-17), so block sizes and atomics do not change it. The torch reference computes mu and the sums
above the band in float32, so a pixel within about 1e-7 (relative) of the optimal cut can fall on the other
side there.

Multiclass (:func:`resolve`), for (B, C, d) probabilities and masks: ``owned`` reads both once (per class the
count and mass of its uniquely-selected pixels, its sum and selected count, as int64 fixed point); a few (B, C)
torch ops form 0.0.8's per-class constants in float32 from those sums rounded once, exactly as the torch and
NumPy paths form them (:func:`rankseg._rma._fixed_row_sums`), so the labels agree bit for bit wherever the masks
do; ``resolve`` reads both once more and writes the labels. No host sync.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from rankseg._common import fixed_bits
from rankseg._triton import interpreting
from rankseg._triton._launch import launch

__all__ = ["block_sizes", "ratio_masks", "resolve", "supports_resolve", "value_bounds"]

# Relative slack on the bracket (covers float64 rounding of the bounds and of the fixed-point sums).
_SLACK = 1e-6
_MAX_ITERS = 200
# (pixel block, pixels per program, class-tile pixel block, band block); None: chosen per device.
_BLOCKS: tuple[int, int, int, int] | None = None


@contextlib.contextmanager
def block_sizes(block: int, span: int, tile: int, band: int) -> Iterator[None]:
    """Override the kernels' block sizes (tests: small blocks make small inputs span several programs). The
    masks do not depend on them."""
    global _BLOCKS
    old = _BLOCKS
    _BLOCKS = (block, span, tile, band)
    try:
        yield
    finally:
        _BLOCKS = old


def _blocks() -> tuple[int, int, int, int]:
    if _BLOCKS is not None:
        return _BLOCKS
    if interpreting():  # NumPy runs each program: few large blocks
        return 2**16, 2**16, 2**11, 2**14
    return 2048, 2**16, 128, 1024


def _kernels():
    from rankseg._triton import kernels

    return kernels


def value_bounds(probs: torch.Tensor) -> tuple[torch.Tensor, float, float, bool]:
    """The value checks' statistics in one read and one host sync: the row maxima, the smallest and largest
    finite values and whether any value is not finite.

    Shape:
        probs: (B, C, *S) float32.  output: maxima (B * C,) float32 and three host scalars.
    """
    k = _kernels()
    p = probs.reshape(probs.shape[0] * probs.shape[1], -1).contiguous()
    n_rows, d = p.shape
    block, span, _, _ = _blocks()
    span = max(block, span // block * block)
    maxima = torch.full((n_rows,), float("-inf"), dtype=torch.float32, device=p.device)
    low = torch.full((1,), float("inf"), dtype=torch.float32, device=p.device)
    bad = torch.zeros(1, dtype=torch.int32, device=p.device)
    launch(k.bounds_kernel, (n_rows, -(-d // span)), (p, maxima, low, bad, d, span), BLOCK=block,
           reads=p.numel() * 4, writes=n_rows * (-(-d // span)) * 12)  # fmt: skip
    lo, hi, n_bad = torch.cat([low, maxima.amax().reshape(1), bad.to(torch.float32)]).tolist()  # the one sync
    return maxima, lo, hi, n_bad > 0


def ratio_masks(rows: torch.Tensor, metric: str, smooth: float, solve: torch.Tensor) -> torch.Tensor:
    """RMA masks {p > cut(v*)} of the ratio objectives (Dice with s = 0, IoU with s <= 1e6); rows with
    ``solve`` False stay empty.

    Shape:
        rows: (R, d) float32.  solve: (R,) bool.  output: (R, d) bool.
    """
    k = _kernels()
    p = rows.contiguous()
    n_rows, d = p.shape
    dev = p.device
    if n_rows == 0 or d == 0:
        return torch.zeros((n_rows, d), dtype=torch.bool, device=dev)
    geo = _Geometry(p)
    band_block = _blocks()[3]
    scale, inv_scale = geo.scale, geo.unit
    dice = metric == "dice"
    s = 0.0 if dice else float(smooth)
    i64, f64 = torch.int64, torch.float64
    hist, mu = row_hist(p, geo)

    k_lo = torch.empty(n_rows, dtype=torch.int32, device=dev)
    k_hi = torch.empty_like(k_lo)
    count = torch.empty(n_rows, dtype=i64, device=dev)
    n_above = torch.empty_like(count)
    v_start = torch.empty(n_rows, dtype=f64, device=dev)
    flags = solve.view(torch.uint8) if solve.dtype == torch.bool else solve.to(torch.uint8)
    launch(k.bracket_kernel, (n_rows,), (hist, mu, flags, k_lo, k_hi, count, n_above, v_start, inv_scale, s,
           _SLACK), DICE=dice, **geo.bins, reads=n_rows * (k.NB * 4 + 9), writes=n_rows * 32)  # fmt: skip

    ends = torch.cumsum(count, 0)
    total = int(ends[-1])  # the one host sync: sizes the band buffers
    starts = ends - count
    mask, band_vals, band_idx, s_above = gather(p, geo, k_lo, k_hi, starts, total)

    n_sel = torch.empty(n_rows, dtype=i64, device=dev)
    iters = torch.empty(n_rows, dtype=torch.int32, device=dev)

    def band_reads() -> int:  # the band is read once per step and once to write the mask
        return int(((iters.long() + 1) * count).sum()) * 4 + total * 8 + n_rows * 48

    launch(k.dinkelbach_kernel, (n_rows,), (band_vals, band_idx, starts, count, v_start, n_above, s_above, mu,
           mask, n_sel, iters, scale, inv_scale, s, _MAX_ITERS), DICE=dice, BLOCK=band_block,
           reads=band_reads, writes=total + n_rows * 12)  # fmt: skip
    return mask


class _Geometry:
    """How the passes over (R, d) float32 rows are laid out: pixel block, pixels per program, programs per row,
    the fixed-point scale and unit, and the bins' constants."""

    def __init__(self, p: torch.Tensor) -> None:
        k = _kernels()
        block, span, _, _ = _blocks()
        self.block = block
        self.span = max(block, span // block * block)
        self.parts = -(-p.shape[1] // self.span)
        fx = fixed_bits(p.shape[1])
        self.scale, self.unit = float(2**fx), float(2.0**-fx)
        self.bins = dict(NB=k.NB, BASE=k.BASE, SHIFT=k.SHIFT)


def row_hist(p: torch.Tensor, geo: _Geometry) -> tuple[torch.Tensor, torch.Tensor]:
    """One read: per row the counts of its values in the bins (int32) and its fixed-point sum mu (int64).

    Shape:
        p: (R, d) float32 contiguous.  outputs: (R, NB) and (R,).
    """
    k = _kernels()
    n_rows, d = p.shape
    hist = torch.zeros(n_rows, k.NB, dtype=torch.int32, device=p.device)
    mu = torch.zeros(n_rows, dtype=torch.int64, device=p.device)
    launch(k.row_hist_kernel, (n_rows, geo.parts), (p, hist, mu, d, geo.span, geo.scale), BLOCK=geo.block,
           **geo.bins, reads=p.numel() * 4, writes=n_rows * geo.parts * (k.NB * 4 + 8))  # fmt: skip
    return hist, mu


def gather(
    p: torch.Tensor, geo: _Geometry, k_lo: torch.Tensor, k_hi: torch.Tensor, starts: torch.Tensor, total: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One read: the mask of the pixels above each row's band (bins > k_hi), the band pixels (bins k_lo..k_hi)
    into the row's slice from ``starts`` (values and flat indices, in any order) and the fixed-point sum above.

    Shape:
        k_lo, k_hi: (R,) int32.  starts: (R,) int64.  outputs: (R, d) bool, (total,) float32, (total,) int64,
        (R,) int64.
    """
    k = _kernels()
    n_rows, d = p.shape
    dev = p.device
    band_vals = torch.empty(total, dtype=torch.float32, device=dev)
    band_idx = torch.empty(total, dtype=torch.int64, device=dev)
    fill = torch.zeros(n_rows, dtype=torch.int64, device=dev)
    s_above = torch.zeros(n_rows, dtype=torch.int64, device=dev)
    mask = torch.empty((n_rows, d), dtype=torch.bool, device=dev)
    launch(k.gather_kernel, (n_rows, geo.parts), (p, mask, k_lo, k_hi, starts, fill, band_vals, band_idx, s_above,
           d, geo.span, geo.scale), BLOCK=geo.block, **geo.bins,
           reads=p.numel() * 4 + n_rows * 24,
           writes=mask.numel() + total * 12 + n_rows * geo.parts * 16)  # fmt: skip
    return mask, band_vals, band_idx, s_above


def supports_resolve(metric: str, smooth: float) -> bool:
    """Increments the resolve kernel evaluates: Dice with s = 0 and IoU with s <= 1e6 (unscaled)."""
    return (metric == "dice" and smooth == 0) or (metric == "iou" and smooth <= 1e6)


def resolve(
    probs: torch.Tensor, masks: torch.Tensor, metric: str, smooth: float, unassigned_policy: str, void_index: int
) -> torch.Tensor:
    """Label map from per-class masks with the RMA increments (:func:`rankseg._rma.rma_gains`), as
    :func:`rankseg._multiclass.resolve` computes it.

    Shape:
        probs: (B, C, d) float32.  masks: (B, C, d) bool.  output: (B, d) int64.
    """
    k = _kernels()
    p, m = probs.contiguous(), masks.contiguous()
    n_img, n_cls, d = p.shape
    dev = p.device
    if p.numel() == 0:
        return torch.zeros((n_img, d), dtype=torch.int64, device=dev)
    _, span, tile, _ = _blocks()
    span = max(tile, span // tile * tile)
    parts = -(-d // span)
    cp = max(2, 1 << (n_cls - 1).bit_length())
    fx = fixed_bits(d)
    i64 = torch.int64
    stats = torch.zeros(4, n_img * n_cls, dtype=i64, device=dev)
    tau, mass, mu, n_sel = stats
    launch(k.owned_kernel, (n_img, parts), (p, m, tau, mass, mu, n_sel, d, n_cls, span, float(2**fx)), CP=cp,
           BLOCK=tile, reads=p.numel() * 5, writes=n_img * parts * n_cls * 32)  # fmt: skip
    # 0.0.8's per-class constants, in float32 and its order of operations (mu and the mass rounded once)
    unit = 2.0**-fx
    pb_mean = (mu.to(torch.float64) * unit).to(torch.float32)
    mass_f = (mass.to(torch.float64) * unit).to(torch.float32)
    tau_f = tau.to(torch.float32)
    if metric == "dice":
        offset = tau_f + pb_mean + 1
        a, b = mass_f / offset, 2.0 / (offset + 1)
    else:
        denom = tau_f + pb_mean - mass_f + smooth
        safe = torch.where(denom == 0, torch.ones_like(denom), denom)
        a, b = (mass_f + smooth) / safe, denom
    active = (n_sel > 0).view(n_img, n_cls)
    active = (active | ~active.any(1, keepdim=True)).view(torch.uint8)
    labels = torch.empty(n_img, d, dtype=i64, device=dev)
    void = unassigned_policy == "void"
    launch(k.resolve_kernel, (n_img, parts), (p, m, a, b, active, labels, d, n_cls, span, int(void_index)),
           DICE=metric == "dice", VOID=void, CP=cp, BLOCK=tile, enable_fp_fusion=False,
           reads=p.numel() * 5 + n_img * n_cls * 9, writes=labels.numel() * 8)  # fmt: skip
    return labels
