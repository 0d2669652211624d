"""RMA and exact solvers and expected_metric, checked against brute-force enumeration and hand computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rankseg
from rankseg import RankSEG, expected_metric
from rankseg._common import chunk_bytes
from rankseg.functional import rankseg as rs


def brute_expected(p: torch.Tensor, mask: torch.Tensor, metric: str, smooth: float) -> float:
    """E[metric] by enumerating all 2^d label vectors (0/0 counts as 0)."""
    p = p.flatten().double()
    m = mask.flatten().double()
    d = p.numel()
    labels = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)
    prob = torch.where(labels > 0, p, 1 - p).prod(1)
    tp = labels @ m
    tau = m.sum()
    gamma = labels.sum(1)
    if metric == "dice":
        num, den = 2 * tp + smooth, tau + gamma + smooth
    else:
        num, den = tp + smooth, tau + gamma - tp + smooth
    val = torch.where(den > 0, num / torch.where(den > 0, den, 1), torch.zeros_like(den))
    return float((prob * val).sum())


def poisson_binomial(p: np.ndarray) -> np.ndarray:
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, x in enumerate(p):
        pmf[1 : i + 2] = pmf[1 : i + 2] * (1 - x) + pmf[0 : i + 1] * x
        pmf[0] *= 1 - x
    return pmf


def dp_expected(p: torch.Tensor, mask: torch.Tensor, metric: str, smooth: float) -> float:
    """E[metric] from the exact distributions of TP and FN (independent), by recursion."""
    p = p.flatten().double().numpy()
    m = mask.flatten().numpy().astype(bool)
    tp, fn = poisson_binomial(p[m]), poisson_binomial(p[~m])
    a = np.arange(len(tp))[:, None]
    b = np.arange(len(fn))[None, :]
    tau = m.sum()
    num, den = (2 * a + smooth, tau + a + b + smooth) if metric == "dice" else (a + smooth, tau + b + smooth)
    val = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return float((tp[:, None] * fn[None, :] * val).sum())


def random_probs(gen: torch.Generator, shape, kind: int) -> torch.Tensor:
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    if kind == 0:
        return u
    if kind == 1:
        return u**4
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).sigmoid()


# ---------------------------------------------------------------------------------------- expected_metric


@pytest.mark.parametrize("metric", ["dice", "iou"])
@pytest.mark.parametrize("smooth", [0.0, 1e-3, 1.0])
def test_expected_metric_matches_brute_force(metric, smooth):
    gen = torch.Generator().manual_seed(7)
    worst = 0.0
    for trial in range(12):
        d = 1 + trial % 12
        p = random_probs(gen, (1, 1, d), trial % 3)
        if trial % 4 == 0:
            p[0, 0, 0] = 1.0
        if trial % 5 == 0:
            p[0, 0, -1] = 0.0
        order = p.flatten().argsort(descending=True)
        masks = [torch.rand(d, generator=gen) < 0.5]
        for tau in (0, d // 2, d):
            top = torch.zeros(d, dtype=torch.bool)
            top[order[:tau]] = True
            masks.append(top)
        for m in masks:
            got = expected_metric(p, m.view(1, 1, d), metric, smooth).item()
            worst = max(worst, abs(got - brute_expected(p, m, metric, smooth)))
    assert worst < 1e-9


def test_expected_metric_matches_recursion_at_larger_d():
    gen = torch.Generator().manual_seed(3)
    for d, kind in ((300, 0), (1500, 1), (800, 2)):
        p = random_probs(gen, (1, 1, d), kind)
        order = p.flatten().argsort(descending=True)
        for tau in (1, d // 7, d // 2, d - 1):
            m = torch.zeros(d, dtype=torch.bool)
            m[order[:tau]] = True
            for metric in ("dice", "iou"):
                got = expected_metric(p, m.view(1, 1, d), metric).item()
                assert abs(got - dp_expected(p, m, metric, 0.0)) < 1e-9


def test_expected_metric_label_map_and_batch_layout():
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(2, 3, 2, 3, generator=gen).softmax(1)
    labels = torch.tensor([[[0, 1, 2], [2, 255, 1]], [[1, 1, 1], [0, 0, 0]]])
    got = expected_metric(probs, labels, "iou")
    assert got.shape == (2, 3) and got.dtype == torch.float64
    for b in range(2):
        for c in range(3):
            mask = labels[b] == c
            assert abs(got[b, c].item() - brute_expected(probs[b, c], mask, "iou", 0.0)) < 1e-9
    with pytest.raises(ValueError, match="preds must be bool masks of shape"):
        expected_metric(probs, labels[:, :1])


# ---------------------------------------------------------------------------------------- solvers


def best_by_enumeration(p: torch.Tensor, metric: str, smooth: float) -> tuple[float, list[float]]:
    d = p.numel()
    order = p.flatten().argsort(descending=True)
    scores = []
    for tau in range(d + 1):
        m = torch.zeros(d, dtype=torch.bool)
        m[order[:tau]] = True
        scores.append(brute_expected(p, m, metric, smooth))
    return max(scores), scores


@pytest.mark.parametrize("metric", ["dice", "iou"])
@pytest.mark.parametrize("smooth", [0.0, 0.5])
def test_exact_solver_is_optimal_by_enumeration(metric, smooth):
    gen = torch.Generator().manual_seed(11)
    for trial in range(10):
        d = 2 + trial % 10
        p = random_probs(gen, (1, 1, d), trial % 3)
        best, scores = best_by_enumeration(p, metric, smooth)
        mask = rs(p, metric=metric, smooth=smooth, output_mode="multilabel", solver="exact", pruning_prob=0)
        assert scores[int(mask.sum())] >= best - 1e-9
        # and top-tau really is optimal among all 2^d masks (the Bayes rule this library relies on)
        if d <= 8:
            for bits in itertools.product([False, True], repeat=d):
                m = torch.tensor(bits).view(1, 1, d)
                assert brute_expected(p, m, metric, smooth) <= best + 1e-12


def test_exact_is_never_beaten():
    gen = torch.Generator().manual_seed(5)
    probs = torch.cat(
        [
            torch.randn(3, 4, 20, 20, generator=gen).mul(2).softmax(1),
            torch.randn(3, 4, 20, 20, generator=gen).mul(3).sigmoid(),
        ]
    )
    for metric in ("dice", "iou"):
        exact = expected_metric(probs, rs(probs, metric, output_mode="multilabel", solver="exact"), metric)
        rivals = {
            "rma": rs(probs, metric, output_mode="multilabel", solver="RMA"),
            "threshold": probs > 0.5,
            "argmax": rs(probs, "acc", output_mode="multiclass", solver="argmax"),
        }
        if metric == "dice":
            for solver in ("BA", "TRNA", "BA+TRNA"):
                rivals[solver] = rs(probs, "dice", output_mode="multilabel", solver=solver)
        for name, pred in rivals.items():
            other = expected_metric(probs, pred, metric)
            # pruned rows are empty for the solvers (score 0) but may be non-empty for threshold/argmax
            solved = probs.flatten(2).amax(2) > 0.5
            assert (exact[solved] >= other[solved] - 1e-9).all(), name


@pytest.mark.parametrize(
    ("p", "metric", "tau"),
    [
        # Dice s=0: tau=2: 3.4/5.25=0.648, tau=3: 4.3/6.25=0.688, tau=4: 4.5/7.25=0.621 -> 3 (takes p=0.45)
        ([0.9, 0.8, 0.45, 0.1], "dice", 3),
        # IoU s=0: S/(mu-S+tau): 0.383, 0.667, 0.694, 0.5625 -> 3
        ([0.9, 0.8, 0.45, 0.1], "iou", 3),
        # Dice: 2*0.9/3.3=0.545, 2*1.1/4.3=0.512 -> 1
        ([0.9, 0.2, 0.1, 0.1], "dice", 1),
        # IoU: 0.9/(1.3-0.9+1)=0.643, 1.1/(0.2+2)=0.5 -> 1
        ([0.9, 0.2, 0.1, 0.1], "iou", 1),
        # all zero: empty
        ([0.0, 0.0, 0.0], "dice", 0),
    ],
)
def test_rma_hand_computed(p, metric, tau):
    probs = torch.tensor(p).view(1, 1, -1)
    mask = rs(probs, metric, output_mode="multilabel", pruning_prob=0.0)
    assert int(mask.sum()) == tau
    assert mask[0, 0, :tau].all()


def rma_reference_tau(p: torch.Tensor, metric: str, s: float) -> int:
    """0.0.8's formulas on a sorted row, tau = 0..d, ties to the smaller tau (float64)."""
    vals = p.flatten().double().sort(descending=True).values
    total = torch.cat([torch.zeros(1, dtype=torch.float64), vals.cumsum(0)])
    mu = vals.sum()
    tau = torch.arange(vals.numel() + 1, dtype=torch.float64)
    if metric == "dice":
        score = 2 * total / (mu + tau + 1 + s) + s / (mu + tau + s)
        if s == 0:
            score[0] = 0.0
    else:
        score = (total + s) / (mu - total + tau + s)
    return int(score.argmax())


@pytest.mark.parametrize("metric", ["dice", "iou"])
@pytest.mark.parametrize("smooth", [0.0, 1.0, 1e8])
def test_rma_matches_sorted_formula(metric, smooth):
    gen = torch.Generator().manual_seed(2)
    batches = [random_probs(gen, (6, 1, 257), k).float() for k in range(3)]
    batches.append(torch.rand(2, 1, 4000, generator=gen) ** 3)
    for probs in batches:
        masks = rs(probs, metric, smooth=smooth, output_mode="multilabel", pruning_prob=0.0)
        _check_rows(probs, masks, metric, smooth)


def _check_rows(probs, masks, metric, smooth):
    for row, mask in zip(probs, masks):
        assert int(mask.sum()) == rma_reference_tau(row, metric, smooth)
        if mask.any() and (~mask).any():
            assert row[mask].min() >= row[~mask].max()


def test_multiclass_overlap_resolution_by_hand():
    # Pixel 0 is selected by classes 0 and 1 (p = 0.6 / 0.55 in a 3-class tensor that need not sum to 1).
    probs = torch.tensor([[[0.6, 0.9, 0.0], [0.55, 0.0, 0.8], [0.0, 0.05, 0.15]]])  # (1, 3, 3)
    masks = rs(probs, "dice", output_mode="multilabel", pruning_prob=0.5)
    assert masks[0, :, 0].tolist() == [True, True, False]
    labels = rs(probs, "dice", output_mode="multiclass")
    # uniquely owned: class 0 -> {1} (m=0.9, tau=1, mu=1.5); class 1 -> {2} (m=0.8, tau=1, mu=1.35)
    # Dice gain 2(m+p)/(tau+mu+2) - 2m/(tau+mu+1): class 0: 3.0/4.5 - 1.8/3.5 = 0.1524;
    # class 1: 2.7/4.35 - 1.6/3.35 = 0.1431 -> class 0
    assert labels.tolist() == [[0, 0, 1]]
    # an unassigned pixel: none of the classes selects pixel 2 of class 2; with the void policy it is void
    probs2 = torch.tensor([[[0.9, 0.2], [0.1, 0.3], [0.0, 0.5]]])
    assert rs(probs2, "dice", unassigned_policy="void", void_index=-1).tolist() == [[0, -1]]
    # max_score: gain among active classes only (class 0 is the only active one)
    assert rs(probs2, "dice").tolist() == [[0, 0]]


def test_exact_multiclass_matches_its_own_expected_gains():
    gen = torch.Generator().manual_seed(4)
    probs = torch.randn(2, 3, 6, 6, generator=gen).mul(1.5).softmax(1)
    for metric in ("dice", "iou"):
        labels = rs(probs, metric, output_mode="multiclass", solver="exact")
        assert labels.shape == (2, 6, 6) and labels.dtype == torch.int64
        masks = rs(probs, metric, output_mode="multilabel", solver="exact")
        count = masks.sum(1)
        single = count == 1
        assert torch.equal(labels[single], masks.to(torch.uint8).argmax(1)[single])
        # every multiply-selected pixel goes to a class that selected it
        for b, i, j in (count >= 2).nonzero().tolist():
            assert masks[b, labels[b, i, j], i, j]


# ---------------------------------------------------------------------------------------- contracts


@pytest.mark.parametrize("solver", ["RMA", "exact"])
@pytest.mark.parametrize("metric", ["dice", "iou"])
def test_shapes_dtypes_devices_and_no_mutation(solver, metric):
    gen = torch.Generator().manual_seed(1)
    for shape in [(2, 3, 17), (2, 3, 5, 6), (1, 2, 3, 4, 5)]:
        probs = torch.randn(shape, generator=gen).softmax(1)
        before = probs.clone()
        ml = rs(probs, metric, output_mode="multilabel", solver=solver)
        mc = rs(probs, metric, output_mode="multiclass", solver=solver)
        assert ml.dtype == torch.bool and ml.shape == probs.shape and not ml.requires_grad
        assert mc.dtype == torch.int64 and mc.shape == probs.shape[:1] + probs.shape[2:]
        assert torch.equal(probs, before)
    empty = rs(torch.zeros(0, 3, 4, 4), metric, output_mode="multiclass", solver=solver)
    assert empty.shape == (0, 4, 4) and empty.dtype == torch.int64
    assert rs(torch.zeros(0, 3, 4), metric, output_mode="multilabel", solver=solver).shape == (0, 3, 4)


def test_half_precision_and_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(9)
    probs = torch.randn(2, 4, 16, 16, generator=gen).softmax(1)
    ref = rs(probs, output_mode="multilabel")
    for dtype in (torch.float16, torch.bfloat16):
        out = rs(probs.to(dtype), output_mode="multilabel")
        assert out.shape == ref.shape and out.dtype == torch.bool
        assert torch.equal(out, rs(probs.to(dtype).float(), output_mode="multilabel"))
    transposed = probs.transpose(2, 3)
    assert torch.equal(
        rs(transposed, output_mode="multilabel"), rs(transposed.contiguous(), output_mode="multilabel")
    )
    grad = probs.clone().requires_grad_(True)
    assert not rs(grad).requires_grad


def test_chunking_gives_the_same_result():
    gen = torch.Generator().manual_seed(6)
    probs = torch.randn(3, 5, 12, 12, generator=gen).softmax(1)
    for solver in ("RMA", "exact"):
        for mode in ("multilabel", "multiclass"):
            ref = rs(probs, output_mode=mode, solver=solver)
            with chunk_bytes(1):  # one row (or pixel) per chunk
                assert torch.equal(rs(probs, output_mode=mode, solver=solver), ref)
    with chunk_bytes(1):
        ref = expected_metric(probs, probs > 0.3)
    assert torch.allclose(expected_metric(probs, probs > 0.3), ref, rtol=0, atol=1e-12)


def test_pruning_prob_boundary():
    probs = torch.tensor([[[0.5, 0.2, 0.1]], [[0.51, 0.2, 0.1]]])
    out = rs(probs, output_mode="multilabel")
    assert not out[0].any() and out[1].any()  # max <= pruning_prob is skipped
    assert rs(probs, output_mode="multilabel", pruning_prob=0).all(1).any()


def test_public_api_surface():
    for name in (
        "RankSEG",
        "functional",
        "distribution",
        "RefinedNormalPB",
        "RefinedNormal",
        "rankdice_ba",
        "rankseg_rma",
        "expected_metric",
        "__version__",
    ):
        assert name in rankseg.__all__ and hasattr(rankseg, name)
    assert isinstance(RankSEG().predict(torch.rand(1, 2, 3)), torch.Tensor)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 1, width=32), min_size=2, max_size=30),
    st.sampled_from(["dice", "iou"]),
    st.sampled_from(["RMA", "exact"]),
    st.randoms(use_true_random=False),
)
def test_properties(values, metric, solver, rnd):
    p = torch.tensor(values, dtype=torch.float32).view(1, 1, -1)
    mask = rs(p, metric, output_mode="multilabel", solver=solver, pruning_prob=0)
    # upper set: everything selected is at least as probable as everything left out
    if mask.any() and (~mask).any():
        assert p[mask].min() >= p[~mask].max()
    # permutation invariance (the selected probabilities, hence the count, do not depend on order)
    perm = list(range(p.shape[-1]))
    rnd.shuffle(perm)
    mask2 = rs(p[..., perm], metric, output_mode="multilabel", solver=solver, pruning_prob=0)
    assert torch.equal(mask2, mask[..., perm]) or sorted(p[mask2].tolist()) == sorted(p[mask].tolist())
    # float32 computation agrees with float64 on the same values
    mask64 = rs(p.double(), metric, output_mode="multilabel", solver=solver, pruning_prob=0)
    assert torch.equal(mask64, mask)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
@pytest.mark.parametrize("metric", ["dice", "iou"])
def test_exact_small_object_beside_a_full_class_is_solved_as_alone(metric, smooth):
    """A class of mass ~53 solved beside a class of probability ~1 everywhere: both fall to the sorted solver,
    whose batch takes its node count from the widest row, so the small one gets nodes far past its range (t in the
    thousands). Its mask must be the one it gets alone and a local optimum of the exact expected score (it was
    68 pixels instead of 89 for Dice when s e^t overflowed to 0 * inf there)."""
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    blob = 0.56 * torch.exp(-(((yy - 20) ** 2 + (xx - 30) ** 2) / 30.0))
    probs = torch.stack([0.996 + 0.004 * torch.rand(64, 64, generator=gen), blob]).unsqueeze(0).float()
    case = dict(metric=metric, smooth=smooth, solver="exact", output_mode="multilabel")
    both = rs(probs, **case)[0, 1]
    alone = rs(probs[:, 1:], **case)[0, 0]
    assert torch.equal(both, alone)
    # no top-k set with k near the chosen size scores higher (expected_metric: exact, a separate computation)
    order = blob.flatten().argsort(descending=True)
    tau = int(alone.sum())
    p = probs[:, 1:].double()

    def score(k: int) -> float:
        mask = torch.zeros(64 * 64, dtype=torch.bool)
        mask[order[:k]] = True
        return float(expected_metric(p, mask.view(1, 1, 64, 64), metric=metric, smooth=smooth))

    best = score(tau)
    assert all(score(k) <= best + 1e-12 for k in range(max(tau - 6, 0), tau + 7) if k != tau)
