"""The RankSEG-RMA tables as data: every row of the published CSV maps to one documented command whose config
composes with Hydra (dataset, model, encoder, the RMA recipe, the metric), and an entry without one must say
why; ``make_tables --rma`` joins runs written here in the real metrics.json format with the published rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rankseg.experiments.tables import RMA_PUBLISHED, build_rma_table, load_rma_config, load_runs, write_rma_tables
from rankseg.metrics import aggregate

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "reference" / "published_rma_tables.csv"


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return pd.read_csv(RMA_PUBLISHED, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def rma():
    return load_rma_config()


@pytest.mark.skipif(not SHARED.is_file(), reason="no shared reference copy on this machine")
def test_published_csv_is_the_shared_reference():
    assert RMA_PUBLISHED.read_bytes() == SHARED.read_bytes()


def test_every_published_row_maps_to_one_entry(published, rma):
    assert len(published) == 56 and set(published["rule"]) == {"argmax", "rma"}
    for row in published.to_dict("records"):
        entry = rma.row_for(row["dataset"], row["model"], row["backbone"])
        assert entry is not None, row
        assert row["metric"] in rma.metrics, row
        matches = [r for r in rma.rows if (r.dataset, r.model) == (row["dataset"], row["model"])]
        assert sum(row["backbone"] in r.backbones for r in matches) == 1, row  # exactly one entry
        if entry.experiment is None:
            assert len(entry.why) > 40 and entry.commands() is None
    # a metric of the CSV is a key that evaluate.py writes for every rule
    import torch

    counts = [torch.ones(1, 3, dtype=torch.long)] * 3
    assert set(rma.metrics) <= set(aggregate(*counts))
    unreproducible = {(r.dataset, r.model) for r in rma.rows if r.experiment is None}
    assert unreproducible == set()  # CPT (ADE20K, Swin-L) is rankseg.models.CPTSegmenter


def test_every_command_composes_with_its_dataset_model_encoder_and_recipe(rma):
    from hydra import compose, initialize_config_dir

    from rankseg.engine.inference import inference_settings

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for entry in rma.rows:
            if entry.experiment is None:
                continue
            overrides = [f"experiment={entry.experiment}", *entry.overrides]
            train = compose("train", overrides)
            evaluate = compose("evaluate", [*overrides, "predict=[argmax,rma]"])
            for cfg in (train, evaluate):
                assert cfg.dataset.name == rma.run_datasets[entry.experiment], entry
                assert cfg.model.name == entry.model_key() and cfg.model.encoder_name == entry.encoder, entry
                assert cfg.optimizer.name == "adamw" and cfg.loss.name == "ce", entry
            assert list(evaluate.predict) == ["argmax", "rma"]
            view = inference_settings(evaluate.inference)
            if entry.dataset in ("lits", "kits"):  # RMA: one pass on the centre crop
                assert view.mode == "whole" and evaluate.dataset.eval_geometry == "crop", entry
            else:  # RMA: 512-px windows (512x1024 on Cityscapes) on the native image
                assert view.mode == "slide" and evaluate.dataset.eval_geometry == "full", entry
                assert view.window[0] == int(train.dataset.train_crop_size) == 512, entry


def test_readme_lists_every_command_and_the_rows_without_one(rma):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## RankSEG-RMA tables") :]
    for entry in rma.rows:
        if entry.experiment is None:
            assert entry.model in section and "no command" in section
            continue
        train, evaluate = entry.commands()
        assert train in section and evaluate in section, entry
    assert "python scripts/make_tables.py --rma" in section and "estimate" in section.lower()


def _run(root: Path, name: str, encoder: str, optimizer: str, seed: int, argmax: float, rma_value: float) -> None:
    """A metrics.json as evaluate.py writes it, with only what the RMA tables read."""
    record = {"miou_image": argmax, "miou": argmax - 0.1, "mdice": argmax}
    data = {
        "dataset": "cityscapes",
        "model": "segformer",
        "loss": "ce",
        "run": name,
        "run_config": {"model": {"name": "segformer", "encoder_name": encoder}, "optimizer": {"name": optimizer}},
        "rules": {"argmax": record, "rma": {**record, "miou_image": rma_value}},
    }
    data["run_config"]["seed"] = seed
    path = root / "cityscapes" / "segformer" / "ce" / name / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))


def test_rma_table_pools_the_matching_runs_next_to_the_published_numbers(tmp_path, published, rma):
    runs_dir = tmp_path / "runs"
    # two seeds of the RMA recipe: mIoU^I argmax 0.73, 0.75 -> 74.00 +- 1.41; rma 0.74, 0.77 -> 75.50 +- 2.12;
    # gains 1.0 and 2.0 points -> +1.50 +- 0.71
    _run(runs_dir, "mit_b4-seed0-aaaaaaaa", "mit_b4", "adamw", 0, 0.73, 0.74)
    _run(runs_dir, "mit_b4-seed1-bbbbbbbb", "mit_b4", "adamw", 1, 0.75, 0.77)
    _run(runs_dir, "mit_b4-seed0-cccccccc", "mit_b4", "sgd", 0, 0.10, 0.10)  # the JMLR recipe: not this row
    _run(runs_dir, "mit_b0-seed0-dddddddd", "mit_b0", "adamw", 0, 0.10, 0.10)  # another encoder: not this row
    table = build_rma_table("cityscapes", load_runs(runs_dir), published, rma)
    row = table[(table["model"] == "SegFormer") & (table["metric"] == "miou_image")].iloc[0]
    assert row["status"] == "ok" and row["runs"] == 2 and row["published_argmax"] == "73.32"
    assert row["argmax"] == pytest.approx(74.0) and row["argmax_std"] == pytest.approx(2**0.5)
    assert row["rma"] == pytest.approx(75.5) and row["rma_std"] == pytest.approx(4.5**0.5)
    assert row["gain"] == pytest.approx(1.5) and row["published_gain"] == pytest.approx(0.78)
    assert row["diff_rma"] == pytest.approx(75.5 - 74.10)
    assert row["train_command"] == "python train.py experiment=rma_cityscapes model=segformer"
    others = table[table["model"] != "SegFormer"]
    assert set(others["status"]) == {"no run"} and len(table) == 8

    files = write_rma_tables(runs_dir, tmp_path / "tables", RMA_PUBLISHED, datasets=["cityscapes", "ade20k"])
    assert [f.name for f in files] == ["rma_cityscapes.csv", "rma_cityscapes.md", "rma_ade20k.csv", "rma_ade20k.md"]
    text = (tmp_path / "tables" / "rma_cityscapes.md").read_text()
    assert "| SegFormer | - | mIoU^I | rma_repo_readme | 73.32 | 74.00 ± 1.41 | 74.10 | 75.50 ± 2.12 | +0.78 |" in text
    assert "+1.50 ± 0.71" in text
    ade = (tmp_path / "tables" / "rma_ade20k.md").read_text()
    assert "not reproducible" not in ade and "No run for" not in ade
    assert "| CPT | swin_large | mIoU | library_readme |" in ade
    assert "python train.py experiment=rma_ade20k model=cpt" in ade
