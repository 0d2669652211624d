"""The counting of scripts/bench_gpu_model.py: a known sequence of ops gives known launches, syncs and bytes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

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
