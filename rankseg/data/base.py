"""Common base of the segmentation datasets: file reading, transforms, tensor conversion.

A subclass only says where its (image, label) files are (``_find_samples``) and how a label
file becomes a (H, W) uint8 map of train ids (``_read_label``). Everything else (geometry,
normalisation, error messages, seeding of the augmentation in DataLoader workers) lives here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, get_worker_info

from rankseg.data.transforms import EVAL_GEOMETRIES, EvalGeometry, build_eval_transform, build_train_transform

__all__ = ["IGNORE_INDEX", "DatasetLayoutError", "SegmentationDataset", "read_index_png", "read_rgb"]

IGNORE_INDEX = 255


class DatasetLayoutError(ValueError):
    """A dataset root is missing or does not have the expected on-disk layout.

    The message names the path that was looked at, the expected layout and the config key to
    override (``dataset.root=...``). Entrypoints catch it and exit with status 2.
    """


class SegmentationDataset(Dataset):
    """Base class: items are ``(image, label)`` with the protocol's transforms applied.

    Subclasses set the class constants and implement :meth:`_find_samples` and
    :meth:`_read_label`.

    Args:
        root: dataset root directory (see the subclass for its layout).
        split: split name, e.g. ``"train"`` or ``"val"``.
        crop_size: train: side of the random crop; eval: shorter side after resizing and side
            of the centre crop. ``None`` only with ``eval_geometry="full"``.
        train: apply the training augmentation instead of the evaluation geometry.
        eval_geometry: ``"crop"`` (protocol) or ``"full"`` (native resolution); eval only.
        reference_quirks: training only; fill labels created by rotation and padding with 0 as
            the reference code does, instead of the ignore index.
        rotate_limit: maximal absolute rotation angle in degrees for training.

    Shape:
        - image: (3, H, W) float32, normalised with ``mean``/``std``.
        - label: (H, W) int64 with values in ``[0, num_classes)`` or ``ignore_index``.
    """

    CLASS_NAMES: ClassVar[tuple[str, ...]] = ()
    CLASSES_OF_INTEREST: ClassVar[tuple[int, ...]] = ()
    MEAN: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    STD: ClassVar[tuple[float, float, float]] = (0.25, 0.25, 0.25)
    IGNORE_INDEX: ClassVar[int] = IGNORE_INDEX
    #: One-line description of the expected layout, used in every DatasetLayoutError.
    LAYOUT: ClassVar[str] = ""
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val")

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        crop_size: int | None = None,
        train: bool = False,
        eval_geometry: EvalGeometry = "crop",
        reference_quirks: bool = False,
        rotate_limit: float = 10.0,
    ) -> None:
        if split not in self.SPLITS:
            raise ValueError(f"{type(self).__name__}: split must be one of {self.SPLITS}, got {split!r}")
        if eval_geometry not in EVAL_GEOMETRIES:
            raise ValueError(f"eval_geometry must be one of {EVAL_GEOMETRIES}, got {eval_geometry!r}")
        if train and crop_size is None:
            raise ValueError("train=True needs a crop_size")
        self.root = Path(os.path.expanduser(str(root)))
        self.split = split
        self.crop_size = None if crop_size is None else int(crop_size)
        self.train = bool(train)
        self.eval_geometry = eval_geometry
        self.reference_quirks = bool(reference_quirks)
        self.samples: list[tuple[Path, Path]] = self._find_samples()
        if not self.samples:
            raise self.layout_error(self.root, "no samples found")
        if self.train:
            self.transform = build_train_transform(
                self.crop_size,
                self.MEAN,
                self.STD,
                rotate_limit=rotate_limit,
                ignore_index=self.IGNORE_INDEX,
                reference_quirks=self.reference_quirks,
            )
        else:
            self.transform = build_eval_transform(self.crop_size, self.MEAN, self.STD, geometry=eval_geometry)
        self._aug_seed: int | None = None

    # --- metadata -------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Class names in train-id order."""
        return list(self.CLASS_NAMES)

    @property
    def num_classes(self) -> int:
        """Number of classes (the ignore index excluded)."""
        return len(self.CLASS_NAMES)

    @property
    def ignore_index(self) -> int:
        """Label value of pixels that belong to no class."""
        return self.IGNORE_INDEX

    @property
    def classes_of_interest(self) -> list[int]:
        """Classes averaged in the per-image mIoU/mDice (protocol §1)."""
        return list(self.CLASSES_OF_INTEREST)

    @property
    def mean(self) -> list[float]:
        """Per-channel normalisation mean (RGB, 0-1 scale)."""
        return list(self.MEAN)

    @property
    def std(self) -> list[float]:
        """Per-channel normalisation standard deviation (RGB, 0-1 scale)."""
        return list(self.STD)

    # --- subclass hooks -------------------------------------------------------------------
    def _find_samples(self) -> list[tuple[Path, Path]]:
        """Sorted (image path, label path) pairs of ``self.split``; raises DatasetLayoutError."""
        raise NotImplementedError

    def _read_label(self, path: Path) -> np.ndarray:
        """(H, W) uint8 map of train ids (ignore = 255) read from ``path``."""
        raise NotImplementedError

    def _read_image(self, path: Path) -> np.ndarray:
        return read_rgb(path)

    # --- errors ---------------------------------------------------------------------------
    def layout_error(self, path: str | os.PathLike[str], problem: str) -> DatasetLayoutError:
        """A DatasetLayoutError naming ``path``, the problem, the expected layout and the fix."""
        return DatasetLayoutError(
            f"{type(self).__name__} (split {self.split!r}): {problem} at {path}. "
            f"Expected {self.LAYOUT.replace('{split}', self.split)} with ROOT={self.root}. "
            f"Point at the dataset with dataset.root=/path/to/ROOT."
        )

    # --- Dataset protocol -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.samples[index]
        try:
            image = self._read_image(image_path)
            label = self._read_label(label_path)
        except (FileNotFoundError, UnidentifiedImageError) as e:
            raise self.layout_error(e.filename or image_path, f"unreadable or missing file ({e})") from None
        if image.shape[:2] != label.shape:
            raise self.layout_error(
                label_path,
                f"label size {label.shape} differs from image size {image.shape[:2]} of {image_path}",
            )
        if self.train:
            self._seed_augmentation()
        out = self.transform(image=image, mask=label)
        image_t = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1), dtype=np.float32))
        label_t = torch.from_numpy(out["mask"].astype(np.int64))
        return image_t, label_t

    def _seed_augmentation(self) -> None:
        # Forked DataLoader workers inherit identical copies of the Compose RNG, so every worker
        # would draw the same augmentations. Torch gives each worker its own seed (derived from
        # the torch RNG, hence reproducible under torch.manual_seed); reseed when it changes.
        info = get_worker_info()
        seed = info.seed if info is not None else torch.initial_seed()
        if seed != self._aug_seed:
            self.transform.set_random_seed(seed % 2**32)
            self._aug_seed = seed

    def __repr__(self) -> str:
        mode = "train" if self.train else f"eval/{self.eval_geometry}"
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"crop_size={self.crop_size}, mode={mode})"
        )


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_index_png(path: str | os.PathLike[str], modes: Sequence[str] = ("P", "L")) -> np.ndarray:
    """Read the raw indices of a palette ('P') or grey ('L') PNG as (H, W) uint8.

    Converting a palette PNG to RGB or L would return colours, not class indices, so the mode is
    checked and the indices are read as stored.

    Raises:
        ValueError: the image mode is not one of ``modes``.
    """
    with Image.open(path) as im:
        if im.mode not in modes:
            raise ValueError(f"{path}: label image has mode {im.mode!r}, expected one of {tuple(modes)}")
        return np.array(im, dtype=np.uint8)


def list_dir(path: Path, pattern: str) -> list[Path]:
    """Sorted files in ``path`` matching ``pattern`` (empty if ``path`` is not a directory)."""
    return sorted(p for p in path.glob(pattern) if p.is_file()) if path.is_dir() else []
