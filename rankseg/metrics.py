"""Segmentation metrics: per-image, per-class confusion counts and the scores derived from them.

Torch-only (no Hydra, no smp), so the solver tests and notebooks can import it cheaply.

Conventions, defined here and nowhere else:

* **Ignore index** (:data:`IGNORE_INDEX`, 255): pixels whose ground truth equals it are excluded from every
  count. With ``reference_ignore=True`` they are *not* excluded and count as background for every class, which
  is what the reference code (``PS/utils/metrics.py``) does; use it only to compare with the published tables.
* **Void predictions**: label-map values outside ``[0, C)`` (e.g. the ``-1`` of the solver's
  ``unassigned_policy="void"``) mean "no class". On a pixel of class k a void prediction is a miss of k (a false
  negative) and nobody's false positive; on an ignore pixel it counts nothing, with ``reference_ignore`` too.
  Values are never clamped into a class.
* **Validation** (:func:`confusion_stats`, at the cost of one device-to-host synchronisation per call): the
  ground truth must be an integer tensor whose values are classes ``0..C-1`` or the ignore index (also with
  ``reference_ignore``), else ValueError naming the values and the images that hold them; a label-map
  prediction must have an integer dtype (not bool, not float) and per-class masks must be bool or integer
  0/1, else TypeError (float, bool label map) or ValueError (other integers). Each image's counts depend on
  its own pixels only, whatever the inputs.
* **Empty-class rule** (:func:`scores_from_stats`): a class that is empty in both prediction and ground truth
  of an image (``tp + fp + fn == 0``) scores NaN and is left out of every nanmean. It is neither 1 nor 0.
  The reference adds 1e-5 to the denominators; we do not, which changes scores by less than 1e-5 per image.

Aggregation (:func:`aggregate`) reports two conventions side by side:

* the paper's (Appendix A): per image, the nanmean over the classes of interest; then the nanmean over
  images (images whose classes of interest are all NaN drop out). Per-class columns are nanmeans over images
  and cover all classes.
* the dataset-level one (mmseg): counts summed over the whole split, one Dice/IoU per class, then the nanmean
  over the classes of interest.

and, beside them, RankSEG-RMA's per-image scores (:func:`image_scores`, ``miou_image``/``mdice_image``: the
mIoU^I of Wang & Dai, NeurIPS 2025), whose empty-class rule differs: per image, the mean over the classes
*present in the ground truth* (every class, background included; classes of interest play no part), so a class
predicted where the truth has none lowers no score. With two classes the score is the foreground's (class 1), and
1 when the image has one class only in prediction and truth together (the RMA code's ``binary`` case). Images
without a labelled pixel are NaN (the RMA code skips them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "MetricAccumulator",
    "aggregate",
    "check_target_values",
    "confusion_stats",
    "image_scores",
    "per_image_scores",
    "scores_from_stats",
]

IGNORE_INDEX = 255


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _describe(values: Tensor, bad: Tensor, limit: int = 5) -> str:
    """``"values [..] in image(s) [..]"`` for the flagged pixels; ``bad`` is (B, N) bool, ``values`` matches it."""

    def few(x: Tensor) -> str:
        items = [str(v) for v in x[:limit].tolist()]
        return "[" + ", ".join(items + ["..."] * (x.numel() > limit)) + "]"

    images = bad.any(1).nonzero().flatten()
    return f"values {few(torch.unique(values[bad]))} in image(s) {few(images)} of the batch"


def _bincount_on(flat: Tensor) -> bool:
    """Whether :func:`confusion_stats` counts with ``torch.bincount`` (CPU, twice as fast there) rather than a sized
    ``index_add_`` (other devices, where bincount synchronises to size its output)."""
    return flat.device.type == "cpu"


def _bad_target(target: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    return ((target < 0) | (target >= num_classes)) & (target != ignore_index)


def _raise_bad_target(target: Tensor, bad: Tensor, num_classes: int, ignore_index: int) -> None:
    raise ValueError(
        f"target holds {_describe(target, bad)} that are neither a class in [0, {num_classes}) nor "
        f"ignore_index={ignore_index}; map them to the ignore index, or fix num_classes"
    )


def check_target_values(target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
    """Raise :func:`confusion_stats`'s ValueError if ``target`` (B, *S) holds a value that is neither a class
    nor ``ignore_index``. Run on the loader's CPU tensor, it spares the device the synchronisation of that check.
    """
    flat = target.reshape(target.shape[0], -1).long()
    bad = _bad_target(flat, num_classes, ignore_index)
    if bool(bad.any()):
        _raise_bad_target(flat, bad, num_classes, ignore_index)


def confusion_stats(
    pred: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    reference_ignore: bool = False,
    target_checked: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Count true positives, false positives and false negatives per image and class.

    Inputs are validated (see the module docstring); the value checks cost one device-to-host synchronisation,
    none when ``target_checked`` says the caller ran :func:`check_target_values` on the target already (e.g. on
    the loader's CPU copy) and ``pred`` is bool masks or a label map. Each image's counts depend on that image's
    pixels only.

    Args:
        pred: a label map (integer dtype, shape (B, *S)) or per-class masks (bool, or integer with values 0
            and 1 only, shape (B, C, *S)); masks may overlap or leave pixels without a class (threshold and
            one-vs-rest rules). Label-map values outside [0, num_classes) are void ("no class"): on a pixel of
            class k a miss of k (a false negative), a false positive of no class.
        target: ground-truth label map, integer dtype; values in [0, num_classes) or ``ignore_index``.
        num_classes: C.
        ignore_index: ground-truth value that marks unlabelled pixels.
        reference_ignore: if True, do not mask ignored pixels: they are background for every class, so any
            class prediction there is a false positive (the reference implementation's behaviour); a void
            prediction there counts nothing.

    Returns:
        ``(tp, fp, fn)``, int64 tensors on ``target``'s device.

    Raises:
        ValueError: shapes do not match; ``target`` holds a value that is neither a class nor
            ``ignore_index``; integer masks hold a value other than 0 and 1.
        TypeError: ``target`` or a label-map ``pred`` is not of an integer dtype; masks are float.

    Shape:
        - pred: (B, *S) or (B, C, *S)
        - target: (B, *S)
        - outputs: (B, C) each
    """
    batch = target.shape[0]
    is_masks = pred.dim() == target.dim() + 1
    expected = (batch, num_classes, *target.shape[1:]) if is_masks else tuple(target.shape)
    if tuple(pred.shape) != expected:
        what = f"masks (B, C={num_classes}, *S)" if is_masks else "a label map (B, *S)"
        raise ValueError(
            f"pred must be a label map (B, *S) or masks (B, C, *S) matching target {tuple(target.shape)}; "
            f"as {what} it must have shape {expected}, got {tuple(pred.shape)}"
        )
    if not _is_integer(target.dtype):
        raise TypeError(
            f"target must be an integer label map; got {_dtype_name(target.dtype)} — convert it with .long()"
        )
    if is_masks and pred.dtype != torch.bool and not _is_integer(pred.dtype):
        raise TypeError(
            f"masks must be bool or integer 0/1; got {_dtype_name(pred.dtype)} — threshold the probabilities "
            "first, e.g. probs > 0.5, or use a prediction rule"
        )
    if not is_masks and not _is_integer(pred.dtype):
        raise TypeError(
            f"a label-map pred (B, *S) must have an integer dtype; got {_dtype_name(pred.dtype)} — take the "
            "argmax of the probabilities (probs.argmax(1)), or pass per-class masks with shape (B, C, *S)"
        )

    pixels = math.prod(target.shape[1:])
    target = target.reshape(batch, pixels).long()
    in_range = (target >= 0) & (target < num_classes)
    bad_masks = None
    if is_masks and pred.dtype != torch.bool:
        bad_masks = (pred < 0) | (pred > 1)
    if target_checked and bad_masks is None:
        flags = [False]
    else:
        bad_target = _bad_target(target, num_classes, ignore_index)
        # One host synchronisation for every check.
        flags = torch.stack([bad_target.any()] + ([] if bad_masks is None else [bad_masks.any()])).tolist()
    if flags[0]:
        _raise_bad_target(target, bad_target, num_classes, ignore_index)
    if bad_masks is not None and flags[1]:
        flat_masks, flat_bad = pred.reshape(batch, -1), bad_masks.reshape(batch, -1)
        raise ValueError(
            f"masks must be bool or integer 0/1; got {_describe(flat_masks, flat_bad)} — threshold them "
            "(e.g. masks > 0) or fix the rule that produced them"
        )

    valid = torch.ones_like(target, dtype=torch.bool) if reference_ignore else target != ignore_index
    if is_masks:
        masks = pred.reshape(batch, num_classes, pixels).bool()
        # (B, C, N) one-hot of the ground truth; ignore pixels match no class.
        classes = torch.arange(num_classes, device=target.device).view(1, -1, 1)
        truth = target.unsqueeze(1) == classes
        masks = masks & valid.unsqueeze(1)
        tp = (masks & truth).sum(-1)
        fp = (masks & ~truth).sum(-1)
        fn = (~masks & truth & valid.unsqueeze(1)).sum(-1)
        return tp, fp, fn

    labels = pred.reshape(batch, pixels).long()
    # One count over (image, true class, predicted class) gives every per-image confusion matrix at once.
    # Index C is "no class": the truth of ignore pixels, the prediction of void pixels, and both on pixels
    # that do not count. Every index is in [0, C], so image b's entries stay in its own block of size**2.
    size = num_classes + 1
    true_idx = torch.where(valid & in_range, target, num_classes)
    pred_idx = torch.where(valid & (labels >= 0) & (labels < num_classes), labels, num_classes)
    offsets = torch.arange(batch, device=target.device).view(-1, 1) * size * size
    flat = (offsets + true_idx * size + pred_idx).reshape(-1)
    if _bincount_on(flat):
        conf = torch.bincount(flat, minlength=batch * size * size)
    else:  # bincount reads the largest index back to the host on a GPU; a sized scatter does not (exact integers)
        conf = torch.zeros(batch * size * size, dtype=torch.int64, device=flat.device)
        conf = conf.index_add_(0, flat, torch.ones_like(flat))
    conf = conf.view(batch, size, size)
    tp = conf.diagonal(dim1=1, dim2=2)[:, :num_classes]
    # Class predictions on pixels whose truth is "no class" (reference_ignore) are false positives; void
    # predictions (column C) on a class pixel are false negatives of that class and nobody's false positive.
    fp = conf[:, :, :num_classes].sum(1) - tp
    fn = conf[:, :num_classes, :].sum(2) - tp
    return tp, fp, fn


def scores_from_stats(tp: Tensor, fp: Tensor, fn: Tensor) -> tuple[Tensor, Tensor]:
    """Dice and IoU from counts; NaN where the class is empty in both prediction and truth.

    Shape:
        - tp, fp, fn: any shape, identical
        - outputs: same shape, float64
    """
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    union = tp + fp + fn
    nan = torch.full_like(union, float("nan"))
    empty = union == 0
    iou = torch.where(empty, nan, tp / union.clamp_min(1))
    dice = torch.where(empty, nan, 2 * tp / (2 * tp + fp + fn).clamp_min(1))
    return dice, iou


def image_scores(tp: Tensor, fp: Tensor, fn: Tensor, binary: bool | None = None) -> tuple[Tensor, Tensor]:
    """RankSEG-RMA's per-image mDice and mIoU (the module docstring; ``exp/metrics/accuracy_metric.py`` of
    github.com/ZixunWang/RankSEG-RMA, ``valueI``).

    Args:
        tp, fp, fn: per-image counts from :func:`confusion_stats`.
        binary: score class 1 only (default: when there are two classes, as the RMA code decides).

    Returns:
        ``(dice, iou)``, float64, NaN for images without a labelled pixel.

    Shape:
        - tp, fp, fn: (B, C)
        - outputs: (B,) each
    """
    binary = tp.shape[1] == 2 if binary is None else binary
    dice, iou = scores_from_stats(tp, fp, fn)
    labelled = (tp + fn).sum(1) > 0
    if binary:
        single = ((tp + fp + fn) > 0).sum(1) < 2  # one class in prediction and truth together: a perfect image
        one = torch.ones_like(iou[:, 1])
        dice_i, iou_i = torch.where(single, one, dice[:, 1]), torch.where(single, one, iou[:, 1])
    else:
        present = (tp + fn) > 0  # present in the ground truth; such a class never scores NaN
        count = present.sum(1).clamp_min(1)
        dice_i = torch.where(present, dice, 0.0).sum(1) / count
        iou_i = torch.where(present, iou, 0.0).sum(1) / count
    nan = torch.full_like(iou_i, float("nan"))
    return torch.where(labelled, dice_i, nan), torch.where(labelled, iou_i, nan)


def per_image_scores(
    pred: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    reference_ignore: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per-image, per-class Dice and IoU (see :func:`confusion_stats` for the arguments).

    Returns:
        ``(dice, iou)``, float tensors with NaN for classes empty in both prediction and truth.

    Shape:
        - outputs: (B, C) each
    """
    return scores_from_stats(*confusion_stats(pred, target, num_classes, ignore_index, reference_ignore))


def _coi_index(num_classes: int, classes_of_interest: Sequence[int] | str | None) -> list[int]:
    if classes_of_interest is None or classes_of_interest == "all":
        return list(range(num_classes))
    return [int(k) for k in classes_of_interest]


def _group_mean(values: Tensor, groups: Sequence[int] | None) -> float:
    """Mean of the non-NaN ``values``; with ``groups`` (one id per value) the mean over groups of each group's
    mean (RMA's per-case average of CT slices), groups without a value left out."""
    if values.numel() == 0:
        return float("nan")
    if groups is None:
        return float(torch.nanmean(values))
    if len(groups) != values.numel():
        raise ValueError(f"groups has {len(groups)} ids for {values.numel()} images")
    _, inverse = torch.unique(torch.as_tensor(list(groups)), return_inverse=True)
    ok = ~torch.isnan(values)
    sums = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64).index_add_(0, inverse, values.nan_to_num(0.0))
    counts = torch.zeros_like(sums).index_add_(0, inverse, ok.double())
    return float(torch.nanmean(sums / counts))  # 0/0 = NaN: a group without a value


def aggregate(
    tp: Tensor,
    fp: Tensor,
    fn: Tensor,
    classes_of_interest: Sequence[int] | str | None = None,
    groups: Sequence[int] | None = None,
) -> dict[str, float | list[float]]:
    """Dataset scores from per-image counts, under both conventions (see the module docstring).

    Args:
        tp, fp, fn: per-image counts from :func:`confusion_stats`, concatenated over the split.
        classes_of_interest: class indices averaged into the means; ``None`` or ``"all"`` for every class.
        groups: optional group id per image (a CT slice's case): ``mdice_image``/``miou_image`` are then the mean
            over groups of each group's mean, as RankSEG-RMA scores LiTS and KiTS.

    Returns:
        ``mdice``, ``miou`` (paper: mean over images of the per-image mean over classes of interest);
        ``mdice_image``, ``miou_image`` (RankSEG-RMA's mDice^I, mIoU^I: :func:`image_scores`, mean over images);
        ``class_dice``, ``class_iou`` (per class, mean over images, all classes);
        ``dataset_dice``, ``dataset_iou`` (mmseg: from counts summed over images, mean over classes of
        interest); ``class_dataset_dice``, ``class_dataset_iou``; ``num_images``. NaN where undefined.

    Shape:
        - tp, fp, fn: (N, C)
    """
    num_classes = tp.shape[1]
    coi = _coi_index(num_classes, classes_of_interest)
    dice, iou = scores_from_stats(tp, fp, fn)
    dice_image, iou_image = image_scores(tp, fp, fn)
    total_dice, total_iou = scores_from_stats(tp.sum(0), fp.sum(0), fn.sum(0))

    def _mean(x: Tensor) -> float:
        return float(torch.nanmean(x)) if x.numel() else float("nan")

    return {
        "mdice": _mean(torch.nanmean(dice[:, coi], dim=1)),
        "miou": _mean(torch.nanmean(iou[:, coi], dim=1)),
        "mdice_image": _group_mean(dice_image, groups),
        "miou_image": _group_mean(iou_image, groups),
        "dataset_dice": _mean(total_dice[coi]),
        "dataset_iou": _mean(total_iou[coi]),
        "class_dice": torch.nanmean(dice, dim=0).tolist(),
        "class_iou": torch.nanmean(iou, dim=0).tolist(),
        "class_dataset_dice": total_dice.tolist(),
        "class_dataset_iou": total_iou.tolist(),
        "num_images": int(tp.shape[0]),
    }


class MetricAccumulator:
    """Collects per-image counts batch by batch, on the device, and aggregates them at the end.

    Args:
        num_classes: C.
        classes_of_interest: passed to :func:`aggregate`.
        ignore_index: see :func:`confusion_stats`.
        reference_ignore: see :func:`confusion_stats`.
    """

    def __init__(
        self,
        num_classes: int,
        classes_of_interest: Sequence[int] | str | None = None,
        ignore_index: int = IGNORE_INDEX,
        reference_ignore: bool = False,
    ) -> None:
        self.num_classes = num_classes
        self.classes_of_interest = classes_of_interest
        self.ignore_index = ignore_index
        self.reference_ignore = reference_ignore
        self._stats: list[tuple[Tensor, Tensor, Tensor]] = []

    def update(self, pred: Tensor, target: Tensor, target_checked: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Add one batch; returns its counts. ``target_checked``: see :func:`confusion_stats`."""
        stats = confusion_stats(
            pred, target, self.num_classes, self.ignore_index, self.reference_ignore, target_checked=target_checked
        )
        self._stats.append(stats)
        return stats

    def counts(self) -> tuple[Tensor, Tensor, Tensor]:
        """All counts so far, concatenated over images (on CPU)."""
        if not self._stats:
            empty = torch.zeros(0, self.num_classes, dtype=torch.long)
            return empty, empty, empty
        tp, fp, fn = (torch.cat([s[i] for s in self._stats]).cpu() for i in range(3))
        return tp, fp, fn

    def compute(self) -> dict[str, float | list[float]]:
        """Aggregated scores (see :func:`aggregate`)."""
        return aggregate(*self.counts(), classes_of_interest=self.classes_of_interest)
