"""Differential cases for the solver entry points: ``rankseg.functional`` (``rankseg``, ``rankseg_rma``,
``rankdice_ba``, ``validate_probability_tensor``, ``validate_finite_real``), the same names at the package root,
and the ``RankSEG`` class (constructor, ``predict``, ``__call__``).

A spec is JSON: the function, a recipe for ``probs`` (kind, shape, dtype, seed; the tensor is rebuilt from it in
each process) and the keyword arguments, with floats that JSON cannot hold written as ``{"float": "nan"}`` and
tensors as ``{"tensor": 0.5}``. Used by :mod:`harness` (``make parity``) and by ``tests/test_functional_parity.py``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

NAME = "functional"

FUNCTIONS = (
    "functional.rankseg",
    "functional.rankseg_rma",
    "functional.rankdice_ba",
    "functional.validate_probability_tensor",
    "functional.validate_finite_real",
    "rankseg_rma",
    "rankdice_ba",
    "RankSEG",
    "RankSEG.predict",
    "RankSEG.__call__",
)
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
_BAD_DTYPES = {"int64": torch.int64, "bool": torch.bool, "complex64": torch.complex64, "uint8": torch.uint8}
# Input kinds: smooth random probabilities, ties and degenerate rows, invalid values, and non-tensors.
KINDS = (
    "softmax", "sigmoid", "uniform", "levels", "zeros", "ones", "half", "binary", "sharp",
    "nan", "inf", "negative", "above_one", "list", "ndarray", "scalar",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- inputs
def decode(value: Any) -> Any:
    """A JSON argument back to Python: ``{"float": "nan"}`` -> nan, ``{"tensor": x}`` -> torch.tensor(x)."""
    if isinstance(value, dict) and "float" in value:
        return float(value["float"])
    if isinstance(value, dict) and "tensor" in value:
        return torch.tensor(value["tensor"])
    if isinstance(value, dict) and "int" in value:
        return int(value["int"])
    if isinstance(value, dict) and "bytes" in value:
        return value["bytes"].encode()
    return value


def make_probs(recipe: dict[str, Any]) -> Any:
    """The ``probs`` argument of a spec, identical in every process (seeded CPU generator)."""
    kind, shape = recipe["kind"], list(recipe["shape"])
    gen = torch.Generator().manual_seed(int(recipe["seed"]))
    if kind == "scalar":
        return 0.5
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * float(recipe.get("scale", 3.0))
    if kind == "softmax":
        p = x.softmax(1) if len(shape) >= 2 else x.sigmoid()
    elif kind == "sigmoid":
        p = x.sigmoid()
    elif kind == "uniform":
        p = torch.rand(shape, generator=gen, dtype=torch.float64)
    elif kind == "levels":  # many exact ties, 0.5 among them
        p = torch.randint(0, 5, shape, generator=gen).double() / 4
    elif kind == "zeros":
        p = torch.zeros(shape, dtype=torch.float64)
    elif kind == "ones":
        p = torch.ones(shape, dtype=torch.float64)
    elif kind == "half":
        p = torch.full(shape, 0.5, dtype=torch.float64)
    elif kind == "binary":
        p = (x > 0).double()
    elif kind == "sharp":  # nearly deterministic rows: variance near 0
        p = (x * 50).sigmoid()
    else:
        p = x.sigmoid()
        if p.numel():
            flat = p.view(-1)
            j = int(torch.randint(0, flat.numel(), (1,), generator=gen))
            flat[j] = {"nan": math.nan, "inf": math.inf, "negative": -0.25, "above_one": 1.5}.get(kind, flat[j])
    if kind == "list":
        return p.tolist()
    if kind == "ndarray":
        return p.numpy()
    dtype = recipe.get("dtype", "float32")
    if dtype in _BAD_DTYPES:
        p = (p * 3).to(_BAD_DTYPES[dtype]) if dtype != "complex64" else p.to(torch.complex64)
    else:
        p = p.to(_DTYPES[dtype])
    if recipe.get("transpose") and p.ndim >= 4:
        p = p.transpose(-1, -2)  # non-contiguous
    return p


# ---------------------------------------------------------------------------------------------- strategies
_WORDS = {
    "metric": ["dice", "iou", "acc", "accuracy", "f1", "", "exact"],
    "output_mode": ["multiclass", "multilabel", "binary", ""],
    "solver": ["RMA", "BA", "TRNA", "BA+TRNA", "TR", "argmax", "exact", "zzz", ""],
    "unassigned_policy": ["max_score", "void", "none"],
}
_SPECIAL_FLOATS = [
    0.0, -0.0, 5e-324, 1e-308, 1e-12, 1e-6, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1.5, 2.0, 10.0, 1e3, 1e6, 1e6 + 1, 1e7,
    1e8, 1e12, 1e20, 1e100, 1e300, 1e308, 1.7976931348623157e308, -1e-12, -1.0, -1e308,
]  # fmt: skip


def _strategies():
    from hypothesis import strategies as st

    def spelled(words: list[str]):
        # case and surrounding white space vary; 0.0.8 matches strip().lower()
        return st.tuples(
            st.sampled_from(words), st.sampled_from(["", " ", "\t", "  \n"]), st.sampled_from(["", " ", "\n"]),
            st.sampled_from(["same", "upper", "lower", "title"]),
        ).map(lambda t: t[1] + {"same": t[0], "upper": t[0].upper(), "lower": t[0].lower(),
                                "title": t[0].title()}[t[3]] + t[2])  # fmt: skip

    special = st.one_of(
        st.sampled_from([{"float": "nan"}, {"float": "inf"}, {"float": "-inf"}]),
        st.sampled_from([True, False, None, "0", [0.5]]),
        st.sampled_from([{"tensor": 0.5}, {"tensor": 0.0}]),
    )
    real = st.one_of(
        st.sampled_from(_SPECIAL_FLOATS), st.floats(0, 1), st.floats(0, 1e9), st.integers(0, 3),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
    )  # fmt: skip

    def number(valid_weight: int):
        return st.one_of(*([real] * valid_weight), special)

    def word(name: str):
        return st.one_of(*([spelled(_WORDS[name])] * 8), st.sampled_from([None, 1, {"bytes": "dice"}, ["dice"]]))

    @st.composite
    def recipe(draw, fuzz: bool) -> dict[str, Any]:
        kind = draw(st.sampled_from(KINDS[:9]))
        if fuzz and draw(st.integers(0, 2)) == 0:
            kind = draw(st.sampled_from(KINDS[9:]))
        if fuzz and draw(st.integers(0, 4)) == 0:  # structural errors: too few dims, empty class or spatial dims
            shape = draw(st.lists(st.integers(0, 3), min_size=0, max_size=4))
        elif draw(st.integers(0, 99)) == 0:  # realistic row lengths (the partial-sort paths at scale)
            shape = [draw(st.integers(1, 2)), draw(st.integers(2, 8))] + [draw(st.integers(32, 64)) for _ in range(2)]
        else:
            b = draw(st.sampled_from([1, 1, 2, 3, 0]))
            c = draw(st.sampled_from([1, 2, 2, 3, 4, 5]))
            n_sp = draw(st.sampled_from([1, 2, 2, 2, 3]))
            sizes = [draw(st.integers(1, 12 if n_sp < 3 else 5)) for _ in range(n_sp)]
            shape = [b, c, *sizes]
        dtype = draw(st.sampled_from(["float32"] * 6 + ["float64"] * 3 + ["float16", "bfloat16"]))
        if fuzz and draw(st.integers(0, 9)) == 0:
            dtype = draw(st.sampled_from(sorted(_BAD_DTYPES)))
        return {
            "kind": kind, "shape": shape, "dtype": dtype, "seed": draw(st.integers(0, 2**31 - 1)),
            "scale": draw(st.sampled_from([0.5, 1.0, 3.0, 8.0])), "transpose": draw(st.booleans()),
        }  # fmt: skip

    valid_smooth = st.one_of(
        st.sampled_from([v for v in _SPECIAL_FLOATS if v >= 0]), st.floats(0, 10), st.integers(0, 3)
    )
    valid_prob = st.one_of(st.sampled_from([0, 0.0, 0.1, 0.3, 0.5, 0.5, 0.7, 0.9, 1.0, 1]), st.floats(0, 1))

    def valid_params(draw, solver: str, mode: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if solver in ("ba", "trna", "ba+trna") and draw(st.booleans()):
            out["eps"] = draw(st.sampled_from([1e-4, 1e-2, 0.3, 1e-300, 1 - 1e-16]))
        if solver == "rma":
            if draw(st.integers(0, 3)) == 0:
                out["safe_screening"] = draw(st.sampled_from([False, True, "auto"]))
            if mode == "multiclass" and draw(st.booleans()):
                out["unassigned_policy"] = draw(spelled(["max_score", "void"]))
                if out["unassigned_policy"].strip().lower() == "void" and draw(st.booleans()):
                    out["void_index"] = draw(st.sampled_from([255, -1, 9, 2**63 - 1, -(2**63)]))
        return out

    @st.composite
    def spec(draw) -> dict[str, Any]:
        fn = draw(st.sampled_from(FUNCTIONS))
        fuzz = draw(st.integers(0, 9)) < 3  # 30%: one argument (or the input) is drawn from anything, valid or not
        rec = draw(recipe(fuzz))
        c = rec["shape"][1] if len(rec["shape"]) > 1 else 2
        args: dict[str, Any] = {}
        if fn in ("functional.rankseg", "RankSEG", "RankSEG.predict", "RankSEG.__call__"):
            metric = draw(st.sampled_from(["dice", "dice", "iou", "acc", "accuracy"]))
            mode = "multilabel" if c == 1 else draw(st.sampled_from(["multiclass", "multilabel"]))
            table = {("dice", "multiclass"): ["rma"], ("dice", "multilabel"): ["rma", "ba", "trna", "ba+trna"],
                     ("iou", "multiclass"): ["rma"], ("iou", "multilabel"): ["rma"]}  # fmt: skip
            acc = ["tr"] if c == 1 else (["argmax"] if mode == "multiclass" else ["tr", "argmax"])
            solvers = table.get((metric, mode), acc) + ["exact"] * (metric != "acc" and metric != "accuracy")
            solver = draw(st.sampled_from(solvers))
            names = {"rma": "RMA", "ba": "BA", "trna": "TRNA", "ba+trna": "BA+TRNA", "tr": "TR", "argmax": "argmax",
                     "exact": "exact"}  # fmt: skip
            args.update(metric=draw(spelled([metric])), output_mode=draw(spelled([mode])),
                        solver=draw(spelled([names[solver]])))  # fmt: skip
            for name, strat in (("smooth", valid_smooth), ("pruning_prob", valid_prob)):
                if draw(st.booleans()):
                    args[name] = draw(strat)
            args.update(valid_params(draw, solver if solver != "exact" else "rma", mode))
            if solver == "exact":
                args.pop("safe_screening", None)
            for name in ("metric", "output_mode", "solver"):
                if args[name].strip().lower() == {"metric": "dice", "output_mode": "multiclass", "solver": "rma"}[name]:
                    if draw(st.integers(0, 3)) == 0:
                        del args[name]  # the default
            fuzzable = {"metric": word("metric"), "output_mode": word("output_mode"), "solver": word("solver"),
                        "smooth": number(1), "pruning_prob": number(1), "eps": _param("eps", word, number),
                        "unassigned_policy": _param("unassigned_policy", word, number),
                        "void_index": _param("void_index", word, number),
                        "safe_screening": _param("safe_screening", word, number), "foo": st.just(1)}  # fmt: skip
        elif fn in ("functional.rankseg_rma", "rankseg_rma"):
            mode = "multilabel" if c == 1 else draw(st.sampled_from(["multiclass", "multilabel"]))
            args.update(metric=draw(spelled(["dice", "iou"])), output_mode=draw(spelled([mode])))
            for name, strat in (("smooth", valid_smooth), ("pruning_prob", valid_prob)):
                if draw(st.booleans()):
                    args[name] = draw(strat)
            args.update(valid_params(draw, "rma", mode))
            fuzzable = {"metric": word("metric"), "output_mode": word("output_mode"), "smooth": number(1),
                        "pruning_prob": number(1), "unassigned_policy": _param("unassigned_policy", word, number),
                        "void_index": _param("void_index", word, number),
                        "safe_screening": _param("safe_screening", word, number)}  # fmt: skip
        elif fn in ("functional.rankdice_ba", "rankdice_ba"):
            args["solver"] = draw(spelled(["BA", "BA", "TRNA", "BA+TRNA"]))
            for name, strat in (("smooth", valid_smooth), ("pruning_prob", valid_prob)):
                if draw(st.booleans()):
                    args[name] = draw(strat)
            args.update(valid_params(draw, "ba", "multilabel"))
            fuzzable = {"solver": st.one_of(spelled(["BA", "exact", "RMA"]), st.sampled_from([None, 3])),
                        "smooth": number(1), "pruning_prob": number(1), "eps": _param("eps", word, number)}  # fmt: skip
        elif fn == "functional.validate_probability_tensor":
            for name in ("check_values", "return_bounds"):
                if draw(st.booleans()):
                    args[name] = draw(st.booleans())
            fuzzable = {}
        else:  # validate_finite_real
            args["name"] = draw(st.sampled_from(["smooth", "eps", "x"]))
            args["value"] = draw(number(3))
            fuzzable = {}
        if fuzz and fuzzable and draw(st.booleans()):
            name = draw(st.sampled_from(sorted(fuzzable)))
            args[name] = draw(fuzzable[name])
        _limit_trna(rec, args, fn)
        return {"fn": fn, "probs": rec, "args": args}

    def _param(name, word, number):
        if name == "eps":
            return st.one_of(st.sampled_from([1e-4, 1e-2, 0.5, 1e-300, 0.0, 1.0, 1 - 1e-16]), number(2))
        if name == "unassigned_policy":
            return word("unassigned_policy")
        if name == "void_index":
            return st.one_of(
                st.sampled_from([255, -1, 0, 1, 3, 2**63 - 1, {"int": str(2**63)}, {"int": str(-(2**63) - 1)}]),
                st.sampled_from([255.0, True, "255", None]),
            )
        if name == "safe_screening":
            return st.sampled_from([False, True, "auto", "AUTO", " auto", None, 1, 0])
        return st.sampled_from([1, "x", None])

    return spec()


def _limit_trna(rec: dict[str, Any], args: dict[str, Any], fn: str) -> None:
    """0.0.8's TRNA runs a Python loop per candidate size: keep its inputs small (<= 4 rows of <= 36 pixels)."""
    solver = args.get("solver", "BA" if "rankdice_ba" in fn else "RMA")
    if isinstance(solver, str) and "TRNA" in solver.strip().upper() and len(rec["shape"]) >= 3:
        b, c, *sp = rec["shape"]
        rec["shape"] = [min(b, 2), min(c, 2)] + [min(s, 6) for s in sp[:2]]


def draw(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` call specs drawn by hypothesis (deterministic for a seed)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out: list[dict[str, Any]] = []

    @hseed(seed)
    @settings(
        max_examples=n, phases=[Phase.generate], database=None, deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(_strategies())
    def collect(spec: dict[str, Any]) -> None:
        out.append(spec)

    collect()
    return out[:n]


# ---------------------------------------------------------------------------------------------- running
def _call(spec: dict[str, Any], probs: Any) -> Any:
    import rankseg
    from rankseg import functional

    fn, args = spec["fn"], {k: decode(v) for k, v in spec["args"].items()}
    if fn == "RankSEG":
        obj = rankseg.RankSEG(**args)
        return {k: getattr(obj, k) for k in ("metric", "smooth", "output_mode", "solver", "pruning_prob",
                                              "solver_params")}  # fmt: skip
    if fn.startswith("RankSEG."):
        obj = rankseg.RankSEG(**args)
        return obj.predict(probs) if fn.endswith("predict") else obj(probs)
    if fn == "functional.validate_finite_real":
        return functional.validate_finite_real(args["name"], args["value"])
    target = getattr(functional, fn.split(".")[1]) if fn.startswith("functional.") else getattr(rankseg, fn)
    return target(probs, **args)


def run(spec: dict[str, Any], promote: bool = True) -> dict[str, Any]:
    """Run one spec with whichever ``rankseg`` is importable.

    Returns:
        {"kind": "value", "value": ...} or {"kind": "error", "type", "message"}, with "warnings" (category,
        text) and, for a tensor result of a float32/half input, "promoted": the result for the same values in
        float64 (tells rounding in the computation apart from a different rule).
    """
    probs = make_probs(spec["probs"])
    before = probs.clone() if isinstance(probs, torch.Tensor) else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = _call(spec, probs)
            out: dict[str, Any] = {"kind": "value", "value": value}
        except Exception as exc:  # noqa: BLE001 - recording what is raised is the point
            out = {"kind": "error", "type": type(exc).__name__, "message": str(exc)}
    out["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
    if before is not None and not torch.equal(_bytes(before), _bytes(probs)):
        out["modified_input"] = True
    if (
        promote
        and out["kind"] == "value"
        and isinstance(out["value"], torch.Tensor)
        and isinstance(probs, torch.Tensor)
        and probs.dtype in (torch.float32, torch.float16, torch.bfloat16)
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # the same values in float64 (a half input is widened as it is, not regenerated)
                out["promoted"] = _call(spec, probs.double())
            except Exception:  # noqa: BLE001 - no promoted result; compare() then finds no explanation
                pass
    return out


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.flatten().contiguous().view(torch.uint8)


# ---------------------------------------------------------------------------------------------- comparing
def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
            and a.shape == b.shape and a.device == b.device and bool(torch.equal(a, b))
        )  # fmt: skip
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _asks_exact(spec: dict[str, Any]) -> bool:
    solver = decode(spec["args"].get("solver", "RMA"))
    return spec["fn"] in ("functional.rankseg", "RankSEG.predict", "RankSEG.__call__") and (
        isinstance(solver, str) and solver.strip().lower() == "exact"
    )


def compare(spec: dict[str, Any], ours: dict[str, Any], official: dict[str, Any]) -> tuple[str, str]:
    """("same" | "intended" | "differs", why). Results must agree in kind, value (dtype, shape, device, every
    element), warnings, exception type and message, and in leaving the input unmodified."""
    same_kind = ours["kind"] == official["kind"]
    if same_kind and ours["kind"] == "error":
        same = ours["type"] == official["type"] and ours["message"] == official["message"]
    else:
        same = same_kind and _same_value(ours["value"], official["value"])
    same = same and ours["warnings"] == official["warnings"]
    same = same and ours.get("modified_input") == official.get("modified_input")
    if same:
        return "same", ""
    if _asks_exact(spec) and official["kind"] == "error" and (
        official["message"] == "Exact solver is not implemented yet" or "solver 'exact'" in official["message"]
    ):
        return "intended", "solver='exact' is implemented here; 0.0.8 refuses it"
    if (
        same_kind
        and ours["kind"] == "value"
        and ours["warnings"] == official["warnings"]
        and "promoted" in official
        and _same_value(ours["value"], official["promoted"])
    ):
        return "intended", "0.0.8 rounds its scores in float32; ours equals 0.0.8 run on the same values in float64"
    if same_kind and ours["kind"] == "value" and _first_order_tie(spec, ours["value"], official["value"]):
        return "intended", (
            "smooth so large that the score is flat to float64 precision: the masks differ only by pixels with "
            "p = 1/2, whose first-order gain 2p - 1 is 0, and the rest of the gain, O(d^2/s), is below rounding"
        )
    if same_kind and ours["kind"] == "value" and _exact_no_worse(spec, ours["value"], official["value"]):
        return "intended", (
            "a near-tie at float64 resolution: scored exactly (rational arithmetic) with 0.0.8's objective, ours is "
            "at least as good as 0.0.8's mask and the two scores differ by less than 1e-12 relative"
        )
    if same_kind and ours["kind"] == "value" and _overflowed_empty_score(spec, ours["value"], official["value"]):
        return "intended", (
            "0.0.8 overflows at a smooth below 1/DBL_MAX (~5.6e-309): its empty-mask BA/TRNA score s E[1/(Gamma + s)] "
            "divides by s at Gamma = 0 and becomes inf or NaN, so it returns empty masks; ours scores tau = 0 as "
            "P(Gamma = 0) + O(s)"
        )
    return "differs", _describe(ours, official)


def _overflowed_empty_score(spec: dict[str, Any], a: Any, b: Any) -> bool:
    """BA-family masks where 0.0.8's rows that differ are all empty, at a smooth 0 < s < 1/DBL_MAX."""
    smooth = decode(spec["args"].get("smooth", 0.0))
    solver = decode(spec["args"].get("solver", "BA" if "rankdice_ba" in spec["fn"] else "RMA"))
    if not (isinstance(solver, str) and solver.strip().upper() in ("BA", "TRNA", "BA+TRNA")):
        return False
    if not isinstance(smooth, float) or not 0 < smooth < 1 / 1.7976931348623157e308:
        return False
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and a.ndim >= 3):
        return False
    rows_a, rows_b = a.flatten(2), b.flatten(2)
    differ = (rows_a != rows_b).any(-1)
    return bool(differ.any()) and not bool(rows_b.any(-1)[differ].any())


def _exact_no_worse(spec: dict[str, Any], a: Any, b: Any) -> bool:
    """Multilabel RMA or BA masks that are both top-tau sets of their rows and, scored exactly, ours no worse.

    Each row that differs is scored with fractions: RMA Dice 2S/(mu+tau+1+s) + s/(mu+tau+s), IoU (S+s)/(mu-S+tau+s);
    BA with 0.0.8's pmf (refined normal on its 1 - eps interval, renormalised). Intended when ours is no worse and
    the two scores are within 1e-12 relative (a decision inside float64 rounding).
    """
    from fractions import Fraction

    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype == torch.bool):
        return False
    fn, args = spec["fn"], {k: decode(v) for k, v in spec["args"].items()}
    if fn.endswith("rankdice_ba"):
        solver, metric = str(args.get("solver", "BA")).strip().lower(), "dice"
    elif fn.endswith("rankseg_rma"):
        solver, metric = "rma", str(args.get("metric", "dice")).strip().lower()
    elif fn in ("functional.rankseg", "RankSEG.predict", "RankSEG.__call__"):
        solver, metric = str(args.get("solver", "RMA")).strip().lower(), str(args.get("metric", "dice")).strip().lower()
    else:
        return False
    if solver not in ("rma", "ba") or metric not in ("dice", "iou") or a.shape != b.shape or a.ndim < 3:
        return False
    smooth, eps = float(args.get("smooth", 0.0)), float(args.get("eps", 1e-4))
    probs = make_probs(spec["probs"])
    if probs.dtype in (torch.float16, torch.bfloat16):
        probs = probs.float()
    rows = probs.flatten(2).flatten(0, 1).double()
    ra, rb = a.flatten(2).flatten(0, 1), b.flatten(2).flatten(0, 1)
    s = Fraction(smooth)
    for r in (ra != rb).any(1).nonzero().flatten().tolist():
        x = rows[r]
        for m in (ra[r], rb[r]):  # both must keep the tau largest values
            if m.any() and (~m).any() and float(x[m].min()) < float(x[~m].max()):
                return False
        v = sorted((Fraction(float(t)) for t in x), reverse=True)
        mu = sum(v)
        if solver == "rma":

            def score(t: int, v=v, mu=mu) -> Fraction:
                total = sum(v[:t])
                if metric == "dice":
                    return 2 * total / (mu + t + 1 + s) + (s / (mu + t + s) if s or t else 0)
                den = mu - total + t + s
                return (total + s) / den if den else Fraction(0)
        else:
            support, pmf = _ba_pmf(x, eps)

            def score(t: int, v=v, support=support, pmf=pmf) -> Fraction:
                total = sum(v[:t])
                return sum(q * (2 * total / (lv + t + s + 1) + (s / (lv + t + s) if lv + t + s else 0))
                           for lv, q in zip(support, pmf))  # fmt: skip

        ours, theirs = score(int(ra[r].sum())), score(int(rb[r].sum()))
        if ours < theirs or abs(ours - theirs) > Fraction(1, 10**12) * max(abs(ours), abs(theirs), Fraction(1)):
            return False
    return True


def _ba_pmf(x: torch.Tensor, eps: float) -> tuple[list[int], list[Any]]:
    """0.0.8's BA support and pmf for one row (float64): refined normal with the row's moments, its central 1 - eps
    interval, renormalised; as fractions."""
    from fractions import Fraction

    from rankseg.distribution import RefinedNormalPB

    tiny = torch.finfo(torch.float64).eps
    mu, var, m3 = x.sum(), (x * (1 - x)).sum(), (x * (1 - x) * (1 - 2 * x)).sum()
    var = var.clamp_min(tiny)
    skew = (m3 / var**1.5).reshape(1)
    law = RefinedNormalPB(dim=x.numel(), loc=mu.reshape(1), scale=var.sqrt().reshape(1), skew=skew)
    low, up = (int(t) for t in law.interval(eps))
    support = list(range(low, up + 1))
    pmf = law.pmf(torch.tensor([support])).reshape(-1)
    pmf = [Fraction(float(q)) for q in pmf]
    total = sum(pmf)
    return support, [q / total for q in pmf]


def _first_order_tie(spec: dict[str, Any], a: Any, b: Any) -> bool:
    """Multilabel masks that differ only where p == 1/2 (to float32 rounding), at a smooth s with d^2/s < 1e-13."""
    smooth = decode(spec["args"].get("smooth", 0.0))
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype == torch.bool):
        return False
    if not isinstance(smooth, (int, float)) or isinstance(smooth, bool) or a.shape != b.shape or a.ndim < 3:
        return False
    probs = make_probs(spec["probs"])
    d = math.prod(a.shape[2:])
    if not (smooth >= 1e6 and (d + 1) ** 2 / smooth < 1e-13 and probs.shape == a.shape):
        return False
    differ = a != b
    return bool(((probs.double() - 0.5).abs()[differ] <= 2**-24).all())


def _describe(ours: dict[str, Any], official: dict[str, Any]) -> str:
    def one(o: dict[str, Any]) -> str:
        if o["kind"] == "error":
            text = f"{o['type']}: {o['message']}"
        else:
            v = o["value"]
            text = f"{v.dtype} {tuple(v.shape)} sum {v.sum().item()}" if isinstance(v, torch.Tensor) else repr(v)
        return text + (f"; warnings {o['warnings']}" if o["warnings"] else "")

    if ours["kind"] == official["kind"] == "value":
        a, b = ours["value"], official["value"]
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype:
            return f"{int((a != b).sum())} of {a.numel()} elements differ; ours {one(ours)}; 0.0.8 {one(official)}"
    return f"ours {one(ours)}; 0.0.8 {one(official)}"


def reproducer(spec: dict[str, Any]) -> str:
    """A Python line that rebuilds the call (inputs from :func:`make_probs`)."""
    args = ", ".join(f"{k}={decode(v)!r}" for k, v in spec["args"].items())
    rec = spec["probs"]
    probs = f"make_probs({rec!r})"
    fn = spec["fn"]
    if fn == "RankSEG":
        return f"rankseg.RankSEG({args}).__dict__"
    if fn.startswith("RankSEG."):
        return f"rankseg.RankSEG({args}).{fn.split('.')[1]}({probs})"
    if fn == "functional.validate_finite_real":
        return f"rankseg.functional.validate_finite_real({args})"
    return f"rankseg.{fn}({probs}{', ' if args else ''}{args})"


# ---------------------------------------------------------------------------------------------- pinned subset
def pinned() -> list[dict[str, Any]]:
    """Hand-picked specs that reach every entry point and every message of 0.0.8's solver surface; their
    0.0.8 outcomes are recorded by ``harness.py --record`` and replayed by the tests without the wheel."""
    ok = {"kind": "softmax", "shape": [2, 3, 6, 5], "dtype": "float32", "seed": 1, "scale": 3.0}
    sig = dict(ok, kind="sigmoid")
    one = dict(ok, kind="sigmoid", shape=[2, 1, 6, 5])
    specs: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    add = lambda fn, rec, **kw: specs.append((fn, rec, kw))  # noqa: E731
    # every entry point on valid input
    for fn in ("functional.rankseg", "RankSEG.predict", "RankSEG.__call__"):
        add(fn, ok)
        add(fn, sig, output_mode=" MultiLabel ", metric="IoU ")
    add("RankSEG", ok, metric="f1", solver="zzz", foo=1)
    add("RankSEG", ok)
    for fn in ("functional.rankseg_rma", "rankseg_rma"):
        add(fn, ok, metric=" Dice", output_mode="MULTICLASS", unassigned_policy=" Void ", void_index=-1)
        add(fn, sig, metric="iou", output_mode="multilabel", smooth=1.0)
    for fn in ("functional.rankdice_ba", "rankdice_ba"):
        add(fn, sig, solver=" ba ")
        add(fn, dict(sig, shape=[1, 2, 5, 5]), solver="trna", smooth=0.5)
        add(fn, dict(sig, shape=[1, 2, 5, 5]), solver="BA+TRNA")
    add("functional.validate_probability_tensor", ok, return_bounds=True)
    add("functional.validate_probability_tensor", dict(ok, kind="nan"), check_values=False)
    add("functional.validate_finite_real", ok, name="smooth", value=2)
    # solvers and modes
    for metric, mode, solver in [("dice", "multilabel", "TRNA"), ("acc", "multiclass", "argmax"),
                                 ("accuracy", "multilabel", "TR"), ("acc", "multilabel", "argmax"),
                                 ("acc", "multilabel", "tr")]:  # fmt: skip
        add("functional.rankseg", dict(sig, shape=[1, 2, 5, 5]), metric=metric, output_mode=mode, solver=solver)
    add("functional.rankseg", one, metric="acc", output_mode="multilabel", solver="TR")
    add("functional.rankseg", one, output_mode="multilabel")
    add("functional.rankseg", dict(ok, shape=[0, 3, 4, 4]))
    add("functional.rankseg", dict(ok, dtype="float16"), output_mode="multilabel")
    add("functional.rankseg", dict(ok, dtype="bfloat16"), metric="iou")
    add("functional.rankseg", dict(ok, dtype="float64", shape=[1, 3, 4, 4, 3]), unassigned_policy="void")
    add("functional.rankseg", dict(ok, shape=[2, 3, 17]), metric="iou", safe_screening="auto")
    add("functional.rankseg", dict(ok, kind="levels"), output_mode="multilabel", pruning_prob=0)
    add("functional.rankseg", dict(ok, kind="zeros"), output_mode="multilabel", pruning_prob=0, smooth=1.0)
    add("functional.rankseg", dict(ok, kind="half"), pruning_prob=0.25)
    add("functional.rankseg", dict(sig, transpose=True), output_mode="multilabel", solver="BA", eps=0.01)
    for s in (1e6, 1e8, 1e308):
        add("functional.rankseg", sig, output_mode="multilabel", solver="BA", smooth=s, pruning_prob=0)
        add("functional.rankseg", ok, metric="iou", smooth=s)
    # every message, in 0.0.8's order of checks
    add("functional.rankseg", dict(ok, kind="list"))
    add("functional.rankseg", dict(ok, kind="ndarray"))
    add("functional.rankseg", dict(ok, dtype="int64"))
    add("functional.rankseg", dict(ok, dtype="bool"))
    add("functional.rankseg", dict(ok, dtype="complex64"))
    add("functional.rankseg", dict(ok, shape=[3, 4]))
    add("functional.rankseg", dict(ok, shape=[2, 0, 4]))
    add("functional.rankseg", dict(ok, shape=[2, 3, 0, 4]))
    add("functional.rankseg", dict(ok, kind="nan"))
    add("functional.rankseg", dict(ok, kind="inf"), metric="f1")
    add("functional.rankseg", dict(ok, kind="negative"))
    add("functional.rankseg", dict(ok, kind="above_one"))
    add("functional.rankseg", dict(ok, kind="nan"), unassigned_policy="bad")
    add("functional.rankseg", ok, metric=None)
    add("functional.rankseg", ok, output_mode=1)
    add("functional.rankseg", ok, solver=None)
    for name in ("smooth", "pruning_prob"):
        add("functional.rankseg", ok, **{name: True})
        add("functional.rankseg", ok, **{name: "0"})
        add("functional.rankseg", ok, **{name: {"tensor": 0.5}})
        add("functional.rankseg", ok, **{name: {"float": "inf"}})
    add("functional.rankseg", ok, smooth=-1)
    add("functional.rankseg", ok, pruning_prob=2)
    add("functional.rankseg", ok, metric=" F1 ")
    add("functional.rankseg", ok, output_mode="Binary")
    add("functional.rankseg", one)
    add("functional.rankseg", ok, solver="BA")
    add("functional.rankseg", one, output_mode="multilabel", metric="iou", solver="BA")
    add("functional.rankseg", ok, metric="acc")
    add("functional.rankseg", ok, solver="zzz")
    add("functional.rankseg", ok, eps=0.1)
    add("functional.rankseg", ok, metric="acc", solver="argmax", foo=1)
    add("functional.rankseg", sig, output_mode="multilabel", solver="BA", void_index=3)
    add("functional.rankseg", ok, void_index=1)
    add("functional.rankseg", ok, unassigned_policy="bad")
    add("functional.rankseg", ok, unassigned_policy=3)
    add("functional.rankseg", ok, unassigned_policy="void", void_index=1)
    add("functional.rankseg", ok, unassigned_policy="void", void_index=True)
    add("functional.rankseg", ok, unassigned_policy="void", void_index=255.0)
    add("functional.rankseg", ok, unassigned_policy="void", void_index={"int": str(2**63)})
    add("functional.rankseg", ok, safe_screening="AUTO")
    add("functional.rankseg", sig, output_mode="multilabel", solver="BA", eps=0)
    add("functional.rankseg", sig, output_mode="multilabel", solver="BA", eps=True)
    add("functional.rankseg", sig, output_mode="multilabel", solver="BA", eps={"float": "nan"})
    add("functional.rankseg", ok, solver="exact")
    add("functional.rankseg", ok, metric="iou", solver="exact")
    add("rankseg_rma", ok, metric="f1")
    add("rankseg_rma", ok, output_mode="binary")
    add("rankseg_rma", one)
    add("rankseg_rma", sig, output_mode="multilabel", unassigned_policy="void")
    add("rankseg_rma", sig, output_mode="multilabel", void_index=3)
    add("rankseg_rma", ok, unassigned_policy=None)
    add("rankseg_rma", ok, safe_screening=None)
    add("rankseg_rma", dict(ok, kind="nan"), metric=None)
    add("rankdice_ba", sig, solver="exact")
    add("rankdice_ba", sig, solver=None)
    add("rankdice_ba", dict(sig, kind="negative"), solver=None)
    add("rankdice_ba", sig, smooth=-2, eps=0)
    add("rankdice_ba", sig, eps=1.0, pruning_prob=-1)
    add("rankdice_ba", sig, pruning_prob=1.5)
    add("functional.validate_finite_real", ok, name="eps", value=None)
    add("functional.validate_finite_real", ok, name="eps", value={"float": "-inf"})
    add("functional.validate_probability_tensor", dict(ok, kind="above_one"))
    add("functional.validate_probability_tensor", dict(ok, shape=[0, 3, 2]), return_bounds=True)
    return [{"fn": fn, "probs": rec, "args": kw} for fn, rec, kw in specs]
