"""Modelled GPU cost of one call of every solver, counted on the CPU (no GPU needed).

    python scripts/bench_gpu_model.py --out results/gpu_cost_model.md
    python scripts/bench_gpu_model.py --shapes voc --solvers rma-multilabel argmax

The solvers run their device path on the CPU (NumPy kernels off, no scratch buffers, one cache block, an 80 GB
chunk budget), under a ``TorchDispatchMode`` that sees every aten call with its tensors. Per call it counts the
kernel launches (aten calls that are not views or metadata), the host synchronisations (ops that copy a value or a
size to the host on CUDA: ``_local_scalar_dense`` from ``.item()``/``bool()``/``int()``, ``Tensor.tolist``, ``nonzero``,
``masked_select``, boolean-mask indexing, ``unique``, ``equal``, ``bincount``, ``repeat_interleave`` without
``output_size``) and the bytes read and written (sizes of the tensor inputs and outputs of every launch). The
model of an H100 (``../shared/reference/solver_ideas.md``): launches x 5 us + syncs x 20 us + bytes / 2.5 TB/s.
It put torch argmax at 0.08 ms on the VOC-like input against 0.10 ms measured; 5 us per launch is optimistic
when the host issues ops one by one. 0.0.8's figures are its measured H100 times from the same notes.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_S, SYNC_S, BANDWIDTH = 5e-6, 20e-6, 2.5e12

SHAPES = {"cityscapes": (2, 19, 1024, 2048), "voc": (8, 21, 512, 512), "kvasir": (8, 1, 512, 512)}
SOLVERS = {
    "argmax": dict(metric="acc", output_mode="multiclass", solver="argmax"),
    "rma-multilabel": dict(metric="dice", output_mode="multilabel", solver="RMA"),
    "rma-multiclass": dict(metric="dice", output_mode="multiclass", solver="RMA"),
    "ba": dict(metric="dice", output_mode="multilabel", solver="BA"),
    "exact-multilabel": dict(metric="dice", output_mode="multilabel", solver="exact"),
}
# 0.0.8 on one H100, median ms (../shared/reference/solver_ideas.md and the GPU issue): RMA with screening.
OFFICIAL_MS = {
    ("rma-multilabel", "voc"): 2.6, ("rma-multilabel", "cityscapes"): 3.6, ("rma-multilabel", "kvasir"): 0.81,
    ("rma-multiclass", "voc"): 3.4, ("ba", "voc"): 1160.0,
}  # fmt: skip
ARGMAX_MEASURED_MS = {"voc": 0.10, "cityscapes": 0.16, "kvasir": 0.017}

_NOT_LAUNCHES = {
    "view", "_unsafe_view", "alias", "as_strided", "expand", "t", "transpose", "permute", "squeeze", "unsqueeze",
    "select", "slice", "detach", "unbind", "split", "split_with_sizes", "chunk", "diagonal", "narrow", "unfold",
    "view_as_real", "view_as_complex", "lift_fresh", "_reshape_alias", "resize_", "empty", "empty_strided",
    "empty_like", "set_", "_local_scalar_dense", "is_nonzero", "sym_size", "sym_stride", "sym_numel",
}  # fmt: skip
_SYNCS = {
    "_local_scalar_dense", "nonzero", "masked_select", "_unique", "_unique2", "unique_dim", "unique_consecutive",
    "equal", "bincount", "is_nonzero", "nonzero_static",
}  # fmt: skip


@dataclass
class Counts:
    launches: int = 0
    syncs: int = 0
    bytes: int = 0
    kernels: list[tuple[str, int]] = field(default_factory=list)  # Triton launches: (name, bytes)

    def model_ms(self) -> float:
        return 1e3 * (self.launches * LAUNCH_S + self.syncs * SYNC_S + self.bytes / BANDWIDTH)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


class CostCounter(TorchDispatchMode):
    """Counts launches, host syncs and bytes of the aten calls made while active (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = Counts()
        self._paused = 0
        self._stack = ExitStack()

    def __enter__(self):
        from rankseg._triton._launch import hooks

        self._stack.enter_context(hooks(self))
        # Tensor.tolist reads the data without an aten call; on CUDA it copies to the host: one sync
        tolist = torch.Tensor.tolist

        def counted_tolist(t: torch.Tensor):
            if not self._paused:
                self.counts.syncs += 1
            return tolist(t)

        torch.Tensor.tolist = counted_tolist
        self._stack.callback(setattr, torch.Tensor, "tolist", tolist)
        return super().__enter__()

    def __exit__(self, *exc):
        self._stack.close()
        return super().__exit__(*exc)

    def kernel(self, name: str, nbytes: int) -> None:
        """A Triton kernel launch (reported by rankseg._triton._launch with the bytes it declares)."""
        self.counts.kernels.append((name, nbytes))
        self.counts.launches += 1
        self.counts.bytes += nbytes

    @contextmanager
    def paused(self):
        """While a kernel runs (under the interpreter its tensor copies are no launches)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self._paused:
            return out
        name = func._schema.name.split("::")[-1]
        overload = func._overloadpacket.__name__
        sync = overload in _SYNCS or name in _SYNCS
        if overload == "repeat_interleave" and kwargs.get("output_size") is None:
            sync = True
        if overload == "index" and any(t.dtype == torch.bool for t in _tensors(args[1:])):
            sync = True  # boolean-mask indexing sizes its output on the host
        if sync:
            self.counts.syncs += 1
        if overload not in _NOT_LAUNCHES:
            self.counts.launches += 1
            seen = {id(t) for t in _tensors(out)}
            inputs = [t for t in _tensors(args) + _tensors(kwargs) if id(t) not in seen]  # in-place: count once
            self.counts.bytes += sum(t.numel() * t.element_size() for t in inputs + _tensors(out))
        return out


@contextmanager
def device_path(triton: bool = False):
    """The solvers' device code path on CPU tensors: no NumPy kernels, no scratch buffers, one cache block and
    one chunk (80 GB budget), as on a large GPU. ``triton``: the Triton kernels too (under Triton's interpreter,
    which must be on before triton is first imported, see :func:`use_interpreter`); without it they are off."""
    from rankseg import _common, _triton

    old = _common._SCRATCH_MAX_BYTES, _common._CACHE_MIN_BYTES
    with ExitStack() as stack:
        stack.enter_context(_common.numpy_kernels(False))
        stack.enter_context(_common.chunk_bytes(80 * 2**30))
        stack.enter_context(_triton.forced(triton))
        _common._SCRATCH_MAX_BYTES, _common._CACHE_MIN_BYTES = -1, 2**62
        try:
            yield
        finally:
            _common._SCRATCH_MAX_BYTES, _common._CACHE_MIN_BYTES = old


def use_interpreter() -> bool:
    """Turn Triton's interpreter on (kernels on CPU tensors); False when triton was already imported without it
    or does not import."""
    import os

    if "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
    from rankseg import _triton

    return _triton.interpreting() and _triton.available()


def make_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Smooth random probabilities (softmax over classes; sigmoid for one class)."""
    gen = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    x = torch.randn(b, c, max(h // 16, 2), max(w // 16, 2), generator=gen) * 4
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.sigmoid() if c == 1 else x.softmax(1)


def count_call(kwargs: dict[str, Any], probs: torch.Tensor, triton: bool = False) -> Counts:
    from rankseg.functional import rankseg

    with device_path(triton), CostCounter() as counter:
        rankseg(probs, **kwargs)
    return counter.counts


def report(rows: list[dict[str, Any]], argv: list[str]) -> str:
    lines = [
        "# Modelled GPU cost per solver call (counted on CPU)",
        "",
        f"Command: `python scripts/bench_gpu_model.py {' '.join(argv)}`; torch {torch.__version__}. Model of an H100: "
        "launches x 5 us + host syncs x 20 us + bytes / 2.5 TB/s, counted on the solvers' device path on CPU. "
        "Path `torch`: the plain torch code (every aten call a launch). Path `triton`: what runs on CUDA when "
        "triton imports, i.e. the Triton kernels of `rankseg/_triton` where a solver has them (run under Triton's "
        "interpreter here; each kernel call is one launch with the bytes it declares) and torch elsewhere. "
        "0.0.8: measured on one H100 (RMA with screening), where known. No GPU was used.",
        "",
        "| shape | solver | path | launches | host syncs | GB moved | modelled ms | x argmax (modelled) | 0.0.8 ms | "
        "0.0.8 / ours |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        official = OFFICIAL_MS.get((r["solver"], r["shape"]))
        ratio = f"{official / r['ms']:.1f}x" if official else "-"
        lines.append(
            f"| {r['shape']} | {r['solver']} | {r['path']} | {r['launches']} | {r['syncs']} | "
            f"{r['bytes'] / 1e9:.2f} | {r['ms']:.2f} | {r['vs_argmax']:.1f} | {official if official else '-'} | "
            f"{ratio} |"
        )
    lines += ["", f"Targets of the GPU issue, modelled on the `{rows[-1]['path']}` path (what runs on CUDA):", ""]
    for r in rows:
        if r["path"] != rows[-1]["path"]:
            continue
        for target, ok in r["targets"]:
            lines.append(f"- {r['shape']} {r['solver']}: {target}: {'met' if ok else '**not met**'}")
    kernels = [r for r in rows if r.get("kernels")]
    if kernels:
        lines += ["", "Triton kernels per call (name x calls, MB declared):", ""]
        for r in kernels:
            lines.append(f"- {r['shape']} {r['solver']}: {r['kernels']}")
    return "\n".join(lines) + "\n"


def targets(row: dict[str, Any], by_key: dict[tuple[str, str, str], dict[str, Any]]) -> list[tuple[str, bool]]:
    solver, shape, ms, path = row["solver"], row["shape"], row["ms"], row["path"]
    official = OFFICIAL_MS.get((solver, shape))
    out = []
    if solver.startswith("rma"):
        if official:
            out.append(("at least 3x faster than 0.0.8 with screening", official / ms >= 3))
        out.append(("at most 10x argmax", row["vs_argmax"] <= 10))
        out.append(("at most 2 host syncs", row["syncs"] <= 2))
    if solver == "ba" and official:
        out.append(("at least 100x faster than 0.0.8's BA", official / ms >= 100))
    if solver == "exact-multilabel" and ("rma-multilabel", shape, path) in by_key:
        out.append(("at most 2x our RMA", ms <= 2 * by_key[("rma-multilabel", shape, path)]["ms"]))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--solvers", nargs="*", default=list(SOLVERS), choices=list(SOLVERS))
    ap.add_argument("--paths", nargs="*", default=["torch", "triton"], choices=["torch", "triton"],
                    help="code paths to count (targets are judged on the last)")  # fmt: skip
    ap.add_argument("--out", help="write the Markdown report here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if "triton" in args.paths and not use_interpreter():
        raise SystemExit("the triton path needs triton importable and TRITON_INTERPRET=1 before its first import")
    rows: list[dict[str, Any]] = []
    for shape_name in args.shapes:
        probs = make_input(SHAPES[shape_name])
        # the baseline: argmax over classes, or p > 0.5 for one class (what argmax means there)
        single = dict(metric="acc", output_mode="multilabel", solver="TR")
        baseline = SOLVERS["argmax"] if probs.shape[1] > 1 else single
        argmax = count_call(baseline, probs)
        for solver in args.solvers:
            if probs.shape[1] == 1 and SOLVERS[solver]["output_mode"] == "multiclass" and solver != "argmax":
                continue
            for path in args.paths:
                t0 = time.perf_counter()
                counts = argmax if solver == "argmax" else count_call(SOLVERS[solver], probs, path == "triton")
                ms = counts.model_ms()
                rows.append(dict(shape=shape_name, solver=solver, path=path, launches=counts.launches,
                                 syncs=counts.syncs, bytes=counts.bytes, ms=ms, vs_argmax=ms / argmax.model_ms(),
                                 kernels=_kernel_summary(counts.kernels)))  # fmt: skip
                took = time.perf_counter() - t0
                print(f"{shape_name} {solver} {path}: {counts.launches} launches, {counts.syncs} syncs, "
                      f"{counts.bytes / 1e9:.2f} GB, {ms:.2f} ms modelled ({took:.0f} s)", flush=True)  # fmt: skip
    by_key = {(r["solver"], r["shape"], r["path"]): r for r in rows}
    for r in rows:
        r["targets"] = targets(r, by_key)
    text = report(rows, sys.argv[1:] if argv is None else argv)
    print(text)
    if args.out:
        from rankseg.engine.runfiles import atomic_write_text

        atomic_write_text(Path(args.out), text)


def _kernel_summary(kernels: list[tuple[str, int]]) -> str:
    out: dict[str, list[int]] = {}
    for name, nbytes in kernels:
        calls = out.setdefault(name.removesuffix("_kernel"), [0, 0])
        calls[0] += 1
        calls[1] += nbytes
    return ", ".join(f"{name} x{n} ({b / 1e6:.1f} MB)" for name, (n, b) in out.items())


if __name__ == "__main__":
    main()
