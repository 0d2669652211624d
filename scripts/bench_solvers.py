"""Time every solver side by side (ours, argmax, and optionally the PyPI release rankseg 0.0.8).

    python scripts/bench_solvers.py                      # CPU sizes, 2 threads
    python scripts/bench_solvers.py --device cuda        # full paper sizes on a GPU
    pip install --no-deps --target /tmp/official rankseg==0.0.8
    python scripts/bench_solvers.py --official /tmp/official --out results/solver_benchmark.md

Inputs are softmax (sigmoid for one channel) of smooth random logits: Gaussian noise on a grid 16 times coarser,
upsampled bilinearly and scaled by 4, so that objects are spatially coherent and probabilities range from
confident to uncertain, as in real networks. The official release runs in a subprocess (its package is also
called ``rankseg``) on bit-identical inputs (same seed, same generator). ``--rounds`` rounds alternate between
the two implementations (ours, 0.0.8, ours, ...), each timing ``--repeats`` calls per case after one warm-up;
every figure is the median over all rounds, so slow drifts of a shared machine hit both alike. Peak extra
memory is measured once per solver in a fresh subprocess, after a warm-up call on a 16 times smaller input
(CPU: growth of the peak resident set size over the resident set before the call, the peak reset once the
input exists; with a fixed glibc mmap threshold so that freed tensors leave the resident set; CUDA:
torch.cuda.max_memory_allocated above the input).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

CPU_SHAPES = {
    "voc-like": (2, 21, 256, 256),
    "cityscapes-like": (1, 19, 256, 512),
    "kvasir-like": (8, 1, 256, 256),
}
GPU_SHAPES = {
    "voc-like": (8, 21, 512, 512),
    "cityscapes-like": (2, 19, 1024, 2048),
    "kvasir-like": (8, 1, 512, 512),
}

# (label, kwargs for functional.rankseg); multi-channel cases are skipped for C = 1 where unsupported.
CASES = [
    ("argmax", dict(metric="acc", output_mode="multiclass", solver="argmax")),
    ("RMA dice multilabel", dict(metric="dice", output_mode="multilabel", solver="RMA")),
    ("RMA dice multiclass", dict(metric="dice", output_mode="multiclass", solver="RMA")),
    ("RMA iou multiclass", dict(metric="iou", output_mode="multiclass", solver="RMA")),
    (
        "RMA dice multilabel, screening",
        dict(metric="dice", output_mode="multilabel", solver="RMA", safe_screening=True),
    ),
    (
        "RMA dice multiclass, screening",
        dict(metric="dice", output_mode="multiclass", solver="RMA", safe_screening=True),
    ),
    ("BA dice multilabel", dict(metric="dice", output_mode="multilabel", solver="BA")),
    ("exact dice multilabel", dict(metric="dice", output_mode="multilabel", solver="exact")),
    ("exact dice multiclass", dict(metric="dice", output_mode="multiclass", solver="exact")),
    ("exact iou multiclass", dict(metric="iou", output_mode="multiclass", solver="exact")),
]
# 0.0.8 cannot run these ("exact" is not implemented) or takes too long (BA on the largest GPU input is fine).
OFFICIAL_SKIP = {"exact dice multilabel", "exact dice multiclass", "exact iou multiclass"}


INPUT_KIND = os.environ.get("BENCH_INPUT", "smooth")
# Memory workers: glibc raises its mmap threshold after large frees and then keeps freed blocks in the heap, so
# the peak resident set would follow the allocator's cache rather than the solver's allocations; a fixed
# threshold (as in tests/test_memory.py) makes every large tensor its own mapping, returned on free.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def make_input(shape: tuple[int, ...], device: str, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    if INPUT_KIND == "noise":  # softmax(randn): the input of the reference's CPU timings
        logits = torch.randn(b, c, h, w, generator=gen)
        return (logits.sigmoid() if c == 1 else logits.softmax(1)).to(device)
    coarse = torch.randn(b, c, max(h // 16, 2), max(w // 16, 2), generator=gen) * 4
    logits = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    probs = logits.sigmoid() if c == 1 else logits.softmax(1)
    return probs.to(device)


def _supported(label: str, c: int) -> bool:
    return c > 1 or not ("multiclass" in label or label == "argmax")


def _call(fn, probs, kwargs):
    if kwargs.get("solver") == "argmax":
        return probs.argmax(1)
    return fn(probs, **kwargs)


def time_cases(impl: str, shapes: dict, device: str, repeats: int, only: list[str] | None) -> dict:
    """Times in ms of every call for one implementation ("ours" or "official", whichever ``rankseg`` is
    importable)."""
    from rankseg.functional import rankseg as fn

    out: dict[str, dict[str, float]] = {}
    for name, shape in shapes.items():
        probs = make_input(shape, device)
        for label, kwargs in CASES:
            if only and label not in only:
                continue
            if not _supported(label, shape[1]) or (impl == "official" and label in OFFICIAL_SKIP):
                continue
            if impl == "ours" and "screening" in label:
                continue  # accepted but not needed by our solver; the plain rows are the comparison
            times = []
            for i in range(repeats + 1):
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                _call(fn, probs, kwargs)
                if device == "cuda":
                    torch.cuda.synchronize()
                if i:  # the first run is a warm-up
                    times.append((time.perf_counter() - t0) * 1e3)
            out.setdefault(name, {})[label] = times
    return out


def peak_memory(shape, device: str, kwargs: dict) -> float:
    """Peak extra memory of one call in MiB (run in a fresh process)."""
    import resource

    from rankseg.functional import rankseg as fn

    # Warm-up on a 16x smaller input of the same kind: lazy imports and the first use of library code pages
    # would otherwise count as peak memory of the measured call.
    _call(fn, make_input(shape[:2] + tuple(max(s // 4, 8) for s in shape[2:]), device, seed=1), kwargs)
    probs = make_input(shape, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _call(fn, probs, kwargs)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    if _reset_peak_rss():
        # Linux: the peak resident set is reset after the input exists, so only the call's own growth counts
        # (ru_maxrss would still hold the peak of building the input and hide anything below it).
        base = _status_kib("VmRSS")
        _call(fn, probs, kwargs)
        return (_status_kib("VmHWM") - base) / 1024
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _call(fn, probs, kwargs)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _subprocess(args: list[str], pythonpath: str | None, extra_env: dict | None = None) -> dict:
    env = dict(os.environ, **(extra_env or {}))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/" if pythonpath else None)
    if res.returncode != 0:
        raise RuntimeError(f"worker failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine() -> str:
    from rankseg.experiments.machine import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"


def render(results: dict, memory: dict, shapes: dict, args, official: bool, device_name: str) -> str:
    lines = [
        "# Solver benchmark",
        "",
        f"Machine: {device_name}. Command: `python scripts/bench_solvers.py {' '.join(sys.argv[1:])}`.",
        f"Median of {args.rounds} x {args.repeats} calls (rounds alternate between the implementations, each "
        "after a warm-up call), milliseconds; inputs: "
        + ("softmax of smooth random logits" if args.input == "smooth" else "softmax(randn) (white-noise logits)")
        + " (see the script). 'x argmax' is our time over argmax's; 'speed-up' is 0.0.8's time over ours "
        "(0.0.8 with `safe_screening=True` where that row exists). Peak extra memory in MiB, one call each after a "
        "warm-up on a 16x smaller input (resident-set growth with a fixed glibc mmap threshold, see the script).",
        "",
    ]
    for name, shape in shapes.items():
        size_mib = torch.Size(shape).numel() * 4 / 2**20
        lines += [f"## {name} {tuple(shape)} (float32 input: {size_mib:.1f} MiB)", ""]
        head = "| solver | ours (ms) | x argmax |"
        sep = "|---|---|---|"
        if official:
            head += " 0.0.8 (ms) | 0.0.8 screening (ms) | speed-up |"
            sep += "---|---|---|"
        if memory:
            head += " ours peak MiB |" + (" 0.0.8 peak MiB |" if official else "")
            sep += "---|" + ("---|" if official else "")
        lines += [head, sep]
        ours = results["ours"].get(name, {})
        theirs = results.get("official", {}).get(name, {})
        argmax = ours.get("argmax")
        for label, _ in CASES:
            if "screening" in label or label not in ours:
                continue
            row = (
                f"| {label} | {ours[label]:.1f} | {ours[label] / argmax:.1f} |"
                if argmax
                else f"| {label} | {ours[label]:.1f} | - |"
            )
            if official:
                plain = theirs.get(label)
                screen = theirs.get(f"{label}, screening")
                ref = screen if screen is not None else plain
                row += f" {plain:.1f} |" if plain is not None else " n/a |"
                row += f" {screen:.1f} |" if screen is not None else " - |"
                row += f" {ref / ours[label]:.1f}x |" if ref is not None else " - |"
            if memory:
                mem = memory.get("ours", {}).get(name, {}).get(label)
                row += f" {mem:.0f} |" if mem is not None else " - |"
                if official:
                    mem = (
                        memory.get("official", {})
                        .get(name, {})
                        .get(f"{label}, screening", memory.get("official", {}).get(name, {}).get(label))
                    )
                    row += f" {mem:.0f} |" if mem is not None else " - |"
            lines.append(row)
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per case and round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the implementations")
    ap.add_argument("--official", help="directory holding the PyPI release (pip install --target DIR)")
    ap.add_argument("--memory", action="store_true", help="also measure peak extra memory per solver")
    ap.add_argument("--only", nargs="*", help="labels of the cases to run")
    ap.add_argument("--out", help="write the Markdown report here (and the raw numbers next to it as JSON)")
    ap.add_argument(
        "--input",
        choices=["smooth", "noise"],
        default="smooth",
        help="smooth random logits (default) or softmax(randn), the reference's CPU input",
    )
    ap.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["BENCH_INPUT"] = args.input  # inherited by the worker subprocesses
    global INPUT_KIND
    INPUT_KIND = args.input
    shapes = GPU_SHAPES if args.device.startswith("cuda") else CPU_SHAPES

    if args.worker == "time":
        print(json.dumps(time_cases(args.impl, shapes, args.device, args.repeats, args.only)))
        return
    if args.worker == "memory":
        kwargs = dict(CASES)[args.case]
        print(json.dumps(peak_memory(tuple(json.loads(args.shape)), args.device, kwargs)))
        return

    common = [
        "--input",
        args.input,
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
    ]
    if args.only:
        common += ["--only", *args.only]
    repo = str(Path(__file__).resolve().parents[1])
    # Rounds alternate between the implementations so that drifts of a shared machine hit both alike; the
    # reported figure is the median over every timed call of all rounds.
    impls = [("ours", repo)] + ([("official", args.official)] if args.official else [])
    calls: dict = {}
    for _ in range(args.rounds):
        for impl, path in impls:
            part = _subprocess(["--worker", "time", "--impl", impl, *common], path)
            for name, cases in part.items():
                for label, times in cases.items():
                    calls.setdefault(impl, {}).setdefault(name, {}).setdefault(label, []).extend(times)
    results = {
        impl: {name: {label: statistics.median(t) for label, t in cases.items()} for name, cases in per.items()}
        for impl, per in calls.items()
    }
    memory: dict = {}
    if args.memory:
        for impl, path in (("ours", repo), ("official", args.official)):
            if path is None:
                continue
            for name, shape in shapes.items():
                for label, _ in CASES:
                    if label not in results[impl].get(name, {}):
                        continue
                    worker = ["--worker", "memory", "--shape", json.dumps(shape), "--case", label, *common]
                    memory.setdefault(impl, {}).setdefault(name, {})[label] = _subprocess(worker, path, _MALLOC)
    device_name = machine() if args.device == "cpu" else f"{torch.cuda.get_device_name()} ({machine()})"
    report = render(results, memory, shapes, args, bool(args.official), device_name)
    print(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(report + "\n")
        os.replace(tmp, out)
        raw = out.with_suffix(".json")
        tmp = raw.with_suffix(".tmp")
        tmp.write_text(json.dumps({"machine": device_name, "time_ms": results, "peak_mib": memory}, indent=1))
        os.replace(tmp, raw)


if __name__ == "__main__":
    main()
