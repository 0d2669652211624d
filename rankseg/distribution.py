"""Refined normal approximation of the Poisson-binomial distribution, as in rankseg 0.0.8 (torch and NumPy only).

The number of positive pixels of a row, Gamma = sum_j B_j with independent B_j ~ Bernoulli(p_j), is approximated
by the refined normal law (Volkova 1996). With mean ``loc`` = sum p, ``scale`` = sqrt(sum p (1 - p)) and ``skew`` =
sum p (1 - p)(1 - 2p) / scale^3, the standardised CDF is

    G(x) = Phi(x) + skew * (1 - x^2) * phi(x) / 6,   clipped to [0, 1].

Public names behave like 0.0.8's ``rankseg.distribution`` (values, dtypes, shapes, exceptions and warnings):

- :class:`RefinedNormalPB`, a ``torch.distributions.Distribution`` on the count axis whose ``cdf``/``pdf`` evaluate
  the refined normal at the continuity-corrected point ``k + 0.5``, ``pmf(k) = cdf(k) - cdf(k - 1)``, ``icdf`` is a
  bracketed bisection and ``interval(p)`` returns the int32 integer support of the central ``1 - p`` interval.
- :class:`RefinedNormal`, the standardised law with the call conventions of a SciPy ``rv_continuous`` instance
  (``RefinedNormal().cdf(x, skew=...)``, ``loc``/``scale`` keywords, NaN for invalid parameters, freezing by
  calling the instance), written without SciPy: the normal CDF is a float64 port of the Cephes ``ndtr`` that SciPy
  uses, and quantiles use Brent's method step for step as ``scipy.optimize.brentq`` takes it, so results agree with
  0.0.8 to the last bit. The methods that SciPy computes by numerical integration or optimisation (moments,
  entropy, ``expect``, ``fit``, ``nnlf``) are not provided.
- ``SUPPORTED_PROB_DTYPES``, ``validate_finite_real`` and ``validate_integral`` (0.0.8 imports them here).

The torch-only helpers :func:`refined_cdf`, :func:`refined_pdf` and :func:`refined_ppf` (standardised law, no
continuity correction, vectorised on any device) are extras of this package; ``_continuous_cdf`` and
``_central_support`` are the BA/TRNA solvers' (``rankseg._ba``) versions of the count CDF and support, without the
continuity correction and with quantiles found on the device.

Intended differences from 0.0.8: no ``scipy`` module attribute; ``RefinedNormal`` is not a SciPy
``rv_continuous`` subclass, lacks SciPy's numerical moments, entropy, ``expect`` and fitting, refuses complex
arguments (``TypeError``) and shape names other than ``skew`` (``ValueError``).

Example::

    python -c "import torch; from rankseg.distribution import RefinedNormalPB as R; \
print(R(100, torch.tensor(30.), torch.tensor(4.), torch.tensor(.1)).interval(1e-4))"
"""

import keyword as _keyword
import math as _math
import warnings as _warnings
from numbers import Integral as _Integral
from numbers import Real
from typing import Optional, Union  # noqa: F401  (0.0.8 exposes these names in this module)

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.normal import Normal
from torch.distributions.utils import broadcast_all

# 0.0.8 imports these names into this module; they are the package's own checks.
from rankseg._validation import SUPPORTED_PROB_DTYPES, validate_finite_real, validate_integral  # noqa: E402


# ------------------------------------------------------------------------------------------ argument checks
def _check_parameter_type(name, value):
    """0.0.8's type check of a ``RefinedNormalPB`` parameter: a real Python/NumPy number or a real tensor."""
    if isinstance(value, Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must contain real numbers")
    elif isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must contain real numbers")


def _interval_tail_mass(p):
    """``p`` of :meth:`RefinedNormalPB.interval` as a float64 NumPy array, after 0.0.8's checks.

    Shape:
        p: any; output: the same shape (detached, on the CPU).
    """
    if isinstance(p, Tensor):
        if p.dtype == torch.bool or p.is_complex():
            raise TypeError("p must contain real numbers")
        if p.numel() == 0:
            raise ValueError("p must not be empty")
        if not bool(torch.isfinite(p).all()):
            raise ValueError("p must contain only finite values")
        if bool(torch.any((p < 0) | (p > 1))):
            raise ValueError("p must be in the range [0, 1]")
        return p.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        arr = np.asarray(p)
    except (TypeError, ValueError) as error:
        raise TypeError("p must contain real numbers") from error
    if arr.dtype.kind not in "fiu":
        raise TypeError("p must contain real numbers")
    if arr.size == 0:
        raise ValueError("p must not be empty")
    if not bool(np.isfinite(arr).all()):
        raise ValueError("p must contain only finite values")
    if bool(np.any((arr < 0) | (arr > 1))):
        raise ValueError("p must be in the range [0, 1]")
    return arr.astype(np.float64, copy=False)


def _icdf_probability(p):
    """``p`` of :meth:`RefinedNormalPB.icdf` after 0.0.8's checks (a non-empty floating tensor in (0, 1))."""
    if not isinstance(p, Tensor):
        raise TypeError("p must be a torch.Tensor")
    if p.dtype not in SUPPORTED_PROB_DTYPES:
        raise TypeError("p must have a real floating-point dtype")
    if p.numel() == 0:
        raise ValueError("p must not be empty")
    if not bool(torch.isfinite(p).all()):
        raise ValueError("p must contain only finite values")
    if bool(torch.any((p <= 0) | (p >= 1))):
        raise ValueError("p must be in the range (0, 1)")
    return p


# ------------------------------------------------------------------------------------ RefinedNormalPB (torch)
def _corrected_refined_cdf(x, skew):
    """``clip(Phi(x) + skew (1 - x^2) phi(x) / 6, 0, 1)`` with torch's ``Normal(0, 1)``, as 0.0.8 evaluates it.

    Phi and phi come from a standard ``Normal`` built at call time (its dtype is torch's default dtype, and it
    checks ``x`` for NaN when distribution validation is on), so dtypes, values and errors are those of 0.0.8.

    Shape:
        x, skew: broadcastable; output: their broadcast shape.
    """
    std = Normal(0, 1)
    big_phi = std.cdf(x)
    return torch.clip(big_phi + skew * (1 - x**2) * std.log_prob(x).exp() / 6, min=0.0, max=1.0)


class RefinedNormalPB(Distribution):
    r"""Refined normal approximation of a Poisson-binomial count, with 0.0.8's continuity correction.

    With ``x = (k + 0.5 - loc) / scale`` and the standardised CDF ``G`` of the module docstring,

    .. math::
        F(k) = G(x), \qquad f(k) = \max\Bigl(0, \frac{\phi(x)}{scale}\bigl[1 + \frac{skew}{6}(x^3 - 3x)\bigr]\Bigr),
        \qquad P(k) = \mathrm{clip}(F(k) - F(k - 1), 0, 1).

    Args:
        dim: number of Bernoulli trials; the integer endpoints of :meth:`interval` are clipped to ``[0, dim]``.
            Checked to be a nonnegative integer when validation is on.
        loc: finite location (mean of the count).
        scale: finite, strictly positive scale (standard deviation of the count).
        skew: finite skewness of the count.
        validate_args: ``None`` follows ``torch.distributions.Distribution``'s default; ``False`` skips every
            check (types, constraints, finiteness).

    Raises:
        TypeError: ``"<name> must contain real numbers"`` for a parameter that is not a real number or a real
            tensor (validation on).
        ValueError: torch's constraint message (e.g. a negative ``scale`` or a non-integer ``dim``), then
            ``"<name> must contain only finite values"`` for an infinite ``loc``, ``scale`` or ``skew``.

    Shape:
        dim, loc, scale, skew: broadcastable (``broadcast_all``: numbers take the dtype and device of the first
        tensor argument); ``batch_shape`` is their broadcast shape. A method argument with more dimensions than the
        parameters gets trailing singleton dimensions appended to the parameters, so ``value`` of shape
        ``batch_shape + (n,)`` evaluates ``n`` points per distribution.
    """

    arg_constraints = {
        "dim": constraints.nonnegative_integer,
        "loc": constraints.real,
        "scale": constraints.positive,
        "skew": constraints.real,
    }
    support = constraints.real
    has_rsample = False

    def __init__(
        self,
        dim: Tensor | int,
        loc: Tensor | float,
        scale: Tensor | float,
        skew: Tensor | float,
        validate_args: bool | None = None,
    ) -> None:
        checking = self._validate_args if validate_args is None else validate_args
        if checking:
            _check_parameter_type("dim", dim)
            _check_parameter_type("loc", loc)
            _check_parameter_type("scale", scale)
            _check_parameter_type("skew", skew)
        self.dim, self.loc, self.scale, self.skew = broadcast_all(dim, loc, scale, skew)
        super().__init__(batch_shape=self.loc.size(), validate_args=validate_args)
        if self._validate_args:
            for name in ("loc", "scale", "skew"):
                if not bool(torch.isfinite(getattr(self, name)).all()):
                    raise ValueError(f"{name} must contain only finite values")

    def expand(self, batch_shape, _instance=None) -> "RefinedNormalPB":
        """A view of the distribution with a larger batch shape (no copy, no validation).

        Shape:
            output: ``batch_shape``; the parameters must be expandable to it.
        """
        new = self._get_checked_instance(RefinedNormalPB, _instance)
        batch_shape = torch.Size(batch_shape)
        for name in ("dim", "loc", "scale", "skew"):
            setattr(new, name, getattr(self, name).expand(batch_shape))
        super(RefinedNormalPB, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _aligned(self, ndim):
        """loc, scale and skew with trailing singleton dimensions until loc has at least ``ndim`` dimensions."""
        loc, scale, skew = self.loc, self.scale, self.skew
        while loc.ndim < ndim:
            loc, scale, skew = loc.unsqueeze(-1), scale.unsqueeze(-1), skew.unsqueeze(-1)
        return loc, scale, skew

    def cdf(self, value: Tensor) -> Tensor:
        """Continuity-corrected CDF ``G((value + 0.5 - loc) / scale)``.

        Args:
            value: a tensor (anything without ``ndim`` raises ``AttributeError``, as in 0.0.8).

        Raises:
            ValueError: torch's ``Expected value argument ...`` message where ``(value + 0.5 - loc) / scale`` is
                NaN and distribution validation is on (the standard ``Normal`` checks its argument).

        Shape:
            value: broadcastable with ``batch_shape`` after the alignment of the class docstring; output: the
            broadcast shape, in the promoted dtype.
        """
        loc, scale, skew = self._aligned(value.ndim)
        return _corrected_refined_cdf((value + 0.5 - loc) / scale, skew)

    def pdf(self, value: Tensor) -> Tensor:
        """Density of the refined normal at ``value + 0.5``: ``phi(x) (1 + skew (x^3 - 3x) / 6) / scale``, floored at 0.

        Shape:
            value: as in :meth:`cdf`; output: the broadcast shape.
        """
        loc, scale, skew = self._aligned(value.ndim)
        x = (value + 0.5 - loc) / scale
        phi = Normal(0, 1).log_prob(x).exp()
        density = phi + skew / 6 * phi * (x**3 - 3 * x)
        return torch.clip(density / scale, min=0.0)

    def pmf(self, value: Tensor) -> Tensor:
        """``clip(cdf(value) - cdf(value - 1), 0, 1)``: the mass of the integer ``value``.

        Shape:
            value: as in :meth:`cdf`; output: the broadcast shape.
        """
        return torch.clip(self.cdf(value) - self.cdf(value - 1), min=0.0, max=1.0)

    @torch.no_grad()
    def icdf(self, p: Tensor, max_iter: int = 1000, tol: float = 1e-6) -> Tensor:
        """Quantiles of the continuity-corrected CDF by bracketed bisection (not differentiable).

        The bracket starts at ``loc - 0.5 -+ 8 scale`` and is widened by its own width (at most
        ``min(32, max_iter)`` times) until it holds ``p``; bisection then runs until the widest bracket is narrower
        than ``tol``, no bracket moves any more, or ``max_iter`` halvings. Returns the brackets' midpoints.

        Args:
            p: probabilities, a floating tensor with values in (0, 1).
            max_iter: positive int.
            tol: finite, strictly positive real.

        Raises:
            TypeError: ``p must be a torch.Tensor``, ``p must have a real floating-point dtype``, ``max_iter must
                be an int``, ``tol must be a real number``.
            ValueError: ``p must not be empty``, ``p must contain only finite values``, ``p must be in the range
                (0, 1)``, ``max_iter must be greater than 0``, ``tol must be finite``, ``tol must be greater than 0``.

        Shape:
            p: as ``value`` in :meth:`cdf`; output: the broadcast shape.
        """
        p = _icdf_probability(p)
        max_iter = validate_integral("max_iter", max_iter)
        if max_iter <= 0:
            raise ValueError("max_iter must be greater than 0")
        tol = validate_finite_real("tol", tol)
        if tol <= 0:
            raise ValueError("tol must be greater than 0")

        loc, scale, _ = self._aligned(p.ndim)
        low = loc - 0.5 - 8.0 * scale
        high = loc - 0.5 + 8.0 * scale
        for _ in range(min(32, max_iter)):
            too_high = self.cdf(low) > p
            too_low = self.cdf(high) < p
            if not bool(too_high.any() or too_low.any()):
                break
            width = high - low
            low = torch.where(too_high, low - width, low)
            high = torch.where(too_low, high + width, high)

        for _ in range(max_iter):
            mid = (low + high) / 2
            right = self.cdf(mid) < p
            new_low = torch.where(right, mid, low)
            new_high = torch.where(right, high, mid)
            moved = (new_low != low) | (new_high != high)
            low, high = new_low, new_high
            if bool((torch.max(torch.abs(high - low)) < tol) | ~moved.any()):
                break
        return (low + high) / 2

    @torch.no_grad()
    def interval(self, p) -> tuple[Tensor, Tensor]:
        """Inclusive integer support ``[low, up]`` that keeps mass ``1 - p``, clipped to ``[0, dim]``.

        With ``(a, b) = RefinedNormal().interval(1 - p, skew=skew)`` (the standardised central interval, on the
        CPU in float64): ``low = min(max(floor(scale a + loc) - 1, 0), dim)`` and
        ``up = min(max(ceil(scale b + loc), 0), dim)``.

        Args:
            p: tail mass left out, in [0, 1]: a real number, an array-like or a tensor (detached); finite.

        Raises:
            TypeError: ``p must contain real numbers``.
            ValueError: ``p must not be empty``, ``p must contain only finite values``, ``p must be in the range
                [0, 1]``.

        Shape:
            p: broadcastable with ``batch_shape``; output: two int32 tensors of the broadcast shape, on the
            parameters' device.
        """
        tail = _interval_tail_mass(p)
        skew = self.skew.detach().to(device="cpu", dtype=torch.float64).numpy()
        lower, upper = RefinedNormal().interval(1 - tail, skew=skew)
        device = self.loc.device
        lower, upper = torch.as_tensor(lower, device=device), torch.as_tensor(upper, device=device)
        loc, scale, dim = self.loc.detach(), self.scale.detach(), self.dim.detach()
        low = torch.clamp(torch.floor(scale * lower + loc) - 1, min=0)
        up = torch.clamp(torch.ceil(scale * upper + loc), min=0)
        return torch.minimum(low, dim).int(), torch.minimum(up, dim).int()


# ------------------------------------------------------------------------- RefinedNormal (NumPy, float64)
# Cephes ndtr/erf/erfc coefficients, as in SciPy's special functions (xsf/cephes/ndtr.h).
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0, 4.86371970985681366614e1,
           1.96520832956077098242e2, 5.26445194995477358631e2, 9.34528527171957607540e2, 1.02755188689515710272e3,
           5.57535335369399327526e2)  # fmt: skip
_ERFC_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2, 9.75708501743205489753e2,
           1.82390916687909736289e3, 2.24633760818710981792e3, 1.65666309194161350182e3,
           5.57535340817727675546e2)  # fmt: skip
_ERFC_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0, 6.16021097993053585195e0,
           7.40974269950448939160e0, 2.97886665372100240670e0)  # fmt: skip
_ERFC_S = (2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1, 1.70814450747565897222e1,
           9.60896809063285878198e0, 3.36907645100081516050e0)  # fmt: skip
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3, 7.00332514112805075473e3,
          5.55923013010394962768e4)  # fmt: skip
_ERF_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3, 2.26290000613890934246e4,
          4.92673942608635921086e4)  # fmt: skip
_MAXLOG = 7.09782712893383996843e2
_SQRT1_2 = _math.sqrt(0.5)
_NORM_PDF_C = np.sqrt(2 * np.pi)
# scipy.optimize.brentq's defaults as rv_continuous uses them (its xtol is the instance's, 1e-14 by default).
_BRENT_RTOL = 4 * np.finfo(float).eps
_BRENT_MAXITER = 100
# rv_continuous's numerical density: 5-point central difference of the CDF with step 1e-5.
_PDF_STEP = 1e-5
_PDF_WEIGHTS = np.array([1, -8, 0, 8, -1]) / 12.0


def _horner(x, coef):
    out = coef[0]
    for c in coef[1:]:
        out = out * x + c
    return out


def _horner_monic(x, coef):
    out = x + coef[0]
    for c in coef[1:]:
        out = out * x + c
    return out


_COMPLEX_UNSUPPORTED = "RefinedNormal does not support complex arguments"


def _ndtr(a):
    """Standard normal CDF in float64, bit for bit SciPy's ``special.ndtr`` (Cephes).

    ``exp`` is the C library's (``math.exp``), as in the compiled Cephes code; NumPy's vectorised ``exp`` can
    differ in the last bit. Complex input raises ``TypeError`` (SciPy's complex ``ndtr`` is not reproduced).

    Shape:
        a: any float64 array; output: the same shape.
    """
    a = np.asarray(a)
    if np.iscomplexobj(a):
        raise TypeError(_COMPLEX_UNSUPPORTED)
    if not np.can_cast(a.dtype, np.float64, "safe"):  # SciPy's ufunc has float and complex loops only
        raise TypeError(
            "ufunc 'ndtr' not supported for the input types, and the inputs could not be safely coerced to any "
            "supported types according to the casting rule ''safe''"
        )
    a = a.astype(np.float64)
    out = np.empty_like(a)
    with np.errstate(all="ignore"):
        x = a * _SQRT1_2
        z = np.abs(x)
        small = z < 1.0
        if small.any():
            xs = x[small]
            t = np.abs(xs)
            tt = t * t
            e = t * _horner(tt, _ERF_T) / _horner_monic(tt, _ERF_U)
            out[small] = 0.5 + 0.5 * np.where(xs < 0.0, -e, e)
        big = ~small & ~np.isnan(a)
        if big.any():
            zb = z[big]
            m = -zb * zb
            under = m < -_MAXLOG
            ex = np.fromiter((_math.exp(v) for v in np.where(under, 0.0, m).tolist()), np.float64, zb.size)
            near = zb < 8.0
            num = np.where(near, _horner(zb, _ERFC_P), _horner(zb, _ERFC_R))
            den = np.where(near, _horner_monic(zb, _ERFC_Q), _horner_monic(zb, _ERFC_S))
            y = np.where(under, 0.0, (ex * num) / den)
            half = 0.5 * y
            out[big] = np.where(x[big] > 0, 1.0 - half, half)
        out[np.isnan(a)] = np.nan
    return out


def _norm_pdf(x):
    return np.exp(-(x**2) / 2.0) / _NORM_PDF_C


def _check_random_state(seed):
    """NumPy random state from a seed, as SciPy resolves ``seed``/``random_state`` arguments."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, (_Integral, np.integer)):
        return np.random.RandomState(seed)
    if isinstance(seed, (np.random.RandomState, np.random.Generator)):
        return seed
    raise ValueError(f"'{seed}' cannot be used to seed a numpy.random.RandomState instance")


def _reduce(cond, *arrays):
    """The entries of ``arrays`` (broadcast against ``cond``) where ``cond`` holds, flattened; size-1 arrays whole.

    Shape:
        cond: any bool; arrays: broadcastable to it; outputs: 1-D.
    """
    flat = np.atleast_1d(*arrays)
    if not isinstance(flat, (list, tuple)):
        flat = (flat,)
    if np.all(cond):
        *flat, cond = np.broadcast_arrays(*flat, cond)
        return [arr.ravel() for arr in flat]
    shape = cond.shape
    return [arr if np.size(arr) == 1 else np.extract(cond, np.broadcast_to(arr, shape)) for arr in flat]


def _split_where(cond, x, skew, below, above):
    """``below(x, skew)`` where ``cond`` holds and ``above(x, skew)`` elsewhere, each evaluated on its part only."""
    cond, x, skew = np.broadcast_arrays(cond, x, skew)
    first = below(x[cond], skew[cond])
    rest = ~cond
    second = above(x[rest], skew[rest])
    out = np.empty_like(cond, dtype=np.result_type(first, second))
    out[rest] = second
    out[cond] = first
    return out


class RefinedNormal:
    r"""Standardised refined normal law with the interface of a SciPy ``rv_continuous`` instance (no SciPy).

    The CDF is :math:`F(x; skew) = \mathrm{clip}(\Phi(x) + skew (1 - x^2) \phi(x) / 6, 0, 1)` (Volkova 1996), with a
    finite shape parameter ``skew``; ``loc``/``scale`` keywords give ``F((x - loc) / scale)``. Like 0.0.8's class
    (a ``scipy.stats.rv_continuous`` subclass), every method takes ``skew`` positionally or by keyword, broadcasts
    its arguments with NumPy, returns NumPy arrays (0-d results as NumPy scalars) and gives ``badvalue`` (NaN)
    where a parameter is invalid (non-finite ``skew``, ``scale <= 0``). ``pdf`` is SciPy's generic numerical
    derivative of the CDF (a 5-point difference with step 1e-5) and ``ppf`` SciPy's generic root finding: the
    bracket ``[-10, 10]`` grown tenfold until it holds the root, then Brent's method with ``xtol`` and
    ``rtol = 4 eps``. Both are reproduced operation for operation, so the values are 0.0.8's to the last bit.

    Calling the instance (or :meth:`freeze`) with the shape and ``loc``/``scale`` returns a frozen distribution
    whose methods take only ``x``, ``q``, ``confidence`` or ``size``.

    Not provided (0.0.8 inherits them from SciPy and evaluates them by numerical integration or optimisation):
    ``mean``, ``var``, ``std``, ``stats``, ``moment``, ``entropy``, ``expect``, ``fit``, ``fit_loc_scale``,
    ``nnlf``, ``generic_moment`` and ``vecentropy``.

    Args:
        momtype: kept as ``moment_type`` (the moment method SciPy would use).
        a, b: lower and upper end of the support of the standardised law (default: the real line).
        xtol: absolute tolerance of the quantile root finding.
        badvalue: value for invalid parameters (default NaN).
        name: name used in error messages (default ``"Distribution"``).
        longname: accepted for SciPy compatibility (SciPy uses it in generated docstrings).
        shapes: ``None`` or ``"skew"``: the shape parameter's name cannot be changed.
        seed: ``None`` (NumPy's global random state), an int or a NumPy ``RandomState``/``Generator``, used by
            :meth:`rvs`.

    Shape:
        Arguments broadcast with NumPy rules against ``skew``, ``loc`` and ``scale``; outputs have the broadcast
        shape (``support`` and ``interval`` return two such arrays).
    """

    def __init__(self, momtype=1, a=None, b=None, xtol=1e-14, badvalue=None, name=None, longname=None,
                 shapes=None, seed=None):  # fmt: skip
        self._random_state = _check_random_state(seed)
        self._ctor_param = dict(momtype=momtype, a=a, b=b, xtol=xtol, badvalue=badvalue, name=name,
                                longname=longname, shapes=shapes, seed=seed)  # fmt: skip
        self.badvalue = np.nan if badvalue is None else badvalue
        self.name = "Distribution" if name is None else name
        self.a = -np.inf if a is None else a
        self.b = np.inf if b is None else b
        self.xtol = xtol
        self.moment_type = momtype
        if shapes:
            if not isinstance(shapes, str):
                raise TypeError("shapes must be a string.")
            names = shapes.replace(",", " ").split()
            for field in names:
                if _keyword.iskeyword(field):
                    raise SyntaxError("keywords cannot be used as shapes.")
                if not (field.isidentifier() and field.isascii()):
                    raise SyntaxError("shapes must be valid python identifiers")
            if names != ["skew"]:
                raise ValueError("RefinedNormal has exactly one shape parameter, 'skew'")
        self.shapes = "skew"
        self.numargs = 1

    # ---- SciPy's argument conventions (the parsers are module-level functions, see below the class)
    def _argcheck(self, skew):
        return np.isfinite(skew)

    def _get_support(self, *args, **kwargs):
        return self.a, self.b

    def _support_mask(self, x, *args):
        a, b = self._get_support(*args)
        with np.errstate(invalid="ignore"):
            return (a <= x) & (x <= b)

    def _open_support_mask(self, x, *args):
        a, b = self._get_support(*args)
        with np.errstate(invalid="ignore"):
            return (a < x) & (x < b)

    def _argcheck_rvs(self, *args, **kwargs):
        size = kwargs.get("size", None)
        arrays = np.broadcast_arrays(*args)

        def drop_leading_ones(arr):
            while arr.ndim > 0 and arr.shape[0] == 1:
                arr = arr[0]
            return arr

        arrays = [drop_leading_ones(arr) for arr in arrays]
        bcast_shape = arrays[0].shape
        bcast_ndim = arrays[0].ndim
        size_ = bcast_shape if size is None else tuple(np.atleast_1d(size))
        extra = bcast_ndim - len(size_)
        if extra < 0:
            bcast_shape = (1,) * -extra + bcast_shape
        elif extra > 0:
            size_ = (1,) * extra + size_
        if not all(bc == 1 or bc == sz for bc, sz in zip(bcast_shape, size_)):
            raise ValueError(
                f"size does not match the broadcast shape of the parameters. {size}, {size_}, {bcast_shape}"
            )
        return arrays[:-2], arrays[-2], arrays[-1], size_

    @property
    def random_state(self):
        """The NumPy random state :meth:`rvs` draws from when it is given none."""
        return self._random_state

    @random_state.setter
    def random_state(self, seed):
        self._random_state = _check_random_state(seed)

    # ---- the standardised law on valid arguments
    def _cdf(self, x, skew):
        return np.clip(_ndtr(x) + skew * (1 - x**2) * _norm_pdf(x) / 6, 0, 1)

    def _sf(self, x, skew):
        return 1.0 - self._cdf(x, skew)

    def _pdf(self, x, skew):
        total = 0.0
        for k in range(5):
            total += _PDF_WEIGHTS[k] * self._cdf(x + (k - 2) * _PDF_STEP, skew)
        return total / np.float64(_PDF_STEP)

    def _logpdf(self, x, skew):
        density = self._pdf(x, skew)
        with np.errstate(divide="ignore"):
            return np.log(density)

    def _logcdf(self, x, skew):
        median = self._ppf(0.5, skew)
        with np.errstate(divide="ignore"):
            return _split_where(
                x < median, x, skew,
                lambda x, s: np.log(self._cdf(x, s)),
                lambda x, s: np.log1p(-self._sf(x, s)),
            )  # fmt: skip

    def _logsf(self, x, skew):
        median = self._ppf(0.5, skew)
        with np.errstate(divide="ignore"):
            return _split_where(
                x > median, x, skew,
                lambda x, s: np.log(self._sf(x, s)),
                lambda x, s: np.log1p(-self._cdf(x, s)),
            )  # fmt: skip

    def _isf(self, q, skew):
        return self._ppf(1.0 - q, skew)

    def _rvs(self, skew, size=None, random_state=None):
        return self._ppf(random_state.uniform(size=size), skew)

    def _ppf(self, q, skew):
        """Quantiles as SciPy's generic ``_ppf_single`` finds them, all elements advanced together.

        Per element: ``left = -10`` moves to ``10 left`` (and ``right`` to the old ``left``) while
        ``cdf(left) > q``; then ``right = max(10, left)`` moves tenfold while ``cdf(right) < q``; then Brent's
        method on ``[left, right]``. SciPy solves the elements one after the other and stops at the first failure,
        so when an element fails, the elements up to it are solved again (the first pass's warnings dropped) to
        emit SciPy's warnings before its error.

        Shape:
            q, skew: broadcastable; output: their broadcast shape, float64 (0-d for 0-d inputs).
        """
        q, skew = np.broadcast_arrays(np.asarray(q), np.asarray(skew))
        shape = q.shape
        # Not cast: SciPy hands each element to the CDF as it is (a float32 skew widens exactly there, a complex or
        # longdouble one fails where the CDF stores its values).
        q, skew = q.ravel(), skew.ravel()
        with _warnings.catch_warnings(record=True) as caught:
            root, errors = self._ppf_flat(q, skew)
        if not errors:
            for w in caught:
                _warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            return root.reshape(shape)
        stop = min(errors) + 1
        _, errors = self._ppf_flat(q[:stop], skew[:stop])
        kind, message = errors[min(errors)]
        raise kind(message)

    def _ppf_flat(self, q, skew):
        """Roots for 1-D ``q``, ``skew`` and ``{index: (exception class, message)}`` where SciPy would raise."""
        n = q.size

        def excess(x, idx):
            return self.cdf(x, skew[idx]) - q[idx]

        a, b = self._get_support(skew)
        left = np.full(n, float(a))
        right = np.full(n, float(b))
        if np.isinf(a):
            left[:] = min(-10.0, b)
            moving = np.arange(n)
            while moving.size:
                moving = moving[excess(left[moving], moving) > 0.0]
                right[moving] = left[moving]
                left[moving] = left[moving] * 10.0
        # An element whose left end moved already has a finite right end (SciPy tests its own ``right``).
        moving = np.flatnonzero(np.isinf(right))
        if moving.size:
            right[moving] = np.maximum(10.0, left[moving])
            while moving.size:
                moving = moving[excess(right[moving], moving) < 0.0]
                left[moving] = right[moving]
                right[moving] = right[moving] * 10.0
        if n and self.xtol <= 0:  # brentq's own check, raised for the first element
            return np.zeros(n), {0: (ValueError, f"xtol too small ({self.xtol:g} <= 0)")}
        return _brentq_lockstep(excess, left, right, self.xtol)

    # ---- public methods (rv_continuous conventions)
    def _prepare(self, x, args, kwds):
        shape_args, loc, scale = self._parse_args(*args, **kwds)
        x, loc, scale = map(np.asarray, (x, loc, scale))
        shape_args = tuple(map(np.asarray, shape_args))
        dtyp = np.promote_types(x.dtype, np.float64)
        x = np.asarray((x - loc) / scale, dtype=dtyp)
        return x, shape_args, scale, dtyp

    def pdf(self, x, *args, **kwds):
        """Density at ``x`` (the numerical derivative of the CDF, as SciPy's generic ``_pdf``).

        Shape:
            x: broadcastable with skew, loc, scale; output: the broadcast shape.
        """
        x, args, scale, dtyp = self._prepare(x, args, kwds)
        cond0 = self._argcheck(*args) & (scale > 0)
        cond1 = self._support_mask(x, *args) & (scale > 0)
        cond = cond0 & cond1
        output = np.zeros(np.shape(cond), dtyp)
        np.putmask(output, 1 - cond0 + np.isnan(x), self.badvalue)
        if np.any(cond):
            *good, good_scale = _reduce(cond, x, *args, scale)
            np.place(output, cond, self._pdf(*good) / good_scale)
        return output[()] if output.ndim == 0 else output

    def logpdf(self, x, *args, **kwds):
        """Log of :meth:`pdf` (NaN where the numerical density is negative).

        Shape:
            x: broadcastable with skew, loc, scale; output: the broadcast shape.
        """
        x, args, scale, dtyp = self._prepare(x, args, kwds)
        cond0 = self._argcheck(*args) & (scale > 0)
        cond1 = self._support_mask(x, *args) & (scale > 0)
        cond = cond0 & cond1
        output = np.full(np.shape(cond), -np.inf, dtyp)
        np.putmask(output, 1 - cond0 + np.isnan(x), self.badvalue)
        if np.any(cond):
            *good, good_scale = _reduce(cond, x, *args, scale)
            np.place(output, cond, self._logpdf(*good) - np.log(good_scale))
        return output[()] if output.ndim == 0 else output

    def _tail(self, x, args, kwds, upper, log):
        """cdf/sf and their logs: 0/1 (or -inf/0) outside the open support, the law inside, badvalue if invalid."""
        x, args, scale, dtyp = self._prepare(x, args, kwds)
        a, b = self._get_support(*args)
        cond0 = self._argcheck(*args) & (scale > 0)
        cond1 = self._open_support_mask(x, *args) & (scale > 0)
        beyond = ((x >= np.asarray(b)) & cond0) if not upper else (cond0 & (x <= a))
        cond = cond0 & cond1
        output = np.full(np.shape(cond), -np.inf, dtyp) if log else np.zeros(np.shape(cond), dtyp)
        invalid = (1 - cond0) * (cond1 == cond1) if (log and not upper) else 1 - cond0
        np.place(output, invalid + np.isnan(x), self.badvalue)
        np.place(output, beyond, 0.0 if log else 1.0)
        if np.any(cond):
            good = _reduce(cond, x, *args)
            core = {(False, False): self._cdf, (False, True): self._logcdf,
                    (True, False): self._sf, (True, True): self._logsf}[(upper, log)]  # fmt: skip
            np.place(output, cond, core(*good))
        return output[()] if output.ndim == 0 else output

    def cdf(self, x, *args, **kwds):
        """CDF at ``x``.

        Shape:
            x: broadcastable with skew, loc, scale; output: the broadcast shape.
        """
        return self._tail(x, args, kwds, upper=False, log=False)

    def logcdf(self, x, *args, **kwds):
        """Log CDF (``log1p(-sf)`` at and above the median).

        Shape:
            x: broadcastable with skew, loc, scale; output: the broadcast shape.
        """
        return self._tail(x, args, kwds, upper=False, log=True)

    def sf(self, x, *args, **kwds):
        """Survival function ``1 - cdf``.

        Shape:
            x: broadcastable with skew, loc, scale; output: the broadcast shape.
        """
        return self._tail(x, args, kwds, upper=True, log=False)

    def logsf(self, x, *args, **kwds):
        """Log survival function (``log1p(-cdf)`` at and below the median).

        Shape:
            x: broadcastable with skew, loc, scale; output: the broadcast shape.
        """
        return self._tail(x, args, kwds, upper=True, log=True)

    def _quantile(self, q, args, kwds, upper):
        shape_args, loc, scale = self._parse_args(*args, **kwds)
        q, loc, scale = map(np.asarray, (q, loc, scale))
        shape_args = tuple(map(np.asarray, shape_args))
        a, b = self._get_support(*shape_args)
        cond0 = self._argcheck(*shape_args) & (scale > 0) & (loc == loc)
        cond1 = (0 < q) & (q < 1)
        at_low = cond0 & (q == (1 if upper else 0))
        at_high = cond0 & (q == (0 if upper else 1))
        cond = cond0 & cond1
        output = np.full(np.shape(cond), fill_value=self.badvalue)
        lower_bound = a * scale + loc
        upper_bound = b * scale + loc
        np.place(output, at_low, _reduce(at_low, lower_bound)[0])
        np.place(output, at_high, _reduce(at_high, upper_bound)[0])
        if np.any(cond):
            *good, good_scale, good_loc = _reduce(cond, q, *shape_args, scale, loc)
            root = self._isf(*good) if upper else self._ppf(*good)
            np.place(output, cond, root * good_scale + good_loc)
        return output[()] if output.ndim == 0 else output

    def ppf(self, q, *args, **kwds):
        """Quantile function (inverse of :meth:`cdf`) by root finding; the support's ends at ``q`` = 0 and 1.

        Shape:
            q: broadcastable with skew, loc, scale; output: the broadcast shape.
        """
        return self._quantile(q, args, kwds, upper=False)

    def isf(self, q, *args, **kwds):
        """Inverse survival function, ``ppf(1 - q)``.

        Shape:
            q: broadcastable with skew, loc, scale; output: the broadcast shape.
        """
        return self._quantile(q, args, kwds, upper=True)

    def interval(self, confidence, *args, **kwds):
        """Central interval ``(ppf((1 - confidence) / 2), ppf((1 + confidence) / 2))``.

        Raises:
            ValueError: ``alpha must be between 0 and 1 inclusive``.

        Shape:
            confidence: broadcastable with skew, loc, scale; output: two arrays of the broadcast shape.
        """
        alpha = np.asarray(confidence)
        if np.any((alpha > 1) | (alpha < 0)):
            raise ValueError("alpha must be between 0 and 1 inclusive")
        return self.ppf((1.0 - alpha) / 2, *args, **kwds), self.ppf((1.0 + alpha) / 2, *args, **kwds)

    def median(self, *args, **kwds):
        """``ppf(0.5)``.

        Shape:
            output: the broadcast shape of skew, loc, scale.
        """
        return self.ppf(0.5, *args, **kwds)

    def support(self, *args, **kwargs):
        """Ends of the support, ``(a scale + loc, b scale + loc)``; ``badvalue`` for invalid parameters.

        Shape:
            output: two arrays (or scalars) of the broadcast shape of skew, loc, scale.
        """
        shape_args, loc, scale = self._parse_args(*args, **kwargs)
        *shape_args, loc, scale = np.broadcast_arrays(*shape_args, loc, scale)
        cond = self._argcheck(*shape_args) & (scale > 0)
        a, b = self._get_support(*shape_args)
        if cond.all():
            return a * scale + loc, b * scale + loc
        if cond.ndim == 0:
            return self.badvalue, self.badvalue
        a, b = np.asarray(a).astype("d"), np.asarray(b).astype("d")
        out_a, out_b = a * scale + loc, b * scale + loc
        np.place(out_a, 1 - cond, self.badvalue)
        np.place(out_b, 1 - cond, self.badvalue)
        return out_a, out_b

    def rvs(self, *args, **kwds):
        """Random variates by inversion: ``ppf(U)`` for uniform ``U`` from ``random_state``, then ``loc``/``scale``.

        Keyword arguments besides the shape, ``loc`` and ``scale``: ``size`` (output shape), ``random_state``
        (seed or NumPy random state for this call only) and ``discrete`` (round down to int64).

        Raises:
            ValueError: SciPy's domain-error message for a non-finite ``skew`` or negative ``scale``, or
                ``size does not match the broadcast shape of the parameters. ...``.

        Shape:
            output: ``size``, or the broadcast shape of skew, loc, scale when ``size`` is None.
        """
        discrete = kwds.pop("discrete", None)
        seed = kwds.pop("random_state", None)
        shape_args, loc, scale, size = self._parse_args_rvs(*args, **kwds)
        if not np.all(np.logical_and(self._argcheck(*shape_args), scale >= 0)):
            raise ValueError(
                "Domain error in arguments. The `scale` parameter must be positive for all distributions, and many "
                "distributions have restrictions on shape parameters. Please see the "
                f"`scipy.stats.{self.name}` documentation for details."
            )
        if np.all(scale == 0):
            return loc * np.ones(size, "d")
        random_state = self._random_state if seed is None else _check_random_state(seed)
        values = self._rvs(*shape_args, size=size, random_state=random_state) * scale + loc
        if discrete:
            values = int(values) if size == () else values.astype(np.int64)
        return values

    def freeze(self, *args, **kwds):
        """The distribution with its shape, ``loc`` and ``scale`` fixed (see :class:`_FrozenRefinedNormal`)."""
        return _FrozenRefinedNormal(self, *args, **kwds)

    def __call__(self, *args, **kwds):
        return self.freeze(*args, **kwds)


def _parse_args(self, skew, loc=0, scale=1):
    return (skew,), loc, scale


def _parse_args_rvs(self, skew, loc=0, scale=1, size=None):
    return self._argcheck_rvs(skew, loc, scale, size=size)


# Defined outside the class so that a wrong call raises SciPy's message, e.g. "_parse_args() missing 1 required
# positional argument: 'skew'" (SciPy generates these parsers at run time; a method's name would carry the class).
RefinedNormal._parse_args = _parse_args
RefinedNormal._parse_args_rvs = _parse_args_rvs


class _FrozenRefinedNormal:
    """:class:`RefinedNormal` with fixed arguments, like SciPy's ``rv_continuous_frozen``.

    Holds ``args``, ``kwds``, its own copy ``dist`` of the distribution (same constructor settings) and the
    support ends ``a``, ``b``; its methods forward to ``dist`` with the fixed arguments.
    """

    def __init__(self, dist, *args, **kwds):
        self.args = args
        self.kwds = kwds
        params = dict(dist._ctor_param, a=dist.a, b=dist.b, xtol=dist.xtol, badvalue=dist.badvalue,
                      name=dist.name, shapes=dist.shapes)  # fmt: skip
        self.dist = dist.__class__(**params)
        shape_args, _, _ = self.dist._parse_args(*args, **kwds)
        self.a, self.b = self.dist._get_support(*shape_args)

    @property
    def random_state(self):
        return self.dist._random_state

    @random_state.setter
    def random_state(self, seed):
        self.dist._random_state = _check_random_state(seed)

    def cdf(self, x):
        return self.dist.cdf(x, *self.args, **self.kwds)

    def logcdf(self, x):
        return self.dist.logcdf(x, *self.args, **self.kwds)

    def sf(self, x):
        return self.dist.sf(x, *self.args, **self.kwds)

    def logsf(self, x):
        return self.dist.logsf(x, *self.args, **self.kwds)

    def pdf(self, x):
        return self.dist.pdf(x, *self.args, **self.kwds)

    def logpdf(self, x):
        return self.dist.logpdf(x, *self.args, **self.kwds)

    def ppf(self, q):
        return self.dist.ppf(q, *self.args, **self.kwds)

    def isf(self, q):
        return self.dist.isf(q, *self.args, **self.kwds)

    def median(self):
        return self.dist.median(*self.args, **self.kwds)

    def interval(self, confidence=None):
        return self.dist.interval(confidence, *self.args, **self.kwds)

    def support(self):
        return self.dist.support(*self.args, **self.kwds)

    def rvs(self, size=None, random_state=None):
        kwds = dict(self.kwds, size=size, random_state=random_state)
        return self.dist.rvs(*self.args, **kwds)


def _brentq_lockstep(f, xa, xb, xtol, rtol=_BRENT_RTOL, maxiter=_BRENT_MAXITER):
    """Brent's method for many brackets at once, each element taking exactly the steps of ``scipy.optimize.brentq``.

    ``f(x, idx)`` evaluates the functions of elements ``idx`` at ``x`` (1-D arrays); it is only called for elements
    still iterating. The floating-point operations are those of SciPy's C routine, element by element, so roots are
    bit-identical. Returns the roots and ``{index: (exception class, message)}`` for elements where SciPy would
    raise (a NaN function value, brackets of equal sign, no convergence in ``maxiter`` steps).

    Shape:
        xa, xb: (n,) float64; output: roots (n,) float64 (undefined where an error is reported).
    """
    n = xa.size
    root = np.zeros(n)
    errors = {}
    if n == 0:
        return root, errors
    saved = np.geterr()

    def evaluate(x, idx):
        with np.errstate(**saved):
            values = np.asarray(f(x, idx), dtype=np.float64)
        bad = np.isnan(values)
        for i, xi in zip(idx[bad].tolist(), x[bad].tolist()):
            errors[i] = (ValueError, f"The function value at x={xi} is NaN; solver cannot continue.")
        return values, ~bad

    with np.errstate(all="ignore"):
        xpre, xcur = xa.astype(np.float64).copy(), xb.astype(np.float64).copy()
        everyone = np.arange(n)
        fpre = np.zeros(n)
        fcur = np.zeros(n)
        fpre[:], ok = evaluate(xpre, everyone)
        live = everyone[ok]
        fcur[live], ok = evaluate(xcur[live], live)
        live = live[ok]
        for i in live[fpre[live] * fcur[live] > 0].tolist():
            errors[i] = (ValueError, "f(a) and f(b) must have different signs")
        live = live[~(fpre[live] * fcur[live] > 0)]
        at_pre = live[fpre[live] == 0]
        root[at_pre] = xpre[at_pre]
        live = live[fpre[live] != 0]
        at_cur = live[fcur[live] == 0]
        root[at_cur] = xcur[at_cur]
        active = np.zeros(n, dtype=bool)
        active[live[fcur[live] != 0]] = True

        xblk, fblk, spre, scur = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        for _ in range(maxiter):
            if not active.any():
                break
            flip = active & (fpre != 0) & (fcur != 0) & (np.signbit(fpre) != np.signbit(fcur))
            xblk = np.where(flip, xpre, xblk)
            fblk = np.where(flip, fpre, fblk)
            spre = np.where(flip, xcur - xpre, spre)
            scur = np.where(flip, xcur - xpre, scur)
            swap = active & (np.abs(fblk) < np.abs(fcur))
            xpre, xcur, xblk = np.where(swap, xcur, xpre), np.where(swap, xblk, xcur), np.where(swap, xcur, xblk)
            fpre, fcur, fblk = np.where(swap, fcur, fpre), np.where(swap, fblk, fcur), np.where(swap, fcur, fblk)

            delta = (xtol + rtol * np.abs(xcur)) / 2
            sbis = (xblk - xcur) / 2
            done = active & ((fcur == 0) | (np.abs(sbis) < delta))
            root[done] = xcur[done]
            active &= ~done

            interpolate = xpre == xblk
            secant = -fcur * (xcur - xpre) / (fcur - fpre)
            dpre = (fpre - fcur) / (xpre - xcur)
            dblk = (fblk - fcur) / (xblk - xcur)
            inverse_quadratic = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
            stry = np.where(interpolate, secant, inverse_quadratic)
            bound_a, bound_b = np.abs(spre), 3 * np.abs(sbis) - delta
            short = (np.abs(spre) > delta) & (np.abs(fcur) < np.abs(fpre))
            short &= 2 * np.abs(stry) < np.where(bound_a < bound_b, bound_a, bound_b)
            spre = np.where(active, np.where(short, scur, sbis), spre)
            scur = np.where(active, np.where(short, stry, sbis), scur)

            xpre = np.where(active, xcur, xpre)
            fpre = np.where(active, fcur, fpre)
            step = np.where(np.abs(scur) > delta, scur, np.where(sbis > 0, delta, -delta))
            xcur = np.where(active, xcur + step, xcur)
            idx = np.flatnonzero(active)
            if idx.size:
                values, ok = evaluate(xcur[idx], idx)
                fcur[idx] = values
                active[idx[~ok]] = False
        for i in np.flatnonzero(active).tolist():
            errors[i] = (RuntimeError, f"Failed to converge after {maxiter} iterations.")
    return root, errors


# ------------------------------------------------------------------------------ torch-only extras (ours)
_INV_SQRT_2PI = 1.0 / _math.sqrt(2.0 * _math.pi)
# Bisection bracket in standard units. G is within float64 rounding of 0/1 well before |x| = 40 for any
# skew a Poisson-binomial row can produce (|skew| <= 1/sigma), and phi(40) underflows to 0.
_PPF_BOUND = 40.0
# 80 / 2**64 is below the float64 spacing near any root, so 64 halvings reach the closest representable value.
_PPF_STEPS = 64


def _std_normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z * z) * _INV_SQRT_2PI


def refined_cdf(z: torch.Tensor, skew: torch.Tensor) -> torch.Tensor:
    """Standardised refined normal CDF ``clip(Phi(z) + skew (1 - z^2) phi(z) / 6, 0, 1)`` (torch, any device).

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
    returns a crossing point. ``q <= 0`` gives -inf, ``q >= 1`` +inf.

    Shape:
        q, skew: broadcastable; output: their broadcast shape, in their promoted floating dtype.
    """
    q, skew = torch.broadcast_tensors(q, skew)
    lo = torch.full_like(q, -_PPF_BOUND)
    hi = torch.full_like(q, _PPF_BOUND)
    if q.device.type == "cpu" and _use_numpy():
        for _ in range(_PPF_STEPS):
            mid = 0.5 * (lo + hi)
            below = refined_cdf(mid, skew) < q
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
    else:
        for done in range(0, _PPF_STEPS, _PPF_LEVELS):
            lo, hi = _bisection_levels(lo, hi, q, skew, min(_PPF_LEVELS, _PPF_STEPS - done))
    x = hi
    x = torch.where(q <= 0.0, torch.full_like(x, -_math.inf), x)
    return torch.where(q >= 1.0, torch.full_like(x, _math.inf), x)


# Bisection steps taken per round of :func:`_bisection_levels` (2^levels - 1 CDF values per quantile a round).
_PPF_LEVELS = 8


def _use_numpy() -> bool:
    from rankseg._common import _NUMPY_KERNELS

    return _NUMPY_KERNELS


def _bisection_levels(lo: Tensor, hi: Tensor, q: Tensor, skew: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """``levels`` steps of :func:`refined_ppf`'s bisection at once, with the same result bit for bit.

    Every midpoint the bisection could visit in these steps is computed the way it would compute it
    (0.5 (a + b) of its interval's ends, level by level), the CDF is evaluated at all 2^levels - 1 of them in
    one vectorised call, and the leaf whose path agrees with every decision (below q: go right) gives the
    new interval. One round costs a few dozen small launches instead of ``levels`` times the CDF's; on the
    GPU the elementwise results do not depend on a value's position, so they equal the step-by-step loop's.
    (The CPU keeps the loop: torch's vectorised and scalar exp may differ in the last bit there.)

    Shape:
        lo, hi, q, skew: the same shape (...); outputs: (...) each.
    """
    ends = torch.stack([lo, hi], -1)
    for _ in range(levels):
        mids = 0.5 * (ends[..., :-1] + ends[..., 1:])
        grown = torch.empty(ends.shape[:-1] + (2 * ends.shape[-1] - 1,), dtype=ends.dtype, device=ends.device)
        grown[..., 0::2] = ends
        grown[..., 1::2] = mids
        ends = grown
    below = refined_cdf(ends[..., 1:-1], skew.unsqueeze(-1)) < q.unsqueeze(-1)
    leaves = torch.arange(2**levels, device=lo.device).unsqueeze(1)
    depth = torch.arange(levels, device=lo.device).unsqueeze(0)
    # the node a leaf's path meets at each depth (its index among the interior ends) and the way it turns there
    node = (((leaves >> (levels - depth)) * 2 + 1) << (levels - depth - 1)) - 1
    right = ((leaves >> (levels - depth - 1)) & 1).bool()
    reached = (below[..., node] == right).all(-1)
    leaf = reached.to(torch.uint8).argmax(-1, keepdim=True)
    return ends.gather(-1, leaf).squeeze(-1), ends.gather(-1, leaf + 1).squeeze(-1)


# ------------------------------------------------------------- private helpers of the BA/TRNA solvers (_ba.py)
def _continuous_cdf(value: Tensor, loc: Tensor, scale: Tensor, skew: Tensor) -> Tensor:
    """``G((value - loc) / scale)``, the refined normal CDF on the count axis *without* continuity correction.

    The solvers difference it at half-integers themselves (``pmf(k) = F(k + 1/2) - F(k - 1/2)``). ``scale = 0``
    is a point mass at ``loc`` (step CDF ``1[value >= loc]``).

    Shape:
        value, loc, scale, skew: broadcastable; output: their broadcast shape, in loc's dtype.
    """
    loc, scale, skew = broadcast_all(loc, scale, skew)
    x = torch.as_tensor(value, dtype=loc.dtype, device=loc.device)
    diff = x - loc
    positive = scale > 0
    safe = torch.where(positive, scale, torch.ones_like(scale))
    step = torch.where(diff >= 0, torch.full_like(diff, _math.inf), torch.full_like(diff, -_math.inf))
    return refined_cdf(torch.where(positive, diff / safe, step), skew)


def _central_support(dim: int, loc: Tensor, scale: Tensor, skew: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Integer support ``[low, up]`` (inclusive) of the central ``1 - p`` interval of Gamma, as the solvers use it.

    With the continuous quantiles ``q_lo = loc + scale ppf(p / 2)`` and ``q_hi = loc + scale ppf(1 - p / 2)``
    (:func:`refined_ppf`, bisection on the device): ``low = max(floor(q_lo) - 1, 0)``, ``up = min(ceil(q_hi), dim)``,
    both kept in ``[0, dim]`` with ``low <= up``. ``scale = 0`` gives the quantiles ``loc``.

    Shape:
        loc, scale, skew: broadcastable; output: two int32 tensors of their broadcast shape.
    """
    loc, scale, skew = broadcast_all(loc, scale, skew)
    half = torch.tensor([0.5 * p, 1.0 - 0.5 * p], dtype=loc.dtype, device=loc.device)
    x = refined_ppf(half.reshape((2,) + (1,) * loc.dim()), skew)
    q = loc + torch.where(scale > 0, scale * x, torch.zeros_like(x))
    low = (torch.floor(q[0]) - 1.0).clamp(0.0, float(dim))
    up = torch.ceil(q[1]).clamp(0.0, float(dim))
    up = torch.maximum(up, low)
    return low.to(torch.int32), up.to(torch.int32)
