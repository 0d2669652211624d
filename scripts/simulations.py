"""Simulations of RankSEG (JMLR 2023): Example 1 (fixed maps), Example 2 (random maps), cut-off heatmap.

    make simulations                                     # both, into the shipped results/simulations/
    python scripts/simulations.py example1               # into outputs/simulations/ (git-ignored)
    python scripts/simulations.py example2 --out /tmp/sim --n-images 200      # a reduced run

example1 writes example1.csv (base, width, rule, tau, expected_dice, mc_dice, mc_se); example2 writes
example2.csv (rule, n, mean_expected_dice, se), example2_by_rho.csv, example2_per_image.csv,
cutoff_heatmap.csv and cutoff_heatmap.png. Each also writes {name}_timings.csv (solver seconds) and
{name}_config.json (arguments, versions, commit). Expected Dice is exact (rankseg.expected_metric); see
rankseg/experiments/simulations.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from rankseg.experiments._io import atomic_write, atomic_write_text
from rankseg.experiments.simulations import (
    EX1_RULES,
    cutoff_grid,
    plot_cutoff_heatmap,
    run_example1,
    run_example2,
    summarise_by_rho,
)

ROOT = Path(__file__).resolve().parents[1]


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda p: df.to_csv(p, index=False, float_format="%.12g"))


def _write_config(out: Path, name: str, args: argparse.Namespace, seconds: float) -> None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    try:
        import rankseg

        version = getattr(rankseg, "__version__", None)
    except ImportError:
        version = None
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    config.update(
        command=" ".join(["python", "scripts/simulations.py", *sys.argv[1:]]),
        commit=commit,
        torch=torch.__version__,
        rankseg=version,
        torch_threads=torch.get_num_threads(),
        wall_seconds=round(seconds, 1),
    )
    atomic_write_text(out / f"{name}_config.json", json.dumps(config, indent=2) + "\n")


def example1(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    df = run_example1(
        bases=args.bases,
        widths=args.widths,
        rules=args.rules,
        n_draws=args.mc_draws,
        seed=args.seed,
        pruning_prob=args.pruning_prob,
        trna_max_width=args.trna_max_width,
        device=args.device,
    )
    _write_csv(df.drop(columns="seconds"), args.out / "example1.csv")
    _write_csv(df[["base", "width", "rule", "seconds"]], args.out / "example1_timings.csv")
    elapsed = time.perf_counter() - t0
    _write_config(args.out, "example1", args, elapsed)
    table = df.pivot_table(index=["base", "width"], columns="rule", values="expected_dice", sort=False)
    print("\nExample 1: exact expected Dice (rows base, width; columns rules)")
    print(table.reindex(columns=[r for r in args.rules if r in table.columns]).to_string(float_format="%.4f"))
    print(f"\nwrote {args.out / 'example1.csv'} in {elapsed:.1f} s")


def example2(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    per_image, summary, seconds = run_example2(
        n_images=args.n_images, width=args.width, seed=args.seed, chunk=args.chunk, device=args.device
    )
    by_rho = summarise_by_rho(per_image)
    grid = cutoff_grid(width=args.width, seed=args.seed, device=args.device)
    out = args.out
    _write_csv(summary, out / "example2.csv")
    _write_csv(by_rho, out / "example2_by_rho.csv")
    _write_csv(per_image, out / "example2_per_image.csv")
    _write_csv(
        pd.DataFrame({"rule": list(seconds), "seconds": list(seconds.values())}), out / "example2_timings.csv"
    )
    _write_csv(grid, out / "cutoff_heatmap.csv")
    plot_cutoff_heatmap(grid, out / "cutoff_heatmap.png")
    elapsed = time.perf_counter() - t0
    _write_config(out, "example2", args, elapsed)
    print(
        f"\nExample 2: {args.n_images} maps {args.width}x{args.width}, exact expected Dice, se = std/sqrt(n)"
    )
    print(summary.to_string(index=False, float_format="%.4f"))
    print("\nImplied cut-off p_(tau+1) of the exact rule (rows beta, columns rho)")
    print(grid.pivot(index="beta", columns="rho", values="cutoff").to_string(float_format="%.2f"))
    print(f"\nwrote {out / 'example2.csv'} and friends in {elapsed:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=ROOT / "outputs" / "simulations")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument(
        "--device", default="cpu", help="where the solvers run; the random draws are on the CPU"
    )
    # One thread by default: the solvers' per-call tensors are small, and on a shared 2-core machine torch's
    # default (one thread per core) ran example2 about 10x slower than one thread.
    common.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")

    p1 = sub.add_parser("example1", parents=[common], help="fixed maps p[r,c] = base^-(r+c)")
    p1.add_argument("--bases", type=float, nargs="+", default=[1.01, 1.05, 1.10])
    p1.add_argument("--widths", type=int, nargs="+", default=[28, 64, 128, 256])
    p1.add_argument("--rules", nargs="+", default=list(EX1_RULES), choices=list(EX1_RULES))
    p1.add_argument("--mc-draws", type=int, default=1000, help="Monte Carlo label draws per map (0: none)")
    p1.add_argument("--pruning-prob", type=float, default=0.5)
    p1.add_argument("--trna-max-width", type=int, default=None, help="skip TRNA on wider maps")
    p1.set_defaults(func=example1)

    p2 = sub.add_parser("example2", parents=[common], help="random maps and the cut-off heatmap")
    p2.add_argument("--n-images", type=int, default=2000)
    p2.add_argument("--width", type=int, default=64)
    p2.add_argument("--chunk", type=int, default=250, help="maps per solver call")
    p2.set_defaults(func=example2)

    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    main()
