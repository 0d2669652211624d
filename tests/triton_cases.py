"""What the Triton kernel tests share (tests/test_triton_rma.py, tests/test_triton_exact.py): the device, the
skip marker, a recorder of kernel launches and smooth probability maps.

Without CUDA the kernels run under Triton's interpreter on CPU tensors; ``tests/conftest.py`` sets
``TRITON_INTERPRET=1`` before anything imports triton.
"""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from rankseg import _triton

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
#: Skip a module unless the kernels can run: compiled on CUDA, or under the interpreter.
NEEDS_TRITON = pytest.mark.skipif(
    not _triton.available() or not (CUDA or _triton.interpreting()),
    reason="needs triton (compiled on CUDA, or its interpreter)",
)
#: pixel block, pixels per program, class-tile block, band block: several of each on the tests' inputs
SMALL_BLOCKS = (128, 512, 64, 32)


class Launches:
    """Records the kernels launched (the hook interface of rankseg._triton._launch)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def kernel(self, name: str, nbytes: int) -> None:
        self.names.append(name)

    def paused(self):
        return nullcontext()


def smooth_probs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Spatially smooth probabilities (B, C, H, W): softmax over classes, or a sigmoid for one class."""
    gen = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    x = torch.randn(b, c, max(h // 8, 2), max(w // 8, 2), generator=gen) * 4
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.sigmoid() if c == 1 else x.softmax(1)
