"""The evaluation loop's per-batch work makes no host synchronisation of its own (issue: sync-free evaluation).

Counted with scripts/bench_gpu_model.py's CostCounter on CPU tensors (every ``.item()``, ``.tolist()``, ``nonzero``
and boolean indexing is a synchronisation on a GPU): the target check runs on the loader's CPU tensor before the
transfer, so counting a batch (argmax and threshold rules) needs none; RMA keeps its own two.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():  # the Triton path is counted under Triton's interpreter (set before its import)
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_gpu_model as model  # noqa: E402

from rankseg.metrics import MetricAccumulator, check_target_values, confusion_stats  # noqa: E402
from rankseg.predict import ArgmaxRule, RankSEGRule, ThresholdRule, probabilities  # noqa: E402


def _batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 16, 16, generator=gen)
    target = torch.randint(0, 4, (2, 16, 16), generator=gen)
    target[:, :2] = 255
    return logits, target


@pytest.fixture()
def device_counting(monkeypatch):
    """confusion_stats's device branch (a sized index_add_ instead of bincount), taken on CPU tensors."""
    import rankseg.metrics as metrics

    monkeypatch.setattr(metrics, "_bincount_on", lambda flat: False)


def test_counting_a_batch_needs_no_synchronisation_once_the_target_is_checked(device_counting):
    logits, target = _batch()
    check_target_values(target, 4, 255)  # on the CPU tensor, outside the device's work
    accumulators = {name: MetricAccumulator(4) for name in ("argmax", "threshold")}
    rules = {"argmax": ArgmaxRule(), "threshold": ThresholdRule()}
    with model.CostCounter() as counter:
        probs = probabilities(logits, "softmax")
        for name, rule in rules.items():
            accumulators[name].update(rule(probs), target, target_checked=True)
    assert counter.counts.syncs == 0
    with model.CostCounter() as unchecked:
        confusion_stats(ArgmaxRule()(probs), target, 4)
    assert unchecked.counts.syncs == 1  # the check this loop moved to the CPU


def test_both_ways_of_counting_agree(monkeypatch):
    import rankseg.metrics as metrics

    logits, target = _batch(2)
    probs = probabilities(logits, "softmax")
    for pred in (ArgmaxRule()(probs), ArgmaxRule()(probs).masked_fill(target == 0, -1)):
        on_host = confusion_stats(pred, target, 4, reference_ignore=True)
        monkeypatch.setattr(metrics, "_bincount_on", lambda flat: False)
        on_device = confusion_stats(pred, target, 4, reference_ignore=True)
        monkeypatch.undo()
        for a, b in zip(on_host, on_device, strict=True):
            assert torch.equal(a, b)


def test_rma_keeps_at_most_two_synchronisations_per_call():
    logits, _ = _batch(1)
    probs = probabilities(logits, "softmax")
    rule = RankSEGRule(metric="dice", output_mode="multiclass", solver="RMA")
    with model.device_path(triton=True), model.CostCounter() as counter:
        rule(probs)
    assert counter.counts.syncs <= 2


def test_the_cpu_target_check_gives_the_same_message():
    _, target = _batch()
    target[1, 5, 5] = 7
    with pytest.raises(ValueError) as cpu:
        check_target_values(target, 4, 255)
    assert "neither a class in [0, 4) nor ignore_index=255" in str(cpu.value)
    with pytest.raises(ValueError) as stats:
        confusion_stats(target.clamp(0, 3), target, 4)
    assert str(stats.value) == str(cpu.value)
