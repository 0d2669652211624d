"""Looking at what the rules did to a run: per-image scores, expected against realised Dice, overlay grids.

Written by :func:`rankseg.engine.evaluate.run_evaluation` into the run's results folder, next to
``metrics.json``, when asked (``configs/evaluate.yaml``)::

    python evaluate.py predict=[threshold,argmax,rma,rankdice] per_image=true save_overlays=4

``per_image=true`` writes ``per_image.csv``, one row per (rule, image, class), merged across evaluations like
``metrics.json`` (rows of rules not evaluated now stay only if they come from the same weights and evaluation
settings; the file is replaced atomically under a lock), and ``plots/expected_vs_realised_{rule}.png`` for every
RankSEG rule of the evaluation (:func:`plot_expected_vs_realised`, which also runs on any ``per_image.csv``).
Columns:

* ``rule``, ``index`` (position in the val split), ``image`` (the image file's stem, else the index), ``class``;
* ``dice``, ``iou``: :func:`rankseg.metrics.per_image_scores` of the rule's prediction (empty: NaN, the class
  is absent from both prediction and truth); ``pred_size``, ``true_size``: counted pixels, tp + fp and tp + fn
  (ignore pixels are not counted unless ``reference_ignore=true``);
* RankSEG rules only (:class:`rankseg.predict.RankSEGRule`; empty for the others, the ``@T`` rules of
  ``calibrate=temperature`` included): ``tau``, ``cutoff``, the size
  and smallest probability of the class's own mask (:func:`rankseg.rankseg_details`; for multiclass rules the
  mask before the overlap resolution, so ``tau`` may differ from ``pred_size``; ``cutoff`` empty for tau = 0),
  and ``expected_dice``, ``expected_iou``: :func:`rankseg.expected_metric` (smooth 0) of the rule's prediction
  under the model's probabilities, the score the rule expects. The expectation covers every pixel of the image
  (the model does not know which are ignore pixels), and an empty prediction expects 0 where the realised
  score is empty (NaN) if the class is absent;
* ``eval_id``: 16 hex digits of the SHA-256 of the weights' hash and the evaluation settings (the merge key).

Cost, and why ``per_image`` is off by default: the exact expectations are the only costly part (the rest comes
from the evaluation's own counts). They are computed for the non-empty masks only (:func:`expected_scores`; an
empty mask expects exactly 0), and still cost several times the solver on large images. On this project's
2-core CPU (medians of 3, RMA label maps of blurred random logits): four 21-class 512x512 maps with 3 classes
present each, E[Dice] + E[IoU] 1.7 s against 0.12 s for the RMA solve (9.9 s without skipping the empty
masks); one 19-class 1024x2048 map with 12 present, 1.0 s against 0.29 s (14.8 s). On the 100 64x64 images of
the demo run (rules threshold, argmax, rma, rankdice) the whole evaluation took 6.0 s instead of 5.4 s, so
``experiment=synthetic_table`` turns it on.

``save_overlays=N`` writes ``overlays/{index}_{image}.png`` (the folder is replaced: it holds the last
evaluation's overlays) for the first N evaluated images of the val split and the N others on which a rule's prediction
differs from the argmax in the most pixels (a pixel differs when its set of predicted classes is not the argmax
class alone; images where no rule differs are not picked). Each is one row of panels of the same size: the image
(de-normalised with the dataset's mean and std), the ground truth, the argmax, every rule other than an argmax
rule, and the pixels where the first RankSEG rule (else the first other rule) changed the argmax, coloured by
whether they are correct after the change (the pixel's truth is then its only predicted class) or wrong; titles
give each prediction's per-image mean Dice over the classes of interest, a legend names the class colours.
Predictions are kept during the pass for the candidates only (at most 3N images per process); nothing is run
twice.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from rankseg import RankSEGDetails, expected_metric, rankseg_details
from rankseg.engine import console
from rankseg.engine.config_checks import ConfigError
from rankseg.engine.distributed import DistInfo, gather_rows
from rankseg.engine.image_files import blend_overlay, palette_for, write_png
from rankseg.engine.runfiles import atomic_write, atomic_write_text, file_lock
from rankseg.engine.runs import identity_digest
from rankseg.metrics import per_image_scores, scores_from_stats
from rankseg.predict import ArgmaxRule, PredictionRule, RankSEGRule

__all__ = [
    "COLUMNS",
    "OVERLAY_DIR",
    "PANEL_SIZE",
    "PER_IMAGE_FILE",
    "PLOT_DIR",
    "Inspector",
    "changed_pixels",
    "check_inspect_config",
    "denormalise",
    "expected_scores",
    "merge_per_image",
    "overlay_grid",
    "panel_shape",
    "plot_expected_vs_realised",
    "rule_details",
    "select_overlays",
]

PER_IMAGE_FILE = "per_image.csv"
OVERLAY_DIR = "overlays"
PLOT_DIR = "plots"
COLUMNS = ["rule", "index", "image", "class", "dice", "iou", "pred_size", "true_size", "tau", "cutoff",
           "expected_dice", "expected_iou", "eval_id"]  # fmt: skip
#: Longer side of every overlay panel in pixels (smaller images are enlarged by nearest neighbour).
PANEL_SIZE = 384
TITLE_HEIGHT = 22
LEGEND_LINE = 18
ALPHA = 0.6
#: Colours of the change panel: correct after the change, wrong after it, changed on an ignore pixel.
CHANGE_COLOURS = {"correct after change": (0, 190, 0), "wrong after change": (225, 30, 30),
                  "changed, not scored (ignore)": (80, 120, 255)}  # fmt: skip


def check_inspect_config(cfg: DictConfig) -> None:
    """``per_image`` a boolean, ``save_overlays`` an integer >= 0 (absent keys: off).

    Raises:
        ConfigError: naming the key and the value.
    """
    per_image = cfg.get("per_image", False)
    if not isinstance(per_image, bool):
        raise ConfigError(f"per_image must be true or false, got {per_image!r}")
    n = cfg.get("save_overlays", 0)
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(
            f"save_overlays must be a number of images >= 0 (0: none), got {n!r}; e.g. save_overlays=8 writes the "
            "first 8 images and the 8 that the rules change most"
        )


def rule_details(rule: PredictionRule, probs: Tensor) -> tuple[Tensor, RankSEGDetails | None]:
    """``rule(probs)``, and for a :class:`~rankseg.predict.RankSEGRule` the tau and cutoff it chose
    (:func:`rankseg.rankseg_details` with the rule's settings; the prediction is the rule's own)."""
    if not isinstance(rule, RankSEGRule):
        return rule(probs), None
    seg = rule.segmenter
    pred, info = rankseg_details(
        probs.float(),
        metric=seg.metric,
        smooth=seg.smooth,
        output_mode=seg.output_mode,
        solver=seg.solver,
        pruning_prob=seg.pruning_prob,
        **seg.solver_params,
    )
    return (pred.bool() if rule.output_mode == "multilabel" else pred.long()), info


def expected_scores(probs: Tensor, pred: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`rankseg.expected_metric` of ``pred``, Dice and IoU (smooth 0), computed for the non-empty masks only.

    An empty mask expects exactly 0 by the function's convention, and most (image, class) rows of a dataset with
    many classes are empty, while the expectation of a row of small probabilities is the costly kind (node by
    node), so the rows are gathered first. Each row's value depends on its own probabilities only; the
    quadrature's series length depends on the rows scored together, so values may differ from a call on the
    whole batch in the last digits (about 1e-15).

    Shape:
        - probs: (B, C, *S); pred: label map (B, *S) or masks (B, C, *S)
        - outputs: (B, C) float64 each, on ``probs``' device
    """
    n_img, n_cls = probs.shape[:2]
    if pred.dim() == probs.dim():
        masks = pred.bool()
    else:
        classes = torch.arange(n_cls, device=pred.device).view(1, -1, *([1] * (pred.dim() - 1)))
        masks = pred.unsqueeze(1) == classes
    rows_p, rows_m = probs.reshape(n_img * n_cls, 1, -1), masks.reshape(n_img * n_cls, 1, -1)
    keep = rows_m.flatten(1).any(1).nonzero().squeeze(1)
    out = torch.zeros(2, n_img * n_cls, dtype=torch.float64, device=probs.device)
    if keep.numel():
        p, m = rows_p[keep], rows_m[keep]
        for k, metric in enumerate(("dice", "iou")):
            out[k, keep] = expected_metric(p, m, metric).flatten()
    return out[0].view(n_img, n_cls), out[1].view(n_img, n_cls)


def changed_pixels(pred: Tensor, argmax: Tensor) -> Tensor:
    """Pixels whose set of predicted classes is not {argmax class}, per image.

    Shape:
        - pred: label map (B, *S) or masks (B, C, *S); argmax: (B, *S)
        - output: (B,) int64
    """
    if pred.dim() == argmax.dim():
        diff = pred != argmax
    else:
        classes = torch.arange(pred.shape[1], device=pred.device).view(1, -1, *([1] * (argmax.dim() - 1)))
        diff = (pred != (argmax.unsqueeze(1) == classes)).any(1)
    return diff.flatten(1).sum(1)


def select_overlays(scores: Tensor, n: int) -> tuple[list[int], list[int]]:
    """``(first, most_changed)``: the first ``n`` image indices, and the ``n`` others with the largest positive
    score (ties: lower index first).

    Shape:
        scores: (num_images, 2) rows of (image index, changed pixels).
    """
    if n <= 0 or scores.numel() == 0:
        return [], []
    rows = sorted((int(i), float(s)) for i, s in scores.tolist())
    first = [i for i, _ in rows[:n]]
    rest = sorted(((-s, i) for i, s in rows[n:] if s > 0))
    return first, [i for _, i in rest[:n]]


class Inspector:
    """Collects, during the evaluation pass, what ``per_image.csv`` and the overlays need (module docstring).

    The evaluation calls :meth:`predict` instead of ``rule(probs)`` (same prediction), :meth:`gather` on every
    process after the pass and :meth:`write` on the main process after ``metrics.json``. With ``per_image`` and
    ``save_overlays`` off, :meth:`predict` is ``rule(probs)`` and the rest only keeps an existing
    ``per_image.csv`` consistent with ``metrics.json``.
    """

    def __init__(self, cfg: DictConfig, rules: Mapping[str, PredictionRule], dataset: Any, num_classes: int) -> None:
        self.per_image = bool(cfg.get("per_image", False))
        self.num_overlays = int(cfg.get("save_overlays") or 0)
        self.rules = dict(rules)
        self.dataset, self.num_classes, self.cfg = dataset, num_classes, cfg
        self.detailed = [n for n, r in self.rules.items() if self.per_image and isinstance(r, RankSEGRule)]
        others = [n for n, r in self.rules.items() if not isinstance(r, ArgmaxRule)]
        self.shown = others  # rule panels of the overlays
        ranked = [n for n in others if isinstance(self.rules[n], RankSEGRule)] + others
        self.change_rule = ranked[0] if ranked else None
        self._indices: list[int] = []
        self._details: dict[str, list[Tensor]] = {name: [] for name in self.detailed}
        self._batch: tuple[int, ...] | None = None
        self._argmax: Tensor | None = None
        self._pending: dict[str, Tensor] = {}
        self._scores: list[Tensor] = []
        self._candidates: dict[int, float] = {}  # image index -> changed pixels
        self._cache: dict[int, dict[str, Tensor]] = {}
        # after gather(): every process's records, in dataset order
        self._all_indices: list[int] = []
        self._all_details: dict[str, Tensor] = {}
        self._overlays: tuple[list[int], list[int], dict[int, dict[str, Tensor]]] = ([], [], {})

    @property
    def enabled(self) -> bool:
        return self.per_image or self.num_overlays > 0

    def predict(self, name: str, rule: PredictionRule, probs: Tensor, indices: Sequence[int]) -> Tensor:
        """``rule(probs)`` for the images ``indices`` of the val split, recording what the outputs need."""
        if not self.enabled:
            return rule(probs)
        key = tuple(int(i) for i in indices)
        if key != self._batch:
            self._close_batch()
            self._batch = key
            self._indices += key
            if self.num_overlays:
                self._argmax = probs.argmax(1)
        pred, info = rule_details(rule, probs) if name in self._details else (rule(probs), None)
        if info is not None:
            index = torch.tensor(key, dtype=torch.float64, device=probs.device).view(-1, 1)
            expected = expected_scores(probs, pred)
            self._details[name].append(torch.cat([index, info.tau.double(), info.cutoff.double(), *expected], 1))
        if self.num_overlays:
            self._pending[name] = pred
        return pred

    def _close_batch(self) -> None:
        """Score the finished batch's images and keep the predictions of those that may be drawn: the N smallest
        indices and the 2N largest scores seen so far (enough for any split of the images over processes)."""
        if not self._pending or self._batch is None or self._argmax is None:
            return
        argmax = self._argmax
        changed = [changed_pixels(p, argmax) for n, p in self._pending.items() if n in self.shown]
        score = torch.stack(changed, 1).amax(1) if changed else torch.zeros(len(self._batch), device=argmax.device)
        score = score.double().cpu()
        index = torch.tensor(self._batch, dtype=torch.float64)
        self._scores.append(torch.stack([index, score], 1))
        pool = dict(self._candidates)
        pool.update(zip(self._batch, score.tolist(), strict=True))
        n = self.num_overlays
        keep = set(sorted(pool)[:n]) | {i for _, i in sorted((-s, i) for i, s in pool.items() if s > 0)[: 2 * n]}
        for j, i in enumerate(self._batch):
            if i in keep:
                self._cache[i] = {"argmax": argmax[j].cpu(), **{k: p[j].cpu() for k, p in self._pending.items()}}
        self._candidates = {i: s for i, s in pool.items() if i in keep}
        self._cache = {i: v for i, v in self._cache.items() if i in keep}
        self._pending, self._argmax = {}, None

    def gather(self, info: DistInfo, device: torch.device) -> None:
        """Collect every process's records (collective: call on every process after the pass)."""
        if not self.enabled:
            return
        self._close_batch()
        width = 1 + 4 * self.num_classes
        for name in self.detailed:
            parts = self._details[name]
            rows = torch.cat(parts) if parts else torch.zeros(0, width, dtype=torch.float64)
            rows = gather_rows(rows.to(device), info).cpu()
            self._all_details[name] = rows[rows[:, 0].argsort(stable=True)]
        index = torch.tensor(self._indices, dtype=torch.int64).view(-1, 1)
        self._all_indices = gather_rows(index.to(device), info).cpu().flatten().sort().values.tolist()
        if not self.num_overlays:
            return
        scores = torch.cat(self._scores) if self._scores else torch.zeros(0, 2, dtype=torch.float64)
        first, top = select_overlays(gather_rows(scores.to(device), info).cpu(), self.num_overlays)
        chosen = {i: self._cache[i] for i in first + top if i in self._cache}
        if info.distributed:
            import torch.distributed as dist

            parts: list[Any] = [None] * info.world_size
            dist.all_gather_object(parts, chosen)
            chosen = {i: v for part in parts for i, v in part.items()}
        self._overlays = (first, top, chosen)

    def write(self, out_dir: Path, header: Mapping[str, Any], counts: Mapping[str, tuple[Tensor, Tensor, Tensor]]):
        """Write ``per_image.csv`` (merged), the plots and the overlays of this evaluation into ``out_dir``."""
        path = out_dir / PER_IMAGE_FILE
        eval_id = identity_digest(
            {"weights_sha256": header["weights_sha256"], "eval_settings": header["eval_settings"]}
        )[:16]
        if self.per_image:
            rows = self._rows(counts, eval_id)
            merge_per_image(path, rows, list(counts), eval_id)
            plots = plot_expected_vs_realised(path, out_dir / PLOT_DIR, rules=self.detailed)
            shown = f" and {len(plots)} plot(s) in {out_dir / PLOT_DIR}" if plots else ""
            console.echo(f"wrote {path} ({len(rows)} rows from this evaluation){shown}")
        elif path.is_file():
            merge_per_image(path, [], list(counts), eval_id)  # rows of rules evaluated now are stale
        if self.num_overlays:
            self._write_overlays(out_dir / OVERLAY_DIR, header)

    def _image_ids(self, indices: Iterable[int]) -> list[str]:
        samples = getattr(self.dataset, "samples", None)
        out = []
        for i in indices:
            try:
                out.append(Path(samples[i][0]).stem if samples is not None else str(i))
            except (IndexError, TypeError, KeyError):
                out.append(str(i))
        return out

    def _rows(self, counts: Mapping[str, tuple[Tensor, Tensor, Tensor]], eval_id: str) -> list[list[Any]]:
        indices = self._all_indices
        ids = self._image_ids(indices)
        class_names = [str(n) for n in self.cfg.dataset.class_names]
        rows: list[list[Any]] = []
        for rule, (tp, fp, fn) in counts.items():
            dice, iou = scores_from_stats(tp, fp, fn)
            pred_size, true_size = (tp + fp).tolist(), (tp + fn).tolist()
            extra = self._all_details.get(rule)
            same = tp.shape[0] == len(indices) and (
                extra is None or torch.equal(extra[:, 0].long(), torch.tensor(indices, dtype=torch.int64))
            )
            if not same:
                raise RuntimeError(f"per-image records of {rule!r} do not match the evaluated images")
            c = self.num_classes
            dl, il = dice.tolist(), iou.tolist()
            ex = None if extra is None else extra[:, 1:].tolist()
            for k, (index, image) in enumerate(zip(indices, ids, strict=True)):
                for j, name in enumerate(class_names):
                    row = [rule, index, image, name, dl[k][j], il[k][j], pred_size[k][j], true_size[k][j]]
                    if ex is None:
                        row += [None] * 4
                    else:
                        e = ex[k]
                        row += [int(e[j]), e[c + j], e[2 * c + j], e[3 * c + j]]
                    rows.append(row + [eval_id])
        return rows

    def _write_overlays(self, folder: Path, header: Mapping[str, Any]) -> None:
        first, top, chosen = self._overlays
        cfg = self.cfg
        palette_choice = cfg.get("palette", "auto")
        if OmegaConf.is_config(palette_choice):
            palette_choice = OmegaConf.to_container(palette_choice)
        _, palette = palette_for(palette_choice, str(cfg.dataset.name), self.num_classes)
        coi = cfg.dataset.get("classes_of_interest")
        coi = None if coi is None or coi == "all" else [int(k) for k in coi]
        mean, std = getattr(self.dataset, "mean", None), getattr(self.dataset, "std", None)
        settings = header["eval_settings"]
        written = set()
        for index in first + top:
            if index not in chosen:
                continue
            image, target = self.dataset[index]
            store = chosen[index]
            grid = overlay_grid(
                denormalise(image, mean, std),
                target,
                store["argmax"],
                {name: store[name] for name in self.shown},
                self.change_rule,
                [str(n) for n in cfg.dataset.class_names],
                palette,
                ignore_index=int(settings["ignore_index"]),
                reference_ignore=bool(settings["reference_ignore"]),
                classes_of_interest=coi,
            )
            name = f"{index:05d}_{_slug(self._image_ids([index])[0])}.png"
            write_png(folder / name, grid)
            written.add(name)
        for old in folder.glob("*.png") if folder.is_dir() else []:
            if old.name not in written:
                old.unlink(missing_ok=True)  # overlays of an earlier evaluation
        console.echo(
            f"wrote {len(written)} overlays to {folder} (the first {len(first)} images and {len(top)} changed most)"
        )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("._") or "image"


# --- per_image.csv -----------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)  # repr: the shortest text that reads back exactly
    return str(value)


def merge_per_image(path: Path, rows: Sequence[Sequence[Any]], rules: Iterable[str], eval_id: str) -> int:
    """Replace the rows of ``rules`` in ``path`` by ``rows`` (``COLUMNS`` order); rows of other rules stay only
    if their ``eval_id`` is this one (same weights and evaluation settings), as in ``metrics.json``.

    Holds the file lock of ``path``; the file is replaced atomically. Returns the number of rows written.
    """
    evaluated = set(rules)
    with file_lock(path):
        kept: list[list[str]] = []
        dropped: set[str] = set()
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                head = next(reader, None)
                if head == COLUMNS:
                    for row in reader:
                        if len(row) != len(COLUMNS) or row[0] in evaluated:
                            continue
                        if row[-1] == eval_id:
                            kept.append(row)
                        else:
                            dropped.add(row[0])
                else:
                    dropped.add(f"everything (unknown header {head})")
        if dropped:
            console.echo(
                f"dropped {', '.join(sorted(dropped))} from {path}: computed from other weights or with other "
                "evaluation settings than this evaluation"
            )
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(kept)
        writer.writerows([_cell(v) for v in row] for row in rows)
        atomic_write_text(path, buf.getvalue())
    return len(kept) + len(rows)


def plot_expected_vs_realised(
    csv_path: Path, out_dir: Path | None = None, rules: Iterable[str] | None = None
) -> list[Path]:
    """One scatter plot per rule of ``per_image.csv`` with expected scores: the expected Dice (IoU) under the
    model's probabilities against the realised one, one point per (image, class) whose realised score is
    defined, coloured by class, with the diagonal.

    Args:
        csv_path: a ``per_image.csv``.
        out_dir: where ``expected_vs_realised_{rule}.png`` go (default: ``plots/`` beside the CSV).
        rules: the rules to plot (default: every rule with expected scores).

    Returns:
        The files written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(csv_path).parent / PLOT_DIR if out_dir is None else Path(out_dir)
    wanted = None if rules is None else set(rules)
    points: dict[str, dict[str, list[tuple[float, ...]]]] = {}
    classes: dict[str, None] = {}  # every class in file order (the CSV's class order), for stable colours
    with Path(csv_path).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            classes.setdefault(row["class"])
            if (wanted is not None and row["rule"] not in wanted) or not row["expected_dice"]:
                continue
            by_class = points.setdefault(row["rule"], {})
            if row["dice"]:  # realised score defined
                values = tuple(float(row[k]) for k in ("expected_dice", "dice", "expected_iou", "iou"))
                by_class.setdefault(row["class"], []).append(values)
    colours = dict(zip(classes, _class_colours(len(classes)), strict=True))
    written = []
    for rule, by_class in points.items():
        fig = Figure(figsize=(10, 4.8), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        for ax, (x, y, what) in zip(axes, ((0, 1, "Dice"), (2, 3, "IoU")), strict=True):
            ex_all, re_all = [], []
            for cls in (c for c in classes if c in by_class):
                pts, colour = by_class[cls], colours[cls]
                ex, real = [p[x] for p in pts], [p[y] for p in pts]
                ax.scatter(ex, real, s=10, alpha=0.6, color=colour, label=cls, edgecolors="none")
                ex_all += ex
                re_all += real
            ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
            ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel=f"expected {what} (model's probabilities)")
            ax.set_ylabel(f"realised {what}")
            means = f"mean expected {np.mean(ex_all):.3f}, realised {np.mean(re_all):.3f}" if ex_all else "no points"
            ax.set_title(f"{what}: {means} (n={len(ex_all)})", fontsize=9)
        axes[1].legend(loc="lower right", fontsize=7, markerscale=1.5, framealpha=0.8)
        fig.suptitle(f"{rule}: expected vs realised, per image and class ({Path(csv_path).parent.name})", fontsize=10)
        fig.tight_layout()
        target = out_dir / f"expected_vs_realised_{_slug(rule)}.png"
        atomic_write(target, lambda tmp, fig=fig: fig.savefig(tmp, format="png"))
        written.append(target)
    return written


def _class_colours(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(k % cmap.N) for k in range(n)]


# --- overlays -------------------------------------------------------------------------------------------------
def denormalise(image: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """A dataset image (3, H, W), normalised as ``(x / 255 - mean) / std``, back to (H, W, 3) uint8 RGB; without
    mean and std the values are stretched to 0-255."""
    x = image.detach().float().cpu()
    if mean is not None and std is not None:
        x = (x * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)) * 255
    else:
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12) * 255
    return x.clamp(0, 255).round().byte().permute(1, 2, 0).contiguous().numpy()


def panel_shape(height: int, width: int, size: int = PANEL_SIZE) -> tuple[int, int]:
    """``(height, width)`` of every panel of an image of this size: its longer side scaled to ``size``."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _colour_prediction(image: np.ndarray, pred: np.ndarray, colours: np.ndarray, num_classes: int) -> np.ndarray:
    """The image with a label map (H, W), or masks (C, H, W) in the mean colour of their classes, blended in."""
    if pred.ndim == 2:
        covered = (pred >= 0) & (pred < num_classes)
        colour = colours[np.where(covered, pred, 0)]
    else:
        count = pred.sum(0)
        colour = (
            np.einsum("chw,cd->hwd", pred.astype(np.float32), colours[:num_classes]) / np.maximum(count, 1)[..., None]
        )
        covered = count > 0
    return blend_overlay(image, colour, covered, ALPHA)


def _correct(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels whose predicted classes are exactly {true class}. Shape: (H, W) or (C, H, W), (H, W) -> (H, W)."""
    if pred.ndim == 2:
        return pred == target
    truth = np.clip(target, 0, num_classes - 1)
    hit = np.take_along_axis(pred, truth[None], 0)[0]
    return hit & (pred.sum(0) == 1) & (target < num_classes)


def _font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def overlay_grid(
    image: np.ndarray,
    target: Tensor,
    argmax: Tensor,
    preds: Mapping[str, Tensor],
    change_rule: str | None,
    class_names: Sequence[str],
    palette: Sequence[int],
    ignore_index: int = 255,
    reference_ignore: bool = False,
    classes_of_interest: Sequence[int] | None = None,
    size: int = PANEL_SIZE,
) -> np.ndarray:
    """One image's panels side by side: image | ground truth | argmax | each of ``preds`` | the pixels
    ``change_rule`` changed from the argmax (if given), each ``panel_shape`` large under a title line, and a
    legend of class colours (and change colours) below.

    Args:
        image: (H, W, 3) uint8 RGB.
        target: (H, W) ground truth.
        argmax: (H, W) label map of the most probable class.
        preds: rule name -> label map (H, W) or masks (C, H, W).
        change_rule: the rule of ``preds`` whose changes are drawn, or None for no change panel.
        palette: flat 768-entry RGB palette (:func:`rankseg.engine.image_files.palette_for`).

    Returns:
        (TITLE_HEIGHT + panel height + legend height, panels x panel width, 3) uint8.
    """
    num_classes = len(class_names)
    colours = np.asarray(palette, dtype=np.float32).reshape(256, 3)
    tgt = target.cpu().numpy().astype(np.int64)
    coi = list(range(num_classes)) if classes_of_interest is None else list(classes_of_interest)

    def mdice(pred: Tensor) -> str:
        dice = per_image_scores(pred.unsqueeze(0).cpu(), target.unsqueeze(0).cpu().long(), num_classes,
                                ignore_index, reference_ignore)[0][0, coi]  # fmt: skip
        value = float(torch.nanmean(dice)) if bool((~torch.isnan(dice)).any()) else math.nan
        return "mDice -" if math.isnan(value) else f"mDice {value:.3f}"

    panels = [("image", image), ("ground truth", _colour_prediction(image, tgt, colours, num_classes))]
    panels.append((f"argmax  {mdice(argmax)}", _colour_prediction(image, argmax.cpu().numpy(), colours, num_classes)))
    for name, pred in preds.items():
        panels.append((f"{name}  {mdice(pred)}", _colour_prediction(image, pred.cpu().numpy(), colours, num_classes)))
    if change_rule is not None:
        pred = preds[change_rule].cpu().numpy()
        am = argmax.cpu().numpy()
        changed = (
            (pred != am) if pred.ndim == 2 else (pred != (am[None] == np.arange(pred.shape[0])[:, None, None])).any(0)
        )
        scored = np.ones_like(changed) if reference_ignore else tgt != ignore_index
        good = changed & scored & _correct(pred, tgt, num_classes)
        bad = changed & scored & ~good
        grey = image.mean(2, keepdims=True).repeat(3, 2) * 0.45 + 40
        out = grey.astype(np.float32)
        for mask, colour in zip((good, bad, changed & ~scored), CHANGE_COLOURS.values(), strict=True):
            out[mask] = colour
        title = f"{change_rule} vs argmax: {int(good.sum())} correct, {int(bad.sum())} wrong"
        panels.append((title, np.clip(out, 0, 255).astype(np.uint8)))

    ph, pw = panel_shape(*image.shape[:2], size=size)
    resample = Image.Resampling.NEAREST if ph >= image.shape[0] else Image.Resampling.BOX
    font = _font()
    legend = [(tuple(int(v) for v in colours[k]), str(n)) for k, n in enumerate(class_names)]
    if change_rule is not None:
        legend += [(c, name) for name, c in CHANGE_COLOURS.items()]
    width = pw * len(panels)
    lines = _legend_lines(legend, width, font)
    canvas = Image.new("RGB", (width, TITLE_HEIGHT + ph + LEGEND_LINE * len(lines) + 6), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, (title, array) in enumerate(panels):
        canvas.paste(Image.fromarray(array).resize((pw, ph), resample), (k * pw, TITLE_HEIGHT))
        draw.text((k * pw + 4, 4), _fit(title, pw - 8, font), fill=(0, 0, 0), font=font)
    for row, items in enumerate(lines):
        y = TITLE_HEIGHT + ph + 3 + row * LEGEND_LINE
        for x, colour, label in items:
            draw.rectangle((x, y + 2, x + 12, y + 14), fill=colour, outline=(0, 0, 0))
            draw.text((x + 16, y + 1), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def _fit(text: str, width: int, font: Any) -> str:
    while text and font.getlength(text) > width:
        text = text[:-1]
    return text


def _legend_lines(items: Sequence[tuple[tuple[int, ...], str]], width: int, font: Any) -> list[list[Any]]:
    """Legend entries (swatch, label) placed left to right, wrapped at ``width``: per line (x, colour, label)."""
    lines: list[list[Any]] = [[]]
    x = 4
    for colour, label in items:
        step = 16 + int(font.getlength(label)) + 14
        if lines[-1] and x + step > width:
            lines.append([])
            x = 4
        lines[-1].append((x, colour, label))
        x += step
    return lines
