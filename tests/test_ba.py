"""BA / TRNA / BA+TRNA against a per-row, per-tau NumPy reference written from the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from rankseg import _ba
from rankseg._ba import _ba_tau, rankdice_ba

# ----------------------------------------------------------------------------------------------------------
# Reference: loops over tau and over pixels, SciPy for Phi/phi and root finding.


def rn_cdf(z, g: float):
    """Phi(z) + g (1 - z^2) phi(z) / 6 clipped to [0, 1]; z = +-inf gives 1/0 (works on arrays)."""
    z = np.asarray(z, dtype=np.float64)
    finite = np.where(np.isfinite(z), z, 0.0)
    corr = np.where(np.isfinite(z), g * (1 - finite**2) * stats.norm.pdf(finite) / 6, 0.0)
    return np.clip(stats.norm.cdf(z) + corr, 0.0, 1.0)


def rn_pmf(l_values: range, mu: float, var: float, m3: float) -> np.ndarray:
    """Renormalised continuity-corrected pmf on the given support; point mass when var <= 1e-10."""
    ks = np.arange(l_values[0], l_values[-1] + 1, dtype=np.float64)
    if var <= 1e-10:
        pmf = ((ks - 0.5 < mu) & (mu <= ks + 0.5)).astype(np.float64)
    else:
        sd, g = math.sqrt(var), m3 / var**1.5
        pmf = np.maximum(rn_cdf((ks + 0.5 - mu) / sd, g) - rn_cdf((ks - 0.5 - mu) / sd, g), 0.0)
    if pmf.sum() <= 0:
        nearest = min(max(math.ceil(mu - 0.5), l_values[0]), l_values[-1])
        pmf = (ks == nearest).astype(np.float64)
    return pmf / pmf.sum()


def ref_scores(p: np.ndarray, smooth: float, eps: float, solver: str) -> tuple[np.ndarray, int]:
    """Scores pi(tau) for tau = 0..tau_up of one row, and tau_up."""
    p = np.sort(np.asarray(p, dtype=np.float64))[::-1]
    d = len(p)
    s = smooth
    mu = p.sum()
    var = (p * (1 - p)).sum()
    m3 = (p * (1 - p) * (1 - 2 * p)).sum()
    cum = np.cumsum(p)
    tau_up = d
    for t in range(1, d + 1):
        nxt = p[t] if t < d else 0.0
        if cum[t - 1] >= (t + s + d) * nxt:
            tau_up = t
            break
    if var <= 1e-10:
        low, up = max(math.floor(mu) - 1, 0), min(math.ceil(mu), d)
    else:
        g = m3 / var**1.5
        ppf = lambda q: optimize.brentq(lambda x: float(rn_cdf(x, g)) - q, -40, 40, xtol=1e-14)  # noqa: E731
        low = max(math.floor(mu + math.sqrt(var) * ppf(eps / 2)) - 1, 0)
        up = min(math.ceil(mu + math.sqrt(var) * ppf(1 - eps / 2)), d)
    support = range(low, up + 1)
    ls = np.arange(low, up + 1, dtype=np.float64)
    pmf = rn_pmf(support, mu, var, m3)
    smooth_term = lambda t: s * (pmf / (ls + t + s)).sum() if s > 0 else 0.0  # noqa: E731
    scores = np.empty(tau_up + 1)
    scores[0] = smooth_term(0)
    w = np.zeros_like(ls)
    for t in range(1, tau_up + 1):
        if solver == "BA":
            first = 2 * cum[t - 1] * (pmf / (ls + t + s + 1)).sum()
        else:
            pj = p[t - 1]
            w += pj * rn_pmf(
                support, max(mu - pj, 0), max(var - pj * (1 - pj), 0), m3 - pj * (1 - pj) * (1 - 2 * pj)
            )
            first = (2 * w / (ls + t + s + 1)).sum()
        scores[t] = first + smooth_term(t)
    return scores, tau_up


def ref_solver(p: np.ndarray, smooth: float, eps: float, solver: str) -> str:
    if solver == "BA+TRNA":
        sd = math.sqrt((np.asarray(p, np.float64) * (1 - np.asarray(p, np.float64))).sum())
        return "BA" if sd > 5 else "TRNA"
    return solver


def assert_optimal(p: np.ndarray, tau: int, smooth: float, eps: float, solver: str) -> None:
    """tau attains the reference maximum (to rounding) and no smaller tau beats it clearly."""
    scores, tau_up = ref_scores(p, smooth, eps, ref_solver(p, smooth, eps, solver))
    assert 0 <= tau <= tau_up
    best = scores.max()
    tol = 1e-10 * max(abs(best), 1e-300)
    assert scores[tau] >= best - tol, (tau, int(scores.argmax()), scores[tau], best)
    assert not (scores[:tau] > scores[tau] + tol).any()


def rows_tensor(*rows: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(np.stack([np.sort(r)[::-1] for r in rows]).copy(), dtype=dtype)


# ----------------------------------------------------------------------------------------------------------
# Row-level solver against the reference.

row_strategy = st.integers(1, 40).flatmap(
    lambda d: st.lists(st.floats(0, 1, allow_nan=False, width=32), min_size=d, max_size=d)
)


@given(
    row=row_strategy,
    smooth=st.sampled_from([0.0, 0.3, 1.0, 4.0]),
    solver=st.sampled_from(["BA", "TRNA", "BA+TRNA"]),
)
@settings(max_examples=100, deadline=None)
def test_ba_tau_matches_reference_on_small_rows(row, smooth, solver):
    p = np.array(row)
    tau = _ba_tau(rows_tensor(p), smooth, 1e-4, solver)
    assert tau.dtype == torch.int64 and tau.shape == (1,)
    assert_optimal(p, int(tau[0]), smooth, 1e-4, solver)


@pytest.mark.parametrize("solver", ["BA", "TRNA"])
@pytest.mark.parametrize("smooth", [0.0, 0.5, 2.0])
def test_ba_tau_matches_reference_on_moderate_rows(solver, smooth):
    rng = np.random.default_rng(1)
    rows = [
        rng.uniform(0, 1, 150) ** 3,  # skewed, sigma ~ 4
        np.r_[rng.uniform(0.6, 1.0, 30), rng.uniform(0.0, 0.3, 170)],  # a clear block
        rng.beta(0.3, 2.0, 250),
        np.r_[np.ones(10), np.zeros(40), [0.7]],  # leave-one-out variance 0 at the 0.7 pixel
    ]
    for r in rows:
        # Rows of one call share d, so each row (its own d) is solved alone.
        tau = _ba_tau(rows_tensor(r), smooth, 1e-4, solver)
        assert_optimal(r, int(tau[0]), smooth, 1e-4, solver)


def test_ba_tau_batched_rows_are_independent():
    rng = np.random.default_rng(2)
    rows = [rng.uniform(0, 1, 60) ** k for k in (0.5, 1, 2, 4, 8)] + [np.zeros(60), np.ones(60)]
    batch = _ba_tau(rows_tensor(*rows), 0.0, 1e-4, "BA+TRNA")
    single = torch.cat([_ba_tau(rows_tensor(r), 0.0, 1e-4, "BA+TRNA") for r in rows])
    assert torch.equal(batch, single)
    for r, t in zip(rows, batch.tolist()):
        assert_optimal(r, t, 0.0, 1e-4, "BA+TRNA")


def test_block_search_equals_a_full_scan_on_a_large_row():
    # d = 20000 forces the block bounds and the reciprocal-moment series (not used on small rows).
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 20000, generator=g, dtype=torch.float64)
    # A soft map, a softmax channel, and a sparse map (mean ~ 40 << d: series and direct sums both used).
    rows = torch.stack(
        [torch.sigmoid(2 * logits[0] - 1), torch.softmax(logits[1:], 0)[0], torch.sigmoid(2 * logits[2] - 9)]
    )
    p_sorted = rows.sort(1, descending=True).values
    for smooth in (0.0, 0.7, 3.0):
        tau = _ba_tau(p_sorted, smooth, 1e-4, "BA")
        for i in range(3):
            p = p_sorted[i].numpy()
            # Full scan: every tau, direct sums over the support (vectorised over tau, in float64).
            scores, tau_up = ref_scores_vectorised(p, smooth, 1e-4)
            t = int(tau[i])
            assert t <= tau_up
            assert scores[t] >= scores.max() - 1e-10 * abs(scores.max())


def ref_scores_vectorised(p: np.ndarray, smooth: float, eps: float) -> tuple[np.ndarray, int]:
    """BA scores for all tau of a large row (same formulas as ref_scores, tau vectorised for speed)."""
    d, s = len(p), smooth
    mu, var = p.sum(), (p * (1 - p)).sum()
    m3 = (p * (1 - p) * (1 - 2 * p)).sum()
    cum = np.cumsum(p)
    nxt = np.r_[p[1:], 0.0]
    tau_up = int(np.argmax(cum >= (np.arange(1, d + 1) + s + d) * nxt)) + 1
    g = m3 / var**1.5
    ppf = lambda q: optimize.brentq(lambda x: float(rn_cdf(x, g)) - q, -40, 40, xtol=1e-14)  # noqa: E731
    low = max(math.floor(mu + math.sqrt(var) * ppf(eps / 2)) - 1, 0)
    up = min(math.ceil(mu + math.sqrt(var) * ppf(1 - eps / 2)), d)
    ls = np.arange(low, up + 1, dtype=np.float64)
    pmf = rn_pmf(range(low, up + 1), mu, var, m3)
    t = np.arange(tau_up + 1, dtype=np.float64)[:, None]
    c1 = (pmf / (ls + t + s + 1)).sum(1)
    c2 = (s * pmf / (ls + t + s)).sum(1) if s > 0 else np.zeros(tau_up + 1)
    s_tau = np.r_[0.0, cum[:tau_up]]
    return 2 * s_tau * c1 + c2, tau_up


# ----------------------------------------------------------------------------------------------------------
# Public function: contract.


def test_clear_block_gives_the_labels():
    labels = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    labels[0, 0, 3:7, 2:10] = True  # 32 pixels, as in the demo fixture
    probs = torch.where(labels, 0.9, 0.05).to(torch.float32)
    for solver in ("BA", "TRNA", "BA+TRNA"):
        assert torch.equal(rankdice_ba(probs, solver), labels)


def test_hard_labels_are_reproduced():
    # sigma = 0: the point-mass path, no NaN.
    g = torch.Generator().manual_seed(3)
    labels = torch.rand(2, 3, 9, 9, generator=g) > 0.6
    for solver in ("BA", "TRNA", "BA+TRNA"):
        assert torch.equal(rankdice_ba(labels.double(), solver), labels)


@pytest.mark.parametrize("bad", ["foo", "exact", "rma", "Ba-trna"])
def test_unknown_solver_message(bad):
    with pytest.raises(ValueError, match=rf"^Unknown solver: {bad.upper()}$"):
        rankdice_ba(torch.rand(1, 1, 4, 4), solver=bad)


def test_solver_name_is_case_insensitive():
    probs = torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(rankdice_ba(probs, "ba+trna"), rankdice_ba(probs, "BA+TRNA"))
    assert torch.equal(rankdice_ba(probs, "Trna"), rankdice_ba(probs, "TRNA"))


def test_eps_is_validated():
    with pytest.raises(ValueError, match=r"eps must be in the range \(0, 1\)"):
        rankdice_ba(torch.rand(1, 1, 4), eps=0.0)


def test_pruning_at_exactly_pruning_prob():
    probs = torch.full((1, 2, 5, 5), 0.1)
    probs[0, 0, 0, 0] = 0.5  # max == pruning_prob: pruned
    probs[0, 1, :2, :] = 0.9
    probs[0, 1, 0, 0] = 0.5
    out = rankdice_ba(probs, pruning_prob=0.5)
    assert not out[0, 0].any()
    assert out[0, 1].any()
    assert rankdice_ba(probs, pruning_prob=0.4)[0, 0].any()  # 0.5 > 0.4: solved
    assert not rankdice_ba(probs, pruning_prob=1.0).any()


@pytest.mark.parametrize("spatial", [(50,), (6, 7), (3, 4, 5)])
def test_any_number_of_spatial_dims(spatial):
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(3 * torch.randn(2, 3, *spatial, generator=g), dim=1)
    out = rankdice_ba(probs, "BA", pruning_prob=0.0)
    assert out.shape == probs.shape and out.dtype == torch.bool
    flat = probs.reshape(6, -1).double()
    taus = _ba_tau(flat.sort(1, descending=True).values, 0.0, 1e-4, "BA")
    assert out.reshape(6, -1).sum(1).tolist() == taus.tolist()


def test_half_precision_is_promoted():
    g = torch.Generator().manual_seed(6)
    probs = torch.softmax(2 * torch.randn(1, 3, 8, 8, generator=g), dim=1)
    for dt in (torch.float16, torch.bfloat16):
        low = probs.to(dt)
        out = rankdice_ba(low)
        assert out.dtype == torch.bool and out.shape == low.shape
        assert torch.equal(out, rankdice_ba(low.float()))


def test_empty_batch():
    out = rankdice_ba(torch.rand(0, 3, 4, 4), "TRNA")
    assert out.shape == (0, 3, 4, 4) and out.dtype == torch.bool


def test_input_untouched_no_grad_and_mask_is_an_upper_set():
    g = torch.Generator().manual_seed(7)
    probs = torch.softmax(torch.randn(2, 4, 10, 10, generator=g), dim=1).requires_grad_(True)
    before = probs.detach().clone()
    out = rankdice_ba(probs, "BA+TRNA", pruning_prob=0.0)
    assert torch.equal(probs.detach(), before)
    assert not out.requires_grad
    flat_p, flat_m = probs.detach().reshape(8, -1), out.reshape(8, -1)
    for p, m in zip(flat_p, flat_m):
        if m.any() and (~m).any():
            assert p[m].min() >= p[~m].max()


def test_ties_select_exactly_tau_pixels():
    probs = torch.full((1, 1, 40), 0.3)
    probs[0, 0, :7] = 0.8
    out = rankdice_ba(probs, "TRNA")
    tau = int(_ba_tau(probs.reshape(1, -1).sort(1, descending=True).values, 0.0, 1e-4, "TRNA")[0])
    assert int(out.sum()) == tau
    assert out[0, 0, :7].all()
    # Tied pixels are taken in index order.
    chosen = out[0, 0].nonzero().squeeze(1)
    assert torch.equal(chosen, torch.arange(tau))


def test_tiny_memory_budget_gives_the_same_masks(monkeypatch):
    g = torch.Generator().manual_seed(8)
    probs = torch.softmax(2 * torch.randn(2, 3, 30, 30, generator=g), dim=1)
    expect = {s: rankdice_ba(probs, s, smooth=0.5) for s in ("BA", "TRNA")}
    monkeypatch.setattr(_ba, "_MIN_BUDGET_BYTES", 1)
    for s, mask in expect.items():
        assert torch.equal(rankdice_ba(probs, s, smooth=0.5), mask)


def test_huge_smooth_is_finite_and_optimal():
    rng = np.random.default_rng(9)
    p = rng.uniform(0, 1, 30)
    for smooth in (1e3, 1e8):
        tau = int(_ba_tau(rows_tensor(p), smooth, 1e-4, "BA")[0])
        scores, _ = ref_scores(p, smooth, 1e-4, "BA")
        scaled = smooth * (scores - 1.0)  # the reference's own rounding is the tolerance here
        assert scaled[tau] >= scaled.max() - 1e-6 * abs(scaled.max())


def test_float32_rows_agree_with_float64_rows():
    g = torch.Generator().manual_seed(10)
    p = torch.rand(4, 300, generator=g, dtype=torch.float64) ** 2
    p_sorted = p.sort(1, descending=True).values
    assert torch.equal(
        _ba_tau(p_sorted.float().double(), 0.0, 1e-4, "BA"), _ba_tau(p_sorted.float(), 0.0, 1e-4, "BA")
    )


def test_batched_quantile_rounds_equal_the_bisection_loop():
    """The device path's support quantiles (8 bisection steps per round, rankseg.distribution._bisection_levels)
    give the step-by-step loop's bits, also where the refined normal is not monotone (large skew)."""
    from rankseg import _common
    from rankseg import distribution as dist

    g = torch.Generator().manual_seed(0)
    skew = torch.cat([torch.randn(300, generator=g, dtype=torch.float64) * 0.3,
                      torch.randn(100, generator=g, dtype=torch.float64) * 5,
                      torch.tensor([0.0, 1e-9, 50.0, -50.0, 3.0, -3.0], dtype=torch.float64)])  # fmt: skip
    q = torch.tensor([5e-5, 1 - 5e-5, 0.3, 1e-12, 1 - 1e-6, 0.5, 0.0, 1.0], dtype=torch.float64).view(-1, 1)
    loop = dist.refined_ppf(q, skew.view(1, -1))
    with _common.numpy_kernels(False):
        rounds = dist.refined_ppf(q, skew.view(1, -1))
    assert torch.equal(loop, rounds)
