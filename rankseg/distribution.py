"""Refined normal approximation of the Poisson-binomial distribution (torch only, batched, device-agnostic).

The number of positive pixels of a row, Gamma = sum_j B_j with independent B_j ~ Bernoulli(p_j), is
approximated by the refined normal law (Volkova 1996) used by RankSEG's BA and TRNA solvers. With mean
``loc`` = sum p, ``scale`` = sqrt(sum p (1 - p)) and ``skew`` = sum p (1 - p)(1 - 2p) / scale^3,
the standardised CDF is

    G(x) = Phi(x) + skew * (1 - x^2) * phi(x) / 6,   clipped to [0, 1],

and the probability of ``k`` positives uses the continuity correction

    pmf(k) = G((k + 1/2 - loc) / scale) - G((k - 1/2 - loc) / scale).

``RefinedNormal`` is the standardised law (a torch stand-in for 0.0.8's SciPy ``rv_continuous``);
``RefinedNormalPB`` is the location-scale version on the count axis, a ``torch.distributions.Distribution``
batched over the broadcast shape of ``loc``, ``scale`` and ``skew``. Quantiles are found by a fixed number of
bisection steps over the whole tensor, so nothing leaves the device and there is no loop over elements.

Example::

    python -c "import torch; from rankseg.distribution import RefinedNormalPB as R; \
print(R(100, torch.tensor(30.), torch.tensor(4.), torch.tensor(.1)).interval(1e-4))"
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all

__all__ = ["RefinedNormal", "RefinedNormalPB"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Bisection bracket in standard units. G is within float64 rounding of 0/1 well before |x| = 40 for any
# skew a Poisson-binomial row can produce (|skew| <= 1/sigma), and phi(40) underflows to 0.
_PPF_BOUND = 40.0
# 80 / 2**64 is below the float64 spacing near any root, so 64 halvings reach the closest representable value.
_PPF_STEPS = 64


def _std_normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z * z) * _INV_SQRT_2PI


def refined_cdf(z: torch.Tensor, skew: torch.Tensor) -> torch.Tensor:
    """Standardised refined normal CDF ``clip(Phi(z) + skew (1 - z^2) phi(z) / 6, 0, 1)``.

    ``z`` may be +-inf (a degenerate scale): the correction term is then taken as its limit 0 instead of
    the ``inf * 0`` NaN.

    Shape:
        z, skew: broadcastable; output: their broadcast shape.
    """
    finite = torch.isfinite(z)
    zf = torch.where(finite, z, torch.zeros_like(z))
    corr = skew * (1.0 - zf * zf) * _std_normal_pdf(zf) / 6.0
    # torch.special.ndtr keeps relative accuracy in the lower tail, unlike 0.5 * (1 + erf(z / sqrt 2)).
    g = torch.special.ndtr(z) + torch.where(finite, corr, torch.zeros_like(corr))
    return g.clamp(0.0, 1.0)


def refined_pdf(z: torch.Tensor, skew: torch.Tensor) -> torch.Tensor:
    """Derivative of :func:`refined_cdf` in ``z``: ``phi(z) (1 + skew (z^3 - 3 z) / 6)``, 0 where clipped.

    Where ``|skew|`` is large the refined normal is not monotone and this derivative can be negative; it is
    returned as is (it is the derivative of the CDF, not a projected density).

    Shape:
        z, skew: broadcastable; output: their broadcast shape.
    """
    phi = _std_normal_pdf(z)
    raw = torch.special.ndtr(z) + skew * (1.0 - z * z) * phi / 6.0
    dens = phi * (1.0 + skew * (z**3 - 3.0 * z) / 6.0)
    clipped = (raw < 0.0) | (raw > 1.0) | ~torch.isfinite(z)
    return torch.where(clipped, torch.zeros_like(dens), dens)


def refined_ppf(q: torch.Tensor, skew: torch.Tensor) -> torch.Tensor:
    """Standardised quantile: where the CDF is monotone, the smallest ``x`` with ``refined_cdf(x) >= q``.

    Vectorised bisection over the bracket [-40, 40] with a fixed number of halvings, so it runs on the
    tensors' device without a host round trip. Where the clipped CDF is not monotone (very large skew) it
    returns a crossing point, like SciPy's generic root finder would. ``q <= 0`` gives -inf, ``q >= 1`` +inf.

    Shape:
        q, skew: broadcastable; output: their broadcast shape, in their promoted floating dtype.
    """
    q, skew = torch.broadcast_tensors(q, skew)
    lo = torch.full_like(q, -_PPF_BOUND)
    hi = torch.full_like(q, _PPF_BOUND)
    for _ in range(_PPF_STEPS):
        mid = 0.5 * (lo + hi)
        below = refined_cdf(mid, skew) < q
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    x = hi
    x = torch.where(q <= 0.0, torch.full_like(x, -math.inf), x)
    return torch.where(q >= 1.0, torch.full_like(x, math.inf), x)


def _as_float(x: Any, like: torch.Tensor | None = None) -> torch.Tensor:
    """Tensor of a floating dtype (float64 unless ``x`` already is a floating tensor)."""
    device = None if like is None else like.device
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.to(device) if device is not None else x
    return torch.as_tensor(x, dtype=torch.float64, device=device)


class RefinedNormal:
    """Standardised refined normal law with CDF ``clip(Phi(x) + skew (1 - x^2) phi(x) / 6, 0, 1)``.

    A small torch replacement for 0.0.8's SciPy ``rv_continuous``: inputs may be Python numbers, NumPy arrays
    or tensors; outputs are tensors (float64 unless the input is a floating tensor), broadcast against
    ``skew``. ``skew = 0`` is the standard normal.

    Args:
        skew: standardised third cumulant; a number or a tensor broadcastable against the arguments.
    """

    def __init__(self, skew: float | torch.Tensor = 0.0) -> None:
        self.skew = skew

    def _prep(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = _as_float(x, self.skew if isinstance(self.skew, torch.Tensor) else None)
        skew = torch.as_tensor(self.skew, dtype=x.dtype, device=x.device)
        return x, skew

    def cdf(self, x: Any) -> torch.Tensor:
        """CDF at ``x``.

        Shape:
            x: any; output: broadcast of x and skew.
        """
        x, skew = self._prep(x)
        return refined_cdf(x, skew)

    def pdf(self, x: Any) -> torch.Tensor:
        """Derivative of :meth:`cdf` (0 where the CDF is clipped; may be negative for large ``|skew|``).

        Shape:
            x: any; output: broadcast of x and skew.
        """
        x, skew = self._prep(x)
        return refined_pdf(x, skew)

    def ppf(self, q: Any) -> torch.Tensor:
        """Quantile function (bisection; see :func:`refined_ppf`).

        Shape:
            q: any; output: broadcast of q and skew.
        """
        q, skew = self._prep(q)
        return refined_ppf(q, skew)

    def interval(self, confidence: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Central interval holding ``confidence`` of the mass: ``(ppf((1-c)/2), ppf((1+c)/2))`` as in SciPy.

        Shape:
            output: two tensors of the shape of ``skew``.
        """
        c = float(confidence)
        return self.ppf(0.5 * (1.0 - c)), self.ppf(0.5 * (1.0 + c))


class RefinedNormalPB(Distribution):
    """Refined normal approximation of a Poisson-binomial count on ``{0, ..., dim}``.

    ``cdf``/``pdf``/``icdf`` describe the continuous approximant ``loc + scale * X`` with ``X`` standardised
    refined normal; ``pmf`` discretises it with the continuity correction
    ``pmf(k) = cdf(k + 1/2) - cdf(k - 1/2)`` (clamped at 0 where ``|skew|`` makes the CDF non-monotone, and 0
    outside ``{0, ..., dim}``). The pmf is *not* renormalised here; the solvers renormalise it on their
    truncated support.

    ``scale = 0`` is allowed and means a point mass at ``loc``: the CDF becomes the step ``1[x >= loc]``
    and the pmf puts all mass on the integer ``k`` with ``k - 1/2 < loc <= k + 1/2``.

    Args:
        dim: number of Bernoulli trials (pixels); the support is ``{0, ..., dim}``.
        loc: mean, ``sum p``.
        scale: standard deviation, ``sqrt(sum p (1 - p))``.
        skew: standardised skewness, ``sum p (1 - p)(1 - 2 p) / scale^3``.

    Shape:
        loc, scale, skew: broadcastable; ``batch_shape`` is their broadcast shape. Method arguments broadcast
        against ``batch_shape``.
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.greater_than_eq(0.0),
        "skew": constraints.real,
    }
    # cdf/icdf live on the real line (continuous approximant); pmf is only meaningful on {0, ..., dim}.
    support = constraints.real
    has_rsample = False

    def __init__(
        self,
        dim: int,
        loc: torch.Tensor | float,
        scale: torch.Tensor | float,
        skew: torch.Tensor | float,
        validate_args: bool | None = None,
    ) -> None:
        self.dim = int(dim)
        self.loc, self.scale, self.skew = broadcast_all(loc, scale, skew)
        super().__init__(batch_shape=self.loc.shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def stddev(self) -> torch.Tensor:
        return self.scale

    @property
    def variance(self) -> torch.Tensor:
        return self.scale**2

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> RefinedNormalPB:
        batch_shape = torch.Size(batch_shape)
        return RefinedNormalPB(
            self.dim,
            self.loc.expand(batch_shape),
            self.scale.expand(batch_shape),
            self.skew.expand(batch_shape),
            validate_args=False,
        )

    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=self.loc.dtype, device=self.loc.device)
        diff = x - self.loc
        pos = self.scale > 0
        safe = torch.where(pos, self.scale, torch.ones_like(self.scale))
        # A zero scale is a point mass: +-inf standardised distance gives the step CDF through ndtr.
        step = torch.where(diff >= 0, torch.full_like(diff, math.inf), torch.full_like(diff, -math.inf))
        return torch.where(pos, diff / safe, step)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """Continuous approximant's CDF, ``G((value - loc) / scale)``.

        Shape:
            value: broadcastable with batch_shape; output: broadcast shape.
        """
        return refined_cdf(self._standardise(value), self.skew)

    def pdf(self, value: torch.Tensor) -> torch.Tensor:
        """Derivative of :meth:`cdf` in ``value`` (0 where the CDF is clipped or the scale is 0).

        Shape:
            value: broadcastable with batch_shape; output: broadcast shape.
        """
        z = self._standardise(value)
        pos = self.scale > 0
        dens = refined_pdf(z, self.skew) / torch.where(pos, self.scale, torch.ones_like(self.scale))
        return torch.where(pos, dens, torch.zeros_like(dens))

    def pmf(self, value: torch.Tensor) -> torch.Tensor:
        """Continuity-corrected probability of ``value`` positives, ``cdf(k + 1/2) - cdf(k - 1/2)``.

        Clamped at 0, and 0 for ``value`` outside ``{0, ..., dim}``; not renormalised.

        Shape:
            value: broadcastable with batch_shape (integer-valued); output: broadcast shape.
        """
        k = torch.as_tensor(value, dtype=self.loc.dtype, device=self.loc.device)
        mass = (self.cdf(k + 0.5) - self.cdf(k - 0.5)).clamp_min(0.0)
        inside = (k >= 0) & (k <= self.dim)
        return torch.where(inside, mass, torch.zeros_like(mass))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log pmf(value)`` (``-inf`` where the pmf is 0).

        Shape:
            value: broadcastable with batch_shape; output: broadcast shape.
        """
        return torch.log(self.pmf(value))

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """Quantile of the continuous approximant, ``loc + scale * ppf(value)`` (vectorised bisection).

        Shape:
            value: broadcastable with batch_shape; output: broadcast shape.
        """
        q = torch.as_tensor(value, dtype=self.loc.dtype, device=self.loc.device)
        x = refined_ppf(q, self.skew)
        # Keep the point mass at loc for scale 0 instead of 0 * inf = NaN at q in {0, 1}.
        shift = torch.where(self.scale > 0, self.scale * x, torch.zeros_like(x))
        return self.loc + shift

    def interval(self, p: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer support ``[low, up]`` (inclusive) of the central ``1 - p`` interval, widened as in BA.

        With ``q_lo = icdf(p / 2)`` and ``q_hi = icdf(1 - p / 2)`` (SciPy's ``interval(1 - p)`` convention):
        ``low = max(floor(q_lo) - 1, 0)`` and ``up = min(ceil(q_hi), dim)``. Both are additionally kept in
        ``[0, dim]`` with ``low <= up`` so the support is never empty.

        Args:
            p: total tail mass left out, in (0, 1) (BA's ``eps``).

        Shape:
            output: two int32 tensors of batch_shape.
        """
        half = torch.tensor([0.5 * p, 1.0 - 0.5 * p], dtype=self.loc.dtype, device=self.loc.device)
        q = self.icdf(half.reshape((2,) + (1,) * len(self.batch_shape)))
        low = (torch.floor(q[0]) - 1.0).clamp(0.0, float(self.dim))
        up = torch.ceil(q[1]).clamp(0.0, float(self.dim))
        up = torch.maximum(up, low)
        return low.to(torch.int32), up.to(torch.int32)
