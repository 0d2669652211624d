"""Train augmentation and evaluation geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from rankseg.data import SyntheticSegmentation, build_eval_transform, build_train_transform

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _run(transform, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = transform(image=image, mask=label)
    return out["image"], out["mask"]


def test_eval_resizes_shorter_side_then_centre_crops() -> None:
    # Wide image: label value = column // 2, so after halving, resized column j holds j.
    wide = np.tile((np.arange(128) // 2).astype(np.uint8), (64, 1))
    image, label = _run(build_eval_transform(32, MEAN, STD), np.zeros((64, 128, 3), np.uint8), wide)
    assert image.shape == (32, 32, 3) and image.dtype == np.float32 and label.shape == (32, 32)
    # 64x128 -> 32x64 -> columns 16..47 of the resized map.
    np.testing.assert_array_equal(label, np.tile(np.arange(16, 48, dtype=np.uint8), (32, 1)))
    # Tall image, same along rows.
    tall = np.tile((np.arange(128) // 2).astype(np.uint8)[:, None], (1, 64))
    _, label = _run(build_eval_transform(32, MEAN, STD), np.zeros((128, 64, 3), np.uint8), tall)
    np.testing.assert_array_equal(label, np.tile(np.arange(16, 48, dtype=np.uint8)[:, None], (1, 32)))


def test_eval_upscales_small_images_and_normalises() -> None:
    image = np.full((20, 30, 3), (255, 102, 0), np.uint8)
    label = np.ones((20, 30), np.uint8)
    out_image, out_label = _run(build_eval_transform(40, MEAN, STD), image, label)
    assert out_image.shape == (40, 40, 3) and (out_label == 1).all()
    expected = (np.array([1.0, 0.4, 0.0]) - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(out_image, np.broadcast_to(expected, out_image.shape), atol=1e-5)


def test_eval_full_geometry_keeps_size() -> None:
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    label = np.random.default_rng(1).integers(0, 5, (37, 53), dtype=np.uint8)
    out_image, out_label = _run(build_eval_transform(None, MEAN, STD, geometry="full"), image, label)
    np.testing.assert_array_equal(out_label, label)
    np.testing.assert_allclose(out_image * STD + np.array(MEAN), image / 255.0, atol=1e-5)
    with pytest.raises(ValueError):
        build_eval_transform(32, MEAN, STD, geometry="tiles")


@pytest.mark.parametrize(("quirks", "fill"), [(False, 255), (True, 0)])
def test_train_pads_with_ignore_or_reference_zero(quirks: bool, fill: int) -> None:
    transform = build_train_transform(40, MEAN, STD, rotate_limit=0, reference_quirks=quirks)
    image, label = _run(transform, np.full((20, 30, 3), 200, np.uint8), np.ones((20, 30), np.uint8))
    assert image.shape == (40, 40, 3) and image.dtype == np.float32
    assert (label == 1).sum() == 600 and (label == fill).sum() == 1600 - 600
    assert (label[:20] != fill).any() and (label[20:] == fill).all()  # padding is at the bottom


def test_train_rotation_fills_corners_with_ignore() -> None:
    transform = build_train_transform(64, MEAN, STD, rotate_limit=10)
    transform.set_random_seed(0)
    labels = [
        _run(transform, np.zeros((64, 64, 3), np.uint8), np.ones((64, 64), np.uint8))[1] for _ in range(8)
    ]
    assert all(set(np.unique(lab).tolist()) <= {1, 255} for lab in labels)
    assert sum((lab == 255).any() for lab in labels) >= 6  # only a near-zero angle leaves no corner
    assert max((lab == 255).mean() for lab in labels) < 0.1  # at most 10 degrees


def test_train_random_crop_of_large_image() -> None:
    transform = build_train_transform(32, MEAN, STD)
    label = np.random.default_rng(0).integers(0, 3, (80, 120), dtype=np.uint8)
    image, out = _run(transform, np.zeros((80, 120, 3), np.uint8), label)
    assert image.shape == (32, 32, 3) and out.shape == (32, 32)


def test_dataset_items_and_reproducible_augmentation(tmp_path) -> None:
    kwargs = dict(root=tmp_path / "syn", crop_size=48, num_train=6, num_val=2, image_size=64)
    train = SyntheticSegmentation(split="train", train=True, **kwargs)
    image, label = train[0]
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, 48, 48)
    assert label.dtype == torch.int64 and tuple(label.shape) == (48, 48)
    torch.manual_seed(7)
    first = [SyntheticSegmentation(split="train", train=True, **kwargs)[i][1] for i in (0, 0)]
    torch.manual_seed(7)
    second = [SyntheticSegmentation(split="train", train=True, **kwargs)[i][1] for i in (0, 0)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    val = SyntheticSegmentation(split="val", train=False, **kwargs)
    assert torch.equal(val[1][0], val[1][0])


def test_dataloader_workers_draw_different_augmentations(tmp_path) -> None:
    # Forked workers would otherwise share one albumentations RNG state and repeat each other.
    ds = SyntheticSegmentation(
        tmp_path / "syn", split="train", crop_size=64, train=True, num_train=2, num_val=1
    )
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, [0] * 4), batch_size=1, num_workers=2)
    torch.manual_seed(0)
    first = [label for _, label in loader]
    assert not any(torch.equal(first[i], first[j]) for i in range(4) for j in range(i + 1, 4))
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(first, [label for _, label in loader]))


def test_reference_geometry_rounds_like_the_reference_tester() -> None:
    """``eval_geometry="reference"`` against the reference tester's steps written out here with cv2, PIL and
    torchvision (float32 bilinear resize, longer side truncated, uint8 truncation, PIL nearest label, centre crop
    at (size - crop) // 2, ToTensor + Normalize)."""
    from PIL import Image
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    for shape, crop in (((37, 53), 24), ((61, 29), 20), ((20, 20), 31)):
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        label = rng.integers(0, 21, shape, dtype=np.uint8)
        out_image, out_label = _run(build_eval_transform(crop, MEAN, STD, geometry="reference"), image, label)
        h, w = shape
        size = (crop, int(crop * w / h)) if h < w else (int(crop * h / w), crop)
        resized = cv2.resize(image.astype(np.float32), size[::-1], interpolation=cv2.INTER_LINEAR)
        ref_label = np.asarray(Image.fromarray(label.astype(np.int32)).resize(size[::-1], resample=Image.NEAREST))
        top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
        pixels = Image.fromarray(np.uint8(resized[top : top + crop, left : left + crop]))
        expected = T.Normalize(MEAN, STD)(T.ToTensor()(pixels)).numpy().transpose(1, 2, 0)
        np.testing.assert_array_equal(out_label, ref_label[top : top + crop, left : left + crop])
        np.testing.assert_allclose(out_image, expected, atol=1e-6)
        # Against the default geometry: the same crop up to rounding (at most one grey level where sizes agree).
        crop_image, _ = _run(build_eval_transform(crop, MEAN, STD), image, label)
        if size[0] == round(crop * h / min(h, w)) and size[1] == round(crop * w / min(h, w)):
            assert np.abs((crop_image - out_image) * np.array(STD)).max() <= 1.01 / 255
