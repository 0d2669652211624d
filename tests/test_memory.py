"""Bounded memory of the solvers: chunked rows give the same masks as one chunk, the chunk budget follows the
device (free memory on CUDA, input size on CPU), and every solver's extra peak memory on a 3-D volume stays
within 4x its input."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rankseg import _common
from rankseg._common import chunk_budget, chunk_bytes, row_chunks, row_sums64
from rankseg.functional import rankseg as rs

MiB = 2**20


def _probs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=gen)).softmax(1)


@pytest.mark.parametrize("solver", ["RMA", "exact"])
@pytest.mark.parametrize("mode", ["multilabel", "multiclass"])
@pytest.mark.parametrize("shape", [(1, 3, 24, 24, 24), (6, 4, 20, 20)], ids=["volume", "batch"])
def test_tiny_chunks_give_identical_masks(shape, mode, solver):
    probs = _probs(shape, seed=len(shape))
    ref = rs(probs, output_mode=mode, solver=solver)
    # chunk_bytes(1): one row per chunk. Multiclass: 1 MiB, still one row per chunk in the row solvers but
    # tens to hundreds of pixels (not one) per chunk of the overlap resolution, so the test stays fast.
    with chunk_bytes(1 if mode == "multilabel" else 2**20):
        out = rs(probs, output_mode=mode, solver=solver)
    assert out.dtype == ref.dtype and torch.equal(out, ref)
    assert ref.shape == (shape if mode == "multilabel" else shape[:1] + shape[2:])


def test_row_sums64_matches_a_float64_sum():
    x = torch.rand(5, 3, 1000, generator=torch.Generator().manual_seed(1))
    mask = x > 0.4
    with chunk_bytes(1):
        chunked = row_sums64(x, mask), row_sums64(mask.view(torch.uint8))
    assert torch.equal(chunked[0], torch.where(mask, x.double(), 0).sum(2))
    assert torch.equal(chunked[1], mask.sum(2).double())


def test_cpu_budget_follows_the_input_size():
    assert chunk_budget(1000) == chunk_budget(1000, "cpu") == _common._MIN_CHUNK_BYTES
    assert chunk_budget(100 * MiB, torch.device("cpu")) == 100 * MiB
    with chunk_bytes(7):
        assert chunk_budget(100 * MiB) == 7
        assert [s.stop - s.start for s in row_chunks(5, 3, 100 * MiB)] == [2, 2, 1]


def test_cuda_budget_follows_free_memory(monkeypatch):
    # The CUDA branch on a CPU-only machine: the memory queries are replaced, the arithmetic is real.
    free = {"bytes": 8 * 2**30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * 2**30)
    cuda = torch.device("cuda")
    assert chunk_budget(10, cuda) == (8 + 2) * 2**30 // 4  # a quarter of free + cached-but-unused
    assert len(list(row_chunks(1000, 2**20, 10, cuda))) == 1
    free["bytes"] = 0  # a nearly full device still gets the minimum chunk, from the allocator's cache
    assert chunk_budget(10**12, "cuda:0") == max(2**30 // 2, _common._MIN_CHUNK_BYTES)
    with chunk_bytes(5):
        assert chunk_budget(10, cuda) == 5


_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from rankseg.functional import rankseg

    torch.set_num_threads(2)
    shape, mode, solver = tuple(json.loads(sys.argv[1])), sys.argv[2], sys.argv[3]
    probs = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    for k in range(shape[-1]):  # normalise slice by slice: no full-size temporary before the measurement
        part = probs[..., k]
        part /= part.sum(1, keepdim=True)
    warm = torch.rand(shape[:2] + (4, 4, 4)).softmax(1)
    rankseg(warm, output_mode=mode, solver=solver)  # warm-up: lazy imports, kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = rankseg(probs, output_mode=mode, solver=solver)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"input": probs.numel() * probs.element_size(), "extra": (after - before) * 1024,
                      "selected": int(out.sum()) if mode == "multilabel" else int(out.numel())}))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
@pytest.mark.parametrize(
    ("mode", "solver"),
    [
        ("multilabel", "RMA"),
        ("multiclass", "RMA"),
        ("multilabel", "BA"),
        ("multilabel", "exact"),
        ("multiclass", "exact"),
    ],
)
def test_peak_memory_is_a_small_multiple_of_the_input(mode, solver):
    # white-noise probabilities: many pixels near every cut, the hardest case for the partial sorts
    shape = (1, 4, 256, 256, 16)
    # glibc raises its mmap threshold after large frees and then keeps freed blocks (up to 32 MiB) in the heap,
    # so ru_maxrss would track the allocator's cache history instead of the solver's allocations; a fixed
    # threshold makes every large tensor its own mapping, returned on free.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, json.dumps(shape), mode, solver],
        capture_output=True, text=True, timeout=120, env=env, check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    input_bytes = 4 * torch.Size(shape).numel()
    assert result["input"] == input_bytes and result["selected"] > 0
    assert result["extra"] <= 4 * input_bytes, f"extra peak {result['extra'] / input_bytes:.2f}x the input"
