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


# The fused exact path (rankseg._triton.exact.exact_masks): window from the bins, band scoring, selection.


def _plain_masks(rows: torch.Tensor, metric: str, numpy: bool = False) -> torch.Tensor:
    solve = torch.ones(rows.shape[0], dtype=torch.bool)
    with _triton.forced(False), _common.numpy_kernels(numpy):
        return _exact.exact_row_masks(rows, metric, 0.0, solve)


def _sorted_masks(rows: torch.Tensor, metric: str) -> torch.Tensor:
    """The exact optimum from fully sorted rows (no band, no window): a second method."""
    with _triton.forced(False):
        return _exact._sorted_masks(rows.double(), metric, 0.0)


def _fused_rows(rows: torch.Tensor, metric: str, solve=None, rank_block: int = 8, monkeypatch=None):
    from rankseg._triton import exact

    monkeypatch.setattr(exact, "_rank_block", lambda: rank_block)  # several rank blocks per row
    solve = torch.ones(rows.shape[0], dtype=torch.bool) if solve is None else solve
    seen = Launches()
    with _triton.forced(), rma.block_sizes(*SMALL_BLOCKS), _launch.hooks(seen):
        masks, rest = exact.exact_masks(rows.to(DEVICE), metric, solve.to(DEVICE))
    return masks.cpu(), (None if rest is None else rest.cpu()), seen.names


def _shapes_of_rows(d: int, seed: int) -> torch.Tensor:
    """Rows of different shapes, all with mass >= 64: smooth maps, uniform, skewed, bimodal, a narrow uniform
    one, a row of a few levels (ties at the cut) and one with exact zeros and ones."""
    gen = torch.Generator().manual_seed(seed)
    side = int(d**0.5)
    smooth = _smooth((1, 3, side, side), seed).reshape(3, -1)[:, :d]
    u = torch.rand(5, d, generator=gen)
    bimodal = torch.where(u[2] < 0.3, 0.9 + 0.1 * u[3], 0.05 * u[4])
    bimodal[: d // 20] = u[0, : d // 20]
    levels = (u[1] * 6).floor() / 8 + 0.1
    hard = u[3].clone()
    hard[: d // 4] = 0.0
    hard[-d // 8 :] = 1.0
    rows = [*smooth, u[0], u[1] ** 3, bimodal, 0.25 + 0.5 * u[2], levels, hard]
    return torch.stack(rows).float().contiguous()


@pytest.mark.parametrize("metric", ["dice", "iou"])
def test_fused_exact_solves_every_row_and_equals_both_references(metric, monkeypatch):
    rows = _shapes_of_rows(2304, seed=11)
    masks, rest, names = _fused_rows(rows, metric, monkeypatch=monkeypatch)
    assert rest is None  # every row took the fused window
    assert names[:2] == ["row_hist_kernel", "exact_window_kernel"] and names[-1] == "exact_select_kernel"
    assert "exact_block_scores_kernel" in names and "bracket_kernel" not in names
    for numpy in (True, False):
        plain = _plain_masks(rows, metric, numpy)
        assert torch.equal(masks, plain), f"{int((masks != plain).sum())} pixels differ (numpy: {numpy})"
    full = _sorted_masks(rows, metric)
    assert torch.equal(masks, full), f"rows differ from the sorted solver: {(masks != full).any(1).nonzero()}"
    assert bool((masks.sum(1) > 0).all())


def test_fused_exact_does_not_depend_on_block_sizes(monkeypatch):
    rows = _smooth((2, 2, 40, 48), seed=12).reshape(4, -1)
    small = _fused_rows(rows, "dice", rank_block=4, monkeypatch=monkeypatch)[0]
    from rankseg._triton import exact

    monkeypatch.setattr(exact, "_rank_block", lambda: 1024)
    with _triton.forced(), rma.block_sizes(1024, 4096, 1024, 1024):
        large = exact.exact_masks(rows.to(DEVICE), "dice", torch.ones(4, dtype=torch.bool, device=DEVICE))[0]
    assert torch.equal(small, large.cpu())


@pytest.mark.parametrize("metric", ["dice", "iou"])
def test_fused_exact_hands_small_objects_to_the_torch_path(metric, monkeypatch):
    rows = _smooth((1, 4, 48, 48), seed=13).reshape(4, -1)
    rows[1] = rows[1] * 0.01  # mass about 10: the window's bounds are too loose there
    rows[2, :] = 0.0
    rows[2, :5] = 0.8  # a 5-pixel object
    rows[3] = 0.3  # a constant row: one bin, so its window starts at rank 1 (nodes too far out)
    solve = torch.tensor([True, True, True, True])
    masks, rest, _ = _fused_rows(rows, metric, solve, monkeypatch=monkeypatch)
    assert rest.tolist() == [1, 2, 3]  # flagged and left empty
    assert not masks[1:].any()
    solve[3] = False  # a row not solved is not flagged
    assert _fused_rows(rows, metric, solve, monkeypatch=monkeypatch)[1].tolist() == [1, 2]
    with _triton.forced(False):
        plain = _exact.exact_row_masks(rows, metric, 0.0, solve)
    assert torch.equal(masks[0], plain[0])
    # through the solver's entry point the flagged rows are solved by the torch path
    with _triton.forced(), rma.block_sizes(*SMALL_BLOCKS):
        full = _exact.exact_row_masks(rows.to(DEVICE), metric, 0.0, solve.to(DEVICE)).cpu()
    assert torch.equal(full, plain) and full[2].sum() == 5 and not full[3].any()
    assert full[0].any() and full[1].any()


def test_fused_exact_is_the_default_exact_path_of_the_solver(monkeypatch):
    probs = _smooth((2, 3, 40, 56), seed=14)
    for case in CASES:
        out, names = _fused(probs, **case)
        assert "exact_window_kernel" in names
        assert torch.equal(out, _reference(probs, False, **case))


@pytest.mark.parametrize("metric", ["dice", "iou"])
def test_fused_exact_window_holds_on_extreme_rows(metric, monkeypatch):
    """Rows whose bin bounds are loosest: mass at exactly 1 (upper bin edge 1 + 2^-7), many values below 2^-15
    (bin 0, whose upper edge is far above them) and near-binary rows; the fused masks are the sorted optimum."""
    d = 8192
    gen = torch.Generator().manual_seed(15)
    u = torch.rand(4, d, generator=gen)
    ones = torch.full((d,), 1e-6)
    ones[:300] = 1.0
    ones[300:500] = 0.5
    binary = torch.where(u[0] < 0.05, 0.999, 1e-5)
    near = torch.where(u[1] < 0.1, 0.97 + 0.03 * u[2], 2e-5 * u[3])
    wide = u[3] ** 6
    rows = torch.stack([ones, binary, near, wide]).float().contiguous()
    masks, rest, _ = _fused_rows(rows, metric, rank_block=256, monkeypatch=monkeypatch)
    solved = torch.ones(4, dtype=torch.bool)
    if rest is not None:
        solved[rest] = False
    assert solved.sum() >= 3
    full = _sorted_masks(rows, metric)
    assert torch.equal(masks[solved], full[solved])


def test_fused_exact_takes_more_ranks_per_block_when_the_block_sums_would_be_large(monkeypatch):
    from rankseg._triton import exact

    rows = _smooth((1, 2, 48, 48), seed=16).reshape(2, -1)
    seen = []
    original = exact.launch

    def record(kernel, grid, args, **meta):
        seen.append((getattr(kernel, "fn", kernel).__name__, meta.get("BJ")))
        return original(kernel, grid, args, **meta)

    monkeypatch.setattr(exact, "launch", record)
    monkeypatch.setattr(exact, "_SUMS_MIN_BUDGET", 0)  # the input's size alone: 18 KB
    small_budget = _fused_rows(rows, "iou", rank_block=8, monkeypatch=monkeypatch)[0]
    assert dict(seen)["exact_block_scores_kernel"] > 8
    assert torch.equal(small_budget, _plain_masks(rows, "iou"))


def _random_rows(gen: torch.Generator, n: int, d: int, kind: int) -> torch.Tensor:
    """Rows of five kinds: Beta(a, b), powers of uniforms, two-cluster, few-level (ties) and sigmoid random walks."""
    a = torch.rand(n, 1, generator=gen) * 3 + 0.05
    b = torch.rand(n, 1, generator=gen) * 3 + 0.05
    u = torch.rand(n, d, generator=gen)
    if kind == 0:
        rows = torch.distributions.Beta(a.expand(n, d), b.expand(n, d)).sample()
    elif kind == 1:
        rows = u ** (a * 5)
    elif kind == 2:
        high = 1 - 0.1 * torch.rand(n, d, generator=gen)
        rows = torch.where(u < a / 4, high, 0.2 * torch.rand(n, d, generator=gen) ** 3)
    elif kind == 3:
        levels = 2 + (a * 10).floor()
        rows = (u * levels).floor() / levels
    else:
        walk = torch.randn(n, d, generator=gen).cumsum(1) / 5
        rows = torch.sigmoid(walk + torch.randn(n, 1, generator=gen) * 3)
    return rows.clamp(0, 1).float().contiguous()


@pytest.mark.slow
def test_fused_exact_equals_the_sorted_solver_on_random_rows():
    """A soak (about 40 s under the interpreter): 400 random rows of five kinds and sizes 300-6000, Dice and
    IoU; every row the fused window takes has the fully sorted solver's mask (whose batches here mix masses, as
    the solver's own fallback batches do)."""
    gen = torch.Generator().manual_seed(20)
    taken = 0
    for trial in range(25):
        d = int(torch.randint(300, 6000, (1,), generator=gen))
        rows = _random_rows(gen, 8, d, trial % 5)
        for metric in ("dice", "iou"):
            with _triton.forced():
                from rankseg._triton import exact

                masks, rest = exact.exact_masks(rows.to(DEVICE), metric, torch.ones(8, dtype=torch.bool, device=DEVICE))
            ok = torch.ones(8, dtype=torch.bool)
            if rest is not None:
                ok[rest.cpu()] = False
            full = _sorted_masks(rows, metric)
            differ = ((masks.cpu() != full).any(1) & ok).nonzero().squeeze(1).tolist()
            assert not differ, f"trial {trial} {metric} d={d}: rows {differ} differ from the sorted solver"
            taken += int(ok.sum())
    assert taken >= 300
