"""Render result tables and plots from evaluation runs and the published numbers.

    python scripts/make_tables.py                                    # every dataset under results/runs
    python scripts/make_tables.py --runs results/runs --out results/tables
    python scripts/make_tables.py --datasets kvasir_seg synthetic
    python scripts/make_tables.py --runs results/synthetic_table/runs --out /tmp/tables
    python scripts/make_tables.py --rma                              # the RankSEG-RMA tables instead

Reads every ``metrics.json`` below ``--runs``, ``results/published/published_tables.csv`` and ``configs/``
(``tables.yaml``: display names, column order, baseline). Writes, per dataset, ``{dataset}.md/.csv`` (scores per
rule pooled over seeds, dataset-level scores, gains over argmax), ``{dataset}_classes.md/.csv`` (per class) and
``{dataset}_gains.png``, ``{dataset}_class_gains.png``; see ``rankseg/experiments/tables.py`` for the layout.
Nothing in the output is typed by hand.

``--rma`` renders the RankSEG-RMA paper's tables instead (Wang & Dai, NeurIPS 2025): ``rma_{dataset}.md/.csv`` for
every dataset of ``results/published/published_rma_tables.csv``, published numbers beside the runs that
``configs/tables.yaml`` (``rma.rows``) maps each published row to, and the commands that train and evaluate them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rankseg.experiments.tables import (
    RMA_PUBLISHED,
    find_datasets,
    load_published,
    load_runs,
    load_table_config,
    write_rma_tables,
    write_tables,
)

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "results" / "runs", help="root of metrics.json files")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "tables", help="output folder")
    parser.add_argument(
        "--datasets", nargs="+", help="datasets to render (default: every dataset with a run under --runs)"
    )
    parser.add_argument("--published", type=Path, default=ROOT / "results" / "published" / "published_tables.csv")
    parser.add_argument("--configs", type=Path, default=ROOT / "configs", help="folder holding tables.yaml")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--rma", action="store_true", help="the RankSEG-RMA tables (rma_{dataset}.md/.csv)")
    parser.add_argument("--rma-published", type=Path, default=RMA_PUBLISHED, help="published RMA numbers")
    args = parser.parse_args(argv)
    if args.rma:
        write_rma_tables(args.runs, args.out, args.rma_published, args.configs, args.datasets)
        return

    config = load_table_config(args.configs)
    found = find_datasets(load_runs(args.runs), config)
    known = found + sorted(set(load_published(args.published)["dataset"]) - set(found))
    if args.datasets:
        unknown = [d for d in args.datasets if d not in known]
        if unknown:
            parser.error(f"no runs under {args.runs} and no published numbers for {unknown}; found: {known}")
    elif not found:
        print(f"no metrics.json under {args.runs}; nothing to render (published-only tables: --datasets {known})")
        return
    write_tables(
        args.runs,
        args.out,
        args.published,
        args.datasets or found,
        known_typos_csv=args.published.with_name("known_typos.csv"),
        config=config,
        plots=not args.no_plots,
    )


if __name__ == "__main__":
    main()
