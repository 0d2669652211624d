"""The RankSEG-RMA training augmentation for RGB datasets (ADE20K, VOC with SBD, Cityscapes in their code).

``exp/datas/datasets/base_dataset.py`` of ZixunWang/RankSEG-RMA trains with: random scale in [0.5, 2]
(image bilinear, label nearest), horizontal flip with p = 0.5, padding to the crop size split evenly on both sides
(image with the mean colour, label with the ignore index), random crop, normalisation. No rotation, unlike the
RankSEG (JMLR) protocol of :func:`rankseg.data.transforms.build_train_transform`. Datasets that offer it take
``augmentation="rma"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from rankseg.data.transforms import _check_crop_size, _normalize  # noqa: E402

if TYPE_CHECKING:
    from rankseg.data.base import SegmentationDataset

__all__ = ["AUGMENTATIONS", "build_rma_train_transform", "rma_augmentation"]

#: ``rankseg``: rotation, top-left padding, crop, flip (the JMLR protocol); ``rma``: this module's.
AUGMENTATIONS: tuple[str, ...] = ("rankseg", "rma")


def build_rma_train_transform(
    crop_size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    scale_range: Sequence[float] = (0.5, 2.0),
    ignore_index: int = 255,
) -> A.Compose:
    """RankSEG-RMA's training augmentation of RGB images.

    Args:
        crop_size: side of the square random crop, or its (height, width) (Cityscapes: 512 x 1024).
        mean: per-channel mean of 0-1 RGB; also the colour of padded pixels (0 after normalisation).
        std: per-channel standard deviation of 0-1 RGB.
        scale_range: the random scale factor is drawn uniformly from this range.
        ignore_index: label of padded pixels.

    Returns:
        An ``albumentations.Compose`` taking ``image=`` (H, W, 3) uint8 and ``mask=`` (H, W) uint8.
    """
    height, width = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    for side in (height, width):
        _check_crop_size(side)
    lo, hi = float(scale_range[0]), float(scale_range[1])
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {tuple(scale_range)}")
    return A.Compose(
        [
            A.RandomScale(
                scale_limit=(lo - 1.0, hi - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            ),
            A.HorizontalFlip(p=0.5),
            A.PadIfNeeded(
                min_height=height,
                min_width=width,
                position="center",
                border_mode=cv2.BORDER_CONSTANT,
                fill=tuple(255.0 * float(m) for m in mean),
                fill_mask=ignore_index,
            ),
            A.RandomCrop(height=height, width=width),
            _normalize(mean, std),
        ]
    )


def rma_augmentation(
    dataset: SegmentationDataset,
    augmentation: str,
    scale_range: Sequence[float],
    crop_hw: Sequence[int] | None = None,
) -> str:
    """Give a training ``dataset`` RankSEG-RMA's augmentation when ``augmentation == "rma"`` (crop
    ``crop_hw`` = (height, width) if given, else the dataset's square ``crop_size``); returns the name."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    if crop_hw is not None and augmentation != "rma":
        raise ValueError(f"crop_hw {tuple(crop_hw)} is a crop of augmentation='rma', got augmentation={augmentation!r}")
    if dataset.train and augmentation == "rma":
        crop = dataset.crop_size if crop_hw is None else tuple(int(v) for v in crop_hw)
        dataset.transform = build_rma_train_transform(
            crop, dataset.MEAN, dataset.STD, scale_range=scale_range, ignore_index=dataset.IGNORE_INDEX
        )
    return augmentation
