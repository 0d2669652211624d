"""Differential cases for ``rankseg.integration`` (the Transformers helpers and the SAM adapters).

A spec is JSON: the entry point (``fn``), the recipe of the model output object (container, class name,
fields), the call's keyword arguments and, for the SAM adapters, the constructor's. Tensors are rebuilt in each
process from a recipe (shape, dtype, seed, scale, an optional NaN/inf, the meta device, ``requires_grad``) or
from stored bytes (``{"b64": ...}``, used for real model outputs); Python values that JSON cannot hold are
wrapped (``{"tuple": [...]}``, ``{"map": {...}}``, ``{"np_int": 3}``, ``{"ndarray": [...]}``, ``{"float": "nan"}``).

Used by :mod:`harness` (``make parity``), by ``scripts/parity/record_integration.py`` (which records 0.0.8's
outcomes of :func:`pinned` plus real model outputs into ``tests/parity_data/integration_0.0.8.pt``) and by
``tests/integration/test_integration_parity.py``. Nothing here imports ``rankseg`` at module level: ``run`` uses
whichever ``rankseg`` is first on the path.

Self-check (both packages, 1000 drawn specs)::

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/parity/integration_cases.py --official /tmp/official --calls 1000
"""

from __future__ import annotations

import base64
import json
import math
import random
import types
import warnings
from typing import Any

import torch

NAME = "integration"

FUNCTIONS = (
    "transformers.restore_semantic_probs",
    "transformers.postprocess",
    "sam.Sam1",
    "sam.Sam1.restore_mask_probs",
    "sam.Sam1.postprocess",
    "sam.Sam2",
    "sam.Sam2.restore_mask_probs",
    "sam.Sam2.postprocess",
    "sam.Sam3",
    "sam.Sam3.restore_instance_mask_probs",
    "sam.Sam3.restore_semantic_mask_probs",
    "sam.Sam3.postprocess_instance",
    "sam.Sam3.postprocess_semantic",
)
POSTPROCESS = {
    "transformers.postprocess",
    "sam.Sam1.postprocess",
    "sam.Sam2.postprocess",
    "sam.Sam3.postprocess_instance",
    "sam.Sam3.postprocess_semantic",
}
SAM_CLASSES = (
    "SamImageSegmentationOutput",
    "SamHQImageSegmentationOutput",
    "Sam2ImageSegmentationOutput",
    "Sam3ImageSegmentationOutput",
    "Sam3LiteTextImageSegmentationOutput",
)
_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "complex64": torch.complex64,
}
# Float results of the same ops in the same torch build are bitwise equal; this only absorbs a different thread
# split of a reduction (einsum) between two processes.
FLOAT_RTOL, FLOAT_ATOL = 1e-6, 1e-7


# ---------------------------------------------------------------------------------------------- building inputs
def encode_tensor(t: torch.Tensor) -> dict[str, Any]:
    """A tensor as a JSON recipe holding its exact bytes (for real model outputs)."""
    t = t.detach().cpu().contiguous()
    name = str(t.dtype).removeprefix("torch.")
    data = base64.b64encode(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").decode()
    return {"tensor": {"b64": data, "dtype": name, "shape": list(t.shape)}}


def make_tensor(rec: dict[str, Any]) -> torch.Tensor:
    """A tensor from its recipe: ``randn * scale`` (seeded), integer/bool/complex data, or stored bytes."""
    shape = list(rec["shape"])
    dtype = _DTYPES[rec.get("dtype", "float32")]
    if "b64" in rec:
        raw = bytearray(base64.b64decode(rec["b64"]))
        t = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        return t.view(dtype).reshape(shape).clone()
    if rec.get("device") == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    if "values" in rec:  # exact small values (sizes)
        return torch.tensor(rec["values"], dtype=torch.float64).reshape(shape).to(dtype)
    gen = torch.Generator().manual_seed(int(rec.get("seed", 0)))
    if rec.get("kind") == "uniform":
        t = torch.rand(shape, generator=gen, dtype=torch.float64)
    else:
        t = torch.randn(shape, generator=gen, dtype=torch.float64) * float(rec.get("scale", 1.0))
    if dtype in (torch.int64, torch.int32, torch.uint8):
        t = t.abs().round().clamp(max=200).to(dtype)
    elif dtype == torch.bool:
        t = t > 0
    else:
        t = t.to(dtype)
        special = rec.get("special")
        if special and t.numel():
            t.view(-1)[int(rec.get("at", 0)) % t.numel()] = float(special)
    if rec.get("grad") and t.is_floating_point():
        t.requires_grad_(True)
    return t


def decode(value: Any) -> Any:
    """A JSON argument back to the Python value it stands for."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "tensor" in value:
        return make_tensor(value["tensor"])
    if "tuple" in value:
        return tuple(decode(v) for v in value["tuple"])
    if "map" in value:
        return {k: decode(v) for k, v in value["map"].items()}
    if "float" in value:
        return float(value["float"])
    if "np_int" in value:
        import numpy as np

        return np.int64(value["np_int"])
    if "ndarray" in value:
        import numpy as np

        return np.array(value["ndarray"])
    if "bytes" in value:
        return value["bytes"].encode()
    raise ValueError(f"cannot decode {value!r}")


class _Fields:
    """A structured output: every field an attribute (None included), like a dataclass."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class _ModelOutputLike(dict):
    """Like ``transformers.ModelOutput``: fields are attributes, and keys only where they are not None."""

    def __init__(self, **fields: Any) -> None:
        super().__init__({k: v for k, v in fields.items() if v is not None})
        self.__dict__.update(fields)


_CONTAINERS = {"fields": _Fields, "model_output": _ModelOutputLike, "dict": dict}


def make_outputs(rec: dict[str, Any]) -> Any:
    """The model output object of a spec: a container of decoded fields, optionally of a named class.

    ``cls`` names the class (matched by name by the adapters); with ``parent`` the named class is a base class of
    the object's class instead.
    """
    fields = {name: decode(value) for name, value in rec["fields"].items()}
    container = rec.get("container", "model_output")
    if container in ("tuple", "list"):
        values = tuple(fields.values())
        return values if container == "tuple" else list(values)
    base = _CONTAINERS[container]
    if rec.get("cls"):
        base = type(rec["cls"], (base,), {})
        if rec.get("parent"):
            base = type("CustomOutput", (base,), {})
    return base(**fields)


def make_model(rec: Any) -> Any:
    """A stand-in for a Transformers model: only its ``config`` matters (a named class, a dict or None)."""
    if rec is None or not isinstance(rec, dict) or "model" not in rec:
        return decode(rec)
    cfg = rec["model"]
    if cfg is None:
        return types.SimpleNamespace(config=None)
    if "dict" in cfg:
        return types.SimpleNamespace(config=dict(cfg["dict"]))
    config_cls = type(cfg.get("cls") or "PretrainedConfigLike", (), {})
    config = config_cls()
    if "model_type" in cfg:
        config.model_type = cfg["model_type"]
    return types.SimpleNamespace(config=config)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (_Fields,)):
        return _tensors(value.__dict__)
    return []


# ---------------------------------------------------------------------------------------------- running
def _call(spec: dict[str, Any], outputs: Any, ctor: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    from rankseg.integration import sam
    from rankseg.integration import transformers as rt

    fn = spec["fn"]
    if fn.startswith("transformers."):
        return getattr(rt, fn.split(".")[1])(outputs, **kwargs)
    parts = fn.split(".")
    adapter = getattr(sam, parts[1])(**ctor)
    if len(parts) == 2:
        return dict(vars(adapter))
    return getattr(adapter, parts[2])(outputs, **kwargs)


def _plain(value: Any) -> Any:
    """A result with its tensors detached (the autograd graph is not saved), containers kept, NumPy values tagged
    (so that ``torch.load(weights_only=True)`` can read recorded outcomes)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if type(value).__module__ == "numpy":
        return {"__numpy__": type(value).__name__, "value": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _inputs(spec: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    outputs = make_outputs(spec["outputs"]) if "outputs" in spec else None
    ctor = {k: decode(v) for k, v in spec.get("ctor", {}).items()}
    kwargs = {k: make_model(v) if k == "model" else decode(v) for k, v in spec.get("args", {}).items()}
    return outputs, ctor, kwargs


def run(spec: dict[str, Any], promote: bool = True) -> dict[str, Any]:
    """Run one spec with whichever ``rankseg`` is importable.

    Returns:
        {"kind": "value", "value": ..., "grad": [requires_grad of every result tensor]} or {"kind": "error",
        "type", "message"}; with "warnings" ([category, text] of each warning), "modified_input" when an input
        tensor changed, and for a postprocess result "promoted": the same RankSEG step applied to the restored
        probabilities in float64 (tells float32 rounding in the solver apart from a different rule).
    """
    outputs, ctor, kwargs = _inputs(spec)
    inputs = [t for t in _tensors([outputs, ctor, kwargs]) if t.device.type != "meta"]
    before = [t.detach().clone() for t in inputs]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = _call(spec, outputs, ctor, kwargs)
            out: dict[str, Any] = {
                "kind": "value",
                "value": _plain(value),
                "grad": [t.requires_grad for t in _tensors(value)],
            }
        except Exception as exc:  # noqa: BLE001 - recording what is raised is the point
            out = {"kind": "error", "type": type(exc).__name__, "message": str(exc)}
    out["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
    if any(not _bitwise_equal(a, b) for a, b in zip(before, inputs)):
        out["modified_input"] = True
    if promote and out["kind"] == "value" and spec["fn"] in POSTPROCESS:
        try:
            out["promoted"] = _promoted(spec)
        except Exception:  # noqa: BLE001 - no promoted result; compare() then finds no explanation
            pass
    return out


def _promoted(spec: dict[str, Any]) -> Any:
    """The postprocess result with the RankSEG step run on float64 copies of the restored probabilities."""
    import rankseg

    outputs, ctor, kwargs = _inputs(spec)
    fn = spec["fn"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fn == "transformers.postprocess":
            from rankseg.integration import transformers as rt

            rs_kwargs = kwargs.pop("rankseg_kwargs", None) or {}
            probs = [p.detach().double() for p in rt.restore_semantic_probs(outputs, **kwargs)]
            mode = "multilabel" if probs[0].shape[0] == 1 else "multiclass"
            predictor = rankseg.RankSEG(**{"output_mode": mode, **rs_kwargs})
            return [predictor.predict(p.unsqueeze(0))[0] for p in probs]
        from rankseg.integration import sam

        adapter = getattr(sam, fn.split(".")[1])(**ctor)
        predictor = rankseg.RankSEG(**{"output_mode": "multilabel", **(adapter.rankseg_kwargs or {})})
        if fn.endswith("postprocess"):
            return [predictor.predict(p.detach().double()) for p in adapter.restore_mask_probs(outputs, **kwargs)]
        if fn.endswith("postprocess_semantic"):
            restored = adapter.restore_semantic_mask_probs(outputs, **kwargs)
            return [predictor.predict(p.detach().double().unsqueeze(0))[0][0] for p in restored]
        results = []
        for item in adapter.restore_instance_mask_probs(outputs, **kwargs):
            probs = item["mask_probs"].detach().double()
            masks = probs.bool() if len(probs) == 0 else predictor.predict(probs.unsqueeze(1)).squeeze(1)
            results.append({"scores": item["scores"].detach(), "boxes": item["boxes"].detach(), "masks": masks})
        return results


def _bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach(), b.detach()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(a.flatten().contiguous().view(torch.uint8), b.flatten().contiguous().view(torch.uint8)))


# ---------------------------------------------------------------------------------------------- comparing
def same_value(a: Any, b: Any, tolerant: bool = True) -> bool:
    """Equal results: tensors in dtype, shape, device and every element (floats within FLOAT_RTOL/ATOL when
    ``tolerant``, NaN equal to NaN), containers element by element, other values by type and ``==``."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device or a.requires_grad != b.requires_grad:
            return False
        if a.device.type == "meta":
            return True
        if torch.equal(a, b) or _bitwise_equal(a, b):
            return True
        return (
            tolerant
            and a.is_floating_point()
            and bool(torch.allclose(a.double(), b.double(), rtol=FLOAT_RTOL, atol=FLOAT_ATOL, equal_nan=True))
        )
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a.keys()) == list(b.keys()) and all(same_value(a[k], b[k], tolerant) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_value(x, y, tolerant) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _asks(spec: dict[str, Any], name: str, wanted: str) -> bool:
    kw = spec.get("args", {}).get("rankseg_kwargs", spec.get("ctor", {}).get("rankseg_kwargs"))
    if isinstance(kw, dict) and "map" in kw:
        value = kw["map"].get(name)
        return isinstance(value, str) and value.strip().lower() == wanted
    return False


def compare(spec: dict[str, Any], ours: dict[str, Any], official: dict[str, Any]) -> tuple[str, str]:
    """("same" | "intended" | "differs", why). Outcomes must agree in kind, value (dtype, shape, device,
    requires_grad, every element), warnings, exception type and message, and in leaving the inputs unmodified."""
    same_kind = ours["kind"] == official["kind"]
    if same_kind and ours["kind"] == "error":
        same = ours["type"] == official["type"] and ours["message"] == official["message"]
    else:
        same = same_kind and same_value(ours["value"], official["value"]) and ours["grad"] == official["grad"]
    same = same and ours["warnings"] == official["warnings"]
    same = same and ours.get("modified_input") == official.get("modified_input")
    if same:
        return "same", ""
    if (
        _asks(spec, "solver", "exact")
        and official["kind"] == "error"
        and ("Exact solver is not implemented yet" in official["message"] or "solver 'exact'" in official["message"])
    ):
        return "intended", "solver='exact' is implemented here; 0.0.8 refuses it"
    if (
        same_kind
        and ours["kind"] == "value"
        and ours["warnings"] == official["warnings"]
        and "promoted" in official
        and same_value(ours["value"], official["promoted"])
    ):
        return "intended", "0.0.8 rounds its scores in float32; ours equals 0.0.8 run on the same values in float64"
    return "differs", describe(ours, official)


def describe(ours: dict[str, Any], official: dict[str, Any]) -> str:
    """A one-line account of two outcomes that differ."""

    def one(o: dict[str, Any]) -> str:
        if o["kind"] == "error":
            text = f"{o['type']}: {o['message']}"
        else:
            text = _summary(o["value"])
        return text + (f"; warnings {o['warnings']}" if o["warnings"] else "")

    return f"ours {one(ours)}; 0.0.8 {one(official)}"


def _summary(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        total = value.double().sum().item() if value.device.type != "meta" else float("nan")
        return f"{str(value.dtype).removeprefix('torch.')}{tuple(value.shape)} sum={total:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_summary(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_summary(v)}" for k, v in value.items()) + "}"
    return repr(value)


def reproducer(spec: dict[str, Any]) -> str:
    """A Python line that replays the spec with whichever ``rankseg`` is importable."""
    return f"integration_cases.run(json.loads({json.dumps(json.dumps(spec))}))"


# ---------------------------------------------------------------------------------------------- strategies
def _t(shape: list[int], seed: int = 0, dtype: str = "float32", scale: float = 2.0, **extra: Any) -> dict[str, Any]:
    return {"tensor": {"shape": list(shape), "seed": seed, "dtype": dtype, "scale": scale, **extra}}


def _out(fields: dict[str, Any], cls: str | None = None, container: str = "model_output", **extra: Any):
    return {"container": container, "cls": cls, "fields": fields, **extra}


class _Draw:
    """Drawing helpers for one spec: hypothesis draws the numbers (shapes, sizes, seeds, thresholds), a seeded
    ``random.Random`` takes the weighted decisions (hypothesis favours the first option of ``sampled_from`` and
    small integers, which would make every rare branch common)."""

    def __init__(self, draw: Any) -> None:
        from hypothesis import strategies as st

        self.st, self.draw = st, draw
        # three draws: hypothesis often repeats small and boundary integers, rarely all three at once
        self.rng = random.Random("/".join(str(draw(st.integers(0, 2**63 - 1))) for _ in range(3)))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, options: list[Any]) -> Any:
        return self.rng.choice(options)

    def int(self, lo: int, hi: int) -> int:
        return self.draw(self.st.integers(lo, hi))

    def batch(self) -> int:
        return self.pick([1, 1, 1, 2, 2, 3, 0])

    def tensor(self, shape: list[int], fuzz: bool = False, **extra: Any) -> dict[str, Any]:
        """A float tensor recipe; with ``fuzz`` a bad dtype, a NaN/inf or the meta device (one of them)."""
        rec: dict[str, Any] = {"shape": list(shape), "seed": self.int(0, 2**31 - 1)}
        rec["dtype"] = self.pick(["float32"] * 6 + ["float64"] * 2 + ["float16", "bfloat16"])
        rec["scale"] = self.pick([0.5, 1.0, 3.0, 8.0])
        rec.update(extra)
        if self.chance(0.15):
            rec["grad"] = True
        if fuzz:
            what = self.pick(["dtype", "special", "meta", "none", "none"])
            if what == "dtype":
                rec["dtype"] = self.pick(["int64", "bool", "complex64", "uint8"])
            elif what == "special":
                rec["special"] = self.pick(["nan", "inf", "-inf"])
                rec["at"] = self.int(0, 1000)
            elif what == "meta":
                rec["device"] = "meta"
        return {"tensor": rec}

    def fuzz_shape(self, shape: list[int]) -> list[int]:
        """``shape`` with one dim dropped, one added, or one set to 0..5."""
        shape = list(shape)
        what = self.pick(["drop", "add", "set", "set"])
        if what == "drop" and shape:
            del shape[self.rng.randrange(len(shape))]
        elif what == "add":
            shape.insert(self.rng.randrange(len(shape) + 1), self.int(1, 3))
        elif shape:
            shape[self.rng.randrange(len(shape))] = self.int(0, 5)
        return shape

    # sizes -------------------------------------------------------------------------------------------------------
    def pair(self, valid: bool = True, hi: int = 16) -> Any:
        """One (height, width) in one of the accepted forms, or (``valid=False``) a broken one."""
        h, w = self.int(1, hi), self.int(1, hi)
        if not valid:
            bad = self.pick(["value", "type", "shape", "tensor_dtype", "tensor_shape"])
            if bad == "value":
                return self.pick([[0, w], [h, -3], {"map": {"height": 0, "width": w}}])
            if bad == "type":
                return self.pick([[True, w], [h, 2.0], ["4", w], [None, w], {"map": {"height": h, "width": 2.5}}])
            if bad == "shape":
                return self.pick([[h], [h, w, 3], "ab", 7, {"map": {"height": h}}, {"ndarray": [h, w]}, []])
            if bad == "tensor_dtype":
                return {"tensor": {"values": [h, w], "shape": [2], "dtype": self.pick(["float32", "bool"])}}
            return {"tensor": {"values": [h, w, 1], "shape": [3], "dtype": "int64"}}
        form = self.pick(["list", "list", "tuple", "tensor", "map", "np"])
        if form == "tuple":
            return {"tuple": [h, w]}
        if form == "tensor":
            return {"tensor": {"values": [h, w], "shape": [2], "dtype": self.pick(["int64", "int32"])}}
        if form == "map":
            return {"map": {"height": h, "width": w}}
        if form == "np":
            return [{"np_int": h}, {"np_int": w}]
        return [h, w]

    def sizes(self, batch: int, fuzz: bool, sam: bool, hi: int = 16) -> Any:
        """One size per image (a list/tuple of pairs, an int tensor (B, 2), or for SAM a single pair when B = 1);
        with ``fuzz`` a wrong count, a broken pair, a bad tensor or not a size at all."""
        n, broken = batch, -1
        what = self.pick(["count", "pair", "tensor", "junk"]) if fuzz else None
        if what == "count":
            n = self.pick([x for x in range(5) if x != batch])
        elif what == "pair" and batch > 0:
            broken = self.rng.randrange(batch)
        if what == "junk":
            return self.pick([None, "64x64", 3, {"ndarray": [[4, 4]]}, {"bytes": "ab"}, {"map": {"h": 4}}])
        if what == "tensor":
            values = [self.int(1, hi) for _ in range(2 * max(n, 1))]
            return self.pick([
                {"tensor": {"values": values, "shape": [max(n, 1), 2], "dtype": self.pick(["float32", "bool"])}},
                {"tensor": {"values": values[:3], "shape": [-1], "dtype": "int64"}},
                {"tensor": {"values": values[:1], "shape": [1, 1], "dtype": "int64"}},
            ])  # fmt: skip
        pairs = [self.pair(i != broken, hi) for i in range(n)]
        form = self.pick(["list", "list", "tuple", "tensor", "single"])
        if form == "single" and sam and n == 1:
            return pairs[0]
        if form == "tensor" and n > 0 and broken < 0:
            values = [[self.int(1, hi), self.int(1, hi)] for _ in range(n)]
            return {"tensor": {"values": values, "shape": [n, 2], "dtype": self.pick(["int64", "int32"])}}
        return {"tuple": pairs} if form == "tuple" else pairs

    def rankseg_kwargs(self, sam: bool) -> Any:
        """Usually valid RankSEG settings for the caller (a few that RankSEG itself refuses), else not a dict."""
        good: list[Any] = [
            None, {}, {"metric": "iou"}, {"metric": "dice", "smooth": 1.0}, {"pruning_prob": 0.2},
            {"pruning_prob": 0.0, "metric": "IoU "}, {"metric": "acc", "solver": "TR"},
        ]  # fmt: skip
        if sam:
            good += [{"output_mode": "multilabel"}, {"solver": "BA"}, {"metric": "acc", "solver": "argmax"}]
            bad = [{"output_mode": "multiclass"}, {"output_mode": " multilabel"}, {"output_mode": 1},
                   {"output_mode": None}]  # fmt: skip
        else:
            good += [{"output_mode": "multilabel"}, {"output_mode": "multiclass"}, {"unassigned_policy": "void"},
                     {"unassigned_policy": "void", "void_index": 7}, {"metric": "acc", "solver": "argmax"},
                     {"metric": "acc", "solver": "argmax", "output_mode": "multilabel"},
                     {"solver": "BA", "output_mode": "multilabel"}]  # fmt: skip
            bad = []
        bad += [{"metric": "f1"}, {"solver": "BA"}, {"foo": 1}, {"solver": "exact"}, {"smooth": -1}, "metric=iou", 3,
                [["metric", "iou"]]]  # fmt: skip
        value = self.pick(good) if self.chance(0.8) else self.pick(bad)
        return {"map": dict(value)} if isinstance(value, dict) else value

    def container(self, fuzz: bool) -> str:
        if fuzz and self.chance(0.3):
            return self.pick(["tuple", "list"])
        return self.pick(["model_output", "model_output", "model_output", "fields", "dict"])


def _strategies(fn: str):
    """The hypothesis strategy of the call specs of entry point ``fn``."""
    from hypothesis import strategies as st

    if fn.startswith("transformers."):
        return st.composite(lambda draw: _transformers_spec(_Draw(draw), fn))()
    if fn.startswith("sam.Sam1"):
        return st.composite(lambda draw: _sam1_spec(_Draw(draw), fn))()
    if fn.startswith("sam.Sam2"):
        return st.composite(lambda draw: _sam2_spec(_Draw(draw), fn))()
    return st.composite(lambda draw: _sam3_spec(_Draw(draw), fn))()


def _transformers_spec(d: _Draw, fn: str) -> dict[str, Any]:
    fuzz = d.chance(0.3)
    layouts = ["dense"] * 5 + ["query"] * 4 + ["detr"] * 3
    layout = d.pick(layouts + ["sam", "eomt", "only_masks", "none"]) if fuzz else d.pick(layouts)
    b, h, w = d.batch(), d.int(1, 12), d.int(1, 12)
    args: dict[str, Any] = {}
    cls, extra = None, {}
    if layout == "dense":
        c = d.pick([1, 2, 3, 4, 5])
        shape = d.fuzz_shape([b, c, h, w]) if fuzz and d.chance(0.4) else [b, c, h, w]
        fields = {"logits": d.tensor(shape, fuzz and d.chance(0.5))}
        if fuzz and d.chance(0.1):
            fields["logits"] = d.pick([[1.0, 2.0], "logits", 3])
        cls = d.pick([None, "SemanticSegmenterOutput"])
        if d.chance(0.2):
            fields["hidden_states"] = None
    elif layout in ("query", "detr"):
        q, c1 = d.int(0, 4), d.pick([2, 2, 3, 4, 5] + ([1] if fuzz else []))
        if layout == "query" and d.chance(0.3):  # Mask2Former: its masks are resized to 384 x 384 first
            cls, b, q = "Mask2FormerForUniversalSegmentationOutput", min(b, 1), min(q, 3)
        elif layout == "query":
            cls = d.pick(
                [None, None, "MaskFormerForInstanceSegmentationOutput", "OneFormerForUniversalSegmentationOutput"]
            )
        else:
            cls = d.pick([None, "DetrSegmentationOutput"])
        cshape, mshape = [b, q, c1], [b, q, h, w]
        broken = d.pick(["class", "mask", "class_value", "mask_value", "type"]) if fuzz else None
        if broken == "class":
            cshape = d.fuzz_shape(cshape)
        elif broken == "mask":
            mshape = d.fuzz_shape(mshape)
        ct = d.tensor(cshape, broken == "class_value")
        mt = d.tensor(mshape, broken == "mask_value")
        if broken == "type":
            ct = d.pick([[[0.0, 1.0]], "x", 1])
        names = ("class_queries_logits", "masks_queries_logits") if layout == "query" else ("logits", "pred_masks")
        fields = {names[0]: ct, names[1]: mt}
        if layout == "query":
            others = [{"model": {"cls": "MaskFormerConfig"}}, {"model": {"model_type": "maskformer"}}, {"model": None}]
            model = d.pick([None] * 6 + others + ["not a model"])
            if cls is None and d.chance(0.2):
                model = d.pick([{"model": {"cls": "Mask2FormerConfig"}}, {"model": {"model_type": "mask2former"}},
                                {"model": {"dict": {"model_type": "mask2former"}}}])  # fmt: skip
                b, q = min(b, 1), min(q, 3)
                fields = {
                    names[0]: _shape_to(_shape_to(ct, 0, b), 1, q),
                    names[1]: _shape_to(_shape_to(mt, 0, b), 1, q),
                }
            if model is not None:
                args["model"] = model
            if (cls == "Mask2FormerForUniversalSegmentationOutput" or _mask2former_model(model)) and d.chance(0.8):
                args["target_sizes"] = d.sizes(b, False, False)  # keeps the 384 x 384 maps out of the results
        elif d.chance(0.5):
            fields["pred_boxes"] = d.tensor([b, q, 4], kind="uniform")
    elif layout == "sam":
        kind = d.pick(["class", "prompt", "instances", "semantic"])
        masks = d.tensor([b, 2, h, w])
        if kind == "class":
            fields, cls = {"logits": d.tensor([b, 2, h, w])}, d.pick(list(SAM_CLASSES))
            extra["parent"] = d.chance(0.5)
        elif kind == "prompt":
            fields = {"iou_scores": d.tensor([b, 2]), "pred_masks": masks}
        elif kind == "instances":
            fields = {"pred_logits": d.tensor([b, 2]), "pred_boxes": d.tensor([b, 2, 4]), "pred_masks": masks}
        else:
            fields = {"semantic_seg": d.tensor([b, 1, h, w]), "logits": d.tensor([b, 2, h, w])}
    elif layout == "eomt":
        fields = {"class_queries_logits": d.tensor([b, 2, 3]), "masks_queries_logits": d.tensor([b, 2, h, w])}
        how = d.pick(["field", "field_none", "class", "config", "config_type"])
        if how == "field":
            fields["patch_offsets"] = d.tensor([1, 3])
        elif how == "field_none":
            fields["patch_offsets"] = None
        elif how == "class":
            cls = "EomtForUniversalSegmentationOutput"
        else:
            args["model"] = {"model": {"cls": "EomtConfig"} if how == "config" else {"model_type": "eomt"}}
    elif layout == "only_masks":
        fields = {"pred_masks": d.tensor([b, 2, h, w])}
    else:
        fields = d.pick([{}, {"loss": None}, {"hidden_states": d.tensor([b, 2])}])
    if "target_sizes" not in args and d.chance(0.5):
        args["target_sizes"] = d.sizes(_batch_of(fields), fuzz and d.chance(0.5), False)
    if fn == "transformers.postprocess" and d.chance(0.6):
        args["rankseg_kwargs"] = d.rankseg_kwargs(False)
    return {"fn": fn, "outputs": _out(fields, cls, d.container(fuzz), **extra), "args": args}


def _prompt_masks(d: _Draw, fuzz: bool, family: str) -> tuple[dict[str, Any], str | None, int, dict[str, Any]]:
    """SAM1/SAM2 output fields: ``pred_masks`` (B, N, h, w) or (B, P, N, h, w), maybe ``iou_scores``."""
    b, n, p = d.batch(), d.int(1, 3), d.int(1, 3)
    h, w = d.int(2, 10), d.int(2, 10)
    shape = [b, p, n, h, w] if d.chance(0.5) else [b, n, h, w]
    broken = d.pick(["shape", "value", "missing", "class"]) if fuzz else None
    if broken == "shape":
        shape = d.fuzz_shape(shape)
    fields: dict[str, Any] = {"pred_masks": d.tensor(shape, broken == "value")}
    if d.chance(0.5):
        fields["iou_scores"] = d.tensor([b, n])
    if broken == "missing":
        fields["pred_masks"] = d.pick([None, [[0.0]], "masks"])
    own = {"SAM1": ["SamImageSegmentationOutput", "SamHQImageSegmentationOutput"],
           "SAM2": ["Sam2ImageSegmentationOutput"]}[family]  # fmt: skip
    cls = d.pick(list(SAM_CLASSES)) if broken == "class" else d.pick([None, *own, *own])
    extra = {"parent": True} if cls and d.chance(0.25) else {}
    return fields, cls, b, extra


def _sam1_spec(d: _Draw, fn: str) -> dict[str, Any]:
    fuzz = d.chance(0.3)
    ctor: dict[str, Any] = {}
    pad = d.pick(["default", "small", "small", "small", "map"] + (["bad"] if fuzz else []))
    pad_hw = [d.int(8, 40), d.int(8, 40)]
    if pad == "small":
        ctor["pad_size"] = pad_hw if d.chance(0.5) else {"tuple": pad_hw}
    elif pad == "map":
        ctor["pad_size"] = {"map": {"height": pad_hw[0], "width": pad_hw[1]}}
    elif pad == "bad":
        ctor["pad_size"] = d.pair(False)
    elif d.chance(0.5):
        ctor["pad_size"] = None
    if d.chance(0.5):
        ctor["rankseg_kwargs"] = d.rankseg_kwargs(True)
    if fn == "sam.Sam1":
        return {"fn": fn, "ctor": ctor}
    fields, cls, b, extra = _prompt_masks(d, fuzz and d.chance(0.5), "SAM1")
    limit = pad_hw if pad in ("small", "map") else [40, 40]
    reshaped: Any = [[d.int(1, limit[0]), d.int(1, limit[1])] for _ in range(b)]
    if fuzz and d.chance(0.2) and b:
        reshaped[0] = [limit[0] + d.int(0, 1), limit[1] + 1]
    elif b == 1 and d.chance(0.3):
        reshaped = reshaped[0]
    args = {"original_sizes": d.sizes(b, fuzz and d.chance(0.3), True), "reshaped_input_sizes": reshaped}
    if fuzz and d.chance(0.2):
        args["reshaped_input_sizes"] = d.sizes(b, True, True, min(limit))
    return {"fn": fn, "ctor": ctor, "outputs": _out(fields, cls, d.container(fuzz), **extra), "args": args}


def _sam2_spec(d: _Draw, fn: str) -> dict[str, Any]:
    fuzz = d.chance(0.3)
    ctor: dict[str, Any] = {}
    if d.chance(0.7):
        flag = d.pick([True, False])
        if fuzz and d.chance(0.3):
            flag = d.pick([1, 0, "yes", None])
        ctor["apply_non_overlapping_constraints"] = flag
    if d.chance(0.5):
        ctor["rankseg_kwargs"] = d.rankseg_kwargs(True)
    if fn == "sam.Sam2":
        return {"fn": fn, "ctor": ctor}
    fields, cls, b, extra = _prompt_masks(d, fuzz and d.chance(0.5), "SAM2")
    args: dict[str, Any] = {"original_sizes": d.sizes(b, fuzz and d.chance(0.3), True)}
    if fuzz and d.chance(0.05):
        del args["original_sizes"]
    return {"fn": fn, "ctor": ctor, "outputs": _out(fields, cls, d.container(fuzz), **extra), "args": args}


def _sam3_spec(d: _Draw, fn: str) -> dict[str, Any]:
    fuzz = d.chance(0.3)
    ctor: dict[str, Any] = {}
    if d.chance(0.7):
        if fuzz and d.chance(0.5):
            ctor["threshold"] = d.pick([-0.1, 1.5, 2, {"float": "nan"}, {"float": "inf"}, True, "0.3", None, [0.3]])
        else:
            ctor["threshold"] = d.pick([d.draw(d.st.floats(0, 1)), d.pick([0, 1, 0.0, 0.3, 0.5, 1.0])])
    if d.chance(0.5):
        ctor["rankseg_kwargs"] = d.rankseg_kwargs(True)
    if fn == "sam.Sam3":
        return {"fn": fn, "ctor": ctor}
    b, q = d.batch(), d.int(0, 5)
    h, w = d.int(2, 10), d.int(2, 10)
    broken = d.pick(["shape", "value", "type", "class"]) if fuzz and d.chance(0.6) else None
    if "instance" in fn:
        shapes = {"pred_logits": [b, q], "pred_boxes": [b, q, 4], "pred_masks": [b, q, h, w], "presence_logits": [b, 1]}
        target = d.pick(sorted(shapes))
        fields: dict[str, Any] = {}
        for name, shape in shapes.items():
            if broken == "shape" and name == target:
                shape = d.fuzz_shape(shape)
            extra_rec = {"kind": "uniform"} if name == "pred_boxes" else {}
            fields[name] = d.tensor(shape, broken == "value" and name == target, **extra_rec)
        if d.chance(0.25):
            fields["presence_logits"] = None
        if broken == "type":
            fields[target] = d.pick([None, [0.5], "x"])
        if d.chance(0.5):
            fields["semantic_seg"] = d.tensor([b, 1, h, w])
    else:
        shape = d.fuzz_shape([b, 1, h, w]) if broken == "shape" else [b, 1, h, w]
        fields = {"semantic_seg": d.tensor(shape, broken == "value")}
        if broken == "type":
            fields["semantic_seg"] = d.pick([None, [[0.5]], "x"])
        if d.chance(0.5):
            fields["pred_masks"] = d.tensor([b, 2, h, w])
    own = ["Sam3ImageSegmentationOutput", "Sam3LiteTextImageSegmentationOutput"]
    cls = d.pick(list(SAM_CLASSES)) if broken == "class" else d.pick([None, *own, *own])
    extra = {"parent": True} if cls and d.chance(0.25) else {}
    args: dict[str, Any] = {}
    which = d.pick(["none", "target", "original", "both"])
    if which in ("target", "both"):
        args["target_sizes"] = d.sizes(b, fuzz and d.chance(0.3), True)
    if which in ("original", "both"):
        args["original_sizes"] = d.sizes(b, fuzz and d.chance(0.3), True)
    return {"fn": fn, "ctor": ctor, "outputs": _out(fields, cls, d.container(fuzz), **extra), "args": args}


def _shape_to(value: Any, dim: int, size: int) -> Any:
    if isinstance(value, dict) and "tensor" in value and len(value["tensor"]["shape"]) > dim:
        rec = dict(value["tensor"])
        rec["shape"] = list(rec["shape"])
        rec["shape"][dim] = size
        return {"tensor": rec}
    return value


def _mask2former_model(model: Any) -> bool:
    return (
        isinstance(model, dict)
        and isinstance(model.get("model"), dict)
        and (
            model["model"].get("cls") == "Mask2FormerConfig"
            or model["model"].get("dict", {}).get("model_type") == "mask2former"
        )
    )


def _batch_of(fields: dict[str, Any]) -> int:
    for value in fields.values():
        if isinstance(value, dict) and "tensor" in value and value["tensor"]["shape"]:
            return max(int(value["tensor"]["shape"][0]), 0)
    return 1


def draw(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` call specs drawn by hypothesis (deterministic for a seed).

    Every entry point gets its share (the three constructors half as many as the methods), drawn by its own
    seeded hypothesis run; the specs are interleaved.
    """
    weights = {fn: 1 if fn.count(".") == 1 and fn.startswith("sam.") else 2 for fn in FUNCTIONS}
    total = sum(weights.values())
    quotas = {fn: n * w // total for fn, w in weights.items()}
    for fn in list(FUNCTIONS)[: n - sum(quotas.values())]:
        quotas[fn] += 1
    per_fn = [_collect(_strategies(fn), quotas[fn], seed * 1000 + i) for i, fn in enumerate(FUNCTIONS)]
    out = []
    for i in range(max(quotas.values(), default=0)):
        out += [specs[i] for specs in per_fn if i < len(specs)]
    return out[:n]


def _collect(strategy: Any, n: int, seed: int) -> list[dict[str, Any]]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    state = {"round": 0}
    while len(out) < n:
        round_ = state["round"]

        @hseed(seed * 100 + round_)
        @settings(
            max_examples=max(n - len(out), 25),  # a run's first example is the same minimal one for every seed
            phases=[Phase.generate],
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def collect(spec: dict[str, Any]) -> None:
            text = json.dumps(spec, sort_keys=True)
            if text not in seen or state["round"] >= 20:  # hypothesis replays examples; a small space runs out
                seen.add(text)
                out.append(json.loads(text))

        collect()
        state["round"] += 1
    return out[:n]


# ---------------------------------------------------------------------------------------------- pinned subset
def pinned() -> list[dict[str, Any]]:
    """Hand-picked specs: every public function, class and method, and every message of 0.0.8's integration
    modules (their outcomes under 0.0.8 are recorded by ``record_integration.py``)."""
    specs: list[dict[str, Any]] = []

    def add(fn: str, outputs: dict[str, Any] | None = None, ctor: dict | None = None, **args: Any) -> None:
        spec: dict[str, Any] = {"fn": fn}
        if ctor is not None:
            spec["ctor"] = ctor
        if outputs is not None:
            spec["outputs"] = outputs
        spec["args"] = args
        specs.append(spec)

    rt_restore, rt_post = "transformers.restore_semantic_probs", "transformers.postprocess"
    dense = _out({"logits": _t([2, 3, 6, 5], 1)}, "SemanticSegmenterOutput")
    dense1 = _out({"logits": _t([2, 1, 6, 5], 2)})
    query = _out({"class_queries_logits": _t([2, 4, 4], 3), "masks_queries_logits": _t([2, 4, 6, 5], 4)})
    query1 = _out({"class_queries_logits": _t([1, 3, 2], 5), "masks_queries_logits": _t([1, 3, 4, 4], 6)})
    m2f = _out(
        {"class_queries_logits": _t([1, 3, 3], 7), "masks_queries_logits": _t([1, 3, 4, 4], 8)},
        "Mask2FormerForUniversalSegmentationOutput",
    )
    detr = _out(
        {"logits": _t([2, 3, 3], 9), "pred_masks": _t([2, 3, 5, 5], 10), "pred_boxes": _t([2, 3, 4], 11)},
        "DetrSegmentationOutput",
    )
    # valid calls, every layout
    for fn in (rt_restore, rt_post):
        add(fn, dense)
        add(fn, dense, target_sizes=[[8, 7], {"tuple": [3, 4]}])
        add(fn, dense1, target_sizes={"tensor": {"values": [[4, 4], [5, 3]], "shape": [2, 2], "dtype": "int64"}})
        add(fn, query, target_sizes=[{"tensor": {"values": [7, 6], "shape": [2], "dtype": "int32"}}, [6, 5]])
        add(fn, query1)
        add(fn, m2f, target_sizes=[[6, 6]])
        add(fn, query1, model={"model": {"cls": "Mask2FormerConfig"}}, target_sizes=[[5, 5]])
        add(fn, query1, model={"model": {"dict": {"model_type": "mask2former"}}}, target_sizes=[[5, 5]])
        add(fn, query1, model={"model": {"model_type": "mask2former"}}, target_sizes=[[5, 5]])
        add(fn, detr, target_sizes=[[{"np_int": 6}, {"np_int": 4}], [4, 6]])
        add(fn, _out({"logits": _t([1, 3, 5, 5], 12, "float16")}))
        add(fn, _out({"logits": _t([1, 3, 5, 5], 13, "bfloat16")}, container="dict"))
        add(fn, _out({"logits": _t([1, 2, 5, 5], 14, "float64")}, container="fields"))
        add(fn, _out({"logits": _t([0, 3, 5, 5], 15)}), target_sizes=[])
        add(fn, _out({"logits": _t([1, 3, 5, 5], 16, grad=True)}))
        add(
            fn,
            _out(
                {
                    "class_queries_logits": _t([1, 2, 3], 17, "float64"),
                    "masks_queries_logits": _t([1, 2, 4, 4], 18, "float16"),
                }
            ),
        )
        add(fn, _out({"class_queries_logits": _t([1, 0, 3], 19), "masks_queries_logits": _t([1, 0, 4, 4], 20)}))
    add(rt_post, dense, rankseg_kwargs={"map": {"metric": "iou", "output_mode": "multilabel"}})
    add(rt_post, dense, rankseg_kwargs={"map": {"metric": "acc", "solver": "argmax", "output_mode": "multilabel"}})
    add(rt_post, dense, rankseg_kwargs={"map": {"unassigned_policy": "void"}})
    add(rt_post, dense1, rankseg_kwargs={"map": {"metric": "acc", "solver": "TR"}})
    add(rt_post, dense, rankseg_kwargs={"map": {"metric": "f1"}})
    add(rt_post, dense, rankseg_kwargs={"map": {"solver": "BA"}})
    add(rt_post, dense, rankseg_kwargs={"map": {"solver": "exact"}})
    add(rt_post, dense, rankseg_kwargs="metric=iou")
    add(rt_post, _out({"logits": _t([0, 3, 5, 5], 15)}), rankseg_kwargs="not looked at")
    # every message of the transformers helper
    add(rt_restore, _out({"logits": _t([1, 2, 3, 3])}, container="tuple"))
    add(rt_restore, _out({"logits": _t([1, 2, 3, 3])}, container="list"))
    for cls in SAM_CLASSES:
        add(rt_restore, _out({"logits": _t([1, 2, 3, 3])}, cls))
    add(rt_restore, _out({"logits": _t([1, 2, 3, 3])}, "Sam2ImageSegmentationOutput", parent=True))
    add(rt_restore, _out({"pred_masks": _t([1, 2, 3, 3]), "iou_scores": _t([1, 2])}))
    add(rt_restore, _out({"pred_masks": _t([1, 2, 3, 3]), "pred_logits": _t([1, 2]), "pred_boxes": _t([1, 2, 4])}))
    add(rt_restore, _out({"semantic_seg": _t([1, 1, 3, 3]), "logits": _t([1, 2, 3, 3])}, container="dict"))
    eomt_fields = {"class_queries_logits": _t([1, 2, 3]), "masks_queries_logits": _t([1, 2, 3, 3])}
    add(rt_restore, _out(dict(eomt_fields, patch_offsets=_t([1, 3]))))
    add(rt_restore, _out(dict(eomt_fields, patch_offsets=None), container="fields"))
    add(rt_restore, _out(dict(eomt_fields, patch_offsets=None), container="model_output"))
    add(rt_restore, _out(eomt_fields, "EomtForUniversalSegmentationOutput"))
    add(rt_restore, _out(eomt_fields), model={"model": {"cls": "EomtConfig"}})
    add(rt_restore, _out(eomt_fields), model={"model": {"model_type": "eomt"}})
    add(rt_restore, _out(eomt_fields), model={"model": None})
    add(rt_restore, _out(eomt_fields), model="not a model")
    add(rt_restore, _out({"class_queries_logits": [[0.0, 1.0]], "masks_queries_logits": _t([1, 2, 3, 3])}))
    add(rt_restore, _out({"logits": "x", "pred_masks": _t([1, 2, 3, 3])}))
    add(rt_restore, _out({"logits": [[1.0]]}))
    add(rt_restore, _out({"pred_masks": _t([1, 2, 3, 3])}))
    add(rt_restore, _out({}))
    add(rt_restore, _out({"class_queries_logits": _t([1, 2, 3])}))
    for dtype in ("int64", "bool", "complex64"):
        add(rt_restore, _out({"logits": _t([1, 2, 3, 3], dtype=dtype)}))
    for shape in ([2, 3, 3], [1, 1, 2, 3, 3], [1, 0, 3, 3], [1, 2, 0, 3], [1, 2, 3, 0]):
        add(rt_restore, _out({"logits": _t(shape)}))
    for special in ("nan", "inf", "-inf"):
        add(rt_restore, _out({"logits": _t([1, 2, 3, 3], special=special, at=4)}))
    add(rt_restore, _out({"logits": _t([1, 2, 3, 3], device="meta")}))
    for names in (("class_queries_logits", "masks_queries_logits"), ("logits", "pred_masks")):
        cname, mname = names

        def q(c: dict, m: dict, cn: str = cname, mn: str = mname) -> dict[str, Any]:
            return _out({cn: c, mn: m})

        add(rt_restore, q(_t([1, 2, 3], dtype="int64"), _t([1, 2, 3, 3])))
        add(rt_restore, q(_t([1, 2, 3]), _t([1, 2, 3, 3], dtype="bool")))
        add(rt_restore, q(_t([2, 3]), _t([1, 2, 3, 3])))
        add(rt_restore, q(_t([1, 2, 3]), _t([1, 2, 3])))
        add(rt_restore, q(_t([1, 2, 1]), _t([1, 2, 3, 3])))
        add(rt_restore, q(_t([1, 2, 3]), _t([1, 2, 0, 3])))
        add(rt_restore, q(_t([1, 2, 3]), _t([1, 3, 3, 3])))
        add(rt_restore, q(_t([2, 2, 3]), _t([1, 2, 3, 3])))
        add(rt_restore, q(_t([1, 2, 3]), _t([1, 2, 3, 3], device="meta")))
        add(rt_restore, q(_t([1, 2, 3], device="meta"), _t([1, 2, 3, 3], device="meta")))
        add(rt_restore, q(_t([1, 2, 3], special="nan"), _t([1, 2, 3, 3])))
        add(rt_restore, q(_t([1, 2, 3]), _t([1, 2, 3, 3], special="inf")))
    small = _out({"logits": _t([2, 2, 3, 3])})
    for sizes in (
        {"tensor": {"values": [[4, 4], [4, 4]], "shape": [2, 2], "dtype": "float32"}},
        {"tensor": {"values": [[4, 4], [4, 4]], "shape": [2, 2], "dtype": "bool"}},
        {"tensor": {"values": [4, 4, 4, 4], "shape": [4], "dtype": "int64"}},
        {"tensor": {"values": [[4, 4, 4], [4, 4, 4]], "shape": [2, 3], "dtype": "int64"}},
        [[4, 4]],
        [4, 4],
        [[4, 4], [4, 4, 4]],
        [[4, 4], "ab"],
        [[4, 4], {"tensor": {"values": [4, 4, 4], "shape": [3], "dtype": "int64"}}],
        [[4, 4], {"tensor": {"values": [4.0, 4.0], "shape": [2], "dtype": "float32"}}],
        [[4, 4], [True, 4]],
        [[4, 4], [4.0, 4]],
        [[4, 4], [0, 4]],
        [[4, 4], [4, -1]],
        "44",
        {"ndarray": [[4, 4], [4, 4]]},
        {"map": {"height": 4, "width": 4}},
        {"tuple": [[4, 4], {"tuple": [5, 5]}]},
    ):
        add(rt_restore, small, target_sizes=sizes)
    add(rt_post, dense, rankseg_kwargs=[["metric", "iou"]])

    # SAM1 ------------------------------------------------------------------------------------------------------
    s1 = _out({"pred_masks": _t([2, 1, 3, 4, 4], 21), "iou_scores": _t([2, 1, 3], 22)}, "SamImageSegmentationOutput")
    s1_4d = _out({"pred_masks": _t([1, 2, 4, 4], 23)}, "SamHQImageSegmentationOutput")
    pad16 = {"pad_size": [16, 16]}
    ok1 = {"original_sizes": [[12, 10], [9, 9]], "reshaped_input_sizes": [[16, 13], [16, 16]]}
    add("sam.Sam1")
    add("sam.Sam1", ctor={"rankseg_kwargs": {"map": {"metric": "f1"}}, "pad_size": "anything"})
    for fn in ("sam.Sam1.restore_mask_probs", "sam.Sam1.postprocess"):
        add(fn, s1, pad16, **ok1)
        add(fn, s1_4d, {}, original_sizes=[6, 5], reshaped_input_sizes={"map": {"height": 30, "width": 25}})
        add(
            fn,
            s1_4d,
            {"pad_size": {"map": {"height": 12, "width": 14}}},
            original_sizes={"map": {"height": 5, "width": 7}},
            reshaped_input_sizes={"tensor": {"values": [12, 9], "shape": [2], "dtype": "int64"}},
        )
        add(
            fn,
            s1,
            {"pad_size": {"tensor": {"values": [16, 16], "shape": [2], "dtype": "int64"}}},
            original_sizes={"tensor": {"values": [[12, 10], [9, 9]], "shape": [2, 2], "dtype": "int64"}},
            reshaped_input_sizes=[{"map": {"height": 16, "width": 13}}, {"tuple": [16, 16]}],
        )
        add(
            fn,
            _out({"pred_masks": _t([1, 1, 2, 4, 4], 24, "float16")}, container="dict"),
            pad16,
            original_sizes=[[5, 5]],
            reshaped_input_sizes=[[16, 16]],
        )
        add(
            fn,
            _out({"pred_masks": _t([1, 2, 4, 4], 25, grad=True)}, container="fields"),
            pad16,
            original_sizes=[5, 5],
            reshaped_input_sizes=[8, 8],
        )
        add(fn, _out({"pred_masks": _t([0, 2, 4, 4], 26)}), pad16, original_sizes=[], reshaped_input_sizes=[])
    add("sam.Sam1.postprocess", s1, dict(pad16, rankseg_kwargs={"map": {"metric": "iou", "smooth": 1.0}}), **ok1)
    add("sam.Sam1.postprocess", s1, dict(pad16, rankseg_kwargs={"map": {"metric": "acc", "solver": "argmax"}}), **ok1)
    add("sam.Sam1.postprocess", s1, dict(pad16, rankseg_kwargs={"map": {"output_mode": "multilabel"}}), **ok1)
    add("sam.Sam1.postprocess", s1, dict(pad16, rankseg_kwargs={"map": {"output_mode": "multiclass"}}), **ok1)
    add("sam.Sam1.postprocess", s1, dict(pad16, rankseg_kwargs={"map": {"output_mode": None}}), **ok1)
    add("sam.Sam1.postprocess", s1, dict(pad16, rankseg_kwargs={"map": {"output_mode": "MultiLabel"}}), **ok1)
    add("sam.Sam1.postprocess", s1, dict(pad16, rankseg_kwargs="iou"), **ok1)
    add("sam.Sam1.postprocess", s1, dict(pad16, rankseg_kwargs={"map": {"metric": "f1"}}), **ok1)
    add("sam.Sam1.postprocess", s1, dict(pad16, rankseg_kwargs={"map": {"solver": "exact"}}), **ok1)
    add(
        "sam.Sam1.postprocess",
        _out({"pred_masks": _t([0, 2, 4, 4], 26)}),
        dict(pad16, rankseg_kwargs="x"),
        original_sizes=[],
        reshaped_input_sizes=[],
    )
    r1 = "sam.Sam1.restore_mask_probs"
    for cls in ("Sam2ImageSegmentationOutput", "Sam3ImageSegmentationOutput", "Sam3LiteTextImageSegmentationOutput"):
        add(r1, _out({"pred_masks": _t([1, 2, 4, 4])}, cls), pad16, original_sizes=[4, 4], reshaped_input_sizes=[4, 4])
    add(
        r1,
        _out({"pred_masks": _t([1, 2, 4, 4])}, container="tuple"),
        pad16,
        original_sizes=[4, 4],
        reshaped_input_sizes=[4, 4],
    )
    for fields in (
        {},
        {"pred_masks": None},
        {"pred_masks": [[0.0]]},
        {"pred_masks": _t([1, 2, 4, 4], dtype="int64")},
        {"pred_masks": _t([1, 4, 4])},
        {"pred_masks": _t([1, 1, 1, 2, 4, 4])},
        {"pred_masks": _t([1, 0, 4, 4])},
        {"pred_masks": _t([1, 2, 4, 0])},
        {"pred_masks": _t([1, 2, 4, 4], special="nan")},
        {"pred_masks": _t([1, 2, 4, 4], device="meta")},
    ):
        add(r1, _out(fields, "SamImageSegmentationOutput"), pad16, original_sizes=[4, 4], reshaped_input_sizes=[4, 4])
    sizes_cases = [
        None,
        "44",
        4,
        [4],
        [4, 4, 4],
        [[4, 4], [4, 4]],
        [[4, 4, 4]],
        {"map": {"height": 4}},
        {"map": {"width": 4}},
        {"tensor": {"values": [4, 4, 4], "shape": [3], "dtype": "int64"}},
        {"tensor": {"values": [[4, 4, 4]], "shape": [1, 3], "dtype": "int64"}},
        {"tensor": {"values": [[4, 4]], "shape": [1, 2], "dtype": "float32"}},
        {"tensor": {"values": [4, 4], "shape": [2], "dtype": "float32"}},
        {"tensor": {"values": [4, 4], "shape": [2], "dtype": "bool"}},
        {"tensor": {"values": [[4, 4], [4, 4]], "shape": [2, 2], "dtype": "int64"}},
        [True, 4],
        [4.0, 4],
        [0, 4],
        [4, -4],
        [[0, 4]],
        [{"np_int": 4}, {"np_int": 0}],
        {"ndarray": [4, 4]},
        [{"ndarray": [4, 4]}],
        [],
        {"bytes": "ab"},
        {"tuple": [{"map": {"height": 4, "width": 4}}]},
        [{"map": {"height": 4, "width": 2.5}}],
    ]
    for sizes in sizes_cases:
        add(r1, s1_4d, pad16, original_sizes=sizes, reshaped_input_sizes=[4, 4])
        add(r1, s1_4d, pad16, original_sizes=[4, 4], reshaped_input_sizes=sizes)
    for pad in (
        "16",
        [16],
        [0, 16],
        [16, 16.0],
        {"map": {"height": 16}},
        {"tensor": {"values": [16, 16], "shape": [2], "dtype": "float32"}},
        {"tensor": {"values": [16, 16, 1], "shape": [3], "dtype": "int64"}},
        [8, 8],
    ):
        add(r1, s1_4d, {"pad_size": pad}, original_sizes=[4, 4], reshaped_input_sizes=[10, 4])
    add(r1, s1_4d, {"pad_size": [8, 8]}, original_sizes=[4, 4], reshaped_input_sizes=[8, 9])

    # SAM2 ------------------------------------------------------------------------------------------------------
    s2 = _out({"pred_masks": _t([2, 3, 1, 4, 4], 31), "iou_scores": _t([2, 3, 1], 32)}, "Sam2ImageSegmentationOutput")
    s2_4d = _out({"pred_masks": _t([1, 3, 5, 4], 33)}, "Sam2ImageSegmentationOutput")
    add("sam.Sam2")
    add("sam.Sam2", ctor={"apply_non_overlapping_constraints": True, "rankseg_kwargs": {"map": {"metric": "iou"}}})
    for flag in (1, 0, "yes", None, [True]):
        add("sam.Sam2", ctor={"apply_non_overlapping_constraints": flag})
    for fn in ("sam.Sam2.restore_mask_probs", "sam.Sam2.postprocess"):
        for flag in (False, True):
            add(fn, s2, {"apply_non_overlapping_constraints": flag}, original_sizes=[[7, 6], [5, 9]])
            add(fn, s2_4d, {"apply_non_overlapping_constraints": flag}, original_sizes=[6, 6])
        add(
            fn,
            _out({"pred_masks": _t([1, 2, 1, 3, 3], 34, "bfloat16", grad=True)}, container="fields"),
            {"apply_non_overlapping_constraints": True},
            original_sizes={"map": {"height": 5, "width": 4}},
        )
        add(
            fn,
            _out({"pred_masks": _t([1, 2, 1, 3, 3], 35, "float64")}, container="dict"),
            {},
            original_sizes={"tensor": {"values": [[5, 4]], "shape": [1, 2], "dtype": "int64"}},
        )
    add("sam.Sam2.postprocess", s2, {"rankseg_kwargs": {"map": {"solver": "BA"}}}, original_sizes=[[7, 6], [5, 9]])
    add("sam.Sam2.postprocess", s2, {"rankseg_kwargs": {"map": {"output_mode": 3}}}, original_sizes=[[7, 6], [5, 9]])
    r2 = "sam.Sam2.restore_mask_probs"
    for cls in ("SamImageSegmentationOutput", "SamHQImageSegmentationOutput", "Sam3ImageSegmentationOutput"):
        add(r2, _out({"pred_masks": _t([1, 2, 4, 4])}, cls), {}, original_sizes=[4, 4])
    add(
        r2, _out({"pred_masks": _t([1, 2, 4, 4])}, "SamImageSegmentationOutput", parent=True), {}, original_sizes=[4, 4]
    )
    add(r2, _out({"iou_scores": _t([1, 2])}), {}, original_sizes=[4, 4])
    add(r2, _out({"pred_masks": _t([1, 2, 4, 4])}, container="list"), {}, original_sizes=[4, 4])
    add(r2, s2_4d, {}, original_sizes=None)
    add(r2, s2_4d, {})

    # SAM3 ------------------------------------------------------------------------------------------------------
    inst = {
        "pred_logits": _t([2, 5], 41),
        "pred_boxes": _t([2, 5, 4], 42, kind="uniform"),
        "pred_masks": _t([2, 5, 6, 6], 43),
        "presence_logits": _t([2, 1], 44),
        "semantic_seg": _t([2, 1, 6, 6], 45),
    }
    s3 = _out(inst, "Sam3ImageSegmentationOutput")
    s3_lite = _out(dict(inst, presence_logits=None), "Sam3LiteTextImageSegmentationOutput")
    add("sam.Sam3")
    for thr in (0, 1, 0.5, 1.0, {"np_int": 1}):
        add("sam.Sam3", ctor={"threshold": thr})
    for thr in (True, "0.3", None, [0.3], {"float": "nan"}, {"float": "inf"}, -0.1, 1.5, 2):
        add("sam.Sam3", ctor={"threshold": thr})
    for fn in ("sam.Sam3.restore_instance_mask_probs", "sam.Sam3.postprocess_instance"):
        add(fn, s3, {})
        add(fn, s3, {"threshold": 0.0}, target_sizes=[[8, 7], [3, 4]])
        add(
            fn,
            s3_lite,
            {"threshold": 0.2},
            original_sizes={"tensor": {"values": [[8, 7], [3, 4]], "shape": [2, 2], "dtype": "int64"}},
        )
        add(fn, s3, {"threshold": 0.1}, target_sizes=[[8, 7], [3, 4]], original_sizes=[[1, 1], [1, 1]])
        add(fn, s3, {"threshold": 1.0}, target_sizes=[[8, 7], [3, 4]])
        add(
            fn,
            _out(
                dict(
                    inst, pred_logits=_t([2, 5], 46, "float64"), pred_masks=_t([2, 5, 6, 6], 47, "float16", grad=True)
                ),
                container="dict",
            ),
            {"threshold": 0.05},
            target_sizes=[[5, 5], [4, 4]],
        )
        add(
            fn,
            _out({"pred_logits": _t([0, 5]), "pred_boxes": _t([0, 5, 4]), "pred_masks": _t([0, 5, 3, 3])}),
            {},
            target_sizes=[],
        )
    for fn in ("sam.Sam3.restore_semantic_mask_probs", "sam.Sam3.postprocess_semantic"):
        add(fn, s3, {})
        add(fn, s3, {}, target_sizes=[[8, 7], [6, 6]])
        add(fn, s3_lite, {}, original_sizes=[[8, 7], {"map": {"height": 2, "width": 9}}])
        add(
            fn,
            _out({"semantic_seg": _t([1, 1, 4, 4], 48, "bfloat16", grad=True)}, container="fields"),
            {},
            target_sizes=[4, 6],
            original_sizes="ignored",
        )
        add(fn, _out({"semantic_seg": _t([0, 1, 4, 4])}), {}, target_sizes=[])
    add(
        "sam.Sam3.postprocess_instance",
        s3,
        {"threshold": 0.1, "rankseg_kwargs": {"map": {"metric": "iou", "pruning_prob": 0.0}}},
    )
    add("sam.Sam3.postprocess_instance", s3, {"rankseg_kwargs": {"map": {"output_mode": "multiclass"}}})
    add("sam.Sam3.postprocess_instance", s3, {"rankseg_kwargs": ["metric"]})
    add("sam.Sam3.postprocess_semantic", s3, {"rankseg_kwargs": {"map": {"metric": "acc", "solver": "TR"}}})
    add("sam.Sam3.postprocess_semantic", s3, {"rankseg_kwargs": {"map": {"metric": "acc"}}})
    add("sam.Sam3.postprocess_semantic", s3, {"rankseg_kwargs": {"map": {"output_mode": ["multilabel"]}}})
    ri, rs = "sam.Sam3.restore_instance_mask_probs", "sam.Sam3.restore_semantic_mask_probs"
    for fn in (ri, rs):
        for cls in ("SamImageSegmentationOutput", "Sam2ImageSegmentationOutput"):
            add(fn, _out(inst, cls), {})
        add(fn, _out(inst, container="tuple"), {})
        add(fn, s3, {}, target_sizes=[[4, 4]])
        add(fn, s3, {}, original_sizes=[[4, 4], [4, 0]])
        add(fn, s3, {}, target_sizes=[[4, 4], [4.5, 4]])
    bad_inst = [
        {"pred_logits": None},
        {"pred_boxes": [[0.0]]},
        {"pred_masks": None},
        {"pred_masks": "x"},
        {"presence_logits": [0.5]},
        {"pred_logits": _t([2, 5], dtype="int64")},
        {"pred_boxes": _t([2, 5, 4], dtype="bool")},
        {"pred_masks": _t([2, 5, 6, 6], dtype="complex64")},
        {"presence_logits": _t([2, 1], dtype="int64")},
        {"pred_logits": _t([2, 5, 1])},
        {"pred_boxes": _t([2, 5, 3])},
        {"pred_boxes": _t([2, 5])},
        {"pred_masks": _t([2, 5, 6])},
        {"pred_masks": _t([2, 5, 0, 6])},
        {"pred_boxes": _t([2, 4, 4])},
        {"pred_masks": _t([1, 5, 6, 6])},
        {"pred_boxes": _t([2, 5, 4], device="meta")},
        {"pred_masks": _t([2, 5, 6, 6], device="meta")},
        {"presence_logits": _t([2, 2])},
        {"presence_logits": _t([2])},
        {"presence_logits": _t([2, 1], device="meta")},
        {
            "pred_logits": _t([2, 5], device="meta"),
            "pred_boxes": _t([2, 5, 4], device="meta"),
            "pred_masks": _t([2, 5, 6, 6], device="meta"),
            "presence_logits": _t([2, 1], device="meta"),
        },
        {"pred_logits": _t([2, 5], special="nan")},
        {"pred_boxes": _t([2, 5, 4], special="inf")},
        {"pred_masks": _t([2, 5, 6, 6], special="-inf")},
        {"presence_logits": _t([2, 1], special="nan")},
    ]
    for change in bad_inst:
        add(ri, _out(dict(inst, **change), "Sam3ImageSegmentationOutput"), {})
    for change in (
        {"semantic_seg": None},
        {"semantic_seg": [[0.5]]},
        {"semantic_seg": _t([2, 2, 6, 6])},
        {"semantic_seg": _t([2, 6, 6])},
        {"semantic_seg": _t([2, 1, 0, 6])},
        {"semantic_seg": _t([2, 1, 6, 6], dtype="int64")},
        {"semantic_seg": _t([2, 1, 6, 6], special="nan")},
        {"semantic_seg": _t([2, 1, 6, 6], device="meta")},
    ):
        add(rs, _out(dict(inst, **change), "Sam3ImageSegmentationOutput"), {})
    return specs


# ---------------------------------------------------------------------------------------------- self-check
def main() -> None:
    """Draw specs, run them under ours and under 0.0.8 (two processes), print the verdict counts."""
    import argparse
    import collections
    import os
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    here = Path(__file__).resolve()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default="/tmp/official", help="folder holding the 0.0.8 wheel's rankseg/")
    ap.add_argument("--ours", default=str(here.parents[2]), help="folder holding the rankseg/ under test")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pinned", action="store_true", help="run the pinned specs instead of drawn ones")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        import rankseg

        torch.set_num_threads(1)
        specs = json.loads(Path(args.worker[0]).read_text())
        t0 = time.perf_counter()
        outcomes = [run(spec) for spec in specs]
        package = str(Path(rankseg.__file__).resolve().parent)
        torch.save({"outcomes": outcomes, "seconds": time.perf_counter() - t0, "package": package}, args.worker[1])
        return
    t0 = time.perf_counter()
    specs = pinned() if args.pinned else draw(args.calls, args.seed)
    print(f"drew {len(specs)} specs in {time.perf_counter() - t0:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = os.path.join(tmp, "specs.json")
        Path(spec_file).write_text(json.dumps(specs))
        procs = {}
        for side, path in (("ours", args.ours), ("official", args.official)):
            env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
            out = os.path.join(tmp, f"{side}.pt")
            procs[side] = (
                subprocess.Popen([sys.executable, str(here), "--worker", spec_file, out], env=env, cwd=tmp),
                out,
            )
        res = {}
        for side, (proc, out) in procs.items():
            if proc.wait() != 0:
                raise SystemExit(f"the {side} worker failed")
            res[side] = torch.load(out, weights_only=False)
    print(f"packages: ours {res['ours']['package']}, official {res['official']['package']}")
    print(f"seconds: ours {res['ours']['seconds']:.1f}, official {res['official']['seconds']:.1f}, "
          f"wall {time.perf_counter() - t0:.1f}")  # fmt: skip
    verdicts: collections.Counter = collections.Counter()
    per_fn: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    reasons: collections.Counter = collections.Counter()
    for spec, ours, official in zip(specs, res["ours"]["outcomes"], res["official"]["outcomes"]):
        verdict, why = compare(spec, ours, official)
        verdicts[verdict] += 1
        per_fn[spec["fn"]][verdict] += 1
        per_fn[spec["fn"]]["official " + official["kind"]] += 1
        if verdict == "intended":
            reasons[why] += 1
        elif verdict == "differs":
            print("DIFFERS", why, "\n   ", json.dumps(spec)[:600])
    for fn in FUNCTIONS:
        print(f"  {fn:40s} {dict(per_fn[fn])}")
    print("intended:", dict(reasons))
    print("verdicts:", dict(verdicts))


if __name__ == "__main__":
    main()
