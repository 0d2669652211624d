"""CUDA checks (``make test-gpu``; skipped without a CUDA device): every solver on the GPU gives the CPU's masks
on the three protocol shapes, stays within its memory bound, and the evaluation loop runs with AMP.

No GPU has been lent to this project yet, so these tests have not run; they are ready for the day one is.
"""

from __future__ import annotations

import pytest
import torch

from rankseg.functional import rankseg as rs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# The protocol shapes (B, C, H, W) of the three datasets.
SHAPES = {
    "cityscapes": (2, 19, 1024, 2048),
    "voc": (8, 21, 512, 512),
    "kvasir": (8, 1, 512, 512),
}
CASES = [
    dict(metric="dice", output_mode="multilabel", solver="RMA"),
    dict(metric="dice", output_mode="multiclass", solver="RMA"),
    dict(metric="iou", output_mode="multilabel", solver="RMA"),
    dict(metric="iou", output_mode="multiclass", solver="RMA"),
    dict(metric="dice", output_mode="multilabel", solver="BA"),
    dict(metric="dice", output_mode="multilabel", solver="exact"),
    dict(metric="dice", output_mode="multiclass", solver="exact"),
    dict(metric="acc", output_mode="multilabel", solver="TR"),
]


def _probs(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Smooth random maps (softmax over classes, sigmoid for one class), built on the CPU so both paths see the
    same bits."""
    gen = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    x = torch.randn(b, c, h // 16, w // 16, generator=gen) * 4
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.sigmoid() if c == 1 else x.softmax(1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("name", list(SHAPES))
def test_cuda_masks_equal_cpu_masks(name, case):
    if SHAPES[name][1] == 1 and case["output_mode"] == "multiclass":
        pytest.skip("single-channel input has no multiclass mode")
    probs = _probs(SHAPES[name])
    cpu = rs(probs, **case)
    gpu = rs(probs.cuda(), **case)
    assert gpu.device.type == "cuda" and gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    differ = int((gpu.cpu() != cpu).sum())
    assert differ == 0, f"{differ} of {cpu.numel()} pixels differ between CUDA and CPU"


def test_trna_cuda_equals_cpu_on_a_small_input():
    probs = _probs((2, 3, 64, 64))
    case = dict(metric="dice", output_mode="multilabel", solver="TRNA")
    assert torch.equal(rs(probs.cuda(), **case).cpu(), rs(probs, **case))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_cuda_peak_memory_within_four_times_the_input(case):
    probs = _probs(SHAPES["voc"]).cuda()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = rs(probs, **case)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    bound = 4 * probs.numel() * probs.element_size()
    assert extra <= bound, f"extra peak {extra / 2**20:.0f} MiB > 4x input {bound / 2**20:.0f} MiB"
    del out


def test_evaluation_loop_with_amp_on_cuda(tmp_path, compose):
    from conftest import smoke_overrides

    from rankseg.engine.evaluate import run_evaluation
    from rankseg.engine.train import run_training

    overrides = [o for o in smoke_overrides(tmp_path) if o != "device=cpu"] + ["device=cuda", "amp=true"]
    run_training(compose("train", [*overrides, "logger=none", "max_iters=4"]))
    merged = run_evaluation(compose("evaluate", [*overrides, "logger=none", "predict=[argmax,rma,rankdice]"]))
    assert merged["eval_settings"]["amp"] is True
    for record in merged["rules"].values():
        assert record["num_images"] == 8
        assert record["mdice"] is None or 0 <= record["mdice"] <= 1


class _Launches:
    def __init__(self) -> None:
        self.names: list[str] = []

    def kernel(self, name: str, nbytes: int) -> None:
        self.names.append(name)

    def paused(self):
        from contextlib import nullcontext

        return nullcontext()


@pytest.mark.parametrize("mode", ["multilabel", "multiclass"])
@pytest.mark.parametrize("metric", ["dice", "iou"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_triton_kernels_run_on_cuda_and_equal_the_torch_path(name, metric, mode):
    """On CUDA the RMA passes run as Triton kernels (rankseg/_triton), at most two host syncs, and their masks
    equal the plain torch path's on the same device and the CPU's."""
    from rankseg import _triton
    from rankseg._triton import _launch

    if SHAPES[name][1] == 1 and mode == "multiclass":
        pytest.skip("single-channel input has no multiclass mode")
    if not _triton.available():
        pytest.skip("triton does not import")
    probs = _probs(SHAPES[name])
    case = dict(metric=metric, output_mode=mode, solver="RMA")
    seen = _Launches()
    with _launch.hooks(seen):
        fused = rs(probs.cuda(), **case)
    assert seen.names[:2] == ["bounds_kernel", "row_hist_kernel"] and "dinkelbach_kernel" in seen.names
    assert ("resolve_kernel" in seen.names) == (mode == "multiclass")
    with _triton.forced(False):
        plain = rs(probs.cuda(), **case)
    cpu = rs(probs, **case)
    assert int((fused != plain).sum()) == 0
    assert int((fused.cpu() != cpu).sum()) == 0


def test_quantile_rounds_equal_the_bisection_loop_on_cuda():
    """BA's support quantiles: the batched bisection rounds give the step-by-step loop's bits on the GPU."""
    from rankseg import distribution as dist

    gen = torch.Generator().manual_seed(0)
    skew = torch.cat([torch.randn(500, generator=gen, dtype=torch.float64), torch.tensor([0.0, 50.0, -50.0])])
    q = torch.tensor([5e-5, 1 - 5e-5, 0.3], dtype=torch.float64).view(3, 1)
    q, skew = torch.broadcast_tensors(q.cuda(), skew.cuda().view(1, -1))
    lo, hi = torch.full_like(q, -dist._PPF_BOUND), torch.full_like(q, dist._PPF_BOUND)
    for _ in range(dist._PPF_STEPS):
        mid = 0.5 * (lo + hi)
        below = dist.refined_cdf(mid, skew) < q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    assert torch.equal(dist.refined_ppf(q, skew), hi)


@pytest.mark.parametrize("mode", ["multilabel", "multiclass"])
@pytest.mark.parametrize("metric", ["dice", "iou"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_exact_fused_path_runs_on_cuda_and_equals_the_torch_path(name, metric, mode):
    """On CUDA the exact solver at smooth 0 runs its fused Triton path (window from the bins, band scored by
    quadrature, one host sync for the band sizes); its masks equal the plain torch path's on the same device."""
    from rankseg import _triton
    from rankseg._triton import _launch

    if SHAPES[name][1] == 1 and mode == "multiclass":
        pytest.skip("single-channel input has no multiclass mode")
    if not _triton.available():
        pytest.skip("triton does not import")
    probs = _probs(SHAPES[name]).cuda()
    case = dict(metric=metric, output_mode=mode, solver="exact")
    seen = _Launches()
    with _launch.hooks(seen):
        fused = rs(probs, **case)
    assert "exact_window_kernel" in seen.names and "exact_select_kernel" in seen.names
    with _triton.forced(False):  # the torch path on the same device
        plain = rs(probs, **case)
    assert int((fused != plain).sum()) == 0


def test_exact_row_power_sums_on_cuda_equal_the_cpu_bits():
    """The kernel's fixed-point power sums are the CPU reference's integers (float32 products, truncated)."""
    from rankseg import _exact, _triton

    if not _triton.available():
        pytest.skip("triton does not import")
    rows = _probs(SHAPES["voc"])[:1].reshape(21, -1)
    rows[3] = (rows[3] * 16).round() / 16  # ties, zeros and ones
    rows[4] = 0.3  # a constant row
    out_gpu = torch.empty(21, 12, dtype=torch.float64, device="cuda")
    _exact._row_powers(rows.cuda(), torch.empty_like(rows.cuda()), out_gpu)
    out_cpu = torch.empty(21, 12, dtype=torch.float64)
    _exact._row_powers(rows, torch.empty_like(rows), out_cpu)
    assert torch.equal(out_gpu.cpu(), out_cpu)
