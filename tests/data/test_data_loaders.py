"""Loaders on fake trees in the real on-disk formats; labels checked pixel by pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rankseg.data import (
    CityscapesSegmentation,
    DatasetLayoutError,
    KvasirSegmentation,
    VOCSegmentation,
)
from rankseg.data.fake import make_fake_dataset

# Written out here from the protocol (§6), independently of rankseg.data.cityscapes.
_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
             24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip


def _expected_train_ids(label_ids: np.ndarray) -> np.ndarray:
    out = np.full(label_ids.shape, 255, np.int64)
    for label_id, train_id in _TRAIN_ID.items():
        out[label_ids == label_id] = train_id
    return out


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fake")
    for fmt in ("cityscapes", "voc2012", "kvasir_seg"):
        make_fake_dataset(fmt, root / fmt)
    return root


def _denormalise(image: torch.Tensor, mean: list[float], std: list[float]) -> np.ndarray:
    x = image.numpy().transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)
    return x * 255.0


# --- Cityscapes ---------------------------------------------------------------------------------
def test_cityscapes_finds_only_label_ids(fake_root: Path) -> None:
    ds = CityscapesSegmentation(fake_root / "cityscapes", split="val", crop_size=32)
    assert len(ds) == 4  # 2 cities x 2 frames; color/instanceIds/polygons siblings skipped
    for image_path, label_path in ds.samples:
        assert image_path.name.endswith("_leftImg8bit.png")
        assert label_path.name == image_path.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        assert label_path.parent.name == image_path.parent.name
    assert ds.num_classes == 19 and ds.classes_of_interest == list(range(19))
    assert ds.ignore_index == 255 and ds.class_names[6] == "traffic light"


def test_cityscapes_mapping_pixel_by_pixel(fake_root: Path) -> None:
    ds = CityscapesSegmentation(fake_root / "cityscapes", split="train", eval_geometry="full")
    for i, (image_path, label_path) in enumerate(ds.samples):
        raw = np.asarray(Image.open(label_path))
        image, label = ds[i]
        assert label.dtype == torch.int64 and label.shape == raw.shape
        np.testing.assert_array_equal(label.numpy(), _expected_train_ids(raw))
        np.testing.assert_allclose(
            _denormalise(image, ds.mean, ds.std), np.asarray(Image.open(image_path)), atol=1e-3
        )


def test_cityscapes_known_ids_at_known_pixels(tmp_path: Path) -> None:
    root = make_fake_dataset("cityscapes", tmp_path / "cs")
    label_path = root / "gtFine/val/lindau/lindau_000001_000020_gtFine_labelIds.png"
    ids = np.zeros((64, 128), np.uint8)
    ids[:, :10] = 7  # road
    ids[:, 10:20] = 33  # bicycle
    ids[:, 20:30] = 0  # unlabeled
    ids[:, 30:40] = 1  # ego vehicle
    ids[:, 40:50] = 9  # parking (ignored in the 19-class setting)
    ids[:, 50:60] = 255  # license plate, id -1 stored as 255
    ids[:, 60:70] = 26  # car
    ids[:, 70:] = 23  # sky
    Image.fromarray(ids).save(label_path)
    ds = CityscapesSegmentation(root, split="val", eval_geometry="full")
    index = [lp for _, lp in ds.samples].index(label_path)
    label = ds[index][1].numpy()
    expected_by_column_block = [0, 18, 255, 255, 255, 255, 13]
    for block, train_id in enumerate(expected_by_column_block):
        assert (label[:, block * 10 : block * 10 + 10] == train_id).all()
    assert (label[:, 70:] == 10).all()


def test_cityscapes_city_lists_must_agree(tmp_path: Path) -> None:
    root = make_fake_dataset("cityscapes", tmp_path / "cs")
    (root / "gtFine" / "val" / "lindau").rename(root / "gtFine" / "val" / "munster")
    with pytest.raises(DatasetLayoutError, match="city lists differ"):
        CityscapesSegmentation(root, split="val", crop_size=32)


# --- VOC ----------------------------------------------------------------------------------------
def test_voc_reads_palette_indices_and_keeps_boundary(fake_root: Path) -> None:
    ds = VOCSegmentation(fake_root / "voc2012", split="val", eval_geometry="full")
    assert len(ds) == 3 and ds.num_classes == 21 and ds.classes_of_interest == list(range(1, 21))
    seen = set()
    for i, (_, label_path) in enumerate(ds.samples):
        with Image.open(label_path) as im:
            assert im.mode == "P"
            raw = np.array(im)
        image, label = ds[i]
        np.testing.assert_array_equal(label.numpy(), raw.astype(np.int64))
        assert tuple(image.shape) == (3, *raw.shape)
        seen |= set(np.unique(raw).tolist())
    assert 255 in seen and seen - {0, 255} and max(seen - {255}) <= 20


def test_voc_rejects_rgb_label(tmp_path: Path) -> None:
    root = make_fake_dataset("voc2012", tmp_path / "voc")
    label_path = root / "VOCdevkit/VOC2012/SegmentationClass/2007_000033.png"
    Image.open(label_path).convert("RGB").save(label_path)
    ds = VOCSegmentation(root, split="val", crop_size=32)
    with pytest.raises(DatasetLayoutError, match="2007_000033.png"):
        ds[0]


def test_voc_train_aug(fake_root: Path, tmp_path: Path) -> None:
    ds = VOCSegmentation(fake_root / "voc2012", split="train_aug", eval_geometry="full")
    assert len(ds) == 5
    assert all(lp.parent.name == "SegmentationClassAug" for _, lp in ds.samples)
    assert all(255 not in ds[i][1] for i in range(len(ds)))
    # Some distributions list "<image path> <label path>" pairs instead of ids.
    root = make_fake_dataset("voc2012", tmp_path / "voc")
    list_file = root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt"
    ids = list_file.read_text().split()
    list_file.write_text("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids))
    assert [
        s[0].stem for s in VOCSegmentation(root / "VOCdevkit", split="train_aug", crop_size=32).samples
    ] == ids


# --- Kvasir -------------------------------------------------------------------------------------
def test_kvasir_masks_thresholded(tmp_path: Path) -> None:
    root = make_fake_dataset("kvasir_seg", tmp_path / "kv")
    name = sorted(p.stem for p in (root / "images").glob("*.jpg"))[0]
    truth = np.zeros((64, 80), np.uint8)
    truth[:, 30:] = 1
    truth[10:20, 5:12] = 1
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(root / "images" / f"{name}.jpg")
    Image.fromarray(np.repeat(truth[..., None] * 255, 3, axis=2)).save(
        root / "masks" / f"{name}.jpg", quality=50
    )
    raw = np.asarray(Image.open(root / "masks" / f"{name}.jpg").convert("L"))
    assert not np.isin(raw, [0, 255]).all()  # the JPEG did leave artefacts
    for split in ("train", "val"):
        ds = KvasirSegmentation(root, split=split, eval_geometry="full")
        if name in [s[0].stem for s in ds.samples]:
            label = ds[[s[0].stem for s in ds.samples].index(name)][1]
            np.testing.assert_array_equal(label.numpy(), truth.astype(np.int64))
        for i in range(len(ds)):
            assert set(ds[i][1].unique().tolist()) <= {0, 1}
    assert ds.classes_of_interest == [1] and ds.class_names == ["background", "polyp"]


def test_kvasir_split_written_once_and_reread(tmp_path: Path) -> None:
    root = make_fake_dataset("kvasir_seg", tmp_path / "kv")
    train = KvasirSegmentation(root, split="train", crop_size=32, train=True)
    val = KvasirSegmentation(root, split="val", crop_size=32)
    assert (len(train), len(val)) == (9, 1)
    split_dir = root / "splits"
    assert sorted(p.name for p in split_dir.iterdir()) == ["train.txt", "val.txt"]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    names = {s[0].stem for s in train.samples} | {s[0].stem for s in val.samples}
    assert names == {p.stem for p in (root / "images").glob("*.jpg")}
    # An existing split is read back, whatever seed is asked for now.
    (split_dir / "val.txt").write_text(f"{sorted(names)[3]}\n")
    again = KvasirSegmentation(root, split="val", crop_size=32, split_seed=123)
    assert [s[0].stem for s in again.samples] == [sorted(names)[3]]


def test_kvasir_mismatched_names(tmp_path: Path) -> None:
    root = make_fake_dataset("kvasir_seg", tmp_path / "kv")
    next((root / "masks").glob("*.jpg")).unlink()
    with pytest.raises(DatasetLayoutError, match="differ"):
        KvasirSegmentation(root, split="val", crop_size=32)


# --- bad roots ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (CityscapesSegmentation, "leftImg8bit/val/<city>/*_leftImg8bit.png"),
        (VOCSegmentation, "VOCdevkit/VOC2012"),
        (KvasirSegmentation, "ROOT/images/<name>.jpg"),
    ],
)
def test_missing_root_names_path_and_layout(tmp_path: Path, cls: type, expected: str) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetLayoutError) as info:
        cls(missing, split="val", crop_size=32)
    message = str(info.value)
    assert str(missing) in message and expected in message and "dataset.root=" in message
    assert isinstance(info.value, ValueError)


def test_malformed_roots(fake_root: Path, tmp_path: Path) -> None:
    # A VOC tree is not a Cityscapes tree, and the message says where it looked.
    with pytest.raises(DatasetLayoutError, match=str(fake_root / "voc2012" / "leftImg8bit")):
        CityscapesSegmentation(fake_root / "voc2012", split="val", crop_size=32)
    root = make_fake_dataset("voc2012", tmp_path / "voc")
    (root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="val.txt"):
        VOCSegmentation(root, split="val", crop_size=32)
