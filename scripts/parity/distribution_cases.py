"""Differential cases for ``rankseg.distribution``: ours against rankseg 0.0.8, call by call.

Self-check (draws the specs, runs them under both packages in two worker processes, compares)::

    python scripts/parity/distribution_cases.py --official /tmp/official --calls 3000

The official package is whatever folder holds the 0.0.8 ``rankseg`` (``pip install --no-deps --target DIR
rankseg==0.0.8``). The same module is an area of :mod:`harness` (``NAME``, ``draw``, ``run``, ``compare``) and
feeds ``scripts/parity/record_distribution.py`` and ``tests/test_distribution_parity.py`` (``pinned``).

A spec is JSON: ``fn`` names the entry point (``RefinedNormalPB.cdf``, ``RefinedNormal.ppf``,
``RefinedNormal.freeze`` with ``then``, ``validate_integral``, ...), ``ctor`` the constructor arguments and
``args``/``kwargs`` the call's. Arguments are encoded so that JSON holds them exactly: ``{"float": "nan"}``,
``{"tensor": flat, "shape": s, "dtype": d, "requires_grad": b}``, ``{"ndarray": flat, "shape": s, "dtype": d}``,
``{"np": v, "dtype": d}`` (a NumPy scalar), ``{"tuple": items}``, ``{"size": dims}`` (``torch.Size``).

Comparison: the outcome kinds must agree; errors by type and message; values by structure, type, dtype, shape and
device, integers and bools exactly, floats to a relative tolerance of 1e-12 for float64 (4 eps of the dtype for
lower precisions; NaN equals NaN, signed zeros and infinities exactly); warnings as sets of (category, text), since
ours solves many quantiles at once where SciPy warns once per element; and whether the call modified its arguments.
Differences that are documented in ``rankseg/distribution.py`` are classified as ``intended`` (``INTENDED``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

NAME = "distribution"

PB_METHODS = ("cdf", "pdf", "pmf", "icdf", "interval", "expand")
# Inherited from torch.distributions.Distribution: 0.0.8 defines none of them, so they raise NotImplementedError.
PB_INHERITED = ("mean", "mode", "variance", "stddev", "entropy", "perplexity", "log_prob", "sample", "rsample",
                "sample_n", "enumerate_support")  # fmt: skip
PB_ATTRS = ("batch_shape", "event_shape", "support", "arg_constraints", "has_rsample", "has_enumerate_support",
            "repr", "set_default_validate_args")  # fmt: skip
RN_METHODS = ("cdf", "logcdf", "sf", "logsf", "pdf", "logpdf", "ppf", "isf", "interval", "median", "support", "rvs")
RN_ATTRS = ("a", "b", "xtol", "badvalue", "name", "shapes", "numargs", "moment_type", "random_state")
# SciPy computes these by numerical integration or optimisation; ours does not provide them.
RN_OMITTED = ("mean", "var", "std", "stats", "moment", "entropy", "expect", "fit", "fit_loc_scale", "nnlf",
              "generic_moment", "vecentropy")  # fmt: skip
FROZEN_METHODS = ("cdf", "logcdf", "sf", "logsf", "pdf", "logpdf", "ppf", "isf", "median", "interval", "support",
                  "rvs")  # fmt: skip
FROZEN_ATTRS = ("args", "kwds", "a", "b", "random_state", "dist")
FROZEN_OMITTED = ("mean", "var", "std", "stats", "moment", "entropy", "expect")
# Public names of 0.0.8's module that ours lacks, and the extras ours adds.
MODULE_MISSING = {"scipy"}
MODULE_EXTRAS = {"refined_cdf", "refined_pdf", "refined_ppf"}

INTENDED = {
    "module": "no `scipy` attribute (ours does not import SciPy); extras refined_cdf/refined_pdf/refined_ppf",
    "omitted": "RefinedNormal has no SciPy numerical moments/entropy/expect/fit (AttributeError in ours)",
    "shapes": "RefinedNormal(shapes=...) accepts only 'skew' (ValueError in ours)",
    "complex": "RefinedNormal refuses complex arguments (TypeError in ours; 0.0.8 evaluates SciPy's complex ndtr)",
}
_TORCH_DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "bool": torch.bool, "complex64": torch.complex64,
}  # fmt: skip


# ----------------------------------------------------------------------------------------------- arguments
def _num(x: float) -> Any:
    """A float for JSON: finite as is, else ``{"float": "nan" | "inf" | "-inf"}``."""
    return x if math.isfinite(x) else {"float": repr(float(x))}


def _flat(values: list[Any]) -> list[Any]:
    return [v if not isinstance(v, float) or math.isfinite(v) else repr(v) for v in values]


def enc_tensor(values: list[Any], shape: tuple[int, ...], dtype: str, requires_grad: bool = False) -> dict:
    return {"tensor": _flat(values), "shape": list(shape), "dtype": dtype, "requires_grad": requires_grad}


def enc_array(values: list[Any], shape: tuple[int, ...], dtype: str) -> dict:
    return {"ndarray": _flat(values), "shape": list(shape), "dtype": dtype}


def _nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    """Nested lists of ``shape`` from a flat list (the element itself for shape ())."""
    if not shape:
        return flat[0]
    step = math.prod(shape[1:])
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _unflat(values: list[Any]) -> list[Any]:
    return [float(v) if isinstance(v, str) else v for v in values]


def decode(value: Any) -> Any:
    """A JSON argument back to the Python object it encodes (a fresh object on every call)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "float" in value:
        return float(value["float"])
    if "tensor" in value:
        dtype = _TORCH_DTYPES[value["dtype"]]
        t = torch.tensor(_unflat(value["tensor"]), dtype=torch.float64).to(dtype).reshape(value["shape"])
        return t.requires_grad_() if value.get("requires_grad") else t
    if "ndarray" in value:
        dtype = np.dtype(value["dtype"])
        flat = _unflat(value["ndarray"])
        if dtype.kind in "iub":  # integer arrays hold the integral part, non-finite values as 0
            flat = [int(max(min(v, 2**62), -(2**62))) if math.isfinite(v) else 0 for v in flat]
        with np.errstate(over="ignore"):  # 1e300 as float32 is inf, by design of the spec
            arr = np.array(flat, dtype=dtype)
        if "imag" in value:
            arr = arr + 1j * np.array(_unflat(value["imag"]))
        return arr.reshape(value["shape"])
    if "np" in value:
        return np.dtype(value["dtype"]).type(_unflat([value["np"]])[0])
    if "tuple" in value:
        return tuple(decode(v) for v in value["tuple"])
    if "size" in value:
        return torch.Size(value["size"])
    if "bigint" in value:
        return int(value["bigint"])
    return {k: decode(v) for k, v in value.items()}


# ------------------------------------------------------------------------------------------------- drawing
def _strategies():
    from hypothesis import strategies as st

    special = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324])
    batch_shapes = st.sampled_from([(), (1,), (3,), (2, 3), (2, 1), (1, 3), (4, 1, 2)])

    def values(strategy, n):
        return st.lists(strategy, min_size=n, max_size=n)

    @st.composite
    def subshape(draw, shape, compatible=True):
        """A shape that broadcasts to ``shape`` (dims dropped from the left or set to 1), or an incompatible one."""
        if not compatible:
            return (5,)
        keep = draw(st.integers(0, len(shape)))
        sub = list(shape[len(shape) - keep :])
        return tuple(1 if draw(st.booleans()) and draw(st.booleans()) else d for d in sub)

    def often(valid, rare):
        return st.one_of(valid, valid, valid, valid, valid, rare)

    # Valid parameter values, and the invalid ones a broken parameter takes.
    clean = {
        "dim": st.integers(0, 150).map(float),
        "loc": st.floats(-5, 80),
        "scale": often(st.floats(0.05, 12), st.sampled_from([1e-8, 1e-300, 1e300, 5e-324])),
        "skew": often(st.one_of(st.floats(-1.5, 1.5), st.floats(-50, 50)),
                      st.sampled_from([0.0, 1e300, -1e300, 1e200, 1e306, -1e306])),
    }  # fmt: skip
    bad = {
        "dim": st.sampled_from([-1.0, 2.5, math.nan, math.inf, 1e300]),
        "loc": st.sampled_from([math.nan, math.inf, -math.inf]),
        "scale": st.sampled_from([0.0, -0.0, -1.0, math.nan, math.inf, -1e-300]),
        "skew": st.sampled_from([math.nan, math.inf, -math.inf]),
    }
    weird = [[1.0, 2.0], enc_array([1.0, 2.0], (2,), "float64"), "3", None, {"np": 2.0, "dtype": "float64"},
             {"np": 3, "dtype": "int64"}, {"np": True, "dtype": "bool"}, True,
             enc_tensor([1.0], (), "bool"), enc_tensor([1.0, 2.0], (2,), "complex64")]  # fmt: skip
    float_dtypes = ["float64"] * 5 + ["float32"] * 4 + ["float16", "bfloat16"]

    @st.composite
    def pb_param(draw, name, batch, broken):
        """One constructor parameter: a number or a tensor broadcasting to ``batch``; ``broken`` makes it invalid."""
        how = draw(st.sampled_from(["value", "value", "type", "shape", "dtype"])) if broken else ""
        if how == "type":
            return draw(st.sampled_from(weird))
        base = st.one_of(clean[name], bad[name]) if how == "value" else clean[name]
        if how != "shape" and draw(st.sampled_from(["number", "tensor", "tensor"])) == "number":
            x = draw(base)
            if name == "dim" and math.isfinite(x) and x.is_integer() and draw(st.booleans()):
                return int(x)
            return _num(x)
        sub = draw(subshape(batch, compatible=how != "shape"))
        flat = draw(values(base, math.prod(sub)))
        if how == "dtype":
            dtype = draw(st.sampled_from(["int64", "bool", "complex64", "float32"]))
            return enc_tensor(flat, sub, dtype, dtype == "float32")
        dtypes = ["float64", "float32", "int64"] if name == "dim" else float_dtypes
        dtype = draw(st.sampled_from(dtypes))
        return enc_tensor(flat, sub, dtype, "float" in dtype and draw(st.integers(0, 9)) == 0)

    @st.composite
    def pb_ctor(draw, batch):
        broken = draw(st.sampled_from([None] * 10 + ["dim", "loc", "scale", "skew"]))
        ctor = {name: draw(pb_param(name, batch, broken == name)) for name in ("dim", "loc", "scale", "skew")}
        validate = draw(st.sampled_from([None, None, None, None, True, False]))
        if validate is not None:
            ctor["validate_args"] = validate
        return ctor

    @st.composite
    def tensor_arg(draw, batch, base, dtypes, shapes=None):
        shapes = shapes or [(), batch, batch, batch, batch + (3,), batch + (3,), (3,), (2,) + batch]
        shape = draw(st.sampled_from(shapes))
        return enc_tensor(draw(values(base, math.prod(shape))), shape, draw(st.sampled_from(dtypes)))

    @st.composite
    def pb_spec(draw):
        batch = draw(batch_shapes)
        spec: dict[str, Any] = {"fn": "RefinedNormalPB", "ctor": draw(pb_ctor(batch)), "args": [], "kwargs": {}}
        if draw(st.integers(0, 15)) == 0:
            spec["default_validate"] = False
        if draw(st.integers(0, 15)) == 0:
            spec["default_dtype"] = "float64"
        main = [m for m in PB_METHODS if m != "expand"]
        member = draw(st.sampled_from(["", "expand", *main * 8, *PB_INHERITED, *PB_ATTRS]))
        if member:
            spec["fn"] += "." + member
        broken = draw(st.sampled_from([False] * 5 + [True]))
        count = st.one_of(st.floats(-3, 160), st.integers(-3, 160).map(float))
        if member in ("cdf", "pdf", "pmf", "log_prob"):
            if not broken:
                arg = draw(tensor_arg(batch, count, ["float64"] * 4 + ["float32"] * 3 + ["float16", "int64"]))
            else:
                arg = draw(st.one_of(
                    tensor_arg(batch, st.one_of(count, special), ["float64", "float32", "bool", "bfloat16"]),
                    tensor_arg(batch, count, ["float64"], shapes=[(0,), (5,), (4, 4)]),
                    st.sampled_from([3.0, 2, [1.0, 2.0], enc_array([1.0, 4.0], (2,), "float64")]),
                ))  # fmt: skip
            spec["args"] = [arg]
        elif member == "icdf":
            prob = st.floats(1e-6, 1 - 1e-6)
            if not broken:
                spec["args"] = [draw(tensor_arg(batch, prob, ["float64"] * 3 + ["float32"] * 2 + ["float16"]))]
            else:
                spec["args"] = [draw(st.one_of(
                    tensor_arg(batch, st.one_of(prob, st.sampled_from([0.0, 1.0, math.nan, -0.1, 1.5, math.inf])),
                               ["float64", "float32", "bfloat16", "int64", "bool"]),
                    tensor_arg(batch, prob, ["float64"], shapes=[(0,), (5,)]),
                    st.sampled_from([0.5, [0.5], enc_array([0.5], (1,), "float64")]),
                ))]  # fmt: skip
            if draw(st.integers(0, 2)) == 0:
                good = [1, 2, 5, 40, 100, 1000]
                spec["kwargs"]["max_iter"] = draw(st.sampled_from(good + ([0, -3, 2.0, True, "5", None] if broken
                                                                          else [])))  # fmt: skip
            if draw(st.integers(0, 2)) == 0:
                good = [1e-3, 1e-9, 1e-15, 1.0, 1e-300, 5]
                spec["kwargs"]["tol"] = _num(draw(st.sampled_from(good + ([0.0, -1e-3, math.nan, math.inf]
                                                                          if broken else []))))  # fmt: skip
                if broken and draw(st.integers(0, 3)) == 0:
                    spec["kwargs"]["tol"] = draw(st.sampled_from(["x", True, None]))
        elif member == "interval":
            tail = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 1e-4, 1e-12, 0.5, 1e-300]))
            if broken:
                tail = st.one_of(tail, st.sampled_from([math.nan, -0.1, 1.5, math.inf]))
            style = draw(st.sampled_from(["float"] * 4 + ["tensor"] * 4 + ["list", "ndarray"]
                                         + (["weird"] * 3 if broken else [])))  # fmt: skip
            if style == "float":
                p = _num(draw(tail))
            elif style == "tensor":
                dtypes = ["float64", "float32", "float16", "int64"] + (["bool", "complex64"] if broken else [])
                shapes = [(), batch, batch, (3,), batch + (1,)] + ([(0,), (5,)] if broken else [])
                p = draw(tensor_arg(batch, tail, dtypes, shapes=shapes))
            elif style == "list":
                p = [_num(v) for v in draw(st.lists(tail, min_size=0 if broken else 1, max_size=3))]
            elif style == "ndarray":
                shape = draw(st.sampled_from([(), (3,), batch, (2, 1)]))
                dtype = draw(st.sampled_from(["float64", "float32", "int64", "float16"] + (["bool"] if broken else [])))
                p = enc_array(draw(values(tail, math.prod(shape))), shape, dtype)
            else:
                p = draw(st.sampled_from([None, "0.1", [[0.1], [0.2, 0.3]], [0.1, "a"], True,
                                          {"np": 0.25, "dtype": "float32"}, {"np": 0, "dtype": "int64"}]))  # fmt: skip
            spec["args"] = [p]
        elif member == "expand":
            shape = draw(st.sampled_from([batch, (5,) + batch, (2,) + batch, (7,), (3, 3)]))
            spec["args"] = [draw(st.sampled_from([list(shape), {"tuple": list(shape)}, {"size": list(shape)}]))]
        elif member in ("sample", "rsample"):
            spec["args"] = draw(st.sampled_from([[], [{"size": [2]}]]))
        elif member == "sample_n":
            spec["args"] = [2]
        elif member == "set_default_validate_args":
            spec["args"] = [draw(st.sampled_from([True, False, 1, "yes"]))]
        return spec

    @st.composite
    def array_like(draw, base, shapes=((), (3,), (2, 3), (2, 1))):
        """A number, list, ndarray or tensor of ``base`` values (NumPy broadcasts them all)."""
        style = draw(st.sampled_from(["float"] * 3 + ["list", "ndarray", "ndarray", "tensor", "int"]))
        if style == "float":
            return _num(draw(base))
        if style == "int":
            return draw(st.integers(-3, 3))
        shape = draw(st.sampled_from(shapes))
        flat = draw(values(base, math.prod(shape)))
        if style == "list":
            return _nest([_num(v) for v in flat], shape)
        if style == "ndarray":
            dtype = draw(st.sampled_from(["float64", "float32", "int64"]))
            if dtype == "int64":  # integral values that int64 holds
                flat = [float(round(min(max(v, -1e9), 1e9))) if math.isfinite(v) else 0.0 for v in flat]
            return enc_array(flat, shape, dtype)
        return enc_tensor(flat, shape, draw(st.sampled_from(["float64", "float32"])))

    # Broken RefinedNormal specs break one thing: a parameter value, an argument, a keyword or the constructor.
    rn_breaks = ["skew", "scale", "first", "missing", "keyword", "shape", "ctor", "dtype"]
    x_clean = often(st.floats(-8, 8), st.sampled_from([math.inf, -math.inf, 0.0, -0.0, 40.0, -40.0, 1e200]))
    q_clean = often(st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.5, 1e-300, 1 - 1e-16, 5e-324]))
    skew_clean = often(st.one_of(st.floats(-2, 2), st.floats(-40, 40)), st.sampled_from([0.0, 1e300, 1e306]))

    @st.composite
    def rn_params(draw, broken):
        """Shape and loc/scale arguments, positional or keyword."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        skew_v = st.sampled_from([math.nan, math.inf, -math.inf]) if broken == "skew" else skew_clean
        shapes = ((5,), (2, 2)) if broken == "shape" else ((), (3,), (2, 1), (4, 1))
        skew = draw(array_like(skew_v, shapes=shapes))
        where = "missing" if broken == "missing" else draw(st.sampled_from(["pos", "kw"]))
        if where == "pos":
            args.append(skew)
        elif where == "kw":
            kwargs["skew"] = skew
        if draw(st.integers(0, 3)) == 0:
            kwargs["loc"] = draw(array_like(st.floats(-10, 10), shapes=((), (3,))))
        if broken == "scale" or draw(st.integers(0, 3)) == 0:
            scale = st.sampled_from([0.0, -1.0, math.nan, math.inf]) if broken == "scale" else st.floats(0.1, 10)
            kwargs["scale"] = draw(array_like(scale, shapes=((), (3,))))
        if broken == "keyword":
            kwargs[draw(st.sampled_from(["foo", "size", "moments"]))] = 1
        return args, kwargs

    @st.composite
    def rn_ctor(draw, broken):
        options = {
            "xtol": [1e-10, 1e-3, 1e-14], "badvalue": [0.0, -1.0, 7, None], "a": [-5.0, 0.0, {"float": "-inf"}, -0.5],
            "b": [3.0, 100.0, {"float": "inf"}, 0.5], "name": ["refined", "x"], "seed": [0, 123, None],
            "shapes": ["skew", " skew "], "momtype": [0, 1],
        }  # fmt: skip
        bad_options = {"xtol": [0.0, -1.0], "seed": ["bad", 1.5], "shapes": ["g", "a, b", 5, "class", "1x"]}
        ctor: dict[str, Any] = {}
        if broken == "ctor":
            key = draw(st.sampled_from(sorted(bad_options)))
            ctor[key] = draw(st.sampled_from(bad_options[key]))
        elif draw(st.integers(0, 4)) == 0:
            for key in draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=2, unique=True)):
                ctor[key] = draw(st.sampled_from(options[key]))
        return ctor

    @st.composite
    def rn_spec(draw):
        member = draw(st.sampled_from([*(m for m in RN_METHODS for _ in range(4)), *RN_ATTRS, "", "entropy",
                                       "freeze", "freeze", "freeze", "__call__"]))  # fmt: skip
        broken = draw(st.sampled_from([None] * 12 + rn_breaks))
        spec: dict[str, Any] = {"fn": "RefinedNormal" + ("." + member if member else ""), "ctor": draw(rn_ctor(broken))}
        args, kwargs = draw(rn_params(broken))
        spec["seed"] = draw(st.integers(0, 2**16))
        if member in ("freeze", "__call__"):
            spec["frozen"] = {"args": args, "kwargs": kwargs}
            then = draw(st.sampled_from([*FROZEN_METHODS, *FROZEN_METHODS, *FROZEN_ATTRS]))
            spec["then"] = then
            args, kwargs = [], {}
            member = then
        first = {"cdf": x_clean, "logcdf": x_clean, "sf": x_clean, "logsf": x_clean, "pdf": x_clean,
                 "logpdf": x_clean, "ppf": q_clean, "isf": q_clean, "interval": q_clean}.get(member)  # fmt: skip
        if first is not None:
            if broken == "first":
                first = st.sampled_from([math.nan, 1.5, -0.5, math.inf] if member in ("ppf", "isf", "interval")
                                        else [math.nan])  # fmt: skip
            lead = draw(array_like(first))
            args = [lead, *args]
        if broken == "dtype":
            exotic = enc_array([0.3, -0.2], (2,), draw(st.sampled_from(["complex128", "longdouble", "object", "bool"])))
            if exotic["dtype"] == "complex128" and draw(st.booleans()):
                exotic["imag"] = [0.0, 0.1]
            position = draw(st.sampled_from(["first", "skew"]))
            if position == "first" and args and first is not None:
                args[0] = exotic
            elif "skew" in kwargs:
                kwargs["skew"] = exotic
            elif args:
                args[-1] = exotic
        if member == "rvs":
            rvs_kw = {}
            if draw(st.booleans()):
                rvs_kw["size"] = draw(st.sampled_from([None, 3, [2, 3], {"tuple": [4]}, {"tuple": [2, 1]}, 0]))
            if draw(st.booleans()):
                rvs_kw["random_state"] = draw(st.sampled_from([None, 7, 2**31]))
            if draw(st.integers(0, 4)) == 0:
                rvs_kw["discrete"] = True
            if "then" in spec:
                args = [rvs_kw.get("size")] if "size" in rvs_kw else []
                kwargs = {"random_state": rvs_kw["random_state"]} if "random_state" in rvs_kw else {}
            else:
                kwargs.update(rvs_kw)
        if (member in RN_ATTRS or member in FROZEN_ATTRS or member == "") and "then" not in spec:
            args, kwargs = [], {}
        spec["args"], spec["kwargs"] = args, kwargs
        return spec

    @st.composite
    def module_spec(draw):
        fn = draw(st.sampled_from(["validate_finite_real", "validate_integral", "validate_finite_real",
                                   "validate_integral", "SUPPORTED_PROB_DTYPES", "module", "members"]))  # fmt: skip
        if fn == "members":
            return {"fn": fn, "of": draw(st.sampled_from(["RefinedNormalPB", "RefinedNormal", "frozen"]))}
        value = draw(st.sampled_from([
            1, 1.5, True, False, "x", {"float": "nan"}, {"float": "inf"}, -2, None, {"np": 2.5, "dtype": "float32"},
            {"np": 4, "dtype": "int16"}, enc_tensor([1.0], (), "float64"), {"bigint": str(10**400)}, [1], 0.0,
        ]))  # fmt: skip
        return {"fn": fn, "args": ["max_iter", value] if fn.startswith("validate") else []}

    return st.one_of(pb_spec(), pb_spec(), pb_spec(), rn_spec(), rn_spec(), module_spec())


def draw(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` JSON call specs drawn with hypothesis; the same list for the same ``seed``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out: list[dict[str, Any]] = []
    round_ = 0
    while len(out) < n:

        @hseed(seed * 1000 + round_)
        @settings(max_examples=n - len(out), phases=[Phase.generate], database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(_strategies())
        def collect(spec: dict[str, Any]) -> None:
            out.append(json.loads(json.dumps(spec)))

        collect()
        round_ += 1
    return out[:n]


# ------------------------------------------------------------------------------------------------- running
def _random_state_summary(rs: Any) -> dict[str, Any]:
    if isinstance(rs, np.random.RandomState):
        state = rs.get_state()
        return {"type": "RandomState", "key": [int(v) for v in state[1][:4]], "pos": int(state[2])}
    return {"type": type(rs).__name__}


def _plain(value: Any) -> Any:
    """Outcome values without live objects: distributions, random states and constraints become plain data."""
    from torch.distributions import Distribution, constraints

    if isinstance(value, (torch.Tensor, np.ndarray, np.generic, int, float, str, bool, type(None))):
        return value
    if isinstance(value, torch.Size):
        return {"torch.Size": list(value)}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, constraints.Constraint):
        return {"constraint": repr(value)}
    if isinstance(value, (np.random.RandomState, np.random.Generator)):
        return _random_state_summary(value)
    if isinstance(value, Distribution):
        return {
            "distribution": type(value).__name__,
            "params": {k: _plain(getattr(value, k)) for k in ("dim", "loc", "scale", "skew")},
            "batch_shape": list(value.batch_shape), "event_shape": list(value.event_shape),
            "validate_args": bool(value._validate_args),
        }  # fmt: skip
    if hasattr(value, "dist") and hasattr(value, "kwds"):  # a frozen RefinedNormal
        return {"frozen": {"args": _plain(value.args), "kwds": _plain(value.kwds), "a": _plain(value.a),
                           "b": _plain(value.b)}}  # fmt: skip
    if type(value).__name__ == "RefinedNormal":
        return {"RefinedNormal": {k: _plain(getattr(value, k)) for k in RN_ATTRS}}
    return {"object": type(value).__name__}


def _execute(spec: dict[str, Any], args: list[Any], kwargs: dict[str, Any], ctor: dict[str, Any]) -> Any:
    import rankseg.distribution as D

    fn = spec["fn"]
    if fn == "module":
        return sorted(n for n in vars(D) if not n.startswith("_"))
    if fn == "members":
        owner = {"RefinedNormalPB": D.RefinedNormalPB, "RefinedNormal": D.RefinedNormal(),
                 "frozen": D.RefinedNormal()(0.3)}[spec["of"]]  # fmt: skip
        return sorted(n for n in dir(owner) if not n.startswith("_"))
    if fn == "SUPPORTED_PROB_DTYPES":
        return [str(d) for d in D.SUPPORTED_PROB_DTYPES]
    if fn in ("validate_finite_real", "validate_integral"):
        return getattr(D, fn)(*args)
    head, _, member = fn.partition(".")
    if head == "RefinedNormalPB":
        if member == "set_default_validate_args":
            return D.RefinedNormalPB.set_default_validate_args(*args)
        dist = D.RefinedNormalPB(**ctor)
        if member in ("", "batch_shape", "event_shape", "support", "arg_constraints", "has_rsample",
                      "has_enumerate_support", "mean", "mode", "variance", "stddev"):  # fmt: skip
            return dist if not member else getattr(dist, member)
        if member == "repr":
            return repr(dist)
        return getattr(dist, member)(*args, **kwargs)
    dist = D.RefinedNormal(**ctor)
    if not member:
        return dist
    if member in ("freeze", "__call__"):
        frozen = getattr(dist, member)(*decode(spec["frozen"]["args"]),
                                       **{k: decode(v) for k, v in spec["frozen"]["kwargs"].items()})  # fmt: skip
        target = getattr(frozen, spec["then"])
        return target if spec["then"] in FROZEN_ATTRS else target(*args, **kwargs)
    target = getattr(dist, member)
    return target if member in RN_ATTRS else target(*args, **kwargs)


def _inputs(spec: dict[str, Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """The call's positional and keyword arguments and the constructor's, as fresh Python objects."""
    args = decode(spec.get("args", []))
    kwargs = {k: decode(v) for k, v in spec.get("kwargs", {}).items()}
    ctor = {k: decode(v) for k, v in spec.get("ctor", {}).items()}
    return args, kwargs, ctor


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Execute ``spec`` with the importable ``rankseg``: value or error, warnings, and whether an input changed."""
    from torch.distributions import Distribution

    np.random.seed(int(spec.get("seed", 0)))
    torch.manual_seed(int(spec.get("seed", 0)))
    saved_validate = Distribution._validate_args
    saved_dtype = torch.get_default_dtype()
    outcome: dict[str, Any]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs = _inputs(spec)
        try:
            if spec.get("default_validate") is False:
                Distribution.set_default_validate_args(False)
            if spec.get("default_dtype") == "float64":
                torch.set_default_dtype(torch.float64)
            outcome = {"kind": "value", "value": _plain(_execute(spec, *inputs))}
        except Exception as error:  # every exception is an outcome to compare
            outcome = {"kind": "error", "type": type(error).__name__, "message": str(error)}
        finally:
            Distribution.set_default_validate_args(saved_validate)
            torch.set_default_dtype(saved_dtype)
    outcome["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
    outcome["inputs_changed"] = encode(list(inputs)) != encode(list(_inputs(spec)))
    return outcome


# ------------------------------------------------------------------------------------------------ encoding
def _enc_float(v: float) -> Any:
    return v if math.isfinite(v) else repr(v)


def encode(value: Any) -> Any:
    """A JSON form of an outcome value that keeps its type, dtype, shape, device and exact numbers."""
    if isinstance(value, dict) and value.get("t") in _ENCODED:
        return value
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        data = t.reshape(-1).tolist() if not t.is_complex() else [[z.real, z.imag] for z in t.reshape(-1).tolist()]
        return {"t": "tensor", "dtype": str(value.dtype), "shape": list(value.shape), "device": str(value.device),
                "requires_grad": bool(value.requires_grad), "data": _enc_data(data)}  # fmt: skip
    if isinstance(value, np.ndarray):
        data = value.reshape(-1).tolist() if value.dtype.kind != "c" else []
        return {"t": "ndarray", "dtype": str(value.dtype), "shape": list(value.shape), "data": _enc_data(data)}
    if isinstance(value, np.generic):
        return {"t": "np", "dtype": str(value.dtype), "data": _enc_data([value.item()])}
    if isinstance(value, bool):
        return {"t": "bool", "data": value}
    if isinstance(value, int):
        return {"t": "int", "data": str(value) if abs(value) > 2**53 else value}
    if isinstance(value, float):
        return {"t": "float", "data": _enc_float(value)}
    if isinstance(value, str):
        return {"t": "str", "data": value}
    if value is None:
        return {"t": "none"}
    if isinstance(value, (list, tuple)):
        return {"t": type(value).__name__, "items": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "items": {str(k): encode(v) for k, v in value.items()}}
    return {"t": "str", "data": f"<{type(value).__name__}>"}


_ENCODED = {"tensor", "ndarray", "np", "bool", "int", "float", "str", "none", "list", "tuple", "dict"}


def _enc_data(data: list[Any]) -> list[Any]:
    return [_enc_float(v) if isinstance(v, float) else v for v in data]


def encode_outcome(outcome: dict[str, Any]) -> dict[str, Any]:
    """The outcome with its value in :func:`encode` form (idempotent)."""
    out = dict(outcome)
    if out["kind"] == "value":
        out["value"] = encode(out["value"])
    return out


# ----------------------------------------------------------------------------------------------- comparing
def _rtol(dtype: str) -> float:
    """Relative tolerance for floats of ``dtype``: 1e-12 for float64, 4 eps of the dtype below that."""
    key = dtype.replace("torch.", "")
    if key in ("float64", "complex128"):
        return 1e-12
    eps = {"float32": 2.0**-23, "complex64": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}.get(key, 2.0**-23)
    return 4 * eps


def _close(a: Any, b: Any, dtype: str) -> bool:
    """Elements of a ``dtype`` array agree: exactly for ints and bools, to :func:`_rtol` for floats."""
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(_close(x, y, dtype) for x, y in zip(a, b)))  # fmt: skip
    if "float" not in dtype and "complex" not in dtype:
        return type(a) is type(b) and a == b
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if x == y:
        return math.copysign(1.0, x) == math.copysign(1.0, y)
    if math.isinf(x) or math.isinf(y):
        return False
    return abs(x - y) <= _rtol(dtype) * max(abs(x), abs(y))


def _diff(a: Any, b: Any, path: str = "value") -> str | None:
    """None if two encoded values agree, else a short description of the first difference."""
    if a.get("t") != b.get("t"):
        return f"{path}: type {a.get('t')} vs {b.get('t')}"
    t = a["t"]
    if t in ("tensor", "ndarray"):
        for key in ("dtype", "shape", "device", "requires_grad"):
            if a.get(key) != b.get(key):
                return f"{path}: {key} {a.get(key)} vs {b.get(key)}"
        if not _close(a["data"], b["data"], a["dtype"]):
            bad = [i for i, (x, y) in enumerate(zip(a["data"], b["data"])) if not _close(x, y, a["dtype"])]
            i = bad[0] if bad else 0
            return f"{path}: values differ at {len(bad)} of {len(a['data'])}, e.g. {a['data'][i]} vs {b['data'][i]}"
        return None
    if t == "np":
        if a["dtype"] != b["dtype"]:
            return f"{path}: dtype {a['dtype']} vs {b['dtype']}"
        return None if _close(a["data"], b["data"], a["dtype"]) else f"{path}: {a['data']} vs {b['data']}"
    if t == "float":
        return None if _close(a["data"], b["data"], "float64") else f"{path}: {a['data']} vs {b['data']}"
    if t in ("list", "tuple"):
        if len(a["items"]) != len(b["items"]):
            return f"{path}: length {len(a['items'])} vs {len(b['items'])}"
        for i, (x, y) in enumerate(zip(a["items"], b["items"])):
            why = _diff(x, y, f"{path}[{i}]")
            if why:
                return why
        return None
    if t == "dict":
        if set(a["items"]) != set(b["items"]):
            return f"{path}: keys {sorted(a['items'])} vs {sorted(b['items'])}"
        for k in a["items"]:
            why = _diff(a["items"][k], b["items"][k], f"{path}.{k}")
            if why:
                return why
        return None
    return None if a == b else f"{path}: {a.get('data')!r} vs {b.get('data')!r}"


def _intended(spec: dict[str, Any], ours: dict[str, Any], official: dict[str, Any]) -> str | None:
    fn = spec["fn"]
    member = fn.partition(".")[2]
    if fn == "module" and ours["kind"] == official["kind"] == "value":
        names_ours = {item["data"] for item in ours["value"]["items"]}
        names_official = {item["data"] for item in official["value"]["items"]}
        if names_ours == (names_official - MODULE_MISSING) | MODULE_EXTRAS:
            return INTENDED["module"]
    if fn == "members" and ours["kind"] == official["kind"] == "value":
        names_ours = {item["data"] for item in ours["value"]["items"]}
        names_official = {item["data"] for item in official["value"]["items"]}
        missing = {"RefinedNormal": set(RN_OMITTED), "frozen": set(FROZEN_OMITTED)}.get(spec["of"], set())
        if missing and names_ours == names_official - missing:
            return INTENDED["omitted"]
    omitted = (fn.startswith("RefinedNormal.") and member in RN_OMITTED) or (
        member in ("freeze", "__call__") and spec.get("then") in FROZEN_OMITTED)  # fmt: skip
    if omitted and ours["kind"] == "error" and ours["type"] == "AttributeError":
        return INTENDED["omitted"]
    if ours["kind"] == "error" and ours["message"] == "RefinedNormal does not support complex arguments":
        return INTENDED["complex"]
    shapes = spec.get("ctor", {}).get("shapes")
    if fn.startswith("RefinedNormal") and not fn.startswith("RefinedNormalPB") and isinstance(shapes, str):
        if shapes.replace(",", " ").split() != ["skew"] and shapes.strip() and ours["kind"] == "error":
            if ours["message"] == "RefinedNormal has exactly one shape parameter, 'skew'":
                return INTENDED["shapes"]
    return None


def compare(spec: dict[str, Any], ours: dict[str, Any], official: dict[str, Any]) -> tuple[str, str]:
    """``("same" | "intended" | "differs", explanation)`` for two outcomes of ``spec`` (raw or encoded)."""
    a, b = encode_outcome(ours), encode_outcome(official)
    why = _intended(spec, a, b)
    if why:
        return "intended", why
    if a["kind"] != b["kind"]:
        left = a.get("type", "value") + ": " + a.get("message", "")[:120]
        right = b.get("type", "value") + ": " + b.get("message", "")[:120]
        return "differs", f"ours {left!r} vs 0.0.8 {right!r}"
    if a["kind"] == "error":
        if (a["type"], a["message"]) != (b["type"], b["message"]):
            return "differs", f"error {a['type']}: {a['message'][:200]!r} vs {b['type']}: {b['message'][:200]!r}"
    else:
        why = _diff(a["value"], b["value"])
        if why:
            return "differs", why
    if a.get("inputs_changed") != b.get("inputs_changed"):
        return "differs", f"inputs changed: ours {a.get('inputs_changed')} vs 0.0.8 {b.get('inputs_changed')}"
    wa = sorted({tuple(w) for w in a.get("warnings", [])})
    wb = sorted({tuple(w) for w in b.get("warnings", [])})
    if wa != wb:
        return "differs", f"warnings {wa} vs {wb}"
    return "same", ""


def reproducer(spec: dict[str, Any]) -> str:
    """A shell line that runs ``spec`` with the ``rankseg`` on ``PYTHONPATH`` and prints its outcome."""
    return f"cd scripts/parity && python -c 'from distribution_cases import run; print(run({json.dumps(spec)}))'"


# ------------------------------------------------------------------------------------------------- pinned
def pinned() -> list[dict[str, Any]]:
    """Hand-written specs: every public name of 0.0.8's module and every error message its code can raise."""
    t = enc_tensor
    loc3 = t([3.0, 40.0, 10.0], (3,), "float64")
    scale3 = t([1.5, 5.0, 2.0], (3,), "float64")
    skew3 = t([0.3, -0.1, 0.0], (3,), "float64")
    pb = {"dim": 60, "loc": loc3, "scale": scale3, "skew": skew3}
    pb_scalar = {"dim": 10, "loc": 3.0, "scale": 1.5, "skew": 0.2}
    nan, inf = {"float": "nan"}, {"float": "inf"}
    specs: list[dict[str, Any]] = [{"fn": "module"}, {"fn": "SUPPORTED_PROB_DTYPES"}]
    specs += [{"fn": "members", "of": of} for of in ("RefinedNormalPB", "RefinedNormal", "frozen")]
    for fn in ("validate_finite_real", "validate_integral"):
        for v in (3, 2.5, True, "x", nan, inf, None, {"np": 4, "dtype": "int16"}, {"bigint": str(10**400)}):
            specs.append({"fn": fn, "args": ["tol", v]})

    def pbs(member: str, *args: Any, ctor: dict | None = None, **kwargs: Any) -> None:
        specs.append({"fn": "RefinedNormalPB" + ("." + member if member else ""), "ctor": ctor or pb,
                      "args": list(args), "kwargs": kwargs})  # fmt: skip

    # constructor: values, broadcasting, dtypes, and every validation error in 0.0.8's order
    pbs("", ctor=pb)
    pbs("", ctor=pb_scalar)
    pbs("", ctor={"dim": t([5.0], (1,), "int64"), "loc": t([1.0, 2.0], (2,), "float32"), "scale": 1.0, "skew": 0})
    pbs("", ctor={"dim": 4, "loc": 2.0, "scale": t([1.0, 2.0], (2, 1), "float32"), "skew": t([0.1], (1,), "float64")})
    for name in ("dim", "loc", "scale", "skew"):
        for bad in ([1.0], "3", None, True, t([1.0], (), "bool"), t([1.0], (), "complex64"),
                    enc_array([1.0], (1,), "float64")):  # fmt: skip
            pbs("", ctor=dict(pb_scalar, **{name: bad}))
    pbs("", ctor=dict(pb_scalar, dim=-1))
    pbs("", ctor=dict(pb_scalar, dim=2.5))
    pbs("", ctor=dict(pb_scalar, dim=t([3.0, -2.0], (2,), "float64")))
    for name, value in (("loc", nan), ("scale", 0.0), ("scale", -1.0), ("scale", nan), ("skew", nan),
                        ("loc", inf), ("scale", inf), ("skew", inf), ("skew", {"float": "-inf"})):  # fmt: skip
        pbs("", ctor=dict(pb_scalar, **{name: value}))
    pbs("", ctor=dict(pb_scalar, loc=inf, validate_args=False))
    pbs("", ctor=dict(pb_scalar, loc=[1.0], validate_args=False))
    pbs("", ctor=dict(pb_scalar, loc=t([1.0, 2.0], (2,), "float64"), scale=t([1.0, 2.0, 3.0], (3,), "float64")))
    specs.append({"fn": "RefinedNormalPB", "ctor": dict(pb_scalar, loc=nan), "default_validate": False})
    specs.append({"fn": "RefinedNormalPB.cdf", "ctor": pb_scalar, "default_dtype": "float64",
                  "args": [t([0.0, 2.0, 9.0], (3,), "float16")]})  # fmt: skip
    # cdf / pdf / pmf
    ks = t([float(k) for k in range(-1, 12)], (13,), "float64")
    pbs("cdf", ks, ctor=pb_scalar)
    pbs("cdf", t([0.0], (), "float64"), ctor=pb_scalar)
    pbs("cdf", t([2.0, 35.0, 11.0], (3,), "float32"))
    pbs("cdf", t([float(k) for k in range(12)], (3, 4), "float64"))
    pbs("cdf", t([0.0, 1.0, 2.0], (3,), "int64"))
    pbs("cdf", t([1.0, 0.0], (2,), "bool"), ctor=pb_scalar)
    pbs("cdf", t([0.0, 2.0, 9.0], (3,), "float16"), ctor=pb_scalar)
    pbs("cdf", t([0.0, 2.0, 9.0], (3,), "float16"), ctor=dict(pb_scalar, loc=t([3.0], (), "float32")))
    pbs("cdf", t([1.0, 2.0], (2,), "float64"))
    pbs("cdf", t([1.0, math.nan], (2,), "float64"), ctor=pb_scalar)
    pbs("cdf", t([1.0, math.inf, -math.inf], (3,), "float64"), ctor=pb_scalar)
    pbs("cdf", 3.0, ctor=pb_scalar)
    pbs("cdf", [1.0, 2.0], ctor=pb_scalar)
    pbs("cdf", enc_array([1.0, 2.0], (2,), "float64"), ctor=pb_scalar)
    specs.append({"fn": "RefinedNormalPB.cdf", "ctor": pb_scalar, "default_validate": False,
                  "args": [t([1.0, math.nan], (2,), "float64")]})  # fmt: skip
    pbs("cdf", t([0.0, 1.0], (2,), "float64"), ctor=dict(pb_scalar, loc=t([3.0], (), "float64", True)))
    pbs("pdf", ks, ctor=pb_scalar)
    pbs("pdf", t([2.0, 35.0, 11.0], (3,), "float32"))
    pbs("pdf", t([0.0, 30.0], (2,), "float64"), ctor=dict(pb_scalar, skew=4.0))
    pbs("pdf", t([1.0, math.nan], (2,), "float64"), ctor=pb_scalar)
    pbs("pdf", 3.0, ctor=pb_scalar)
    pbs("pmf", ks, ctor=pb_scalar)
    pbs("pmf", t([0.0, 3.0, 30.0], (3,), "float64"), ctor=dict(pb_scalar, skew=6.0))
    pbs("pmf", t([2.0, 35.0, 11.0], (3,), "float64"))
    pbs("pmf", 3.0, ctor=pb_scalar)
    # icdf: values, every validation error in order, max_iter/tol handling
    probs = t([0.001, 0.25, 0.5, 0.9, 0.999], (5,), "float64")
    pbs("icdf", probs, ctor=pb_scalar)
    pbs("icdf", t([0.3, 0.6, 0.9], (3,), "float32"))
    pbs("icdf", t([0.5] * 6, (3, 2), "float64"))
    pbs("icdf", t([1e-12, 1 - 1e-12], (2,), "float64"), ctor=dict(pb_scalar, skew=-1.2))
    pbs("icdf", probs, ctor=pb_scalar, max_iter=3)
    pbs("icdf", probs, ctor=pb_scalar, max_iter=1, tol=1e-3)
    pbs("icdf", probs, ctor=pb_scalar, tol=1e-15)
    pbs("icdf", t([0.5], (1,), "float16"), ctor=pb_scalar)
    pbs("icdf", t([0.5], (1,), "bfloat16"), ctor=pb_scalar)
    for bad in (0.5, [0.5], t([1.0], (1,), "int64"), t([1.0], (1,), "bool"), t([], (0,), "float64"),
                t([0.5, math.nan], (2,), "float64"), t([0.5, math.inf], (2,), "float64"), t([0.0], (1,), "float64"),
                t([1.0], (1,), "float64"), t([1.5], (1,), "float64")):  # fmt: skip
        pbs("icdf", bad, ctor=pb_scalar)
    for max_iter in (2.0, True, "5", None, 0, -1):
        pbs("icdf", probs, ctor=pb_scalar, max_iter=max_iter)
    for tol in ("x", True, None, nan, inf, 0.0, -1e-3):
        pbs("icdf", probs, ctor=pb_scalar, tol=tol)
    pbs("icdf", t([0.0], (1,), "float64"), ctor=pb_scalar, max_iter=0)
    # interval: values, broadcasting, SciPy root-finding failures, every validation error
    pbs("interval", 1e-4)
    pbs("interval", 0.05, ctor=pb_scalar)
    pbs("interval", 0.0, ctor=pb_scalar)
    pbs("interval", 1.0, ctor=pb_scalar)
    pbs("interval", 1, ctor=pb_scalar)
    pbs("interval", [0.1, 0.5], ctor=pb_scalar)
    pbs("interval", enc_array([0.1, 0.01, 0.5], (3,), "float32"))
    pbs("interval", enc_array([0, 1], (2,), "int64"), ctor=pb_scalar)
    pbs("interval", t([0.1, 0.01, 0.5], (3,), "float64"))
    pbs("interval", t([0.1, 0.01], (2, 1), "float32"))
    pbs("interval", t([0.3], (), "float64", True), ctor=pb_scalar)
    pbs("interval", {"np": 0.25, "dtype": "float32"}, ctor=pb_scalar)
    pbs("interval", 0.2, ctor={"dim": 100, "loc": t([5.0, 50.0, 0.2, 99.5], (2, 2), "float32"),
                               "scale": t([2.0, 7.0, 0.4, 0.5], (2, 2), "float32"), "skew": 0.0})  # fmt: skip
    pbs("interval", 0.1, ctor={"dim": t([20.0], (), "int64"), "loc": 10.0, "scale": 3.0, "skew": 0.5})
    pbs("interval", 0.1, ctor=dict(pb_scalar, skew=t([1e306], (), "float64")))  # SciPy's NaN error
    pbs("interval", t([0.1, 0.2], (2,), "float64"), ctor=dict(pb_scalar, skew=t([0.5, 1e306], (2,), "float64")))
    pbs("interval", 0.1, ctor=dict(pb_scalar, skew=t([1e300], (), "float64")))
    pbs("interval", 0.1, ctor=dict(pb_scalar, skew=1e300))
    pbs("interval", 0.1, ctor=dict(pb_scalar, skew=nan, validate_args=False))
    pbs("interval", 0.1, ctor=dict(pb_scalar, skew=25.0))
    pbs("interval", t([0.1, 0.2], (2,), "float64"))
    for bad in (None, "0.1", [[0.1], [0.2, 0.3]], [0.1, "a"], True, enc_array([1.0], (1,), "bool"),
                t([1.0], (1,), "bool"), t([0.1], (1,), "complex64"), [], t([], (0,), "float64"),
                nan, inf, t([0.1, math.nan], (2,), "float64"), -0.1, 1.5, t([1.5], (1,), "float64"),
                enc_array([math.inf], (1,), "float64"), enc_array([2.0], (1,), "float64")):  # fmt: skip
        pbs("interval", bad, ctor=pb_scalar)
    # expand and the inherited Distribution surface
    pbs("expand", [2, 3])
    pbs("expand", {"size": [4, 3]})
    pbs("expand", {"tuple": [5]}, ctor=pb_scalar)
    pbs("expand", [2])
    pbs("batch_shape")
    pbs("event_shape")
    pbs("support")
    pbs("arg_constraints")
    pbs("has_rsample")
    pbs("has_enumerate_support")
    pbs("repr")
    pbs("repr", ctor=pb_scalar)
    for member in ("mean", "mode", "variance", "stddev", "entropy", "perplexity", "rsample", "enumerate_support"):
        pbs(member)
    pbs("sample")
    pbs("sample", {"size": [2]})
    pbs("sample_n", 2)
    pbs("log_prob", t([1.0], (1,), "float64"))
    for value in (True, False, 1):
        pbs("set_default_validate_args", value)

    # RefinedNormal
    def rns(member: str, *args: Any, ctor: dict | None = None, seed: int = 0, **kwargs: Any) -> None:
        specs.append({"fn": "RefinedNormal" + ("." + member if member else ""), "ctor": ctor or {},
                      "args": list(args), "kwargs": kwargs, "seed": seed})  # fmt: skip

    xs = enc_array([-3.0, -1.0, -0.2, 0.0, 0.7, 2.0, 4.5], (7,), "float64")
    skews = enc_array([-1.0, 0.0, 0.4, 2.5], (4, 1), "float64")
    rns("")
    for ctor in ({"xtol": 1e-6}, {"badvalue": 0.0}, {"a": -2.0, "b": 3.0}, {"name": "refined", "seed": 5},
                 {"shapes": "skew"}, {"shapes": "g"}, {"shapes": 5}, {"shapes": "class"}, {"shapes": "1x"},
                 {"seed": "bad"}, {"momtype": 0}):  # fmt: skip
        rns("", ctor=ctor)
    for member in RN_ATTRS:
        rns(member)
    for member in ("cdf", "logcdf", "sf", "logsf", "pdf", "logpdf"):
        rns(member, xs, 0.3)
        rns(member, xs, skews)
        rns(member, 0.5, skew=-0.7, loc=1.0, scale=2.0)
        rns(member, [0.1, {"float": "nan"}, {"float": "inf"}, {"float": "-inf"}], skew=t([0.2], (), "float64"))
        rns(member, xs, enc_array([0.1, math.nan, math.inf], (3, 1), "float64"), scale=enc_array([1.0, 0.0, -1.0,
            math.nan], (4, 1, 1), "float64"))  # fmt: skip
    rns("cdf", 1.0, 0.3, ctor={"a": -2.0, "b": 0.5})
    rns("sf", -3.0, 0.3, ctor={"a": -2.0, "b": 0.5})
    rns("cdf", 1e200, 0.1)
    rns("pdf", enc_array([1.0, 2.0], (2,), "float64"), 0.1, scale=enc_array([1.0, 2.0, 3.0], (3,), "float64"))
    rns("cdf", 0.5)
    rns("cdf", 0.5, 0.1, foo=2)
    rns("cdf", 0.5, 0.1, 0.2, 0.3, 0.4)
    rns("cdf", xs, enc_array([0.1, 0.2], (2,), "float64"))
    rns("cdf", t([0.5, 1.0], (2,), "float32"), 0.2)
    complex_x = dict(enc_array([0.5, 0.2], (2,), "complex128"), imag=[0.0, 0.1])
    rns("cdf", complex_x, 0.3)
    rns("ppf", complex_x, 0.3)
    rns("ppf", 0.25, enc_array([0.3], (1,), "complex128"))
    rns("cdf", enc_array([0.5], (1,), "longdouble"), 0.3)
    rns("cdf", 0.5, enc_array([0.3], (1,), "longdouble"))
    rns("ppf", enc_array([0.25], (1,), "longdouble"), 0.3)
    rns("cdf", enc_array([0.5], (1,), "object"), 0.3)
    rns("cdf", t([0.5], (1,), "float64", True), 0.2)
    for member in ("ppf", "isf"):
        rns(member, enc_array([0.0, 1e-300, 0.001, 0.3, 0.5, 0.9, 1.0, -0.1, 2.0, math.nan], (10,), "float64"), 0.4)
        rns(member, enc_array([0.02, 0.7], (2,), "float32"), skews, loc=2.0, scale=3.0)
        rns(member, 0.25, skew=t([0.0, 1.0], (2,), "float64"))
        rns(member, 0.3, 0.2, ctor={"a": 1.0})
        rns(member, 0.3, 0.2, ctor={"a": -1.0, "b": 1.0, "xtol": 1e-3})
        rns(member, 0.5, 1e306)
        rns(member, 0.4, 0.1, ctor={"xtol": 0.0})
        rns(member, 0.4, 0.1, scale=0.0)
    rns("ppf", 0.5, 0.0, loc=3.0)
    rns("ppf", 0.8, 12.0)
    rns("ppf", 1e-20, -2.0)
    rns("interval", 0.9, 0.2)
    rns("interval", enc_array([0.0, 0.5, 1.0], (3,), "float64"), skews, loc=1.0)
    rns("interval", 1.5, 0.2)
    rns("interval", -0.1, 0.2)
    rns("interval", nan, 0.2)
    rns("median", 0.3)
    rns("median", skews, scale=enc_array([1.0, 2.0], (2,), "float64"))
    rns("support", 0.3)
    rns("support", 0.3, loc=1.0, scale=2.0)
    rns("support", enc_array([0.1, math.nan], (2,), "float64"))
    rns("support", nan)
    rns("support", 0.3, ctor={"a": -1.0, "b": 2.0})
    rns("rvs", 0.3, size=5, seed=11)
    rns("rvs", 0.3, size={"tuple": [2, 3]}, random_state=7)
    rns("rvs", skews, random_state=3)
    rns("rvs", skews, size=[3, 4], random_state=3)
    rns("rvs", skews, size=5, random_state=3)
    rns("rvs", 0.3, size=3, scale=0.0)
    rns("rvs", 0.3, size=3, scale=-1.0)
    rns("rvs", nan, size=3)
    rns("rvs", 0.3, size=3, random_state=7, discrete=True)
    rns("rvs", 0.3, random_state=7, discrete=True)
    rns("rvs", 0.3, size=2, random_state="bad")
    rns("rvs", 0.3, size=3, ctor={"seed": 42})
    for member in RN_OMITTED:
        args: list[Any] = [0.3]
        if member == "moment":
            args = [1, 0.3]
        elif member == "expect":
            args = [None, {"tuple": [0.3]}]
        elif member == "fit":
            args = [enc_array([0.1, -0.4, 1.2, 0.3, -1.0], (5,), "float64")]
        elif member == "fit_loc_scale":
            args = [enc_array([0.1, -0.4, 1.2], (3,), "float64"), 0.3]
        elif member in ("nnlf",):
            args = [{"tuple": [0.3, 0.0, 1.0]}, enc_array([0.1, -0.4], (2,), "float64")]
        elif member == "generic_moment":
            args = [1, 0.3]
        elif member == "vecentropy":
            args = [0.3]
        rns(member, *args)

    def frozen(then: str, *args: Any, fargs: list | None = None, fkw: dict | None = None, how: str = "freeze",
               ctor: dict | None = None, **kwargs: Any) -> None:  # fmt: skip
        specs.append({"fn": "RefinedNormal." + how, "ctor": ctor or {}, "seed": 0, "then": then, "args": list(args),
                      "kwargs": kwargs, "frozen": {"args": fargs or [], "kwargs": fkw or {}}})  # fmt: skip

    for then in ("cdf", "logcdf", "sf", "logsf", "pdf", "logpdf"):
        frozen(then, xs, fargs=[0.3], fkw={"loc": 0.5})
    frozen("ppf", enc_array([0.1, 0.5, 0.99], (3,), "float64"), fkw={"skew": -0.5, "scale": 2.0}, how="__call__")
    frozen("isf", 0.2, fargs=[0.3])
    frozen("median", fargs=[0.3])
    frozen("interval", 0.8, fargs=[0.3])
    frozen("interval", fargs=[0.3])
    frozen("support", fargs=[0.3], fkw={"loc": 2.0})
    frozen("rvs", 4, fargs=[0.3], random_state=5)
    frozen("rvs", fargs=[0.3], ctor={"seed": 9})
    for then in FROZEN_ATTRS:
        frozen(then, fargs=[0.3], fkw={"loc": 1.0}, ctor={"seed": 4, "a": -3.0})
    frozen("cdf", 0.5, how="__call__")
    frozen("cdf", 0.5, fkw={"bad": 1})
    for then in FROZEN_OMITTED:
        frozen(then, *([1] if then == "moment" else []), fargs=[0.3])
    return specs


# ------------------------------------------------------------------------------------------------ self-check
def _worker(specs_file: str, out_file: str) -> None:
    import rankseg

    specs = json.loads(Path(specs_file).read_text())
    torch.set_num_threads(1)
    outcomes, seconds = [], []
    for spec in specs:
        t0 = time.perf_counter()
        outcomes.append(encode_outcome(run(spec)))
        seconds.append(time.perf_counter() - t0)
    where = str(Path(rankseg.__file__).resolve().parent)
    Path(out_file).write_bytes(pickle.dumps({"outcomes": outcomes, "seconds": seconds, "package": where}))


def run_both(specs: list[dict[str, Any]], official: str, ours: str, tmp: str) -> dict[str, dict[str, Any]]:
    """Outcomes of ``specs`` under ours and under 0.0.8, from two concurrent worker processes."""
    specs_file = os.path.join(tmp, "specs.json")
    Path(specs_file).write_text(json.dumps(specs))
    procs = {}
    for side, path in (("ours", ours), ("official", official)):
        env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
        out = os.path.join(tmp, f"{side}.pkl")
        procs[side] = (subprocess.Popen([sys.executable, __file__, "--worker", specs_file, out], env=env, cwd=tmp), out)
    res = {}
    for side, (proc, out) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"error: the {side} worker failed (exit {proc.returncode})")
        res[side] = pickle.loads(Path(out).read_bytes())  # written a moment ago by our own worker
    if not res["official"]["package"].startswith(str(Path(official).resolve())):
        raise SystemExit(f"error: the official worker imported {res['official']['package']}, not {official}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default="/tmp/official", help="folder holding 0.0.8's rankseg package")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    t0 = time.perf_counter()
    specs = draw(args.calls, args.seed)
    print(f"drew {len(specs)} specs in {time.perf_counter() - t0:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        res = run_both(specs, args.official, str(Path(__file__).resolve().parents[2]), tmp)
    verdicts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for spec, o, r in zip(specs, res["ours"]["outcomes"], res["official"]["outcomes"]):
        verdict, why = compare(spec, o, r)
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
        if verdict == "differs" and verdicts[verdict] <= 20:
            print(f"DIFFERS {why}\n  {json.dumps(spec)}")
        if verdict == "intended":
            reasons[why] = reasons.get(why, 0) + 1
    kinds = {k: sum(o["kind"] == k for o in res["official"]["outcomes"]) for k in ("value", "error")}
    print(f"verdicts: {verdicts}; 0.0.8 returned {kinds['value']}, raised {kinds['error']}")
    for why, count in reasons.items():
        print(f"  intended x{count}: {why}")
    print(f"seconds for {len(specs)} calls: ours {sum(res['ours']['seconds']):.1f}, "
          f"0.0.8 {sum(res['official']['seconds']):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
