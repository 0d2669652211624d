"""PASCAL VOC 2012 with the SBD-augmented training set ("VOCaug", 10582 images), as RankSEG-RMA trains on it.

Layout (``VOCtrainval_11-May-2012.tar`` plus SBD's ``benchmark.tgz``)::

    ROOT/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    ROOT/VOCdevkit/VOC2012/SegmentationClassAug/<id>.png        grey PNG of class indices (see below)
    ROOT/VOCdevkit/VOC2012/SegmentationClass/<id>.png           VOC's own palette PNGs, 255 = boundary
    ROOT/VOCdevkit/VOC2012/ImageSets/Segmentation/{train_aug,aug,train,val}.txt
    ROOT/VOCdevkit/VOCaug/dataset/{cls/<id>.mat, train.txt, val.txt}   SBD, optional

Lists. ``val`` is ``val.txt`` (1449 images). ``train_aug`` is the first that exists of ``train_aug.txt`` (plain
ids, or ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` lines as in the list the RMA code reads),
``aug.txt`` (what mmsegmentation's ``voc_aug.py`` converter writes), or, from SBD's lists, the converter's
rule: (VOC ``train`` + SBD ``train`` + SBD ``val``) minus VOC ``val``, sorted (10582 ids).

Labels. For each id, the first file found of ``<label_dir>/<id>.png`` over ``label_dirs`` (default
``SegmentationClassAug`` then ``SegmentationClass``), else SBD's ``cls/<id>.mat`` (``GTcls.Segmentation``).
The RMA config reads every label, validation included, from ``SegmentationClassAug``; its
``prepare_pascal_voc.py`` fills that set's gaps with VOC's own labels, which is the default order here.
Note: mmsegmentation's converter fills ``SegmentationClassAug`` from SBD only, so validation images that SBD
also annotates would then be scored against SBD's masks; ``label_dirs=[SegmentationClass,
SegmentationClassAug]`` scores them against VOC's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from rankseg.data.base import read_index_png
from rankseg.data.rma_transforms import rma_augmentation
from rankseg.data.voc import VOCSegmentation

__all__ = ["VOCAugSegmentation", "read_sbd_mat", "sbd_train_aug_ids"]


def read_sbd_mat(path: str | os.PathLike[str]) -> np.ndarray:
    """The class map ``GTcls.Segmentation`` of an SBD ``cls/<id>.mat`` file as (H, W) uint8.

    Raises:
        ValueError: the file is not a MATLAB file with that field.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
        seg = np.asarray(mat["GTcls"].Segmentation)
    except (MatReadError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"not an SBD class file with GTcls.Segmentation ({type(e).__name__}: {e})") from None
    if seg.ndim != 2:
        raise ValueError(f"GTcls.Segmentation has shape {seg.shape}, expected (H, W)")
    return seg.astype(np.uint8)


def sbd_train_aug_ids(
    voc_train: Sequence[str], sbd_train: Sequence[str], sbd_val: Sequence[str], voc_val: Sequence[str]
) -> list[str]:
    """The train_aug list: every VOC train and SBD (train or val) id that is not a VOC val id, sorted."""
    return sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - set(voc_val))


def _read_ids(path: Path) -> list[str]:
    """Ids of a list file: plain ids or ``<image path> [<label path>]`` lines."""
    return [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]


class VOCAugSegmentation(VOCSegmentation):
    """VOC 2012 with SBD's extra annotations: splits ``train_aug`` (10582) and ``val`` (1449).

    Args:
        root: directory holding ``VOCdevkit`` (or ``VOCdevkit`` / ``VOC2012`` itself).
        split: ``"train_aug"`` or ``"val"``.
        crop_size: see :class:`~rankseg.data.base.SegmentationDataset`.
        train: see :class:`~rankseg.data.base.SegmentationDataset`.
        label_dirs: directories under ``VOC2012`` searched in order for ``<id>.png``.
        augmentation: training augmentation, ``"rma"`` (RankSEG-RMA's: scale 0.5-2, flip, crop) or ``"rankseg"``
            (the base class's rotation, padding, crop, flip).
        scale_range: random scale range of ``augmentation="rma"``.
        **kwargs: forwarded to :class:`~rankseg.data.base.SegmentationDataset`.
    """

    LAYOUT: ClassVar[str] = (
        "ROOT/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClassAug/<id>.png or SegmentationClass/<id>.png, "
        "ImageSets/Segmentation/{train_aug.txt or aug.txt, val.txt}} (or SBD's VOCdevkit/VOCaug/dataset/"
        "{cls/<id>.mat, train.txt, val.txt})"
    )
    SPLITS: ClassVar[tuple[str, ...]] = ("train_aug", "val")
    REMOVE_SAMPLE: ClassVar[str] = "remove its id from the {split} list"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        crop_size: int | None = None,
        train: bool = False,
        label_dirs: Sequence[str] = ("SegmentationClassAug", "SegmentationClass"),
        augmentation: str = "rma",
        scale_range: Sequence[float] = (0.5, 2.0),
        **kwargs,
    ) -> None:
        self.label_dirs = tuple(str(d) for d in label_dirs)
        if not self.label_dirs:
            raise ValueError("label_dirs must name at least one directory")
        super().__init__(root, split, crop_size, train, **kwargs)
        self.augmentation = rma_augmentation(self, augmentation, scale_range)

    def _sbd_dir(self, base: Path) -> Path | None:
        for candidate in (
            base.parent / "VOCaug" / "dataset",
            self.root / "VOCaug" / "dataset",
            self.root / "benchmark_RELEASE" / "dataset",
        ):
            if (candidate / "cls").is_dir():
                return candidate
        return None

    def _split_ids(self, base: Path, sbd: Path | None) -> list[str]:
        lists = base / "ImageSets" / "Segmentation"
        if self.split == "val":
            if not (lists / "val.txt").is_file():
                raise self.layout_error(lists / "val.txt", "missing split list")
            return _read_ids(lists / "val.txt")
        for name in ("train_aug.txt", "aug.txt"):
            if (lists / name).is_file():
                return _read_ids(lists / name)
        needed = [lists / "train.txt", lists / "val.txt"]
        if sbd is not None:
            needed += [sbd / "train.txt", sbd / "val.txt"]
        missing = [str(p) for p in needed if not p.is_file()]
        if sbd is None or missing:
            why = "no SBD directory VOCaug/dataset" if sbd is None else f"missing {', '.join(missing)}"
            raise self.layout_error(
                lists / "train_aug.txt",
                f"missing split list, no aug.txt, and the SBD lists to derive it are absent ({why})",
            )
        return sbd_train_aug_ids(*(_read_ids(p) for p in (needed[0], needed[2], needed[3], needed[1])))

    def _find_samples(self) -> list[tuple[Path, Path]]:
        base = self._base_dir()
        sbd = self._sbd_dir(base)
        samples = []
        for image_id in self._split_ids(base, sbd):
            image_path = base / "JPEGImages" / f"{image_id}.jpg"
            if not image_path.is_file():
                raise self.layout_error(image_path, f"missing image listed in the {self.split} list")
            candidates = [base / d / f"{image_id}.png" for d in self.label_dirs]
            if sbd is not None:
                candidates.append(sbd / "cls" / f"{image_id}.mat")
            label_path = next((p for p in candidates if p.is_file()), None)
            if label_path is None:
                raise self.layout_error(candidates[0], f"no label for {image_id} (looked for {candidates})")
            samples.append((image_path, label_path))
        return samples

    def _read_label(self, path: Path) -> np.ndarray:
        if path.suffix == ".mat":
            return read_sbd_mat(path)
        return read_index_png(path, modes=("P", "L"))
