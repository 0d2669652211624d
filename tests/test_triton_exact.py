"""The exact solver's Triton pass (rankseg/_triton/exact.py) against the torch and NumPy reference paths, bit for
bit on the row power sums and on the masks.

Without CUDA the kernel runs under Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``, set by
tests/conftest.py before anything imports triton). Small block sizes make these inputs span several programs per row.
The inputs reach the exact solver's band path (rows with mass >= 64), whose log G series uses the row power sums.
"""

from __future__ import annotations

import pytest
import torch
from triton_cases import DEVICE, NEEDS_TRITON, SMALL_BLOCKS, Launches
from triton_cases import smooth_probs as _smooth

from rankseg import _common, _exact, _triton
from rankseg._common import fixed_bits
from rankseg._triton import _launch, rma
from rankseg.functional import rankseg as rs

pytestmark = NEEDS_TRITON
# for whole solver calls: still several programs per row, fewer interpreted blocks
MASK_BLOCKS = (256, 1024, 64, 32)


def _hard(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Maps with ties (a grid of 1/16), exact zeros and ones, constant rows (whose exact objective is nearly flat
    around its optimum: neighbouring tau differ by about 1/d^2), an all-zero row and a near-empty row."""
    p = _smooth(shape, seed)
    p[0] = (p[0] * 16).round() / 16
    p[:, 0, :2] = 0.0
    p[:, 0, -3:] = 1.0
    p[-1, 1] = 0.75
    p[-1, 2] = 0.5
    p[0, 2] = 0.3
    p[0, 3] = 0.0
    p[1, 3] = 1e-3
    p[1, 3, 5, 7] = 0.9
    return p


def _fused(probs: torch.Tensor, blocks=MASK_BLOCKS, **kw) -> tuple[torch.Tensor, list[str]]:
    seen = Launches()
    with _triton.forced(), rma.block_sizes(*blocks), _launch.hooks(seen):
        out = rs(probs.to(DEVICE), solver="exact", **kw)
    return out.cpu(), seen.names


def _reference(probs: torch.Tensor, numpy: bool, **kw) -> torch.Tensor:
    with _triton.forced(False), _common.numpy_kernels(numpy):
        return rs(probs, solver="exact", **kw)


def _powers_reference(rows: torch.Tensor, n_pow: int, numpy: bool) -> torch.Tensor:
    out = torch.empty(rows.shape[0], n_pow, dtype=torch.float64, device=rows.device)
    with _triton.forced(False), _common.numpy_kernels(numpy):
        _exact._row_powers(rows, torch.empty_like(rows), out)
    return out


def _above_reference(rows: torch.Tensor, hi: torch.Tensor, n_above: int, numpy: bool) -> torch.Tensor:
    """Sums over p > hi from the gathered pixels above the band, as the reference band path takes them."""
    from rankseg._band import Band, above_band

    above_lo = rows > 0.0  # the numpy path's above_band reads this mask (band pixels zeroed by hi)
    band = Band(*(None,) * 4, torch.zeros_like(hi), hi, above_lo, *(None,) * 3)
    with _triton.forced(False), _common.numpy_kernels(numpy):
        vals, starts = above_band(rows, band)
        return _exact._above_powers(vals, starts, n_above, 2.0 ** fixed_bits(rows.shape[1])).T


def test_power_sums_are_the_reference_bits():
    from rankseg._triton import exact

    rows = _hard((2, 4, 24, 40), seed=1).reshape(8, -1)
    rows[5] = torch.rand(rows.shape[1], generator=torch.Generator().manual_seed(0)) ** 8  # many tiny powers
    hi = torch.tensor([0.5, 0.25, 0.9, 0.0, 1.0, 1e-3, 0.4375, 0.3], dtype=torch.float32)  # ties at 0.4375
    n_pow, n_above = 17, 23
    fx = fixed_bits(rows.shape[1])
    with _triton.forced(), rma.block_sizes(*SMALL_BLOCKS):
        ints, above = exact.row_powers(rows.to(DEVICE), n_pow, 2.0**fx, hi.to(DEVICE), n_above)
    fused = ints.cpu().double() * 2.0**-fx
    for numpy in (True, False):
        assert torch.equal(fused, _powers_reference(rows, n_pow, numpy))
        assert torch.equal(above.cpu(), _above_reference(rows, hi, n_above, numpy))
    # order-free: a permutation of each row's pixels gives the same sums
    perm = torch.randperm(rows.shape[1], generator=torch.Generator().manual_seed(2))
    assert torch.equal(fused, _powers_reference(rows[:, perm].contiguous(), n_pow, False))
    assert torch.equal(above.cpu(), _above_reference(rows[:, perm].contiguous(), hi, n_above, False))
    # and they are the power sums (to the float32 products' rounding and the truncation, under d 2^-fx)
    x = rows.double()
    exact64 = torch.stack([(x**m).sum(1) for m in range(2, n_pow + 2)], 1)
    assert ((fused - exact64).abs() <= rows.shape[1] * 2.0**-fx + 2e-6 * exact64).all()
    above64 = torch.stack([torch.where(rows > hi[:, None], x**m, 0).sum(1) for m in range(1, n_above + 1)], 1)
    assert ((above.cpu().double() * 2.0**-fx - above64).abs() <= rows.shape[1] * 2.0**-fx + 1e-12 * above64).all()


def test_row_power_sums_edge_sizes():
    from rankseg._triton import exact

    rows = _smooth((1, 3, 8, 8), seed=3).reshape(3, -1)
    with _triton.forced():
        ints, above = exact.row_powers(rows.to(DEVICE), 0, 2.0**40)
        assert ints.shape == (3, 0) and above.shape == (3, 0)
        with pytest.raises(ValueError, match="n_pow"):
            exact.row_powers(rows.to(DEVICE), exact.MAX_POWERS + 1, 2.0**40)
        with pytest.raises(ValueError, match="hi"):
            exact.row_powers(rows.to(DEVICE), 2, 2.0**40, None, 3)
    with _triton.forced(), rma.block_sizes(64, 64, 32, 16):  # one pixel block per program, a ragged last one
        got = exact.row_powers(rows[:, :100].contiguous().to(DEVICE), 3, 2.0**40)[0].cpu()
    ref = _powers_reference(rows[:, :100].contiguous(), 3, False)
    assert torch.equal(got.double() * 2.0**-40, ref)
    # the reference dispatches to the kernel for CUDA float32 (and forced CPU) tensors: the same bits
    with _triton.forced(), rma.block_sizes(*SMALL_BLOCKS):
        out = torch.empty(3, 5, dtype=torch.float64, device=DEVICE)
        _exact._row_powers(rows.to(DEVICE), torch.empty_like(rows.to(DEVICE)), out)
    assert torch.equal(out.cpu(), _powers_reference(rows, 5, True))


CASES = [
    dict(metric="dice", output_mode="multilabel"),
    dict(metric="iou", output_mode="multilabel"),
    dict(metric="dice", output_mode="multiclass"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_fused_exact_masks_equal_torch_and_numpy_paths(case):
    probs = _hard((2, 4, 40, 64), seed=4)
    out, names = _fused(probs, **case)
    assert names[0] == "bounds_kernel" and "row_powers_kernel" in names  # the band path ran the fused pass
    for numpy in (True, False):
        ref = _reference(probs, numpy, **case)
        assert out.dtype == ref.dtype and out.shape == ref.shape
        assert torch.equal(out, ref), f"{int((out != ref).sum())} pixels differ (numpy path: {numpy})"


def test_fused_exact_masks_do_not_depend_on_block_sizes():
    probs = _smooth((1, 3, 48, 64), seed=5)
    small, names = _fused(probs, (128, 256, 32, 16), metric="dice", output_mode="multilabel")
    large, _ = _fused(probs, (1024, 4096, 1024, 1024), metric="dice", output_mode="multilabel")
    assert "row_powers_kernel" in names and torch.equal(small, large)


def test_smoothed_exact_sorts_and_uses_no_power_pass():
    probs = _smooth((1, 3, 32, 32), seed=6)
    out, names = _fused(probs, metric="dice", smooth=1.0, output_mode="multilabel")
    assert "row_powers_kernel" not in names
    assert torch.equal(out, _reference(probs, True, metric="dice", smooth=1.0, output_mode="multilabel"))


@pytest.mark.parametrize("numpy", [True, False])
def test_above_power_sums_do_not_depend_on_chunks(monkeypatch, numpy):
    """Ragged rows (some empty) split across chunks of the reference's loop give the same integers."""
    gen = torch.Generator().manual_seed(7)
    counts = torch.tensor([5, 0, 37, 1, 0, 64, 13])
    vals = torch.rand(int(counts.sum()), generator=gen)
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    with _common.numpy_kernels(numpy):
        whole = _exact._above_powers(vals, starts, 9, 2.0**40)
        monkeypatch.setattr(_exact, "_ABOVE_CHUNK", (16, 16))
        chunked = _exact._above_powers(vals, starts, 9, 2.0**40)
    assert torch.equal(whole, chunked)
    assert int(whole[0, 1]) == 0 and int(whole[0, 4]) == 0
    x, q, powers = vals.double(), vals.double(), []
    for _ in range(9):  # the reference's repeated float64 products
        powers.append((q * 2.0**40).long())
        q = q * x
    expected = torch.stack(powers)
    rows = torch.repeat_interleave(torch.arange(7), counts)
    assert torch.equal(whole, torch.zeros(9, 7, dtype=torch.int64).index_add_(1, rows, expected))
