"""Row layout, memory-bounded chunking and mask building shared by the solvers.

Every solver works on "rows": one row per (image, class) pair, holding that class's probabilities over all
pixels of that image, i.e. a view of the input as (B * C, d) with d = prod(spatial shape).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

# Upper bound on the temporary memory one chunk of rows may use, in bytes; None = derived (see chunk_budget).
_CHUNK_BYTES: int | None = None
_MIN_CHUNK_BYTES = 16 * 2**20
# On CUDA a chunk may use this share of the memory still available (free on the device plus what the caching
# allocator holds unused): the rest covers the solvers' full-size temporaries outside the chunk loop and
# errors in the per-row estimates.
_CUDA_FREE_FRACTION = 0.25


@contextmanager
def chunk_bytes(limit: int | None) -> Iterator[None]:
    """Temporarily cap the working memory of one chunk of rows (tests force tiny chunks with it).

    Args:
        limit: bytes of temporary memory one chunk may use; ``None`` restores the default
            (see :func:`chunk_budget`).
    """
    global _CHUNK_BYTES
    old = _CHUNK_BYTES
    _CHUNK_BYTES = limit
    try:
        yield
    finally:
        _CHUNK_BYTES = old


def chunk_budget(input_bytes: int, device: torch.device | str | None = None) -> int:
    """Bytes of temporary memory one chunk of rows may use.

    * inside :func:`chunk_bytes`: its limit;
    * on CUDA: a quarter of the memory available to this process, ``torch.cuda.mem_get_info`` free bytes
      plus the caching allocator's reserved-but-unused bytes (at least 16 MiB), so large inputs get large,
      fast chunks while the device has room, and small ones when it is nearly full;
    * otherwise (CPU): the input size, at least 16 MiB, so the peak extra memory (the chunk plus the
      solvers' few full-size temporaries) stays a small multiple of the input.
    """
    if _CHUNK_BYTES is not None:
        return _CHUNK_BYTES
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return max(int(_CUDA_FREE_FRACTION * (free + cached)), _MIN_CHUNK_BYTES)
    return max(input_bytes, _MIN_CHUNK_BYTES)


# Reusable CPU scratch memory, one buffer per thread. A fresh row-sized temporary costs a page fault per 4 KiB
# on first touch, which on CPU takes longer than the arithmetic of a whole pass over it; buffers up to this
# size are kept between calls (``free_scratch`` releases them).
_SCRATCH = threading.local()
_SCRATCH_MAX_BYTES = 128 * 2**20


def scratch(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor for temporaries that do not outlive the caller's use of it.

    On CPU it is carved from a per-thread buffer that is reused across calls (up to ``_SCRATCH_MAX_BYTES``),
    so only one scratch tensor may be live at a time per thread. Elsewhere it is a plain ``torch.empty``
    (the CUDA caching allocator already reuses memory).
    """
    numel = 1
    for size in shape:
        numel *= size
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if torch.device(device).type != "cpu" or nbytes > _SCRATCH_MAX_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.numel() < nbytes:
        buf = torch.empty(nbytes, dtype=torch.uint8)
        _SCRATCH.buf = buf
    return buf[:nbytes].view(dtype).view(shape)


def free_scratch() -> None:
    """Release this thread's CPU scratch buffer."""
    _SCRATCH.buf = None


# NumPy releases the GIL inside its loops, so row blocks of one large NumPy step run in parallel on this pool
# (as many threads as torch uses). It is created on first use and again in a forked child, whose copy of the
# parent's pool has no threads.
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def in_row_blocks(n_rows: int, numel: int, fn: Callable[[slice], object]) -> list:
    """``[fn(block) for block in row blocks]``, the blocks run in parallel when the work is large enough.

    Args:
        n_rows: rows to split (blocks are contiguous, in order).
        numel: elements the step touches (below 2^17 per thread a single block is used).
    """
    global _POOL
    n_threads = max(1, min(torch.get_num_threads(), n_rows, numel // 2**17))
    bounds = np.linspace(0, n_rows, n_threads + 1).astype(int)
    blocks = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    if n_threads == 1:
        return [fn(blocks[0])]
    with _POOL_LOCK:
        pid = os.getpid()
        if _POOL is None or _POOL[0] != pid or _POOL[1] < n_threads:
            if _POOL is not None and _POOL[0] == pid:
                _POOL[2].shutdown(wait=False)
            _POOL = (pid, n_threads, ThreadPoolExecutor(n_threads, thread_name_prefix="rankseg"))
        pool = _POOL[2]
    return list(pool.map(fn, blocks))


# CPU tensors take NumPy fast paths for comparisons, gathers and small sorts (several times faster than torch
# there); the torch code paths (used on other devices) give identical results, which tests check by turning
# the NumPy paths off with :func:`numpy_kernels`.
_NUMPY_KERNELS = True


@contextmanager
def numpy_kernels(enabled: bool) -> Iterator[None]:
    """Temporarily enable or disable the CPU NumPy fast paths (tests run the torch paths with it)."""
    global _NUMPY_KERNELS
    old = _NUMPY_KERNELS
    _NUMPY_KERNELS = enabled
    try:
        yield
    finally:
        _NUMPY_KERNELS = old


def use_numpy(*tensors: torch.Tensor) -> bool:
    """Whether the NumPy fast paths apply: every tensor on the CPU and the paths enabled."""
    return _NUMPY_KERNELS and all(t.device.type == "cpu" for t in tensors)


def count_true(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Number of True entries along ``dim`` (int64). A plain ``sum`` of a bool tensor first copies it to int64
    (8 bytes per entry); an int32 accumulator over its uint8 view does not."""
    return mask.view(torch.uint8).sum(dim, dtype=torch.int32).long()


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16/bfloat16 are promoted to float32; float32 and float64 keep their precision."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_rows(probs: torch.Tensor) -> torch.Tensor:
    """(B, C, *S) -> (B * C, d) in the compute dtype (a view when possible; the input is never written)."""
    d = 1
    for size in probs.shape[2:]:
        d *= size
    rows = probs.reshape(probs.shape[0] * probs.shape[1], d)
    return rows.to(compute_dtype(probs.dtype))


def row_chunks(
    n_rows: int, bytes_per_row: int, input_bytes: int, device: torch.device | str | None = None
) -> Iterator[slice]:
    """Slices of rows whose temporaries (``bytes_per_row`` each) fit :func:`chunk_budget`.

    Args:
        n_rows: rows to process.
        bytes_per_row: peak temporary bytes the caller needs per row of the chunk.
        input_bytes: size of the solver's input (the CPU budget is a multiple of it).
        device: where the rows live; CUDA budgets follow the device's free memory.
    """
    budget = chunk_budget(input_bytes, device)
    step = max(1, int(budget // max(bytes_per_row, 1)))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def masks_by_chunks(
    rows: torch.Tensor,
    solve: torch.Tensor,
    bytes_per_row: int,
    solve_chunk: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Row masks from a per-chunk solver, over the rows with ``solve`` True (the others stay empty).

    ``solve_chunk(p, ids)`` gets a contiguous (n, d) block of rows (the input itself when every row is solved
    in one chunk, so no copy is made) and their indices, and returns their (n, d) bool masks.

    Shape:
        rows: (R, d).  solve: (R,) bool.  output: (R, d) bool.
    """
    n_rows = rows.shape[0]
    idx = solve.nonzero().squeeze(1)
    if idx.numel() == 0:
        return torch.zeros(rows.shape, dtype=torch.bool, device=rows.device)
    out = None
    for sl in row_chunks(idx.numel(), bytes_per_row, rows.numel() * rows.element_size(), rows.device):
        ids = idx[sl]
        whole = ids.numel() == n_rows
        masks = solve_chunk(rows.contiguous() if whole else rows[ids], ids)
        if whole:
            return masks
        if out is None:
            out = torch.zeros(rows.shape, dtype=torch.bool, device=rows.device)
        out[ids] = masks
    return out


def row_sums64(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Float64 sums over the last dim of ``x`` (of the entries where ``mask`` is True), chunk by chunk.

    ``x.sum(-1, dtype=torch.float64)`` first copies the whole of ``x`` to float64 (twice a float32 input);
    summing row chunks bounds that copy by the chunk budget.

    Shape:
        x: (*, d), any real or bool dtype.  mask: (*, d) bool or None.  output: (*) float64.
    """
    flat = x.reshape(-1, x.shape[-1]) if x.dim() else x.reshape(1, 1)
    keep = None if mask is None else mask.reshape(flat.shape)
    out = torch.empty(flat.shape[0], dtype=torch.float64, device=x.device)
    per_row = flat.shape[1] * (8 + (flat.element_size() if keep is not None else 0))
    for sl in row_chunks(flat.shape[0], per_row, flat.numel() * flat.element_size(), x.device):
        part = flat[sl] if keep is None else torch.where(keep[sl], flat[sl], 0)
        out[sl] = part.sum(1, dtype=torch.float64)
    return out.reshape(x.shape[:-1])


# Bytes of one block of rows for a sequence of passes on CPU (:func:`cache_blocks`): small enough that the
# block and a temporary like it stay in a core's cache between the passes.
CACHE_BLOCK = 2**20
# Inputs up to this size are one block (their passes gain nothing from blocking).
_CACHE_MIN_BYTES = 2 * CACHE_BLOCK


def cache_blocks(p: torch.Tensor) -> list[slice]:
    """Row slices of a (r, d) tensor for running a sequence of element-wise passes block by block.

    On CPU each block holds about :data:`CACHE_BLOCK` bytes (at least one row), so the second and later
    passes over a block read the cache instead of memory (the exact solver's row power sums: about 1.7x
    faster on a 10 MiB input); elsewhere, and for small inputs, the whole tensor is one block. Every row's
    results are those of whole-tensor passes (the operations are row-wise).
    """
    r, d = p.shape
    row_bytes = max(d * p.element_size(), 1)
    if p.device.type != "cpu" or r * row_bytes <= _CACHE_MIN_BYTES:
        return [slice(0, r)]
    step = max(1, CACHE_BLOCK // row_bytes)
    return [slice(b0, min(r, b0 + step)) for b0 in range(0, r, step)]


def fixed_bits(d: int) -> int:
    """Fractional bits of the int64 fixed-point sums of d probabilities (values below 2 each stay below 2^63);
    40 up to d = 2^20, exact for probabilities >= 2^-17 there."""
    return min(40, 61 - max(d, 1).bit_length())


def threshold_below(thr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Largest value of ``dtype`` that is <= thr (float64), so ``p > result`` equals ``p > thr`` exactly.

    Comparing float32 data against a float64 threshold would otherwise upcast the whole tensor.
    """
    low = thr.to(dtype)
    if dtype == thr.dtype:
        return low
    if use_numpy(thr):  # a few elements: NumPy avoids torch's per-op overhead
        t = thr.numpy()
        lo = t.astype(torch.empty((), dtype=dtype).numpy().dtype)
        return torch.from_numpy(np.where(lo > t, np.nextafter(lo, lo.dtype.type(-np.inf)), lo))
    too_high = low.to(thr.dtype) > thr
    return torch.where(too_high, torch.nextafter(low, torch.full_like(low, -float("inf"))), low)


def row_max(probs: torch.Tensor) -> torch.Tensor:
    """Largest probability of every (image, class) row, (B * C,) in the compute dtype (NaN propagates)."""
    if probs.numel() == 0:
        return torch.zeros(probs.shape[0] * probs.shape[1], dtype=compute_dtype(probs.dtype), device=probs.device)
    return probs.flatten(2).amax(2).reshape(-1).to(compute_dtype(probs.dtype))


def prune_rows(rows: torch.Tensor, pruning_prob: float, maxima: torch.Tensor | None = None) -> torch.Tensor:
    """Rows that are solved: max probability strictly above ``pruning_prob`` (0.8's rule: max <= p is skipped).

    Args:
        maxima: the rows' maxima when already known (:func:`row_max`).
    """
    if rows.shape[1] == 0 or rows.shape[0] == 0:
        return torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
    return (rows.amax(dim=1) if maxima is None else maxima) > pruning_prob


def sort_descending(p: torch.Tensor) -> torch.Tensor:
    """Values of each row in decreasing order (no indices: the mask is rebuilt from a threshold).

    On CPU, NumPy's vectorised value sort split over the torch thread count is about 3x faster than
    ``torch.sort`` (which also materialises int64 indices); elsewhere ``torch.sort`` is used.

    Shape:
        p: (R, d) contiguous; output: (R, d), same dtype and device.
    """
    n_rows = p.shape[0]
    if not use_numpy(p) or n_rows == 0:
        return torch.sort(p, dim=1, descending=True).values
    src = p.numpy()
    dst = np.empty_like(src)

    def work(block: slice) -> None:
        # Sorting the negated values ascending gives a decreasing order without a flipped (negative-stride)
        # copy; NumPy releases the GIL while sorting, so the blocks run in parallel.
        np.negative(src[block], out=dst[block])
        dst[block].sort(axis=1)
        np.negative(dst[block], out=dst[block])

    in_row_blocks(n_rows, p.numel(), work)
    return torch.from_numpy(dst)


def top_tau_mask(p: torch.Tensor, p_sorted: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Select the tau largest entries of each row by thresholding at the tau-th largest value.

    Pixels equal to the threshold are taken in index order until tau are chosen, so exactly tau pixels are
    selected and the mask is an upper set of the row's probabilities.

    Shape:
        p, p_sorted: (R, d) same dtype; tau: (R,) int64; output: (R, d) bool.
    """
    kth = p_sorted.gather(1, (tau - 1).clamp_min(0).unsqueeze(1))
    kth = torch.where(tau.unsqueeze(1) > 0, kth, torch.full_like(kth, torch.inf))
    ge = p >= kth
    if bool((count_true(ge, 1) == tau).all()):
        return ge
    gt = p > kth
    tied = ge & ~gt
    room = tau - count_true(gt, 1)
    return gt | (tied & (tied.cumsum(1) <= room.unsqueeze(1)))
