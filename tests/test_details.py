"""rankseg_details: the prediction of rankseg.functional.rankseg plus tau and cutoff per (image, class), checked
against brute force (the per-class masks of the multilabel call, their sizes and smallest probabilities, and
the RMA and exact optima found by scoring every top-tau set)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import rankseg
from rankseg import RankSEGDetails, expected_metric, rankseg_details
from rankseg._common import numpy_kernels
from rankseg.functional import rankseg as rs

# (metric, output_mode, solver, extra solver parameters)
CASES = [
    ("dice", "multiclass", "RMA", {}),
    ("iou", "multiclass", "RMA", {}),
    ("dice", "multilabel", "RMA", {}),
    ("iou", "multilabel", "RMA", {}),
    ("dice", "multiclass", "exact", {}),
    ("iou", "multilabel", "exact", {}),
    ("dice", "multilabel", "BA", {}),
    ("dice", "multilabel", "TRNA", {}),
    ("dice", "multilabel", "BA+TRNA", {"eps": 1e-3}),
    ("dice", "multiclass", "RMA", {"unassigned_policy": "void", "void_index": -1}),
    ("acc", "multilabel", "TR", {}),
    ("acc", "multiclass", "argmax", {}),
]
IDS = ["-".join([m, o, s, *map(str, p.values())]) for m, o, s, p in CASES]


def smooth_probs(seed: int, shape=(3, 4, 12, 10), dtype=torch.float32) -> torch.Tensor:
    """Softmax of blurred random logits: objects of a few pixels to most of the image, and a pruned class."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], shape[1], shape[2] // 3, shape[3] // 2, generator=gen) * 4
    logits = F.interpolate(logits, size=shape[2:], mode="bilinear", align_corners=False)
    logits[:, -1] -= 20  # a class below pruning_prob: empty masks, NaN cutoffs
    return logits.softmax(1).to(dtype)


def brute_details(probs: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tau = mask sums, cutoff = min of probs over the mask (NaN if empty), by a loop over rows."""
    n_img, n_cls = masks.shape[:2]
    p = probs.float() if probs.dtype in (torch.float16, torch.bfloat16) else probs
    tau = torch.zeros(n_img, n_cls, dtype=torch.int64)
    cutoff = torch.full((n_img, n_cls), math.nan, dtype=p.dtype)
    for b in range(n_img):
        for c in range(n_cls):
            sel = p[b, c][masks[b, c]]
            tau[b, c] = sel.numel()
            if sel.numel():
                cutoff[b, c] = sel.min()
    return tau, cutoff


def per_class_masks(probs, metric, mode, solver, params) -> torch.Tensor:
    """The class's own masks: the multilabel call of the same solver (argmax: the one-hot label map)."""
    if solver == "argmax":
        labels = rs(probs, metric=metric, output_mode=mode, solver=solver)
        return labels.unsqueeze(1) == torch.arange(probs.shape[1]).view(1, -1, 1, 1)
    params = {k: v for k, v in params.items() if k not in ("unassigned_policy", "void_index")}
    return rs(probs, metric=metric, output_mode="multilabel", solver=solver, **params)


def assert_same_details(got: RankSEGDetails, tau: torch.Tensor, cutoff: torch.Tensor) -> None:
    assert got.tau.dtype == torch.int64 and torch.equal(got.tau, tau)
    assert got.cutoff.dtype == cutoff.dtype
    assert torch.equal(torch.isnan(got.cutoff), tau == 0)
    assert torch.equal(got.cutoff.nan_to_num(-1), cutoff.nan_to_num(-1))


@pytest.mark.parametrize("metric,mode,solver,params", CASES, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_prediction_equals_rankseg_and_details_equal_brute_force(metric, mode, solver, params, seed):
    probs = smooth_probs(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # argmax in multilabel form warns; not used here
        pred, details = rankseg_details(probs, metric=metric, output_mode=mode, solver=solver, **params)
        expected = rs(probs, metric=metric, output_mode=mode, solver=solver, **params)
        masks = per_class_masks(probs, metric, mode, solver, params)
    assert pred.dtype == expected.dtype and torch.equal(pred, expected)
    tau, cutoff = brute_details(probs, masks)
    assert_same_details(details, tau, cutoff)
    assert bool((tau == 0).any()) and bool((tau > 0).any())  # both kinds of rows occur
    if solver != "argmax":  # every other solver keeps an upper set: {p > cutoff} <= mask <= {p >= cutoff}
        cut = details.cutoff.view(*tau.shape, 1, 1)  # NaN compares False: empty masks pass both
        assert bool(((probs > cut) <= masks).all()) and bool((masks <= (probs >= cut)).all())


def test_multiclass_tau_is_before_overlap_resolution():
    """Classes whose own masks overlap (probabilities near 0.5-0.95 everywhere): tau counts the pixels each class
    chose, more than the image has, and the label map gives the shared ones to one class."""
    gen = torch.Generator().manual_seed(3)
    probs = (torch.rand(2, 3, 9, 9, generator=gen) * 0.5 + 0.45).clamp(0, 1)
    labels, details = rankseg_details(probs, metric="dice", output_mode="multiclass", solver="RMA")
    final = torch.stack([(labels == c).sum((1, 2)) for c in range(3)], 1)
    masks = rs(probs, metric="dice", output_mode="multilabel", solver="RMA")
    assert torch.equal(details.tau, masks.sum((2, 3)))
    assert bool((details.tau.sum(1) > 81).all())  # overlapping masks: more selections than pixels
    assert not torch.equal(details.tau, final)


def rma_dice_tau(row: torch.Tensor) -> int:
    """RMA Dice (smooth 0) optimum by scoring every tau of the sorted row; ties to the smaller tau."""
    vals = row.double().sort(descending=True).values
    mu = float(vals.sum())
    scores = [0.0] + [2 * float(vals[:t].sum()) / (mu + t + 1) for t in range(1, vals.numel() + 1)]
    return max(range(len(scores)), key=lambda t: (scores[t], -t))


def exact_dice_tau(row: torch.Tensor) -> int:
    """Exact Dice optimum: expected_metric of every top-tau mask; ties to the smaller tau."""
    order = row.double().argsort(descending=True)
    masks = torch.zeros(row.numel() + 1, row.numel(), dtype=torch.bool)
    for t in range(1, row.numel() + 1):
        masks[t, order[:t]] = True
    scores = expected_metric(row.double().expand(row.numel() + 1, 1, -1), masks.unsqueeze(1)).flatten()
    best = scores.max()
    return int((scores >= best - 1e-12).nonzero()[0])


@pytest.mark.parametrize("solver,oracle", [("RMA", rma_dice_tau), ("exact", exact_dice_tau)])
def test_tau_is_the_optimum_of_every_top_tau_set(solver, oracle):
    gen = torch.Generator().manual_seed(5)
    probs = torch.rand(4, 3, 40, generator=gen, dtype=torch.float64) ** 3
    _, details = rankseg_details(probs, metric="dice", output_mode="multilabel", solver=solver, pruning_prob=0.0)
    want = torch.tensor([[oracle(probs[b, c]) for c in range(3)] for b in range(4)])
    assert torch.equal(details.tau, want)
    top = probs.sort(2, descending=True).values
    kth = top.gather(2, (want - 1).clamp_min(0).unsqueeze(2)).squeeze(2)
    assert torch.equal(details.cutoff.nan_to_num(-1), torch.where(want > 0, kth, -1.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_torch_kernels_and_empty_batch(dtype):
    probs = smooth_probs(2, dtype=dtype)
    pred, details = rankseg_details(probs, metric="dice", output_mode="multiclass")
    assert torch.equal(pred, rs(probs, metric="dice", output_mode="multiclass"))
    assert details.cutoff.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_same_details(details, *brute_details(probs, rs(probs, metric="dice", output_mode="multilabel")))
    with numpy_kernels(False):  # the device path (torch.where + amin by chunks) on CPU
        pred2, details2 = rankseg_details(probs, metric="dice", output_mode="multiclass")
    assert torch.equal(pred2, pred) and torch.equal(details2.tau, details.tau)
    assert torch.equal(details2.cutoff.nan_to_num(-1), details.cutoff.nan_to_num(-1))
    empty, info = rankseg_details(probs[:0], metric="iou", output_mode="multilabel")
    assert empty.shape == probs[:0].shape and info.tau.shape == (0, probs.shape[1]) == info.cutoff.shape


def test_input_untouched_and_errors_are_rankseg_s():
    probs = smooth_probs(4)
    before = probs.clone()
    rankseg_details(probs, metric="iou", output_mode="multiclass", solver="exact")
    assert torch.equal(probs, before)
    for kwargs in ({"metric": "f1"}, {"solver": "BA", "output_mode": "multiclass"}, {"smooth": -1},
                   {"solver": "RMA", "eps": 0.1}, {"output_mode": "multiclass", "void_index": 3}):  # fmt: skip
        with pytest.raises((TypeError, ValueError)) as ours:
            rankseg_details(probs, **kwargs)
        with pytest.raises(type(ours.value)) as theirs:
            rs(probs, **kwargs)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match=r"range \[0, 1\]"):
        rankseg_details(probs * 2, solver="BA", output_mode="multilabel")


def test_public_names():
    assert {"rankseg_details", "RankSEGDetails"} <= set(rankseg.__all__)
    assert rankseg.functional.rankseg_details is rankseg_details
    assert "rankseg_details" not in rankseg.functional.__all__  # that list is 0.0.8's names
