"""The counting of scripts/bench_gpu_model.py: a known sequence of ops gives known launches, syncs and bytes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():  # the Triton path is counted under Triton's interpreter (set before its import)
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench_gpu_model as model  # noqa: E402


def test_known_sequence_gives_known_counts():
    x = torch.ones(4, 8)  # 128 bytes of float32
    with model.CostCounter() as counter:
        y = x * 2  # launch: reads 128, writes 128
        v = y.view(32).t()  # views: no launch
        s = v.sum()  # launch: reads 128, writes 4
        float(s)  # host sync (_local_scalar_dense), not a launch
        idx = (y > 1).nonzero()  # launch (gt: 128 + 32) and a sync + launch (nonzero: 32 + 32*2*8)
        del idx
    c = counter.counts
    assert c.launches == 4
    assert c.syncs == 2
    assert c.bytes == (128 + 128) + (128 + 4) + (128 + 32) + (32 + 32 * 2 * 8)


def test_boolean_mask_indexing_and_repeat_interleave_sync():
    x = torch.arange(6.0)
    with model.CostCounter() as counter:
        x[x > 2]
        torch.repeat_interleave(torch.tensor([1, 2]))
    assert counter.counts.syncs == 2


def test_model_formula():
    counts = model.Counts(launches=10, syncs=2, bytes=int(2.5e9))
    assert counts.model_ms() == pytest.approx(1e3 * (10 * 5e-6 + 2 * 20e-6 + 1e-3))


def test_device_path_restores_the_cpu_settings():
    from rankseg import _common

    before = (_common._NUMPY_KERNELS, _common._SCRATCH_MAX_BYTES, _common._CACHE_MIN_BYTES)
    with model.device_path():
        assert not _common.use_numpy(torch.zeros(1))
    assert (_common._NUMPY_KERNELS, _common._SCRATCH_MAX_BYTES, _common._CACHE_MIN_BYTES) == before


def test_tolist_counts_as_one_sync():
    with model.CostCounter() as counter:
        torch.arange(3.0).tolist()
    assert counter.counts.syncs == 1


def _triton_ready() -> bool:
    from rankseg import _triton

    return _triton.available() and _triton.interpreting()


@pytest.mark.skipif(not _triton_ready(), reason="needs triton and its interpreter")
@pytest.mark.parametrize("mode", ["multilabel", "multiclass"])
def test_triton_path_is_counted_from_its_kernel_launches(mode):
    probs = model.make_input((2, 3, 64, 64))
    case = dict(metric="dice", output_mode=mode, solver="RMA")
    fused = model.count_call(case, probs, triton=True)
    plain = model.count_call(case, probs)
    names = [name for name, _ in fused.kernels]
    expected = ["bounds_kernel", "row_hist_kernel", "bracket_kernel", "gather_kernel", "dinkelbach_kernel"]
    assert names == expected + (["owned_kernel", "resolve_kernel"] if mode == "multiclass" else [])
    assert plain.kernels == []
    # each kernel is one launch with the bytes it declares: at least one read of the input for the passes
    nbytes = dict(fused.kernels)
    assert nbytes["row_hist_kernel"] >= probs.numel() * 4 and nbytes["gather_kernel"] >= probs.numel() * 5
    assert fused.syncs <= 2 < plain.syncs
    assert fused.launches < plain.launches


def test_launch_reports_each_kernel_once_with_lazy_bytes():
    from rankseg._triton import _launch

    class Kernel:
        __name__ = "fake_kernel"

        def __getitem__(self, grid):
            return lambda *args, **meta: calls.append((grid, args, meta))

    calls: list = []
    with model.CostCounter() as counter:
        _launch.launch(Kernel(), (2,), (1,), reads=10, writes=lambda: 5, BLOCK=4)
    assert calls == [((2,), (1,), {"BLOCK": 4})]
    assert counter.counts.kernels == [("fake_kernel", 15)]
    assert counter.counts.launches == 1 and counter.counts.bytes == 15


@pytest.mark.skipif(not _triton_ready(), reason="needs triton and its interpreter")
def test_fused_exact_path_is_counted_from_its_kernel_launches():
    """The exact solver on its fused path: its kernels in order, the two host syncs (value checks, band sizes),
    and far fewer launches than the torch path."""
    probs = model.make_input((2, 3, 64, 64))
    case = dict(metric="dice", output_mode="multilabel", solver="exact")
    fused = model.count_call(case, probs, triton=True)
    plain = model.count_call(case, probs)
    names = [name for name, _ in fused.kernels]
    assert names == [
        "bounds_kernel", "row_hist_kernel", "exact_window_kernel", "gather_kernel", "row_powers_kernel",
        "sort_keys_kernel", "exact_block_sums_kernel", "exact_block_scores_kernel", "exact_select_kernel",
    ]  # fmt: skip
    nbytes = dict(fused.kernels)
    assert nbytes["row_hist_kernel"] >= probs.numel() * 4 and nbytes["row_powers_kernel"] >= probs.numel() * 4
    assert fused.syncs == 2 < plain.syncs
    assert fused.launches <= 40 < plain.launches
