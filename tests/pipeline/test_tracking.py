"""Evaluation results in the experiment tracker: a wandb offline run holds the summary, the class table and the
pictures of the evaluation (rankseg.engine.tracking)."""

from __future__ import annotations

import json

import pytest
from conftest import smoke_overrides

from rankseg.engine.evaluate import run_evaluation
from rankseg.engine.train import run_training


def test_offline_wandb_run_holds_summary_table_and_pictures(tmp_path, compose, monkeypatch):
    pytest.importorskip("wandb")
    root = tmp_path
    run_training(compose("train", [*smoke_overrides(root), "logger=none", "max_iters=2"]))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = [*smoke_overrides(root), "predict=[argmax,rma]", "save_overlays=1", "logger.mode=offline",
                 f"logger.dir={root / 'wandb'}", "max_iters=2"]  # fmt: skip
    merged = run_evaluation(compose("evaluate", [o for o in overrides if o != "max_iters=2"]))
    runs = sorted((root / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files"
    summary = json.loads((files / "evaluation_summary.json").read_text())
    for rule in ("argmax", "rma"):
        assert summary[f"{rule}/mdice"] == pytest.approx(merged["rules"][rule]["mdice"])
        assert summary[f"{rule}/dataset_iou"] == pytest.approx(merged["rules"][rule]["dataset_iou"])
    assert summary["calibration/raw/ece"] == pytest.approx(merged["calibration"]["raw"]["ece"])
    tables = list((files / "media" / "table").glob("class_scores*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["rule", "class", "dice", "iou", "dataset_dice", "dataset_iou"]
    assert len(table["data"]) == 2 * len(merged["rules"]["argmax"]["class_dice"])
    images = {p.name.split("_")[0] for p in (files / "media" / "images").rglob("*.png")}
    assert "reliability" in images
    assert any(p.parent.name == "overlays" for p in (files / "media" / "images").rglob("*.png"))


def test_tracker_off_with_logger_none(tmp_path, compose):
    from rankseg.engine.tracking import log_evaluation

    cfg = compose("evaluate", [*smoke_overrides(tmp_path), "logger=none"])
    assert log_evaluation(cfg, {"rules": {}}, tmp_path, []) is None
