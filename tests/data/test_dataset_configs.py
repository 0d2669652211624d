"""configs/dataset/*.yaml compose with Hydra and instantiate on fake trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from rankseg.data import (
    CityscapesSegmentation,
    KvasirSegmentation,
    SyntheticSegmentation,
    VOCSegmentation,
)
from rankseg.data.fake import make_fake_dataset

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DATASETS = {
    "cityscapes": (CityscapesSegmentation, 512, 512, 6, 300),
    "voc2012": (VOCSegmentation, 480, 384, 8, 300),  # protocol 380, rounded up for smp
    "kvasir_seg": (KvasirSegmentation, 320, 320, 8, 150),
    "synthetic": (SyntheticSegmentation, 64, 64, 16, None),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for fmt in ("cityscapes", "voc2012", "kvasir_seg"):
        make_fake_dataset(fmt, root / fmt)
    return root


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=None, overrides=[f"+dataset={name}", *overrides])


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_compose_and_instantiate(name: str, data_dir: Path) -> None:
    cls, crop, train_crop, batch, epochs = DATASETS[name]
    overrides = [f"+paths.data_dir={data_dir}"]
    if name == "synthetic":
        overrides += ["dataset.num_train=4", "dataset.num_val=3"]
    cfg = _compose(name, overrides)
    ds_cfg = cfg.dataset
    # the synthetic data has one folder per generation setting, so runs of other sizes never clash
    expected_root = data_dir / name / "64px_4train_3val_seed0" if name == "synthetic" else data_dir / name
    assert ds_cfg.name == name and ds_cfg.root == str(expected_root)
    assert (ds_cfg.crop_size, ds_cfg.train_crop_size, ds_cfg.batch_size) == (crop, train_crop, batch)
    if epochs is not None:
        assert ds_cfg.epochs == epochs and ds_cfg.encoder_weights == "imagenet"
    else:
        assert ds_cfg.encoder_weights is None and ds_cfg.num_workers == 0
    assert ds_cfg.ignore_index == 255 and ds_cfg.num_classes == len(ds_cfg.class_names)

    val = instantiate(ds_cfg.val)
    train = instantiate(ds_cfg.train)
    assert type(val) is cls and type(train) is cls and not val.train and train.train
    assert (
        list(ds_cfg.class_names) == val.class_names
        and list(ds_cfg.classes_of_interest) == val.classes_of_interest
    )
    assert ds_cfg.num_classes == val.num_classes
    image, label = val[0]
    assert tuple(image.shape) == (3, crop, crop) and tuple(label.shape) == (crop, crop)


def test_root_override_and_eval_geometry(data_dir: Path, tmp_path: Path) -> None:
    root = make_fake_dataset("voc2012", tmp_path / "elsewhere")
    cfg = _compose(
        "voc2012", ["+paths.data_dir=/nonexistent", f"dataset.root={root}", "dataset.eval_geometry=full"]
    )
    val = instantiate(cfg.dataset.val)
    assert val.root == root and val.eval_geometry == "full"
    assert val[0][1].shape == val[0][0].shape[1:] and val[0][1].shape != (480, 480)
