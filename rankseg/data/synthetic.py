"""A small synthetic segmentation dataset, generated deterministically on first use.

Five classes: background and four object classes of different size, shape, colour and
texture (``disc``, ``square``, ``triangle`` and the small ``speck``). Some objects are faint,
some faint background blobs look like objects, the image is blurred and noisy, and labels near
object boundaries are randomly flipped, so a trained network's probabilities stay uncertain
(which is what the RankDice post-processing acts on). Defaults (400 train + 100 val images of
64 x 64) generate in about a second; a small CNN trained for a couple of CPU minutes beats
chance clearly.

Layout (written atomically: into a temporary sibling directory, then renamed)::

    ROOT/meta.json                    generation parameters
    ROOT/{train,val}.txt              image ids
    ROOT/images/{split}/<id>.png      RGB
    ROOT/labels/{split}/<id>.png      grey PNG of class indices 0-4

Generate by hand::

    python -c "from rankseg.data import generate_synthetic; generate_synthetic('data/synthetic')"
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
from PIL import Image

from rankseg.data.base import DatasetLayoutError, SegmentationDataset, read_index_png

__all__ = ["SYNTHETIC_CLASS_NAMES", "SyntheticSegmentation", "generate_synthetic", "synthetic_sample"]

SYNTHETIC_CLASS_NAMES: tuple[str, ...] = ("background", "disc", "square", "triangle", "speck")
_FORMAT_VERSION = 1
_SPLIT_CODES = {"train": 0, "val": 1}
# Base colours (RGB, 0-1). Disc and triangle are close on purpose: shape and texture must decide.
_COLOURS = {
    1: (0.78, 0.32, 0.30),
    2: (0.30, 0.66, 0.36),
    3: (0.68, 0.36, 0.42),
    4: (0.92, 0.86, 0.30),
}


def synthetic_sample(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic (image, label) pair.

    Args:
        rng: source of randomness; the output is a deterministic function of its state.
        size: image side in pixels; object sizes scale with it.

    Returns:
        ``(image, label)``: (size, size, 3) uint8 RGB and (size, size) uint8 class indices.
    """
    s = size / 64.0  # object sizes below are in pixels of a 64 x 64 image
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    # Background: grey-ish colour with smooth low-frequency variation.
    bg_colour = rng.uniform(0.35, 0.6, 3).astype(np.float32)
    smooth = cv2.resize(rng.normal(0.0, 1.0, (4, 4, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    image = bg_colour + 0.07 * smooth
    label = np.zeros((size, size), np.uint8)

    def blend(mask: np.ndarray, texture: np.ndarray, alpha: float) -> None:
        image[mask] = alpha * texture[mask] + (1.0 - alpha) * image[mask]

    # Distractors: faint object-coloured blobs that are labelled background.
    for _ in range(rng.integers(0, 3)):
        k = int(rng.integers(1, 4))
        mask = _shape_mask(rng, k, size, s)
        blend(mask, _texture(rng, k, xx, yy), float(rng.uniform(0.12, 0.35)))

    # Large objects first, small specks last so that they stay visible on top.
    classes = [int(k) for k in rng.integers(1, 4, rng.integers(1, 4))]
    classes += [4] * int(rng.integers(0, 4))
    for k in classes:
        mask = _shape_mask(rng, k, size, s)
        blend(mask, _texture(rng, k, xx, yy), float(rng.uniform(0.4, 1.0)))
        label[mask] = k

    image = cv2.GaussianBlur(image, (0, 0), sigmaX=0.8)
    image = image + rng.normal(0.0, 0.05, image.shape).astype(np.float32)
    image_u8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    # Label noise on boundaries: a third of the pixels that touch another class take its label.
    kernel = np.ones((3, 3), np.uint8)
    hi, lo = cv2.dilate(label, kernel), cv2.erode(label, kernel)
    boundary = hi != lo
    flip = boundary & (rng.random(label.shape) < 0.35)
    other = np.where(hi != label, hi, lo)
    label = np.where(flip, other, label).astype(np.uint8)
    return image_u8, label


def _shape_mask(rng: np.random.Generator, k: int, size: int, s: float) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0, size, 2)
    if k == 1:  # ellipse
        axes = (max(1, round(rng.uniform(4, 14) * s)), max(1, round(rng.uniform(4, 14) * s)))
        cv2.ellipse(canvas, (round(cx), round(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif k == 2:  # rotated square
        half = rng.uniform(4, 12) * s
        box = cv2.boxPoints(((float(cx), float(cy)), (2 * half, 2 * half), float(rng.uniform(0, 90))))
        cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], 1)
    elif k == 3:  # triangle with jittered vertices
        radius = rng.uniform(5, 15) * s
        angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(3) / 3 + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    else:  # small speck
        cv2.circle(canvas, (round(cx), round(cy)), max(1, round(rng.uniform(1.0, 3.0) * s)), 1, -1)
    return canvas.astype(bool)


def _texture(rng: np.random.Generator, k: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    colour = np.clip(np.asarray(_COLOURS[k], np.float32) + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    if k == 1:  # mottled
        mod = 1.0 + 0.15 * rng.normal(0, 1, xx.shape)
    elif k == 2:  # stripes of random orientation, period 4-7 px
        phi, period = rng.uniform(0, np.pi), rng.uniform(4, 7)
        mod = 0.8 + 0.2 * np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period)
    elif k == 3:  # checkerboard, cell 3-5 px
        cell = rng.uniform(3, 5)
        mod = 0.85 + 0.15 * np.sign(np.sin(np.pi * xx / cell) * np.sin(np.pi * yy / cell))
    else:
        mod = np.ones_like(xx)
    return mod.astype(np.float32)[..., None] * colour


def generate_synthetic(
    root: str | os.PathLike[str],
    num_train: int = 400,
    num_val: int = 100,
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Generate the synthetic dataset under ``root`` unless it is already there.

    Concurrent callers are safe: each writes into its own temporary directory and renames it to
    ``root``; the first rename wins and the others discard their copy (identical anyway).

    Args:
        root: target directory; must not exist, be empty, or hold the same generation.
        num_train: number of training images.
        num_val: number of validation images.
        image_size: side of the square images.
        seed: generation seed; image ``i`` of a split depends only on (seed, split, i).

    Returns:
        ``root`` as a Path.

    Raises:
        DatasetLayoutError: ``root`` holds something else (another generation or other files).
    """
    root = Path(os.path.expanduser(str(root)))
    meta = {
        "format_version": _FORMAT_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": int(image_size),
        "seed": int(seed),
    }
    if _check_existing(root, meta):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        for split, count in (("train", meta["num_train"]), ("val", meta["num_val"])):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            ids = [f"{i:05d}" for i in range(count)]
            for i, image_id in enumerate(ids):
                rng = np.random.default_rng([meta["seed"], _SPLIT_CODES[split], i])
                image, label = synthetic_sample(rng, meta["image_size"])
                Image.fromarray(image).save(tmp / "images" / split / f"{image_id}.png", compress_level=1)
                Image.fromarray(label).save(tmp / "labels" / split / f"{image_id}.png", compress_level=1)
            (tmp / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        try:
            os.rename(tmp, root)  # also replaces an empty directory
        except OSError:
            if not _check_existing(root, meta):  # lost a race: theirs must be the same data
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _check_existing(root: Path, meta: dict) -> bool:
    """True if ``root`` holds this generation, False if it is absent or empty; raise otherwise."""
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return False
    meta_file = root / "meta.json"
    layout = SyntheticSegmentation.LAYOUT.replace("{split}", "<split>")
    if not meta_file.is_file():
        raise DatasetLayoutError(
            f"SyntheticSegmentation: {root} exists but has no meta.json. Expected {layout}, "
            f"or an absent/empty directory to generate into. Point elsewhere with dataset.root=/path/to/ROOT."
        )
    found = json.loads(meta_file.read_text())
    if found != meta:
        raise DatasetLayoutError(
            f"SyntheticSegmentation: {meta_file} records generation {found}, but {meta} was requested. "
            f"Delete {root} to regenerate, or use another dataset.root=/path/to/ROOT."
        )
    return True


class SyntheticSegmentation(SegmentationDataset):
    """The synthetic dataset; generated under ``root`` on first use.

    Args:
        root: dataset directory (generated if absent or empty).
        split: ``"train"`` or ``"val"``.
        crop_size: see :class:`~rankseg.data.base.SegmentationDataset`.
        train: see :class:`~rankseg.data.base.SegmentationDataset`.
        num_train: generation parameter, see :func:`generate_synthetic`.
        num_val: generation parameter.
        image_size: generation parameter.
        seed: generation seed.
        **kwargs: forwarded to :class:`~rankseg.data.base.SegmentationDataset`.
    """

    CLASS_NAMES: ClassVar[tuple[str, ...]] = SYNTHETIC_CLASS_NAMES
    CLASSES_OF_INTEREST: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)
    # Per-channel statistics of the default generation's training images, rounded.
    MEAN: ClassVar[tuple[float, float, float]] = (0.48, 0.47, 0.46)
    STD: ClassVar[tuple[float, float, float]] = (0.12, 0.11, 0.11)
    LAYOUT: ClassVar[str] = (
        "ROOT/{images,labels}/{split}/<id>.png with ROOT/{split}.txt and ROOT/meta.json "
        "(generated automatically when ROOT is absent or empty)"
    )
    REMOVE_SAMPLE: ClassVar[str] = "delete {root} to generate the dataset again"

    def __init__(
        self,
        root: str | os.PathLike[str] = "data/synthetic",
        split: str = "val",
        crop_size: int | None = None,
        train: bool = False,
        num_train: int = 400,
        num_val: int = 100,
        image_size: int = 64,
        seed: int = 0,
        **kwargs,
    ) -> None:
        generate_synthetic(root, num_train=num_train, num_val=num_val, image_size=image_size, seed=seed)
        super().__init__(root, split, crop_size, train, **kwargs)

    def _find_samples(self) -> list[tuple[Path, Path]]:
        list_file = self.root / f"{self.split}.txt"
        if not list_file.is_file():
            raise self.layout_error(list_file, "missing split list")
        ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        return [
            (self.root / "images" / self.split / f"{i}.png", self.root / "labels" / self.split / f"{i}.png")
            for i in ids
        ]

    def _read_label(self, path: Path) -> np.ndarray:
        return read_index_png(path, modes=("L",))
