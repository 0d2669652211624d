"""Calibration in evaluate.py on the tiny synthetic run (CPU): the ECE entries of metrics.json against an
independent pass over the val set, reliability.png, calibrate=temperature (temperature.json, RULE@T records beside
RULE, reuse and refit, merging that never mixes temperatures), a sigmoid loss, bad config values, and (slow) two
processes giving the same calibration as one."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smoke_overrides
from omegaconf import OmegaConf

from rankseg.engine import ConfigError
from rankseg.engine.build import build_dataset, build_model
from rankseg.engine.checkpoint import load_checkpoint, save_checkpoint
from rankseg.engine.evaluate import run_evaluation
from rankseg.engine.runs import run_identity, run_key
from rankseg.engine.train import model_logits, run_training

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def eval_cfg(compose, root, *extra):
    return compose("evaluate", [*smoke_overrides(root), *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory, compose):
    """The tiny run trained to its end (8 iterations); returns (root, its results folder below a results_dir)."""
    root = tmp_path_factory.mktemp("calibration")
    run_training(compose("train", [*smoke_overrides(root), "logger=none"]))
    return root, Path("runs") / run_key(run_identity(eval_cfg(compose, root)))


def _ece_from_entry(entry):
    """ECE from the stored bins: sum over bins of count * |accuracy - confidence|, over the pixel count."""
    bins = entry["bins"]
    rows = [(n, a, c) for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"], strict=True) if n]
    return sum(n * abs(a - c) for n, a, c in rows) / sum(n for n, _, _ in rows)


def test_temperature_run_writes_temperature_json_and_side_by_side_records(run, compose, tmp_path, capsys):
    root, key = run
    out = run_evaluation(
        eval_cfg(compose, root, f"paths.results_dir={tmp_path}", "calibrate=temperature",
                 "calibration.fraction=0.25", "predict=[argmax,rankdice]")
    )  # fmt: skip
    printed = capsys.readouterr().out
    folder = tmp_path / key
    fit = json.loads((folder / "temperature.json").read_text())
    t = fit["temperature"]
    assert 0.01 < t < 100 and not fit["at_bound"] and fit["nll_after"] <= fit["nll_before"]
    assert fit["weights_sha256"] == out["weights_sha256"] and fit["num_images"] == 4
    assert len(fit["images"]) == 4 and all(name.startswith("images/train/") for name in fit["images"])
    assert fit["settings"]["dataset"]["split"] == "train" and fit["settings"]["dataset"]["train"] is False
    assert fit["settings"]["fraction"] == 0.25 and fit["num_pixels"] <= 4 * 32 * 32

    # every rule with and without T, side by side, in the table and in metrics.json
    assert list(out["rules"]) == ["argmax", "argmax@T", "rankdice", "rankdice@T"]
    assert "argmax@T" in printed and f"RULE@T = RULE on softmax(logits / {t:.4f})" in printed
    for name, record in out["rules"].items():
        assert record.get("temperature") == (t if name.endswith("@T") else None)
        assert record["weights_sha256"] == out["weights_sha256"] and record["num_images"] == 8
    raw, tempered = out["rules"]["argmax"], out["rules"]["argmax@T"]
    assert raw["class_dice"] == tempered["class_dice"] and raw["mdice"] == tempered["mdice"]  # T keeps the argmax

    assert list(out["calibration"]) == ["raw", "@T"]
    entry_raw, entry_t = out["calibration"]["raw"], out["calibration"]["@T"]
    assert entry_raw["temperature"] is None and entry_t["temperature"] == t and entry_t["fit"]["temperature"] == t
    for entry in (entry_raw, entry_t):
        assert entry["num_bins"] == 10 and entry["num_images"] == 8 and 0 < entry["num_pixels"] <= 8 * 32 * 32
        assert entry["weights_sha256"] == out["weights_sha256"] and entry["eval_settings"] == out["eval_settings"]
        assert entry["ece"] == pytest.approx(_ece_from_entry(entry), abs=1e-12)
        assert 0 <= entry["ece"] <= 1 and 0 <= entry["ece_per_image"] <= 1
    assert entry_t["nll"] != entry_raw["nll"]
    assert json.loads((folder / "metrics.json").read_text()) == out
    assert (folder / "reliability.png").read_bytes().startswith(PNG_MAGIC)
    assert sum(line.startswith("argmax@T,") for line in (folder / "class_scores.csv").read_text().splitlines()) == 5


def test_ece_matches_an_independent_pass_over_the_val_set(run, compose, tmp_path):
    """Dataset-level and per-image ECE, raw and with T, recomputed with NumPy from the network's outputs."""
    root, key = run
    cfg = eval_cfg(compose, root, f"paths.results_dir={tmp_path}", "calibrate=temperature", "predict=[argmax]")
    out = run_evaluation(cfg)
    state = load_checkpoint(root / "checkpoints" / key.relative_to("runs") / "last.pt")
    model = build_model(cfg.model, pretrained=False)
    model.load_state_dict(state["model"])
    model.eval()
    val = build_dataset(cfg.dataset, "val")
    items = [val[i] for i in range(8)]
    images = torch.stack([x for x, _ in items])
    with torch.no_grad():
        logits = torch.cat([model_logits(model(images[i : i + 4])) for i in (0, 4)]).numpy()
    labels = np.stack([y.numpy() for _, y in items])
    edges = np.linspace(0, 1 - 1 / 10, 10, dtype=np.float32)

    def ece(counts):  # counts: (images, 3, bins) -> per-image ECE
        return np.abs(counts[:, 1] - counts[:, 2]).sum(-1) / counts[:, 0].sum(-1)

    for name, t in (("raw", 1.0), ("@T", out["calibration"]["@T"]["temperature"])):
        z = torch.from_numpy(logits) / t
        probs = z.softmax(1).numpy()
        counts = np.zeros((8, 3, 10))
        for i in range(8):
            conf, pred = probs[i].max(0).ravel(), probs[i].argmax(0).ravel()
            keep = labels[i].ravel() != 255
            b = np.digitize(conf[keep], edges) - 1
            np.add.at(counts[i, 0], b, 1)
            np.add.at(counts[i, 1], b, (pred[keep] == labels[i].ravel()[keep]).astype(float))
            np.add.at(counts[i, 2], b, conf[keep].astype(np.float64))
        entry = out["calibration"][name]
        assert entry["bins"]["count"] == counts[:, 0].sum(0).astype(int).tolist()
        assert entry["ece"] == pytest.approx(float(ece(counts.sum(0, keepdims=True))[0]), abs=1e-6)
        assert entry["ece_per_image"] == pytest.approx(float(ece(counts).mean()), abs=1e-6)


def test_temperature_is_reused_refitted_and_never_mixed(run, compose, tmp_path, capsys):
    root, key = run
    base = [f"paths.results_dir={tmp_path}", "calibration.fraction=0.25"]
    first = run_evaluation(eval_cfg(compose, root, *base, "calibrate=temperature", "predict=[argmax,rankdice]"))
    t1 = first["calibration"]["@T"]["temperature"]
    path = tmp_path / key / "temperature.json"
    written = path.stat().st_mtime_ns
    capsys.readouterr()
    # the same weights and settings: T is reused, and the @T records of both evaluations sit together
    again = run_evaluation(eval_cfg(compose, root, *base, "calibrate=temperature", "predict=[threshold]"))
    assert f"temperature T={t1:.4f} from {path}" in capsys.readouterr().out and path.stat().st_mtime_ns == written
    assert list(again["rules"]) == ["argmax", "argmax@T", "rankdice", "rankdice@T", "threshold", "threshold@T"]
    # calibrate=none keeps them (and their calibration entry), adding no @T record
    plain = run_evaluation(eval_cfg(compose, root, *base, "predict=[argmax]"))
    assert list(plain["rules"]) == list(again["rules"]) and list(plain["calibration"]) == ["raw", "@T"]
    assert plain["calibration"]["@T"] == again["calibration"]["@T"]
    # another subset -> another T: every @T record of the old T leaves, even those not evaluated again
    capsys.readouterr()
    refit = run_evaluation(eval_cfg(compose, root, *base, "calibrate=temperature", "calibration.seed=3",
                                    "predict=[argmax]"))  # fmt: skip
    printed = capsys.readouterr().out
    t2 = refit["calibration"]["@T"]["temperature"]
    assert "fitting the temperature again" in printed and t2 != t1
    assert f"dropped rankdice@T, threshold@T: computed with another temperature than T={t2:.4f}" in printed
    assert list(refit["rules"]) == ["argmax", "argmax@T", "rankdice", "threshold"]
    assert refit["rules"]["argmax@T"]["temperature"] == t2 == json.loads(path.read_text())["temperature"]


def test_default_evaluation_writes_the_ece_but_no_temperature(run, compose, tmp_path):
    root, key = run
    out = run_evaluation(eval_cfg(compose, root, f"paths.results_dir={tmp_path}", "predict=[argmax]"))
    assert list(out["rules"]) == ["argmax"] and list(out["calibration"]) == ["raw"]
    assert "temperature" not in out["rules"]["argmax"]
    assert not (tmp_path / key / "temperature.json").exists()
    assert (tmp_path / key / "reliability.png").read_bytes().startswith(PNG_MAGIC)


def test_sigmoid_loss_is_tempered_per_class(run, compose, tmp_path, capsys):
    root, key = run
    state = load_checkpoint(root / "checkpoints" / key.relative_to("runs") / "last.pt")
    state["config"]["loss"] = OmegaConf.to_container(eval_cfg(compose, root, "loss=bce").loss, resolve=True)
    save_checkpoint(tmp_path / "bce.pt", state)
    out = run_evaluation(
        eval_cfg(compose, root, "loss=bce", f"ckpt_path={tmp_path / 'bce.pt'}", f"paths.results_dir={tmp_path}",
                 "calibrate=temperature", "predict=[argmax]")
    )  # fmt: skip
    assert "RULE on sigmoid(logits / " in capsys.readouterr().out
    fit = json.loads(next(tmp_path.glob("runs/**/temperature.json")).read_text())
    assert fit["settings"]["activation"] == "sigmoid" and fit["nll_after"] <= fit["nll_before"]
    assert list(out["rules"]) == ["argmax", "argmax@T"] and out["eval_settings"]["activation"] == "sigmoid"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["calibrate=platt"], "calibrate must be none or temperature, got 'platt'"),
        (["calibration.fraction=0"], "calibration.fraction must be a number > 0"),
        (["calibration.fraction=1.5"], "calibration.fraction must be in (0, 1]"),
        (["calibration.num_bins=0"], "calibration.num_bins must be a positive integer"),
        (["calibration.seed=-1"], "calibration.seed must be an integer >= 0"),
    ],
)
def test_bad_calibration_values_are_refused_before_any_work(compose, tmp_path, extra, words):
    with pytest.raises(ConfigError) as err:
        run_evaluation(eval_cfg(compose, tmp_path, *extra))
    assert words in str(err.value)
    assert not (tmp_path / "data").exists()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_calibration_of_one(run, compose, tmp_path):
    root, key = run
    extra = ["calibrate=temperature", "predict=[argmax]", "dataset.eval_batch_size=3"]  # 3 batches over 2 ranks
    one = run_evaluation(eval_cfg(compose, root, *extra, f"paths.results_dir={tmp_path / 'one'}"))
    # as many threads as this process (conftest: 2), so the forward passes agree bit for bit
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "GLOO_SOCKET_IFNAME": "lo"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", str(REPO_ROOT / "evaluate.py"), *smoke_overrides(root), *extra,
        f"paths.results_dir={tmp_path / 'two'}", f"hydra.run.dir={tmp_path / 'hydra'}",
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    two = json.loads((tmp_path / "two" / key / "metrics.json").read_text())
    for name in ("raw", "@T"):
        a, b = one["calibration"][name], two["calibration"][name]
        assert a["bins"]["count"] == b["bins"]["count"] and a["num_images"] == b["num_images"] == 8
        for k in ("ece", "ece_per_image", "nll", "temperature"):
            assert a[k] is None or math.isclose(a[k], b[k], rel_tol=0, abs_tol=1e-12), (name, k)


def test_calibration_holdout_keeps_images_out_of_training_and_fits_t_on_them(tmp_path, compose, capsys):
    from rankseg.engine.runs import calibration_holdout_indices, run_name

    root = tmp_path
    base = [*smoke_overrides(root), "logger=none", "max_iters=3"]
    plain_identity = run_identity(compose("train", base))
    held_identity = run_identity(compose("train", [*base, "calibration_holdout=0.25"]))
    # 0 leaves the run (and its name) as before; a hold-out is another run
    assert "calibration_holdout" not in plain_identity and held_identity["calibration_holdout"] == 0.25
    assert run_name(held_identity) != run_name(plain_identity)

    summary = run_training(compose("train", [*base, "calibration_holdout=0.25"]))
    out = capsys.readouterr().out
    assert "calibration_holdout: 4 of the train split's images are kept out of training" in out
    # 12 of 16 images remain: batches of 4 -> 3 iterations per epoch
    assert summary["iteration"] == 3
    held = calibration_holdout_indices(16, 0.25, 0)
    assert len(held) == 4 and held == sorted(set(held))

    run_evaluation(compose("evaluate", [*smoke_overrides(root), "calibration_holdout=0.25", "calibrate=temperature",
                                        "predict=[argmax]", "logger=none"]))  # fmt: skip
    (fit_file,) = (root / "results" / "runs").rglob("temperature.json")
    fit = json.loads(fit_file.read_text())
    assert fit["settings"]["held_out_of_training"] is True
    assert fit["image_indices"] == held
    assert "held-out train images" in capsys.readouterr().out


def test_calibration_holdout_must_be_a_fraction(tmp_path, compose):
    with pytest.raises(ConfigError, match=r"calibration_holdout must be a number in \[0, 1\)"):
        run_training(compose("train", [*smoke_overrides(tmp_path), "logger=none", "calibration_holdout=1.5"]))
