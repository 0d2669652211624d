"""Render results/tables/{dataset}.md and .csv from evaluation runs and the published numbers.

    python scripts/make_tables.py --runs results/runs --out results/tables
    python scripts/make_tables.py --datasets kvasir_seg synthetic

Reads every ``metrics.json`` below ``--runs`` and ``results/published/published_tables.csv``; see
``rankseg/experiments/tables.py`` for the layout. Nothing in the output is typed by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rankseg.experiments.tables import DATASETS, write_tables

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=Path, default=ROOT / "results" / "runs", help="root of metrics.json files"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "tables", help="output folder")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--published", type=Path, default=ROOT / "results" / "published" / "published_tables.csv"
    )
    args = parser.parse_args(argv)
    write_tables(
        args.runs,
        args.out,
        args.published,
        args.datasets,
        known_typos_csv=args.published.with_name("known_typos.csv"),
    )


if __name__ == "__main__":
    main()
