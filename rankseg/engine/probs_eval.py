"""Evaluation of probabilities saved by another tool: the prediction rules of ``configs/predict/`` applied to
per-case probability (or logit) files, scored against label files with the same metrics, printed report,
``metrics.json`` and ``class_scores.csv`` as :mod:`rankseg.engine.evaluate`.

    python evaluate_probs.py probs=nnUNet_out labels=labelsTs predict=[argmax,rankdice] num_classes=3
    python evaluate_probs.py probs=DIR labels=DIR activation=softmax dataset=synthetic  # logits; classes of a config

File formats, the pairing of cases by name and NIfTI axis order: :mod:`rankseg.data.prob_files`.

**Scores.** A case is an "image" of :mod:`rankseg.metrics`: per-case, per-class counts over the whole case (a 3-D
case is scored as one volume), then the paper's means over cases and the dataset-level scores. Cases are read,
checked, scored and dropped one at a time, so memory is bounded by the largest case. A case whose label is all
``ignore_index`` is skipped (counted in a note), as evaluate.py skips a batch without labelled pixels. Every rule
asked for runs: the tool cannot know whether the probabilities come from a strictly proper loss, which is what
evaluate.py's ``force_rankdice`` check is about.

**Checks**, each one message naming the file: a value outside [0, 1] with ``activation=none`` (logits: use
``activation=softmax`` or ``sigmoid``); with softmax-type probabilities (``sum_to_one``), per-pixel sums away from
1; a channel count other than ``num_classes`` (or the first file's); a label value that is neither a class nor
``ignore_index``; spatial shapes that differ (both named, with the likely cause).

**Results** go to ``results_dir`` (default ``{paths.results_dir}/probs/{name}``, ``name`` defaulting to the probs
folder's name): ``metrics.json``, ``class_scores.csv`` and ``case_scores.csv`` (per rule, case and class: Dice,
IoU and the counts). The header records the source instead of a checkpoint (folders, content digests of the
probability and label files that were read, settings); ``weights_sha256`` is null (no network). Its
``eval_settings`` hold both digests, so a rule evaluated later joins the file only for the same files and
settings ("one run, one network, one result": :func:`rankseg.engine.evaluate.merge_metrics`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rankseg.data.prob_files import (
    NIFTI_ORDERS,
    Case,
    ProbFileError,
    digest,
    file_sha256,
    match_cases,
    nnunet_reorientation,
    read_label,
    read_probs,
)
from rankseg.engine.build import build_rules, resolve_device
from rankseg.engine.config_checks import ConfigError, _check_device
from rankseg.engine.console import echo, progress
from rankseg.engine.evaluate import CLASS_CSV, METRICS_FILE, format_report, merge_metrics, read_metrics, rule_records
from rankseg.engine.runfiles import atomic_write_text, file_lock, git_commit
from rankseg.engine.runs import check_path_component
from rankseg.metrics import MetricAccumulator, scores_from_stats
from rankseg.predict import probabilities

__all__ = ["ACTIVATIONS", "CASE_CSV", "run_probs_evaluation"]

ACTIVATIONS: tuple[str, ...] = ("none", "softmax", "sigmoid")
CASE_CSV = "case_scores.csv"
_RANGE_TOL = 1e-6  # activation=none: values this far outside [0, 1] are refused
_SUM_TOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2}  # |sum - 1| allowed per pixel; 1e-3 for 32/64-bit floats


@dataclass
class _Settings:
    """The checked config values."""

    probs: Path
    labels: Path
    activation: str
    sum_to_one: bool | None  # None: decided by the first case
    num_classes: int | None  # None: the first file's channel count
    class_names: list[str] | None
    classes_of_interest: list[int] | None
    ignore_index: int
    reference_ignore: bool
    nifti_order: str
    partial: bool
    name: str
    out_dir: Path


@dataclass
class _Source:
    """What the evaluation has read so far: file digests, the class count and where it came from."""

    probs_files: dict[str, str] = field(default_factory=dict)
    label_files: dict[str, str] = field(default_factory=dict)
    num_classes: int | None = None
    classes_from: str = ""
    sum_to_one: bool | None = None
    sums_from: str = ""
    class_names: list[str] = field(default_factory=list)
    nnunet_names: list[str] | None = None
    nnunet_ignore: int | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_config(cfg: DictConfig) -> _Settings:
    """Every config value, before any file is read.

    Raises:
        ConfigError: the first problem found.
    """
    for key in ("probs", "labels"):
        if not isinstance(cfg.get(key), str) or not cfg.get(key).strip():
            what = "probability (or logit) files" if key == "probs" else "ground-truth label files"
            raise ConfigError(f"{key}= is required: the folder of the {what}, e.g. {key}=path/to/folder")
    probs, labels = Path(str(cfg.probs)).expanduser(), Path(str(cfg.labels)).expanduser()
    if probs.exists() and labels.exists() and probs.resolve() == labels.resolve():
        raise ConfigError(
            f"probs= and labels= are the same folder ({probs}); labels= must hold the ground truth, not the "
            "predicted segmentations that tools such as nnU-Net write beside the probabilities"
        )
    activation = "none" if cfg.get("activation") is None else str(cfg.activation)
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"activation={activation!r}: use none (the files hold probabilities), softmax or sigmoid (logits)"
        )
    sum_to_one = cfg.get("sum_to_one", "auto")
    if sum_to_one not in ("auto", True, False):
        raise ConfigError(f"sum_to_one={sum_to_one!r}: use auto, true (softmax-type) or false (one-vs-rest)")
    num_classes = cfg.get("num_classes")
    if num_classes is not None and (not _is_int(num_classes) or num_classes < 1):
        raise ConfigError(
            f"num_classes must be a positive integer or null (the files' channel count), got {num_classes!r}"
        )
    names = cfg.get("class_names")
    if names is not None:
        names = [str(n) for n in OmegaConf.to_container(names)] if not isinstance(names, str) else None
        if names is None or not names or len(set(names)) != len(names):
            raise ConfigError(f"class_names must be a list of distinct names, got {cfg.class_names!r}")
        if num_classes is not None and len(names) != num_classes:
            raise ConfigError(f"class_names has {len(names)} names but num_classes is {num_classes}; make them agree")
    coi = cfg.get("classes_of_interest")
    if coi is not None and coi != "all":
        coi = OmegaConf.to_container(coi) if not isinstance(coi, str) else coi
        bad = [v for v in coi if not _is_int(v) or v < 0] if isinstance(coi, list) else coi
        if not isinstance(coi, list) or not coi or bad:
            raise ConfigError(f"classes_of_interest={coi!r} must be null, all, or a list of class indices, e.g. [1,2]")
    else:
        coi = None
    ignore_index = cfg.get("ignore_index")
    if not _is_int(ignore_index):
        raise ConfigError(
            f"ignore_index must be an integer (the label value of unlabelled pixels), got {ignore_index!r}"
        )
    nifti_order = str(cfg.get("nifti_order", "zyx"))
    if nifti_order not in NIFTI_ORDERS:
        raise ConfigError(
            f"nifti_order={nifti_order!r}: use zyx (nnU-Net/SimpleITK order) or xyz (nibabel's array order)"
        )
    for key in ("reference_ignore", "partial"):
        if not isinstance(cfg.get(key), bool):
            raise ConfigError(f"{key} must be true or false, got {cfg.get(key)!r}")
    if not cfg.get("predict"):
        raise ConfigError(
            "predict is empty: name at least one rule, e.g. predict=[argmax,rankdice] (the files in configs/predict/)"
        )
    _check_device(cfg)
    name = cfg.get("name") or probs.resolve().name
    try:
        check_path_component(name, "name")
    except ValueError:
        raise ConfigError(
            f"the results folder name {name!r} (name=, default: the probs folder's name) must be letters, digits "
            "and _ . + - (not starting with . or -); set name= to such a name"
        ) from None
    out_dir = Path(str(cfg.results_dir)) if cfg.get("results_dir") else Path(cfg.paths.results_dir) / "probs" / name
    return _Settings(
        probs=probs,
        labels=labels,
        activation=activation,
        sum_to_one=None if sum_to_one == "auto" else bool(sum_to_one),
        num_classes=num_classes,
        class_names=names,
        classes_of_interest=coi,
        ignore_index=int(ignore_index),
        reference_ignore=bool(cfg.reference_ignore),
        nifti_order=nifti_order,
        partial=bool(cfg.partial),
        name=str(name),
        out_dir=out_dir,
    )


def _nnunet_labels(probs_dir: Path) -> tuple[list[str] | None, int | None]:
    """Class names in label order and the ignore label from the ``dataset.json`` that nnU-Net writes beside its
    predictions; (None, None) without one.

    Raises:
        ConfigError: the dataset is region-based (its probabilities are per region, not per label).
    """
    path = probs_dir / "dataset.json"
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))["labels"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    if not isinstance(labels, dict):
        return None, None
    if any(isinstance(v, list) for v in labels.values()):
        raise ConfigError(
            f"{path} describes a region-based nnU-Net model: its probabilities are per region (sigmoid), not per "
            "label, and cannot be scored against label maps class by class"
        )
    ignore = labels.get("ignore") if _is_int(labels.get("ignore")) else None
    classes = {v: str(k) for k, v in labels.items() if k != "ignore" and _is_int(v)}
    if sorted(classes) != list(range(len(classes))):
        return None, ignore
    return [classes[k] for k in range(len(classes))], ignore


def _check_values(
    probs: torch.Tensor, stored: torch.dtype, first: bool, case: Case, s: _Settings, src: _Source
) -> None:
    """Finite values; with ``activation=none`` values in [0, 1] and, for softmax-type data, sums of 1 per pixel.

    Shape:
        - probs: (C, *S) float32
    """
    lo, hi = (float(v) for v in torch.aminmax(probs))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ProbFileError(f"{case.probs}: holds NaN or infinite values; re-export the case")
    if s.activation != "none":
        if first and probs.shape[0] > 1 and lo >= 0 and hi <= 1:
            deviation = float((probs.sum(0) - 1).abs().max())
            if deviation <= 1e-3:
                echo(
                    f"warning: {case.probs.name} already looks like probabilities (values in [0, 1], summing to 1 "
                    f"per pixel), but activation={s.activation} treats them as logits; use activation=none if they are"
                )
        return
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ProbFileError(
            f"{case.probs}: values range over [{lo:.4g}, {hi:.4g}], outside [0, 1], but activation=none expects "
            "probabilities. These look like logits: set activation=softmax (one channel per exclusive class, "
            "background included) or activation=sigmoid (one-vs-rest channels)"
        )
    if probs.shape[0] == 1:
        return
    sums = probs.sum(0)
    deviation = float((sums - 1).abs().max())
    ok = deviation <= _SUM_TOL.get(stored, 1e-3)
    if src.sum_to_one is None:
        src.sum_to_one, src.sums_from = (ok if s.sum_to_one is None else s.sum_to_one), case.probs.name
    if src.sum_to_one and not ok:
        lo_sum, hi_sum = (float(v) for v in torch.aminmax(sums))
        why = "sum_to_one=true" if s.sum_to_one else f"the first case, {src.sums_from}, does"
        raise ProbFileError(
            f"{case.probs}: per-pixel sums over the {probs.shape[0]} channels range over [{lo_sum:.4g}, "
            f"{hi_sum:.4g}], not 1 (softmax-type probabilities are expected: {why}). A missing channel (e.g. "
            "background) or probabilities of another resampling cause this; for one-vs-rest (sigmoid) "
            "probabilities set sum_to_one=false"
        )


def _check_classes(probs: torch.Tensor, case: Case, s: _Settings, src: _Source) -> None:
    channels = int(probs.shape[0])
    if src.num_classes is None:
        src.num_classes = s.num_classes if s.num_classes is not None else channels
        src.classes_from = "num_classes" if s.num_classes is not None else f"the channels of {case.probs.name}"
        if s.activation == "softmax" and channels == 1:
            raise ConfigError(
                f"{case.probs.name} has 1 channel: its softmax is 1 everywhere; use activation=sigmoid for "
                "single-channel (foreground) logits"
            )
    if channels != src.num_classes:
        raise ProbFileError(
            f"{case.probs}: {channels} channels (array {tuple(probs.shape)}, layout (C, *S)) but {src.num_classes} "
            f"classes ({src.classes_from}). One channel per class, background included; fix num_classes= or "
            "re-export the case"
        )


def _align(probs: torch.Tensor, label: torch.Tensor, case: Case, s: _Settings) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (C, *S) and label (*S) of one case on the same grid; nnU-Net's 2-D layout (C, 1, H, W) against
    an (H, W) label (and the reverse) is squeezed.

    Raises:
        ProbFileError: naming both shapes and the likely cause.
    """
    spatial, shape = tuple(probs.shape[1:]), tuple(label.shape)
    if spatial == shape:
        return probs, label
    if len(spatial) == len(shape) + 1 and spatial[0] == 1 and spatial[1:] == shape:
        return probs[:, 0], label
    if len(shape) == len(spatial) + 1 and shape[0] == 1 and shape[1:] == spatial:
        return probs, label[0]
    hints = []
    nifti = case.label.name.lower().endswith((".nii", ".nii.gz"))
    if nifti and shape[::-1] == spatial:
        other = "xyz" if s.nifti_order == "zyx" else "zyx"
        hints.append(f"the axes are reversed: add nifti_order={other} (now {s.nifti_order})")
    if tuple(probs.shape[:-1]) == shape:
        hints.append("the probabilities look channels-last (*S, C): save them as (C, *S)")
    if not hints:
        hints.append("probabilities must be on the label's grid (nnU-Net exports them at the original image's shape)")
    raise ProbFileError(
        f"case {case.case_id!r}: probabilities {case.probs.name} have spatial shape {spatial} (array "
        f"{tuple(probs.shape)} = (C, *S)) but label {case.label.name} has shape {shape}"
        + (f" (NIfTI read in {s.nifti_order} order)" if nifti else "")
        + "; "
        + "; ".join(hints)
    )


def _check_label_values(label: torch.Tensor, case: Case, s: _Settings, src: _Source) -> None:
    num_classes = int(src.num_classes)
    bad = ((label < 0) | (label >= num_classes)) & (label != s.ignore_index)
    if not bool(bad.any()):
        return
    values = torch.unique(label[bad]).tolist()
    listed = ", ".join(map(str, values[:10])) + (f", ... ({len(values)} values)" if len(values) > 10 else "")
    hint = ""
    if src.nnunet_ignore is not None and src.nnunet_ignore != s.ignore_index:
        hint = f" (dataset.json in probs= declares ignore label {src.nnunet_ignore}: ignore_index={src.nnunet_ignore})"
    raise ProbFileError(
        f"{case.label}: label values {listed} in {int(bad.sum())} voxels are neither classes 0-{num_classes - 1} "
        f"({num_classes} classes: {src.classes_from}) nor ignore_index={s.ignore_index}. Check that the "
        f"probabilities and labels belong together; an 'unlabelled' value goes in ignore_index={hint}"
    )


def _read_case(case: Case, s: _Settings, src: _Source) -> tuple[torch.Tensor, torch.Tensor]:
    """One case's probabilities (1, C, *S) float32 (activation applied) and label (1, *S) int64, both checked."""
    nifti = case.label.name.lower().endswith((".nii", ".nii.gz"))
    src.probs_files[case.probs.name] = file_sha256(case.probs)
    reorient = None
    if case.properties is not None and nifti:
        src.probs_files[case.properties.name] = file_sha256(case.properties)
        reorient = nnunet_reorientation(case.properties)
    stored = read_probs(case.probs)
    probs, dtype, first = stored.float(), stored.dtype, src.num_classes is None
    del stored
    _check_classes(probs, case, s, src)
    _check_values(probs, dtype, first, case, s, src)
    if s.activation != "none":
        probs = probabilities(probs.unsqueeze(0), s.activation)[0]
    src.label_files[case.label.name] = file_sha256(case.label)
    label = torch.from_numpy(read_label(case.label, s.nifti_order, reorient).astype(np.int64, copy=False))
    probs, label = _align(probs, label, case, s)
    _check_label_values(label, case, s, src)
    return probs.unsqueeze(0), label.unsqueeze(0)


@torch.no_grad()
def run_probs_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """Score the saved probabilities of ``cfg.probs`` against ``cfg.labels`` with every rule in ``cfg.predict``,
    print the report and merge the scores into ``{results_dir}/metrics.json`` (module docstring).

    Raises:
        ConfigError: an invalid config value (before any file is read).
        rankseg.data.prob_files.ProbFileError: a missing folder, unmatched cases, an unreadable file, wrong
            values, channel counts, label values or shapes (one message naming the file).

    Returns:
        The merged ``metrics.json`` content (NaN as None).
    """
    s = _check_config(cfg)
    cases, unscored = match_cases(s.probs, s.labels, s.partial)
    src = _Source()
    src.nnunet_names, src.nnunet_ignore = _nnunet_labels(s.probs)
    device = resolve_device(str(cfg.device))
    with file_lock(s.out_dir / METRICS_FILE):
        read_metrics(s.out_dir / METRICS_FILE)  # a corrupt file is moved aside now, not after the evaluation
    rules = build_rules(cfg.predict)
    if unscored:
        echo(f"note: {len(unscored)} label file(s) have no probabilities and are left out (partial=true)")

    accumulators: dict[str, MetricAccumulator] = {}
    scored: list[str] = []
    skipped: list[str] = []
    running = {name: [0.0, 0] for name in rules}  # sum and count of per-case mDice, for the progress bar
    bar = progress(cases, desc=f"evaluate_probs {s.name}", unit="case")
    for case in bar:
        probs, label = _read_case(case, s, src)
        if not accumulators:  # the class count is known from the first file on
            _settle_classes(s, src)
            accumulators = {
                name: MetricAccumulator(src.num_classes, s.classes_of_interest, s.ignore_index, s.reference_ignore)
                for name in rules
            }
        if bool((label == s.ignore_index).all()):
            skipped.append(case.case_id)
            continue
        probs, label = probs.to(device), label.to(device)
        for name, rule in rules.items():
            tp, fp, fn = accumulators[name].update(rule(probs), label)
            dice = float(torch.nanmean(scores_from_stats(tp, fp, fn)[0][0, s.classes_of_interest or slice(None)]))
            if not math.isnan(dice):
                running[name][0] += dice
                running[name][1] += 1
        scored.append(case.case_id)
        del probs, label
        bar.set_postfix({f"mDice[{n}]": f"{t / max(c, 1):.3f}" for n, (t, c) in running.items()})
    bar.close()
    if skipped:
        echo(f"note: {len(skipped)} case(s) have no labelled voxel (all ignore_index) and are skipped: {skipped[:5]}")

    settings = {
        "probs_sha256": digest(src.probs_files),
        "labels_sha256": digest(src.label_files),
        "activation": s.activation,
        "num_classes": src.num_classes,
        "class_names": src.class_names,
        "ignore_index": s.ignore_index,
        "reference_ignore": s.reference_ignore,
        "classes_of_interest": s.classes_of_interest,
        "nifti_order": s.nifti_order,
    }
    header = {
        "source": "saved probabilities",
        "dataset": OmegaConf.select(cfg, "dataset.name"),
        "name": s.name,
        "probs": str(s.probs.absolute()),
        "labels": str(s.labels.absolute()),
        "num_cases": len(scored),
        "skipped_cases": skipped,
        "unscored_labels": len(unscored),
        "probs_sum_to_one": src.sum_to_one,
        "weights_sha256": None,  # no network: the digests in eval_settings identify the source
        "eval_settings": settings,
        "commit": git_commit(),
    }
    counts = {name: acc.counts() for name, acc in accumulators.items()}
    return _report(header, counts, src.class_names, scored, s)


def _settle_classes(s: _Settings, src: _Source) -> None:
    """Class names and classes of interest, checked against the class count (known once the first file is read).

    Names: ``class_names``, else those of nnU-Net's ``dataset.json`` in the probs folder, else ``0..C-1``.
    """
    num_classes = int(src.num_classes)
    if s.class_names is not None and len(s.class_names) != num_classes:
        raise ConfigError(
            f"class_names has {len(s.class_names)} names but there are {num_classes} classes ({src.classes_from}); "
            "make them agree"
        )
    names = s.class_names or src.nnunet_names
    if names is not None and len(names) != num_classes:
        echo(f"note: dataset.json in {s.probs} names {len(names)} classes, the files have {num_classes}: not used")
        names = None
    src.class_names = list(names) if names else [str(k) for k in range(num_classes)]
    bad = [k for k in s.classes_of_interest or [] if k >= num_classes]
    if bad:
        raise ConfigError(
            f"classes_of_interest={s.classes_of_interest} must list class indices in [0, {num_classes}) "
            f"({num_classes} classes: {src.classes_from}); bad: {bad}"
        )


def _records(
    header: dict[str, Any], counts: dict[str, tuple[torch.Tensor, ...]], class_names: list[str], coi: Any
) -> dict[str, dict[str, Any]]:
    """One ``metrics.json`` rule record per rule, with evaluate.py's metric keys and this source's provenance."""
    provenance = {k: header[k] for k in ("probs", "labels", "weights_sha256", "eval_settings", "commit")}
    return rule_records(counts, class_names, coi, provenance)


def _case_rows(counts: dict[str, tuple[torch.Tensor, ...]], class_names: list[str], scored: list[str]) -> list[list]:
    rows = []
    for rule, (tp, fp, fn) in counts.items():
        dice, iou = scores_from_stats(tp, fp, fn)
        for i, case in enumerate(scored):
            for k, cls in enumerate(class_names):
                d, j = float(dice[i, k]), float(iou[i, k])
                cells = ["" if math.isnan(v) else f"{v:.6f}" for v in (d, j)]
                rows.append([rule, case, cls, *cells, int(tp[i, k]), int(fp[i, k]), int(fn[i, k])])
    return rows


def _write_case_csv(path: Path, merged_rules: list[str], new_rules: set[str], rows: list[list]) -> None:
    """``case_scores.csv``: this evaluation's rows plus the earlier rows of rules that stayed in ``metrics.json``."""
    kept: dict[str, list[list[str]]] = {}
    if path.is_file():
        try:
            with open(path, newline="", encoding="utf-8") as f:
                for row in list(csv.reader(f))[1:]:
                    if row and row[0] in merged_rules and row[0] not in new_rules:
                        kept.setdefault(row[0], []).append(row)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            echo(f"warning: {path} was unreadable ({err}); it now holds this evaluation's rules only")
            kept = {}
    fresh: dict[str, list[list]] = {}
    for row in rows:
        fresh.setdefault(row[0], []).append(row)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["rule", "case", "class", "dice", "iou", "tp", "fp", "fn"])
    for rule in merged_rules:
        writer.writerows(fresh.get(rule, kept.get(rule, [])))
    atomic_write_text(path, buf.getvalue())


def _report(
    header: dict[str, Any],
    counts: dict[str, tuple[torch.Tensor, ...]],
    class_names: list[str],
    scored: list[str],
    s: _Settings,
) -> dict[str, Any]:
    """Aggregate, print the table, merge into ``metrics.json``, render ``class_scores.csv`` and ``case_scores.csv``."""
    records = _records(header, counts, class_names, s.classes_of_interest)
    title = (
        f"Results for probabilities {s.probs} against labels {s.labels} ({len(scored)} cases, x100; "
        f"activation {s.activation})"
    )
    echo(format_report(records, class_names, title))
    # The case-table lock (taken first, always in this order) keeps the two tables of concurrent merges consistent;
    # merge_metrics takes the metrics.json lock itself.
    with file_lock(s.out_dir / CASE_CSV):
        merged = merge_metrics(s.out_dir / METRICS_FILE, header, records)
        rows = _case_rows(counts, class_names, scored)
        _write_case_csv(s.out_dir / CASE_CSV, list(merged["rules"]), set(records), rows)
    echo(f"wrote {s.out_dir / METRICS_FILE}, {s.out_dir / CLASS_CSV} and {s.out_dir / CASE_CSV}")
    return merged
