"""The exact solver's passes on CUDA with Triton (:mod:`rankseg._exact`).

``row_powers`` (:func:`row_powers`): one read of the input for every row's fixed-point power sums
sum_j p_j^m, m = 2 .. M (the series of log G in the band path of :func:`rankseg._exact._band_masks`), and those
of the pixels above the band, m = 1 .. M' (its H and log Q terms), where the torch reference makes one pass per
power over the row and gathers the pixels above the band. The powers are the same float32 (row) and float64
(above the band) products as the reference's and each is truncated to the same fixed-point integer before an
int64 sum, so the sums, and with them the masks, equal the reference's bit for bit whatever the block sizes and
the order in which the atomics land.
"""

from __future__ import annotations

import torch

from rankseg._triton._launch import launch
from rankseg._triton.rma import _blocks, _kernels

__all__ = ["MAX_POWERS", "row_powers"]

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
    block, span, _, _ = _blocks()
    span = max(block, span // block * block)
    parts = -(-d // span)
    launch(k.row_powers_kernel, (n_rows, parts), (p, hi, out[0], out[1], d, span, n_pow, n_above, float(scale)),
           BLOCK=block, MP=MAX_POWERS, reads=p.numel() * 4 + n_rows * 4,
           writes=n_rows * parts * (n_pow + n_above) * 8)  # fmt: skip
    return out[0, :, :n_pow], out[1, :, :n_above]
