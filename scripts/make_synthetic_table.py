"""Train and evaluate every model x loss of the paper's tables on the synthetic dataset, then render the table.

    make tables-synthetic                                               # the shipped results/synthetic_table/
    python scripts/make_synthetic_table.py                              # full grid, 1 min per cell (~25 min, 2 cores)
    python scripts/make_synthetic_table.py --minutes-per-cell 3 --models pspnet --losses ce focal
    python scripts/make_synthetic_table.py --force                      # redo cells that already have results
    python scripts/make_synthetic_table.py --out /tmp/syn --max-iters 5 --set dataset.num_train=32

The grid and the CPU-sized settings come from ``configs/experiment/synthetic_table.yaml``. Each cell trains
from scratch with :func:`rankseg.engine.train.run_training` (capped at ``--minutes-per-cell``), then
:func:`rankseg.engine.evaluate.run_evaluation` scores threshold, argmax and rankdice (strictly proper losses
only) in one forward pass. A cell whose ``metrics.json`` already holds all of its rules is skipped.

Outputs, all small: ``OUT/runs/synthetic/{model}/{loss}/{run}/metrics.json`` (+ ``class_scores.csv``),
``OUT/tables/synthetic.{md,csv}`` (rendered by ``rankseg.experiments.tables``) and
``OUT/tables/synthetic_timings.csv`` (machine, budget, iterations, train/eval seconds per cell), the tables' plots
(``OUT/tables/*.png``) and example pictures of the first strictly proper cell in ``OUT/figures/`` (overlay grids,
reliability diagram, expected vs realised Dice). A cell whose results predate what evaluation writes now
(calibration, ``per_image.csv``) is evaluated again from its checkpoint, without retraining.
Checkpoints go to ``--checkpoint-dir`` (git-ignored ``checkpoints/`` by default). ``OUT`` defaults to
``results/`` (its ``runs/`` and ``tables/`` are git-ignored); only ``make tables-synthetic`` writes the shipped
copy under ``results/synthetic_table/``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

EXPERIMENT = "synthetic_table"
MODEL_KEY = "experiment/light_model@light_model"  # the sweeper key that picks the (light) model
TIMING_COLUMNS = [
    "model",
    "loss",
    "device",
    "machine",
    "threads",
    "torch",
    "minutes_budget",
    "iterations",
    "images_seen",
    "stopped",
    "train_loss",
    "train_s",
    "eval_s",
    "finished_at",
]


def machine_info(device: str) -> dict[str, Any]:
    """Device, machine name, torch threads and version: what the timings of a cell depend on."""
    import torch

    from rankseg.engine.build import resolve_device
    from rankseg.experiments.machine import cpu_model

    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cpu_model()} ({os.cpu_count()} cores)"
    return {"device": dev.type, "machine": name, "threads": torch.get_num_threads(), "torch": torch.__version__}


def sweep_grid(compose) -> tuple[list[str], list[str]]:
    """(models, losses) of the experiment's ``hydra.sweeper.params``."""
    cfg = compose("train", [f"experiment={EXPERIMENT}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    return str(params[MODEL_KEY]).split(","), str(params["loss"]).split(",")


def expected_rules(eval_cfg) -> set[str]:
    """Rules that evaluation writes for this cell: RankSEG rules only for strictly proper losses."""
    from rankseg.engine.build import build_rules

    rules = build_rules(eval_cfg.predict)
    proper = bool(eval_cfg.loss.get("proper", False)) or bool(eval_cfg.force_rankdice)
    return {name for name, rule in rules.items() if proper or not rule.requires_proper}


def cell_done(metrics_path: Path, rules: set[str]) -> bool:
    if not metrics_path.is_file():
        return False
    data = json.loads(metrics_path.read_text(encoding="utf-8"))
    return rules <= set(data.get("rules", {}))


def outputs_complete(results_dir: Path, eval_cfg) -> bool:
    """Whether the cell's evaluation files hold everything evaluation now writes (calibration, per_image.csv)."""
    from rankseg.engine.calibration import RELIABILITY_PNG
    from rankseg.engine.evaluate import METRICS_FILE
    from rankseg.engine.inspection import PER_IMAGE_FILE

    data = json.loads((results_dir / METRICS_FILE).read_text(encoding="utf-8"))
    if not data.get("calibration") or not (results_dir / RELIABILITY_PNG).is_file():
        return False
    return not eval_cfg.get("per_image") or (results_dir / PER_IMAGE_FILE).is_file()


def write_figures(compose, cell: list[str], figures: Path) -> list[Path]:
    """Example pictures of one cell (``README`` "Looking at results"): its overlay grids, reliability diagram and
    expected-vs-realised plot, from an evaluation into a scratch folder (the cell's own results stay as they are).
    """
    import shutil
    import tempfile

    from rankseg.engine.calibration import RELIABILITY_PNG
    from rankseg.engine.evaluate import run_evaluation
    from rankseg.engine.inspection import OVERLAY_DIR, PLOT_DIR
    from rankseg.engine.runs import run_identity, run_key

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose("evaluate", [*cell, f"paths.results_dir={tmp}", "save_overlays=1", "per_image=true",
                                   "predict=[argmax,rankdice,rma]", "logger=none"])  # fmt: skip
        run_evaluation(cfg)
        run_dir = Path(tmp) / "runs" / run_key(run_identity(cfg))
        overlays = sorted((run_dir / OVERLAY_DIR).glob("*.png"))
        picks = {
            "overlay_first_image.png": overlays[0] if overlays else None,
            "overlay_most_changed.png": overlays[-1] if len(overlays) > 1 else None,
            "reliability.png": run_dir / RELIABILITY_PNG,
            "expected_vs_realised_rankdice.png": run_dir / PLOT_DIR / "expected_vs_realised_rankdice.png",
        }
        figures.mkdir(parents=True, exist_ok=True)
        written = []
        for name, source in picks.items():
            if source is not None and source.is_file():
                shutil.copyfile(source, figures / name)
                written.append(figures / name)
    return written


def read_timings(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {(row["model"], row["loss"]): row for row in csv.DictReader(fh)}


def write_timings(path: Path, rows: dict[tuple[str, str], dict[str, Any]], models: list[str], losses: list[str]):
    from rankseg.experiments._io import atomic_write_text

    def order(key: tuple[str, str]) -> tuple[int, int, str]:
        m, lo = key
        return (models.index(m) if m in models else len(models), losses.index(lo) if lo in losses else 99, m + lo)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TIMING_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for key in sorted(rows, key=order):
        writer.writerow(rows[key])
    atomic_write_text(path, buf.getvalue())


def header_line(timings: dict[tuple[str, str], dict[str, Any]], data: str) -> str:
    """One Markdown paragraph saying what the table is: synthetic data, budget and machine(s)."""
    budgets = sorted({float(r["minutes_budget"]) for r in timings.values() if r.get("minutes_budget")})
    machines = sorted({f"{r['machine']}, {r['threads']} threads, torch {r['torch']}" for r in timings.values()})
    train_min = sum(float(r["train_s"]) for r in timings.values()) / 60
    eval_min = sum(float(r["eval_s"]) for r in timings.values()) / 60
    budget = " / ".join(f"{b:g}" for b in budgets) or "?"
    return (
        f"**Synthetic data** ({data}; no pretrained weights): "
        f"every cell trained from scratch for at most {budget} min with CPU-sized models "
        "(`configs/experiment/synthetic_table.yaml`) on " + "; ".join(machines) + f" ({train_min:.1f} min of "
        f"training and {eval_min:.1f} min of evaluation in all; per cell: `synthetic_timings.csv`). "
        "Written by `scripts/make_synthetic_table.py`. These numbers test the pipeline; they are not the paper's."
    )


def add_header(md_path: Path, line: str) -> None:
    from rankseg.experiments._io import atomic_write_text

    lines = md_path.read_text(encoding="utf-8").splitlines()
    atomic_write_text(md_path, "\n".join([lines[0], "", line, *lines[1:]]) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes-per-cell", type=float, help="training budget per cell (default: the config's)")
    parser.add_argument("--max-iters", type=int, help="also stop training after this many iterations")
    parser.add_argument("--models", nargs="+", help="subset of the grid's models (default: all)")
    parser.add_argument("--losses", nargs="+", help="subset of the grid's losses (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="gets runs/ and tables/")
    parser.add_argument("--checkpoint-dir", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--data-dir", type=Path, help="dataset parent folder (default: the config's, data/)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda")
    parser.add_argument("--force", action="store_true", help="retrain and re-evaluate finished cells")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="Hydra overrides (train and evaluate)"
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))  # also runs from a plain checkout
    from hydra import compose, initialize_config_dir

    from rankseg.engine.evaluate import METRICS_FILE, run_evaluation
    from rankseg.engine.runs import CHECKPOINT_FILE, run_identity, run_key
    from rankseg.engine.train import run_training
    from rankseg.experiments.tables import write_tables

    out, tables_dir = args.out.resolve(), args.out.resolve() / "tables"
    common = [
        f"experiment={EXPERIMENT}",
        f"paths.results_dir={out}",
        f"paths.checkpoint_dir={args.checkpoint_dir.resolve()}",
        f"device={args.device}",
    ]
    if args.data_dir is not None:
        common.append(f"paths.data_dir={args.data_dir.resolve()}")
    machine = machine_info(args.device)
    timings_path = tables_dir / "synthetic_timings.csv"
    timings: dict[tuple[str, str], dict[str, Any]] = dict(read_timings(timings_path))

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        grid_models, grid_losses = sweep_grid(compose)
        models, losses = args.models or grid_models, args.losses or grid_losses
        unknown = sorted(set(models) - set(grid_models)) + sorted(set(losses) - set(grid_losses))
        if unknown:
            parser.error(f"not in the grid of {EXPERIMENT}: {unknown} (models {grid_models}, losses {grid_losses})")
        start = time.monotonic()
        for model in models:
            for loss in losses:
                cell = [*common, f"{MODEL_KEY}={model}", f"loss={loss}", *args.set]
                eval_cfg = compose("evaluate", cell)
                train_over = [*cell, "logger=none", "resume=false"]
                if args.minutes_per_cell is not None:
                    train_over.append(f"max_minutes={args.minutes_per_cell}")
                if args.max_iters is not None:
                    train_over.append(f"max_iters={args.max_iters}")
                train_cfg = compose("train", train_over)
                ds = eval_cfg.dataset
                size = f"{ds.image_size}x{ds.image_size}"
                data = f"generated shapes, {size}, {ds.num_train} train / {ds.num_val} val images"
                key = run_key(run_identity(eval_cfg))
                results_dir = Path(eval_cfg.paths.results_dir) / "runs" / key
                rules = expected_rules(eval_cfg)
                if not args.force and cell_done(results_dir / METRICS_FILE, rules):
                    if outputs_complete(results_dir, eval_cfg):
                        print(f"== {model}/{loss}: {results_dir / METRICS_FILE} has {sorted(rules)}; skipped")
                        continue
                    if (Path(eval_cfg.paths.checkpoint_dir) / key / CHECKPOINT_FILE).is_file():
                        # The same network: evaluating again adds what evaluation writes now, the numbers stay.
                        print(f"== {model}/{loss}: evaluating the trained network again (new evaluation outputs)")
                        run_evaluation(eval_cfg)
                        continue
                # Retraining replaces the network: evaluation then drops the old network's records itself.
                print(f"== {model}/{loss}: training for up to {train_cfg.max_minutes} min", flush=True)
                t0 = time.monotonic()
                summary = run_training(train_cfg)
                t1 = time.monotonic()
                run_evaluation(eval_cfg)
                t2 = time.monotonic()
                timings[(model, loss)] = {
                    "model": model,
                    "loss": loss,
                    **machine,
                    "minutes_budget": train_cfg.max_minutes,
                    "iterations": summary["iteration"],
                    "images_seen": summary["iteration"] * int(train_cfg.batch_size),
                    "stopped": summary["stopped"],
                    "train_loss": f"{summary['loss']:.4f}",
                    "train_s": f"{t1 - t0:.1f}",
                    "eval_s": f"{t2 - t1:.1f}",
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
                write_timings(timings_path, timings, grid_models, grid_losses)
                print(f"   {summary['iteration']} iterations, train {t1 - t0:.0f} s, eval {t2 - t1:.0f} s", flush=True)

        showcase = next(
            (m, lo) for m in models for lo in losses
            if compose("evaluate", [*common, f"{MODEL_KEY}={m}", f"loss={lo}"]).loss.get("proper", False)
        )  # fmt: skip
        cell = [*common, f"{MODEL_KEY}={showcase[0]}", f"loss={showcase[1]}", *args.set]
        figures = write_figures(compose, cell, out / "figures")
        print(f"== example pictures of {showcase[0]}/{showcase[1]}: {', '.join(p.name for p in figures)}")

    written = write_tables(
        out / "runs", tables_dir, ROOT / "results" / "published" / "published_tables.csv", ["synthetic"]
    )
    md = next((p for p in written if p.suffix == ".md"), None)
    if md is not None and timings:
        add_header(md, header_line(timings, data))
    print(f"== done in {(time.monotonic() - start) / 60:.1f} min: {md}, {timings_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
