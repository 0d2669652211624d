"""ADE20K (SceneParsing, ``ADEChallengeData2016``), 150 classes, as the RankSEG-RMA experiments use it.

Layout (the official ``ADEChallengeData2016.zip`` extracted into ROOT)::

    ROOT/ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_<8 digits>.jpg
    ROOT/ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_<8 digits>.png

ROOT may also be the ``ADEChallengeData2016`` directory itself, or the RankSEG-RMA ``data_dir``
(``ROOT/ade/ADEChallengeData2016``). Splits: ``train`` = ``training`` (20210 images), ``val`` =
``validation`` (2000, the tables).

Annotations are single-channel PNGs with values 0-150, 0 meaning "other / unlabelled". As the
RankSEG-RMA config (``reduce_zero_label: True``) and mmsegmentation do, value 0 becomes the ignore
index 255 and value ``k`` in 1-150 becomes class ``k - 1``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from rankseg.data.base import IGNORE_INDEX, SegmentationDataset, list_dir, read_index_png
from rankseg.data.rma_transforms import rma_augmentation

__all__ = ["ADE20K_CLASS_NAMES", "ADE20KSegmentation", "reduce_zero_label_lut"]

#: The 150 SceneParsing classes in label order (value k of an annotation is class k - 1); the first
#: name of each entry of the benchmark's ``objectInfo150`` list.
ADE20K_CLASS_NAMES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair",
    "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
    "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship",
    "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

_SPLIT_DIRS = {"train": "training", "val": "validation"}


def reduce_zero_label_lut() -> np.ndarray:
    """256-entry uint8 lookup table: 0 -> 255 (ignore), k -> k - 1 for k >= 1.

    Values above 150 become 150-254, which the dataset's label check reports; none becomes 255.
    """
    lut = np.arange(-1, 255, dtype=np.int64)
    lut[0] = IGNORE_INDEX
    return lut.astype(np.uint8)


class ADE20KSegmentation(SegmentationDataset):
    """ADE20K SceneParsing with annotation 0 ignored and 1-150 shifted to classes 0-149.

    Splits: ``train`` (``training``) and ``val`` (``validation``).

    Args:
        root: see the module docstring.
        split: ``"train"`` or ``"val"``.
        crop_size: see :class:`~rankseg.data.base.SegmentationDataset`.
        train: see :class:`~rankseg.data.base.SegmentationDataset`.
        augmentation: training augmentation, ``"rma"`` (RankSEG-RMA's: scale 0.5-2, flip, crop) or ``"rankseg"``
            (the base class's rotation, padding, crop, flip).
        scale_range: random scale range of ``augmentation="rma"``.
        **kwargs: forwarded to :class:`~rankseg.data.base.SegmentationDataset`.
    """

    CLASS_NAMES: ClassVar[tuple[str, ...]] = ADE20K_CLASS_NAMES
    CLASSES_OF_INTEREST: ClassVar[tuple[int, ...]] = tuple(range(150))
    # ImageNet statistics, which the RankSEG-RMA code uses for every RGB dataset (123.68/58.40 etc. on 0-255).
    MEAN: ClassVar[tuple[float, float, float]] = (0.485, 0.456, 0.406)
    STD: ClassVar[tuple[float, float, float]] = (0.229, 0.224, 0.225)
    LAYOUT: ClassVar[str] = (
        "ROOT/ADEChallengeData2016/{images/<dir>/*.jpg, annotations/<dir>/*.png} with <dir> = training "
        "(split train) or validation (split val); ROOT may also be ADEChallengeData2016 itself"
    )
    REMOVE_SAMPLE: ClassVar[str] = "delete the image and its annotation (the split is the directory listing)"

    _LUT: ClassVar[np.ndarray] = reduce_zero_label_lut()

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        crop_size: int | None = None,
        train: bool = False,
        augmentation: str = "rma",
        scale_range: Sequence[float] = (0.5, 2.0),
        **kwargs,
    ) -> None:
        super().__init__(root, split, crop_size, train, **kwargs)
        self.augmentation = rma_augmentation(self, augmentation, scale_range)

    def _base_dir(self) -> Path:
        for candidate in (self.root / "ADEChallengeData2016", self.root / "ade" / "ADEChallengeData2016", self.root):
            if (candidate / "images").is_dir():
                return candidate
        raise self.layout_error(self.root / "ADEChallengeData2016" / "images", "missing directory")

    def _find_samples(self) -> list[tuple[Path, Path]]:
        base = self._base_dir()
        image_dir = base / "images" / _SPLIT_DIRS[self.split]
        label_dir = base / "annotations" / _SPLIT_DIRS[self.split]
        for d in (image_dir, label_dir):
            if not d.is_dir():
                raise self.layout_error(d, "missing directory")
        samples = []
        for image_path in list_dir(image_dir, "*.jpg"):
            label_path = label_dir / f"{image_path.stem}.png"
            if not label_path.is_file():
                raise self.layout_error(label_path, f"missing annotation for {image_path.name}")
            samples.append((image_path, label_path))
        return samples

    def _read_label(self, path: Path) -> np.ndarray:
        return self._LUT[read_index_png(path, modes=("L", "P"))]
