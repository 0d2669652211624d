"""The per-table experiment configs (configs/experiment/*_table.yaml) as data: each composes offline, its sweeper
grid is exactly the published table's models x losses, every job of the sweep composes with the protocol's
settings; and a tiny end-to-end run of scripts/make_synthetic_table.py."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from rankseg.engine.build import build_model
from rankseg.engine.runs import run_identity, run_key
from rankseg.experiments.tables import LOSS_NAMES, MODEL_NAMES, load_table_config

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = REPO_ROOT / "results" / "published" / "published_tables.csv"
TABLES = ("cityscapes", "voc2012", "kvasir_seg")
# paper_protocol §3: (epochs, train batch, train crop, eval batch, eval crop, classes)
PROTOCOL = {
    "cityscapes": (300, 6, 512, 6, 512, 19),
    "voc2012": (300, 8, 384, 8, 480, 21),  # protocol 380, rounded up to a multiple of 16 for smp
    "kvasir_seg": (150, 8, 320, 8, 320, 2),
}
SYNTHETIC_MODEL_KEY = "experiment/light_model@light_model"
#: The models the JMLR tables train (tables.yaml also names the authors' own networks, ref_*, which are evaluated
#: from their published checkpoints and never trained here).
TRAINED_MODELS = [m for m in MODEL_NAMES if m not in load_table_config().published_models]


def published_grid(dataset: str) -> tuple[set[str], set[str]]:
    """Config names of the models and losses that the published table of ``dataset`` lists."""
    rows = pd.read_csv(PUBLISHED, dtype=str, keep_default_na=False)
    rows = rows[rows["dataset"] == dataset]
    models = {k for k, v in MODEL_NAMES.items() if v in set(rows["model"]) and k in TRAINED_MODELS}
    losses = {k for k, v in LOSS_NAMES.items() if v in set(rows["loss"])}
    assert len(models) == rows["model"].nunique() and len(losses) == rows["loss"].nunique()
    return models, losses


@pytest.fixture
def compose():
    """Hydra's compose API inside one initialised config dir per test (initialising per compose is the slow
    part); ``return_hydra_config`` exposes ``hydra.sweeper.params``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        yield hydra_compose


def sweep_params(compose, experiment: str) -> dict[str, list[str]]:
    """``hydra.sweeper.params`` of an experiment, as a multirun would see them."""
    cfg = compose("train", [f"experiment={experiment}"], return_hydra_config=True)
    return {str(k): str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}


def sweep_jobs(params: dict[str, list[str]]) -> list[list[str]]:
    """The override lists of the jobs Hydra's basic sweeper launches for these params."""
    parsed = OverridesParser.create().parse_overrides([f"{k}={','.join(v)}" for k, v in params.items()])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


@pytest.mark.parametrize("dataset", TABLES)
def test_table_grid_is_the_published_grid(compose, dataset):
    params = sweep_params(compose, f"{dataset}_table")
    assert set(params) == {"model", "loss"}
    models, losses = published_grid(dataset)
    assert set(params["model"]) == models and len(params["model"]) == len(models)
    assert set(params["loss"]) == losses and len(params["loss"]) == len(losses)
    if dataset == "kvasir_seg":
        assert "bce" not in losses and "b_soft_dice" not in losses


@pytest.mark.parametrize("dataset", TABLES)
def test_every_table_job_composes_with_protocol_settings(compose, dataset):
    params = sweep_params(compose, f"{dataset}_table")
    jobs = sweep_jobs(params)
    assert len(jobs) == len(params["model"]) * len(params["loss"])
    epochs, batch, crop, eval_batch, eval_crop, classes = PROTOCOL[dataset]
    seen = set()
    for job in jobs:
        train = compose("train", [f"experiment={dataset}_table", *job])
        assert train.dataset.name == dataset and train.dataset.num_classes == classes
        assert (train.epochs, train.batch_size, train.dataset.train_crop_size) == (epochs, batch, crop)
        assert train.optimizer.lr == 0.01 and train.optimizer.backbone_lr_mult == 0.1
        assert train.max_minutes is None and train.max_iters is None
        evaluate = compose("evaluate", [f"experiment={dataset}_table", *job])
        assert (evaluate.eval_batch_size, evaluate.dataset.crop_size) == (eval_batch, eval_crop)
        assert list(evaluate.predict) == ["threshold", "argmax", "rankdice"]
        key = run_key(run_identity(train))
        assert run_key(run_identity(evaluate)) == key  # evaluate finds what train wrote
        assert key.parent == Path(dataset, train.model.name, train.loss.name)
        seen.add((train.model.name, train.loss.name))
    assert seen == {(m, lo) for m in params["model"] for lo in params["loss"]}


def test_synthetic_table_composes_with_light_models(compose):
    params = sweep_params(compose, "synthetic_table")
    assert set(params) == {SYNTHETIC_MODEL_KEY, "loss"}
    assert params[SYNTHETIC_MODEL_KEY] == TRAINED_MODELS and params["loss"] == list(LOSS_NAMES)
    jobs = sweep_jobs(params)
    assert len(jobs) == 18
    models = {}
    for job in jobs:
        cfg = compose("train", ["experiment=synthetic_table", *job])
        assert cfg.dataset.name == "synthetic" and cfg.max_minutes is not None
        assert cfg.model.encoder_weights is None  # offline: nothing pretrained to load
        models[cfg.model.name] = cfg.model
        compose("evaluate", ["experiment=synthetic_table", *job])
    assert set(models) == set(TRAINED_MODELS)
    assert models["deeplabv3plus"].encoder_name == "mobilenet_v2"
    assert models["pspnet"].encoder_name == "resnet18" and models["fcn8"].fc_channels < 4096
    for model_cfg in models.values():
        model = build_model(model_cfg)
        assert sum(p.numel() for p in model.parameters()) < 20_000_000


def _load_script():
    spec = importlib.util.spec_from_file_location("make_synthetic_table", REPO_ROOT / "scripts/make_synthetic_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_synthetic_table_tiny_run(tmp_path, capsys):
    script = _load_script()
    args = [
        "--out", str(tmp_path / "results"),
        "--checkpoint-dir", str(tmp_path / "checkpoints"),
        "--data-dir", str(tmp_path / "data"),
        "--models", "pspnet",
        "--losses", "ce",
        "--device", "cpu",
        "--max-iters", "2",
        "--set", "dataset.num_train=16", "dataset.num_val=8", "dataset.image_size=32",
        "dataset.crop_size=32", "dataset.train_crop_size=32", "dataset.batch_size=4", "dataset.eval_batch_size=8",
    ]  # fmt: skip
    assert script.main(args) == 0
    (metrics_file,) = (tmp_path / "results/runs/synthetic/pspnet/ce").glob("*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert (metrics["dataset"], metrics["model"], metrics["loss"]) == ("synthetic", "pspnet", "ce")
    assert set(metrics["rules"]) == {"threshold", "argmax", "rankdice"}
    assert metrics["run"].startswith("resnet18-seed0-") and metrics["run"] == metrics_file.parent.name
    assert (tmp_path / "checkpoints/synthetic/pspnet/ce" / metrics["run"] / "last.pt").is_file()
    md = (tmp_path / "results/tables/synthetic.md").read_text()
    assert md.startswith("# Synthetic") and "**Synthetic data**" in md and "| PSPNet | CE |" in md
    with (tmp_path / "results/tables/synthetic_timings.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["model"] == "pspnet" and rows[0]["iterations"] == "2"
    assert float(rows[0]["train_s"]) > 0 and rows[0]["torch"]
    figures = sorted(p.name for p in (tmp_path / "results/figures").iterdir())
    assert figures == ["expected_vs_realised_rankdice.png", "overlay_first_image.png", "overlay_most_changed.png",
                       "reliability.png"]  # fmt: skip
    assert (metrics_file.parent / "per_image.csv").is_file() and metrics["calibration"]["raw"]["ece"] >= 0

    capsys.readouterr()
    assert script.main(args) == 0  # resumable: the finished cell is skipped
    assert "skipped" in capsys.readouterr().out
    assert len((tmp_path / "results/tables/synthetic_timings.csv").read_text().splitlines()) == 2
