"""Render result tables and plots from evaluation runs, next to the published numbers.

Inputs are data only: ``metrics.json`` files below a runs folder (one per evaluated run, written by the evaluation
code at ``{dataset}/{model}/{loss}/{run}/metrics.json``), ``results/published/published_tables.csv`` (the README
tables of Dai & Li, JMLR 2023) and ``configs/`` (``tables.yaml`` for display names and order, ``loss/*.yaml`` and
``predict/*.yaml`` for what needs calibrated probabilities). Outputs per dataset, in one folder::

    {dataset}.md, {dataset}.csv                  mDice/mIoU per rule (with the published values), dataset-level
                                                 Dice/IoU, gains over the baseline rule (argmax)
    {dataset}_classes.md, {dataset}_classes.csv  per-class Dice and IoU per rule, and their gains
    {dataset}_gains.png, {dataset}_class_gains.png   the gains as plots (:mod:`rankseg.experiments.plots`)

Rows are (model, loss, run config without ``seed``): runs whose stored ``run_config`` differs only by ``seed`` are
pooled and shown as mean ± sample standard deviation (denominator n - 1) over the n runs; gains are the per-run
differences to the baseline rule, pooled the same way. Rows of the same model and loss with other configs are
told apart by the keys in which they differ. Columns are the rules found in the runs, in the order of
``configs/tables.yaml``. A rule that needs calibrated probabilities (``requires_proper`` of its
``configs/predict`` class) is "not applicable" ('/') on a run whose stored loss node says ``proper: false``; if
such a run has the rule anyway (``force_rankdice=true``), the value is shown with a dagger. ``RULE@T`` (rules on
temperature-scaled probabilities, ``evaluate.py calibrate=temperature``) follows RULE, with its title and needs.

``metrics.json`` schema (fractions in [0, 1], ``null`` for NaN)::

    {"dataset", "model", "loss", "run", "run_config": {"model": {..}, "loss": {.., "proper"}, "seed", ..},
     "checkpoint", "weights_sha256", "training", "eval_settings": {"classes_of_interest", ..}, "commit",
     "rules": {RULE: {"mdice", "miou", "dataset_dice", "dataset_iou", "class_dice": {..}, "class_iou": {..},
                      "weights_sha256", "eval_settings", ...}}}

Run it with ``python scripts/make_tables.py --runs results/runs --out results/tables``.

The RankSEG-RMA tables (Wang & Dai, NeurIPS 2025; :func:`write_rma_tables`, ``make_tables.py --rma``) are built
apart: one ``rma_{dataset}.md/.csv`` per dataset of ``results/published/published_rma_tables.csv``, one row per
published (model, backbone, metric, source) with argmax and RMA published and reproduced, pooled over the runs that
``rma.rows`` of ``configs/tables.yaml`` maps the row to (dataset, model, encoder, ``optimizer.name=adamw``).
"""

from __future__ import annotations

import importlib
import json
import math
import shlex
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rankseg.engine.runs import flatten_config
from rankseg.experiments._io import atomic_write, atomic_write_text

__all__ = [
    "CONFIG_DIR",
    "DATASETS",
    "LOSS_NAMES",
    "MODEL_NAMES",
    "RMA_PUBLISHED",
    "RULES",
    "RmaConfig",
    "RmaRow",
    "Stat",
    "TableConfig",
    "build_class_table",
    "build_rma_table",
    "build_table",
    "find_datasets",
    "fmt_signed",
    "load_known_typos",
    "load_published",
    "load_rma_config",
    "load_runs",
    "load_table_config",
    "render_class_markdown",
    "render_markdown",
    "render_rma_markdown",
    "strict_best",
    "summarize",
    "write_rma_tables",
    "write_tables",
]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
_DELTA = "\u0394"
_MINUS = "\u2212"
_DAGGER = "\u2020"
_PM = "\u00b1"


@dataclass(frozen=True)
class TableConfig:
    """Display names, order and rule/loss metadata for the tables (see :func:`load_table_config`).

    Attributes:
        datasets: Dataset name -> table title.
        models: Model name -> display name, in row order.
        losses: Loss name -> display name, in row order.
        rules: Rule key -> column title, in column order.
        baseline: The rule that gains are measured against.
        dpi: Resolution of the plots.
        loss_proper: Loss name -> ``proper`` from ``configs/loss/*.yaml``; used only for rows without a run
            (a run's own stored loss node decides otherwise).
        rule_requires_proper: Rule key -> whether its ``configs/predict`` class needs calibrated probabilities.
        published_models: Model name -> the model whose published numbers its rows show (the JMLR authors'
            networks, ``ref_pspnet`` -> ``pspnet``: the published cells were computed from those very networks).
        published_rules: For those rows only, rule key -> the published column it reproduces (the reference
            tester's rules, ``rankdice_reference`` -> ``rankdice``); their other rules show no published value.
    """

    datasets: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    losses: dict[str, str] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    baseline: str = "argmax"
    dpi: int = 100
    loss_proper: dict[str, bool] = field(default_factory=dict)
    rule_requires_proper: dict[str, bool] = field(default_factory=dict)
    published_models: dict[str, str] = field(default_factory=dict)
    published_rules: dict[str, str] = field(default_factory=dict)

    def published_key(self, model_key: str, model: str, loss: str, rule: str) -> tuple[str, str, str] | None:
        """The (model, loss, rule) display key of the published value a row's cell is compared with, or None."""
        if model_key not in self.published_models:
            return (model, loss, rule)
        if rule not in self.published_rules:
            return None
        twin = self.published_models[model_key]
        return (self.models.get(twin, twin), loss, self.published_rules[rule])

    def rule_title(self, rule: str) -> str:
        """Column title of a rule (its key if ``tables.yaml`` has none); ``RULE@T`` is the title of RULE + ``@T``."""
        base, at, suffix = rule.partition("@")
        return self.rules.get(base, base) + at + suffix

    def rule_order(self, rules: Iterable[str]) -> list[str]:
        """``rules`` in configured order, unlisted ones after them by name, ``RULE@T`` right after ``RULE``."""
        return sorted(set(rules), key=lambda r: (*_order_key(r.partition("@")[0], self.rules), r.partition("@")[2]))

    def requires_proper(self, rule: str) -> bool:
        """Whether the rule (or, for ``RULE@T``, RULE) needs calibrated probabilities; False if unknown."""
        return self.rule_requires_proper.get(rule.partition("@")[0], False)


def _yaml(path: Path) -> dict[str, Any]:
    node = yaml.safe_load(path.read_text(encoding="utf-8"))
    return node if isinstance(node, dict) else {}


def _requires_proper(target: str) -> bool | None:
    """``requires_proper`` of a rule's ``_target_`` class; None if it cannot be imported."""
    module, _, name = str(target).rpartition(".")
    try:
        value = getattr(importlib.import_module(module), name).requires_proper
    except (ImportError, AttributeError, ValueError):
        return None
    return bool(value)


def load_table_config(config_dir: str | Path = CONFIG_DIR) -> TableConfig:
    """Read ``tables.yaml``, the ``proper`` flags of ``loss/*.yaml`` and the rule classes of ``predict/*.yaml``.

    Args:
        config_dir: The project's ``configs/`` folder. A missing ``tables.yaml`` gives config names everywhere.

    Returns:
        The configuration of the tables.
    """
    config_dir = Path(config_dir)
    path = config_dir / "tables.yaml"
    raw = _yaml(path) if path.is_file() else {}
    loss_proper = {}
    for loss_path in sorted((config_dir / "loss").glob("*.yaml")):
        node = _yaml(loss_path)
        if "proper" in node:
            loss_proper[str(node.get("name", loss_path.stem))] = bool(node["proper"])
    requires = {}
    for rule_path in sorted((config_dir / "predict").glob("*.yaml")):
        for name, node in _yaml(rule_path).items():
            if isinstance(node, dict) and "_target_" in node:
                flag = _requires_proper(node["_target_"])
                if flag is not None:
                    requires[str(name)] = flag

    def names(key: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in (raw.get(key) or {}).items()}

    return TableConfig(
        datasets=names("datasets"),
        models=names("models"),
        losses=names("losses"),
        rules=names("rules"),
        baseline=str(raw.get("baseline", "argmax")),
        dpi=int(raw.get("dpi", 100)),
        loss_proper=loss_proper,
        rule_requires_proper=requires,
        published_models=names("published_models"),
        published_rules=names("published_rules"),
    )


_DEFAULT = load_table_config()
#: Config names -> display names (``configs/tables.yaml``), in table order.
MODEL_NAMES: dict[str, str] = dict(_DEFAULT.models)
LOSS_NAMES: dict[str, str] = dict(_DEFAULT.losses)
RULES: dict[str, str] = dict(_DEFAULT.rules)
DATASETS: dict[str, str] = dict(_DEFAULT.datasets)


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


def find_datasets(runs: Sequence[_Run], config: TableConfig | None = None) -> list[str]:
    """Datasets that have at least one run, in configured order (others after them by name)."""
    config = config or _DEFAULT
    return sorted({r.data["dataset"] for r in runs}, key=lambda d: _order_key(d, config.datasets))


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


def _order_key(key: str, names: Mapping[str, str]) -> tuple[int, str]:
    """Position of ``key`` among the configured names, matched by config name or display name."""
    order = list(names)
    shown = list(names.values())
    if key in order:
        return order.index(key), ""
    if key in shown:
        return shown.index(key), ""
    return len(order), key


# ---------------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (denominator n - 1; NaN for n < 2) and count of the finite values."""

    mean: float
    std: float
    n: int


def summarize(values: Iterable[float | None]) -> Stat:
    """:class:`Stat` of the values that are neither None nor NaN (mean NaN when there are none)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return Stat(math.nan, math.nan, 0)
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan, len(vals))


def strict_best(values: Sequence[float]) -> int | None:
    """Index of the single largest value, NaN ignored; None on a tie for the top or with fewer than two values."""
    finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    if len(finite) < 2:
        return None
    top = max(v for v, _ in finite)
    winners = [i for v, i in finite if v == top]
    return winners[0] if len(winners) == 1 else None


def _pct(value: Any) -> float | None:
    return None if value is None else 100.0 * float(value)


# -------------------------------------------------------------------------------------------------------- groups


@dataclass
class _Group:
    """Runs of one dataset, model and loss whose stored configs are equal up to ``seed``."""

    model: str
    loss: str
    variant: str
    runs: list[_Run]
    proper: bool | None


def _seedless(run: _Run) -> dict | None:
    cfg = run.data.get("run_config")
    return {k: v for k, v in cfg.items() if k != "seed"} if isinstance(cfg, dict) else None


def _seed(run: _Run) -> Any:
    cfg = run.data.get("run_config")
    return cfg.get("seed") if isinstance(cfg, dict) else None


def _flatten(value: Any) -> dict[str, str]:
    """Dotted keys of a stored run config, each with its value as canonical JSON (comparable as text)."""
    return {k: json.dumps(v, sort_keys=True) for k, v in flatten_config(value).items()}


def _variant_labels(entries: list[tuple[str, list[_Run]]], limit: int = 3) -> list[str]:
    """``key=value, ...`` of the config keys in which groups of the same model and loss differ."""
    flats = []
    for _, members in entries:
        cfg = _seedless(members[0])
        flats.append(_flatten(cfg) if cfg is not None else None)
    keys = sorted({k for f in flats if f for k in f})
    differing = [k for k in keys if len({(f or {}).get(k, "<absent>") for f in flats if f is not None}) > 1]
    labels = []
    for (_, members), flat in zip(entries, flats, strict=True):
        if flat is None:  # no stored config (an old metrics.json): its folder names it
            labels.append(",".join(sorted(m.path.parent.name for m in members)))
            continue
        parts = [f"{k}={flat.get(k, '<absent>')}".replace('"', "") for k in differing]
        labels.append(", ".join(parts[:limit]) + (", ..." if len(parts) > limit else ""))
    return labels


def _group_runs(dataset: str, runs: Sequence[_Run], config: TableConfig) -> list[_Group]:
    buckets: dict[tuple[str, str], dict[str, list[_Run]]] = {}
    for run in runs:
        if run.data["dataset"] != dataset:
            continue
        cfg = _seedless(run)
        key = json.dumps(cfg, sort_keys=True) if cfg is not None else f"path:{run.path.parent}"
        buckets.setdefault((run.data["model"], run.data["loss"]), {}).setdefault(key, []).append(run)
    groups = []
    for (model, loss), by_key in buckets.items():
        entries = list(by_key.items())
        labels = _variant_labels(entries) if len(entries) > 1 else [""]
        for (_, members), label in zip(entries, labels, strict=True):
            members = sorted(members, key=lambda r: (str(_seed(r)), str(r.path)))
            stored = (members[0].data.get("run_config") or {}).get("loss") or {}
            proper = bool(stored["proper"]) if "proper" in stored else config.loss_proper.get(loss)
            groups.append(_Group(model, loss, label, members, proper))
    groups.sort(key=lambda g: (_order_key(g.model, config.models), _order_key(g.loss, config.losses), g.variant))
    return groups


def _published_lookup(published: pd.DataFrame, dataset: str) -> dict[tuple[str, str, str], dict]:
    """Map (model, loss, rule) display names to the published row; Kvasir's T/argmax column serves both."""
    out = {}
    for row in published[published["dataset"] == dataset].to_dict("records"):
        rules = ("threshold", "argmax") if row["rule"] == "threshold_argmax" else (row["rule"],)
        for rule in rules:
            out[(row["model"], row["loss"], rule)] = row
    return out


def _status(present: bool, has_run: bool, proper: bool | None, requires: bool) -> str:
    if present:
        return "ok"
    if requires and proper is False:
        return "not applicable"
    return "rule missing" if has_run else "no run"


# --------------------------------------------------------------------------------------------------------- tables

_STAT_KEYS = ("mdice", "miou", "dataset_dice", "dataset_iou")
_TABLE_COLUMNS = [
    "dataset",
    "model",
    "loss",
    "variant",
    "rule",
    "status",
    "forced",
    "runs",
    "n",
    *[c for k in _STAT_KEYS for c in (k, f"{k}_std")],
    "delta_n",
    *[c for k in _STAT_KEYS for c in (f"delta_{k}", f"delta_{k}_std")],
    "published_mdice",
    "published_miou",
    "published_note",
    "diff_mdice",
    "diff_miou",
    "model_key",
    "loss_key",
    "seeds",
    "source",
]


def _dataset_rules(dataset: str, groups: Sequence[_Group], pub: Mapping, config: TableConfig) -> list[str]:
    found = {rule for g in groups for run in g.runs for rule in run.data["rules"]}
    return config.rule_order(found | {rule for (_, _, rule) in pub})


def build_table(
    dataset: str, runs: Sequence[_Run], published: pd.DataFrame, config: TableConfig | None = None
) -> pd.DataFrame:
    """Pool the runs of one dataset by config (up to ``seed``) and join them with the published numbers.

    Rows are the union of the published (model, loss) pairs and the run groups, in configured order, times the
    rules found in the runs or the published table. Values are percentages.

    Args:
        dataset: Dataset name, as stored in the runs.
        runs: From :func:`load_runs`; other datasets are ignored.
        published: From :func:`load_published`.
        config: From :func:`load_table_config` (default: the project's ``configs/``).

    Returns:
        Long format, one row per group and rule: ``dataset, model, loss`` (display names), ``variant`` (the
        config keys that tell groups of one model and loss apart, '' if there is one), ``rule`` (key),
        ``status`` (``ok``, ``not applicable``, ``rule missing``, ``no run``), ``forced`` (the rule needs a
        strictly proper loss and the run's is not), ``runs`` (runs in the group), ``n`` (runs with the rule),
        mean and sample std (n - 1) of ``mdice, miou, dataset_dice, dataset_iou``, the same for the per-run
        differences to the baseline rule (``delta_*``, over ``delta_n`` runs), ``published_mdice,
        published_miou`` (the printed strings, '' if none), ``published_note``, ``diff_mdice, diff_miou``
        (reproduced mean minus published, unrounded), ``model_key, loss_key`` (config names), ``seeds`` and
        ``source`` (the metrics.json paths relative to the runs folder, ';'-separated).
    """
    config = config or _DEFAULT
    groups = _group_runs(dataset, runs, config)
    pub = _published_lookup(published, dataset)
    rules = _dataset_rules(dataset, groups, pub, config)
    model_keys = {v: k for k, v in config.models.items()}
    loss_keys = {v: k for k, v in config.losses.items()}

    rows_of: list[tuple[str, str, str, str, _Group | None]] = []
    covered = set()
    for g in groups:
        shown = (config.models.get(g.model, g.model), config.losses.get(g.loss, g.loss))
        covered.add(shown)
        rows_of.append((*shown, g.model, g.loss, g))
    for model, loss in sorted({(m, lo) for (m, lo, _) in pub} - covered):
        rows_of.append((model, loss, model_keys.get(model, model), loss_keys.get(loss, loss), None))
    rows_of.sort(
        key=lambda r: (
            _order_key(r[2], config.models),
            _order_key(r[3], config.losses),
            r[4].variant if r[4] else "",
        )
    )

    rows = []
    for model, loss, model_key, loss_key, group in rows_of:
        members = group.runs if group else []
        proper = group.proper if group else config.loss_proper.get(loss_key)
        base = [run.data["rules"].get(config.baseline) for run in members]
        for rule in rules:
            recs = [run.data["rules"].get(rule) for run in members]
            present = [(run, rec) for run, rec in zip(members, recs, strict=True) if rec is not None]
            requires = config.requires_proper(rule)
            published_key = config.published_key(model_key, model, loss, rule)
            prow = pub.get(published_key) if published_key else None
            rec: dict[str, Any] = {
                "dataset": dataset,
                "model": model,
                "loss": loss,
                "variant": group.variant if group else "",
                "rule": rule,
                "status": _status(bool(present), group is not None, proper, requires),
                "forced": bool(present) and requires and proper is False,
                "runs": len(members),
                "n": len(present),
                "published_mdice": prow["mdice"] if prow else "",
                "published_miou": prow["miou"] if prow else "",
                "published_note": prow["note"] if prow else "",
                "model_key": model_key,
                "loss_key": loss_key,
                "seeds": ";".join(str(_seed(run)) for run, _ in present),
                "source": ";".join(str(run.path) for run, _ in present),
            }
            for key in _STAT_KEYS:
                stat = summarize(_pct(r.get(key)) for _, r in present)
                rec[key], rec[f"{key}_std"] = stat.mean, stat.std
                diffs = [
                    100.0 * (float(r[key]) - float(b[key]))
                    for r, b in zip(recs, base, strict=True)
                    if r is not None and b is not None and r.get(key) is not None and b.get(key) is not None
                ]
                delta = summarize(diffs)
                rec[f"delta_{key}"], rec[f"delta_{key}_std"] = delta.mean, delta.std
                if key == "mdice":
                    rec["delta_n"] = delta.n
            for key in ("mdice", "miou"):
                printed = rec[f"published_{key}"]
                rec[f"diff_{key}"] = rec[key] - float(printed) if printed else math.nan
            rows.append(rec)
    return pd.DataFrame(rows).reindex(columns=_TABLE_COLUMNS)


_CLASS_COLUMNS = [
    "dataset",
    "model",
    "loss",
    "variant",
    "rule",
    "metric",
    "class",
    "status",
    "forced",
    "runs",
    "n",
    "mean",
    "std",
    "delta_n",
    "delta",
    "delta_std",
]


def _classes_of_interest(run: _Run, rec: Mapping[str, Any]) -> list[str]:
    names = list(rec.get("class_dice") or {})
    settings = rec.get("eval_settings") or run.data.get("eval_settings") or {}
    coi = settings.get("classes_of_interest")
    if isinstance(coi, list):
        return [names[i] for i in coi if 0 <= int(i) < len(names)]
    return names


def build_class_table(dataset: str, runs: Sequence[_Run], config: TableConfig | None = None) -> pd.DataFrame:
    """Per-class Dice and IoU (per-image means, ``class_dice``/``class_iou``) of each group, rule and class.

    Classes are those of interest (``eval_settings.classes_of_interest``; all if it is unset), in class order.
    Groups, pooling and statuses are those of :func:`build_table`.

    Args:
        dataset: Dataset name, as stored in the runs.
        runs: From :func:`load_runs`.
        config: From :func:`load_table_config`.

    Returns:
        Long format: ``dataset, model, loss, variant, rule, metric`` (``dice`` or ``iou``), ``class``, ``status``,
        ``forced``, ``runs``, ``n``, ``mean``, ``std`` (sample, n - 1) in %, and ``delta_n, delta, delta_std``:
        the per-run difference to the baseline rule.
    """
    config = config or _DEFAULT
    groups = _group_runs(dataset, runs, config)
    classes: list[str] = []
    for g in groups:
        for run in g.runs:
            for rec in run.data["rules"].values():
                classes += [c for c in _classes_of_interest(run, rec) if c not in classes]
    rules = _dataset_rules(dataset, groups, {}, config)
    rows = []
    for g in groups:
        base = [run.data["rules"].get(config.baseline) for run in g.runs]
        for rule in rules:
            recs = [run.data["rules"].get(rule) for run in g.runs]
            requires = config.requires_proper(rule)
            present = [r for r in recs if r is not None]
            for metric in ("dice", "iou"):
                key = f"class_{metric}"
                for cls in classes:
                    stat = summarize(_pct((r.get(key) or {}).get(cls)) for r in present)
                    diffs = []
                    for r, b in zip(recs, base, strict=True):
                        v = (r.get(key) or {}).get(cls) if r else None
                        w = (b.get(key) or {}).get(cls) if b else None
                        if v is not None and w is not None:
                            diffs.append(100.0 * (float(v) - float(w)))
                    delta = summarize(diffs)
                    rows.append(
                        {
                            "dataset": dataset,
                            "model": config.models.get(g.model, g.model),
                            "loss": config.losses.get(g.loss, g.loss),
                            "variant": g.variant,
                            "rule": rule,
                            "metric": metric,
                            "class": cls,
                            "status": _status(bool(present), True, g.proper, requires),
                            "forced": bool(present) and requires and g.proper is False,
                            "runs": len(g.runs),
                            "n": stat.n,
                            "mean": stat.mean,
                            "std": stat.std,
                            "delta_n": delta.n,
                            "delta": delta.mean,
                            "delta_std": delta.std,
                        }
                    )
    return pd.DataFrame(rows).reindex(columns=_CLASS_COLUMNS)


# ------------------------------------------------------------------------------------------------------ rendering


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1f}"


def fmt_signed(x: float) -> str:
    """``x`` with one decimal and its sign (a true minus sign; no "-0.0"); ``n/a`` for NaN."""
    if math.isnan(x):
        return "n/a"
    x = 0.0 if round(x, 1) == 0 else x  # no "-0.0"
    return f"{x:+.1f}".replace("-", _MINUS)


def _pm(mean: float, std: float, signed: bool = False) -> str:
    text = fmt_signed(mean) if signed else _fmt(mean)
    return text if math.isnan(mean) or math.isnan(std) else f"{text} {_PM} {std:.1f}"


def _fmt_diff(rep: float, pub: str) -> str:
    # The difference of the displayed (1-decimal) reproduced value, so a reader can check it by eye.
    if math.isnan(rep):
        return "n/a"
    d = round(rep, 1) - float(pub)
    return fmt_signed(0.0 if abs(d) < 5e-10 else d)


def _typo_marks(
    typos: pd.DataFrame, dataset: str, config: TableConfig
) -> tuple[dict[tuple[str, str, str], list[int]], list[str]]:
    marks: dict[tuple[str, str, str], list[int]] = {}
    notes = []
    rule_order = [*config.rules, "", "threshold_argmax"]
    sub = sorted(
        typos[typos["dataset"] == dataset].to_dict("records"),  # numbered in table order
        key=lambda r: (
            _order_key(r["model"], config.models),
            _order_key(r["loss"], config.losses),
            rule_order.index(r["rule"]) if r["rule"] in rule_order else len(rule_order),
        ),
    )
    for i, row in enumerate(sub, start=1):
        rule = row["rule"]
        rules = ("threshold", "argmax") if rule in ("", "threshold_argmax") else (rule,)
        for r in rules:
            marks.setdefault((row["model"], row["loss"], r), []).append(i)
        rule_title = config.rules.get(rule) or "Threshold/Argmax"
        metric = {"mdice": "mDice", "miou": "mIoU"}.get(row["field"], row["field"])
        notes.append(
            f"- [{i}] {row['model']} {row['loss']} {rule_title} {metric}: the README prints "
            f"{row['published']}, the logs say {row['logged']}. Source: {row['source']}."
        )
    return marks, notes


def _value_cell(rec: Mapping[str, Any], keys: tuple[str, str], bold: bool, delta: bool = False) -> str:
    """``(a, b)`` of a table record with ± std, bold, dagger and ``[n=k]`` where fewer runs have it."""
    status = rec["status"]
    if status == "not applicable":
        return "/"
    if status != "ok":
        return status
    n_key = "delta_n" if delta else "n"
    if delta and rec[n_key] == 0:
        return "n/a"
    keys = tuple(f"delta_{k}" for k in keys) if delta else keys
    parts = [_pm(rec[k], rec[f"{k}_std"], signed=delta) for k in keys]
    text = f"({', '.join(parts)})"
    text = f"**{text}**" if bold else text
    if rec["forced"]:
        text += _DAGGER
    if rec[n_key] != rec["runs"]:
        text += f" [n={rec[n_key]}]"
    return text


def _published_suffix(rec: Mapping[str, Any], marks: list[int]) -> str:
    note = rec["published_note"]
    if not rec["published_mdice"]:
        return f"pub {note}" if note else "not published"
    pub = f"pub ({rec['published_mdice']}, {rec['published_miou']})"
    pub += "".join(f"[{m}]" for m in marks)
    if note:
        pub += f" {note}"
    if rec["status"] == "ok":
        pub += f" \u00b7 {_DELTA} ({_fmt_diff(rec['mdice'], rec['published_mdice'])}, "
        pub += f"{_fmt_diff(rec['miou'], rec['published_miou'])})"
    return pub


def _rows(table: pd.DataFrame) -> list[tuple[tuple[str, str, str], dict[str, dict]]]:
    out: dict[tuple[str, str, str], dict[str, dict]] = {}
    for rec in table.to_dict("records"):
        out.setdefault((rec["model"], rec["loss"], rec["variant"]), {})[rec["rule"]] = rec
    return list(out.items())


def _head(titles: Sequence[str], with_variant: bool) -> list[str]:
    cols = ["Model", "Loss", *(["Variant"] if with_variant else []), "Runs", *titles]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def _lead(key: tuple[str, str, str], runs: int, with_variant: bool) -> list[str]:
    model, loss, variant = key
    return [model, loss, *([variant] if with_variant else []), str(runs)]


def _score_table(
    table: pd.DataFrame,
    rules: Sequence[str],
    keys: tuple[str, str],
    config: TableConfig,
    with_variant: bool,
    published: bool = False,
    marks: Mapping[tuple[str, str, str], list[int]] | None = None,
) -> list[str]:
    lines = _head([config.rule_title(r) for r in rules], with_variant)
    for key, recs in _rows(table):
        shown = [
            round(recs[r][keys[0]], 1) if recs[r]["status"] == "ok" else math.nan for r in rules
        ]  # compared as displayed
        best = strict_best(shown)
        cells = []
        for i, rule in enumerate(rules):
            cell = _value_cell(recs[rule], keys, bold=i == best)
            if published and recs[rule]["status"] != "not applicable":
                cell += " \u00b7 " + _published_suffix(recs[rule], (marks or {}).get((key[0], key[1], rule), []))
            cells.append(cell)
        runs = next(iter(recs.values()))["runs"]
        lines.append("| " + " | ".join([*_lead(key, runs, with_variant), *cells]) + " |")
    return lines


def _forced_note(table: pd.DataFrame, config: TableConfig) -> list[str]:
    forced = table[table["forced"].astype(bool)]
    if forced.empty:
        return []
    rules = ", ".join(config.rule_title(r) for r in config.rule_order(forced["rule"]))
    losses = ", ".join(dict.fromkeys(forced["loss"]))
    return [
        f"{_DAGGER} {rules} on a loss that is not strictly proper ({losses}): evaluated with "
        "`force_rankdice=true`. Its outputs are not calibrated probabilities, so this is outside the paper's "
        "protocol, where the cell is '/'.",
        "",
    ]


def render_markdown(
    dataset: str,
    table: pd.DataFrame,
    typos: pd.DataFrame | None = None,
    config: TableConfig | None = None,
    plots: Mapping[str, str] | None = None,
) -> str:
    """Render one dataset's tables (from :func:`build_table`): scores, dataset-level scores and gains.

    The first table is the published layout: ``(mDice, mIoU)`` in percent with one decimal, pooled over seeds,
    with the published value and the difference in each cell where the dataset has published numbers. The row's
    strictly best mDice (compared as displayed; no bold on a tie) is bold. The dataset-level table bolds the
    strictly best dataset Dice. The gains table shows each rule minus the baseline, per run, pooled.

    Args:
        dataset: Dataset name; selects the title.
        table: Output of :func:`build_table` for that dataset.
        typos: Optional :func:`load_known_typos` frame; matching published values get a footnote mark.
        config: From :func:`load_table_config`.
        plots: Files written beside this one to link: ``{"gains": PNG, "class_gains": PNG, "classes_md": MD}``,
            each optional.

    Returns:
        The Markdown document, ending with a newline.
    """
    config = config or _DEFAULT
    plots = plots or {}
    with_published = bool((table["published_mdice"] != "").any() | (table["published_note"] != "").any())
    with_variant = bool((table["variant"] != "").any())
    marks, notes = _typo_marks(typos if typos is not None else load_known_typos(None), dataset, config)
    rules = list(dict.fromkeys(table["rule"]))
    baseline = config.baseline
    base_title = config.rule_title(baseline)

    lines = [f"# {config.datasets.get(dataset, dataset)}", ""]
    lines.append("Generated by `scripts/make_tables.py` from the runs' `metrics.json` files; do not edit.")
    lines.append("")
    legend = (
        "Cells: reproduced (mDice, mIoU) in %, the mean over the row's runs (Runs: runs whose stored config "
        f"differs only by `seed`), {_PM} the sample standard deviation (n {_MINUS} 1 denominator) when there are "
        "several; [n=k]: only k of them have the rule. Bold: the strictly best mDice of the row (none on a tie). "
        "'/' = not applicable: the rule needs calibrated probabilities and the run's loss is not strictly proper "
        f"(`proper: false` in its stored config); {_DAGGER} = evaluated anyway; 'rule missing' = no run of the "
        "row has this rule."
    )
    if with_published:
        legend += (
            f" Then `pub` = the value published by Dai & Li (JMLR 2023) and {_DELTA} = reproduced (as displayed) "
            "minus published; published '-' = not trained in the paper; 'no run' = no metrics.json for this "
            "model and loss."
        )
    lines += [legend, ""]
    if with_variant:
        lines += ["Variant: the run-config keys in which rows of the same model and loss differ.", ""]
    if dataset == "kvasir_seg" and with_published:
        lines.append("The paper prints one T/argmax column for Kvasir-SEG; it is compared with both columns here.")
        lines.append("")
    if with_published and dataset in ("cityscapes", "voc2012"):
        lines.append(
            "Published BCE and BSoftDice mIoU equal mDice/2 (a metric bug in the reference code, "
            "paper_protocol §1), so their mIoU differences are not meaningful."
        )
        lines.append("")
    lines += _score_table(table, rules, ("mdice", "miou"), config, with_variant, with_published, marks)
    lines.append("")
    lines += _forced_note(table, config)
    if notes and with_published:
        lines += [*notes, ""]

    has_runs = table[table["runs"] > 0]
    if not has_runs.empty:
        lines += ["## Dataset-level Dice and IoU", ""]
        lines.append(
            "Cells: (Dice, IoU) in % of the counts summed over the whole validation set (the mmseg convention), "
            "averaged over the classes of interest; pooled over runs as above. Bold: the strictly best Dice."
        )
        lines.append("")
        lines += _score_table(has_runs, rules, ("dataset_dice", "dataset_iou"), config, with_variant)
        lines.append("")
        others = [r for r in rules if r != baseline]
        if baseline in rules and others:
            lines += [f"## Gain over {base_title}", ""]
            lines.append(
                f"Cells: ({_DELTA}mDice, {_DELTA}mIoU) in percentage points, the rule minus {base_title} in each "
                f"run, then mean {_PM} sample standard deviation over the runs that have both."
            )
            lines.append("")
            lines += _head([config.rule_title(r) for r in others], with_variant)
            for key, recs in _rows(has_runs):
                cells = [_value_cell(recs[r], ("mdice", "miou"), bold=False, delta=True) for r in others]
                runs = next(iter(recs.values()))["runs"]
                lines.append("| " + " | ".join([*_lead(key, runs, with_variant), *cells]) + " |")
            lines.append("")
            if plots.get("gains"):
                lines += [f"![Gain over {base_title} per model and loss]({plots['gains']})", ""]
        if plots.get("classes_md"):
            link = plots["classes_md"]
            lines.append(f"Per-class Dice and IoU of every rule, and their gains: [{link}]({link}).")
            lines.append("")
        if plots.get("class_gains"):
            lines += [f"![Per-class gain over {base_title}]({plots['class_gains']})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_class_markdown(dataset: str, class_table: pd.DataFrame, config: TableConfig | None = None) -> str:
    """Render per-class Dice and IoU tables, one per metric and rule, then one per metric and gain.

    Args:
        dataset: Dataset name; selects the title.
        class_table: Output of :func:`build_class_table`.
        config: From :func:`load_table_config`.

    Returns:
        The Markdown document, ending with a newline.
    """
    config = config or _DEFAULT
    title = config.datasets.get(dataset, dataset)
    with_variant = bool((class_table["variant"] != "").any())
    classes = list(dict.fromkeys(class_table["class"]))
    rules = list(dict.fromkeys(class_table["rule"]))
    baseline, base_title = config.baseline, config.rule_title(config.baseline)
    lines = [f"# {title}: per-class scores", ""]
    lines.append("Generated by `scripts/make_tables.py` from the runs' `metrics.json` files; do not edit.")
    lines.append("")
    lines.append(
        f"Cells: per-class Dice or IoU in % (mean over the images, as in the mean columns), mean {_PM} sample "
        f"standard deviation (n {_MINUS} 1) over the row's runs; [n=k]: k runs have a value (a class absent from "
        f"both prediction and truth in every image has none). Gains: the rule minus {base_title} in each run, "
        f"in percentage points. '/' = not applicable, {_DAGGER} = forced (see `{dataset}.md`)."
    )
    lines.append("")
    sections = [(m, r, False) for m in ("dice", "iou") for r in rules]
    sections += [(m, r, True) for m in ("dice", "iou") for r in rules if r != baseline and baseline in rules]
    for metric, rule, delta in sections:
        name = {"dice": "Dice", "iou": "IoU"}[metric]
        heading = f"{name} gain over {base_title}: {config.rule_title(rule)}" if delta else f"{name}: "
        heading += "" if delta else config.rule_title(rule)
        lines += [f"## {heading}", ""]
        lines += _head(classes, with_variant)
        sub = class_table[(class_table["rule"] == rule) & (class_table["metric"] == metric)]
        grouped: dict[tuple[str, str, str], dict[str, dict]] = {}
        for rec in sub.to_dict("records"):
            grouped.setdefault((rec["model"], rec["loss"], rec["variant"]), {})[rec["class"]] = rec
        for key, recs in grouped.items():
            cells = []
            for cls in classes:
                rec = recs[cls]
                if rec["status"] == "not applicable":
                    cells.append("/")
                    continue
                if rec["status"] != "ok":
                    cells.append(rec["status"])
                    continue
                n = rec["delta_n"] if delta else rec["n"]
                mean, std = (rec["delta"], rec["delta_std"]) if delta else (rec["mean"], rec["std"])
                text = "n/a" if n == 0 else _pm(mean, std, signed=delta)
                text += _DAGGER if rec["forced"] else ""
                text += f" [n={n}]" if 0 < n != rec["runs"] else ""
                cells.append(text)
            runs = next(iter(recs.values()))["runs"]
            lines.append("| " + " | ".join([*_lead(key, runs, with_variant), *cells]) + " |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def write_tables(
    runs_dir: str | Path,
    out_dir: str | Path,
    published_csv: str | Path,
    datasets: Iterable[str] | None = None,
    known_typos_csv: str | Path | None = None,
    config: TableConfig | None = None,
    plots: bool = True,
) -> list[Path]:
    """Build, render and write the tables (and plots) of each dataset.

    Per dataset: ``{dataset}.csv`` and ``.md`` (:func:`build_table`, :func:`render_markdown`), then, where it has
    runs, ``{dataset}_classes.csv`` and ``.md`` and the plots ``{dataset}_gains.png`` and
    ``{dataset}_class_gains.png``. A dataset with neither runs nor published numbers is skipped.

    Args:
        runs_dir: Root of the ``metrics.json`` files.
        out_dir: Output folder.
        published_csv: ``published_tables.csv``.
        datasets: Dataset names to render; default: every dataset with a run below ``runs_dir``.
        known_typos_csv: Optional ``known_typos.csv`` used for footnotes.
        config: From :func:`load_table_config` (default: the project's ``configs/``).
        plots: Also draw the PNG plots.

    Returns:
        The files written; for each dataset ``{dataset}.csv`` and ``{dataset}.md`` come first.
    """
    config = config or _DEFAULT
    runs = load_runs(runs_dir)
    published = load_published(published_csv)
    typos = load_known_typos(known_typos_csv)
    out = Path(out_dir)
    written: list[Path] = []
    for dataset in find_datasets(runs, config) if datasets is None else datasets:
        table = build_table(dataset, runs, published, config)
        if table.empty:
            print(f"{dataset}: no runs and no published numbers; skipped", file=sys.stderr)
            continue
        class_table = build_class_table(dataset, runs, config)
        has_runs = bool((table["runs"] > 0).any())
        files = {}
        if has_runs:
            files["classes_md"] = f"{dataset}_classes.md"
            gains = (table["delta_n"] > 0) & (table["rule"] != config.baseline)
            if plots and gains.any():
                files["gains"] = f"{dataset}_gains.png"
                class_gains = (class_table["delta_n"] > 0) & (class_table["rule"] != config.baseline)
                if class_gains.any():
                    files["class_gains"] = f"{dataset}_class_gains.png"
        files_written = [
            atomic_write(out / f"{dataset}.csv", lambda p, t=table: t.to_csv(p, index=False, float_format="%.4f")),
            atomic_write_text(out / f"{dataset}.md", render_markdown(dataset, table, typos, config, files)),
        ]
        if has_runs:
            files_written.append(
                atomic_write(
                    out / f"{dataset}_classes.csv",
                    lambda p, t=class_table: t.to_csv(p, index=False, float_format="%.4f"),
                )
            )
            files_written.append(
                atomic_write_text(out / files["classes_md"], render_class_markdown(dataset, class_table, config))
            )
        if "gains" in files:
            from rankseg.experiments.plots import plot_class_gains, plot_gains, save_png

            files_written.append(save_png(plot_gains(table, config), out / files["gains"], config.dpi))
            if "class_gains" in files:
                fig = plot_class_gains(class_table, config)
                files_written.append(save_png(fig, out / files["class_gains"], config.dpi))
        n_ok = int((table["status"] == "ok").sum())
        print(f"{dataset}: {n_ok} reproduced cells -> {', '.join(str(p) for p in files_written)}")
        written += files_written
    return written


# ------------------------------------------------------------------------------------------ RankSEG-RMA tables

#: The RankSEG-RMA paper's published numbers (Wang & Dai, NeurIPS 2025; two sources, see its README).
RMA_PUBLISHED = Path(__file__).resolve().parents[2] / "results" / "published" / "published_rma_tables.csv"


@dataclass(frozen=True)
class RmaRow:
    """One (dataset, model, backbone) group of the published RMA rows and the run that reproduces it
    (``rma.rows`` of ``configs/tables.yaml``).

    Attributes:
        dataset: Dataset as the CSV names it.
        model: Model as the CSV names it (display name).
        backbones: CSV ``backbone`` values this entry covers ('' where the source names none).
        experiment: ``configs/experiment/`` name, or None when the row has no run here.
        overrides: Hydra overrides after ``experiment=...`` (the model and its settings).
        encoder: ``model.encoder_name`` of that run.
        why: Why there is no run (``experiment`` None).
    """

    dataset: str
    model: str
    backbones: tuple[str, ...]
    experiment: str | None
    overrides: tuple[str, ...] = ()
    encoder: str | None = None
    why: str = ""

    def commands(self) -> tuple[str, str] | None:
        """``(train, evaluate)`` shell commands of the run, or None."""
        if self.experiment is None:
            return None
        args = " ".join(shlex.quote(a) for a in (f"experiment={self.experiment}", *self.overrides))
        return f"python train.py {args}", f"python evaluate.py {args} 'predict=[argmax,rma]'"

    def model_key(self) -> str | None:
        """The ``model=`` config name among the overrides."""
        return next((o.split("=", 1)[1] for o in self.overrides if o.startswith("model=")), None)


@dataclass(frozen=True)
class RmaConfig:
    """``rma`` of ``configs/tables.yaml``: rule and metric titles (in column/row order) and the row map."""

    rules: dict[str, str]
    metrics: dict[str, str]
    rows: tuple[RmaRow, ...]
    run_datasets: dict[str, str]  # experiment -> dataset name its runs store (the dataset config's ``name``)

    def row_for(self, dataset: str, model: str, backbone: str) -> RmaRow | None:
        """The entry covering a CSV row, or None."""
        return next(
            (r for r in self.rows if (r.dataset, r.model) == (dataset, model) and backbone in r.backbones), None
        )


def load_rma_config(config_dir: str | Path = CONFIG_DIR) -> RmaConfig:
    """Read ``rma`` of ``tables.yaml``, and for each experiment the dataset name its runs will carry."""
    config_dir = Path(config_dir)
    raw = (_yaml(config_dir / "tables.yaml") if (config_dir / "tables.yaml").is_file() else {}).get("rma") or {}
    rows = tuple(
        RmaRow(
            dataset=str(r["dataset"]),
            model=str(r["model"]),
            backbones=tuple(str(b) for b in r.get("backbones") or [""]),
            experiment=r.get("experiment"),
            overrides=tuple(str(o) for o in r.get("overrides") or ()),
            encoder=r.get("encoder"),
            why=" ".join(str(r.get("why") or "").split()),
        )
        for r in raw.get("rows") or []
    )
    run_datasets = {}
    for row in rows:
        if row.experiment and row.experiment not in run_datasets:
            run_datasets[row.experiment] = _experiment_dataset(config_dir, row.experiment) or row.dataset
    return RmaConfig(
        rules={str(k): str(v) for k, v in (raw.get("rules") or {"argmax": "Argmax", "rma": "RMA"}).items()},
        metrics={str(k): str(v) for k, v in (raw.get("metrics") or {}).items()},
        rows=rows,
        run_datasets=run_datasets,
    )


def _experiment_dataset(config_dir: Path, experiment: str) -> str | None:
    """``name`` of the dataset config an experiment selects (``override /dataset: X``), if both files exist."""
    path = config_dir / "experiment" / f"{experiment}.yaml"
    if not path.is_file():
        return None
    for entry in _yaml(path).get("defaults") or []:
        if isinstance(entry, dict) and "override /dataset" in entry:
            choice = str(entry["override /dataset"])
            dataset_path = config_dir / "dataset" / f"{choice}.yaml"
            return str(_yaml(dataset_path).get("name", choice)) if dataset_path.is_file() else choice
    return None


def _rma_runs(row: RmaRow, runs: Sequence[_Run], rma: RmaConfig) -> list[_Run]:
    """Runs of ``row``: its dataset, model and encoder, trained with the RMA recipe (``optimizer.name=adamw``)."""
    if row.experiment is None:
        return []
    dataset, model = rma.run_datasets.get(row.experiment, row.dataset), row.model_key()
    out = []
    for run in runs:
        cfg = run.data.get("run_config") or {}
        if (run.data["dataset"], run.data["model"]) != (dataset, model):
            continue
        if (cfg.get("model") or {}).get("encoder_name") != row.encoder:
            continue
        if str((cfg.get("optimizer") or {}).get("name", "sgd")).lower() != "adamw":
            continue
        out.append(run)
    return sorted(out, key=lambda r: (str(_seed(r)), str(r.path)))


_RMA_COLUMNS = [
    "dataset",
    "model",
    "backbone",
    "metric",
    "source",
    "status",
    "runs",
    *[c for rule in ("argmax", "rma") for c in (rule, f"{rule}_std", f"{rule}_n", f"published_{rule}", f"diff_{rule}")],
    "gain",
    "gain_std",
    "published_gain",
    "train_command",
    "evaluate_command",
    "run_sources",
]


def build_rma_table(dataset: str, runs: Sequence[_Run], published: pd.DataFrame, rma: RmaConfig) -> pd.DataFrame:
    """One row per published (model, backbone, metric, source) of ``dataset``, with our runs' values beside.

    Returns:
        Long format: ``status`` (``ok``, ``no run``, ``rule missing``, ``not reproducible``); for each rule
        (argmax, rma) the mean over the runs in %, its sample std, the number of runs that have it, the
        published string and reproduced minus published; ``gain`` (rma minus argmax, per run, pooled) and the
        published gain; the row's commands; the metrics.json paths used.
    """
    rows = []
    sub = published[published["dataset"] == dataset]
    keys = list(dict.fromkeys(zip(sub["model"], sub["backbone"], sub["metric"], sub["source"], strict=True)))
    for model, backbone, metric, source in keys:
        cells = sub[(sub["model"] == model) & (sub["backbone"] == backbone) & (sub["metric"] == metric)]
        cells = cells[cells["source"] == source]
        pub = {str(r["rule"]): str(r["value"]) for r in cells.to_dict("records")}
        row = rma.row_for(dataset, model, backbone)
        members = _rma_runs(row, runs, rma) if row else []
        commands = row.commands() if row else None
        rec: dict[str, Any] = {
            "dataset": dataset,
            "model": model,
            "backbone": backbone,
            "metric": metric,
            "source": source,
            "runs": len(members),
            "train_command": commands[0] if commands else "",
            "evaluate_command": commands[1] if commands else "",
            "run_sources": ";".join(str(r.path) for r in members),
        }
        values = {}
        for rule in ("argmax", "rma"):
            vals = [(r.data["rules"].get(rule) or {}).get(metric) for r in members]
            values[rule] = vals
            stat = summarize(_pct(v) for v in vals)
            printed = pub.get(rule, "")
            rec.update(
                {
                    rule: stat.mean,
                    f"{rule}_std": stat.std,
                    f"{rule}_n": stat.n,
                    f"published_{rule}": printed,
                    f"diff_{rule}": stat.mean - float(printed) if printed and stat.n else math.nan,
                }
            )
        gains = summarize(
            100.0 * (float(b) - float(a))
            for a, b in zip(values["argmax"], values["rma"], strict=True)
            if a is not None and b is not None
        )
        rec["gain"], rec["gain_std"] = gains.mean, gains.std
        both = pub.get("argmax") and pub.get("rma")
        rec["published_gain"] = float(pub["rma"]) - float(pub["argmax"]) if both else math.nan
        if row is None or row.experiment is None:
            rec["status"] = "not reproducible"
        elif not members:
            rec["status"] = "no run"
        else:
            rec["status"] = "ok" if rec["argmax_n"] and rec["rma_n"] else "rule missing"
        rows.append(rec)
    return pd.DataFrame(rows).reindex(columns=_RMA_COLUMNS)


def _rma_cell(mean: float, std: float, n: int, runs: int, signed: bool = False) -> str:
    # two decimals, as the RMA paper prints its numbers
    if n == 0:
        return "-"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    text = text if math.isnan(std) else f"{text} {_PM} {std:.2f}"
    return text.replace("-", _MINUS) + (f" [n={n}]" if n != runs else "")


def render_rma_markdown(dataset: str, table: pd.DataFrame, rma: RmaConfig, config: TableConfig | None = None) -> str:
    """The RMA table of one dataset: per (model, backbone, metric) the published and reproduced argmax and RMA
    values and gains, then the commands that rebuild each row and the rows without a run here."""
    config = config or _DEFAULT
    title = config.datasets.get(dataset, dataset)
    lines = [f"# RankSEG-RMA: {title}", ""]
    lines.append("Generated by `scripts/make_tables.py --rma` from the runs' `metrics.json` files; do not edit.")
    lines.append("")
    lines.append(
        f"Cells in %: published (`pub`, Wang & Dai, NeurIPS 2025; `source` says which README) and ours, the mean "
        f"{_PM} sample standard deviation (n {_MINUS} 1) over the row's runs (those of the row's command with any "
        f"`seed`); Gain = RankSEG-RMA minus argmax, per run, pooled. '-' = no value. Metrics: "
        + "; ".join(f"{title_} = `{key}`" for key, title_ in rma.metrics.items())
        + "."
    )
    lines.append("")
    argmax, rma_title = rma.rules.get("argmax", "Argmax"), rma.rules.get("rma", "RMA")
    head = [
        "Model",
        "Backbone",
        "Metric",
        "Source",
        f"{argmax} pub",
        f"{argmax} ours",
        f"{rma_title} pub",
        f"{rma_title} ours",
        "Gain pub",
        "Gain ours",
        "Runs",
        "Status",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec in table.to_dict("records"):
        cells = [
            rec["model"],
            rec["backbone"] or "-",
            rma.metrics.get(rec["metric"], rec["metric"]),
            rec["source"],
            rec["published_argmax"] or "-",
            _rma_cell(rec["argmax"], rec["argmax_std"], rec["argmax_n"], rec["runs"]),
            rec["published_rma"] or "-",
            _rma_cell(rec["rma"], rec["rma_std"], rec["rma_n"], rec["runs"]),
            "-" if math.isnan(rec["published_gain"]) else f"{rec['published_gain']:+.2f}",
            _rma_cell(rec["gain"], rec["gain_std"], min(rec["argmax_n"], rec["rma_n"]), rec["runs"], signed=True),
            str(rec["runs"]),
            rec["status"],
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    commands = list(dict.fromkeys(zip(table["train_command"], table["evaluate_command"], strict=True)))
    if any(t for t, _ in commands):
        lines += ["## Commands", "", "```"]
        for train, evaluate in commands:
            if train:
                lines += [train, evaluate]
        lines += ["```", ""]
    missing = [r for r in rma.rows if r.dataset == dataset and r.experiment is None]
    for row in missing:
        lines += [f"No run for {row.model} ({', '.join(b or '-' for b in row.backbones)}): {row.why}.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_rma_tables(
    runs_dir: str | Path,
    out_dir: str | Path,
    published_csv: str | Path = RMA_PUBLISHED,
    config_dir: str | Path = CONFIG_DIR,
    datasets: Iterable[str] | None = None,
) -> list[Path]:
    """Write ``rma_{dataset}.csv`` and ``rma_{dataset}.md`` for every dataset of the published RMA CSV (or
    ``datasets``), whether or not it has runs yet.

    Returns:
        The files written.
    """
    runs = load_runs(runs_dir)
    published = pd.read_csv(published_csv, dtype=str, keep_default_na=False)
    rma = load_rma_config(config_dir)
    config = load_table_config(config_dir)
    out = Path(out_dir)
    written: list[Path] = []
    for dataset in datasets or list(dict.fromkeys(published["dataset"])):
        table = build_rma_table(dataset, runs, published, rma)
        written.append(
            atomic_write(out / f"rma_{dataset}.csv", lambda p, t=table: t.to_csv(p, index=False, float_format="%.4f"))
        )
        written.append(atomic_write_text(out / f"rma_{dataset}.md", render_rma_markdown(dataset, table, rma, config)))
        n_ok = int((table["status"] == "ok").sum())
        print(f"rma {dataset}: {n_ok} of {len(table)} published rows reproduced -> {written[-1]}")
    return written
