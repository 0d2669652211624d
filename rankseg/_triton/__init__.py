"""Triton kernels for the solvers' passes on CUDA (RMA: row histogram, band gather with the output mask,
band Dinkelbach, multiclass overlap resolution; exact: window from the histogram, row power sums, band scoring
by quadrature, selection).

The kernels sit behind one small interface per solver (:mod:`rankseg._triton.rma`, :mod:`rankseg._triton.exact`);
the plain torch code in :mod:`rankseg._rma`, :mod:`rankseg._band`, :mod:`rankseg._multiclass` and
:mod:`rankseg._exact` stays the reference. Triton is imported
lazily: the library imports and runs without it. The kernels are selected for CUDA float32 tensors when triton
imports; :func:`forced` also selects them for CPU tensors, which needs Triton's interpreter
(``TRITON_INTERPRET=1`` set before triton is first imported) and is what the tests and the cost model use.

Every sum that decides a mask is an integer: probabilities are truncated to fixed point (2^-40 units up to 2^20
pixels a row, :func:`rankseg._common.fixed_bits`) and added as int64, so the kernels' answers do not depend on
block sizes, grid shapes or the order in which atomics land; the multiclass constants are those sums rounded
once to float32, as the torch and NumPy paths compute them (:func:`rankseg._rma._fixed_row_sums`). The exact
solver's band scores are float64 quadratures summed in a fixed order (no floating-point atomics), so they do not
depend on the atomics either; its masks equal the torch path's unless two ranks' scores lie within their rounding.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch

__all__ = ["available", "enabled", "forced", "interpreting"]

_FORCED: bool | None = None  # None: CUDA only; True: CPU tensors too (interpreter); False: never


@functools.cache
def available() -> bool:
    """Whether triton imports (cached; the first import fixes whether it runs in interpreter mode)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # noqa: BLE001 (a broken install is as good as none)
        return False
    return True


def interpreting() -> bool:
    """Whether Triton runs its interpreter (``TRITON_INTERPRET=1``): kernels then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def enabled(*tensors: torch.Tensor) -> bool:
    """Whether the Triton kernels run for these tensors: all on CUDA (or on the CPU under :func:`forced` with the
    interpreter), float32 where floating, and triton importable."""
    if not tensors:
        return False
    on_cuda = all(t.device.type == "cuda" for t in tensors)
    on_cpu = all(t.device.type == "cpu" for t in tensors)
    if _FORCED is False or not (on_cuda or (_FORCED and on_cpu and interpreting())):
        return False
    if any(t.is_floating_point() and t.dtype != torch.float32 for t in tensors):
        return False
    return available()


@contextlib.contextmanager
def forced(on: bool = True) -> Iterator[None]:
    """Select the Triton kernels for CPU tensors too (under the interpreter), or (``on=False``) never."""
    global _FORCED
    old = _FORCED
    _FORCED = on
    try:
        yield
    finally:
        _FORCED = old
