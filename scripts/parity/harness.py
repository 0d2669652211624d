"""Differential harness: ours against the real rankseg 0.0.8, call by call, over the whole public surface.

    pip install --no-deps --target .whl/official rankseg==0.0.8        # what `make parity` does first
    python scripts/parity/harness.py --official .whl/official --calls 20000 --out results/official_parity.md
    python scripts/parity/harness.py --official .whl/official --record  # refresh tests/parity_data/functional_*

Each area module (``functional_cases``, ``distribution_cases``, ``integration_cases`` in this folder) draws call
specs with hypothesis (random shapes, dtypes, parameter values including invalid ones and extreme floats), runs a
spec with whichever ``rankseg`` is importable and classifies a pair of outcomes as same, intended (a documented
difference) or differs. Both packages are named ``rankseg``, so every area runs in two worker processes, one with
the wheel's folder first on ``PYTHONPATH``; the parent compares outcomes and writes the report: calls per entry
point, the intended differences with their reasons, and every other difference with a line that reproduces it.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# Share of --calls per area, in the order they are run.
AREAS = {"functional_cases": 0.7, "distribution_cases": 0.2, "integration_cases": 0.1}
PINNED = REPO / "tests" / "parity_data" / "functional_0.0.8.pt"


def _load(name: str):
    sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(HERE))


def worker(area: str, specs_file: str, out_file: str) -> None:
    """Run every spec of ``specs_file`` with the ``rankseg`` on the path; save the outcomes (torch.save)."""
    import rankseg

    mod = _load(area)
    specs = json.loads(Path(specs_file).read_text())
    torch.set_num_threads(1)
    outcomes, seconds = [], []
    for spec in specs:
        t0 = time.perf_counter()
        outcomes.append(mod.run(spec))
        seconds.append(time.perf_counter() - t0)
    where = str(Path(rankseg.__file__).resolve().parent)
    torch.save({"outcomes": outcomes, "seconds": seconds, "package": where}, out_file)


def run_both(area: str, specs: list[dict[str, Any]], official: str, tmp: str) -> dict[str, dict[str, Any]]:
    """Outcomes of ``specs`` under ours and under the wheel, computed by two concurrent worker processes."""
    specs_file = os.path.join(tmp, f"{area}.json")
    Path(specs_file).write_text(json.dumps(specs))
    procs = {}
    official = str(Path(official).resolve())  # the workers run in a scratch folder
    for side, path in (("ours", str(REPO)), ("official", official)):
        env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
        out = os.path.join(tmp, f"{area}-{side}.pt")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", area, specs_file, out]
        procs[side] = (subprocess.Popen(cmd, env=env, cwd=tmp), out)
    res = {}
    for side, (proc, out) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"error: the {side} worker for {area} failed (exit {proc.returncode})")
        res[side] = torch.load(out, weights_only=False)  # our own file, written a moment ago by the worker
    if not res["official"]["package"].startswith(str(Path(official).resolve())):
        raise SystemExit(f"error: the official worker imported {res['official']['package']}, not the wheel")
    return res


def _entry(spec: dict[str, Any]) -> str:
    return spec.get("fn") or spec.get("entry") or spec.get("call") or "?"


def compare_area(area: str, n: int, seed: int, official: str, tmp: str) -> dict[str, Any]:
    mod = _load(area)
    t0 = time.perf_counter()
    specs = mod.draw(n, seed)
    drawn = time.perf_counter() - t0
    res = run_both(area, specs, official, tmp)
    per_entry: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    intended: dict[str, list[int]] = collections.defaultdict(list)
    differs: list[tuple[int, str]] = []
    for i, spec in enumerate(specs):
        verdict, why = mod.compare(spec, res["ours"]["outcomes"][i], res["official"]["outcomes"][i])
        per_entry[_entry(spec)][verdict] += 1
        kind = res["official"]["outcomes"][i]["kind"]
        per_entry[_entry(spec)][f"official {kind}"] += 1
        if verdict == "intended":
            intended[why].append(i)
        elif verdict != "same":
            differs.append((i, why))
    return {
        "area": area, "specs": specs, "per_entry": per_entry, "intended": intended, "differs": differs,
        "seconds": {side: sum(r["seconds"]) for side, r in res.items()}, "draw_seconds": drawn,
        "reproducer": getattr(mod, "reproducer", lambda s: json.dumps(s)),
    }  # fmt: skip


def report(results: list[dict[str, Any]], argv: list[str]) -> str:
    total = sum(len(r["specs"]) for r in results)
    n_diff = sum(len(r["differs"]) for r in results)
    lines = [
        "# Parity with rankseg 0.0.8",
        "",
        f"Command: `python scripts/parity/harness.py {' '.join(argv)}` (what `make parity` runs); "
        f"torch {torch.__version__}, CPU only (no GPU on this machine).",
        "",
        f"**{total} random calls, {n_diff} unexplained differences.** Each call is compared on its result (dtype, "
        "shape, device, every element; floats to the tolerance of its area), its warnings (category and text), its "
        "exception (type and message) and on leaving its input unmodified.",
        "",
        "| area | entry point | calls | same | intended | differ | 0.0.8 returned | 0.0.8 raised |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for entry, c in sorted(r["per_entry"].items()):
            calls = c["same"] + c["intended"] + c["differs"]
            lines.append(
                f"| {r['area'].removesuffix('_cases')} | `{entry}` | {calls} | {c['same']} | {c['intended']} | "
                f"{c['differs']} | {c['official value']} | {c['official error']} |"
            )
    lines += ["", "Seconds per area (ours / 0.0.8, one thread each): " + "; ".join(
        f"{r['area'].removesuffix('_cases')} {r['seconds']['ours']:.1f} / {r['seconds']['official']:.1f}"
        for r in results) + ".", "", "## Intended differences", ""]  # fmt: skip
    any_intended = False
    for r in results:
        for why, idx in sorted(r["intended"].items(), key=lambda kv: -len(kv[1])):
            any_intended = True
            lines.append(f"- {why}: {len(idx)} calls, e.g. `{r['reproducer'](r['specs'][idx[0]])}`")
    if not any_intended:
        lines.append("None in this sample.")
    lines += ["", "## Unexplained differences", ""]
    if n_diff == 0:
        lines.append("None.")
    for r in results:
        for i, why in r["differs"][:50]:
            lines.append(f"- `{r['reproducer'](r['specs'][i])}`: {why}")
        if len(r["differs"]) > 50:
            lines.append(f"- ... and {len(r['differs']) - 50} more in {r['area']}")
    return "\n".join(lines) + "\n"


def record(official: str, tmp: str, path: Path) -> None:
    """Run the pinned functional specs under the wheel and store spec + outcome for the tests."""
    mod = _load("functional_cases")
    specs = mod.pinned()
    res = run_both("functional_cases", specs, official, tmp)
    cases = [{"spec": s, "official": o} for s, o in zip(specs, res["official"]["outcomes"])]
    cmd = "python scripts/parity/harness.py --official .whl/official --record"
    payload = {"command": cmd, "rankseg": "0.0.8", "torch": str(torch.__version__), "cases": cases}
    for case in cases:  # the spec as JSON text: torch.load(weights_only=True) then needs only plain types
        case["spec"] = json.dumps(case["spec"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".tmp")
    torch.save(payload, tmp_path)
    os.replace(tmp_path, path)
    diffs = [mod.compare(s, o, r) for s, o, r in zip(specs, res["ours"]["outcomes"], res["official"]["outcomes"])]
    print(f"recorded {len(cases)} pinned calls into {path}; ours: "
          f"{collections.Counter(v for v, _ in diffs)}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", help="folder holding the 0.0.8 wheel (pip install --no-deps --target DIR)")
    ap.add_argument("--calls", type=int, default=20000, help="random calls in all, shared among the areas")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--areas", nargs="*", default=list(AREAS), help="area modules to run")
    ap.add_argument("--out", help="write the Markdown report here")
    ap.add_argument("--record", action="store_true", help=f"record the pinned 0.0.8 outcomes into {PINNED}")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if not args.official or not (Path(args.official) / "rankseg").is_dir():
        ap.error("--official DIR must hold the wheel: pip install --no-deps --target DIR rankseg==0.0.8")
    with tempfile.TemporaryDirectory() as tmp:
        if args.record:
            record(args.official, tmp, PINNED)
            return
        results = []
        areas = [a for a in args.areas if (HERE / f"{a}.py").exists()]
        weight = sum(AREAS.get(a, 0.1) for a in areas)
        for area in areas:
            n = round(args.calls * AREAS.get(area, 0.1) / weight)
            t0 = time.perf_counter()
            results.append(compare_area(area, n, args.seed, args.official, tmp))
            r = results[-1]
            print(f"{area}: {n} calls, {len(r['differs'])} unexplained, "
                  f"{sum(len(v) for v in r['intended'].values())} intended ({time.perf_counter() - t0:.0f} s)",
                  flush=True)  # fmt: skip
    text = report(results, sys.argv[1:])
    print(text)
    if args.out:
        from rankseg.engine.runfiles import atomic_write_text

        atomic_write_text(Path(args.out), text)


if __name__ == "__main__":
    main()
