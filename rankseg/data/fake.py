"""Tiny dataset trees in the exact on-disk formats of Cityscapes, VOC 2012 (also with SBD), Kvasir-SEG, ADE20K,
LiTS and KiTS19.

Used by the tests and by ``scripts/make_fake_dataset.py`` to check the loaders without the real
data. Label content exercises each format's pitfalls:

- Cityscapes: every labelId 0-33 plus 255 (license plate, stored -1) in 8 x 8 blocks, with the
  ``_gtFine_color``/``_gtFine_instanceIds`` siblings that the loader must skip.
- VOC: palette ('P') PNGs with the VOC colour map, objects of classes 1-20 and a 255 border;
  an SBD-style ``SegmentationClassAug`` (grey PNGs) with ``train_aug.txt``.
- Kvasir-SEG: RGB JPEG masks, so values are near 0/255 with compression artefacts.
- ADE20K: grey PNG annotations holding 0 (unlabelled), 1 and 150 among others; one greyscale JPEG image.
- VOC 2012 + SBD (``voc2012_aug``): the VOC tree, ``train_aug.txt`` in the ``/JPEGImages/<id>.jpg
  /SegmentationClassAug/<id>.png`` form, SBD's ``VOCaug/dataset/cls/<id>.mat`` files and lists; one train_aug id
  has only its ``.mat`` label and one val id only its ``SegmentationClass`` label.
- LiTS / KiTS19: five labelled int16 HU volumes of 32 x 32 x 6 (LiTS ``volume-<n>.nii`` stored (X, Y, Z) in two
  "Training Batch" folders; KiTS19 ``case_<5 digits>/imaging.nii.gz`` stored (Z, X, Y), plus one test case
  without segmentation); segmentations 0 / 1 (organ) / 2 (tumour), tumour in three slices of each case and an
  organ-only slice.

Everything is a deterministic function of ``seed``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "FAKE_CT_CASES",
    "FAKE_CT_SHAPE",
    "FAKE_FORMATS",
    "FAKE_VOC_AUG_MAT_ONLY",
    "FAKE_VOC_AUG_VOC_ONLY",
    "fake_ct_tumor_slices",
    "make_fake_dataset",
    "voc_palette",
]

FAKE_FORMATS: tuple[str, ...] = ("cityscapes", "voc2012", "kvasir_seg", "ade20k", "voc2012_aug", "lits", "kits")

#: Cityscapes labelIds written by the fake generator: all 34 ids plus 255 (the -1 id as stored).
FAKE_CITYSCAPES_IDS: tuple[int, ...] = (*range(34), 255)


def make_fake_dataset(fmt: str, out: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a tiny dataset tree of format ``fmt`` under ``out``.

    Args:
        fmt: one of :data:`FAKE_FORMATS`.
        out: root directory to create (the value to pass as ``dataset.root``).
        seed: seed of the random content.

    Returns:
        ``out`` as a Path.
    """
    writers = {
        "cityscapes": _make_cityscapes,
        "voc2012": _make_voc,
        "kvasir_seg": _make_kvasir,
        "ade20k": _make_ade20k,
        "voc2012_aug": _make_voc_aug,
        "lits": _make_lits,
        "kits": _make_kits,
    }
    if fmt not in writers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FAKE_FORMATS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writers[fmt](out, np.random.default_rng(seed))
    return out


def voc_palette() -> list[int]:
    """The VOC colour map as a flat 768-entry list (class i -> bits of i spread over R, G, B)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _noisy_image(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    """An RGB image loosely correlated with ``label`` (colour per class plus noise)."""
    lut = rng.integers(0, 256, (256, 3))
    image = lut[label] + rng.normal(0, 20, (*label.shape, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _make_cityscapes(out: Path, rng: np.random.Generator) -> None:
    h, w, block = 64, 128, 8
    cities = {"train": ["aachen", "bochum"], "val": ["frankfurt", "lindau"]}
    n_blocks = (h // block) * (w // block)
    for split, names in cities.items():
        for city in names:
            (out / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (out / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            for frame in range(2):
                stem = f"{city}_{frame:06d}_{19 + frame:06d}"
                offset = int(rng.integers(0, len(FAKE_CITYSCAPES_IDS)))
                codes = (np.arange(n_blocks) + offset) % len(FAKE_CITYSCAPES_IDS)
                blocks = np.asarray(FAKE_CITYSCAPES_IDS, np.uint8)[codes].reshape(h // block, w // block)
                ids = np.kron(blocks, np.ones((block, block), np.uint8))
                Image.fromarray(_noisy_image(rng, ids)).save(
                    out / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
                )
                gt = out / "gtFine" / split / city
                Image.fromarray(ids).save(gt / f"{stem}_gtFine_labelIds.png")
                # Siblings of the real archive that must not be mistaken for labelIds.
                Image.fromarray(_noisy_image(rng, ids)).save(gt / f"{stem}_gtFine_color.png")
                Image.fromarray(ids.astype(np.uint16) * 100).save(gt / f"{stem}_gtFine_instanceIds.png")
                (gt / f"{stem}_gtFine_polygons.json").write_text(
                    '{"imgHeight": 64, "imgWidth": 128, "objects": []}\n'
                )


def _voc_label(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    label = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(1, 21))
        mask = np.zeros((h, w), np.uint8)
        centre = (int(rng.integers(8, w - 8)), int(rng.integers(8, h - 8)))
        axes = (int(rng.integers(5, w // 3)), int(rng.integers(5, h // 3)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        # VOC marks object outlines (and hard regions) with 255: a 2-pixel band around each object.
        ring = cv2.dilate(mask, np.ones((5, 5), np.uint8)) - mask
        label[ring.astype(bool)] = 255
        label[mask.astype(bool)] = k
    return label


def _make_voc(out: Path, rng: np.random.Generator) -> None:
    base = out / "VOCdevkit" / "VOC2012"
    dirs = {name: base / name for name in ("JPEGImages", "SegmentationClass", "SegmentationClassAug")}
    for d in (*dirs.values(), base / "ImageSets" / "Segmentation"):
        d.mkdir(parents=True, exist_ok=True)
    sizes = [(64, 96), (96, 64), (72, 80)]
    split_ids = {
        "train": ["2007_000032", "2007_000039", "2008_000002"],
        "val": ["2007_000033", "2007_000042", "2009_000001"],
    }
    aug_only = ["2008_000008", "2010_000003"]  # SBD images without a VOC 2012 segmentation
    palette = voc_palette()
    for i, image_id in enumerate(split_ids["train"] + split_ids["val"] + aug_only):
        h, w = sizes[i % len(sizes)]
        label = _voc_label(rng, h, w)
        Image.fromarray(_noisy_image(rng, label)).save(dirs["JPEGImages"] / f"{image_id}.jpg", quality=90)
        if image_id not in aug_only:
            png = Image.fromarray(label)
            png.putpalette(palette)  # turns the 'L' image into a 'P' one with the same indices
            png.save(dirs["SegmentationClass"] / f"{image_id}.png")
        # SBD labels have no boundary band; store the same objects with 255 turned into background.
        Image.fromarray(np.where(label == 255, 0, label).astype(np.uint8)).save(
            dirs["SegmentationClassAug"] / f"{image_id}.png"
        )
    lists = {
        **split_ids,
        "trainval": split_ids["train"] + split_ids["val"],
        "train_aug": split_ids["train"] + aug_only,
    }
    for name, ids in lists.items():
        (base / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


def _make_kvasir(out: Path, rng: np.random.Generator, num_images: int = 10) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
    sizes = [(64, 80), (72, 64), (60, 90)]
    for i in range(num_images):
        name = "cju" + "".join(rng.choice(alphabet, 22))  # the archive's 25-character ids
        h, w = sizes[i % len(sizes)]
        mask = np.zeros((h, w), np.uint8)
        centre = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        axes = (int(rng.integers(6, w // 3)), int(rng.integers(6, h // 3)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        Image.fromarray(_noisy_image(rng, mask)).save(out / "images" / f"{name}.jpg", quality=90)
        # Real masks are 3-channel JPEGs; compression leaves values near, not at, 0 and 255.
        Image.fromarray(np.repeat(mask[..., None], 3, axis=2)).save(out / "masks" / f"{name}.jpg", quality=75)


def _make_ade20k(out: Path, rng: np.random.Generator) -> None:
    base = out / "ADEChallengeData2016"
    sizes = [(48, 64), (64, 56), (40, 72)]
    counts = {"training": 3, "validation": 2}
    prefix = {"training": "ADE_train", "validation": "ADE_val"}
    for split, count in counts.items():
        (base / "images" / split).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            h, w = sizes[i % len(sizes)]
            # 8 x 8 blocks of random values 0-150; the first row of blocks holds 0, 1 and 150 on every image.
            blocks = rng.integers(0, 151, (h // 8, w // 8)).astype(np.uint8)
            blocks[0, :3] = (0, 1, 150)
            label = np.kron(blocks, np.ones((8, 8), np.uint8))
            name = f"{prefix[split]}_{i + 1:08d}"
            image = _noisy_image(rng, label)
            if split == "training" and i == 1:  # the archive holds a few greyscale JPEGs
                Image.fromarray(image[..., 0]).save(base / "images" / split / f"{name}.jpg", quality=90)
            else:
                Image.fromarray(image).save(base / "images" / split / f"{name}.jpg", quality=90)
            Image.fromarray(label).save(base / "annotations" / split / f"{name}.png")


#: Ids of the ``voc2012_aug`` tree whose labels come from elsewhere than ``SegmentationClassAug``.
FAKE_VOC_AUG_MAT_ONLY = "2010_000003"  # train_aug id labelled only by SBD's .mat
FAKE_VOC_AUG_VOC_ONLY = "2009_000001"  # val id labelled only by VOC's SegmentationClass


def _make_voc_aug(out: Path, rng: np.random.Generator) -> None:
    _make_voc(out, rng)
    base = out / "VOCdevkit" / "VOC2012"
    sbd = out / "VOCdevkit" / "VOCaug" / "dataset"
    (sbd / "cls").mkdir(parents=True, exist_ok=True)
    lists = base / "ImageSets" / "Segmentation"
    train = lists.joinpath("train.txt").read_text().split()
    val = lists.joinpath("val.txt").read_text().split()
    aug_only = ["2008_000008", FAKE_VOC_AUG_MAT_ONLY]
    # SBD annotates some VOC train and val images too; its lists split them its own way.
    sbd_train, sbd_val = [train[0], aug_only[0]], [val[0], aug_only[1]]
    from scipy.io import savemat

    for image_id in sbd_train + sbd_val:
        with Image.open(base / "SegmentationClassAug" / f"{image_id}.png") as im:
            seg = np.array(im)
        savemat(
            sbd / "cls" / f"{image_id}.mat",
            {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros(1), "CategoriesPresent": np.unique(seg)[1:]}},
        )
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in sbd_train))
    (sbd / "val.txt").write_text("".join(f"{i}\n" for i in sbd_val))
    (base / "SegmentationClassAug" / f"{FAKE_VOC_AUG_MAT_ONLY}.png").unlink()
    (base / "SegmentationClassAug" / f"{FAKE_VOC_AUG_VOC_ONLY}.png").unlink()
    train_aug = sorted((set(train) | set(sbd_train) | set(sbd_val)) - set(val))
    (lists / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in train_aug)
    )


#: Case numbers of the fake CT trees (labelled ones; KiTS also has an unlabelled test case after them).
FAKE_CT_CASES: tuple[int, ...] = (0, 1, 2, 3, 4)
#: Shape of a fake CT volume as (X, Y, slices).
FAKE_CT_SHAPE: tuple[int, int, int] = (32, 32, 6)


def fake_ct_tumor_slices(case: int) -> list[int]:
    """The slices of fake case ``case`` that contain tumour (value 2); slice 5 holds organ only, 0 nothing."""
    return [1, 2, 3] if case % 2 == 0 else [2, 3, 4]


def _ct_case(rng: np.random.Generator, case: int) -> tuple[np.ndarray, np.ndarray]:
    """(HU int16, segmentation uint8) of a fake case, both (X, Y, slices)."""
    x, y, n = FAKE_CT_SHAPE
    yy, xx = np.mgrid[:x, :y]
    body = ((xx - y / 2) / (0.45 * y)) ** 2 + ((yy - x / 2) / (0.4 * x)) ** 2 <= 1
    organ = ((xx - 12) / 8.0) ** 2 + ((yy - 14) / 7.0) ** 2 <= 1
    tumour = ((xx - 12 - case % 3) / 3.0) ** 2 + ((yy - 14) / 3.0) ** 2 <= 1
    hu = np.full((x, y, n), -1000.0)
    seg = np.zeros((x, y, n), np.uint8)
    for k in range(n):
        hu[..., k][body] = 40.0
        if k >= 1:
            hu[..., k][organ] = 90.0
            seg[..., k][organ] = 1
        if k in fake_ct_tumor_slices(case):
            hu[..., k][tumour] = 160.0
            seg[..., k][tumour] = 2
    hu += rng.normal(0.0, 15.0, hu.shape)
    return np.round(hu).astype(np.int16), seg


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(data, affine)
    image.set_data_dtype(data.dtype)
    nib.save(image, str(path))


def _make_lits(out: Path, rng: np.random.Generator) -> None:
    affine = np.diag([-0.7, -0.7, 1.5, 1.0])
    for case in FAKE_CT_CASES:
        folder = out / ("Training Batch 1" if case < 2 else "Training Batch 2")
        folder.mkdir(parents=True, exist_ok=True)
        hu, seg = _ct_case(rng, case)
        _save_nifti(folder / f"volume-{case}.nii", hu, affine)
        _save_nifti(folder / f"segmentation-{case}.nii", seg, affine)


def _make_kits(out: Path, rng: np.random.Generator) -> None:
    # KiTS19 stores (slices, X, Y), with an affine that swaps the first and last axes.
    affine = np.array([[0.0, 0.0, -0.8, 0.0], [0.0, -0.8, 0.0, 0.0], [-3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    for case in (*FAKE_CT_CASES, FAKE_CT_CASES[-1] + 1):
        folder = out / f"case_{case:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        hu, seg = _ct_case(rng, case)
        _save_nifti(folder / "imaging.nii.gz", np.ascontiguousarray(np.moveaxis(hu, 2, 0)), affine)
        if case in FAKE_CT_CASES:  # the last one is a test case: imaging only
            _save_nifti(folder / "segmentation.nii.gz", np.ascontiguousarray(np.moveaxis(seg, 2, 0)), affine)
