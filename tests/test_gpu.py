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
