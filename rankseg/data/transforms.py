"""Albumentations pipelines for the paper's train and evaluation geometry (protocol §2-3).

Train (``base_dataset.py`` of the reference code, the steps that actually run):
random rotation in [-10, 10] degrees, pad bottom/right up to the crop size, random crop,
horizontal flip with p = 0.5. Evaluation: resize the shorter side to the crop size (image
bilinear, label nearest), then centre-crop a square; ``geometry="full"`` for native
resolution; ``geometry="reference"`` for the reference tester's own rounding
(:class:`ReferenceEvalTransform`). Both end with ``Normalize(mean, std)`` on 0-255 pixels.

The pipelines operate on ``image`` (H, W, 3) uint8 RGB and ``mask`` (H, W) uint8 and return
float32 (H, W, 3) and uint8 (H, W); :class:`rankseg.data.base.SegmentationDataset` converts
to tensors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

__all__ = [
    "EVAL_GEOMETRIES",
    "EvalGeometry",
    "ReferenceEvalTransform",
    "build_eval_transform",
    "build_train_transform",
]

EvalGeometry = Literal["crop", "full", "reference"]
EVAL_GEOMETRIES: tuple[str, ...] = ("crop", "full", "reference")


def build_train_transform(
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    rotate_limit: float = 10.0,
    ignore_index: int = 255,
    reference_quirks: bool = False,
) -> A.Compose:
    """Training augmentation of the protocol.

    Args:
        crop_size: side of the square random crop.
        mean: per-channel mean of 0-1 RGB, used for normalisation.
        std: per-channel standard deviation of 0-1 RGB.
        rotate_limit: rotation angle is drawn uniformly from [-rotate_limit, rotate_limit] degrees
            (the reference draws an integer angle; a continuous one is used here).
        ignore_index: label value given to pixels created by rotation and padding.
        reference_quirks: fill those pixels with label 0 (background, or road on Cityscapes)
            as the reference code does, instead of ``ignore_index``.

    Returns:
        An ``albumentations.Compose`` taking ``image=`` and ``mask=``.
    """
    _check_crop_size(crop_size)
    label_fill = 0 if reference_quirks else ignore_index
    return A.Compose(
        [
            # Always applied; corners outside the rotated image get zero pixels and `label_fill`.
            A.Rotate(
                limit=(-rotate_limit, rotate_limit),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=label_fill,
                crop_border=False,
                p=1.0,
            ),
            # The reference pads only bottom/right, so the image keeps its top-left anchor.
            A.PadIfNeeded(
                min_height=crop_size,
                min_width=crop_size,
                position="top_left",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=label_fill,
            ),
            A.RandomCrop(height=crop_size, width=crop_size),
            A.HorizontalFlip(p=0.5),
            _normalize(mean, std),
        ]
    )


def build_eval_transform(
    crop_size: int | None,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    geometry: EvalGeometry = "crop",
) -> A.Compose:
    """Deterministic evaluation transform.

    Args:
        crop_size: target of the shorter side and side of the centre crop (``geometry="crop"``);
            unused for ``geometry="full"``.
        mean: per-channel mean of 0-1 RGB.
        std: per-channel standard deviation of 0-1 RGB.
        geometry: ``"crop"`` = protocol geometry (shorter side -> crop_size, centre crop
            crop_size x crop_size); ``"full"`` = native resolution, no resize or crop (images of
            different sizes then need ``batch_size=1`` or a custom collate).

    Returns:
        An ``albumentations.Compose`` taking ``image=`` and ``mask=``.
    """
    if geometry not in EVAL_GEOMETRIES:
        raise ValueError(f"eval_geometry must be one of {EVAL_GEOMETRIES}, got {geometry!r}")
    if geometry == "reference":
        if crop_size is None:
            raise ValueError("eval_geometry='reference' needs a crop_size")
        _check_crop_size(crop_size)
        return ReferenceEvalTransform(crop_size, mean, std)  # type: ignore[return-value]
    steps: list[A.BasicTransform] = []
    if geometry == "crop":
        if crop_size is None:
            raise ValueError("eval_geometry='crop' needs a crop_size")
        _check_crop_size(crop_size)
        steps += [
            # INTER_NEAREST_EXACT samples pixel centres like PIL's NEAREST, which the reference
            # uses for labels; plain INTER_NEAREST would shift the label grid by half a pixel.
            A.SmallestMaxSize(
                max_size=crop_size,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
            ),
            A.CenterCrop(height=crop_size, width=crop_size),
        ]
    steps.append(_normalize(mean, std))
    return A.Compose(steps)


class ReferenceEvalTransform:
    """The reference tester's evaluation geometry step for step (``base_dataset.py``, ``_val_augmentation`` and
    ``__getitem__`` of the authors' trainer), for networks trained by it (``eval_geometry: reference``).

    It differs from ``"crop"`` in rounding only:

    * the shorter side becomes ``crop_size`` and the longer ``int(crop_size * long / short)`` (truncated);
    * the image is resized as float32 with bilinear interpolation, then cast to uint8 (truncated, not rounded);
    * the label is resized with PIL's nearest neighbour;
    * the centre crop starts at ``(size - crop_size) // 2``;
    * then ``ToTensor`` (``/ 255``) and ``Normalize(mean, std)``.

    Called like an albumentations pipeline: ``transform(image=..., mask=...)`` with (H, W, 3) uint8 and (H, W)
    uint8; returns ``{"image": (crop, crop, 3) float32, "mask": (crop, crop) uint8}``.
    """

    def __init__(self, crop_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.crop_size = int(crop_size)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, *, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        crop = self.crop_size
        h, w = mask.shape
        h, w = (crop, int(crop * w / h)) if h < w else (int(crop * h / w), crop)
        resized = cv2.resize(image.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        label = np.asarray(Image.fromarray(mask).resize((w, h), resample=Image.NEAREST))
        top, left = (h - crop) // 2, (w - crop) // 2
        pixels = resized[top : top + crop, left : left + crop].astype(np.uint8)
        label = label[top : top + crop, left : left + crop]
        normalised = (pixels.astype(np.float32) / np.float32(255.0) - self.mean) / self.std
        return {"image": normalised.astype(np.float32), "mask": np.ascontiguousarray(label)}


def _normalize(mean: Sequence[float], std: Sequence[float]) -> A.Normalize:
    return A.Normalize(
        mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), max_pixel_value=255.0
    )


def _check_crop_size(crop_size: int) -> None:
    if not isinstance(crop_size, int) or isinstance(crop_size, bool) or crop_size <= 0:
        raise ValueError(f"crop_size must be a positive int, got {crop_size!r}")
