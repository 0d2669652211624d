"""The Triton RMA kernels (rankseg/_triton) against the torch and NumPy reference paths, bit for bit on masks.

Without CUDA the kernels run under Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``, set by
tests/conftest.py before anything imports triton). Small block sizes make these small inputs span
several programs, bands and band blocks per row. With CUDA the same tests run the compiled kernels.
"""

from __future__ import annotations

import pytest
import torch
from triton_cases import CUDA, DEVICE, NEEDS_TRITON, SMALL_BLOCKS, Launches
from triton_cases import smooth_probs as _smooth

from rankseg import _common, _triton
from rankseg._triton import _launch
from rankseg.functional import rankseg as rs

pytestmark = NEEDS_TRITON


def _hard(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Smooth maps with ties (values on a grid of 1/16), exact zeros and ones, a constant row above the pruning
    level, one at 0.5 exactly (pruned), one all-zero row, and a row with a single confident pixel."""
    p = _smooth(shape, seed)
    p[0] = (p[0] * 16).round() / 16
    p[:, 0, :2] = 0.0
    p[:, 0, -3:] = 1.0
    p[-1, 1] = 0.75
    p[-1, 2] = 0.5
    p[0, 2] = 0.0
    p[0, 3] = 1e-3
    p[0, 3, 5, 7] = 0.9
    return p


def _fused(probs: torch.Tensor, blocks=SMALL_BLOCKS, **kw) -> tuple[torch.Tensor, list[str]]:
    from rankseg._triton import rma

    seen = Launches()
    with _triton.forced(), rma.block_sizes(*blocks), _launch.hooks(seen):
        out = rs(probs.to(DEVICE), **kw)
    return out.cpu(), seen.names


def _reference(probs: torch.Tensor, numpy: bool, **kw) -> torch.Tensor:
    with _triton.forced(False), _common.numpy_kernels(numpy):
        return rs(probs, **kw)


CASES = [
    dict(metric="dice", output_mode="multilabel"),
    dict(metric="dice", output_mode="multiclass"),
    dict(metric="iou", output_mode="multilabel"),
    dict(metric="iou", output_mode="multiclass", smooth=1.0),
    dict(metric="iou", output_mode="multiclass", unassigned_policy="void", void_index=255),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_fused_masks_equal_torch_and_numpy_paths(case):
    probs = _hard((2, 6, 24, 40), seed=1)
    out, names = _fused(probs, solver="RMA", **case)
    expected = ["bounds_kernel", "row_hist_kernel", "bracket_kernel", "gather_kernel", "dinkelbach_kernel"]
    if case["output_mode"] == "multiclass":
        expected += ["owned_kernel", "resolve_kernel"]
    assert names == expected
    for numpy in (True, False):
        ref = _reference(probs, numpy, solver="RMA", **case)
        assert out.dtype == ref.dtype and out.shape == ref.shape
        assert torch.equal(out, ref), f"{int((out != ref).sum())} pixels differ (numpy path: {numpy})"


def test_single_class_and_smoothing():
    probs = _hard((3, 4, 20, 36), seed=2)[:, :1].contiguous()
    for case in (dict(metric="dice"), dict(metric="iou", smooth=100.0)):
        out, names = _fused(probs, solver="RMA", output_mode="multilabel", **case)
        assert "dinkelbach_kernel" in names
        assert torch.equal(out, _reference(probs, True, solver="RMA", output_mode="multilabel", **case))


def test_masks_do_not_depend_on_block_sizes():
    probs = _smooth((2, 5, 32, 32), seed=3)
    case = dict(solver="RMA", metric="dice", output_mode="multiclass")
    small, _ = _fused(probs, (64, 128, 32, 16), **case)
    large, _ = _fused(probs, (1024, 1024, 1024, 1024), **case)
    assert torch.equal(small, large)


def test_dice_with_smoothing_uses_the_reference_solver():
    probs = _smooth((1, 3, 16, 16), seed=4)
    out, names = _fused(probs, solver="RMA", metric="dice", smooth=1.0, output_mode="multilabel")
    assert names == ["bounds_kernel"]  # only the value checks
    assert torch.equal(out, _reference(probs, True, solver="RMA", metric="dice", smooth=1.0, output_mode="multilabel"))


def test_kernels_are_off_for_cpu_tensors_unless_forced_and_for_float64():
    assert not _triton.enabled(torch.zeros(2, device="cpu"))
    with _triton.forced():
        assert _triton.enabled(torch.zeros(2, device=DEVICE)) == (CUDA or _triton.interpreting())
        assert not _triton.enabled(torch.zeros(2, dtype=torch.float64, device=DEVICE))


def test_multiclass_row_sums_are_the_same_bits_on_numpy_and_torch():
    """The multiclass constants (row mass and owned mass) are order-free fixed-point sums: NumPy and torch agree."""
    from rankseg._rma import _fixed_row_sums

    probs = _smooth((2, 4, 48, 40), seed=5).flatten(2)
    mask = probs > 0.3
    host = _fixed_row_sums(probs, mask)
    with _common.numpy_kernels(False):
        plain = _fixed_row_sums(probs, mask)
    shuffled = torch.randperm(probs.shape[2])
    with _common.numpy_kernels(False):
        permuted = _fixed_row_sums(probs[:, :, shuffled], mask[:, :, shuffled])
    for a, b, c in zip(host, plain, permuted):
        assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize(
    ("bad", "message"),
    [(float("nan"), "only finite"), (float("inf"), "only finite"), (-float("inf"), "only finite"),
     (1.5, "range"), (-1e-3, "range")],
)  # fmt: skip
def test_fused_value_checks_raise_the_reference_messages(bad, message):
    probs = _smooth((2, 3, 16, 16), seed=6)
    probs[1, 2, 5, 9] = bad
    for fused in (True, False):
        with _triton.forced(fused), pytest.raises(ValueError, match=message):
            rs(probs.to(DEVICE), solver="RMA")


def test_fused_value_bounds_give_the_row_maxima():
    from rankseg._triton import rma

    probs = _hard((2, 5, 24, 40), seed=7)
    with _triton.forced(), rma.block_sizes(*SMALL_BLOCKS):
        maxima, lo, hi, bad = rma.value_bounds(probs.to(DEVICE))
    assert torch.equal(maxima.cpu(), probs.flatten(2).amax(2).reshape(-1))
    assert (lo, hi, bad) == (float(probs.min()), float(probs.max()), False)
