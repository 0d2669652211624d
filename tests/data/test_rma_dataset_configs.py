"""configs/dataset/{ade20k,voc2012_aug,lits,kits}.yaml compose with Hydra, carry the RankSEG-RMA protocol values
and instantiate on fake trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rankseg.data import ADE20KSegmentation, KiTSSegmentation, LiTSSegmentation, VOCAugSegmentation
from rankseg.data.fake import make_fake_dataset
from rankseg.engine.config_checks import check_train_config

# name: (class, eval crop, train crop, num_classes, classes of interest)
# voc2012_aug reads the same VOCdevkit as voc2012 (ROOT = paths.data_dir/voc2012), with SBD added.
ROOTS = {"ade20k": "ade20k", "voc2012_aug": "voc2012", "lits": "lits", "kits": "kits"}
DATASETS = {
    "ade20k": (ADE20KSegmentation, 512, 512, 150, list(range(150))),
    "voc2012_aug": (VOCAugSegmentation, 512, 512, 21, list(range(1, 21))),
    "lits": (LiTSSegmentation, 384, 384, 2, [1]),
    "kits": (KiTSSegmentation, 384, 384, 2, [1]),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for name in DATASETS:
        make_fake_dataset(name, root / ROOTS[name])
    return root


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_compose_and_instantiate(name: str, data_dir: Path, compose) -> None:
    cls, crop, train_crop, num_classes, coi = DATASETS[name]
    overrides = [f"dataset={name}", f"paths.data_dir={data_dir}"]
    if name in ("lits", "kits"):
        overrides.append("dataset.num_cases=5")  # five fake cases: fold f validates case f
    cfg = compose("train", overrides)
    check_train_config(cfg)
    ds_cfg = cfg.dataset
    assert ds_cfg.name == name and ds_cfg.root == str(data_dir / ROOTS[name]) and ds_cfg.ignore_index == 255
    assert (ds_cfg.crop_size, ds_cfg.train_crop_size, ds_cfg.batch_size) == (crop, train_crop, 8)
    assert ds_cfg.num_classes == num_classes == len(ds_cfg.class_names) and list(ds_cfg.classes_of_interest) == coi
    assert ds_cfg.encoder_weights == "imagenet"
    val, train = instantiate(ds_cfg.val), instantiate(ds_cfg.train)
    assert type(val) is cls and type(train) is cls and not val.train and train.train
    assert val.class_names == list(ds_cfg.class_names) and val.classes_of_interest == coi
    image, label = val[0]
    assert tuple(image.shape) == (3, crop, crop) and tuple(label.shape) == (crop, crop)
    image, label = train[0]
    assert tuple(image.shape) == (3, train_crop, train_crop)


@pytest.mark.parametrize(
    "name, window, num_cases, epochs", [("lits", [-60, 140], 131, 150), ("kits", [-200, 300], 210, 150)]
)
def test_ct_configs_follow_rma(name: str, window: list[int], num_cases: int, epochs: int, compose) -> None:
    # exp/configs/datas/{lits,kits}_fold*.yaml: window, num_cases, crop 384, in_channels 1 (3 here, see yaml)
    ds = compose("train", [f"dataset={name}"]).dataset
    assert list(ds.window) == window and ds.num_cases == num_cases and ds.epochs == epochs
    assert (ds.fold, ds.slice_size, ds.slices, list(ds.scale_range)) == (0, 512, "tumor", [0.5, 2.0])
    assert OmegaConf.to_container(ds.val, resolve=True)["fold"] == 0
    for fold in range(5):
        assert compose("train", [f"dataset={name}", f"dataset.fold={fold}"]).dataset.train.fold == fold


def test_voc_aug_config_reads_labels_like_rma(data_dir: Path, compose) -> None:
    ds = compose("train", ["dataset=voc2012_aug", f"paths.data_dir={data_dir}"]).dataset
    assert ds.train.split == "train_aug" and ds.val.split == "val"
    assert list(ds.label_dirs) == ["SegmentationClassAug", "SegmentationClass"]
    flipped = compose(
        "train", ["dataset=voc2012_aug", f"paths.data_dir={data_dir}", "dataset.label_dirs=[SegmentationClass]"]
    ).dataset
    assert all(label.parent.name == "SegmentationClass" for _, label in instantiate(flipped.val).samples)
