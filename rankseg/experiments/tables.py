"""Render the paper's result tables from evaluation runs, next to the published numbers.

Inputs are data only: ``results/runs/**/metrics.json`` (one per evaluated run, written by the evaluation code
at ``{dataset}/{model}/{loss}/{run}/metrics.json``) and ``results/published/published_tables.csv`` (the README
tables of Dai & Li, JMLR 2023). Outputs are ``{dataset}.csv`` (long format, one row per model x loss x rule,
percentages) and ``{dataset}.md`` in the published layout ``Model | Loss | Threshold | Argmax | mRankDice``.

``metrics.json`` schema (fractions in [0, 1], ``null`` for NaN)::

    {"dataset", "model", "loss", "run", "run_config", "checkpoint", "weights_sha256", "training", "eval_settings",
     "commit",
     "rules": {RULE: {"mdice", "miou", "dataset_dice", "dataset_iou", "class_dice": {..}, "class_iou": {..},
                      "weights_sha256", "eval_settings", ...}}}

Run it with ``python scripts/make_tables.py --runs results/runs --out results/tables``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rankseg.experiments._io import atomic_write, atomic_write_text

__all__ = [
    "DATASETS",
    "LOSS_NAMES",
    "MODEL_NAMES",
    "NOT_STRICTLY_PROPER",
    "RULES",
    "build_table",
    "load_known_typos",
    "load_published",
    "load_runs",
    "render_markdown",
    "write_tables",
]

#: Run names -> display names used by the published tables, in table order.
MODEL_NAMES: dict[str, str] = {"deeplabv3plus": "DeepLabV3+", "pspnet": "PSPNet", "fcn8": "FCN8"}
LOSS_NAMES: dict[str, str] = {
    "ce": "CE",
    "focal": "Focal",
    "bce": "BCE",
    "soft_dice": "SoftDice",
    "b_soft_dice": "BSoftDice",
    "lovasz_softmax": "Lovasz",
}
#: Losses whose outputs are not calibrated probabilities: the paper prints '/' for RankDice on them.
NOT_STRICTLY_PROPER: frozenset[str] = frozenset({"soft_dice", "b_soft_dice", "lovasz_softmax"})
#: Rule keys in metrics.json, in column order, with their column titles.
RULES: dict[str, str] = {"threshold": "Threshold", "argmax": "Argmax", "rankdice": "mRankDice"}
DATASETS: dict[str, str] = {
    "cityscapes": "Cityscapes val (19 classes, per-image mean over classes)",
    "voc2012": "PASCAL VOC 2012 val (20 classes, background excluded)",
    "kvasir_seg": "Kvasir-SEG (polyp class only)",
    "synthetic": "Synthetic (no published numbers)",
}
_DASH = "\u0394"

_TABLE_COLUMNS = [
    "dataset",
    "model",
    "loss",
    "rule",
    "mdice",
    "miou",
    "dataset_dice",
    "dataset_iou",
    "published_mdice",
    "published_miou",
    "published_note",
    "diff_mdice",
    "diff_miou",
    "status",
    "source",
]


@dataclass(frozen=True)
class _Run:
    path: Path
    data: dict


def load_runs(runs_dir: str | Path) -> list[_Run]:
    """Read every ``metrics.json`` below ``runs_dir`` (sorted by path, so the result is deterministic).

    Args:
        runs_dir: Root folder; searched recursively. A missing folder gives no runs.

    Returns:
        One entry per file, holding its path relative to ``runs_dir`` and its parsed content.

    Raises:
        ValueError: A file lacks ``dataset``, ``model``, ``loss`` or ``rules``.
    """
    runs = []
    runs_dir = Path(runs_dir)
    for path in sorted(runs_dir.glob("**/metrics.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        missing = [k for k in ("dataset", "model", "loss", "rules") if k not in data]
        if missing:
            raise ValueError(f"{path}: metrics.json lacks {missing}")
        runs.append(_Run(path.relative_to(runs_dir), data))
    return runs


def load_published(path: str | Path) -> pd.DataFrame:
    """Read the published tables CSV, keeping the printed number strings (e.g. ``64.01``) verbatim.

    Returns:
        Columns ``dataset, model, loss, rule, mdice, miou, note`` as strings ('' for empty).
    """
    return pd.read_csv(path, dtype=str, keep_default_na=False)


_TYPO_COLUMNS = ["dataset", "model", "loss", "rule", "field", "published", "logged", "source"]


def load_known_typos(path: str | Path | None) -> pd.DataFrame:
    """Read ``known_typos.csv`` (README cells that disagree with the logs); empty if absent or None."""
    if path is None or not Path(path).exists():
        return pd.DataFrame(columns=_TYPO_COLUMNS)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _display(name: str, names: dict[str, str]) -> str:
    return names.get(name, name)


def _order_key(display: str, names: dict[str, str]) -> tuple[int, str]:
    order = list(names.values())
    return (order.index(display), "") if display in order else (len(order), display)


def _pct(value: float | None) -> float:
    return math.nan if value is None else 100.0 * float(value)


def _published_lookup(published: pd.DataFrame, dataset: str) -> dict[tuple[str, str, str], dict]:
    """Map (model, loss, rule) display names to the published row; Kvasir's T/argmax column serves both."""
    out = {}
    for row in published[published["dataset"] == dataset].to_dict("records"):
        rules = ("threshold", "argmax") if row["rule"] == "threshold_argmax" else (row["rule"],)
        for rule in rules:
            out[(row["model"], row["loss"], rule)] = row
    return out


def build_table(dataset: str, runs: Sequence[_Run], published: pd.DataFrame) -> pd.DataFrame:
    """Join the runs of one dataset with its published numbers.

    Rows are the union of the published (model, loss) pairs and those with a run, in the paper's order,
    times the three rules. Values are percentages. Where several runs share a (model, loss), the last by
    path wins and a warning goes to stderr.

    Args:
        dataset: ``cityscapes``, ``voc2012``, ``kvasir_seg`` or ``synthetic``.
        runs: From :func:`load_runs`; other datasets are ignored.
        published: From :func:`load_published`.

    Returns:
        Columns: dataset, model, loss, rule (display names), reproduced ``mdice, miou, dataset_dice,
        dataset_iou``, ``published_mdice, published_miou`` (the printed strings, '' if none),
        ``published_note`` ('/', '-', ...), ``diff_mdice, diff_miou`` (reproduced minus published, unrounded),
        ``status`` (``ok``, ``no run``, ``rule missing``, ``not applicable``: rendered '/', values kept if the
        run has them) and ``source`` (the metrics.json path relative to the runs folder).
    """
    by_pair: dict[tuple[str, str], _Run] = {}
    raw_loss: dict[str, str] = {v: k for k, v in LOSS_NAMES.items()}
    for run in runs:
        if run.data["dataset"] != dataset:
            continue
        key = (_display(run.data["model"], MODEL_NAMES), _display(run.data["loss"], LOSS_NAMES))
        raw_loss.setdefault(key[1], run.data["loss"])
        if key in by_pair:
            print(
                f"warning: {by_pair[key].path} and {run.path} are both {dataset} {key}; using the latter",
                file=sys.stderr,
            )
        by_pair[key] = run

    pub = _published_lookup(published, dataset)
    pairs = {(m, lo) for (m, lo, _) in pub} | set(by_pair)
    pairs_sorted = sorted(pairs, key=lambda p: (_order_key(p[0], MODEL_NAMES), _order_key(p[1], LOSS_NAMES)))

    rows = []
    for model, loss in pairs_sorted:
        run = by_pair.get((model, loss))
        for rule in RULES:
            prow = pub.get((model, loss, rule))
            pub_md = prow["mdice"] if prow else ""
            pub_mi = prow["miou"] if prow else ""
            note = prow["note"] if prow else ""
            rec = dict(
                dataset=dataset,
                model=model,
                loss=loss,
                rule=rule,
                published_mdice=pub_md,
                published_miou=pub_mi,
                published_note=note,
                source=str(run.path) if run else "",
            )
            scores = run.data["rules"].get(rule) if run else None
            if rule == "rankdice" and raw_loss.get(loss, loss) in NOT_STRICTLY_PROPER:
                status = "not applicable"
            elif run is None:
                status = "no run"
            elif scores is None:
                status = "rule missing"
            else:
                status = "ok"
            if scores is not None:  # kept in the CSV even where the Markdown prints '/'
                for key in ("mdice", "miou", "dataset_dice", "dataset_iou"):
                    rec[key] = _pct(scores.get(key))
                rec["diff_mdice"] = rec["mdice"] - float(pub_md) if pub_md else math.nan
                rec["diff_miou"] = rec["miou"] - float(pub_mi) if pub_mi else math.nan
            rec["status"] = status
            rows.append(rec)
    return pd.DataFrame(rows).reindex(columns=_TABLE_COLUMNS)


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1f}"


def _fmt_diff(rep: float, pub: str) -> str:
    # The difference of the displayed (1-decimal) reproduced value, so a reader can check it by eye.
    if math.isnan(rep):
        return "n/a"
    d = round(rep, 1) - float(pub)
    d = 0.0 if abs(d) < 5e-10 else d
    return f"{d:+.1f}".replace("-", "\u2212")


def _typo_marks(typos: pd.DataFrame, dataset: str) -> tuple[dict[tuple[str, str, str], list[int]], list[str]]:
    marks: dict[tuple[str, str, str], list[int]] = {}
    notes = []
    rule_order = [*RULES, "", "threshold_argmax"]
    sub = sorted(
        typos[typos["dataset"] == dataset].to_dict("records"),  # numbered in table order
        key=lambda r: (
            _order_key(r["model"], MODEL_NAMES),
            _order_key(r["loss"], LOSS_NAMES),
            rule_order.index(r["rule"]) if r["rule"] in rule_order else len(rule_order),
        ),
    )
    for i, row in enumerate(sub, start=1):
        rule = row["rule"]
        rules = ("threshold", "argmax") if rule in ("", "threshold_argmax") else (rule,)
        for r in rules:
            marks.setdefault((row["model"], row["loss"], r), []).append(i)
        rule_title = RULES.get(rule) or "Threshold/Argmax"
        field = {"mdice": "mDice", "miou": "mIoU"}.get(row["field"], row["field"])
        notes.append(
            f"- [{i}] {row['model']} {row['loss']} {rule_title} {field}: the README prints "
            f"{row['published']}, the logs say {row['logged']}. Source: {row['source']}."
        )
    return marks, notes


def _cell(rec: dict, with_published: bool, bold: bool, marks: list[int]) -> str:
    status = rec["status"]
    if status == "not applicable":
        return "/"
    if status == "ok":
        rep = f"({_fmt(rec['mdice'])}, {_fmt(rec['miou'])})"
        rep = f"**{rep}**" if bold else rep
    else:
        rep = status
    if not with_published:
        return rep
    note = rec["published_note"]
    if rec["published_mdice"]:
        pub = f"pub ({rec['published_mdice']}, {rec['published_miou']})"
        if marks:
            pub += "".join(f"[{m}]" for m in marks)
        if note:
            pub += f" {note}"
        if status == "ok":
            pub += f" \u00b7 {_DASH} ({_fmt_diff(rec['mdice'], rec['published_mdice'])}, "
            pub += f"{_fmt_diff(rec['miou'], rec['published_miou'])})"
    else:
        pub = f"pub {note}" if note else "not published"
    return f"{rep} \u00b7 {pub}"


def render_markdown(dataset: str, table: pd.DataFrame, typos: pd.DataFrame | None = None) -> str:
    """Render one dataset's table (from :func:`build_table`) in the published layout.

    Each cell is ``(mDice, mIoU)`` in percent with one decimal; the best reproduced mDice of each row (ties
    included, compared at the displayed precision) is bold; RankDice on a loss that is not strictly proper is
    '/'.
    Unless the dataset has no published numbers, every cell also shows the published value and the difference.

    Args:
        dataset: Dataset key; selects the title.
        table: Output of :func:`build_table` for that dataset.
        typos: Optional :func:`load_known_typos` frame; matching published values get a footnote mark.

    Returns:
        The Markdown document, ending with a newline.
    """
    with_published = bool((table["published_mdice"] != "").any() | (table["published_note"] != "").any())
    marks, notes = _typo_marks(typos if typos is not None else load_known_typos(None), dataset)
    lines = [f"# {DATASETS.get(dataset, dataset)}", ""]
    lines.append("Generated by `scripts/make_tables.py` from the runs' `metrics.json` files; do not edit.")
    lines.append("")
    if with_published:
        lines.append(
            "Cells: reproduced (mDice, mIoU) in %, best reproduced mDice of the row in bold; then `pub` = "
            f"the value published by Dai & Li (JMLR 2023) and {_DASH} = reproduced (as displayed) minus "
            "published. '/' = RankDice not applicable (loss not strictly proper); published '-' = not "
            "trained in the paper; 'no run' = no metrics.json for this model and loss; 'rule missing' = the "
            "run lacks this rule."
        )
    else:
        lines.append(
            "Cells: reproduced (mDice, mIoU) in %, best mDice of the row in bold. '/' = RankDice not "
            "applicable (loss not strictly proper); 'rule missing' = the run lacks this rule."
        )
    lines.append("")
    if dataset == "kvasir_seg" and with_published:
        lines.append("The paper prints one T/argmax column for Kvasir-SEG; it is compared with both columns here.")
        lines.append("")
    if with_published and dataset in ("cityscapes", "voc2012"):
        lines.append(
            "Published BCE and BSoftDice mIoU equal mDice/2 (a metric bug in the reference code, "
            "paper_protocol §1), so their mIoU differences are not meaningful."
        )
        lines.append("")
    lines.append("| Model | Loss | " + " | ".join(RULES.values()) + " |")
    lines.append("|---|---|" + "---|" * len(RULES))
    for (model, loss), grp in table.groupby(["model", "loss"], sort=False):
        recs = {r["rule"]: r for r in grp.to_dict("records")}
        shown = [round(r["mdice"], 1) for r in recs.values() if r["status"] == "ok" and not math.isnan(r["mdice"])]
        best = max(shown) if shown else None
        cells = []
        for rule in RULES:
            rec = recs[rule]
            bold = best is not None and rec["status"] == "ok" and round(rec["mdice"], 1) == best
            cells.append(_cell(rec, with_published, bold, marks.get((model, loss, rule), [])))
        lines.append(f"| {model} | {loss} | " + " | ".join(cells) + " |")
    if notes and with_published:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines) + "\n"


def write_tables(
    runs_dir: str | Path,
    out_dir: str | Path,
    published_csv: str | Path,
    datasets: Iterable[str] = tuple(DATASETS),
    known_typos_csv: str | Path | None = None,
) -> list[Path]:
    """Build, render and write ``{dataset}.csv`` and ``{dataset}.md`` for each dataset.

    A dataset with neither runs nor published numbers is skipped.

    Args:
        runs_dir: Root of the ``metrics.json`` files.
        out_dir: Output folder.
        published_csv: ``published_tables.csv``.
        datasets: Dataset keys to render.
        known_typos_csv: Optional ``known_typos.csv`` used for footnotes.

    Returns:
        The files written.
    """
    runs = load_runs(runs_dir)
    published = load_published(published_csv)
    typos = load_known_typos(known_typos_csv)
    written = []
    for dataset in datasets:
        table = build_table(dataset, runs, published)
        if table.empty:
            print(f"{dataset}: no runs and no published numbers; skipped", file=sys.stderr)
            continue
        out = Path(out_dir)
        csv_path = atomic_write(
            out / f"{dataset}.csv", lambda p, t=table: t.to_csv(p, index=False, float_format="%.4f")
        )
        md_path = atomic_write_text(out / f"{dataset}.md", render_markdown(dataset, table, typos))
        n_ok = int((table["status"] == "ok").sum())
        print(f"{dataset}: {n_ok} reproduced cells -> {md_path}, {csv_path}")
        written += [csv_path, md_path]
    return written
