"""Damaged files and invalid label values: one DatasetLayoutError naming the file, with and without workers."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch._utils import ExceptionWrapper
from torch.utils.data import DataLoader

from rankseg.data import (
    CityscapesSegmentation,
    DatasetLayoutError,
    KvasirSegmentation,
    SegmentationDataset,
    SyntheticSegmentation,
    VOCSegmentation,
)
from rankseg.data.fake import make_fake_dataset, voc_palette


def _truncate(path: Path) -> None:
    """Keep the first half of a valid file's bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    """Replace the file by random bytes (no image format recognises them)."""
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())


def _voc(root: Path) -> SegmentationDataset:
    return VOCSegmentation(make_fake_dataset("voc2012", root), split="val", crop_size=32)


def _cityscapes(root: Path) -> SegmentationDataset:
    return CityscapesSegmentation(make_fake_dataset("cityscapes", root), split="val", crop_size=32)


def _kvasir(root: Path) -> SegmentationDataset:
    return KvasirSegmentation(make_fake_dataset("kvasir_seg", root), split="train", crop_size=32)


def _synthetic(root: Path) -> SegmentationDataset:
    return SyntheticSegmentation(root, split="val", eval_geometry="full", num_train=2, num_val=3, image_size=32)


# (dataset factory, 0 = image / 1 = label, corruption, words expected in the message)
FILE_FAULTS: dict[str, tuple[Callable[[Path], SegmentationDataset], int, Callable[[Path], None], str]] = {
    "voc-truncated-jpeg-image": (_voc, 0, _truncate, "truncated"),
    "cityscapes-truncated-png-image": (_cityscapes, 0, _truncate, "truncated"),
    "kvasir-undecodable-image": (_kvasir, 0, _garbage, "cannot identify image file"),
    "voc-truncated-label-png": (_voc, 1, _truncate, "truncated"),
    "cityscapes-undecodable-label": (_cityscapes, 1, _garbage, "cannot identify image file"),
    "kvasir-truncated-jpeg-mask": (_kvasir, 1, _truncate, "truncated"),
    "synthetic-truncated-label": (_synthetic, 1, _truncate, "truncated"),
}


def _broken_dataset(name: str, tmp_path: Path) -> tuple[SegmentationDataset, Path, Path]:
    """The dataset of case ``name`` with sample 1 damaged; returns it, the bad file and the other file."""
    make, which, corrupt, _ = FILE_FAULTS[name]
    ds = make(tmp_path / "root")
    bad, other = ds.samples[1][which], ds.samples[1][1 - which]
    corrupt(bad)
    return ds, bad, other


@pytest.mark.parametrize("name", sorted(FILE_FAULTS))
def test_damaged_file_names_the_file(name: str, tmp_path: Path) -> None:
    ds, bad, other = _broken_dataset(name, tmp_path)
    ds[0]  # the undamaged samples still load
    with pytest.raises(DatasetLayoutError) as info:
        ds[1]
    message = str(info.value)
    kind = "label" if bad == ds.samples[1][1] else "image"
    assert str(bad) in message and str(other) not in message, message
    assert f"cannot read or decode this {kind} file" in message and FILE_FAULTS[name][3] in message
    assert message.count(str(bad)) == 1 and "Re-download or replace it" in message and "Traceback" not in message
    assert info.value.__cause__ is None and info.value.worker_traceback is None


def test_missing_file_names_the_label(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path / "syn")
    ds.samples[2][1].unlink()  # the synthetic loader does not check files up front
    with pytest.raises(DatasetLayoutError, match="missing label file") as info:
        ds[2]
    assert str(ds.samples[2][1]) in str(info.value) and "dataset.root=" in str(info.value)


def test_removal_hint_names_the_split_list(tmp_path: Path) -> None:
    ds, bad, _ = _broken_dataset("voc-truncated-label-png", tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"remove its id from ImageSets/Segmentation/val\.txt"):
        ds[1]


def _write_voc_label(path: Path, label: np.ndarray) -> None:
    png = Image.fromarray(label)
    png.putpalette(voc_palette())
    png.save(path)


def test_voc_label_value_outside_classes(tmp_path: Path) -> None:
    ds = _voc(tmp_path / "voc")
    label_path = ds.samples[1][1]
    with Image.open(label_path) as im:
        assert im.mode == "P"
        label = np.array(im)
    label[:4, :5] = 50  # 20 pixels of a value that is no VOC class
    _write_voc_label(label_path, label)
    with pytest.raises(DatasetLayoutError) as info:
        ds[1]
    message = str(info.value)
    assert str(label_path) in message and str(ds.samples[1][0]) not in message
    assert "label values 50 in 20 pixels" in message and "0-20" in message
    assert "Map them to 255 (ignore) or fix the mask" in message


def _write_synthetic_label(ds: SegmentationDataset, index: int, edit: Callable[[np.ndarray], None]) -> Path:
    path = ds.samples[index][1]
    label = np.array(Image.open(path))
    edit(label)
    Image.fromarray(label).save(path)
    return path


def test_synthetic_label_value_outside_classes(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path / "syn")
    path = _write_synthetic_label(ds, 0, lambda label: label.__setitem__((slice(0, 2), 0), 9))
    with pytest.raises(DatasetLayoutError) as info:
        ds[0]
    assert str(path) in str(info.value) and "label values 9 in 2 pixels" in str(info.value)
    assert "0-4" in str(info.value)


def test_many_invalid_values_are_listed_briefly(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path / "syn")

    def edit(label: np.ndarray) -> None:
        label[0, :26] = np.arange(30, 4, -1)  # 26 distinct invalid values, unsorted

    _write_synthetic_label(ds, 0, edit)
    with pytest.raises(DatasetLayoutError, match=r"label values 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, \.\.\. "):
        ds[0]
    with pytest.raises(DatasetLayoutError, match=r"\(26 distinct values\) in 26 pixels"):
        ds[0]


def test_ignore_index_is_accepted(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path / "syn")
    path = _write_synthetic_label(ds, 1, lambda label: label.__setitem__((slice(3, 6), slice(None)), 255))
    label = ds[1][1]
    assert (label[3:6] == 255).all() and label.max() == 255
    np.testing.assert_array_equal(label.numpy(), np.asarray(Image.open(path)))
    voc = VOCSegmentation(make_fake_dataset("voc2012", tmp_path / "voc"), split="val", eval_geometry="full")
    assert any((voc[i][1] == 255).any() for i in range(len(voc)))  # the VOC boundary band


def _first_error(ds: SegmentationDataset, num_workers: int) -> DatasetLayoutError:
    try:
        for _ in DataLoader(ds, batch_size=1, num_workers=num_workers):
            pass
    except DatasetLayoutError as err:
        # The traceback holds the loader iterator; dropping it stops the workers now, not at exit.
        err.__traceback__ = None
        return err
    raise AssertionError("no DatasetLayoutError")


@pytest.mark.parametrize("name", ["voc-truncated-jpeg-image", "voc-truncated-label-png", "kvasir-undecodable-image"])
def test_worker_error_keeps_the_original_message(name: str, tmp_path: Path) -> None:
    ds, bad, _ = _broken_dataset(name, tmp_path)
    with pytest.raises(DatasetLayoutError) as direct:
        ds[1]
    err = _first_error(ds, num_workers=2)
    assert str(err) == str(direct.value) and str(bad) in str(err) and "Traceback" not in str(err)
    assert "in DataLoader worker process" in err.worker_traceback  # the worker's text is still there
    assert str(_first_error(ds, num_workers=0)) == str(direct.value)


def test_worker_error_for_invalid_label_value(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path / "syn")
    path = _write_synthetic_label(ds, 2, lambda label: label.__setitem__((0, 0), 9))
    err = _first_error(ds, num_workers=2)
    assert str(path) in str(err) and "label values 9 in 1 pixel are" in str(err)
    assert "Traceback" not in str(err) and "Caught" not in str(err)


def test_reraise_text_is_reduced_to_the_original_message() -> None:
    # torch's own wrapper, with a chained cause and a message of two lines.
    original = "VOCSegmentation (split 'val'): /data/x.png: broken.\nSecond line: with a colon"
    try:
        try:
            raise OSError("image file is truncated")
        except OSError as cause:
            raise DatasetLayoutError(original) from cause
    except DatasetLayoutError:
        wrapper = ExceptionWrapper(sys.exc_info(), where="in DataLoader worker process 3")
    with pytest.raises(DatasetLayoutError) as info:
        wrapper.reraise()
    assert str(info.value) == original and "OSError" in info.value.worker_traceback
    # Other texts are kept as they are, and the error survives pickling (worker -> main process).
    for text in ("Caught DatasetLayoutError somewhere, but no traceback", "plain message"):
        assert str(DatasetLayoutError(text)) == text
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is DatasetLayoutError and str(again) == original
    assert isinstance(info.value, ValueError)


def test_label_check_is_done_before_the_transform(tmp_path: Path) -> None:
    # A training crop could cut the bad pixels away; the whole label file is checked.
    ds = SyntheticSegmentation(tmp_path / "syn", split="train", crop_size=8, train=True, num_train=2, num_val=1)
    _write_synthetic_label(ds, 0, lambda label: label.__setitem__((63, 63), 77))
    torch.manual_seed(0)
    for _ in range(3):
        with pytest.raises(DatasetLayoutError, match="label values 77"):
            ds[0]
