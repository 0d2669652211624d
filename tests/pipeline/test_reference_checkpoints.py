"""Checkpoints of the JMLR authors' trainer through evaluate.py (issue: evaluate the published networks).

A synthetic checkpoint in the reference format (random weights under the reference's parameter names, each with
DataParallel's ``module.`` prefix, a NumPy ``monitor_best``, the run's config embedded and as ``config.json``
beside it) is evaluated end to end on a fake VOC tree: results are filed under the identity derived from the
config, and the argmax scores equal those computed here from the network's own forward pass with NumPy.
Malformed files each get one message naming the problem.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rankseg.data.fake import make_fake_dataset
from rankseg.engine import CheckpointError, CheckpointNotFoundError
from rankseg.engine.build import build_dataset, build_model
from rankseg.engine.checkpoint import read_checkpoint_file
from rankseg.engine.evaluate import run_evaluation
from rankseg.engine.reference_ckpt import read_reference_checkpoint, reference_identity
from rankseg.engine.runs import run_name

REFERENCE_CONFIG = {
    "name": "PSPNet",
    "n_gpu": 1,
    "use_synch_bn": False,
    "predict": {"temperature": 1.0, "CoI": list(range(1, 21)), "train": "T", "val": "T", "test": "T"},
    "arch": {"type": "PSPNet", "args": {"backbone": "resnet50", "freeze_bn": False, "freeze_backbone": False}},
    "train_loader": {
        "type": "VOC",
        "args": {"data_dir": "data/VOCtrainval_11-May-2012", "batch_size": 8, "crop_size": 380, "augment": True,
                 "shuffle": True, "scale": True, "flip": True, "rotate": True, "blur": False, "split": "train",
                 "num_workers": 8},
    },
    "val_loader": {"type": "VOC", "args": {"data_dir": "data/VOCtrainval_11-May-2012", "batch_size": 8,
                                           "crop_size": 480, "val": True, "split": "val", "num_workers": 4}},
    "optimizer": {"type": "SGD", "differential_lr": True, "args": {"lr": 0.01, "weight_decay": 1e-4, "momentum": 0.9}},
    "loss": "CrossEntropyLoss2d",
    "ignore_index": 255,
    "lr_scheduler": {"type": "Poly", "args": {}},
    "trainer": {"epochs": 300, "save_dir": "saved/", "save_period": 10, "monitor": "min val_loss", "val": True,
                "val_per_epochs": 10},
}  # fmt: skip


def _overrides(root: Path, *extra: str) -> list[str]:
    return [
        "dataset=voc2012",
        "model=ref_pspnet",
        "loss=ce",
        f"dataset.root={root / 'voc'}",
        f"paths.results_dir={root / 'results'}",
        f"paths.checkpoint_dir={root / 'checkpoints'}",
        f"paths.output_dir={root / 'outputs'}",
        "dataset.crop_size=64",
        "dataset.eval_batch_size=2",
        "dataset.num_workers=0",
        "dataset.encoder_weights=null",
        "device=cpu",
        "logger=none",
        *extra,
    ]


def _write_reference(folder: Path, state_dict: dict, epoch: int = 300, config: dict | None = None, **extra) -> Path:
    """A run folder of the reference trainer: checkpoint-epoch{epoch}.pth and config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(config or REFERENCE_CONFIG)
    state = {
        "arch": "DataParallel",
        "epoch": epoch,
        "state_dict": {f"module.{k}": v for k, v in state_dict.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "momentum": 0.9, "params": [0, 1]}]},
        "monitor_best": np.round(np.float64(0.1234567), 5),  # what the reference trainer stores (a NumPy float)
        "config": config,
        **extra,
    }
    path = folder / f"checkpoint-epoch{epoch}.pth"
    torch.save(state, path)
    (folder / "config.json").write_text(json.dumps(config, indent=4, sort_keys=True))
    return path


@pytest.fixture(scope="module")
def published(tmp_path_factory, compose):
    """(root, checkpoint path, the network's state dict): a fake VOC tree and one reference PSPNet checkpoint."""
    root = tmp_path_factory.mktemp("reference")
    make_fake_dataset("voc2012", root / "voc")
    torch.manual_seed(0)
    model = build_model(compose("evaluate", _overrides(root)).model, pretrained=False)
    for module in model.modules():  # non-trivial running statistics, so that eval-mode BatchNorm matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    path = _write_reference(root / "saved" / "PSPNet" / "CrossEntropyLoss2d" / "T" / "01-22_20-28", weights)
    return root, path, weights


def _numpy_argmax_mdice(cfg, weights: dict) -> list[float]:
    """Per-image mean Dice over VOC's classes of interest (1..20) of the argmax prediction, computed here with
    NumPy from the network's forward pass, with the reference tester's metric: ignore pixels (255) are not masked
    (they belong to no class, so a prediction there is a false positive) and a class absent from both prediction
    and truth gets no score."""
    model = build_model(cfg.model, pretrained=False)
    model.load_state_dict(weights)
    model.eval()
    scores = []
    for image, target in build_dataset(cfg.dataset, "val"):
        with torch.no_grad():
            pred = model(image[None])[0].argmax(0).numpy()
        target = target.numpy()
        dices = []
        for k in range(1, 21):
            p, t = pred == k, target == k
            if p.sum() + t.sum() > 0:
                dices.append(2 * (p & t).sum() / (p.sum() + t.sum()))
        scores.append(float(np.mean(dices)) if dices else float("nan"))
    return scores


def test_reference_checkpoint_is_evaluated_and_filed_under_its_config(published, compose):
    root, path, weights = published
    rules = "predict=[argmax,threshold_reference,rankdice_reference]"
    cfg = compose("evaluate", _overrides(root, "experiment=published_networks", f"ckpt_path={path}", rules))
    out = run_evaluation(cfg)
    assert out["checkpoint_format"] == "reference" and out["training"] == {"epoch": 300, "total_epochs": 300}
    (metrics,) = (root / "results" / "runs" / "voc2012" / "ref_pspnet" / "ce").glob("reference-epoch300-*/metrics.json")
    assert json.loads(metrics.read_text()) == out
    assert set(out["rules"]) == {"argmax", "threshold_reference", "rankdice_reference"}
    settings = out["eval_settings"]
    assert settings["reference_ignore"] is True and settings["val"]["eval_geometry"] == "reference"
    identity = out["run_config"]
    assert identity["model"]["arch"]["type"] == "PSPNet" and identity["loss"]["reference"] == "CrossEntropyLoss2d"
    assert identity["dataset"]["train"]["crop_size"] == 380 and "data_dir" not in identity["dataset"]["train"]
    expected = [s for s in _numpy_argmax_mdice(cfg, weights) if not np.isnan(s)]
    assert out["rules"]["argmax"]["num_images"] == 3
    assert out["rules"]["argmax"]["mdice"] == pytest.approx(np.mean(expected), abs=1e-6)


def test_another_epoch_of_the_same_run_is_another_result(published, compose):
    root, path, weights = published
    cfg = compose("evaluate", _overrides(root))
    names = []
    for epoch in (300, 290):
        other = _write_reference(root / f"epoch{epoch}", weights, epoch=epoch)
        ref = read_reference_checkpoint(other, read_checkpoint_file(other, "cpu", ""), "")
        names.append(run_name(reference_identity(ref, cfg)))
    assert names[0].startswith("reference-epoch300-") and names[1].startswith("reference-epoch290-")
    assert names[0].split("-")[-1] != names[1].split("-")[-1]


def test_command_line_must_name_the_configs_of_the_checkpoint(published, compose):
    root, path, _ = published
    cfg = compose("evaluate", _overrides(root, f"ckpt_path={path}", "loss=focal", "predict=[argmax]"))
    with pytest.raises(CheckpointError) as err:
        run_evaluation(cfg)
    message = str(err.value)
    assert "reference PSPNet trained on VOC with CrossEntropyLoss2d" in message
    assert "loss='ce' there, 'focal' here" in message
    assert f"python evaluate.py dataset=voc2012 model=ref_pspnet loss=ce ckpt_path={path}" in message


def test_the_backbone_of_a_reference_pspnet_must_be_named(published, compose, tmp_path):
    root, _, weights = published
    config = copy.deepcopy(REFERENCE_CONFIG)
    config["arch"]["args"]["backbone"] = "resnet101"
    path = _write_reference(tmp_path / "r101", {"x": torch.zeros(1)}, config=config)
    with pytest.raises(CheckpointError) as err:
        run_evaluation(compose("evaluate", _overrides(root, f"ckpt_path={path}", "predict=[argmax]")))
    assert "model.encoder_name='resnet101' there, 'resnet50' here" in str(err.value)
    assert "model=ref_pspnet loss=ce model.encoder_name=resnet101 ckpt_path=" in str(err.value)


def test_a_reference_run_folder_asks_for_an_epoch(published, compose):
    root, path, _ = published
    cfg = compose("evaluate", _overrides(root, f"ckpt_path={path.parent}", "predict=[argmax]"))
    with pytest.raises(CheckpointNotFoundError, match=r"name the epoch to evaluate, e.g. ckpt_path=.*epoch300\.pth"):
        run_evaluation(cfg)


class _Foreign:
    pass


def _drop_first(weights: dict) -> dict:
    return dict(list(weights.items())[1:])


def _widen_classifier(weights: dict) -> dict:
    key = next(k for k, v in reversed(weights.items()) if v.ndim == 4)
    return {**weights, key: torch.zeros(7, *weights[key].shape[1:])}


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing", ["do not fit model 'ref_pspnet'", "1 missing key(s):"]),
        ("shape", ["1 shape mismatch(es):", "(checkpoint (7,"]),
        ("object", ["Python object of type", "_Foreign"]),
        ("arch", ["the architecture 'UNet'", "DeepLab, FCN8, PSPNet"]),
        ("disagree", ["disagree on ['loss']"]),
        ("no_config", ["holds no 'config' and there is no config.json"]),
    ],
)
def test_malformed_reference_checkpoints_get_one_message(published, compose, tmp_path, case, words):
    root, _, weights = published
    folder = tmp_path / case
    if case == "missing":
        path = _write_reference(folder, _drop_first(weights))
    elif case == "shape":
        path = _write_reference(folder, _widen_classifier(weights))
    elif case == "object":
        path = _write_reference(folder, weights, extra_object=_Foreign())
    elif case == "arch":
        config = copy.deepcopy(REFERENCE_CONFIG)
        config["arch"]["type"] = "UNet"
        path = _write_reference(folder, weights, config=config)
    elif case == "disagree":
        path = _write_reference(folder, weights)
        beside = json.loads((folder / "config.json").read_text())
        beside["loss"] = "FocalLoss"
        (folder / "config.json").write_text(json.dumps(beside))
    else:
        path = _write_reference(folder, weights)
        state = torch.load(path, weights_only=False)
        del state["config"]
        torch.save(state, path)
        (folder / "config.json").unlink()
    cfg = compose("evaluate", _overrides(root, f"ckpt_path={path}", "predict=[argmax]"))
    with pytest.raises(CheckpointError) as err:
        run_evaluation(cfg)
    message = str(err.value)
    assert str(path) in message and all(w in message for w in words), message


def test_reference_format_forced_on_our_checkpoint_is_refused(published, compose, tmp_path):
    root, _, weights = published
    path = tmp_path / "ours.pt"
    torch.save({"model": weights, "config": {}, "iteration": 1}, path)
    cfg = compose("evaluate", _overrides(root, f"ckpt_path={path}", "ckpt_format=reference", "predict=[argmax]"))
    with pytest.raises(CheckpointError, match="is not a checkpoint of the reference trainer"):
        run_evaluation(cfg)


def test_evaluate_published_lists_one_command_per_network(published, tmp_path, capsys, compose):
    import importlib.util

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("evaluate_published", REPO_ROOT / "scripts" / "evaluate_published.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    tree = tmp_path / "published"
    for arch, loss in (("PSPNet", "FocalLoss"), ("FCN8", "BCEWithLogitsLoss2d"), ("UNet", "CrossEntropyLoss2d")):
        folder = tree / arch / loss / "T" / "05-04_13-08"
        folder.mkdir(parents=True)
        config = copy.deepcopy(REFERENCE_CONFIG)
        config["arch"]["type"], config["loss"] = arch, loss
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "checkpoint-epoch300.pth").write_bytes(b"never read: config.json is beside it")
    assert script.main([str(tree), "--dataset-root", "/data/voc", "--", "device=cuda"]) == 2  # UNet: exit 2
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines == [
        f"python evaluate.py experiment=published_networks dataset=voc2012 model=ref_fcn8 loss=bce "
        f"dataset.root=/data/voc ckpt_path={tree / 'FCN8/BCEWithLogitsLoss2d/T/05-04_13-08/checkpoint-epoch300.pth'} "
        "device=cuda",
        f"python evaluate.py experiment=published_networks dataset=voc2012 model=ref_pspnet loss=focal "
        f"dataset.root=/data/voc ckpt_path={tree / 'PSPNet/FocalLoss/T/05-04_13-08/checkpoint-epoch300.pth'} "
        "device=cuda",
    ]
    assert "skipped:" in err and "the architecture 'UNet'" in err
    for line in lines:  # each listed command composes, protocol included
        cfg = compose("evaluate", line.split()[2:])
        assert cfg.reference_ignore is True and cfg.amp is False and cfg.dataset.val.eval_geometry == "reference"
        assert {"threshold_reference", "rankdice_reference", "argmax"} <= set(cfg.predict)


def test_numpy_scalars_of_numpy_1_and_2_are_read_as_data(tmp_path):
    """The reference trainer ran under NumPy 1.x, whose pickles name ``numpy.core.multiarray.scalar`` (2.x:
    ``numpy._core``); both load, and nothing else outside tensors and containers does."""
    import io
    import zipfile

    from rankseg.engine.checkpoint import CheckpointError as Refused

    buf = io.BytesIO()
    torch.save({"monitor_best": np.round(np.float64(0.1234567), 5), "epoch": 300, "w": torch.ones(2)}, buf)
    path_2x, path_1x = tmp_path / "numpy2.pth", tmp_path / "numpy1.pth"
    path_2x.write_bytes(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(path_1x, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info.filename, data)
    for path in (path_2x, path_1x):
        state = read_checkpoint_file(path, "cpu", "")
        assert float(state["monitor_best"]) == 0.12346 and state["epoch"] == 300
    torch.save({"w": torch.ones(2), "x": _Foreign()}, tmp_path / "object.pth")
    with pytest.raises(Refused, match="Python object of type"):
        read_checkpoint_file(tmp_path / "object.pth", "cpu", "")
