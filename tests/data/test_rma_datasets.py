"""The RankSEG-RMA datasets on fake trees in the real on-disk formats: ADE20K, VOC 2012 + SBD, LiTS and KiTS19.

Label mappings are checked against values written out here by hand (not against the loaders' tables); CT
windowing, the fold rule and the slice selection against the RMA repository's rules; damaged files must give
one DatasetLayoutError naming the file; per-case iteration must hold at most one chunk of slices.
"""

from __future__ import annotations

import gzip
import os
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from rankseg.data import (
    ADE20KSegmentation,
    CaseBatchSampler,
    DatasetLayoutError,
    KiTSSegmentation,
    LiTSSegmentation,
    VOCAugSegmentation,
    iter_case_chunks,
    window_ct,
)
from rankseg.data import ct as ct_module
from rankseg.data.ct import read_ct_slices, rma_val_cases
from rankseg.data.fake import (
    FAKE_CT_CASES,
    FAKE_CT_SHAPE,
    FAKE_VOC_AUG_MAT_ONLY,
    FAKE_VOC_AUG_VOC_ONLY,
    fake_ct_tumor_slices,
    make_fake_dataset,
)
from rankseg.data.voc_aug import read_sbd_mat


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rma_fake")
    for fmt in ("ade20k", "voc2012_aug", "lits", "kits"):
        make_fake_dataset(fmt, root / fmt)
    return root


def _copy(fmt: str, tmp_path: Path) -> Path:
    return make_fake_dataset(fmt, tmp_path / fmt)


# --- ADE20K -------------------------------------------------------------------------------------------------
def test_ade20k_reduce_zero_label_pixel_by_pixel(fake: Path) -> None:
    ds = ADE20KSegmentation(fake / "ade20k", split="train", eval_geometry="full")
    assert len(ds) == 3 and ds.num_classes == 150 and ds.classes_of_interest == list(range(150))
    assert ds.class_names[0] == "wall" and ds.class_names[149] == "flag" and len(set(ds.class_names)) == 150
    for i, (_, label_path) in enumerate(ds.samples):
        raw = np.asarray(Image.open(label_path)).astype(np.int64)
        image, label = ds[i]
        np.testing.assert_array_equal(label.numpy(), np.where(raw == 0, 255, raw - 1))
        assert tuple(image.shape) == (3, *raw.shape)  # the greyscale JPEG comes out as RGB too
        # The fake's first block row holds annotations 0, 1, 150 in columns 0-7, 8-15, 16-23.
        assert (label[:8, :8] == 255).all() and (label[:8, 8:16] == 0).all() and (label[:8, 16:24] == 149).all()


def test_ade20k_layout_variants_and_bad_values(fake: Path, tmp_path: Path) -> None:
    root = _copy("ade20k", tmp_path)
    for r in (root, root / "ADEChallengeData2016"):
        assert len(ADE20KSegmentation(r, split="val", crop_size=32)) == 2
    rma = tmp_path / "rma_data_dir"
    (rma / "ade").mkdir(parents=True)
    (root / "ADEChallengeData2016").rename(rma / "ade" / "ADEChallengeData2016")  # RMA: data_dir/ade/...
    ds = ADE20KSegmentation(rma, split="val", eval_geometry="full")
    label_path = ds.samples[1][1]
    raw = np.asarray(Image.open(label_path)).copy()
    raw[0, 0] = 200  # not an ADE20K class (the largest is 150)
    Image.fromarray(raw).save(label_path)
    ds[0]
    with pytest.raises(DatasetLayoutError, match=rf"{label_path.name}.*label values 199 in 1 pixel"):
        ds[1]
    label_path.unlink()
    with pytest.raises(DatasetLayoutError, match=f"missing annotation for {label_path.stem}.jpg"):
        ADE20KSegmentation(rma, split="val", crop_size=32)


@pytest.mark.parametrize("cls, fmt", [(ADE20KSegmentation, "ade20k"), (VOCAugSegmentation, "voc2012_aug")])
def test_rma_training_augmentation(cls, fmt: str, fake: Path) -> None:
    """RMA's augmentation: no rotation; padding split evenly, with the mean colour (0 after normalisation) and 255."""
    split = "train" if fmt == "ade20k" else "train_aug"
    ds = cls(fake / fmt, split=split, crop_size=112, train=True, scale_range=(1.0, 1.0))
    reference = cls(fake / fmt, split=split, eval_geometry="full")
    ds.set_augmentation_epoch(0, 0)
    for i in range(len(ds)):
        image, label = ds[i]
        truth = reference[i][1]
        h, w = truth.shape
        top, left = (112 - h) // 2, (112 - w) // 2
        inside = label[top : top + h, left : left + w]
        assert torch.equal(inside, truth) or torch.equal(inside, truth.flip(1))  # flipped or not, never rotated
        pad = torch.ones(112, 112, dtype=torch.bool)
        pad[top : top + h, left : left + w] = False
        assert (label[pad] == 255).all() and image[:, pad].abs().max() < 0.02
    rankseg = cls(fake / fmt, split=split, crop_size=32, train=True, augmentation="rankseg")
    assert rankseg.augmentation == "rankseg" and "Rotate" in [type(t).__name__ for t in rankseg.transform.transforms]
    with pytest.raises(ValueError, match="augmentation must be one of"):
        cls(fake / fmt, split=split, crop_size=32, train=True, augmentation="mmseg")


# --- VOC 2012 + SBD -----------------------------------------------------------------------------------------
def test_voc_aug_lists_and_label_sources(fake: Path) -> None:
    train = VOCAugSegmentation(fake / "voc2012_aug", split="train_aug", eval_geometry="full")
    base = fake / "voc2012_aug" / "VOCdevkit" / "VOC2012"
    lists = base / "ImageSets" / "Segmentation"
    voc_train, voc_val = (lists.joinpath(f"{s}.txt").read_text().split() for s in ("train", "val"))
    sbd = fake / "voc2012_aug" / "VOCdevkit" / "VOCaug" / "dataset"
    sbd_ids = sbd.joinpath("train.txt").read_text().split() + sbd.joinpath("val.txt").read_text().split()
    ids = [image.stem for image, _ in train.samples]
    assert ids == sorted((set(voc_train) | set(sbd_ids)) - set(voc_val))  # the 10582 rule
    sources = {image.stem: label.relative_to(fake / "voc2012_aug") for image, label in train.samples}
    assert sources[FAKE_VOC_AUG_MAT_ONLY] == Path(f"VOCdevkit/VOCaug/dataset/cls/{FAKE_VOC_AUG_MAT_ONLY}.mat")
    assert all(str(p).startswith("VOCdevkit/VOC2012/SegmentationClassAug/") for i, p in sources.items()
               if i != FAKE_VOC_AUG_MAT_ONLY)  # fmt: skip
    for i in range(len(train)):
        label = train[i][1]
        assert label.dtype == torch.int64 and set(label.unique().tolist()) <= set(range(21))  # SBD: no 255
    val = VOCAugSegmentation(fake / "voc2012_aug", split="val", eval_geometry="full")
    assert [image.stem for image, _ in val.samples] == voc_val
    by_id = {image.stem: (i, label) for i, (image, label) in enumerate(val.samples)}
    index, label_path = by_id[FAKE_VOC_AUG_VOC_ONLY]
    assert label_path.parent.name == "SegmentationClass"
    np.testing.assert_array_equal(val[index][1].numpy(), np.asarray(Image.open(label_path)).astype(np.int64))
    assert 255 in val[index][1]  # VOC's own boundary band is kept as ignore


def test_voc_aug_reads_sbd_mat_files(fake: Path, tmp_path: Path) -> None:
    sbd_cls = fake / "voc2012_aug" / "VOCdevkit" / "VOCaug" / "dataset" / "cls"
    aug = fake / "voc2012_aug" / "VOCdevkit" / "VOC2012" / "SegmentationClassAug"
    for mat in sorted(sbd_cls.glob("*.mat")):
        seg = read_sbd_mat(mat)
        assert seg.dtype == np.uint8 and seg.ndim == 2
        if (aug / f"{mat.stem}.png").is_file():  # the fake's .mat holds the same map as the PNG
            np.testing.assert_array_equal(seg, np.asarray(Image.open(aug / f"{mat.stem}.png")))
    root = _copy("voc2012_aug", tmp_path)
    bad = root / "VOCdevkit" / "VOCaug" / "dataset" / "cls" / f"{FAKE_VOC_AUG_MAT_ONLY}.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, damaged" + bytes(100))
    ds = VOCAugSegmentation(root, split="train_aug", crop_size=32)
    index = [s[1] for s in ds.samples].index(bad)
    with pytest.raises(DatasetLayoutError, match=rf"{bad}: cannot read or decode this label file"):
        ds[index]


def test_voc_aug_list_fallbacks_and_label_order(fake: Path, tmp_path: Path) -> None:
    root = _copy("voc2012_aug", tmp_path)
    lists = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    expected = [s[0].stem for s in VOCAugSegmentation(root, split="train_aug", crop_size=32).samples]
    (lists / "train_aug.txt").unlink()
    # no list file: derived from VOC's and SBD's lists as mmsegmentation's voc_aug.py does
    assert [s[0].stem for s in VOCAugSegmentation(root, split="train_aug", crop_size=32).samples] == expected
    (lists / "aug.txt").write_text("".join(f"{i}\n" for i in expected[:2]))  # the converter's output wins
    assert [s[0].stem for s in VOCAugSegmentation(root, split="train_aug", crop_size=32).samples] == expected[:2]
    val = VOCAugSegmentation(root, split="val", crop_size=32, label_dirs=["SegmentationClass", "SegmentationClassAug"])
    assert all(label.parent.name == "SegmentationClass" for _, label in val.samples)
    (root / "VOCdevkit" / "VOCaug").rename(root / "elsewhere")
    (lists / "aug.txt").unlink()
    with pytest.raises(
        DatasetLayoutError, match=r"missing split list, no aug.txt.*no SBD directory.* at .*train_aug.txt"
    ):
        VOCAugSegmentation(root, split="train_aug", crop_size=32)


# --- CT: windowing and folds ---------------------------------------------------------------------------------
def test_window_ct_hand_values() -> None:
    hu = np.array([-1000, -60, -20, 40, 90, 140, 160, 3000])
    # LiTS window [-60, 140]: 2 (hu + 60) / 200 - 1, clipped
    np.testing.assert_allclose(window_ct(hu, -60, 140), [-1, -1, -0.6, 0, 0.5, 1, 1, 1], atol=1e-7)
    # KiTS window [-200, 300]: 2 (hu + 200) / 500 - 1
    np.testing.assert_allclose(window_ct(np.array([-300, -200, 0, 50, 175, 300]), -200, 300),
                               [-1, -1, -0.2, 0, 0.5, 1], atol=1e-7)  # fmt: skip
    assert window_ct(hu, -60, 140).dtype == np.float32
    with pytest.raises(ValueError, match="low < high"):
        window_ct(hu, 10, 10)


def test_rma_fold_rule() -> None:
    # RMA exp/datas/datasets/{lits,kits}.py: fold_size = num_cases // 5; the last fold takes the rest
    assert rma_val_cases(131, 0) == range(0, 26) and rma_val_cases(131, 3) == range(78, 104)
    assert rma_val_cases(131, 4) == range(104, 131)
    assert rma_val_cases(210, 1) == range(42, 84) and rma_val_cases(210, 4) == range(168, 210)
    for n in (131, 210, 7):
        folds = [set(rma_val_cases(n, f)) for f in range(5)]
        assert set().union(*folds) == set(range(n)) and sum(map(len, folds)) == n
    with pytest.raises(ValueError):
        rma_val_cases(131, 5)


@pytest.mark.parametrize("cls, fmt", [(LiTSSegmentation, "lits"), (KiTSSegmentation, "kits")])
def test_ct_fold_membership_and_tumour_slices(cls, fmt: str, fake: Path) -> None:
    for fold in range(5):
        val = cls(fake / fmt, split="val", fold=fold, num_cases=5, slice_size=None, crop_size=16)
        train = cls(fake / fmt, split="train", fold=fold, num_cases=5, slice_size=None, crop_size=16, train=True)
        assert list(val.cases) == [fold]  # fold_size 1: fold f validates case f
        assert list(train.cases) == [c for c in FAKE_CT_CASES if c != fold]  # KiTS's unlabelled case 5 skipped
        for ds in (val, train):
            for case, indices in ds.cases.items():
                assert [ds.samples[i].index for i in indices] == fake_ct_tumor_slices(case)
                assert [ds.samples[i].id for i in indices] == [f"{case}_{k}" for k in fake_ct_tumor_slices(case)]
    every = cls(fake / fmt, split="val", fold=2, num_cases=5, slices="all", slice_size=None, crop_size=16)
    assert [every.samples[i].index for i in every.cases[2]] == list(range(FAKE_CT_SHAPE[2]))
    # the real case counts: five fake cases all fall into fold 0 of LiTS's 131 (0-25) and KiTS's 210 (0-41)
    assert len(cls(fake / fmt, split="val", fold=0, crop_size=16).cases) == 5


# --- CT: NIfTI reading and items ----------------------------------------------------------------------------
def _volume(root: Path, fmt: str, case: int) -> tuple[Path, Path]:
    if fmt == "lits":
        folder = root / ("Training Batch 1" if case < 2 else "Training Batch 2")
        return folder / f"volume-{case}.nii", folder / f"segmentation-{case}.nii"
    return root / f"case_{case:05d}" / "imaging.nii.gz", root / f"case_{case:05d}" / "segmentation.nii.gz"


def test_nifti_round_trip_and_slice_reads(fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(-1024, 3000, (7, 5, 9)).astype(np.int16)
    for name in ("v.nii", "v.nii.gz"):
        nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), str(tmp_path / name))
        back = nib.load(str(tmp_path / name))
        assert back.get_data_dtype() == np.int16 and back.shape == data.shape
        np.testing.assert_array_equal(np.asarray(back.dataobj), data)
        monkeypatch.setattr(ct_module, "SLAB_BYTES", 2 * 7 * 5 * 2)  # slabs of two last-axis planes
        for axis in (0, 1, 2):
            got = read_ct_slices(tmp_path / name, 2, 4, axis)
            np.testing.assert_array_equal(got, np.moveaxis(data, axis, 0)[2:4])
        monkeypatch.undo()
    # the fake trees: LiTS stores (X, Y, slices) uncompressed, KiTS19 (slices, X, Y) gzipped, both int16 HU
    lits_vol, _ = _volume(fake / "lits", "lits", 1)
    kits_vol, _ = _volume(fake / "kits", "kits", 1)
    assert nib.load(str(lits_vol)).shape == FAKE_CT_SHAPE and nib.load(str(lits_vol)).get_data_dtype() == np.int16
    assert nib.load(str(kits_vol)).shape == (FAKE_CT_SHAPE[2], *FAKE_CT_SHAPE[:2])
    with gzip.open(kits_vol) as f:
        assert f.read(352)[344:348] == b"n+1\x00"  # a real gzipped single-file NIfTI-1


@pytest.mark.parametrize("cls, fmt", [(LiTSSegmentation, "lits"), (KiTSSegmentation, "kits")])
def test_ct_items_window_and_map_labels(cls, fmt: str, fake: Path) -> None:
    ds = cls(fake / fmt, split="val", fold=3, num_cases=5, slice_size=None, eval_geometry="full")
    low, high = (-60, 140) if fmt == "lits" else (-200, 300)
    assert ds.window == (low, high) and ds.class_names == ["background", "tumor"] and ds.classes_of_interest == [1]
    volume, segmentation = _volume(fake / fmt, fmt, 3)
    hu = np.asarray(nib.load(str(volume)).dataobj)
    seg = np.asarray(nib.load(str(segmentation)).dataobj)
    if fmt == "kits":  # stored (slices, X, Y)
        hu, seg = np.moveaxis(hu, 0, 2), np.moveaxis(seg, 0, 2)
    for i, s in enumerate(ds.samples):
        image, label = ds[i]
        assert tuple(image.shape) == (3, *FAKE_CT_SHAPE[:2]) and image.dtype == torch.float32
        expected = np.clip((hu[..., s.index] - low) / (high - low) * 2 - 1, -1, 1)
        for c in range(3):
            np.testing.assert_allclose(image[c].numpy(), expected, atol=1e-6)
        # 0 background and 1 organ -> 0, 2 tumour -> 1 (RMA: label >> 1)
        np.testing.assert_array_equal(label.numpy(), (seg[..., s.index] == 2).astype(np.int64))
        assert label.max() == 1 and ((seg[..., s.index] == 1) & (label.numpy() == 0)).any()
    one = cls(fake / fmt, split="val", fold=3, num_cases=5, slice_size=None, eval_geometry="full", in_channels=1)
    assert tuple(one[0][0].shape) == (1, *FAKE_CT_SHAPE[:2])


def test_ct_geometry(fake: Path) -> None:
    common = {"split": "val", "fold": 0, "num_cases": 5}
    full = LiTSSegmentation(fake / "lits", slice_size=None, eval_geometry="full", **common)
    crop = LiTSSegmentation(fake / "lits", slice_size=None, crop_size=16, **common)
    assert torch.equal(crop[0][0], full[0][0][:, 8:24, 8:24]) and torch.equal(crop[0][1], full[0][1][8:24, 8:24])
    big = LiTSSegmentation(fake / "lits", slice_size=64, eval_geometry="full", **common)
    assert tuple(big[0][0].shape) == (3, 64, 64) and set(big[0][1].unique().tolist()) <= {0, 1}
    # RMA's default: every slice resized to 512, then a centre 384 crop
    assert tuple(LiTSSegmentation(fake / "lits", **common)[0][1].shape) == (384, 384)
    # training: padding fills the CT with the window's low end (-1 after windowing) and labels with 255
    train = LiTSSegmentation(fake / "lits", split="train", fold=0, num_cases=5, slice_size=None, crop_size=48,
                             train=True, scale_range=(1.0, 1.0))  # fmt: skip
    train.set_augmentation_epoch(0, 0)
    image, label = train[0]
    assert tuple(image.shape) == (3, 48, 48) and (label == 255).sum() == 48 * 48 - 32 * 32
    assert (image[:, label == 255] == -1).all()
    again_image, again_label = train[0]
    assert torch.equal(image, again_image) and torch.equal(label, again_label)  # seeded per (seed, epoch, index)


# --- CT: damaged files --------------------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("fmt", ["lits", "kits"])
def test_ct_damaged_volume_names_the_file(fmt: str, tmp_path: Path) -> None:
    root = _copy(fmt, tmp_path)
    cls = LiTSSegmentation if fmt == "lits" else KiTSSegmentation
    ds = cls(root, split="val", fold=1, num_cases=5, slice_size=None, crop_size=16)
    volume, _ = _volume(root, fmt, 1)
    _truncate(volume)
    with pytest.raises(DatasetLayoutError, match=rf"{volume}: cannot read or decode this volume file") as info:
        ds[len(ds) - 1]  # the last tumour slice lies in the lost half
    assert "Re-download or replace it" in str(info.value)
    volume.write_bytes(b"not a nifti file at all" * 20)
    with pytest.raises(DatasetLayoutError, match=rf"{volume}: cannot read or decode this volume file"):
        ds[0]


@pytest.mark.parametrize("fmt", ["lits", "kits"])
def test_ct_damaged_or_invalid_segmentation_names_the_file(fmt: str, tmp_path: Path) -> None:
    root = _copy(fmt, tmp_path)
    cls = LiTSSegmentation if fmt == "lits" else KiTSSegmentation
    _, segmentation = _volume(root, fmt, 2)
    original = segmentation.read_bytes()
    _truncate(segmentation)
    with pytest.raises(DatasetLayoutError, match=rf"{segmentation}: cannot read this case"):
        cls(root, split="val", fold=2, num_cases=5, slice_size=None, crop_size=16)
    segmentation.write_bytes(original)
    image = nib.load(str(segmentation))
    seg = np.asarray(image.dataobj).copy()
    seg[seg == 1] = 3  # a label the datasets do not have
    nib.save(nib.Nifti1Image(seg, image.affine), str(segmentation))
    ds = cls(root, split="val", fold=2, num_cases=5, slice_size=None, crop_size=16)
    with pytest.raises(DatasetLayoutError, match=rf"{segmentation}: segmentation values 3 are not among \[0, 1, 2\]"):
        ds[0]


def test_ct_layout_errors(tmp_path: Path) -> None:
    root = _copy("lits", tmp_path)
    seg = root / "Training Batch 2" / "segmentation-3.nii"
    seg.unlink()
    with pytest.raises(DatasetLayoutError, match=f"missing segmentation of volume-3.nii at {seg}"):
        LiTSSegmentation(root, split="train", num_cases=5, crop_size=16)
    with pytest.raises(DatasetLayoutError, match="no case_XXXXX directories"):
        KiTSSegmentation(root, split="train", num_cases=5, crop_size=16)
    with pytest.raises(DatasetLayoutError, match=f"missing directory at {tmp_path / 'absent'}.*dataset.root="):
        LiTSSegmentation(tmp_path / "absent", split="val", crop_size=16)


def test_ct_slice_index_is_cached_and_refreshed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy("kits", tmp_path)
    first = KiTSSegmentation(root, split="train", num_cases=5, slice_size=None, crop_size=16)
    assert (root / ".rankseg_ct_index.json").is_file()
    calls = []
    real = ct_module.slices_with_value
    monkeypatch.setattr(ct_module, "slices_with_value", lambda *a: calls.append(a[0]) or real(*a))
    again = KiTSSegmentation(root, split="train", num_cases=5, slice_size=None, crop_size=16)
    assert calls == [] and [s.id for s in again.samples] == [s.id for s in first.samples]
    _, segmentation = _volume(root, "kits", 4)
    stat = segmentation.stat()
    os.utime(segmentation, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    KiTSSegmentation(root, split="train", num_cases=5, slice_size=None, crop_size=16)
    assert calls == [segmentation]


# --- CT: per-case iteration and its memory bound ------------------------------------------------------------
def test_case_batch_sampler_never_mixes_cases() -> None:
    sampler = CaseBatchSampler([7, 7, 7, 2, 2, 9, 9, 9, 9, 9], batch_size=2)
    assert list(sampler) == [[0, 1], [2], [3, 4], [5, 6], [7, 8], [9]]
    assert sampler.case_ends() == [False, True, True, False, False, True] and len(sampler) == 6
    with pytest.raises(ValueError, match="case 7 are not contiguous"):
        CaseBatchSampler([7, 2, 7], batch_size=2)


@pytest.mark.parametrize("fmt, axis", [("lits", 2), ("kits", 0)])
def test_per_case_iteration_holds_one_chunk(fmt: str, axis: int, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Reading case by case keeps at most one chunk of slices (plus one slab of a volume) in memory.

    Three cases of 128 x 128 x 96 int16 (3 MiB each; their float32 two-class probabilities would be 12 MiB);
    chunks of 2 slices, 1 channel: 2 x (64 KiB image + 128 KiB label), twice while stacked, plus a 64 KiB slab.
    """
    root = tmp_path / fmt
    shape = (128, 128, 96)
    rng = np.random.default_rng(1)
    for case in range(3):
        hu = rng.integers(-1000, 1000, shape).astype(np.int16)
        seg = np.zeros(shape, np.uint8)
        seg[40:60, 40:60, 10 + case : 18] = 2
        if fmt == "kits":
            folder = root / f"case_{case:05d}"
            hu, seg, names = np.moveaxis(hu, 2, 0).copy(), np.moveaxis(seg, 2, 0).copy(), ("imaging", "segmentation")
        else:
            folder, names = root, (f"volume-{case}", f"segmentation-{case}")
        folder.mkdir(parents=True, exist_ok=True)
        for data, name in zip((hu, seg), names):
            nib.save(nib.Nifti1Image(data, np.eye(4)), str(folder / f"{name}.nii"))
    monkeypatch.setattr(ct_module, "SLAB_BYTES", 64 * 2**10)
    cls = LiTSSegmentation if fmt == "lits" else KiTSSegmentation
    ds = cls(root, split="train", fold=4, num_cases=5, slice_size=None, eval_geometry="full", in_channels=1)
    assert list(ds.cases) == [0, 1, 2] and len(ds) == 8 + 7 + 6
    volume_bytes = int(np.prod(shape)) * 2
    tracemalloc.start()
    try:
        seen: list[tuple[int, list[int]]] = []
        for chunk in iter_case_chunks(ds, chunk_size=2):
            assert chunk.images.shape[0] == len(chunk.indices) <= 2
            assert {ds.samples[i].case for i in chunk.indices} == {chunk.case}
            seen.append((chunk.case, chunk.indices))
            del chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [i for _, indices in seen for i in indices] == list(range(len(ds)))  # every slice once, in order
    bound = 2 * 2 * (128 * 128 * 4 + 128 * 128 * 8) + 64 * 2**10
    assert peak < 1.5 * bound < volume_bytes / 2, (peak, bound, volume_bytes)


def test_cityscapes_rma_training_crops_512x1024_with_imagenet_statistics(tmp_path):
    """experiment=rma_cityscapes's dataset nodes: RankSEG-RMA's augmentation with a rectangular crop and ImageNet
    normalisation; the default (JMLR) Cityscapes loader is unchanged."""
    import numpy as np

    from rankseg.data import CityscapesSegmentation
    from rankseg.data.fake import make_fake_dataset

    root = make_fake_dataset("cityscapes", tmp_path / "cs")
    rma = CityscapesSegmentation(
        root, "train", crop_size=16, train=True, augmentation="rma", crop_hw=(16, 32), imagenet_normalization=True
    )
    image, label = rma[0]
    assert image.shape == (3, 16, 32) and label.shape == (16, 32)
    assert rma.mean == [0.485, 0.456, 0.406] and rma.std == [0.229, 0.224, 0.225]
    val = CityscapesSegmentation(root, "val", crop_size=16, imagenet_normalization=True)
    raw = val._read_image(val.samples[0][0])  # noqa: SLF001 - the pixel values behind item 0
    assert val.mean == rma.mean
    full = CityscapesSegmentation(root, "val", eval_geometry="full", imagenet_normalization=True)[0][0]
    expected = (raw[0, 0] / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(full[:, 0, 0].numpy(), expected, atol=1e-5)
    jmlr = CityscapesSegmentation(root, "train", crop_size=16, train=True)
    assert jmlr.augmentation == "rankseg" and jmlr.mean[0] == 0.28689529 and jmlr[0][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="crop_hw"):
        CityscapesSegmentation(root, "train", crop_size=16, train=True, crop_hw=(16, 32))


def test_rma_cityscapes_experiment_sets_the_loader_and_leaves_jmlr_runs_alone(compose):
    rma = compose("train", ["experiment=rma_cityscapes"]).dataset
    train = (rma.train.augmentation, list(rma.train.crop_hw), rma.train.imagenet_normalization)
    assert train == ("rma", [512, 1024], True)
    assert rma.val.imagenet_normalization is True
    jmlr = compose("train", ["dataset=cityscapes"]).dataset
    assert "augmentation" not in jmlr.train and "imagenet_normalization" not in jmlr.val  # run names unchanged
