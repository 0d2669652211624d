"""Refined normal approximation: formulas against SciPy's normal law, inverses, and the BA truncation rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from rankseg.distribution import RefinedNormal, RefinedNormalPB


def ref_cdf(x: np.ndarray, g: float) -> np.ndarray:
    """Phi(x) + g (1 - x^2) phi(x) / 6 clipped to [0, 1], from SciPy's normal law."""
    return np.clip(stats.norm.cdf(x) + g * (1 - x**2) * stats.norm.pdf(x) / 6, 0.0, 1.0)


def ref_ppf(q: float, g: float) -> float:
    return optimize.brentq(lambda x: ref_cdf(np.array(x), g) - q, -40, 40, xtol=1e-14, rtol=1e-15)


def poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """Exact pmf of the number of successes, by the O(d^2) recursion."""
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for pj in p:
        pmf[1:] = pmf[1:] * (1 - pj) + pmf[:-1] * pj
        pmf[0] *= 1 - pj
    return pmf


def test_zero_skew_is_the_standard_normal():
    x = np.linspace(-7, 7, 301)
    rn = RefinedNormal(0.0)
    np.testing.assert_allclose(rn.cdf(x).numpy(), stats.norm.cdf(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rn.pdf(x).numpy(), stats.norm.pdf(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        rn.ppf([0.025, 0.5, 0.975]).numpy(), stats.norm.ppf([0.025, 0.5, 0.975]), atol=1e-12
    )


@given(
    x=st.floats(-9, 9, allow_nan=False),
    g=st.floats(-3, 3, allow_nan=False),
)
@settings(max_examples=200, deadline=None)
def test_cdf_matches_formula(x, g):
    got = RefinedNormal(g).cdf(torch.tensor([x], dtype=torch.float64)).item()
    assert got == pytest.approx(float(ref_cdf(np.array(x), g)), abs=1e-13)


@pytest.mark.parametrize("g", [-1.5, -0.3, 0.0, 0.4, 2.0])
def test_pdf_is_the_derivative_of_the_cdf(g):
    x = torch.linspace(-5, 5, 201, dtype=torch.float64)
    h = 1e-6
    rn = RefinedNormal(g)
    numeric = (rn.cdf(x + h) - rn.cdf(x - h)) / (2 * h)
    raw = stats.norm.cdf(x.numpy()) + g * (1 - x.numpy() ** 2) * stats.norm.pdf(x.numpy()) / 6
    inside = torch.from_numpy((raw > 1e-5) & (raw < 1 - 1e-5))  # away from the clipping kinks
    torch.testing.assert_close(rn.pdf(x)[inside], numeric[inside], atol=1e-7, rtol=1e-6)


@given(
    x=st.floats(-4, 4, allow_nan=False),
    g=st.floats(-0.5, 0.5, allow_nan=False),
)
@settings(max_examples=200, deadline=None)
def test_ppf_inverts_cdf(x, g):
    # The inverse is unique only where the clipped CDF is increasing up to x and not yet 0 or 1.
    left = ref_cdf(np.linspace(-12, x, 4001), g)
    assume(np.all(np.diff(left) >= 0) and 1e-12 < left[-1] < 1 - 1e-12)
    rn = RefinedNormal(g)
    q = rn.cdf(torch.tensor(x, dtype=torch.float64))
    assert rn.ppf(q).item() == pytest.approx(x, abs=1e-9)


@pytest.mark.parametrize("g", [-2.0, -0.7, 0.0, 0.3, 1.2])
@pytest.mark.parametrize("q", [5e-5, 0.01, 0.5, 0.9, 1 - 5e-5])
def test_ppf_matches_root_finding(g, q):
    assert RefinedNormal(g).ppf(q).item() == pytest.approx(ref_ppf(q, g), abs=1e-10)


def test_ppf_limits_and_interval_convention():
    rn = RefinedNormal(0.2)
    out = rn.ppf([0.0, 1.0])
    assert out[0].item() == -math.inf and out[1].item() == math.inf
    lo, hi = rn.interval(0.9)
    assert lo.item() == pytest.approx(ref_ppf(0.05, 0.2), abs=1e-10)
    assert hi.item() == pytest.approx(ref_ppf(0.95, 0.2), abs=1e-10)


def test_batched_skew_broadcasts():
    rn = RefinedNormal(torch.tensor([[-1.0], [0.0], [1.0]], dtype=torch.float64))
    out = rn.cdf(torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64))
    assert out.shape == (3, 3)
    for i, g in enumerate([-1.0, 0.0, 1.0]):
        np.testing.assert_allclose(out[i].numpy(), ref_cdf(np.array([-1.0, 0.0, 2.0]), g), atol=1e-14)


def make_pb(p: np.ndarray) -> RefinedNormalPB:
    mu = p.sum()
    var = (p * (1 - p)).sum()
    m3 = (p * (1 - p) * (1 - 2 * p)).sum()
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return RefinedNormalPB(len(p), t(mu), t(math.sqrt(var)), t(m3 / var**1.5))


def test_pb_cdf_pdf_icdf_are_location_scale():
    loc = torch.tensor([3.0, 40.0, 10.0], dtype=torch.float64)
    scale = torch.tensor([1.5, 5.0, 2.0], dtype=torch.float64)
    skew = torch.tensor([0.3, -0.1, 0.0], dtype=torch.float64)
    dist = RefinedNormalPB(60, loc, scale, skew)
    assert dist.batch_shape == (3,)
    x = torch.tensor([4.0, 33.0, 10.0], dtype=torch.float64)
    z = ((x - loc) / scale).numpy()
    for i in range(3):
        assert dist.cdf(x)[i].item() == pytest.approx(float(ref_cdf(z[i], skew[i].item())), abs=1e-14)
    h = 1e-5
    torch.testing.assert_close(
        dist.pdf(x), (dist.cdf(x + h) - dist.cdf(x - h)) / (2 * h), atol=1e-8, rtol=1e-6
    )
    torch.testing.assert_close(dist.icdf(dist.cdf(x)), x, atol=1e-8, rtol=0)


def test_pb_pmf_is_continuity_corrected_and_close_to_exact():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, size=300)
    dist = make_pb(p)
    k = torch.arange(-3, 305, dtype=torch.float64)
    pmf = dist.pmf(k)
    assert (pmf >= 0).all()
    assert (pmf[(k < 0) | (k > 300)] == 0).all()
    assert pmf.sum().item() == pytest.approx(1.0, abs=1e-9)
    # cdf(k + 1/2) - cdf(k - 1/2), computed independently.
    z = lambda v: (v - p.sum()) / math.sqrt((p * (1 - p)).sum())  # noqa: E731
    g = dist.skew.item()
    for kk in [120, 150, 160]:
        expect = ref_cdf(np.array(z(kk + 0.5)), g) - ref_cdf(np.array(z(kk - 0.5)), g)
        assert pmf[kk + 3].item() == pytest.approx(float(expect), abs=1e-14)
    exact = poisson_binomial_pmf(p)
    assert np.abs(pmf[3:304].numpy() - exact).max() < 2e-4
    assert dist.log_prob(torch.tensor(150.0, dtype=torch.float64)).item() == pytest.approx(
        math.log(pmf[153].item())
    )


def test_pb_zero_scale_is_a_point_mass():
    dist = RefinedNormalPB(10, torch.tensor(4.0), torch.tensor(0.0), torch.tensor(0.0))
    k = torch.arange(11.0)
    pmf = dist.pmf(k)
    assert pmf[4].item() == 1.0 and pmf.sum().item() == 1.0
    assert dist.icdf(torch.tensor([0.0, 0.3, 1.0])).tolist() == [4.0, 4.0, 4.0]
    lo, hi = dist.interval(1e-4)
    assert (lo.item(), hi.item()) == (3, 4)
    assert dist.pdf(torch.tensor(4.0)).item() == 0.0


@given(
    seed=st.integers(0, 2**31 - 1),
    d=st.integers(2, 400),
    eps=st.sampled_from([1e-4, 1e-3, 0.05]),
)
@settings(max_examples=60, deadline=None)
def test_interval_matches_the_ba_rule(seed, d, eps):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, size=d) ** rng.uniform(0.2, 4)
    var = (p * (1 - p)).sum()
    if var < 1e-6:
        return
    dist = make_pb(p)
    lo, hi = dist.interval(eps)
    assert lo.dtype == torch.int32 and hi.dtype == torch.int32
    g = dist.skew.item()
    # Quantiles are unique only where the clipped CDF is monotone (not so for |skew| >~ 1.5).
    assume(np.all(np.diff(ref_cdf(np.linspace(-12, 12, 4801), g)) >= 0))
    q_lo = p.sum() + math.sqrt(var) * ref_ppf(eps / 2, g)
    q_hi = p.sum() + math.sqrt(var) * ref_ppf(1 - eps / 2, g)
    assert lo.item() == max(math.floor(q_lo) - 1, 0)
    assert hi.item() == min(math.ceil(q_hi), d)


def test_interval_is_batched_and_float32_works():
    loc = torch.tensor([[5.0, 50.0], [0.2, 99.5]])
    scale = torch.tensor([[2.0, 7.0], [0.4, 0.5]])
    dist = RefinedNormalPB(100, loc, scale, torch.zeros(2, 2))
    lo, hi = dist.interval(1e-4)
    assert lo.shape == hi.shape == (2, 2)
    assert (lo >= 0).all() and (hi <= 100).all() and (lo <= hi).all()
    assert hi[1, 1].item() == 100 and lo[1, 0].item() == 0
    z = stats.norm.ppf(1 - 5e-5)
    assert lo[0, 1].item() == math.floor(50 - 7 * z) - 1
    assert hi[0, 1].item() == math.ceil(50 + 7 * z)
