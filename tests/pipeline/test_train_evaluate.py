"""CPU tests of training and evaluation as runs: run identity and folders, resume rules, evaluation lookup,
metrics.json merging (stale records, lock, corrupt files), checkpoints as data, config and data validation, the
entrypoints' exit status 2 and file permissions. Tiny synthetic data (16 train / 8 val images of 32x32),
DeepLabV3+ on MobileNetV2."""

import json
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import smoke_overrides

from rankseg.engine import (
    CheckpointError,
    CheckpointNotFoundError,
    ClassCountMismatchError,
    ConfigError,
    user_errors,
)
from rankseg.engine.checkpoint import load_checkpoint, save_checkpoint, weights_sha256
from rankseg.engine.evaluate import merge_metrics, run_evaluation
from rankseg.engine.runs import identity_digest, run_identity, run_key, run_name
from rankseg.engine.train import poly_factor, run_training

REPO_ROOT = Path(__file__).resolve().parents[2]
RULE_KEYS = {"mdice", "miou", "dataset_dice", "dataset_iou", "class_dice", "class_iou", "weights_sha256"}
CLASSES = ["background", "disc", "square", "triangle", "speck"]


def train_cfg(compose, root, *extra):
    return compose("train", [*smoke_overrides(root), "logger=none", *extra])


def eval_cfg(compose, root, *extra):
    return compose("evaluate", [*smoke_overrides(root), *extra])


def run_dir(compose, root, *extra) -> Path:
    """``{dataset}/{model}/{loss}/{run}`` of the tiny config with ``extra`` overrides."""
    return run_key(run_identity(train_cfg(compose, root, *extra)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compose):
    """Train 3 iterations, then resume to the end (2 epochs x 4 iterations); returns (root, first, state, second)."""
    root = tmp_path_factory.mktemp("pipeline")
    first = run_training(train_cfg(compose, root, "max_iters=3"))
    state_after_first = load_checkpoint(first["checkpoint"])
    second = run_training(train_cfg(compose, root))
    return root, first, state_after_first, second


# --- training: run identity and resume rules ------------------------------------------------------------------
def test_train_stops_at_max_iters_and_checkpoints_in_its_run_folder(trained, compose):
    root, first, state, _ = trained
    key = run_dir(compose, root)
    assert str(key).startswith("synthetic/deeplabv3plus/ce/mobilenet_v2-seed0-") and first["run"] == str(key)
    assert first["stopped"] == "max_iters" and first["iteration"] == 3 and first["total_iters"] == 8
    assert Path(first["checkpoint"]) == root / "checkpoints" / key / "last.pt"
    assert state["iteration"] == 3 and state["epoch"] == 0 and not state["finished"]
    assert state["run"] == key.name and state["environment"]["device"] == "cpu"
    assert isinstance(state["config"], dict) and state["config"]["dataset"]["num_classes"] == 5
    run_file = json.loads((root / "checkpoints" / key / "run.json").read_text())
    assert run_file["run"] == key.name and run_file["identity"] == run_identity(train_cfg(compose, root))
    # poly schedule stepped per iteration, encoder at lr/10
    lrs = {g["name"]: g["lr"] for g in state["optimizer"]["param_groups"]}
    assert lrs["head"] == pytest.approx(0.01 * poly_factor(3, 8, 0.9))
    assert lrs["backbone"] == pytest.approx(0.001 * poly_factor(3, 8, 0.9))
    assert not list(Path(first["checkpoint"]).parent.glob("*.tmp"))  # atomic write left nothing behind
    assert torch.isfinite(torch.tensor(first["loss"]))


def test_resume_continues_and_a_finished_run_is_left_alone(trained, compose, capsys):
    root, _, _, second = trained
    assert second["start_iteration"] == 3 and second["iteration"] == 8
    assert second["finished"] and second["stopped"] == "finished" and second["epoch"] == 2
    before = Path(second["checkpoint"]).stat().st_mtime_ns
    again = run_training(train_cfg(compose, root))
    assert again["start_iteration"] == 8 and again["iteration"] == 8 and again["finished"]
    assert "nothing to do" in capsys.readouterr().out
    assert Path(second["checkpoint"]).stat().st_mtime_ns == before  # not rewritten


def test_identity_ignores_paths_logging_and_stopping_points(compose, tmp_path):
    base = run_identity(train_cfg(compose, tmp_path))
    for extra in (
        ["max_iters=2", "max_minutes=1", "save_every_iters=3", "log_every=5", "logger=wandb", "device=auto"],
        [f"paths.checkpoint_dir={tmp_path / 'x'}", f"paths.data_dir={tmp_path / 'y'}", "dataset.num_workers=3"],
        ["amp=false", "sync_bn=true", "dataset.eval_batch_size=2", "dataset.eval_geometry=full", "resume=false"],
    ):
        assert run_identity(train_cfg(compose, tmp_path, *extra)) == base, extra
    for extra in (["seed=1"], ["optimizer.lr=0.02"], ["model.encoder_name=resnet18"], ["loss=focal"],
                  ["loss=focal", "loss.gamma=1"], ["dataset.epochs=3"], ["dataset.batch_size=2"],
                  ["dataset.train_crop_size=16"], ["model.decoder_channels=32"]):  # fmt: skip
        assert identity_digest(run_identity(train_cfg(compose, tmp_path, *extra))) != identity_digest(base), extra
    # the same value typed as int or float is the same run
    assert run_dir(compose, tmp_path, "optimizer.lr=1") == run_dir(compose, tmp_path, "optimizer.lr=1.0")
    # evaluate composes the same identity from the same overrides
    assert run_identity(eval_cfg(compose, tmp_path, "seed=4")) == run_identity(train_cfg(compose, tmp_path, "seed=4"))


def test_another_config_starts_a_new_run_and_leaves_the_old_one(trained, compose):
    root, _, _, second = trained
    old = load_checkpoint(second["checkpoint"])
    new = run_training(train_cfg(compose, root, "seed=1", "max_iters=1"))
    assert new["start_iteration"] == 0 and new["checkpoint"] != second["checkpoint"]
    assert Path(new["checkpoint"]).parent.name.startswith("mobilenet_v2-seed1-")
    kept = load_checkpoint(second["checkpoint"])
    assert kept["iteration"] == 8 and all(torch.equal(kept["model"][k], old["model"][k]) for k in old["model"])


def test_resume_false_starts_over_and_resume_path_must_be_the_same_run(compose, tmp_path, capsys):
    first = run_training(train_cfg(compose, tmp_path, "max_iters=2"))
    again = run_training(train_cfg(compose, tmp_path, "max_iters=1", "resume=false"))
    assert again["start_iteration"] == 0 and again["iteration"] == 1 and again["checkpoint"] == first["checkpoint"]
    assert "starting run" in capsys.readouterr().out
    # resume=PATH continues the run stored there (even from another folder) ...
    moved = tmp_path / "elsewhere"
    Path(first["checkpoint"]).parent.rename(moved)
    cont = run_training(train_cfg(compose, tmp_path, "max_iters=2", f"resume={moved}"))
    assert cont["start_iteration"] == 1 and cont["checkpoint"] == str(moved / "last.pt")
    # ... but only when its config is this one; the message names the differing keys and values
    with pytest.raises(CheckpointError, match=r"optimizer\.lr=0\.01 there, 0\.5 here"):
        run_training(train_cfg(compose, tmp_path, "optimizer.lr=0.5", f"resume={moved}"))


# --- evaluation: lookup, filing, merging --------------------------------------------------------------------
def test_evaluate_three_rules_then_merge_a_fourth(trained, compose, capsys):
    root, *_ = trained
    out = run_evaluation(eval_cfg(compose, root, "predict=[threshold,argmax,rankdice]"))
    printed = capsys.readouterr().out
    assert all(word in printed for word in ("threshold", "rankdice", "speck", "mean (paper)", "dataset-level"))
    key = run_dir(compose, root)
    path = root / "results/runs" / key / "metrics.json"
    data = json.loads(path.read_text())
    assert data == out
    assert (data["dataset"], data["model"], data["loss"], data["run"]) == ("synthetic", "deeplabv3plus", "ce", key.name)
    state = load_checkpoint(root / "checkpoints" / key / "last.pt")
    assert data["weights_sha256"] == weights_sha256(state["model"]) and data["run_config"]["seed"] == 0
    assert data["eval_settings"]["val"]["crop_size"] == 32 and data["eval_settings"]["reference_ignore"] is False
    assert data["training"] == {"iteration": 8, "total_iters": 8}
    assert list(data["rules"]) == ["threshold", "argmax", "rankdice"]
    for rec in data["rules"].values():
        assert RULE_KEYS <= set(rec) and rec["weights_sha256"] == data["weights_sha256"]
        assert rec["eval_settings"] == data["eval_settings"]
        assert list(rec["class_dice"]) == CLASSES and list(rec["class_iou"]) == CLASSES
        for k in ("mdice", "miou", "dataset_dice", "dataset_iou"):
            assert rec[k] is None or 0.0 <= rec[k] <= 1.0
        assert rec["num_images"] == 8
    csv_lines = (path.parent / "class_scores.csv").read_text().strip().splitlines()
    assert csv_lines[0] == "rule,class,dice,iou,dataset_dice,dataset_iou" and len(csv_lines) == 1 + 3 * 5

    before = data["rules"]["argmax"]
    run_evaluation(eval_cfg(compose, root, "predict=[rma]"))
    merged = json.loads(path.read_text())
    assert list(merged["rules"]) == ["threshold", "argmax", "rankdice", "rma"]
    assert merged["rules"]["argmax"] == before
    assert len((path.parent / "class_scores.csv").read_text().strip().splitlines()) == 1 + 4 * 5
    assert not list(path.parent.glob("*.tmp"))


def test_records_of_other_weights_or_settings_are_dropped(compose, tmp_path, capsys):
    first = run_training(train_cfg(compose, tmp_path, "max_iters=1"))
    capsys.readouterr()
    run_evaluation(eval_cfg(compose, tmp_path, "predict=[threshold,argmax]"))
    assert "is at iteration 1/8: its training has not finished" in capsys.readouterr().out
    path = tmp_path / "results/runs" / run_dir(compose, tmp_path) / "metrics.json"
    # the same network re-evaluated with other settings: the old records go
    run_evaluation(eval_cfg(compose, tmp_path, "predict=[rma]", "reference_ignore=true"))
    data = json.loads(path.read_text())
    assert list(data["rules"]) == ["rma"] and "dropped threshold, argmax" in capsys.readouterr().out
    # retrained at the same path (new weights): records of the old network never sit beside the new ones
    run_training(train_cfg(compose, tmp_path, "max_iters=2"))  # resumes: iteration 2 changes the weights
    out = run_evaluation(eval_cfg(compose, tmp_path, "predict=[threshold]", "reference_ignore=true"))
    assert list(out["rules"]) == ["threshold"] and out["weights_sha256"] != data["weights_sha256"]
    assert Path(first["checkpoint"]).is_file()


def test_seed_sweep_gives_one_result_file_per_run(compose, tmp_path):
    for seed in (0, 1):
        run_training(train_cfg(compose, tmp_path, f"seed={seed}", "max_iters=1"))
    hashes = set()
    for seed in (0, 1):
        out = run_evaluation(eval_cfg(compose, tmp_path, f"seed={seed}", "predict=[argmax]"))
        assert out["run_config"]["seed"] == seed and out["run"] == run_dir(compose, tmp_path, f"seed={seed}").name
        hashes.add(out["weights_sha256"])
    assert len(hashes) == 2
    assert len(list((tmp_path / "results/runs").glob("**/metrics.json"))) == 2


def test_missing_run_lists_the_nearby_runs(trained, compose):
    root, *_ = trained
    with pytest.raises(CheckpointNotFoundError) as err:
        run_evaluation(eval_cfg(compose, root, "seed=7", "dataset.batch_size=2"))
    message = str(err.value)
    assert "python train.py dataset=synthetic model=deeplabv3plus loss=ce" in message
    assert "batch_size=4 there, 2 here" in message and "seed=0 there, 7 here" in message
    assert "eval_batch_size sets the evaluation batch" in message
    with pytest.raises(CheckpointNotFoundError, match="python train.py dataset=synthetic model=pspnet loss=focal"):
        run_evaluation(eval_cfg(compose, root, "model=pspnet", "loss=focal"))


def test_ckpt_path_that_contradicts_the_command_line_is_refused(trained, compose):
    root, *_ = trained
    ckpt = root / "checkpoints" / run_dir(compose, root)
    with pytest.raises(CheckpointError, match=r"loss\.name='ce' there, 'focal' here.*Add loss=ce"):
        run_evaluation(eval_cfg(compose, root, f"ckpt_path={ckpt}", "loss=focal"))
    with pytest.raises(CheckpointError, match=r"model\.encoder_name='mobilenet_v2' there, 'resnet18' here"):
        run_evaluation(eval_cfg(compose, root, f"ckpt_path={ckpt}", "model.encoder_name=resnet18"))
    with pytest.raises(ClassCountMismatchError, match=r"5 classes.*has 21"):
        run_evaluation(compose("evaluate", [f"ckpt_path={ckpt}", "dataset=voc2012", "device=cpu"]))
    # ckpt_path of the same network, given explicitly, files its results under its own run
    out = run_evaluation(eval_cfg(compose, root, f"ckpt_path={ckpt / 'last.pt'}", "seed=3", "predict=[argmax]"))
    assert out["run"] == ckpt.name and out["run_config"]["seed"] == 0


def test_rankdice_skipped_for_improper_loss_unless_forced(trained, compose, tmp_path, capsys):
    root, *_ = trained
    state = load_checkpoint(root / "checkpoints" / run_dir(compose, root) / "last.pt")
    soft_dice = eval_cfg(compose, root, "loss=soft_dice")
    from omegaconf import OmegaConf

    state["config"]["loss"] = OmegaConf.to_container(soft_dice.loss, resolve=True)
    save_checkpoint(tmp_path / "soft_dice.pt", state)
    overrides = ["loss=soft_dice", f"ckpt_path={tmp_path / 'soft_dice.pt'}", f"paths.results_dir={tmp_path}"]
    out = run_evaluation(eval_cfg(compose, root, *overrides, "predict=[argmax,rankdice]"))
    assert list(out["rules"]) == ["argmax"] and "not strictly proper" in capsys.readouterr().out
    assert out["loss"] == "soft_dice" and "/soft_dice/" in str(next(tmp_path.glob("runs/**/metrics.json")))
    out = run_evaluation(eval_cfg(compose, root, *overrides, "predict=[argmax,rankdice]", "force_rankdice=true"))
    assert list(out["rules"]) == ["argmax", "rankdice"]
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        run_evaluation(eval_cfg(compose, root, *overrides, "predict=[rankdice]"))


# --- checkpoints are data ----------------------------------------------------------------------------------
def test_checkpoint_config_is_never_instantiated(trained, compose, tmp_path):
    """A crafted config naming torch.hub.load on a local hubconf.py must not run it (weights_only alone would)."""
    root, *_ = trained
    sentinel = tmp_path / "pwned"
    (tmp_path / "hubconf.py").write_text(f"def evil(**kw):\n    open({str(sentinel)!r}, 'w').write('x')\n")
    key = run_dir(compose, root)
    state = load_checkpoint(root / "checkpoints" / key / "last.pt")
    state["config"]["model"] = {
        **state["config"]["model"],
        "_target_": "torch.hub.load",
        "repo_or_dir": str(tmp_path),
        "model": "evil",
        "source": "local",
    }
    crafted = tmp_path / "crafted.pt"
    save_checkpoint(crafted, state)
    with pytest.raises(CheckpointError, match=r"model\._target_='torch\.hub\.load' there"):
        run_evaluation(eval_cfg(compose, root, f"ckpt_path={crafted}"))
    # the same file planted where the run of the config is looked up
    planted = tmp_path / "ck" / key / "last.pt"
    save_checkpoint(planted, state)
    with pytest.raises(CheckpointError, match="holds another run than its folder says"):
        run_evaluation(eval_cfg(compose, root, f"paths.checkpoint_dir={tmp_path / 'ck'}"))
    with pytest.raises(CheckpointError, match="holds another config than its folder name says"):
        run_training(train_cfg(compose, root, f"paths.checkpoint_dir={tmp_path / 'ck'}"))
    assert not sentinel.exists()


class _Foreign:
    pass


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "the file is empty"),
        ("truncated", "truncated, corrupt or not a torch checkpoint"),
        ("bare", "bare state_dict"),
        ("foreign", "lacks ['config', 'iteration']"),
        ("object", "Python object of type"),
    ],
)
def test_unreadable_or_foreign_checkpoints_get_one_message(trained, compose, tmp_path, content, problem):
    root, *_ = trained
    good = load_checkpoint(root / "checkpoints" / run_dir(compose, root) / "last.pt")
    path = tmp_path / "bad.pt"
    if content == "truncated":
        save_checkpoint(path, good)
        path.write_bytes(path.read_bytes()[:5000])
    elif content == "bare":
        torch.save(good["model"], path)
    elif content == "foreign":
        torch.save({"model": good["model"], "epoch": 3}, path)
    elif content == "object":
        torch.save({"model": good["model"], "config": _Foreign(), "iteration": 1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        run_evaluation(eval_cfg(compose, root, f"ckpt_path={path}"))
    assert str(path) in str(err.value) and problem in str(err.value) and "ckpt_path=" in str(err.value)
    with pytest.raises(CheckpointError) as err:
        run_training(train_cfg(compose, root, f"resume={path}"))
    assert str(path) in str(err.value) and problem in str(err.value)


def test_corrupt_metrics_json_is_moved_aside_before_the_evaluation(trained, compose, tmp_path, monkeypatch):
    root, *_ = trained
    results = tmp_path / "res"
    path = results / "runs" / run_dir(compose, root) / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"rules": {"argmax": ')  # a write cut short by a crash of another tool
    import rankseg.engine.evaluate as evaluate_module

    def no_dataset(*args, **kwargs):
        raise RuntimeError("stop before the evaluation")

    monkeypatch.setattr(evaluate_module, "build_dataset", no_dataset)
    with pytest.raises(RuntimeError, match="stop before the evaluation"):
        run_evaluation(eval_cfg(compose, root, f"paths.results_dir={results}", "predict=[argmax]"))
    (aside,) = path.parent.glob("metrics.json.corrupt-*")
    assert aside.read_text() == '{"rules": {"argmax": ' and not path.exists()
    monkeypatch.undo()
    out = run_evaluation(eval_cfg(compose, root, f"paths.results_dir={results}", "predict=[argmax]"))
    assert json.loads(path.read_text()) == out


def _merge_many(path: str, header: dict, record: dict, prefix: str, count: int) -> None:
    for i in range(count):
        merge_metrics(Path(path), header, {f"{prefix}{i}": record})


def test_concurrent_merges_lose_nothing(tmp_path):
    header = {"dataset": "d", "model": "m", "loss": "l", "weights_sha256": "ab", "eval_settings": {"amp": False}}
    record = {
        "class_dice": {"a": 0.5},
        "class_iou": {"a": 0.25},
        "weights_sha256": "ab",
        "eval_settings": {"amp": False},
    }
    path = tmp_path / "metrics.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_merge_many, args=(str(path), header, record, p, 25)) for p in ("a", "b")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    data = json.loads(path.read_text())
    assert set(data["rules"]) == {f"{p}{i}" for p in "ab" for i in range(25)}
    assert len((tmp_path / "class_scores.csv").read_text().splitlines()) == 1 + 50


def test_written_files_follow_the_umask(compose, tmp_path):
    old = os.umask(0o027)
    try:
        summary = run_training(train_cfg(compose, tmp_path, "max_iters=1"))
        run_evaluation(eval_cfg(compose, tmp_path, "predict=[argmax]"))
    finally:
        os.umask(old)
    ckpt = Path(summary["checkpoint"])
    results = tmp_path / "results/runs" / run_dir(compose, tmp_path)
    for path in (ckpt, ckpt.parent / "run.json", results / "metrics.json", results / "class_scores.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


# --- bad input: config values and data faults ---------------------------------------------------------------
@pytest.mark.parametrize(
    "script, extra, words",
    [
        ("train", ["dataset.batch_size=0"], "batch_size must be a positive integer, got 0"),
        ("train", ["seed=-1"], "seed must be an integer >= 0"),
        ("train", ["max_iters=0"], "max_iters must be a positive integer"),
        ("train", ["dataset.epochs=1.5"], "epochs must be a positive integer"),
        ("train", ["loss.name=../../x"], "loss.name='../../x' names a folder"),
        ("train", ["optimizer.lr=0"], "optimizer.lr must be a number > 0"),
        ("evaluate", ["predict=[]"], "predict is empty"),
        ("evaluate", ["dataset.classes_of_interest=[1,7]"], "classes_of_interest=[1, 7] must list class indices"),
        ("evaluate", ["dataset.eval_batch_size=-2"], "eval_batch_size must be a positive integer"),
        ("evaluate", ["model.name=a/b"], "model.name='a/b' names a folder"),
    ],
)
def test_bad_config_values_are_refused_before_any_work(compose, tmp_path, script, extra, words):
    cfg = compose(script, [*smoke_overrides(tmp_path), *extra])
    with pytest.raises(ConfigError) as err:
        (run_training if script == "train" else run_evaluation)(cfg)
    assert words in str(err.value)
    assert not (tmp_path / "data").exists()  # refused before the dataset was even generated


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_a_config_error(compose, tmp_path):
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        run_training(compose("train", [*smoke_overrides(tmp_path), "device=cuda"]))


def test_split_too_small_for_batchnorm(compose, tmp_path):
    with pytest.raises(ConfigError, match=r"1 image per process.*BatchNorm"):
        run_training(train_cfg(compose, tmp_path, "dataset.num_train=1"))


def test_dataset_layout_error_is_a_user_error(compose, tmp_path):
    from rankseg.data import DatasetLayoutError

    assert DatasetLayoutError in user_errors() and ConfigError in user_errors()
    with pytest.raises(DatasetLayoutError):
        run_training(compose("train", ["dataset=cityscapes", f"paths.data_dir={tmp_path / 'data'}", "device=cpu",
                                       "dataset.encoder_weights=null", "logger=none"]))  # fmt: skip


def _run_entrypoint(script: str, overrides: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *overrides],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_entrypoints_exit_code_2_with_one_message(tmp_path):
    overrides = [*smoke_overrides(tmp_path), f"hydra.run.dir={tmp_path / 'hydra'}"]
    proc = _run_entrypoint("evaluate.py", [*overrides, "loss=bce"])
    assert proc.returncode == 2, proc.stderr
    assert "python train.py dataset=synthetic model=deeplabv3plus loss=bce" in proc.stderr
    assert "Traceback" not in proc.stderr
    bad = tmp_path / "empty.pt"
    bad.write_bytes(b"")
    proc = _run_entrypoint("evaluate.py", [*overrides, f"ckpt_path={bad}"])
    assert proc.returncode == 2 and f"cannot read checkpoint {bad}: the file is empty" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _run_entrypoint("train.py", [*overrides, "logger=none", "dataset.batch_size=0"])
    assert proc.returncode == 2 and proc.stderr.startswith("error: batch_size must be a positive integer")
    assert "Traceback" not in proc.stderr


def test_run_name_is_readable():
    identity = {"model": {"encoder_name": "tu-convnext/tiny"}, "seed": 3, "dataset": {}, "loss": {}}
    assert run_name(identity).startswith("tu-convnext_tiny-seed3-") and len(run_name(identity).split("-")[-1]) == 8


def test_checkpoint_of_the_old_layout_is_named_not_resumed(trained, compose, tmp_path, capsys):
    root, *_ = trained
    state = load_checkpoint(root / "checkpoints" / run_dir(compose, root) / "last.pt")
    state["iteration"] = 7
    legacy = tmp_path / "checkpoints/synthetic/deeplabv3plus/ce/last.pt"  # where train.py used to write
    save_checkpoint(legacy, state)
    fresh = run_training(train_cfg(compose, tmp_path, "max_iters=1"))
    assert fresh["start_iteration"] == 0 and f"resume={legacy}" in capsys.readouterr().out
    moved = run_training(train_cfg(compose, tmp_path, f"resume={legacy}"))
    assert moved["start_iteration"] == 7 and moved["iteration"] == 8 and moved["checkpoint"] == str(legacy)
