"""CPU smoke tests of training, resuming, evaluation with several rules, merging of metrics.json, and the
entrypoints' exit code 2 on setup errors. Tiny synthetic data (16 train / 8 val images of 32x32),
DeepLabV3+ on MobileNetV2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import smoke_overrides

from rankseg.engine import CheckpointError, CheckpointNotFoundError, ClassCountMismatchError, user_errors
from rankseg.engine.checkpoint import load_checkpoint, save_checkpoint
from rankseg.engine.evaluate import run_evaluation
from rankseg.engine.train import poly_factor, run_training

REPO_ROOT = Path(__file__).resolve().parents[2]
RULE_KEYS = {"mdice", "miou", "dataset_dice", "dataset_iou", "class_dice", "class_iou"}
CLASSES = ["background", "disc", "square", "triangle", "speck"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compose):
    """Train 3 iterations, then resume to the end (2 epochs x 4 iterations); returns (root, first, second)."""
    root = tmp_path_factory.mktemp("pipeline")
    first = run_training(compose("train", [*smoke_overrides(root), "logger=none", "max_iters=3"]))
    state_after_first = load_checkpoint(first["checkpoint"])
    second = run_training(compose("train", [*smoke_overrides(root), "logger=none"]))
    return root, first, state_after_first, second


def test_train_stops_at_max_iters_and_checkpoints(trained):
    root, first, state, _ = trained
    assert first["stopped"] == "max_iters" and first["iteration"] == 3 and first["total_iters"] == 8
    assert Path(first["checkpoint"]) == root / "checkpoints/synthetic/deeplabv3plus/ce/last.pt"
    assert state["iteration"] == 3 and state["epoch"] == 0 and not state["finished"]
    assert {"model", "optimizer", "scheduler", "epoch", "config"} <= set(state)
    assert isinstance(state["config"], dict) and state["config"]["dataset"]["num_classes"] == 5
    # poly schedule stepped per iteration, encoder at lr/10
    lrs = {g["name"]: g["lr"] for g in state["optimizer"]["param_groups"]}
    assert lrs["head"] == pytest.approx(0.01 * poly_factor(3, 8, 0.9))
    assert lrs["backbone"] == pytest.approx(0.001 * poly_factor(3, 8, 0.9))
    assert not list(Path(first["checkpoint"]).parent.glob("*.tmp"))  # atomic write left nothing behind
    assert torch.isfinite(torch.tensor(first["loss"]))


def test_resume_continues_from_saved_iteration(trained, compose):
    root, _, _, second = trained
    assert second["start_iteration"] == 3 and second["iteration"] == 8
    assert second["finished"] and second["stopped"] == "finished" and second["epoch"] == 2
    state = load_checkpoint(second["checkpoint"])
    assert state["iteration"] == 8 and state["finished"]
    # a finished run resumes to a no-op
    again = run_training(compose("train", [*smoke_overrides(root), "logger=none"]))
    assert again["start_iteration"] == 8 and again["iteration"] == 8


def test_resume_refuses_another_architecture(trained, compose):
    root, *_ = trained
    cfg = compose("train", [*smoke_overrides(root), "logger=none", "model.decoder_channels=32"])
    with pytest.raises(CheckpointError, match="decoder_channels"):
        run_training(cfg)


def test_evaluate_three_rules_then_merge_a_fourth(trained, compose, capsys):
    root, *_ = trained
    out = run_evaluation(compose("evaluate", [*smoke_overrides(root), "predict=[threshold,argmax,rankdice]"]))
    printed = capsys.readouterr().out
    assert all(
        word in printed for word in ("threshold", "rankdice", "speck", "mean (paper)", "dataset-level")
    )
    path = root / "results/runs/synthetic/deeplabv3plus/ce/metrics.json"
    data = json.loads(path.read_text())
    assert data == out
    assert {"dataset", "model", "loss", "checkpoint", "commit", "rules"} <= set(data)
    assert (data["dataset"], data["model"], data["loss"]) == ("synthetic", "deeplabv3plus", "ce")
    assert list(data["rules"]) == ["threshold", "argmax", "rankdice"]
    for rec in data["rules"].values():
        assert RULE_KEYS <= set(rec)
        assert list(rec["class_dice"]) == CLASSES and list(rec["class_iou"]) == CLASSES
        for key in ("mdice", "miou", "dataset_dice", "dataset_iou"):
            assert rec[key] is None or 0.0 <= rec[key] <= 1.0
        assert rec["num_images"] == 8
    csv_lines = (path.parent / "class_scores.csv").read_text().strip().splitlines()
    assert csv_lines[0] == "rule,class,dice,iou,dataset_dice,dataset_iou" and len(csv_lines) == 1 + 3 * 5

    before = data["rules"]["argmax"]
    run_evaluation(compose("evaluate", [*smoke_overrides(root), "predict=[rma]"]))
    merged = json.loads(path.read_text())
    assert list(merged["rules"]) == ["threshold", "argmax", "rankdice", "rma"]
    assert merged["rules"]["argmax"] == before
    assert len((path.parent / "class_scores.csv").read_text().strip().splitlines()) == 1 + 4 * 5
    assert not list(path.parent.glob("*.tmp"))


def test_rankdice_skipped_for_improper_loss_unless_forced(trained, compose, capsys):
    root, *_ = trained
    state = load_checkpoint(root / "checkpoints/synthetic/deeplabv3plus/ce/last.pt")
    state["config"]["loss"] = {"name": "soft_dice", "proper": False, "activation": "softmax"}
    save_checkpoint(root / "checkpoints/synthetic/deeplabv3plus/soft_dice/last.pt", state)
    overrides = [*smoke_overrides(root), "loss=soft_dice", "predict=[argmax,rankdice]"]
    out = run_evaluation(compose("evaluate", overrides))
    assert list(out["rules"]) == ["argmax"] and "not strictly proper" in capsys.readouterr().out
    out = run_evaluation(compose("evaluate", [*overrides, "force_rankdice=true", "reference_ignore=true"]))
    assert list(out["rules"]) == ["argmax", "rankdice"] and out["rules"]["rankdice"]["reference_ignore"]


def test_missing_checkpoint_and_class_mismatch_raise(compose, tmp_path):
    command = "python train.py dataset=synthetic model=pspnet loss=focal"
    with pytest.raises(CheckpointNotFoundError, match=command):
        run_evaluation(compose("evaluate", [*smoke_overrides(tmp_path), "model=pspnet", "loss=focal"]))
    fake = tmp_path / "checkpoints/synthetic/deeplabv3plus/ce/last.pt"
    save_checkpoint(fake, {"config": {"dataset": {"num_classes": 3}}, "model": {}})
    with pytest.raises(ClassCountMismatchError, match=r"3 classes.*has 5"):
        run_evaluation(compose("evaluate", smoke_overrides(tmp_path)))
    with pytest.raises(ClassCountMismatchError):
        run_training(compose("train", [*smoke_overrides(tmp_path), "logger=none", "max_iters=1"]))


def test_dataset_layout_error_is_a_user_error(compose, tmp_path):
    from rankseg.data import DatasetLayoutError

    assert DatasetLayoutError in user_errors()
    fake = tmp_path / "checkpoints/cityscapes/deeplabv3plus/ce/last.pt"
    save_checkpoint(fake, {"config": {"dataset": {"num_classes": 19}}, "model": {}})
    with pytest.raises(DatasetLayoutError):
        run_evaluation(
            compose(
                "evaluate",
                [
                    "dataset=cityscapes",
                    f"paths.data_dir={tmp_path / 'data'}",
                    f"paths.checkpoint_dir={tmp_path / 'checkpoints'}",
                ],
            )
        )


def _run_entrypoint(script: str, overrides: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *overrides],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_evaluate_entrypoint_exit_code_2(tmp_path):
    overrides = [*smoke_overrides(tmp_path), f"hydra.run.dir={tmp_path / 'hydra'}"]
    proc = _run_entrypoint("evaluate.py", [*overrides, "loss=bce"])
    assert proc.returncode == 2, proc.stderr
    assert "python train.py dataset=synthetic model=deeplabv3plus loss=bce" in proc.stderr
    assert "Traceback" not in proc.stderr

    fake = tmp_path / "checkpoints/synthetic/deeplabv3plus/ce/last.pt"
    save_checkpoint(fake, {"config": {"dataset": {"num_classes": 7}}, "model": {}})
    proc = _run_entrypoint("evaluate.py", overrides)
    assert proc.returncode == 2, proc.stderr
    assert "7 classes" in proc.stderr and "has 5" in proc.stderr and "Traceback" not in proc.stderr
