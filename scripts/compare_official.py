"""Run our `rankseg` and the PyPI release 0.0.8 on identical inputs and compare outputs and error messages.

    pip install --no-deps --target /tmp/official rankseg==0.0.8
    python scripts/compare_official.py --official /tmp/official --out results/official_parity.md

Both packages are called ``rankseg``, so each runs in its own subprocess (``--dump FILE``) on the same
seeded inputs (softmax or sigmoid of smooth random logits, several shapes and sharpness levels); the parent
compares the saved outputs pixel by pixel and the exception types and messages of a list of bad calls.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

CASES = [
    dict(metric="dice", output_mode="multilabel", solver="RMA"),
    dict(metric="dice", output_mode="multiclass", solver="RMA"),
    dict(metric="iou", output_mode="multiclass", solver="RMA"),
    dict(metric="iou", output_mode="multilabel", solver="RMA"),
    dict(metric="dice", output_mode="multilabel", solver="RMA", smooth=1.0),
    dict(metric="iou", output_mode="multilabel", solver="RMA", smooth=1.0),
    dict(metric="dice", output_mode="multiclass", solver="RMA", unassigned_policy="void"),
    dict(metric="dice", output_mode="multiclass", solver="RMA", pruning_prob=0.1),
    dict(metric="dice", output_mode="multilabel", solver="BA"),
    dict(metric="dice", output_mode="multilabel", solver="TRNA"),
    dict(metric="dice", output_mode="multilabel", solver="BA+TRNA"),
    dict(metric="acc", output_mode="multilabel", solver="TR"),
    dict(metric="acc", output_mode="multiclass", solver="argmax"),
]
SHAPES = [((2, 4, 24, 24), 3.0), ((2, 1, 32, 32), 4.0), ((1, 5, 16, 16), 1.0), ((1, 3, 40, 40), 6.0)]
# Benchmark-sized inputs (the partial-sort paths at realistic row lengths), for every call except the TRNA
# ones (0.0.8's TRNA loops in Python over candidate sizes: minutes per call at this size).
LARGE_SHAPES = [((2, 21, 256, 256), 4.0), ((4, 1, 256, 256), 4.0)]
LARGE_SKIP = ("TRNA", "BA+TRNA")
BAD_CALLS = [
    dict(metric="f1"), dict(solver="BA"), dict(eps=0.1), dict(unassigned_policy="void", void_index=1),
    dict(safe_screening="AUTO"), dict(smooth=-1), dict(pruning_prob=2), dict(output_mode="binary"),
    dict(metric="acc"), dict(metric="dice", solver="exact"),
]


def reference_tau(probs: torch.Tensor, metric: str, smooth: float) -> torch.Tensor:
    """The RMA rule evaluated exactly: float64 prefix sums of the sorted rows, ties to the smaller tau.

    Shape: (B, C, *S) -> (B * C,) int64 (tau = 0 scores s / (mu + s), or 0 at s = 0).
    """
    rows = probs.reshape(probs.shape[0] * probs.shape[1], -1).double()
    vals = rows.sort(1, descending=True).values
    total = torch.cat([torch.zeros(rows.shape[0], 1, dtype=torch.float64), vals.cumsum(1)], 1)
    mu = total[:, -1:]
    tau = torch.arange(rows.shape[1] + 1, dtype=torch.float64)
    if metric == "dice":
        score = 2 * total / (mu + tau + 1 + smooth) + smooth / (mu + tau + smooth)
        if smooth == 0:
            score[:, 0] = 0
    else:
        score = (total + smooth) / (mu - total + tau + smooth)
    active = rows.amax(1) > 0.5
    return torch.where(active, score.argmax(1), torch.zeros_like(active, dtype=torch.int64))


def make_input(shape, scale: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    x = torch.randn(b, c, max(h // 8, 2), max(w // 8, 2), generator=gen) * scale
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.sigmoid() if c == 1 else x.softmax(1)


def dump(path: str, seeds: int) -> None:
    from rankseg.functional import rankseg as fn

    out, errs = {}, {}
    for i, kwargs in enumerate(CASES):
        shapes = SHAPES + ([] if kwargs["solver"] in LARGE_SKIP else LARGE_SHAPES)
        for seed in range(seeds):
            for j, (shape, scale) in enumerate(shapes):
                if shape[1] == 1 and kwargs["output_mode"] == "multiclass":
                    continue
                out[f"{i}/{seed}/{j}"] = fn(make_input(shape, scale, 100 * seed + j), **kwargs)
    for k, bad in enumerate(BAD_CALLS):
        try:
            fn(torch.full((1, 3, 4, 4), 1 / 3), **bad)
            errs[k] = "no error"
        except Exception as exc:  # noqa: BLE001 - the point is to record whatever is raised
            errs[k] = f"{type(exc).__name__}: {exc}"
    torch.save({"out": out, "errs": errs}, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", help="directory holding the PyPI release (pip install --target DIR)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--out", help="write the Markdown report here")
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dump:
        dump(args.dump, args.seeds)
        return
    if not args.official:
        ap.error("--official DIR is required (pip install --no-deps --target DIR rankseg==0.0.8)")
    repo = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for name, path in (("ours", repo), ("official", args.official)):
            env = dict(os.environ, PYTHONPATH=path)
            target = os.path.join(tmp, f"{name}.pt")
            cmd = [sys.executable, os.path.abspath(__file__), "--dump", target, "--seeds", str(args.seeds)]
            subprocess.run(cmd, env=env, check=True, cwd=tmp)
            res[name] = torch.load(target, weights_only=True)
    lines = [
        "# Parity with rankseg 0.0.8",
        "",
        f"Command: `python scripts/compare_official.py {' '.join(sys.argv[1:])}`; torch {torch.__version__}, CPU.",
        f"Inputs: {args.seeds} seeds x shapes {[s for s, _ in SHAPES]}, and {[s for s, _ in LARGE_SHAPES]} for "
        "every call but TRNA and BA+TRNA (softmax/sigmoid of smooth logits).",
        "",
        "| call | pixels that differ | pixels compared |",
        "|---|---|---|",
    ]
    exact_rows: list[str] = []
    for i, kwargs in enumerate(CASES):
        keys = [k for k in res["ours"]["out"] if k.split("/")[0] == str(i)]
        diff = sum(int((res["ours"]["out"][k] != res["official"]["out"][k]).sum()) for k in keys)
        total = sum(res["ours"]["out"][k].numel() for k in keys)
        same_types = all(res["ours"]["out"][k].dtype == res["official"]["out"][k].dtype for k in keys)
        call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ("" if same_types else " (dtype differs!)")
        lines.append(f"| {call} | {diff} | {total} |")
        if kwargs["solver"] == "RMA" and kwargs["output_mode"] == "multilabel" and "pruning_prob" not in kwargs:
            # which implementation follows the RMA rule where they differ: count rows off the exact rule
            off = {"ours": 0, "official": 0}
            n_rows = 0
            for k in keys:
                _, seed, j = (int(x) for x in k.split("/"))
                shapes = SHAPES + LARGE_SHAPES
                x = make_input(shapes[j][0], shapes[j][1], 100 * seed + j)
                ref = reference_tau(x, kwargs["metric"], kwargs.get("smooth", 0.0))
                n_rows += ref.numel()
                for name in off:
                    got = res[name]["out"][k].reshape(ref.numel(), -1).sum(1)
                    off[name] += int((got != ref).sum())
            exact_rows.append(f"| {call} | {off['ours']} | {off['official']} | {n_rows} |")
    lines += [
        "",
        "Rows whose mask size differs from the RMA rule evaluated exactly (float64 prefix sums of the sorted row):",
        "",
        "| call | ours | 0.0.8 | rows |",
        "|---|---|---|---|",
        *exact_rows,
    ]
    lines += ["", "| bad call | same exception and message? |", "|---|---|"]
    for k, bad in enumerate(BAD_CALLS):
        a, b = res["ours"]["errs"][k], res["official"]["errs"][k]
        verdict = "yes" if a == b else f"no: ours `{a}`; 0.0.8 `{b}`"
        lines.append(f"| {', '.join(f'{x}={y!r}' for x, y in bad.items())} | {verdict} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        tmp_out = Path(args.out).with_suffix(".tmp")
        tmp_out.write_text(report)
        os.replace(tmp_out, args.out)


if __name__ == "__main__":
    main()
