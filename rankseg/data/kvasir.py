"""Kvasir-SEG polyp segmentation, 2 classes (protocol §6).

Layout (the official ``kvasir-seg.zip``, which extracts to ``Kvasir-SEG/``)::

    ROOT/images/<name>.jpg
    ROOT/masks/<name>.jpg        JPEG masks; thresholded at 128 -> {0: background, 1: polyp}
    ROOT/splits/{train,val}.txt  written on first use (seeded, 880/120 for 1000 images)

The archive has no official split, so a seeded one is drawn once and stored next to the data;
later runs (and other machines given the same files) read it back.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from rankseg.data.base import SegmentationDataset, list_dir

__all__ = ["KVASIR_VAL_FRACTION", "KvasirSegmentation", "kvasir_split"]

log = logging.getLogger(__name__)

#: 120 of 1000 images for validation, the common Kvasir-SEG split size (protocol §6).
KVASIR_VAL_FRACTION = 0.12


def kvasir_split(
    names: Sequence[str], seed: int = 0, val_fraction: float = KVASIR_VAL_FRACTION
) -> tuple[list[str], list[str]]:
    """Deterministic seeded train/val split of image names.

    The result depends only on the set of names (they are sorted first), the seed and the
    fraction, never on directory listing order.

    Args:
        names: image names (e.g. file stems); duplicates are not allowed.
        seed: seed of the permutation.
        val_fraction: share of names for validation, rounded to the nearest count; at least one
            image goes to each side when there are two or more.

    Returns:
        ``(train, val)``, each sorted.
    """
    ordered = sorted(names)
    if len(set(ordered)) != len(ordered):
        raise ValueError("kvasir_split: duplicate names")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    n = len(ordered)
    n_val = round(n * val_fraction)
    if n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = set(perm[:n_val].tolist())
    train = [name for i, name in enumerate(ordered) if i not in val_idx]
    val = [name for i, name in enumerate(ordered) if i in val_idx]
    return train, val


class KvasirSegmentation(SegmentationDataset):
    """Kvasir-SEG with a stored seeded train/val split.

    Args:
        root: the extracted ``Kvasir-SEG`` directory.
        split: ``"train"`` or ``"val"``.
        crop_size: see :class:`~rankseg.data.base.SegmentationDataset`.
        train: see :class:`~rankseg.data.base.SegmentationDataset`.
        split_seed: seed of the split drawn when ``ROOT/splits`` does not exist yet.
        val_fraction: validation share for that split.
        **kwargs: forwarded to :class:`~rankseg.data.base.SegmentationDataset`.
    """

    CLASS_NAMES: ClassVar[tuple[str, ...]] = ("background", "polyp")
    CLASSES_OF_INTEREST: ClassVar[tuple[int, ...]] = (1,)
    MEAN: ClassVar[tuple[float, float, float]] = (0.48897059, 0.46548275, 0.4294)
    STD: ClassVar[tuple[float, float, float]] = (0.22861765, 0.22948039, 0.24054667)
    LAYOUT: ClassVar[str] = (
        "ROOT/images/<name>.jpg and ROOT/masks/<name>.jpg (the extracted Kvasir-SEG archive; "
        "ROOT/splits/{train,val}.txt is written on first use)"
    )
    REMOVE_SAMPLE: ClassVar[str] = "remove its name from {root}/splits/{split}.txt"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        crop_size: int | None = None,
        train: bool = False,
        split_seed: int = 0,
        val_fraction: float = KVASIR_VAL_FRACTION,
        **kwargs,
    ) -> None:
        self.split_seed = int(split_seed)
        self.val_fraction = float(val_fraction)
        super().__init__(root, split, crop_size, train, **kwargs)

    def _find_samples(self) -> list[tuple[Path, Path]]:
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        images = {p.stem: p for p in list_dir(image_dir, "*.jpg")}
        masks = {p.stem: p for p in list_dir(mask_dir, "*.jpg")}
        if not images:
            raise self.layout_error(image_dir, "no *.jpg images")
        if not masks:
            raise self.layout_error(mask_dir, "no *.jpg masks")
        if images.keys() != masks.keys():
            missing = sorted(images.keys() ^ masks.keys())
            raise self.layout_error(mask_dir, f"images and masks differ in {len(missing)} names, e.g. {missing[:3]}")
        names = self._split_names(sorted(images))
        for name in names:
            if name not in images:
                raise self.layout_error(
                    self.root / "splits" / f"{self.split}.txt",
                    f"split lists {name!r} but images/{name}.jpg is missing (delete ROOT/splits to redraw)",
                )
        return [(images[name], masks[name]) for name in names]

    def _split_names(self, names: list[str]) -> list[str]:
        split_dir = self.root / "splits"
        if not split_dir.is_dir():
            train, val = kvasir_split(names, seed=self.split_seed, val_fraction=self.val_fraction)
            try:
                _write_split_dir(split_dir, {"train": train, "val": val})
            except OSError as e:
                # A read-only dataset mount: the split is deterministic, so use it from memory.
                log.warning("could not write the Kvasir-SEG split to %s (%s); using it from memory", split_dir, e)
                return train if self.split == "train" else val
        list_file = split_dir / f"{self.split}.txt"
        if not list_file.is_file():
            raise self.layout_error(list_file, "missing split list (delete ROOT/splits to redraw it)")
        return [line.strip() for line in list_file.read_text().splitlines() if line.strip()]

    def _read_label(self, path: Path) -> np.ndarray:
        with Image.open(path) as im:
            grey = np.asarray(im.convert("L"))
        # JPEG artefacts leave values near 0 and 255; split at the midpoint like PIL's mode '1'.
        return (grey >= 128).astype(np.uint8)


def _write_split_dir(split_dir: Path, lists: dict[str, list[str]]) -> None:
    """Create ``split_dir`` with one ``<name>.txt`` per list, all at once (rename of a temp dir)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{split_dir.name}.", suffix=".tmp", dir=split_dir.parent))
    try:
        for name, items in lists.items():
            (tmp / f"{name}.txt").write_text("".join(f"{item}\n" for item in items))
        try:
            os.rename(tmp, split_dir)
        except OSError:
            # Another process created it first; both drew the same split, so keep theirs.
            if not split_dir.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
