"""rankseg.distribution against formulas evaluated by hand (math module), brute-force root finding and SciPy.

tests/test_distribution_parity.py replays recorded 0.0.8 outcomes; this file derives the numbers independently.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from rankseg.distribution import (
    RefinedNormal,
    RefinedNormalPB,
    _brentq_lockstep,
    _central_support,
    _continuous_cdf,
    _ndtr,
    refined_cdf,
    refined_pdf,
    refined_ppf,
)


# ------------------------------------------------------------------------------------ references (math only)
def big_phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def small_phi(x: float) -> float:
    return math.exp(-x * x / 2.0) / math.sqrt(2.0 * math.pi)


def g_raw(x: float, skew: float) -> float:
    """Unclipped standardised refined normal CDF."""
    return big_phi(x) + skew * (1.0 - x * x) * small_phi(x) / 6.0


def g(x: float, skew: float) -> float:
    return min(max(g_raw(x, skew), 0.0), 1.0)


def quantile(q: float, skew: float, lo: float = -40.0, hi: float = 40.0) -> float:
    """Root of g(x) = q by 200 bisection steps (the clipped CDF must be monotone on [lo, hi])."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if g(mid, skew) < q else (lo, mid)
    return 0.5 * (lo + hi)


def monotone(skew: float) -> bool:
    xs = np.linspace(-12, 12, 4801)
    vals = np.array([g(x, skew) for x in xs])
    return bool(np.all(np.diff(vals) >= 0))


def t64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ------------------------------------------------------------------------------------------- RefinedNormalPB
def test_issue_example_is_continuity_corrected():
    dist = RefinedNormalPB(10, 3.0, 1.5, 0.0)
    assert dist.cdf(torch.tensor(0.0)).item() == pytest.approx(big_phi(-2.5 / 1.5), rel=1e-6)  # 0.0478, not 0.0228
    assert dist.cdf(torch.tensor(0.0)).item() == pytest.approx(0.0477903522, abs=1e-8)


def test_cdf_pdf_pmf_match_the_hand_formula():
    loc, scale, skew = t64(3.0, 40.0, 10.0), t64(1.5, 5.0, 2.0), t64(0.3, -0.1, 0.0)
    dist = RefinedNormalPB(60, loc, scale, skew)
    ks = torch.arange(-2.0, 62.0, dtype=torch.float64).expand(3, -1)  # batch (3,) + 64 points each
    cdf, pdf, pmf = dist.cdf(ks), dist.pdf(ks), dist.pmf(ks)
    assert cdf.shape == pdf.shape == pmf.shape == (3, 64) and cdf.dtype == torch.float64
    for i in range(3):
        m, s, sk = loc[i].item(), scale[i].item(), skew[i].item()
        for j, k in enumerate(ks[i].tolist()):
            x = (k + 0.5 - m) / s
            assert cdf[i, j].item() == pytest.approx(g(x, sk), abs=2e-16, rel=1e-14)
            density = max(small_phi(x) * (1 + sk * (x**3 - 3 * x) / 6) / s, 0.0)
            assert pdf[i, j].item() == pytest.approx(density, abs=1e-17, rel=1e-13)
            mass = min(max(g(x, sk) - g(x - 1 / s, sk), 0.0), 1.0)
            assert pmf[i, j].item() == pytest.approx(mass, abs=5e-16)  # both differences of numbers near 1


def test_pmf_is_nonnegative_and_sums_to_one_over_the_support():
    dist = RefinedNormalPB(200, t64(80.0), t64(6.0), t64(3.0))  # large skew: the raw CDF is not monotone
    k = torch.arange(0.0, 201.0, dtype=torch.float64)
    pmf = dist.pmf(k)
    assert (pmf >= 0).all() and (pmf <= 1).all()
    assert pmf.sum().item() == pytest.approx(dist.cdf(torch.tensor(200.0)).item() - dist.cdf(torch.tensor(-1.0)).item())


def test_dtypes_shapes_and_tensor_dim():
    dist = RefinedNormalPB(torch.tensor([12, 30]), torch.tensor([4.0, 20.0]), torch.tensor([2.0, 3.0]), 0.1)
    assert dist.batch_shape == (2,) and dist.dim.dtype == torch.int64 and dist.skew.dtype == torch.int64
    f32 = RefinedNormalPB(12, torch.tensor([4.0, 20.0]), 2.0, 0.1)
    assert f32.loc.dtype == f32.dim.dtype == torch.float32
    assert f32.cdf(torch.tensor([[1.0], [19.0]])).shape == (2, 1)  # value has more dims: params get trailing 1s
    assert f32.cdf(torch.tensor([[1.0, 2.0, 3.0]] * 2)).shape == (2, 3)
    assert f32.cdf(torch.tensor(3.0)).dtype == torch.float32
    low, up = RefinedNormalPB(torch.tensor(12.0), t64(11.0, 1.0), t64(3.0), t64(0.0)).interval(0.01)
    assert low.dtype == up.dtype == torch.int32 and up.tolist() == [12, 9]


def test_validation_messages():
    with pytest.raises(TypeError, match="^dim must contain real numbers$"):
        RefinedNormalPB([10], 3.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="^Expected parameter scale"):
        RefinedNormalPB(10, 3.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="^loc must contain only finite values$"):
        RefinedNormalPB(10, t64(math.inf), 1.0, 0.0)
    dist = RefinedNormalPB(10, 3.0, 1.5, 0.2)
    with pytest.raises(ValueError, match=r"^p must be in the range \(0, 1\)$"):
        dist.icdf(torch.tensor([0.0]))
    with pytest.raises(TypeError, match="^max_iter must be an int$"):
        dist.icdf(torch.tensor([0.5]), max_iter=2.0)
    with pytest.raises(ValueError, match="^tol must be greater than 0$"):
        dist.icdf(torch.tensor([0.5]), tol=0.0)
    with pytest.raises(ValueError, match=r"^p must be in the range \[0, 1\]$"):
        dist.interval([0.1, 1.5])
    with pytest.raises(TypeError, match="^p must contain real numbers$"):
        dist.interval("0.1")
    assert RefinedNormalPB(10, math.nan, 1.0, 0.0, validate_args=False).batch_shape == ()


@pytest.mark.parametrize("skew", [-0.6, 0.0, 0.45])
def test_icdf_brackets_the_continuity_corrected_quantile(skew):
    dist = RefinedNormalPB(100, t64(30.0), t64(4.0), t64(skew))
    p = t64(1e-5, 0.02, 0.3, 0.5, 0.77, 0.999)
    for tol, bound in ((1e-6, 1e-6), (1e-12, 1e-11)):
        got = dist.icdf(p, tol=tol)
        for q, x in zip(p.tolist(), got.tolist()):
            exact = 30.0 - 0.5 + 4.0 * quantile(q, skew)  # cdf(k) = G((k + 0.5 - loc) / scale)
            assert abs(x - exact) <= bound
    assert not dist.icdf(p).requires_grad
    one_step = dist.icdf(t64(0.5), max_iter=1)  # the first bracket [loc - 0.5 -+ 8 scale] halved once
    assert one_step.item() in (29.5 - 16.0, 29.5 + 16.0)


@given(
    loc=st.floats(0.0, 300.0),
    scale=st.floats(0.3, 30.0),
    skew=st.floats(-0.5, 0.5),
    p=st.sampled_from([1e-4, 1e-3, 0.05, 0.3, 1.0]),
)
@settings(max_examples=40, deadline=None)
def test_interval_is_the_clipped_integer_hull_of_the_central_interval(loc, scale, skew, p):
    dim = 250
    a, b = quantile(p / 2, skew), quantile(1 - p / 2, skew)
    lo_real, hi_real = scale * a + loc, scale * b + loc
    assume(min(abs(lo_real - round(lo_real)), abs(hi_real - round(hi_real))) > 1e-7)
    low, up = RefinedNormalPB(dim, t64(loc), t64(scale), t64(skew)).interval(p)
    assert low.item() == min(max(math.floor(lo_real) - 1, 0), dim)
    assert up.item() == min(max(math.ceil(hi_real), 0), dim)


def test_interval_edges_and_broadcasting():
    dist = RefinedNormalPB(50, t64(20.0, 30.0), t64(3.0), t64(0.1))
    low, up = dist.interval(0.0)  # keep everything: (-inf, inf) clipped to [0, dim]
    assert low.tolist() == [0, 0] and up.tolist() == [50, 50]
    low, up = dist.interval([[1e-3], [0.5]])  # p broadcast against the batch
    assert low.shape == up.shape == (2, 2) and (low[0] <= low[1]).all() and (up[0] >= up[1]).all()
    low_t, up_t = dist.interval(torch.tensor([[1e-3], [0.5]]))
    assert torch.equal(low, low_t) and torch.equal(up, up_t)


# ---------------------------------------------------------------------------------------------- RefinedNormal
def test_ndtr_matches_erfc():
    # Cephes' documented peak relative error is 3.4e-14 on [-13, 0]; further out exp(-x^2 / 2) loses about
    # x^2 / 2 ulps. glibc's erfc is within an ulp or two.
    x = np.concatenate([np.linspace(-13, 9, 20001), [-0.0, 0.0, 1e-300, math.inf, -math.inf]])
    np.testing.assert_allclose(_ndtr(x), [big_phi(v) for v in x], rtol=5e-14, atol=1e-300)
    far = np.linspace(-37.5, -13, 5001)
    np.testing.assert_allclose(_ndtr(far), [big_phi(v) for v in far], rtol=1e-12, atol=1e-300)
    assert _ndtr(np.array([-38.5]))[0] == 0.0  # erfc underflow: Cephes returns 0 below -37.52
    assert np.isnan(_ndtr(np.array([math.nan])))[0]


def test_cdf_follows_scipy_conventions():
    rn = RefinedNormal()
    value = rn.cdf(0.5, 0.3)
    assert type(value) is np.float64 and value == pytest.approx(g(0.5, 0.3), rel=1e-15)
    assert rn.cdf(0.5, skew=0.3) == value
    x = np.array([-3.0, -1.0, 0.2, 2.0])
    skews = np.array([[-1.0], [0.0], [0.8]])
    out = rn.cdf(x, skews, loc=1.0, scale=2.0)
    assert out.shape == (3, 4) and out.dtype == np.float64
    for i, sk in enumerate(skews[:, 0]):
        for j, xv in enumerate(x):
            assert out[i, j] == pytest.approx(g((xv - 1.0) / 2.0, sk), abs=1e-16, rel=1e-14)
    assert np.isnan(rn.cdf([0.1, 0.2], math.nan)).all()
    with pytest.warns(RuntimeWarning, match="divide by zero"):  # as SciPy: (x - loc) / scale first
        assert np.isnan(rn.cdf(0.1, 0.2, scale=0.0))
    assert rn.cdf(math.inf, 0.2) == 1.0 and rn.cdf(-math.inf, 0.2) == 0.0
    assert rn.sf(0.5, 0.3) == 1.0 - value and rn.logcdf(0.5, 0.3) == pytest.approx(math.log(value))
    assert rn.logsf(2.0, 0.3) == pytest.approx(math.log1p(-g(2.0, 0.3)))
    with pytest.raises(TypeError, match=r"^_parse_args\(\) missing 1 required positional argument: 'skew'$"):
        rn.cdf(0.5)


def test_pdf_is_the_numerical_derivative_of_the_cdf():
    rn = RefinedNormal()
    x = np.linspace(-4, 4, 41)
    for sk in (-0.5, 0.0, 0.7):
        exact = np.array([small_phi(v) * (1 + sk * (v**3 - 3 * v) / 6) for v in x])
        inside = np.array([1e-6 < g_raw(v, sk) < 1 - 1e-6 for v in x])  # away from the clipping kinks
        np.testing.assert_allclose(rn.pdf(x, sk)[inside], exact[inside], rtol=0, atol=1e-9)
        np.testing.assert_allclose(rn.logpdf(x, sk)[inside], np.log(exact[inside]), rtol=0, atol=1e-7)
    np.testing.assert_allclose(rn.pdf(x, 0.2, scale=2.0), rn.pdf(x / 2.0, 0.2) / 2.0, rtol=1e-15)


@given(q=st.floats(1e-12, 1 - 1e-12), skew=st.floats(-0.5, 0.5))
@settings(max_examples=60, deadline=None)
def test_ppf_is_the_quantile(q, skew):
    got = RefinedNormal().ppf(q, skew)
    exact = quantile(q, skew)
    # Brent's tolerance, plus the resolution of CDFs near 1 (a few ulps of 1 over the density) in the upper tail.
    assert abs(got - exact) <= 1e-14 + 4e-15 * abs(exact) + 2.5e-15 / small_phi(exact) * (q > 0.5)


def test_ppf_edges_isf_interval_median_support():
    rn = RefinedNormal()
    out = rn.ppf([0.0, 1.0, -0.1, 1.5, math.nan], 0.4)
    assert out[0] == -math.inf and out[1] == math.inf and np.isnan(out[2:]).all()
    assert rn.ppf(0.3, 0.2, loc=5.0, scale=2.0) == pytest.approx(5.0 + 2.0 * quantile(0.3, 0.2), abs=1e-13)
    q = np.array([0.01, 0.4, 0.95])
    assert np.array_equal(rn.isf(q, 0.3), rn.ppf(1.0 - q, 0.3))
    lo, hi = rn.interval(0.9, 0.2)
    assert (lo, hi) == (rn.ppf(0.05, 0.2), rn.ppf(0.95, 0.2))
    with pytest.raises(ValueError, match="^alpha must be between 0 and 1 inclusive$"):
        rn.interval(1.5, 0.2)
    assert rn.median(0.0) == 0.0 and rn.median(0.6) == pytest.approx(quantile(0.5, 0.6), abs=1e-14)
    assert rn.support(0.3, loc=1.0, scale=2.0) == (-math.inf, math.inf)
    assert np.isnan(rn.support(math.nan)).all()


def test_ppf_with_extreme_skew_raises_scipys_error():
    with pytest.warns(RuntimeWarning) as record:
        with pytest.raises(ValueError, match=r"^The function value at x=100.0 is NaN; solver cannot continue.$"):
            RefinedNormal().ppf(0.5, 1e306)
    messages = {str(w.message) for w in record}
    assert messages == {"overflow encountered in multiply", "invalid value encountered in multiply"}
    with pytest.raises(ValueError, match=r"^xtol too small \(0 <= 0\)$"):
        RefinedNormal(xtol=0.0).ppf(0.5, 0.1)


def test_lockstep_brent_treats_each_element_alone():
    c = np.array([0.3, 5.0, -2.0, 1e-8, 700.0])

    def f(x, idx):
        return x**3 - c[idx]

    left, right = np.full(5, -10.0), np.full(5, 10.0)
    roots, errors = _brentq_lockstep(f, left, right, 1e-14)
    assert not errors
    np.testing.assert_allclose(roots, np.cbrt(c), rtol=1e-13, atol=1e-14)
    for i in range(5):
        alone, _ = _brentq_lockstep(lambda x, idx, i=i: x**3 - c[i], left[i : i + 1], right[i : i + 1], 1e-14)
        assert alone[0] == roots[i]
    _, errors = _brentq_lockstep(f, np.full(5, 1.0), np.full(5, 2.0), 1e-14)
    assert set(errors) == {0, 2, 3, 4}  # cbrt(5) is the only root in [1, 2]


def test_rvs_inverts_uniforms_and_freezing_fixes_arguments():
    rn = RefinedNormal()
    draws = rn.rvs(0.3, loc=1.0, scale=2.0, size=(2, 3), random_state=5)
    uniforms = np.random.RandomState(5).uniform(size=(2, 3))
    assert np.array_equal(draws, rn.ppf(uniforms, 0.3) * 2.0 + 1.0)
    frozen = rn(skew=0.3, loc=1.0)
    x = np.linspace(-2, 3, 7)
    assert np.array_equal(frozen.cdf(x), rn.cdf(x, 0.3, loc=1.0))
    assert np.array_equal(frozen.ppf([0.2, 0.7]), rn.ppf([0.2, 0.7], skew=0.3, loc=1.0))
    assert frozen.args == () and frozen.kwds == {"skew": 0.3, "loc": 1.0} and (frozen.a, frozen.b) == rn.support(0.3)
    assert np.array_equal(frozen.rvs(4, random_state=2), rn.rvs(0.3, loc=1.0, size=4, random_state=2))
    with pytest.raises(ValueError, match="^Domain error in arguments."):
        rn.rvs(0.3, scale=-1.0)
    for name in ("mean", "var", "stats", "entropy", "fit"):
        assert not hasattr(rn, name)


def test_import_does_not_load_scipy():
    code = "import sys, rankseg, rankseg.distribution; print('scipy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


# --------------------------------------------------------------------------- the BA solvers' private helpers
def test_continuous_cdf_has_no_continuity_correction_and_handles_scale_zero():
    x = t64(2.0, 3.5, 7.0)
    got = _continuous_cdf(x, t64(3.0), t64(1.5), t64(0.2))
    for k, v in zip(x.tolist(), got.tolist()):
        assert v == pytest.approx(g((k - 3.0) / 1.5, 0.2), abs=1e-15)
    step = _continuous_cdf(t64(3.9, 4.0, 4.1), t64(4.0), t64(0.0), t64(0.0))
    assert step.tolist() == [0.0, 1.0, 1.0]


@given(
    seed=st.integers(0, 2**31 - 1),
    d=st.integers(2, 400),
    eps=st.sampled_from([1e-4, 1e-3, 0.05]),
)
@settings(max_examples=30, deadline=None)
def test_central_support_matches_the_ba_rule(seed, d, eps):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, size=d) ** rng.uniform(0.2, 4)
    mu, var, m3 = p.sum(), (p * (1 - p)).sum(), (p * (1 - p) * (1 - 2 * p)).sum()
    assume(var > 1e-6)
    skew = m3 / var**1.5
    assume(monotone(skew))
    low, up = _central_support(d, t64(mu), t64(math.sqrt(var)), t64(skew), eps)
    assert low.dtype == up.dtype == torch.int32
    ppf = lambda q: optimize.brentq(lambda x: g(x, skew) - q, -40, 40, xtol=1e-14)  # noqa: E731
    q_lo, q_hi = mu + math.sqrt(var) * ppf(eps / 2), mu + math.sqrt(var) * ppf(1 - eps / 2)
    assert low.item() == max(math.floor(q_lo) - 1, 0)
    assert up.item() == min(math.ceil(q_hi), d)


def test_central_support_of_a_point_mass():
    low, up = _central_support(10, t64(4.0), t64(0.0), t64(0.0), 1e-4)
    assert (low.item(), up.item()) == (3, 4)


# ------------------------------------------------------------------------- torch extras (standardised law)
def test_refined_helpers_zero_skew_is_the_standard_normal():
    x = torch.linspace(-7, 7, 301, dtype=torch.float64)
    zero = torch.zeros((), dtype=torch.float64)
    np.testing.assert_allclose(refined_cdf(x, zero).numpy(), stats.norm.cdf(x.numpy()), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(refined_pdf(x, zero).numpy(), stats.norm.pdf(x.numpy()), rtol=1e-12, atol=1e-15)
    q = t64(0.025, 0.5, 0.975)
    np.testing.assert_allclose(refined_ppf(q, zero).numpy(), stats.norm.ppf(q.numpy()), atol=1e-12)


@pytest.mark.parametrize("skew", [-0.4, 0.0, 0.3])
def test_refined_helpers_agree_with_the_formula(skew):
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    sk = torch.tensor(skew, dtype=torch.float64)
    # torch.special.ndtr is only accurate to ~2e-10 relative in the lower tail (e.g. at -5.2), hence rel=1e-9.
    for xv, v in zip(x.tolist(), refined_cdf(x, sk).tolist()):
        assert v == pytest.approx(g(xv, skew), abs=1e-15, rel=1e-9)
    q = t64(1e-6, 0.2, 0.5, 0.9)
    for qv, v in zip(q.tolist(), refined_ppf(q, sk).tolist()):
        assert v == pytest.approx(quantile(qv, skew), abs=1e-9)
    assert refined_ppf(t64(0.0, 1.0), sk).tolist() == [-math.inf, math.inf]
