"""Same answer on every path (``make test-slow``): NumPy (CPU default), plain torch (the device path, run on the
CPU) and the Triton kernels (under Triton's interpreter without CUDA, compiled with it) give identical RMA masks
and label maps on the three protocol shapes, at full size (Dice and IoU, multilabel and multiclass), and
identical exact-solver masks (its fused path against the NumPy band path).

The interpreter runs each Triton program with NumPy: the file takes about 13 minutes on 2 cores. Its default
blocks give every row several programs; a second test at a quarter of the size uses small blocks, so that rows
also span several band blocks and images several class tiles.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench_gpu_model import SHAPES, make_input  # noqa: E402

from rankseg import _common, _triton  # noqa: E402
from rankseg.functional import rankseg as rs  # noqa: E402

pytestmark = pytest.mark.slow

CASES = [
    dict(metric="dice", output_mode="multilabel"),
    dict(metric="dice", output_mode="multiclass"),
    dict(metric="iou", output_mode="multilabel"),
    dict(metric="iou", output_mode="multiclass"),
]


def _cases(name: str) -> list[dict]:
    return [c for c in CASES if SHAPES[name][1] > 1 or c["output_mode"] == "multilabel"]


@pytest.mark.parametrize("name", list(SHAPES))
def test_numpy_and_torch_paths_agree_at_full_size(name):
    probs = make_input(SHAPES[name])
    for case in _cases(name):
        numpy = rs(probs, solver="RMA", **case)
        with _common.numpy_kernels(False):
            plain = rs(probs, solver="RMA", **case)
        differ = int((numpy != plain).sum())
        assert differ == 0, f"{name} {case}: {differ} of {numpy.numel()} pixels differ"


TRITON = pytest.mark.skipif(not _triton.available() or not (CUDA or _triton.interpreting()), reason="needs triton")


def _triton_agrees(probs: torch.Tensor, name: str, blocks: tuple[int, int, int, int] | None) -> None:
    from contextlib import nullcontext

    from rankseg._triton import rma

    device = "cuda" if CUDA else "cpu"
    for case in _cases(name):
        numpy = rs(probs, solver="RMA", **case)
        with _triton.forced(), rma.block_sizes(*blocks) if blocks else nullcontext():
            fused = rs(probs.to(device), solver="RMA", **case).cpu()
        differ = int((fused != numpy).sum())
        assert differ == 0, f"{name} {case}: {differ} of {numpy.numel()} pixels differ"


@TRITON
@pytest.mark.parametrize("name", list(SHAPES))
def test_triton_and_numpy_paths_agree_at_full_size(name):
    _triton_agrees(make_input(SHAPES[name]), name, None)


@TRITON
@pytest.mark.parametrize("name", list(SHAPES))
def test_triton_with_small_blocks_agrees_at_a_quarter_size(name):
    b, c, h, w = SHAPES[name]
    _triton_agrees(make_input((b, c, h // 4, w // 4)), name, (4096, 16384, 256, 512))


@TRITON
@pytest.mark.parametrize("name", list(SHAPES))
def test_exact_fused_path_agrees_with_numpy_at_full_size(name):
    """The exact solver (smooth 0, multilabel): its fused Triton path (rankseg._triton.exact.exact_masks) and the
    NumPy band path give the same masks, Dice and IoU (about 0.5, 2.5 and 4 minutes under the interpreter)."""
    probs = make_input(SHAPES[name])
    device = "cuda" if CUDA else "cpu"
    for metric in ("dice", "iou"):
        case = dict(metric=metric, output_mode="multilabel", solver="exact")
        numpy = rs(probs, **case)
        with _triton.forced():
            fused = rs(probs.to(device), **case).cpu()
        differ = int((fused != numpy).sum())
        assert differ == 0, f"{name} {metric}: {differ} of {numpy.numel()} pixels differ"
