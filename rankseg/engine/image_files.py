"""Image files for ``predict.py``: finding the inputs, reading them as the datasets do, colour palettes, and
writing label maps, class masks and overlays atomically.

Reading follows :func:`rankseg.data.base.read_rgb` (PIL, converted to RGB, EXIF orientation not applied, as
in training), with OpenCV as a fallback for files PIL cannot identify. Label maps are palette ('P') PNGs whose
indices are the class ids (values the rule leaves unassigned, e.g. 255, are kept); class masks are grey PNGs
with 0 and 255.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from rankseg.data.base import READ_ERRORS, read_rgb
from rankseg.data.fake import voc_palette
from rankseg.engine.config_checks import ConfigError
from rankseg.engine.runfiles import atomic_write

__all__ = [
    "IMAGE_SUFFIXES",
    "READ_ERRORS",
    "InputImage",
    "PredictionInputError",
    "blend_overlay",
    "class_file_names",
    "find_images",
    "image_size",
    "palette_for",
    "read_image",
    "read_problem",
    "write_png",
]

#: Files of a folder input that are read (case-insensitive); a glob input tries every file it matches.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif", ".ppm",
                  ".pgm", ".pbm", ".pnm", ".jp2")  # fmt: skip
_GLOB_CHARS = re.compile(r"[*?\[]")

#: Cityscapes' official colours of the 19 train ids (cityscapesScripts ``labels.py``).
CITYSCAPES_COLOURS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip


class PredictionInputError(ConfigError):
    """The ``input=`` of ``predict.py`` names no readable image (a missing folder, an empty one, a glob that
    matches nothing, only unreadable files), or the outputs would clash; one message, exit status 2."""


@dataclass(frozen=True)
class InputImage:
    """One input file and the name of its outputs (``rel`` without suffix, relative to the input's folder)."""

    path: Path
    rel: PurePath


def find_images(spec: str) -> tuple[list[InputImage], list[Path]]:
    """The images named by ``input=``: a folder (its image files by suffix, not recursive, hidden files
    left out), a glob (every file it matches; ``**`` recurses) or one file.

    Returns:
        ``(images, ignored)``: the images in sorted order, and the files of a folder input that were left out
        because their suffix is not one of :data:`IMAGE_SUFFIXES`.

    Raises:
        PredictionInputError: nothing to read, or two inputs whose outputs would have the same name.
    """
    text = os.path.expanduser(str(spec))
    ignored: list[Path] = []
    if _GLOB_CHARS.search(text):
        base = Path(_glob_base(text))
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not paths:
            raise PredictionInputError(f"input={spec!r} matches no file (glob patterns are relative to {Path.cwd()})")
    elif os.path.isdir(text):
        base = Path(text)
        files = sorted(p for p in base.iterdir() if p.is_file() and not p.name.startswith("."))
        paths = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        ignored = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not paths:
            found = f" (it holds {len(files)} other file(s), e.g. {files[0].name})" if files else " (it is empty)"
            raise PredictionInputError(
                f"no images in input={spec}{found}; images are files ending in {', '.join(IMAGE_SUFFIXES[:6])}, ... "
                "or name them with a glob, e.g. input='DIR/*.dat'"
            )
    elif os.path.isfile(text):
        base, paths = Path(text).parent, [Path(text)]
    else:
        raise PredictionInputError(
            f"input={spec}: no such folder or file; name a folder of images, a glob such as input='DIR/*.jpg', "
            "or one image"
        )
    images = [InputImage(p, p.relative_to(base).with_suffix("")) for p in paths]
    _check_unique(images)
    return images, ignored


def _glob_base(pattern: str) -> str:
    """The folder part of ``pattern`` before its first glob character (outputs are named relative to it)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS.search(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def _check_unique(images: Sequence[InputImage]) -> None:
    seen: dict[PurePath, Path] = {}
    for image in images:
        other = seen.setdefault(image.rel, image.path)
        if other != image.path:
            raise PredictionInputError(
                f"{other} and {image.path} would both write predictions named {image.rel}; rename one of them "
                "or narrow input= with a glob (e.g. input='DIR/*.jpg')"
            )


def read_problem(err: BaseException, path: Path) -> str:
    """A short reason for a read failure, without the file name (the caller names the file)."""
    text = str(err).replace(f" '{path}'", "").replace(f"{path}: ", "").replace(str(path), "").strip()
    return text or type(err).__name__


def _cv2_read(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB through OpenCV (formats PIL does not know), without OpenCV's log lines."""
    data = np.fromfile(path, dtype=np.uint8)
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)  # OpenCV would print its own warnings about a damaged file
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    finally:
        log.setLogLevel(level)
    if image is None:
        raise UnidentifiedImageError("cannot identify image file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file's header (PIL), or by decoding it with OpenCV.

    Raises:
        One of :data:`READ_ERRORS` for an unreadable file.
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
            return height, width
    except UnidentifiedImageError:
        return _cv2_read(path).shape[:2]  # type: ignore[return-value]


def read_image(path: Path) -> np.ndarray:
    """The image as (H, W, 3) uint8 RGB, as the datasets read it (:func:`rankseg.data.base.read_rgb`).

    Raises:
        One of :data:`READ_ERRORS` for an unreadable, truncated or damaged file.
    """
    try:
        return read_rgb(path)
    except UnidentifiedImageError:
        return _cv2_read(path)


def palette_for(choice: Any, dataset_name: str, num_classes: int) -> tuple[str, list[int]]:
    """``(name, flat 768-entry RGB palette)`` for label maps and overlays.

    Args:
        choice: ``auto`` (Cityscapes' colours for ``cityscapes``, the VOC colour map otherwise), ``voc``,
            ``cityscapes``, or a list of ``[r, g, b]`` per class (the rest of the 256 entries: the VOC map).

    Raises:
        ConfigError: an unknown name, or a list that is not ``num_classes`` RGB triples in 0-255.
    """
    base = voc_palette()
    if choice == "auto":
        choice = "cityscapes" if dataset_name == "cityscapes" else "voc"
    if choice == "voc":
        return "voc", base
    if choice == "cityscapes":
        colours: Sequence[Sequence[int]] = CITYSCAPES_COLOURS
        name = "cityscapes"
    elif isinstance(choice, Sequence) and not isinstance(choice, str):
        colours, name = choice, "custom"
    else:
        raise ConfigError(f"palette={choice!r}: use auto, voc, cityscapes or a list of [r,g,b] per class")
    ok = all(
        isinstance(c, Sequence) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        for c in colours
    )
    if not ok or len(colours) < num_classes:
        raise ConfigError(
            f"palette must give {num_classes} [r,g,b] colours (integers 0-255), one per class; got {list(colours)!r}"
        )
    flat = [int(v) for c in colours for v in c][: 3 * 255]
    black = [0, 0, 0] if name == "cityscapes" else base[3 * 255 :]
    return name, flat + base[len(flat) : 3 * 255] + black


def class_file_names(class_names: Sequence[str]) -> list[str]:
    """File-name-safe class names (``traffic light`` -> ``traffic_light``), unique.

    Raises:
        ConfigError: two names that become the same.
    """
    slugs = [re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(n)).strip("._") or f"class{i}" for i, n in enumerate(class_names)]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(f"dataset.class_names {list(class_names)} do not give distinct file names ({slugs})")
    return slugs


def write_png(path: Path, array: np.ndarray, palette: list[int] | None = None) -> Path:
    """Write a (H, W) uint8 array (grey, or palette indices with ``palette``) or (H, W, 3) uint8 RGB as a PNG,
    atomically (a temporary file next to ``path``, then ``os.replace``)."""
    image = Image.fromarray(np.ascontiguousarray(array))
    if palette is not None:
        image.putpalette(palette)  # 'L' -> 'P' with the same indices
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def blend_overlay(image: np.ndarray, colours: np.ndarray, covered: np.ndarray, alpha: float) -> np.ndarray:
    """``image`` with ``colours`` blended in at ``alpha`` where ``covered``.

    Shape:
        - image, colours: (H, W, 3) uint8 and float; covered: (H, W) bool; output (H, W, 3) uint8.
    """
    out = image.astype(np.float32)
    out[covered] = (1.0 - alpha) * out[covered] + alpha * colours[covered]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
