"""Generation of the synthetic dataset: deterministic, fast, atomic, with the expected content."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rankseg.data import DatasetLayoutError, SyntheticSegmentation, generate_synthetic


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_same_bytes_twice(tmp_path: Path) -> None:
    a = generate_synthetic(tmp_path / "a", num_train=12, num_val=4)
    b = generate_synthetic(tmp_path / "b", num_train=12, num_val=4)
    assert _digest(a) == _digest(b) and len(_digest(a)) == 2 * 16 + 3
    c = generate_synthetic(tmp_path / "c", num_train=12, num_val=4, seed=1)
    assert _digest(a) != _digest(c)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporary leftovers


def test_default_generation_is_fast_and_varied(tmp_path: Path) -> None:
    start = time.perf_counter()
    train = SyntheticSegmentation(tmp_path / "syn", split="train", crop_size=64, train=True)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"generation took {elapsed:.1f} s"
    val = SyntheticSegmentation(tmp_path / "syn", split="val", crop_size=64)
    assert (len(train), len(val)) == (400, 100)
    assert (
        val.num_classes == 5
        and val.classes_of_interest == [1, 2, 3, 4]
        and val.class_names[0] == "background"
    )
    labels = np.stack([np.asarray(Image.open(lp)) for _, lp in val.samples])
    assert labels.shape == (100, 64, 64) and labels.max() <= 4
    frequency = np.bincount(labels.ravel(), minlength=5) / labels.size
    assert 0.7 < frequency[0] < 0.97 and (frequency[1:] > 0.002).all()
    # Specks are small objects: far fewer pixels than images that contain them.
    assert frequency[4] < frequency[1] and (labels == 4).any(axis=(1, 2)).mean() > 0.5
    images = np.stack([np.asarray(Image.open(ip)) for ip, _ in val.samples]) / 255.0
    np.testing.assert_allclose(images.reshape(-1, 3).mean(0), val.mean, atol=0.03)
    np.testing.assert_allclose(images.reshape(-1, 3).std(0), val.std, atol=0.03)


def test_existing_root_reused_or_rejected(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "syn", num_train=3, num_val=2)
    before = _digest(root)
    assert generate_synthetic(root, num_train=3, num_val=2) == root and _digest(root) == before
    with pytest.raises(DatasetLayoutError, match="meta.json"):
        generate_synthetic(root, num_train=4, num_val=2)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a dataset")
    with pytest.raises(DatasetLayoutError, match=str(other)):
        SyntheticSegmentation(other, split="val", crop_size=64)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(SyntheticSegmentation(empty, split="val", crop_size=64, num_train=2, num_val=3)) == 3
