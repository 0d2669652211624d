"""End to end on CPU for each RankSEG-RMA dataset format: train.py's ``run_training`` for one iteration of
DeepLabV3+ (ResNet-18, no pretrained weights) on a fake tree, then evaluate.py's ``run_evaluation`` with argmax,
RMA and RankDice. About 5-10 s per format on 2 cores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rankseg.data.fake import make_fake_dataset
from rankseg.engine.evaluate import run_evaluation
from rankseg.engine.train import run_training

# format: (overrides, number of val images of the fake tree)
FORMATS = {
    "ade20k": ([], 2),
    "voc2012_aug": ([], 3),
    # five fake cases, fold 0 validates case 0 (its three tumour slices); 64 px slices keep it fast
    "lits": (["dataset.num_cases=5", "dataset.slice_size=64"], 3),
    "kits": (["dataset.num_cases=5", "dataset.slice_size=64"], 3),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_train_then_evaluate_three_rules(fmt: str, tmp_path: Path, compose) -> None:
    extra, num_val = FORMATS[fmt]
    root = make_fake_dataset(fmt, tmp_path / "data")
    overrides = [
        f"dataset={fmt}",
        f"dataset.root={root}",
        f"paths.checkpoint_dir={tmp_path / 'checkpoints'}",
        f"paths.results_dir={tmp_path / 'results'}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        "dataset.crop_size=32",
        "dataset.train_crop_size=32",
        "dataset.batch_size=2",
        "dataset.eval_batch_size=2",
        "dataset.epochs=1",
        "dataset.num_workers=0",
        "dataset.encoder_weights=null",
        "model=deeplabv3plus",
        "model.encoder_name=resnet18",
        "device=cpu",
        *extra,
    ]
    trained = run_training(compose("train", [*overrides, "logger=none", "max_iters=1"]))
    assert trained["iteration"] >= 1 and math.isfinite(trained["loss"])
    run_evaluation(compose("evaluate", [*overrides, "predict=[argmax,rma,rankdice]"]))
    metrics = json.loads(next((tmp_path / "results").rglob("metrics.json")).read_text())
    assert metrics["dataset"] == fmt and set(metrics["rules"]) == {"argmax", "rma", "rankdice"}
    for record in metrics["rules"].values():
        assert record["num_images"] == num_val and 0.0 <= record["miou"] <= 1.0
