"""CT volumes (NIfTI) as 2-D slice datasets: LiTS and KiTS19 under the RankSEG-RMA protocol.

The RankSEG-RMA experiments (``exp/datas/prepare/prepare_lits_kits.py``, ``exp/datas/datasets/{lits,kits,
medical_dataset}.py`` and ``exp/configs/datas/{lits,kits}_fold*.yaml`` of ZixunWang/RankSEG-RMA) train and
evaluate 2-D networks on axial slices:

* **Slices.** Only slices whose segmentation contains tumour (value 2) are used; each is resized to 512 x 512
  (CT bilinear, mask nearest). LiTS volumes are (X, Y, Z), slice ``k`` is ``[:, :, k]``; KiTS19 volumes are
  stored (Z, X, Y), slice ``k`` is ``[k]``.
* **Classes.** Two: background (background and organ, values 0 and 1) and tumour (value 2). Per-image scores
  use the tumour class only (``classes_of_interest: [1]``).
* **Folds.** Five folds over case numbers ``0 .. num_cases - 1`` (LiTS 131, KiTS 210): with
  ``f = num_cases // 5``, fold ``i < 4`` validates on cases ``[i f, (i + 1) f)``, fold 4 on ``[4 f, num_cases)``;
  every other case trains (:func:`rma_val_cases`).
* **Intensities.** HU clipped to a window (LiTS [-60, 140], KiTS [-200, 300]) and mapped linearly to [-1, 1]
  (:func:`window_ct`) after the geometric transforms.
* **Geometry.** Train: random scale in [0.5, 2], horizontal flip, padding (CT with the window's lower bound,
  labels with the ignore index) and a random 384 x 384 crop. Evaluation: centre 384 x 384 crop.
* **Evaluation.** Scores are computed per case (over that case's slices) and averaged over cases; the slices of
  one case come in order from :attr:`CTSliceSegmentation.cases`, :class:`CaseBatchSampler` and
  :func:`iter_case_chunks`.

Files are read with nibabel, slice by slice through the image's array proxy; no volume is ever loaded whole.
Memory of one read (:func:`read_ct_slices`): when the slice axis is the last one (LiTS), the proxy reads just
the slice's bytes; when it is the first (KiTS19), a slice's voxels are spread over the whole file, so the
volume is read in slabs along the last axis of at most :data:`SLAB_BYTES` each. Either way the peak is one slice
plus one slab, never a volume. Compressed ``.nii.gz`` files are decompressed as a stream up to the slice (time
grows with the slice's position, memory does not); for training on KiTS19, ``gunzip`` the volumes once (the
loaders accept ``imaging.nii``) and keep them on a fast disk. The tumour-slice index is built once per dataset
root by reading each segmentation volume in slabs, and stored in ``ROOT/.rankseg_ct_index.json`` (keyed by file
size and modification time; rebuilt when a file changes; kept in memory on a read-only root).

nibabel is imported when a CT dataset is built, so ``import rankseg.data`` does not need it.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import Sampler

from rankseg.data.base import SegmentationDataset, augmentation_seed
from rankseg.data.transforms import _check_crop_size

__all__ = [
    "SLAB_BYTES",
    "CTSlice",
    "CTSliceSegmentation",
    "CaseBatchSampler",
    "CaseChunk",
    "KiTSSegmentation",
    "LiTSSegmentation",
    "ct_num_slices",
    "iter_case_chunks",
    "read_ct_slices",
    "rma_val_cases",
    "slices_with_value",
    "window_ct",
]

log = logging.getLogger(__name__)

#: Largest block of a volume held by one read of slices along the first axis (see the module docstring).
SLAB_BYTES = 8 * 2**20
_INDEX_FILE = ".rankseg_ct_index.json"
_INDEX_VERSION = 1


def window_ct(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip Hounsfield units to ``[low, high]`` and map that window linearly onto [-1, 1] (float32).

    ``low`` goes to -1 and ``high`` to 1: ``2 (clip(hu, low, high) - low) / (high - low) - 1``.
    """
    if not high > low:
        raise ValueError(f"the CT window needs low < high, got [{low}, {high}]")
    x = np.clip(np.asarray(hu, dtype=np.float32), low, high)
    return (x - np.float32(low)) * np.float32(2.0 / (high - low)) - np.float32(1.0)


def rma_val_cases(num_cases: int, fold: int, num_folds: int = 5) -> range:
    """Case numbers of the validation part of ``fold`` under the RankSEG-RMA rule.

    Consecutive blocks of ``num_cases // num_folds`` case numbers, the last fold taking the remainder:
    fold ``i < num_folds - 1`` is ``range(i f, (i + 1) f)``, the last ``range((num_folds - 1) f, num_cases)``.
    Every case not in the range (including case numbers >= ``num_cases``) is a training case.
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    if num_cases < num_folds:
        raise ValueError(f"num_cases={num_cases} is fewer than the {num_folds} folds")
    size = num_cases // num_folds
    return range(size * fold, size * (fold + 1) if fold < num_folds - 1 else num_cases)


def _nib():
    try:
        import nibabel
    except ImportError as e:  # pragma: no cover - nibabel is a dependency
        raise ImportError("the CT datasets read NIfTI files with nibabel: pip install nibabel") from e
    return nibabel


def _proxy(path: Path) -> Any:
    """The array proxy of a NIfTI file (header read, no voxel data); decode errors become ValueError."""
    nib = _nib()
    try:
        image = nib.load(str(path))
    except nib.filebasedimages.ImageFileError as e:
        raise ValueError(f"not a NIfTI file ({e})") from None
    if len(image.shape) != 3:
        raise ValueError(f"expected a 3-D volume, got shape {image.shape}")
    return image.dataobj


def ct_num_slices(path: str | os.PathLike[str], axis: int) -> int:
    """Number of slices of the NIfTI volume at ``path`` along ``axis`` (reads the header only)."""
    return int(_proxy(Path(path)).shape[axis])


def read_ct_slices(path: str | os.PathLike[str], start: int, stop: int, axis: int) -> np.ndarray:
    """Slices ``start:stop`` along ``axis`` of a NIfTI volume, slice axis first, as stored (scaled if the header
    says so), without loading the volume.

    Shape:
        - output: (stop - start, A, B), A and B the other two axes in their stored order.

    Raises:
        ValueError: the file is not a 3-D NIfTI volume, or its compressed data are damaged.
        OSError, EOFError: the file is truncated or unreadable.
    """
    proxy = _proxy(Path(path))
    try:
        if axis == proxy.ndim - 1 or axis == 1:
            index = [slice(None)] * 3
            index[axis] = slice(start, stop)
            return np.moveaxis(np.asarray(proxy[tuple(index)]), axis, 0)
        # First axis: the fastest-varying one on disk, so read slabs along the slowest (last) axis.
        shape = proxy.shape
        step = max(1, SLAB_BYTES // max(1, shape[0] * shape[1] * np.dtype(proxy.dtype).itemsize))
        out = None
        for k in range(0, shape[2], step):
            part = np.asarray(proxy[start:stop, :, k : k + step])  # a view into the slab just read
            if out is None:
                out = np.empty((part.shape[0], shape[1], shape[2]), dtype=part.dtype)
            out[:, :, k : k + step] = part  # copied, so the slab is freed before the next one is read
        return out
    except (zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"damaged compressed data ({e})") from None


def slices_with_value(path: str | os.PathLike[str], axis: int, value: float) -> tuple[int, list[int]]:
    """Number of slices along ``axis`` of a NIfTI volume and the slices that contain ``value`` anywhere.

    Reads the volume in slabs along its last (slowest) axis of at most :data:`SLAB_BYTES`, whatever ``axis``.
    """
    proxy = _proxy(Path(path))
    shape = proxy.shape
    step = max(1, SLAB_BYTES // max(1, shape[0] * shape[1] * np.dtype(proxy.dtype).itemsize))
    hits = np.zeros(shape[axis], dtype=bool)
    others = tuple(a for a in range(3) if a != axis)
    try:
        for k in range(0, shape[2], step):
            found = (np.asarray(proxy[:, :, k : k + step]) == value).any(axis=others)
            if axis == 2:
                hits[k : k + step] = found
            else:
                hits |= found
    except (zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"damaged compressed data ({e})") from None
    return int(shape[axis]), np.flatnonzero(hits).tolist()


class CTSlice(NamedTuple):
    """One 2-D item: slice ``index`` of case ``case``; ``id`` (``<case>_<index>``) names it in outputs."""

    id: str
    volume: Path
    segmentation: Path
    case: int
    index: int


class CTSliceSegmentation(SegmentationDataset):
    """Axial slices of CT volumes with the RankSEG-RMA protocol (module docstring). Subclasses give the layout.

    Args:
        root: dataset root (see the subclass).
        split: ``"train"`` or ``"val"`` (the cases of ``fold``).
        crop_size: side of the training crop and of the evaluation centre crop.
        train: training augmentation instead of the evaluation crop.
        fold: cross-validation fold, 0-4.
        num_cases: number of case numbers the folds divide (the RMA configs: LiTS 131, KiTS 210).
        window: HU window ``(low, high)``; None = the dataset's.
        slice_size: side every slice is resized to before the transforms (RMA: 512); None keeps it.
        slices: ``"tumor"`` (RMA: slices whose segmentation holds tumour) or ``"all"``.
        in_channels: 1, or 3 to repeat the windowed slice (for RGB encoders; with ImageNet weights the same as
            1 channel on a ``in_channels=1`` smp encoder, whose first convolution sums the RGB filters).
        scale_range: training random scale range.
        eval_geometry: ``"crop"`` (RMA: centre crop ``crop_size``) or ``"full"`` (the whole resized slice).
        **kwargs: ``reference_quirks`` and ``rotate_limit`` are accepted and unused (no rotation here).

    Shape:
        - image: (in_channels, H, W) float32 in [-1, 1] (windowed HU; ``mean``/``std`` 0.5 undo it to 0-1).
        - label: (H, W) int64 in {0, 1} or 255 (padding).
    """

    CLASS_NAMES: ClassVar[tuple[str, ...]] = ("background", "tumor")
    CLASSES_OF_INTEREST: ClassVar[tuple[int, ...]] = (1,)
    # The windowed image is (x - 0.5) / 0.5 of x = the window's 0-1 position: denormalising gives 0-255 grey.
    MEAN: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    STD: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val")
    REMOVE_SAMPLE: ClassVar[str] = "move the case out of {root}"
    #: Axis of the axial slices in the stored volumes.
    SLICE_AXIS: ClassVar[int] = 2
    WINDOW: ClassVar[tuple[float, float]] = (-1000.0, 1000.0)
    NUM_CASES: ClassVar[int] = 0
    #: Segmentation value -> class: background and organ are background, tumour is class 1.
    LABEL_VALUES: ClassVar[dict[int, int]] = {0: 0, 1: 0, 2: 1}
    TUMOR_VALUE: ClassVar[int] = 2

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        crop_size: int | None = 384,
        train: bool = False,
        fold: int = 0,
        num_cases: int | None = None,
        window: Sequence[float] | None = None,
        slice_size: int | None = 512,
        slices: str = "tumor",
        in_channels: int = 3,
        scale_range: Sequence[float] = (0.5, 2.0),
        eval_geometry: str = "crop",
        **kwargs: Any,
    ) -> None:
        kwargs.pop("reference_quirks", None)
        kwargs.pop("rotate_limit", None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        if slices not in ("tumor", "all"):
            raise ValueError(f"slices must be 'tumor' or 'all', got {slices!r}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.num_cases = int(self.NUM_CASES if num_cases is None else num_cases)
        self.fold = int(fold)
        self.val_cases = rma_val_cases(self.num_cases, self.fold)
        low, high = (float(v) for v in (self.WINDOW if window is None else window))
        if not high > low:
            raise ValueError(f"window must be (low, high) with low < high, got {window}")
        self.window = (low, high)
        self.slice_size = None if slice_size is None else int(slice_size)
        self.slices = slices
        self.in_channels = int(in_channels)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        super().__init__(root, split, crop_size, train, eval_geometry=eval_geometry)
        self.transform = self._build_transform()

    # --- layout -----------------------------------------------------------------------------------------
    def _find_cases(self) -> list[tuple[int, Path, Path]]:
        """Sorted ``(case number, volume, segmentation)`` of every labelled case under ``self.root``."""
        raise NotImplementedError

    def _find_samples(self) -> list[CTSlice]:  # type: ignore[override]
        if not self.root.is_dir():
            raise self.layout_error(self.root, "missing directory")
        cases = [c for c in self._find_cases() if (c[0] in self.val_cases) == (self.split == "val")]
        index = _SliceIndex(self.root, self.SLICE_AXIS, self.TUMOR_VALUE)
        samples = []
        for case, volume, segmentation in cases:
            try:
                n, tumour = index.lookup(segmentation)
                depth = ct_num_slices(volume, self.SLICE_AXIS)
            except (ValueError, OSError, EOFError) as e:
                raise self.file_error(
                    getattr(e, "filename", None) or segmentation,
                    f"cannot read this case ({e})",
                    "Re-download or replace the case's files",
                ) from None
            if depth != n:
                raise self.layout_error(segmentation, f"{n} slices, but {volume.name} has {depth}")
            for k in tumour if self.slices == "tumor" else range(n):
                samples.append(CTSlice(f"{case}_{k}", volume, segmentation, case, k))
        index.save()
        return samples

    # --- items ------------------------------------------------------------------------------------------
    def _build_transform(self) -> Any:
        import albumentations as A

        low = self.window[0]
        pad = A.PadIfNeeded(
            min_height=self.crop_size,
            min_width=self.crop_size,
            position="center",
            border_mode=cv2.BORDER_CONSTANT,
            fill=low,
            fill_mask=self.IGNORE_INDEX,
        )
        if self.train:
            _check_crop_size(self.crop_size)
            lo, hi = self.scale_range
            steps = [
                A.RandomScale(
                    scale_limit=(lo - 1.0, hi - 1.0),
                    interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_NEAREST,
                    p=1.0,
                ),
                A.HorizontalFlip(p=0.5),
                pad,
                A.RandomCrop(height=self.crop_size, width=self.crop_size),
            ]
        elif self.eval_geometry == "crop":
            if self.crop_size is None:
                raise ValueError("eval_geometry='crop' needs a crop_size")
            _check_crop_size(self.crop_size)
            steps = [pad, A.CenterCrop(height=self.crop_size, width=self.crop_size)]
        else:
            steps = []
        return A.Compose(steps)

    def _read_label(self, path: Path) -> np.ndarray:  # pragma: no cover - items are read by __getitem__
        raise NotImplementedError("CT labels are read per slice by __getitem__")

    def read_slice(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index`` before the transforms: HU (H, W) float32 and class ids (H, W) uint8, resized to
        ``slice_size``."""
        s: CTSlice = self.samples[index]
        hu = self._read_file(lambda p: read_ct_slices(p, s.index, s.index + 1, self.SLICE_AXIS)[0], s.volume, "volume")
        raw = self._read_file(
            lambda p: read_ct_slices(p, s.index, s.index + 1, self.SLICE_AXIS)[0], s.segmentation, "segmentation"
        )
        if hu.shape != raw.shape:
            raise self.layout_error(s.segmentation, f"slice size {raw.shape} differs from {hu.shape} of {s.volume}")
        label = self._classes(raw, s.segmentation)
        hu = hu.astype(np.float32)
        if self.slice_size is not None and hu.shape != (self.slice_size, self.slice_size):
            size = (self.slice_size, self.slice_size)
            hu = cv2.resize(hu, size, interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        return hu, label

    def _classes(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Segmentation values -> class ids (uint8); any value outside LABEL_VALUES is an error naming ``path``."""
        lut = np.full(256, 255, np.uint8)
        for value, cls in self.LABEL_VALUES.items():
            lut[value] = cls
        values = np.unique(raw)
        known = np.isin(values, list(self.LABEL_VALUES))
        if not known.all():
            bad = ", ".join(str(v) for v in values[~known][:10].tolist())
            raise self.file_error(
                path,
                f"segmentation values {bad} are not among {sorted(self.LABEL_VALUES)} (background, organ, tumour)",
                "Fix the segmentation",
            )
        return lut[raw.astype(np.int64)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = range(len(self.samples))[index]
        hu, label = self.read_slice(index)
        if self.train:
            if self._aug_epoch is None:
                self._seed_augmentation()
            else:
                self._reseed_transform(augmentation_seed(*self._aug_epoch, index))
        out = self.transform(image=hu[..., None], mask=label)
        image = window_ct(out["image"][..., 0], *self.window)
        image_t = torch.from_numpy(np.repeat(image[None], self.in_channels, axis=0))
        return image_t, torch.from_numpy(out["mask"].astype(np.int64))

    # --- cases ------------------------------------------------------------------------------------------
    @property
    def case_of_index(self) -> list[int]:
        """Case number of every item, in item order."""
        return [s.case for s in self.samples]

    @property
    def cases(self) -> dict[int, list[int]]:
        """Item indices of each case, cases in increasing order, each case's slices in increasing order."""
        out: dict[int, list[int]] = {}
        for i, s in enumerate(self.samples):
            out.setdefault(s.case, []).append(i)
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, fold={self.fold}, "
            f"cases={len(self.cases)}, slices={len(self)})"
        )


class LiTSSegmentation(CTSliceSegmentation):
    """LiTS (MICCAI 2017 Liver Tumor Segmentation), 131 training volumes; tumour vs the rest.

    Layout: ``ROOT/**/volume-<n>.nii`` with ``segmentation-<n>.nii`` beside it (the challenge's "Training
    Batch 1/2" folders, or all files in ROOT as the RMA data directory ``lits/``); ``.nii.gz`` is read too.
    Segmentation values: 0 background, 1 liver, 2 tumour. See :class:`CTSliceSegmentation` for the arguments.
    """

    LAYOUT: ClassVar[str] = "ROOT/**/volume-<n>.nii with segmentation-<n>.nii beside each (LiTS training set)"
    SLICE_AXIS: ClassVar[int] = 2
    WINDOW: ClassVar[tuple[float, float]] = (-60.0, 140.0)
    NUM_CASES: ClassVar[int] = 131

    def _find_cases(self) -> list[tuple[int, Path, Path]]:
        pattern = re.compile(r"volume-(\d+)\.nii(\.gz)?$")
        cases = []
        for volume in sorted(self.root.rglob("volume-*.nii*")):
            match = pattern.match(volume.name)
            if not match or not volume.is_file():
                continue
            segmentation = volume.with_name(volume.name.replace("volume-", "segmentation-", 1))
            if not segmentation.is_file():
                raise self.layout_error(segmentation, f"missing segmentation of {volume.name}")
            cases.append((int(match.group(1)), volume, segmentation))
        if not cases:
            raise self.layout_error(self.root, "no volume-<n>.nii files")
        return sorted(cases)


class KiTSSegmentation(CTSliceSegmentation):
    """KiTS19 (kidney tumour segmentation), 210 training cases; tumour vs the rest.

    Layout: ``ROOT/case_<5 digits>/imaging.nii.gz`` and ``segmentation.nii.gz`` (the kits19 repository's
    ``data/`` directory; ``ROOT/data/case_*`` and uncompressed ``.nii`` are accepted). Cases without a
    segmentation (the test cases 210-299) are skipped. Segmentation values: 0 background, 1 kidney, 2 tumour.
    See :class:`CTSliceSegmentation` for the arguments.
    """

    LAYOUT: ClassVar[str] = "ROOT/case_<5 digits>/{imaging,segmentation}.nii.gz (KiTS19 data directory)"
    SLICE_AXIS: ClassVar[int] = 0
    WINDOW: ClassVar[tuple[float, float]] = (-200.0, 300.0)
    NUM_CASES: ClassVar[int] = 210

    def _find_cases(self) -> list[tuple[int, Path, Path]]:
        base = self.root / "data" if not any(self.root.glob("case_*")) and (self.root / "data").is_dir() else self.root
        cases = []
        for case_dir in sorted(p for p in base.glob("case_*") if p.is_dir()):
            if not re.fullmatch(r"case_\d{5}", case_dir.name):
                continue
            volume = _first_file(case_dir, ("imaging.nii.gz", "imaging.nii"))
            segmentation = _first_file(case_dir, ("segmentation.nii.gz", "segmentation.nii"))
            if volume is None:
                raise self.layout_error(case_dir / "imaging.nii.gz", "missing volume")
            if segmentation is None:
                continue  # a test case
            cases.append((int(case_dir.name[-5:]), volume, segmentation))
        if not cases:
            raise self.layout_error(base, "no case_XXXXX directories with a segmentation")
        return cases


def _first_file(directory: Path, names: Sequence[str]) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


class _SliceIndex:
    """Number of slices and tumour slices of each segmentation volume, cached in ``ROOT/.rankseg_ct_index.json``.

    Building an entry reads the volume in blocks of slices (:func:`read_ct_slices`), never whole.
    """

    def __init__(self, root: Path, axis: int, tumor_value: int) -> None:
        self.path = root / _INDEX_FILE
        self.root, self.axis, self.tumor_value = root, axis, tumor_value
        self.entries: dict[str, Any] = {}
        self.changed = False
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") == _INDEX_VERSION:
                self.entries = data["entries"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass

    def lookup(self, segmentation: Path) -> tuple[int, list[int]]:
        stat = segmentation.stat()
        key = str(segmentation.relative_to(self.root))
        stamp = [stat.st_size, stat.st_mtime_ns, self.axis, self.tumor_value]
        entry = self.entries.get(key)
        if entry is None or entry["stamp"] != stamp:
            n, tumour = slices_with_value(segmentation, self.axis, self.tumor_value)
            entry = {"stamp": stamp, "num_slices": n, "tumor_slices": tumour}
            self.entries[key] = entry
            self.changed = True
        return int(entry["num_slices"]), list(entry["tumor_slices"])

    def save(self) -> None:
        if not self.changed:
            return
        text = json.dumps({"version": _INDEX_VERSION, "entries": self.entries}, sort_keys=True)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f"{_INDEX_FILE}.", suffix=".tmp", dir=self.root)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the index from other users of a shared dataset
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only dataset: the index is rebuilt next time
            log.warning("could not store the CT slice index in %s (%s)", self.path, e)


# --- per-case iteration (for per-case scores and volume-level prediction) ---------------------------------------
class CaseBatchSampler(Sampler[list[int]]):
    """Batches of at most ``batch_size`` item indices, never mixing cases; cases and slices in order.

    Give it to a DataLoader as ``batch_sampler``; :meth:`case_ends` says after which batch a case is complete,
    so an evaluator can finish a case's scores (or its stacked volume) there and drop what it held.

    Args:
        case_of_index: the case of every item (:attr:`CTSliceSegmentation.case_of_index`); items of one case must
            be contiguous.
        batch_size: largest batch.
    """

    def __init__(self, case_of_index: Sequence[int], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._batches: list[list[int]] = []
        self._ends: list[bool] = []
        seen: set[int] = set()
        start = 0
        n = len(case_of_index)
        while start < n:
            case = case_of_index[start]
            if case in seen:
                raise ValueError(f"the items of case {case} are not contiguous")
            seen.add(case)
            stop = start
            while stop < n and case_of_index[stop] == case:
                stop += 1
            for b in range(start, stop, batch_size):
                self._batches.append(list(range(b, min(b + batch_size, stop))))
                self._ends.append(b + batch_size >= stop)
            start = stop

    def __iter__(self) -> Iterator[list[int]]:
        return iter([list(b) for b in self._batches])

    def __len__(self) -> int:
        return len(self._batches)

    def case_ends(self) -> list[bool]:
        """For every batch, whether it is the last one of its case."""
        return list(self._ends)


class CaseChunk(NamedTuple):
    """Up to ``chunk_size`` consecutive slices of one case (see :func:`iter_case_chunks`).

    Shape:
        - images: (n, in_channels, H, W) float32.
        - labels: (n, H, W) int64.
    """

    case: int
    indices: list[int]
    images: torch.Tensor
    labels: torch.Tensor
    last: bool


def iter_case_chunks(dataset: CTSliceSegmentation, chunk_size: int) -> Iterator[CaseChunk]:
    """The items of ``dataset`` case by case, in slice order, ``chunk_size`` slices at a time.

    Only the current chunk is held (plus whatever the caller keeps): an evaluator that keeps a case's per-slice
    probabilities until ``last`` peaks at one volume's probabilities; one that keeps counts only, at one chunk.
    """
    sampler = CaseBatchSampler(dataset.case_of_index, chunk_size)
    for batch, last in zip(sampler, sampler.case_ends(), strict=True):
        items = [dataset[i] for i in batch]
        images = torch.from_numpy(np.stack([x.numpy() for x, _ in items]))
        labels = torch.from_numpy(np.stack([y.numpy() for _, y in items]))
        del items
        yield CaseChunk(dataset.samples[batch[0]].case, batch, images, labels, last)
