"""Common base of the segmentation datasets: file reading, transforms, tensor conversion.

A subclass only says where its (image, label) files are (``_find_samples``) and how a label
file becomes a (H, W) uint8 map of train ids (``_read_label``). Everything else (geometry,
normalisation, checks of the files and label values, error messages, seeding of the
augmentation) lives here.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from rankseg.data.transforms import EVAL_GEOMETRIES, EvalGeometry, build_eval_transform, build_train_transform

__all__ = [
    "IGNORE_INDEX",
    "DatasetLayoutError",
    "SegmentationDataset",
    "augmentation_seed",
    "read_index_png",
    "read_rgb",
]

IGNORE_INDEX = 255


#: What reading a damaged, truncated or non-image file can raise (PIL: OSError such as "image
#: file is truncated" or UnidentifiedImageError, SyntaxError "broken PNG file", ...).
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    Image.DecompressionBombError,
    cv2.error,
)
#: At most this many distinct invalid label values are listed in an error message.
_MAX_LISTED_VALUES = 10


class DatasetLayoutError(ValueError):
    """A dataset root is missing or malformed, or one of its files is unreadable or invalid.

    The message names the path that was looked at, what is wrong with it and what to do (e.g.
    the expected layout and the config key to override, ``dataset.root=...``). Entrypoints catch
    it and exit with status 2.

    Raised in a DataLoader worker, the error is re-created in the main process by torch with a
    text "Caught DatasetLayoutError in DataLoader worker process N. Original Traceback ...";
    the constructor recognises that text and keeps only the original message, so ``str(err)``
    is the same as without workers. The worker's text is kept in ``worker_traceback``.
    """

    def __init__(self, *args: object) -> None:
        self.worker_traceback: str | None = None
        if len(args) == 1 and isinstance(args[0], str):
            message = _message_from_worker_text(type(self), args[0])
            if message is not None:
                self.worker_traceback = args[0]
                args = (message,)
        super().__init__(*args)


def _message_from_worker_text(cls: type[BaseException], text: str) -> str | None:
    """The original message inside torch's ``ExceptionWrapper.reraise`` text, or None if ``text`` is not one.

    The text is ``"Caught <name> <where>.\nOriginal " + traceback.format_exception(...)``; the message
    follows ``"<module>.<qualname>: "`` at the start of the first line after the last traceback header
    (frame lines are indented; a chained cause, if any, comes before that header).
    """
    header = "Traceback (most recent call last):\n"
    if not text.startswith(f"Caught {cls.__name__} ") or f"\nOriginal {header}" not in text:
        return None
    name = cls.__qualname__ if cls.__module__ in ("__main__", "builtins") else f"{cls.__module__}.{cls.__qualname__}"
    start = text.find(f"\n{name}: ", text.rfind(header))
    if start < 0:
        return None
    message = text[start + len(name) + 3 :]
    return message[:-1] if message.endswith("\n") else message


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
    #: How to drop (or restore) one sample, used in errors about a bad file; ``{split}`` and
    #: ``{root}`` are filled in.
    REMOVE_SAMPLE: ClassVar[str] = "remove the sample from the {split} split"
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
        self._aug_epoch: tuple[int, int] | None = None

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

    def file_error(self, path: str | os.PathLike[str], problem: str, fix: str) -> DatasetLayoutError:
        """A DatasetLayoutError about one bad file: ``path``, the problem, ``fix`` and how to drop the sample."""
        remove = self.REMOVE_SAMPLE.replace("{split}", self.split).replace("{root}", str(self.root))
        return DatasetLayoutError(
            f"{type(self).__name__} (split {self.split!r}): {path}: {problem}. {fix}, or {remove}."
        )

    # --- Dataset protocol -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = range(len(self.samples))[index]  # a plain non-negative int (the augmentation seed uses it)
        image_path, label_path = self.samples[index]
        image = self._read_file(self._read_image, image_path, "image")
        label = self._read_file(self._read_label, label_path, "label")
        self._check_label_values(label, label_path)
        if image.shape[:2] != label.shape:
            raise self.layout_error(
                label_path,
                f"label size {label.shape} differs from image size {image.shape[:2]} of {image_path}",
            )
        if self.train:
            if self._aug_epoch is None:
                self._seed_augmentation()
            else:
                self._reseed_transform(augmentation_seed(*self._aug_epoch, index))
        out = self.transform(image=image, mask=label)
        image_t = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1), dtype=np.float32))
        label_t = torch.from_numpy(out["mask"].astype(np.int64))
        return image_t, label_t

    def _read_file(self, read: Callable[[Path], np.ndarray], path: Path, what: str) -> np.ndarray:
        """``read(path)`` with every read or decode failure turned into a DatasetLayoutError naming the file."""
        try:
            return read(path)
        except DatasetLayoutError:
            raise
        except FileNotFoundError as e:
            raise self.layout_error(e.filename or path, f"missing {what} file") from None
        except READ_ERRORS as e:
            # OSError.filename names the file that failed if a reader opened another one.
            failed = (e.filename if isinstance(e, OSError) else None) or path
            # The message comes first; drop its copies of the path (PIL and read_index_png name it).
            reason = str(e).replace(f" '{failed}'", "").replace(f"{failed}: ", "") or type(e).__name__
            raise self.file_error(
                failed,
                f"cannot read or decode this {what} file ({reason})",
                "Re-download or replace it (it is damaged, truncated or in the wrong format)",
            ) from None

    def _check_label_values(self, label: np.ndarray, path: Path) -> None:
        """Raise DatasetLayoutError unless every value of ``label`` is a class id or the ignore index.

        Cheap on valid maps: one comparison, and a second only if some value is >= num_classes (e.g.
        the ignore index); the offending values are collected only on failure.

        Shape:
            - label: (H, W), as returned by :meth:`_read_label`.
        """
        invalid = label >= self.num_classes
        if label.dtype.kind == "i":
            invalid |= label < 0
        if not invalid.any():
            return
        invalid &= label != self.ignore_index
        if not invalid.any():
            return
        values = np.unique(label[invalid]).tolist()
        listed = ", ".join(map(str, values[:_MAX_LISTED_VALUES]))
        if len(values) > _MAX_LISTED_VALUES:
            listed += f", ... ({len(values)} distinct values)"
        count = int(np.count_nonzero(invalid))
        raise self.file_error(
            path,
            f"label values {listed} in {count} pixel{'s' if count != 1 else ''} are neither class ids "
            f"0-{self.num_classes - 1} nor the ignore index {self.ignore_index}",
            f"Map them to {self.ignore_index} (ignore) or fix the mask",
        )

    # --- augmentation seeds ---------------------------------------------------------------
    def set_augmentation_epoch(self, seed: int, epoch: int) -> None:
        """Make the training augmentation of each item a pure function of ``(seed, epoch, index)``.

        After this call, ``self[index]`` (train mode) reseeds the augmentation from
        :func:`augmentation_seed` ``(seed, epoch, index)`` before transforming, so the item does not
        depend on which items were loaded before, on the DataLoader worker that loads it, on
        ``num_workers`` or on the world size: an interrupted run resumes bit for bit. The setting is
        plain instance state, copied into the workers of DataLoaders created (or, for
        ``persistent_workers=True``, first iterated) after the call; call it before creating each
        epoch's loader. Without a call, each worker draws from its own stream seeded by torch
        (reproducible under ``torch.manual_seed``, but dependent on the loading order). No effect
        in eval mode, which is deterministic.

        Args:
            seed: non-negative run seed.
            epoch: non-negative epoch number.
        """
        seed, epoch = int(seed), int(epoch)
        if seed < 0 or epoch < 0:
            raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
        self._aug_epoch = (seed, epoch)

    def _seed_augmentation(self) -> None:
        # Forked DataLoader workers inherit identical copies of the Compose RNG, so every worker
        # would draw the same augmentations. Torch gives each worker its own seed (derived from
        # the torch RNG, hence reproducible under torch.manual_seed); reseed when it changes.
        info = get_worker_info()
        seed = info.seed if info is not None else torch.initial_seed()
        if seed != self._aug_seed:
            self._reseed_transform(seed % 2**32)
            self._aug_seed = seed

    def _reseed_transform(self, seed: int) -> None:
        # One shared generator pair for all the steps. Compose.set_random_seed(seed) would give
        # every step its own generator with the same seed, so that the rotation angle, the crop
        # offset and the flip decision each use the same first draw: the flip would happen exactly
        # when the angle is negative, and the image would always be tilted the same way.
        self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __repr__(self) -> str:
        mode = "train" if self.train else f"eval/{self.eval_geometry}"
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"crop_size={self.crop_size}, mode={mode})"
        )


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """The 64-bit seed of the augmentation of item ``index`` in ``epoch`` of a run seeded ``seed``.

    Derived with ``numpy.random.SeedSequence([seed, epoch, index])``, so nearby triples give
    unrelated seeds.
    """
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0])


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
