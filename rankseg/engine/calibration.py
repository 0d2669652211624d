"""Calibration in ``evaluate.py``: the ECE and a reliability diagram of every evaluation, and temperature scaling.

    python evaluate.py                           # metrics.json gains "calibration"; reliability.png beside it
    python evaluate.py calibrate=temperature     # also every rule on softmax(logits / T), named RULE@T

**ECE** (definition in :mod:`rankseg.calibration`, as the RankSEG-RMA evaluation computes it) is accumulated in
the evaluation's single pass: per image, the pixel count, correct count and confidence sum of each of
``calibration.num_bins`` equal-width confidence bins, and the image's NLL sum (3n + 1 numbers per image, on the
device; no pixel is kept). They travel with the image indices under torchrun like the confusion counts, so the
numbers do not depend on the number of processes. Dataset-level ECE: the bins summed over the split;
per-image ECE: the mean of the images' own. Ignore pixels never count (``reference_ignore`` too).

**Temperature** (``calibrate=temperature``): one T, minimising the NLL of ``softmax(logits / T)`` (per-class
``sigmoid(logits / T)`` for sigmoid losses) on a held-out part of the *training* split: ``calibration.fraction``
of its images (at least one), the first of ``randperm(generator seeded with calibration.seed)``, read with the
val transform (the dataset's ``val`` node with the ``train`` node's split). One forward pass over them caches the
logits of their labelled pixels on the CPU, at most ``calibration.max_pixels`` in all (an image with more than
``max_pixels // images`` labelled pixels gives a seeded random subset of them), i.e. at most
``max_pixels x C x 4`` bytes (152 MB for 2M pixels of 19 classes). A golden-section search on ``log T`` then
makes about 30 float64 NLL passes over that cache. A run trained with ``calibration_holdout=F`` (configs/training.yaml)
kept a share F of its train images out of training; T is then fitted on exactly those images (``seed`` of the run,
:func:`rankseg.engine.runs.calibration_holdout_indices`; ``calibration.fraction``/``seed`` do not apply). Without
it the images come from the training set itself, which the network has seen, and T tends to come out low.

The fit is stored as ``temperature.json`` in the run's results folder (T, NLL before and after, the images used,
the fit settings and the network's ``weights_sha256``). A later ``calibrate=temperature`` reuses it for the same
weights and settings only, and refits otherwise.

**Records.** Rules on the raw probabilities keep their names; the same rules on the tempered probabilities are
``RULE@T`` (next to each other in the table) and carry ``temperature``. The header's ``calibration`` maps
``raw`` (and ``@T``) to the ECE, NLL and bins of those probabilities, with the ``weights_sha256`` and
``eval_settings`` they were computed under. Merging (:func:`merge_calibration`, inside the lock of
:func:`rankseg.engine.evaluate.merge_metrics`): entries of other weights or settings are dropped like rule records,
and an evaluation with another T drops every ``@T`` record of the old one, so all ``@T`` records of a file share
one T. ``reliability.png`` is rendered from the merged file (one panel per entry), so the two always agree.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from rankseg.calibration import CONFIDENCE, CORRECT, COUNT, calibration_bins, ece_from_bins, fit_temperature, pixel_nll
from rankseg.engine import console
from rankseg.engine.build import instantiate_component
from rankseg.engine.distributed import DistInfo, broadcast_object, gather_rows
from rankseg.engine.runfiles import atomic_write, atomic_write_json, file_lock, git_commit, nan_to_none
from rankseg.engine.runs import calibration_holdout_indices, config_diff
from rankseg.engine.train import model_logits
from rankseg.predict import PredictionRule, probabilities

__all__ = [
    "RELIABILITY_PNG",
    "SUFFIX",
    "TEMPERATURE_FILE",
    "CalibrationPass",
    "TemperedRule",
    "calibration_pass",
    "describe_calibration",
    "load_or_fit_temperature",
    "merge_calibration",
    "tag_tempered",
    "write_reliability_diagram",
]

RELIABILITY_PNG = "reliability.png"
TEMPERATURE_FILE = "temperature.json"
#: Suffix of the rules run on tempered probabilities, and key of their ``calibration`` entry.
SUFFIX = "@T"
RAW = "raw"
_BOUNDS, _TOL = (0.01, 100.0), 1e-5


def calibrate_mode(cfg: DictConfig) -> str:
    """``none`` or ``temperature`` (a config without the key, or with null/false, means none)."""
    value = cfg.get("calibrate")
    return "none" if value is None or value is False else str(value)


def _setting(cfg: DictConfig, key: str, default: Any) -> Any:
    value = OmegaConf.select(cfg, f"calibration.{key}")
    return default if value is None else value


def _same(a: Any, b: Any) -> bool:
    return not config_diff({"v": a}, {"v": b})


class TemperedRule(PredictionRule):
    """``rule`` applied to the tempered probabilities of the batch whose raw probabilities it is called with.

    The tempered probabilities are computed from the logits (``softmax(logits / T)``) by
    :meth:`CalibrationPass.observe`, not from ``probs``, which would lose saturated sigmoid outputs.
    """

    def __init__(self, rule: PredictionRule, source: CalibrationPass) -> None:
        self.rule, self.source = rule, source
        self.requires_proper = rule.requires_proper

    def __call__(self, probs: Tensor) -> Tensor:
        return self.rule(self.source.tempered(probs))


class CalibrationPass:
    """Per-image reliability bins and NLL of the raw (and tempered) probabilities, batch by batch.

    Args:
        num_classes: C.
        num_bins: equal-width confidence bins.
        ignore_index: label of unlabelled pixels.
        activation: ``softmax`` or ``sigmoid``.
        fit: the content of ``temperature.json`` (``calibrate=temperature``), or None.
    """

    def __init__(
        self, num_classes: int, num_bins: int, ignore_index: int, activation: str, fit: dict[str, Any] | None = None
    ) -> None:
        self.num_classes, self.num_bins, self.ignore_index = num_classes, num_bins, ignore_index
        self.activation, self.fit = activation, fit
        self.temperature = None if fit is None else float(fit["temperature"])
        self._rows: list[Tensor] = []
        self._probs: Tensor | None = None
        self._tempered: Tensor | None = None

    @property
    def variants(self) -> list[tuple[str, float | None]]:
        """``(entry key, temperature)`` of each probability set: raw, and tempered when there is a T."""
        return [(RAW, None)] + ([] if self.temperature is None else [(SUFFIX, self.temperature)])

    def extend_rules(self, rules: dict[str, PredictionRule]) -> dict[str, PredictionRule]:
        """``rules`` with ``RULE@T`` after each ``RULE`` when there is a temperature (else unchanged)."""
        if self.temperature is None:
            return rules
        out: dict[str, PredictionRule] = {}
        for name, rule in rules.items():
            out[name] = rule
            out[name + SUFFIX] = TemperedRule(rule, self)
        return out

    def observe(self, logits: Tensor, probs: Tensor, targets: Tensor) -> None:
        """Add one batch (``probs`` = the activation of ``logits``) and keep its tempered probabilities for the
        ``@T`` rules.

        Shape:
            - logits, probs: (B, C, *S); targets: (B, *S)
        """
        in_range = (targets >= 0) & (targets < self.num_classes)
        # Other values are left to the metrics' validation (with its message), which runs on the same batch.
        targets = torch.where(in_range, targets, torch.full_like(targets, self.ignore_index))
        logits = logits.float()
        self._probs, self._tempered = probs, None
        parts = []
        for _, temperature in self.variants:
            p = probs
            if temperature is not None:
                p = self._tempered = probabilities(logits / temperature, self.activation)
            bins = calibration_bins(p, targets, self.num_bins, self.ignore_index).flatten(1)
            nll = pixel_nll(logits, targets, self.activation, temperature or 1.0, self.ignore_index)
            parts += [bins, nll.flatten(1).to(torch.float64).sum(1, keepdim=True)]
        self._rows.append(torch.cat(parts, 1))

    def tempered(self, probs: Tensor) -> Tensor:
        """The tempered probabilities of the batch last observed, whose raw probabilities ``probs`` must be."""
        if self._tempered is None or probs is not self._probs:
            raise RuntimeError("a @T rule must be called with the probabilities last passed to CalibrationPass.observe")
        return self._tempered

    def finish(
        self, indices: list[int], info: DistInfo, device: torch.device, provenance: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Gather every rank's per-image rows (dataset order) and return the ``calibration`` entries on rank 0
        (None elsewhere). Every rank must call it.

        Args:
            indices: dataset index of every observed image, in this rank's order.
            provenance: ``weights_sha256`` and ``eval_settings``, copied into each entry.
        """
        width = len(self.variants) * (3 * self.num_bins + 1)
        rows = torch.cat(self._rows) if self._rows else torch.zeros(0, width, dtype=torch.float64)
        index = torch.tensor(indices, dtype=torch.float64).view(-1, 1)
        rows = gather_rows(torch.cat([index, rows.cpu()], 1).to(device), info).cpu()
        rows = rows[rows[:, 0].argsort(stable=True), 1:]
        self._rows, self._probs, self._tempered = [], None, None
        if not info.is_main:
            return None
        entries = {}
        step = 3 * self.num_bins + 1
        for j, (key, temperature) in enumerate(self.variants):
            block = rows[:, j * step : (j + 1) * step]
            bins = block[:, : 3 * self.num_bins].reshape(-1, 3, self.num_bins)
            entries[key] = self._entry(bins, block[:, -1], temperature, provenance)
        return nan_to_none(entries)

    def _entry(self, bins: Tensor, nll: Tensor, temperature: float | None, provenance: dict[str, Any]) -> dict:
        total = bins.sum(0)
        per_image = ece_from_bins(bins)
        labelled = ~torch.isnan(per_image)
        pixels = float(total[COUNT].sum())
        count = total[COUNT]
        safe = count.clamp_min(1)
        entry: dict[str, Any] = {
            "temperature": temperature,
            "ece": float(ece_from_bins(total)),
            "ece_per_image": float(per_image[labelled].mean()) if bool(labelled.any()) else math.nan,
            "nll": float(nll.sum()) / pixels if pixels else math.nan,
            "num_bins": self.num_bins,
            "num_pixels": int(pixels),
            "num_images": int(labelled.sum()),
            "bins": {
                "lower": [k / self.num_bins for k in range(self.num_bins)],
                "count": [int(c) for c in count.tolist()],
                "accuracy": torch.where(count > 0, total[CORRECT] / safe, math.nan).tolist(),
                "confidence": torch.where(count > 0, total[CONFIDENCE] / safe, math.nan).tolist(),
            },
        }
        if temperature is not None and self.fit is not None:
            keys = ("temperature", "nll_before", "nll_after", "num_images", "num_pixels")
            entry["fit"] = {k: self.fit.get(k) for k in keys}
            entry["fit"].update(
                file=TEMPERATURE_FILE,
                **{k: self.fit["settings"].get(k, False) for k in ("fraction", "seed", "held_out_of_training")},
            )
        entry.update(provenance)
        return entry


# --- the temperature fit -----------------------------------------------------------------------------------
def _fit_settings(
    cfg: DictConfig, activation: str, use_amp: bool, identity: dict[str, Any] | None = None
) -> dict[str, Any]:
    node = OmegaConf.to_container(cfg.dataset.val, resolve=True)
    node["split"] = str(OmegaConf.select(cfg, "dataset.train.split", default="train"))
    node.pop("root", None)
    holdout = float((identity or {}).get("calibration_holdout") or 0.0)
    if holdout > 0:  # the images the run kept out of training (runs.calibration_holdout_indices)
        fraction, seed = holdout, int(identity["seed"])  # type: ignore[index]
    else:
        fraction, seed = float(_setting(cfg, "fraction", 0.1)), int(_setting(cfg, "seed", 0))
    return {
        "dataset": node,
        "held_out_of_training": holdout > 0,
        "fraction": fraction,
        "seed": seed,
        "max_pixels": int(_setting(cfg, "max_pixels", 2_000_000)),
        "activation": activation,
        "amp": use_amp,
        "method": f"golden-section search on log T in [{_BOUNDS[0]}, {_BOUNDS[1]}], tol {_TOL}, float64 NLL",
    }


def _held_out_logits(
    cfg: DictConfig, model: torch.nn.Module, settings: dict[str, Any], device: torch.device, use_amp: bool
) -> tuple[Tensor, Tensor, list[int], list[str]]:
    """Logits (N, C) and labels (N,) of the labelled pixels of the held-out train images, on the CPU."""
    node = OmegaConf.to_container(cfg.dataset.val, resolve=True)
    node["split"] = settings["dataset"]["split"]
    dataset = instantiate_component(node)
    n = len(dataset)
    if settings.get("held_out_of_training"):
        chosen = calibration_holdout_indices(n, settings["fraction"], settings["seed"])
    else:
        k = min(n, max(1, round(settings["fraction"] * n)))
        chosen = sorted(torch.randperm(n, generator=torch.Generator().manual_seed(settings["seed"]))[:k].tolist())
    share = max(1, settings["max_pixels"] // max(len(chosen), 1))
    ignore = int(cfg.dataset.ignore_index)
    loader = DataLoader(
        Subset(dataset, chosen),
        batch_size=int(cfg.eval_batch_size),
        num_workers=int(cfg.dataset.num_workers),
        pin_memory=device.type == "cuda",
    )
    logits_parts, label_parts = [], []
    position = 0
    for images, targets in console.progress(loader, desc="temperature fit: train images"):
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model_logits(model(images.to(device, non_blocking=True))).float()
        targets = targets.to(device, non_blocking=True)
        for b in range(logits.shape[0]):
            flat_logits, flat_target = logits[b].flatten(1), targets[b].flatten()
            keep = (flat_target != ignore).nonzero().squeeze(1)
            if keep.numel() > share:
                gen = torch.Generator().manual_seed(settings["seed"] * 1_000_003 + chosen[position])
                keep = keep[torch.randperm(keep.numel(), generator=gen)[:share].sort().values.to(keep.device)]
            logits_parts.append(flat_logits[:, keep].T.cpu())
            label_parts.append(flat_target[keep].cpu())
            position += 1
    names = []
    for i in chosen:
        image = Path(dataset.samples[i][0]) if hasattr(dataset, "samples") else Path(str(i))
        names.append(str(image.relative_to(dataset.root)) if image.is_relative_to(dataset.root) else str(image))
    return torch.cat(logits_parts), torch.cat(label_parts), chosen, names


def load_or_fit_temperature(
    cfg: DictConfig,
    model: torch.nn.Module,
    activation: str,
    weights_hash: str,
    ckpt_path: Path,
    out_dir: Path,
    device: torch.device,
    use_amp: bool,
    say: Any = print,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``out_dir/temperature.json``: reused when it was fitted for these weights and settings,
    else fitted now (see the module docstring) and written. Holds the file's lock meanwhile."""
    settings = _fit_settings(cfg, activation, use_amp, identity)
    path = out_dir / TEMPERATURE_FILE
    with file_lock(path):
        old = None
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                say(f"note: {path} is unreadable; fitting the temperature again")
        if isinstance(old, dict) and old.get("weights_sha256") == weights_hash and _same(old.get("settings"), settings):
            say(f"temperature T={old['temperature']:.4f} from {path} (fitted for these weights and settings)")
            return old
        if isinstance(old, dict):
            say(f"note: {path} was fitted for other weights or settings; fitting the temperature again")
        start = time.monotonic()
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits, labels, indices, names = _held_out_logits(cfg, model, settings, device, use_amp)
        model.train(was_training)
        result = fit_temperature(logits, labels, activation, bounds=_BOUNDS, tol=_TOL)
        data = {
            "temperature": result.temperature,
            "nll_before": result.nll_before,
            "nll_after": result.nll_after,
            "at_bound": result.at_bound,
            "num_images": len(indices),
            "num_pixels": int(labels.numel()),
            "weights_sha256": weights_hash,
            "checkpoint": str(ckpt_path),
            "settings": settings,
            "image_indices": indices,
            "images": names,
            "nll_evaluations": result.evaluations,
            "seconds": round(time.monotonic() - start, 2),
            "commit": git_commit(),
        }
        atomic_write_json(path, data)
    say(
        f"temperature T={result.temperature:.4f} fitted by NLL on {len(indices)} "
        f"{'held-out ' if settings['held_out_of_training'] else ''}{settings['dataset']['split']} images "
        f"{'' if settings['held_out_of_training'] else '(seen in training: calibration_holdout=0) '}"
        f"({labels.numel()} pixels; NLL {result.nll_before:.4f} -> "
        f"{result.nll_after:.4f}); wrote {path}"
    )
    if result.at_bound:
        say(
            f"warning: T={result.temperature:.4g} lies on the search bracket {_BOUNDS}: the NLL has no interior minimum"
        )
    return data


def calibration_pass(
    cfg: DictConfig,
    model: torch.nn.Module,
    activation: str,
    weights_hash: str,
    ckpt_path: Path,
    out_dir: Path,
    info: DistInfo,
    device: torch.device,
    use_amp: bool,
    say: Any = print,
    identity: dict[str, Any] | None = None,
) -> CalibrationPass:
    """The :class:`CalibrationPass` of an evaluation; with ``calibrate=temperature`` rank 0 loads or fits T
    first and every rank gets it."""
    fit = None
    if calibrate_mode(cfg) == "temperature":
        if info.is_main:
            fit = load_or_fit_temperature(
                cfg, model, activation, weights_hash, ckpt_path, out_dir, device, use_amp, say, identity
            )
        fit = broadcast_object(fit, info)
    num_bins = int(_setting(cfg, "num_bins", 10))
    return CalibrationPass(int(cfg.dataset.num_classes), num_bins, int(cfg.dataset.ignore_index), activation, fit)


# --- records, merging, report -------------------------------------------------------------------------------
def tag_tempered(records: dict[str, dict[str, Any]], header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``records`` with ``temperature`` added to each ``RULE@T`` record (from the header's ``@T`` entry)."""
    entry = (header.get("calibration") or {}).get(SUFFIX)
    if not entry:
        return records
    return {n: {**r, "temperature": entry["temperature"]} if n.endswith(SUFFIX) else r for n, r in records.items()}


def merge_calibration(
    previous: dict[str, Any], header: dict[str, Any], new: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(previous, header)`` ready for the rule merge of ``metrics.json`` with the ``new`` records: the
    header's ``calibration`` gains the previous entries it lacks that share its ``weights_sha256`` and
    ``eval_settings``; when the header has a ``@T`` entry, previous ``RULE@T`` records of another temperature
    leave ``previous`` (those that ``new`` does not replace are named)."""
    current = dict(header.get("calibration") or {})
    old = previous.get("calibration")
    kept = {}
    for key, entry in (old if isinstance(old, dict) else {}).items():
        if (
            key not in current
            and isinstance(entry, dict)
            and entry.get("weights_sha256") == header.get("weights_sha256")
            and _same(entry.get("eval_settings"), header.get("eval_settings"))
        ):
            kept[key] = entry
    order = {RAW: 0, SUFFIX: 1}
    merged = dict(sorted({**kept, **current}.items(), key=lambda kv: order.get(kv[0], 2)))
    rules = previous.get("rules")
    if SUFFIX in current and isinstance(rules, dict):
        temperature = current[SUFFIX].get("temperature")
        stale = [
            name
            for name, record in rules.items()
            if name.endswith(SUFFIX) and not (isinstance(record, dict) and record.get("temperature") == temperature)
        ]
        gone = [name for name in stale if name not in new]  # the others are replaced in place by the rule merge
        if gone:
            console.echo(f"dropped {', '.join(gone)}: computed with another temperature than T={temperature:.4f}")
            previous = {**previous, "rules": {n: r for n, r in rules.items() if n not in gone}}
    if merged:
        header = {**header, "calibration": merged}  # in place of the header's own entry, if it has one
    else:
        header = {k: v for k, v in header.items() if k != "calibration"}
    return previous, header


def describe_calibration(header: dict[str, Any], out_dir: Path) -> str:
    """The lines printed under the results table: ECE and NLL of each probability set, and what ``@T`` means."""
    entries = header.get("calibration") or {}
    if not entries:
        return ""

    def pct(v: float | None) -> str:
        return "nan" if v is None else f"{100 * v:.2f}"

    first = next(iter(entries.values()))
    lines = [
        f"Calibration over the labelled val pixels ({first['num_bins']} equal-width confidence bins; ECE x100), "
        f"reliability diagram {out_dir / RELIABILITY_PNG}:"
    ]
    for key, e in entries.items():
        label = "raw" if key == RAW else f"@T (T={e['temperature']:.4f})"
        nll = "nan" if e.get("nll") is None else f"{e['nll']:.4f}"
        lines.append(f"  {label:<18} ECE {pct(e['ece'])} dataset-level, {pct(e['ece_per_image'])} per image; NLL {nll}")
    fit = entries.get(SUFFIX, {}).get("fit")
    if fit:
        softmax = "softmax" if header.get("eval_settings", {}).get("activation", "softmax") == "softmax" else "sigmoid"
        lines.append(
            f"  RULE@T = RULE on {softmax}(logits / {fit['temperature']:.4f}); T fitted by NLL on {fit['num_images']} "
            f"{'held-out' if fit.get('held_out_of_training') else 'seen'} train images "
            f"(fraction {fit['fraction']}, seed {fit['seed']}; NLL {fit['nll_before']:.4f} -> "
            f"{fit['nll_after']:.4f}), {out_dir / TEMPERATURE_FILE}"
        )
    return "\n".join(lines)


def write_reliability_diagram(path: Path, metrics: dict[str, Any]) -> Path | None:
    """Render ``path`` (PNG) from the ``calibration`` entries of a merged ``metrics.json``: per entry, the
    accuracy of each confidence bin against the diagonal, the gap to the bin's mean confidence, and the share of
    pixels per bin below. Without entries, a stale ``path`` is removed and None returned."""
    entries = {k: e for k, e in (metrics.get("calibration") or {}).items() if isinstance(e, dict) and e.get("bins")}
    if not entries:
        path.unlink(missing_ok=True)
        return None
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas

    fig = Figure(figsize=(4.2 * len(entries), 5.4), layout="constrained")
    grid = fig.add_gridspec(2, len(entries), height_ratios=[3, 1])
    for j, (key, e) in enumerate(entries.items()):
        bins = e["bins"]
        width = 1.0 / e["num_bins"]
        nan = float("nan")
        acc = [nan if v is None else v for v in bins["accuracy"]]
        conf = [nan if v is None else v for v in bins["confidence"]]
        ax = fig.add_subplot(grid[0, j])
        ax.bar(bins["lower"], acc, width=width, align="edge", color="tab:blue", alpha=0.7, label="accuracy")
        # The gap as a hatched outline, visible over the accuracy bar too (under-confident bins).
        gap = [c - a for a, c in zip(acc, conf, strict=True)]
        ax.bar(bins["lower"], gap, bottom=acc, width=width, align="edge", fill=False, hatch="//",
               edgecolor="tab:red", label="gap to mean confidence")  # fmt: skip
        centres = [lo + width / 2 for lo in bins["lower"]]
        ax.plot(centres, conf, "_", color="tab:red", markersize=12, markeredgewidth=2, label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
        label = "raw probabilities" if key == RAW else f"@T: T = {e['temperature']:.4f}"
        ece = "nan" if e["ece"] is None else f"{100 * e['ece']:.2f}"
        per_image = "nan" if e["ece_per_image"] is None else f"{100 * e['ece_per_image']:.2f}"
        ax.set_title(f"{label}\nECE {ece} (per image {per_image}), x100", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        hist = fig.add_subplot(grid[1, j], sharex=ax)
        total = max(sum(bins["count"]), 1)
        hist.bar(bins["lower"], [c / total for c in bins["count"]], width=width, align="edge", color="gray")
        hist.set(xlabel="confidence (max probability)", ylabel="share of pixels")
    title = "/".join(str(metrics.get(k, "?")) for k in ("dataset", "model", "loss", "run"))
    fig.suptitle(f"{title} (val, {e['num_pixels']} labelled pixels)", fontsize=10)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
