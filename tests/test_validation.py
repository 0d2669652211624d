"""Every validation error of rankseg 0.0.8, with its exact type and message, and the order of the checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankseg import RankSEG, rankseg_rma
from rankseg.functional import rankseg

P = torch.full((1, 3, 4, 4), 1 / 3)
P1 = torch.full((1, 1, 4, 4), 0.6)


@pytest.mark.parametrize(
    ("probs", "kwargs", "exc", "message"),
    [
        ([[0.5]], {}, TypeError, "probs must be a torch.Tensor"),
        (np.zeros((1, 2, 3)), {}, TypeError, "probs must be a torch.Tensor"),
        (
            torch.zeros(1, 2, 3, dtype=torch.int64),
            {},
            TypeError,
            "probs must have a real floating-point dtype",
        ),
        (
            torch.zeros(1, 2, 3, dtype=torch.bool),
            {},
            TypeError,
            "probs must have a real floating-point dtype",
        ),
        (
            torch.zeros(1, 2, 3, dtype=torch.complex64),
            {},
            TypeError,
            "probs must have a real floating-point dtype",
        ),
        (torch.zeros(2, 3), {}, ValueError, "probs must have shape (batch_size, num_class, *image_shape)"),
        (torch.zeros(1, 0, 3), {}, ValueError, "probs must contain at least one class"),
        (torch.zeros(1, 2, 3, 0), {}, ValueError, "probs spatial dimensions must be non-empty"),
        (P, {"metric": 1}, TypeError, "metric must be a string"),
        (P, {"output_mode": None}, TypeError, "output_mode must be a string"),
        (P, {"solver": 3}, TypeError, "solver must be a string"),
        (P, {"smooth": True}, TypeError, "smooth must be a real number"),
        (P, {"smooth": "0"}, TypeError, "smooth must be a real number"),
        (P, {"smooth": torch.tensor(0.0)}, TypeError, "smooth must be a real number"),
        (P, {"smooth": float("inf")}, ValueError, "smooth must be finite"),
        (P, {"smooth": -1.0}, ValueError, "smooth must be greater than or equal to 0"),
        (P, {"pruning_prob": True}, TypeError, "pruning_prob must be a real number"),
        (P, {"pruning_prob": float("nan")}, ValueError, "pruning_prob must be finite"),
        (P, {"pruning_prob": 1.5}, ValueError, "pruning_prob must be in the range [0, 1]"),
        (P, {"metric": " F1 "}, ValueError, "Unknown metric: f1"),
        (P, {"output_mode": "binary"}, ValueError, "Unknown output mode: binary"),
        (
            P1,
            {"output_mode": "multiclass"},
            ValueError,
            "Single-channel probabilities cannot produce a binary multiclass label map; use "
            "output_mode='multilabel' or provide background and foreground channels",
        ),
        (
            P,
            {"solver": "BA"},
            ValueError,
            "solver 'BA' is not supported for metric='dice' with output_mode='multiclass'; "
            "supported solvers: RMA",
        ),
        (
            P1,
            {"metric": "iou", "output_mode": "multilabel", "solver": "ba+trna"},
            ValueError,
            "solver 'BA+TRNA' is not supported for metric='iou' with output_mode='multilabel', single-channel "
            "input; supported solvers: RMA",
        ),
        (
            P,
            {"metric": "acc"},
            ValueError,
            "solver 'RMA' is not supported for metric='accuracy' with output_mode='multiclass'; "
            "supported solvers: argmax",
        ),
        (
            P,
            {"eps": 0.1},
            TypeError,
            "solver 'RMA' does not accept solver parameters: eps; allowed parameters: safe_screening, "
            "unassigned_policy, void_index",
        ),
        (
            P,
            {"metric": "acc", "solver": "argmax", "foo": 1},
            TypeError,
            "solver 'argmax' does not accept solver parameters: foo",
        ),
        (P, {"void_index": 7}, ValueError, "void_index requires unassigned_policy='void'"),
        (
            P,
            {"output_mode": "multilabel", "solver": "BA", "eps": 1.0},
            ValueError,
            "eps must be in the range (0, 1)",
        ),
        (
            P,
            {"output_mode": "multilabel", "solver": "BA", "eps": "x"},
            TypeError,
            "eps must be a real number",
        ),
        (P * float("nan"), {}, ValueError, "probs must contain only finite values"),
        (P + 1, {}, ValueError, "probs must be in the range [0, 1]"),
        (P, {"unassigned_policy": "zero"}, ValueError, "unassigned_policy should be max_score or void"),
        (
            P,
            {"unassigned_policy": "void", "void_index": 1},
            ValueError,
            "void_index must lie outside the valid class index range [0, num_class)",
        ),
        (P, {"unassigned_policy": "void", "void_index": 2.0}, TypeError, "void_index must be an int"),
        (P, {"unassigned_policy": "void", "void_index": True}, TypeError, "void_index must be an int"),
        (
            P,
            {"unassigned_policy": "void", "void_index": 2**63},
            ValueError,
            "void_index must be representable as torch.int64",
        ),
        (P, {"safe_screening": "AUTO"}, TypeError, "safe_screening must be a bool or 'auto'"),
    ],
)
def test_messages(probs, kwargs, exc, message):
    with pytest.raises(exc) as info:
        rankseg(probs, **kwargs)
    assert str(info.value) == message


def test_order_of_checks():
    # bad probs structure wins over everything else
    with pytest.raises(TypeError, match="probs must be a torch.Tensor"):
        rankseg([1.0], metric="f1", smooth=-1)
    # smooth is checked before the metric name
    with pytest.raises(ValueError, match="smooth must be"):
        rankseg(P, metric="f1", smooth=-1)
    # NaN values with an unknown metric report the metric; with a bad policy, the values
    with pytest.raises(ValueError, match="Unknown metric: f1"):
        rankseg(P * float("nan"), metric="f1")
    with pytest.raises(ValueError, match="probs must contain only finite values"):
        rankseg(P * float("nan"), unassigned_policy="zero")
    # non-finite is reported before out-of-range
    bad = P.clone()
    bad[0, 0, 0, 0] = 2.0
    bad[0, 1, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        rankseg(bad)
    # eps is checked before the values
    with pytest.raises(ValueError, match="eps"):
        rankseg(P + 1, output_mode="multilabel", solver="BA", eps=0)


def test_void_index_default_fails_with_256_classes():
    probs = torch.full((1, 256, 2), 1 / 256)
    with pytest.raises(ValueError, match="valid class index range"):
        rankseg(probs, unassigned_policy="void")


def test_constructor_does_not_validate():
    seg = RankSEG(metric="f1", solver="zzz", foo=1)
    assert seg.solver_params == {"foo": 1}
    with pytest.raises(ValueError, match="Unknown metric: f1"):
        seg(P)
    with pytest.raises(ValueError, match="supported solvers: argmax"):
        RankSEG(metric="acc").predict(P)


def test_spellings_are_normalised():
    a = rankseg(P, metric=" DICE ", output_mode="MultiLabel", solver=" rma")
    b = rankseg(P, metric="dice", output_mode="multilabel", solver="RMA")
    assert torch.equal(a, b)
    assert torch.equal(
        rankseg(P, metric="accuracy", solver="argmax"), rankseg(P, metric="acc", solver="ARGMAX")
    )


def test_low_level_rma_messages():
    with pytest.raises(ValueError, match="^metric should be iou or dice$"):
        rankseg_rma(P, metric="acc")
    with pytest.raises(ValueError, match="^output_mode should be multiclass or multilabel$"):
        rankseg_rma(P, output_mode="binary")
    with pytest.raises(ValueError, match="only supported when output_mode='multiclass'"):
        rankseg_rma(P, output_mode="multilabel", unassigned_policy="void")
    with pytest.raises(ValueError, match="a non-default void_index requires"):
        rankseg_rma(P, output_mode="multilabel", void_index=3)


def test_argmax_multilabel_warns_and_returns_one_hot():
    with pytest.warns(UserWarning, match="The argmax solver returns non-overlapping one-hot masks"):
        out = rankseg(P, metric="acc", output_mode="multilabel", solver="argmax")
    assert out.dtype == torch.bool and out.shape == P.shape
    assert torch.equal(out.sum(1), torch.ones(1, 4, 4, dtype=torch.int64))
    tr = rankseg(P1, metric="acc", output_mode="multilabel", solver="TR")
    assert tr.all()  # 0.6 > 0.5
    assert not rankseg(torch.full((1, 1, 3), 0.5), metric="acc", output_mode="multilabel", solver="TR").any()
