"""Cityscapes fine annotations, 19 train classes (protocol §6).

Layout (the official ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``)::

    ROOT/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from rankseg.data.base import IGNORE_INDEX, SegmentationDataset, list_dir
from rankseg.data.rma_transforms import rma_augmentation

#: ImageNet statistics of 0-1 RGB, with which RankSEG-RMA normalises every RGB dataset.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["CITYSCAPES_ID_TO_TRAINID", "CityscapesSegmentation", "cityscapes_label_lut"]

#: labelId -> trainId of the 19 evaluated classes; every other labelId maps to 255.
CITYSCAPES_ID_TO_TRAINID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"


def cityscapes_label_lut() -> np.ndarray:
    """A 256-entry uint8 lookup table labelId -> trainId (255 for ignored ids, -1 stored as 255)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        lut[label_id] = train_id
    return lut


class CityscapesSegmentation(SegmentationDataset):
    """Cityscapes ``gtFine`` semantic segmentation with the 19 train ids.

    Splits: ``train`` (2975 images), ``val`` (500; the paper's tables), ``test`` (labels are
    all ignore). See :class:`~rankseg.data.base.SegmentationDataset` for the other arguments.

    Args:
        augmentation: ``"rankseg"`` (the JMLR protocol, default) or ``"rma"`` (RankSEG-RMA's: scale 0.5-2, flip,
            centred padding, crop; :mod:`rankseg.data.rma_transforms`).
        scale_range: random scale range of ``augmentation="rma"``.
        crop_hw: (height, width) of the ``"rma"`` training crop (RankSEG-RMA: 512 x 1024); None: the square
            ``crop_size``.
        imagenet_normalization: normalise with ImageNet's mean and std (RankSEG-RMA) instead of the JMLR
            reference's Cityscapes statistics; set it for train and val alike.
    """

    CLASS_NAMES: ClassVar[tuple[str, ...]] = (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
        "motorcycle", "bicycle",
    )  # fmt: skip
    CLASSES_OF_INTEREST: ClassVar[tuple[int, ...]] = tuple(range(19))
    MEAN: ClassVar[tuple[float, float, float]] = (0.28689529, 0.32513294, 0.28389176)
    STD: ClassVar[tuple[float, float, float]] = (0.17613647, 0.18099176, 0.17772235)
    LAYOUT: ClassVar[str] = (
        "ROOT/leftImg8bit/{split}/<city>/*_leftImg8bit.png and "
        "ROOT/gtFine/{split}/<city>/*_gtFine_labelIds.png (the same cities in both trees)"
    )
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    REMOVE_SAMPLE: ClassVar[str] = "delete the image and its label (the split is the directory listing)"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        crop_size: int | None = None,
        train: bool = False,
        augmentation: str = "rankseg",
        scale_range: Sequence[float] = (0.5, 2.0),
        crop_hw: Sequence[int] | None = None,
        imagenet_normalization: bool = False,
        **kwargs,
    ) -> None:
        if imagenet_normalization:  # instance attributes, read by the transforms built in super().__init__
            self.MEAN, self.STD = IMAGENET_MEAN, IMAGENET_STD  # type: ignore[misc]
        super().__init__(root, split, crop_size, train, **kwargs)
        self.augmentation = rma_augmentation(self, augmentation, scale_range, crop_hw)

    _LUT: ClassVar[np.ndarray] = cityscapes_label_lut()

    def _find_samples(self) -> list[tuple[Path, Path]]:
        image_dir = self.root / "leftImg8bit" / self.split
        label_dir = self.root / "gtFine" / self.split
        for d in (image_dir, label_dir):
            if not d.is_dir():
                raise self.layout_error(d, "missing directory")
        image_cities = sorted(p.name for p in image_dir.iterdir() if p.is_dir())
        label_cities = sorted(p.name for p in label_dir.iterdir() if p.is_dir())
        if not image_cities:
            raise self.layout_error(image_dir, "no city directories")
        if image_cities != label_cities:
            raise self.layout_error(
                label_dir, f"city lists differ: leftImg8bit has {image_cities}, gtFine has {label_cities}"
            )
        samples = []
        for city in image_cities:
            for image_path in list_dir(image_dir / city, f"*{_IMAGE_SUFFIX}"):
                stem = image_path.name[: -len(_IMAGE_SUFFIX)]
                label_path = label_dir / city / f"{stem}{_LABEL_SUFFIX}"
                if not label_path.is_file():
                    raise self.layout_error(label_path, f"missing label for {image_path.name}")
                samples.append((image_path, label_path))
        return samples

    def _read_label(self, path: Path) -> np.ndarray:
        with Image.open(path) as im:
            ids = np.asarray(im)
        if ids.ndim != 2:
            raise self.layout_error(path, f"labelIds image must be single-channel, got shape {ids.shape}")
        if ids.dtype != np.uint8:
            # Defensive: a 16-bit re-save of labelIds; ids outside 0..255 are not Cityscapes ids.
            ids = np.where((ids >= 0) & (ids < 256), ids, IGNORE_INDEX).astype(np.uint8)
        return self._LUT[ids]
