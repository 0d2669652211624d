"""Plots of the result tables: what each rule gains over the baseline rule (argmax), overall and per class.

Both functions read the frames of :mod:`rankseg.experiments.tables` (never the runs themselves), so a plot shows
exactly the numbers of its table, and return a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, no display: the Agg canvas). :func:`save_png` writes it. ``scripts/make_tables.py`` draws them next to
the tables::

    python scripts/make_tables.py --runs results/runs --out results/tables   # -> {dataset}_gains.png, ...

Sizes grow with the number of rows, rules and classes (the ``*_figsize`` functions), at ``dpi`` from
``configs/tables.yaml``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from rankseg.experiments._io import atomic_write
from rankseg.experiments.tables import TableConfig, fmt_signed

__all__ = ["class_gains_figsize", "gains_figsize", "plot_class_gains", "plot_gains", "save_png"]

_METRICS = (("mdice", "mDice"), ("miou", "mIoU"))
_CLASS_METRICS = (("dice", "Dice"), ("iou", "IoU"))
_FORCED_HATCH = "///"
_MAX_ANNOTATED = 400  # heatmap cells that still get their value written in them


def gains_figsize(n_rows: int, n_rules: int) -> tuple[float, float]:
    """Size in inches of :func:`plot_gains`: a group of ``n_rules`` bars per table row, two panels."""
    return max(6.0, 1.5 + n_rows * (0.25 * n_rules + 0.3)), 7.0


def class_gains_figsize(n_rows: int, n_classes: int, n_rules: int) -> tuple[float, float]:
    """Size in inches of :func:`plot_class_gains`: one heatmap per metric (rows) and rule (columns)."""
    return 3.5 + n_rules * (1.0 + 0.6 * n_classes), 1.2 + len(_CLASS_METRICS) * (0.8 + 0.3 * n_rows)


def _row_label(rec: dict, sep: str) -> str:
    label = f"{rec['model']}{sep}{rec['loss']}"
    return f"{label}{sep}{rec['variant']}" if rec["variant"] else label


def _gain_rules(frame: pd.DataFrame, column: str, config: TableConfig) -> list[str]:
    """Rules other than the baseline that have at least one finite gain, in table order."""
    finite = frame[frame[column].notna() & (frame["rule"] != config.baseline)]
    return [r for r in dict.fromkeys(frame["rule"]) if r in set(finite["rule"])]


def plot_gains(table: pd.DataFrame, config: TableConfig) -> Figure:
    """Bars of each rule's gain over the baseline per table row, with error bars over the row's runs.

    Two panels (mDice, mIoU gains in percentage points). One bar per row and rule with a finite gain (rules that
    are not applicable or missing get none); the error bar is the sample standard deviation of the per-run
    gains, drawn where at least two runs have both rules. Forced rules (dagger in the tables) are hatched.

    Args:
        table: Output of :func:`rankseg.experiments.tables.build_table` for one dataset.
        config: Titles and the baseline rule.

    Returns:
        The figure; its first two axes are the panels, each with one bar container per rule.
    """
    rows_frame = table[table["delta_n"] > 0]
    rules = _gain_rules(rows_frame, "delta_mdice", config)
    keys = list(dict.fromkeys(zip(rows_frame["model"], rows_frame["loss"], rows_frame["variant"], strict=True)))
    by_key = {(r["model"], r["loss"], r["variant"], r["rule"]): r for r in table.to_dict("records")}
    rotate = len(keys) > 12
    labels = [_row_label({"model": m, "loss": lo, "variant": v}, " " if rotate else "\n") for m, lo, v in keys]
    base = config.rule_title(config.baseline)

    fig = Figure(figsize=gains_figsize(len(keys), len(rules)), dpi=config.dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(_METRICS), 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(len(keys), dtype=float)
    width = 0.8 / max(len(rules), 1)
    any_forced = False
    for ax, (metric, name) in zip(axes, _METRICS, strict=True):
        for j, rule in enumerate(rules):
            recs = [by_key.get((*k, rule)) for k in keys]
            mean = np.array([r[f"delta_{metric}"] if r else math.nan for r in recs], dtype=float)
            std = np.array([r[f"delta_{metric}_std"] if r else math.nan for r in recs], dtype=float)
            forced = [bool(r["forced"]) if r else False for r in recs]
            shown = ~np.isnan(mean)
            pos = x + (j - (len(rules) - 1) / 2) * width
            for p, r in zip(pos, recs, strict=True):
                if r is not None and r["status"] == "not applicable":
                    ax.text(p, 0.0, "/", ha="center", va="bottom", color="grey", fontsize=8)
            bars = ax.bar(pos[shown], mean[shown], width, label=config.rule_title(rule), color=f"C{j}")
            for patch, is_forced in zip(bars.patches, np.array(forced)[shown], strict=True):
                if is_forced:
                    patch.set_hatch(_FORCED_HATCH)
                    patch.set_edgecolor("black")
                    any_forced = True
            err = shown & ~np.isnan(std)
            if err.any():
                ax.errorbar(pos[err], mean[err], yerr=std[err], fmt="none", ecolor="black", capsize=2, lw=0.8)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_ylabel(f"\u0394{name} vs {base} (pp)")
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(x, labels, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
    handles, names = axes[0].get_legend_handles_labels()
    if any_forced:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch=_FORCED_HATCH))
        names.append("\u2020 forced (loss not strictly proper)")
    if handles:
        axes[0].legend(handles, names, fontsize=8, loc="best")
    title = config.datasets.get(str(table["dataset"].iloc[0]), str(table["dataset"].iloc[0])) if len(table) else ""
    fig.suptitle(f"{title}: gain over {base} (mean \u00b1 sample std over runs; /: not applicable)", fontsize=10)
    return fig


def plot_class_gains(class_table: pd.DataFrame, config: TableConfig) -> Figure:
    """Heatmaps of each rule's per-class gain over the baseline: one per metric (rows) and rule (columns).

    Cells are table rows (y) by classes (x), coloured by the mean per-run gain in percentage points on one
    symmetric scale for all panels; grey where there is none (not applicable or missing). Values are written in
    the cells (dagger: forced) unless a panel has more than 400 cells.

    Args:
        class_table: Output of :func:`rankseg.experiments.tables.build_class_table` for one dataset.
        config: Titles and the baseline rule.

    Returns:
        The figure; each heatmap axis holds one image of shape (rows, classes).
    """
    frame = class_table[class_table["delta_n"] > 0]
    rules = _gain_rules(frame, "delta", config)
    keys = list(dict.fromkeys(zip(frame["model"], frame["loss"], frame["variant"], strict=True)))
    classes = list(dict.fromkeys(class_table["class"]))
    by_key = {
        (r["model"], r["loss"], r["variant"], r["rule"], r["metric"], r["class"]): r
        for r in class_table.to_dict("records")
    }
    labels = [_row_label({"model": m, "loss": lo, "variant": v}, " ") for m, lo, v in keys]
    base = config.rule_title(config.baseline)
    finite = frame.loc[frame["rule"].isin(rules), "delta"].abs()
    limit = float(finite.max()) if len(finite) and float(finite.max()) > 0 else 1.0

    fig = Figure(figsize=class_gains_figsize(len(keys), len(classes), len(rules)), dpi=config.dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(_CLASS_METRICS), max(len(rules), 1), squeeze=False, sharex=True, sharey=True)
    cmap = _diverging_cmap()
    image = None
    annotate = len(keys) * len(classes) <= _MAX_ANNOTATED
    for i, (metric, name) in enumerate(_CLASS_METRICS):
        for j, rule in enumerate(rules):
            ax = axes[i, j]
            recs = [[by_key.get((*k, rule, metric, c)) for c in classes] for k in keys]
            values = np.array(
                [[r["delta"] if r and r["delta_n"] > 0 else math.nan for r in row] for row in recs], dtype=float
            )
            image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
            if annotate:
                for (y, xx), value in np.ndenumerate(values):
                    rec = recs[y][xx]
                    if math.isnan(value):
                        text, colour = ("/" if rec and rec["status"] == "not applicable" else ""), "grey"
                    else:
                        text = fmt_signed(value) + ("\u2020" if rec["forced"] else "")
                        colour = "white" if abs(value) > 0.6 * limit else "black"
                    ax.text(xx, y, text, ha="center", va="center", fontsize=7, color=colour)
            ax.set_title(f"{name}: {config.rule_title(rule)} \u2212 {base}", fontsize=9)
            ax.set_xticks(range(len(classes)), classes, rotation=45 if len(classes) > 4 else 0, fontsize=8)
            ax.set_yticks(range(len(keys)), labels, fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=f"gain over {base} (pp)")
    title = str(class_table["dataset"].iloc[0]) if len(class_table) else ""
    fig.suptitle(f"{config.datasets.get(title, title)}: per-class gain over {base} (mean over runs)", fontsize=10)
    return fig


def _diverging_cmap():
    from matplotlib import colormaps

    return colormaps["RdBu"].with_extremes(bad="lightgrey")


def save_png(fig: Figure, path: str | Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG atomically (no software tag, so the file depends only on the drawing)."""
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=dpi, metadata={"Software": None}))
