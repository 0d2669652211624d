"""PASCAL VOC 2012 semantic segmentation, 21 classes (protocol §6).

Layout (``VOCtrainval_11-May-2012.tar`` extracted into ROOT)::

    ROOT/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    ROOT/VOCdevkit/VOC2012/SegmentationClass/<id>.png        palette PNG, indices 0-20, 255 = boundary
    ROOT/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt

Optional SBD augmentation (split ``train_aug``; not used by the paper)::

    ROOT/VOCdevkit/VOC2012/SegmentationClassAug/<id>.png     grey or palette PNG of indices
    ROOT/VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt

ROOT may also point at ``VOCdevkit`` or ``VOC2012`` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from rankseg.data.base import SegmentationDataset, read_index_png

__all__ = ["VOCSegmentation"]


class VOCSegmentation(SegmentationDataset):
    """PASCAL VOC 2012 with the 255 object boundary kept as ignore.

    Splits: ``train`` (1464, the paper's training set), ``val`` (1449, the tables),
    ``trainval``, and ``train_aug`` (SBD-augmented list, if present). See
    :class:`~rankseg.data.base.SegmentationDataset` for the arguments.
    """

    CLASS_NAMES: ClassVar[tuple[str, ...]] = (
        "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
        "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
        "sheep", "sofa", "train", "tvmonitor",
    )  # fmt: skip
    CLASSES_OF_INTEREST: ClassVar[tuple[int, ...]] = tuple(range(1, 21))
    MEAN: ClassVar[tuple[float, float, float]] = (0.45734706, 0.43338275, 0.40058118)
    STD: ClassVar[tuple[float, float, float]] = (0.23965294, 0.23532275, 0.2398498)
    LAYOUT: ClassVar[str] = (
        "ROOT/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png, "
        "ImageSets/Segmentation/<split>.txt} (split train_aug: SegmentationClassAug/<id>.png "
        "and ImageSets/Segmentation/train_aug.txt)"
    )
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val", "trainval", "train_aug")
    REMOVE_SAMPLE: ClassVar[str] = "remove its id from ImageSets/Segmentation/{split}.txt"

    def _base_dir(self) -> Path:
        for candidate in (self.root / "VOCdevkit" / "VOC2012", self.root / "VOC2012", self.root):
            if (candidate / "JPEGImages").is_dir():
                return candidate
        raise self.layout_error(self.root / "VOCdevkit" / "VOC2012" / "JPEGImages", "missing directory")

    def _find_samples(self) -> list[tuple[Path, Path]]:
        base = self._base_dir()
        list_file = base / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        label_dir = base / ("SegmentationClassAug" if self.split == "train_aug" else "SegmentationClass")
        if not list_file.is_file():
            raise self.layout_error(list_file, "missing split list")
        if not label_dir.is_dir():
            raise self.layout_error(label_dir, "missing directory")
        samples = []
        for line in list_file.read_text().splitlines():
            if not line.strip():
                continue
            # Plain ids ("2007_000032"); some train_aug.txt files hold "/JPEGImages/<id>.jpg <label>".
            image_id = Path(line.split()[0]).stem
            image_path = base / "JPEGImages" / f"{image_id}.jpg"
            label_path = label_dir / f"{image_id}.png"
            for p in (image_path, label_path):
                if not p.is_file():
                    raise self.layout_error(p, f"missing file listed in {list_file.name}")
            samples.append((image_path, label_path))
        return samples

    def _read_label(self, path: Path) -> np.ndarray:
        # Palette indices are the class ids; an RGB-converted label would be colours (ValueError,
        # reported with the path by the base class).
        return read_index_png(path, modes=("P", "L"))
