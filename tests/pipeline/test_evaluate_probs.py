"""Saved-probability evaluation (evaluate_probs.py, rankseg.engine.probs_eval, rankseg.data.prob_files).

1. Probabilities that evaluate.py computes for a tiny trained run, saved per image (.npy, .npz, .pt, and logits with
   activation=softmax) next to the label PNGs, reproduce evaluate.py's metrics.json numbers exactly.
2. 3-D cases written by nnU-Net v2's own export code (.npz + .pkl + its segmentation) with labels written as NIfTI,
   for each of its NIfTI reader/writers (also the reorienting ones): per-case counts equal a numpy computation on
   the same arrays, and argmax Dice equals the Dice of the segmentation nnU-Net itself wrote.
3. Every bad input gives one message naming the file (and exit status 2 from the entrypoint, no traceback).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smoke_overrides
from PIL import Image

from rankseg.data.prob_files import ProbFileError
from rankseg.engine import ConfigError, user_errors
from rankseg.engine.build import build_dataset, build_model
from rankseg.engine.checkpoint import load_checkpoint
from rankseg.engine.evaluate import run_evaluation
from rankseg.engine.probs_eval import run_probs_evaluation
from rankseg.engine.train import model_logits, run_training
from rankseg.predict import probabilities

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from make_probs_demo import NNUNET_LABELS, nnunet_export  # noqa: E402  (nnU-Net's own export, shared)

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES = "[threshold,argmax,rankdice,rma]"
# The 8-iteration network's probabilities are nearly uniform (0.18-0.26): with the default threshold 0.5 and
# pruning_prob 0.5, threshold and rankdice would predict nothing and the comparison would be of zeros. These settings
# give every rule masks of the foreground classes; both commands get them.
RULE_SETTINGS = ("predict.threshold.threshold=0.185", "predict.rankdice.pruning_prob=0.0")
METRIC_KEYS = (
    "mdice",
    "miou",
    "dataset_dice",
    "dataset_iou",
    "class_dice",
    "class_iou",
    "class_dataset_dice",
    "class_dataset_iou",
    "num_images",
    "reference_ignore",
)


def probs_cfg(compose, probs, labels, out, *extra):
    return compose(
        "evaluate_probs",
        [f"probs={probs}", f"labels={labels}", f"results_dir={out}", "device=cpu", *extra],
    )


def read_case_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- 1. exact parity with evaluate.py ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory, compose):
    """A tiny trained run, evaluate.py's metrics.json for it, and its val probabilities saved per image in four
    variants (folders npy, npz, pt, logits) beside a folder of the val label PNGs."""
    root = tmp_path_factory.mktemp("probs_parity")
    run_training(compose("train", [*smoke_overrides(root), "logger=none"]))
    cfg = compose("evaluate", [*smoke_overrides(root), f"predict={RULES}", *RULE_SETTINGS])
    metrics = run_evaluation(cfg)

    # The same forward pass as evaluate.py: checkpoint weights, eval mode, the same batches, probabilities().
    ckpt = next((root / "checkpoints").glob("**/last.pt"))
    model = build_model(cfg.model, pretrained=False)
    model.load_state_dict(load_checkpoint(ckpt)["model"])
    model.eval()
    val_set = build_dataset(cfg.dataset, "val")
    folders = {name: root / name for name in ("npy", "npz", "pt", "logits", "labels")}
    for folder in folders.values():
        folder.mkdir()
    batch = int(cfg.eval_batch_size)
    with torch.no_grad():
        for start in range(0, len(val_set), batch):
            items = [val_set[i] for i in range(start, min(start + batch, len(val_set)))]
            logits = model_logits(model(torch.stack([image for image, _ in items])))
            probs = probabilities(logits, "softmax")
            for offset, (_, target) in enumerate(items):
                label_path = val_set.samples[start + offset][1]
                case = label_path.stem
                shutil.copy(label_path, folders["labels"] / label_path.name)
                assert np.array_equal(np.array(Image.open(label_path)), target.numpy())  # eval geometry is identity
                p = probs[offset].numpy()
                np.save(folders["npy"] / f"{case}.npy", p)
                np.savez_compressed(folders["npz"] / f"{case}.npz", probabilities=p)
                torch.save(probs[offset].clone(), folders["pt"] / f"{case}.pt")
                np.save(folders["logits"] / f"{case}.npy", logits[offset].numpy())
    return root, metrics, folders


@pytest.mark.parametrize("variant", ["npy", "npz", "pt", "logits"])
def test_saved_probabilities_reproduce_evaluate_exactly(saved, compose, variant, capsys):
    root, metrics, folders = saved
    out = root / "results" / "probs" / variant
    extra = ["dataset=synthetic", f"predict={RULES}", *RULE_SETTINGS]
    extra += ["activation=softmax"] if variant == "logits" else []
    result = run_probs_evaluation(probs_cfg(compose, folders[variant], folders["labels"], out, *extra))
    printed = capsys.readouterr().out
    assert "mean (paper)" in printed and "dataset-level" in printed and "speck" in printed
    written = json.loads((out / "metrics.json").read_text())
    assert written == result
    assert list(written["rules"]) == list(metrics["rules"]) == ["threshold", "argmax", "rankdice", "rma"]
    for rule, expected in metrics["rules"].items():
        got = written["rules"][rule]
        for key in METRIC_KEYS:
            assert got[key] == expected[key], (variant, rule, key)  # exact: the same numbers, NaN as null alike
    assert written["rules"]["argmax"]["num_images"] == 8 and written["num_cases"] == 8
    for rule in ("threshold", "rankdice", "rma"):  # not a comparison of empty predictions
        assert max(v or 0 for k, v in written["rules"][rule]["class_dice"].items() if k != "background") > 0, rule
    # header: the source instead of a checkpoint
    settings = written["eval_settings"]
    assert written["weights_sha256"] is None and written["probs"] == str(folders[variant])
    assert settings["activation"] == ("softmax" if variant == "logits" else "none")
    assert settings["classes_of_interest"] == [1, 2, 3, 4] and settings["num_classes"] == 5
    assert len(settings["probs_sha256"]) == 64 and len(settings["labels_sha256"]) == 64
    # class_scores.csv as evaluate.py writes it; case_scores.csv: one row per rule, case and class
    run_dir = root / "results/runs" / metrics["dataset"] / metrics["model"] / metrics["loss"] / metrics["run"]
    assert (out / "class_scores.csv").read_text() == (run_dir / "class_scores.csv").read_text()
    assert len(read_case_csv(out / "case_scores.csv")) == 4 * 8 * 5


def test_digests_identify_the_files_and_merging_follows_them(saved, compose, tmp_path, capsys):
    root, _, folders = saved
    probs = tmp_path / "probs"
    shutil.copytree(folders["npy"], probs)
    out = tmp_path / "out"
    first = run_probs_evaluation(probs_cfg(compose, probs, folders["labels"], out, "predict=[argmax]"))
    again = run_probs_evaluation(probs_cfg(compose, probs, folders["labels"], out, "predict=[rma]"))
    assert list(again["rules"]) == ["argmax", "rma"] and again["rules"]["argmax"] == first["rules"]["argmax"]
    assert {r["rule"] for r in read_case_csv(out / "case_scores.csv")} == {"argmax", "rma"}
    # the digest over sorted (name, sha256) pairs changes with any file's content ...
    case = sorted(probs.glob("*.npy"))[0]
    array = np.load(case)
    np.save(case, array[[0, 2, 1, 3, 4]])
    capsys.readouterr()
    changed = run_probs_evaluation(probs_cfg(compose, probs, folders["labels"], out, "predict=[threshold]"))
    assert changed["eval_settings"]["probs_sha256"] != first["eval_settings"]["probs_sha256"]
    assert changed["eval_settings"]["labels_sha256"] == first["eval_settings"]["labels_sha256"]
    # ... and records of other files never sit beside the new ones
    assert list(changed["rules"]) == ["threshold"] and "dropped argmax, rma" in capsys.readouterr().out
    assert {r["rule"] for r in read_case_csv(out / "case_scores.csv")} == {"threshold"}
    # the default results folder is results/probs/{name of the probs folder}
    cfg = compose("evaluate_probs", [f"probs={probs}", f"labels={folders['labels']}", "device=cpu",
                                     f"paths.results_dir={tmp_path / 'res'}", "predict=[argmax]"])  # fmt: skip
    run_probs_evaluation(cfg)
    assert (tmp_path / "res/probs/probs/metrics.json").is_file()


# --- 2. nnU-Net v2 files ----------------------------------------------------------------------------------------
# Voxel-to-world matrices for which nnU-Net's reorienting readers change the voxel order: one permutes and flips the
# axes (the shape changes), one only flips them (the shape stays: reading it wrongly would go unnoticed by shape).
PERMUTE = np.array([[0.0, -1.0, 0.0, 3.0], [1.5, 0.0, 0.0, -2.0], [0.0, 0.0, -2.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
FLIP = np.diag([-1.0, 1.0, -2.0, 1.0])


def counts(pred: np.ndarray, truth: np.ndarray, k: int) -> tuple[int, int, int]:
    """Brute-force tp, fp, fn of class k; ``pred`` is a label map or a per-class bool mask."""
    p = pred == k if pred.dtype != bool else pred
    t = truth == k
    return int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())


@pytest.mark.parametrize("io_name", ["SimpleITKIO", "NibabelIO", "NibabelIOWithReorient", "SimpleITKIOWithReorient"])
def test_nnunet_volumes_are_scored_per_case_as_numpy_does(compose, tmp_path, io_name, capsys):
    nibabel = pytest.importorskip("nibabel")
    pytest.importorskip("nnunetv2")
    if "SimpleITK" in io_name:
        pytest.importorskip("SimpleITK")
    import nnunetv2.imageio.nibabel_reader_writer as nib_io
    import nnunetv2.imageio.simpleitk_reader_writer as sitk_io

    io_class = getattr(nib_io if "Nibabel" in io_name else sitk_io, io_name)
    rng = np.random.default_rng(0)
    labels, probs = tmp_path / "labelsTs", tmp_path / "predictions"
    labels.mkdir()
    probs.mkdir()
    (probs / "dataset.json").write_text(json.dumps({"labels": NNUNET_LABELS, "file_ending": ".nii.gz"}))
    truths = {}
    for case, shape_xyz, affine in (("case_0001", (9, 7, 5), PERMUTE), ("case_0002", (5, 5, 5), FLIP)):
        volume = rng.integers(0, 3, shape_xyz).astype(np.uint8)  # as nibabel stores it: (x, y, z)
        nibabel.save(nibabel.Nifti1Image(volume, affine), labels / f"{case}.nii.gz")
        truths[case] = nnunet_export(io_class, labels / f"{case}.nii.gz", probs / case, rng)
    assert sorted(p.name for p in probs.iterdir()) == [
        "case_0001.nii.gz", "case_0001.npz", "case_0001.pkl", "case_0002.nii.gz", "case_0002.npz", "case_0002.pkl",
        "dataset.json",
    ]  # fmt: skip

    out = tmp_path / "out"
    result = run_probs_evaluation(probs_cfg(compose, probs, labels, out, "predict=[threshold,argmax,rankdice]"))
    assert "liver" in capsys.readouterr().out
    assert list(result["rules"]["argmax"]["class_dice"]) == list(NNUNET_LABELS)  # names from dataset.json
    rows = {(r["rule"], r["case"], r["class"]): r for r in read_case_csv(out / "case_scores.csv")}
    per_case_dice = []
    for case, truth in truths.items():
        p = np.load(probs / f"{case}.npz")["probabilities"]
        assert p.shape[1:] == truth.shape and p.dtype == np.float32
        # nnU-Net's own segmentation, in the label file's frame, read the same way as the label file
        seg_file = np.asanyarray(nibabel.load(probs / f"{case}.nii.gz").dataobj)
        label_file = np.asanyarray(nibabel.load(labels / f"{case}.nii.gz").dataobj)
        dices = []
        for k, name in enumerate(NNUNET_LABELS):
            for rule, pred in (("argmax", p.argmax(0)), ("threshold", p[k] > 0.5)):
                tp, fp, fn = counts(pred, truth, k)
                row = rows[(rule, case, name)]
                assert (int(row["tp"]), int(row["fp"]), int(row["fn"])) == (tp, fp, fn), (rule, case, name)
                assert float(row["dice"]) == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-6)
                assert float(row["iou"]) == pytest.approx(tp / (tp + fp + fn), abs=1e-6)
            tp, fp, fn = counts(p.argmax(0), truth, k)
            dices.append(2 * tp / (2 * tp + fp + fn))
            assert counts(seg_file, label_file, k) == (tp, fp, fn)  # what nnU-Net's written segmentation scores
        per_case_dice.append(np.mean(dices))
    assert result["rules"]["argmax"]["mdice"] == pytest.approx(np.mean(per_case_dice), abs=1e-12)
    assert result["rules"]["argmax"]["num_images"] == 2 and result["num_cases"] == 2


def test_nnunet_2d_layout_and_npy_labels(compose, tmp_path):
    """nnU-Net's 2-D probabilities are (C, 1, H, W); .npy labels are read as stored."""
    rng = np.random.default_rng(1)
    probs, labels = tmp_path / "p", tmp_path / "l"
    probs.mkdir()
    labels.mkdir()
    truth = rng.integers(0, 3, (6, 10))
    p = torch.from_numpy(rng.normal(0, 1, (3, 1, 6, 10))).softmax(0).numpy().astype(np.float16)
    np.savez_compressed(probs / "img.npz", probabilities=p)
    Image.fromarray(truth.astype(np.uint8)).save(labels / "img.png")
    out = run_probs_evaluation(probs_cfg(compose, probs, labels, tmp_path / "o1", "predict=[argmax]"))
    rows = read_case_csv(tmp_path / "o1/case_scores.csv")
    pred = p[:, 0].astype(np.float32).argmax(0)
    assert [(int(r["tp"]), int(r["fp"]), int(r["fn"])) for r in rows] == [counts(pred, truth, k) for k in range(3)]
    assert out["probs_sum_to_one"] is True and out["eval_settings"]["class_names"] == ["0", "1", "2"]
    np.save(labels / "img.npy", truth)
    (labels / "img.png").unlink()
    again = run_probs_evaluation(probs_cfg(compose, probs, labels, tmp_path / "o2", "predict=[argmax]"))
    assert again["rules"]["argmax"]["class_dice"] == out["rules"]["argmax"]["class_dice"]


# --- 3. bad input: one message each -----------------------------------------------------------------------------
@pytest.fixture
def good(tmp_path):
    """Two valid 2-D cases: probs/a.npy, probs/b.npy (3 classes, 4 x 5) and labels/a.png, labels/b.png."""
    rng = np.random.default_rng(2)
    probs, labels = tmp_path / "probs", tmp_path / "labels"
    probs.mkdir()
    labels.mkdir()
    for case in ("a", "b"):
        np.save(probs / f"{case}.npy", torch.from_numpy(rng.normal(0, 1, (3, 4, 5))).softmax(0).float().numpy())
        Image.fromarray(rng.integers(0, 3, (4, 5)).astype(np.uint8)).save(labels / f"{case}.png")
    return probs, labels


def _nifti(path: Path, array: np.ndarray) -> None:
    nibabel = pytest.importorskip("nibabel")
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), path)


BAD_INPUTS = {
    "missing probs folder": (lambda p, lab: shutil.rmtree(p), r"probs=.*probs: the probability folder does not exist"),
    "missing labels folder": (lambda p, lab: shutil.rmtree(lab), r"labels=.*: the label folder does not exist"),
    "no probability files": (
        lambda p, lab: [f.rename(f.with_suffix(".nii.gz")) for f in p.glob("*.npy")],
        r"no probability files \(\.npy, \.npz, \.pt\) in the folder \(it holds \.nii\.gz files\); nnU-Net writes "
        r"probabilities only with --save_probabilities",
    ),
    "probabilities without label": (
        lambda p, lab: (lab / "b.png").unlink(),
        r"1 probability file\(s\) in .* have no label file in .*: b\.npy",
    ),
    "label without probabilities": (
        lambda p, lab: (p / "b.npy").unlink(),
        r"1 label file\(s\) in .* have no probabilities in .*: b\.png\. .*partial=true",
    ),
    "two files of one case": (
        lambda p, lab: np.savez(p / "a.npz", probabilities=np.load(p / "a.npy")),
        r"two probability files for case 'a': a\.npy and a\.npz",
    ),
    "shape mismatch": (
        lambda p, lab: np.save(p / "b.npy", np.full((3, 5, 4), 1 / 3, np.float32)),
        r"case 'b': probabilities b\.npy have spatial shape \(5, 4\) .* but label b\.png has shape \(4, 5\)",
    ),
    "channels last": (
        lambda p, lab: np.save(p / "b.npy", np.full((4, 5, 3), 1 / 3, np.float32)),
        r"b\.npy: 4 channels .* but 3 classes \(the channels of a\.npy\)",
    ),
    "class count vs num_classes": (None, r"a\.npy: 3 channels \(array \(3, 4, 5\), layout \(C, \*S\)\) but 4 classes"),
    "label value >= C": (
        lambda p, lab: Image.fromarray(np.full((4, 5), 7, np.uint8)).save(lab / "b.png"),
        r"b\.png: label values 7 in 20 voxels are neither classes 0-2 \(3 classes: the channels of a\.npy\) nor "
        r"ignore_index=255",
    ),
    "corrupt npy": (
        lambda p, lab: (p / "b.npy").write_bytes((p / "b.npy").read_bytes()[:100]),
        r"b\.npy: cannot read this probability file \(ValueError: .*\); it is damaged, truncated",
    ),
    "corrupt npz": (
        lambda p, lab: [(p / "b.npy").unlink(), (p / "b.npz").write_bytes(b"PK\x03\x04 not a zip")],
        r"b\.npz: cannot read this probability file \(BadZipFile: ",
    ),
    "corrupt pt": (
        lambda p, lab: [(p / "b.npy").unlink(), (p / "b.pt").write_bytes(b"\x80\x02garbage")],
        r"b\.pt: cannot read this probability file \(",
    ),
    "object pt": (
        lambda p, lab: [(p / "b.npy").unlink(), torch.save({"x": 1, "y": 2}, p / "b.pt")],
        r"b\.pt: holds a dict, not a tensor",
    ),
    "pickled npy": (
        lambda p, lab: np.save(p / "b.npy", np.array([{"a": 1}], dtype=object)),
        r"b\.npy: cannot read this probability file \(ValueError: .*allow_pickle",
    ),
    "integer probabilities": (
        lambda p, lab: np.save(p / "b.npy", np.ones((3, 4, 5), np.int64)),
        r"b\.npy: holds int64 values; expected probabilities or logits as floats",
    ),
    "corrupt png": (
        lambda p, lab: (lab / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"),
        r"b\.png: cannot read this label file \(",
    ),
    "rgb png": (
        lambda p, lab: Image.new("RGB", (5, 4)).save(lab / "b.png"),
        r"b\.png: label PNG has mode 'RGB'; expected a single-channel map of class indices",
    ),
    "corrupt nifti": (
        lambda p, lab: [(lab / "b.png").unlink(), (lab / "b.nii.gz").write_bytes(b"\x1f\x8b\x08 broken gzip")],
        r"b\.nii\.gz: cannot read this label file \(",
    ),
    "nifti axes reversed": (
        lambda p, lab: [(lab / "b.png").unlink(), _nifti(lab / "b.nii.gz", np.zeros((4, 5), np.uint8))],
        r"label b\.nii\.gz has shape \(5, 4\) \(NIfTI read in zyx order\); the axes are reversed: add nifti_order=xyz",
    ),
    "logits with activation=none": (
        lambda p, lab: np.save(p / "b.npy", np.random.default_rng(0).normal(0, 3, (3, 4, 5)).astype(np.float32)),
        r"b\.npy: values range over \[-?[\d.]+, [\d.]+\], outside \[0, 1\], but activation=none expects "
        r"probabilities\. These look like logits: set activation=softmax .* or activation=sigmoid",
    ),
    "sums away from 1": (
        lambda p, lab: np.save(p / "b.npy", np.full((3, 4, 5), 0.2, np.float32)),
        r"b\.npy: per-pixel sums over the 3 channels range over \[0\.6, 0\.6\], not 1 .*the first case, a\.npy, "
        r"does.*sum_to_one=false",
    ),
    "nan": (
        lambda p, lab: np.save(p / "b.npy", np.full((3, 4, 5), np.nan, np.float32)),
        r"b\.npy: holds NaN or infinite values",
    ),
}


@pytest.mark.parametrize("problem", list(BAD_INPUTS))
def test_bad_input_gives_one_message_naming_it(good, compose, tmp_path, problem):
    probs, labels = good
    damage, pattern = BAD_INPUTS[problem]
    extra = ["num_classes=4"] if problem == "class count vs num_classes" else []
    if damage is not None:
        damage(probs, labels)
    with pytest.raises(ProbFileError, match=pattern) as err:
        run_probs_evaluation(probs_cfg(compose, probs, labels, tmp_path / "out", "predict=[argmax]", *extra))
    assert isinstance(err.value, user_errors()) and "\n" not in str(err.value)
    assert not (tmp_path / "out/metrics.json").exists()


@pytest.mark.parametrize(
    "extra, pattern",
    [
        ([], r"probs= is required"),
        (["probs=SAME"], r"probs= and labels= are the same folder"),
        (["activation=relu"], r"activation='relu': use none"),
        (["sum_to_one=maybe"], r"sum_to_one='maybe'"),
        (["nifti_order=yxz"], r"nifti_order='yxz'"),
        (["predict=[]"], r"predict is empty"),
        (["num_classes=0"], r"num_classes must be a positive integer"),
        (["class_names=[a,b]"], r"class_names has 2 names but there are 3 classes \(the channels of a\.npy\)"),
        (["classes_of_interest=[1,5]"], r"classes_of_interest=\[1, 5\] must list class indices in \[0, 3\)"),
        (["name=../x"], r"results folder name '\.\./x'"),
    ],
)
def test_bad_config_values_are_config_errors(good, compose, tmp_path, extra, pattern):
    probs, labels = good
    args = [f"labels={labels}", "device=cpu", f"paths.results_dir={tmp_path}"]
    if extra and extra[0] == "probs=SAME":
        args.append(f"probs={labels}")
    elif extra:
        args += [f"probs={probs}", *extra]
    with pytest.raises(ConfigError, match=pattern):
        run_probs_evaluation(compose("evaluate_probs", args))


def test_partial_scores_the_cases_with_probabilities(good, compose, tmp_path, capsys):
    probs, labels = good
    (probs / "b.npy").unlink()
    out = run_probs_evaluation(probs_cfg(compose, probs, labels, tmp_path / "out", "predict=[argmax]", "partial=true"))
    assert out["num_cases"] == 1 and out["unscored_labels"] == 1
    assert "1 label file(s) have no probabilities and are left out" in capsys.readouterr().out


def test_logits_saved_as_probabilities_warn_the_other_way(good, compose, tmp_path, capsys):
    probs, labels = good
    run_probs_evaluation(probs_cfg(compose, probs, labels, tmp_path / "out", "predict=[argmax]", "activation=softmax"))
    assert "already looks like probabilities" in capsys.readouterr().out


def test_entrypoint_prints_the_report_or_one_message_with_exit_code_2(good, tmp_path):
    probs, labels = good
    script = str(REPO_ROOT / "evaluate_probs.py")
    base = [sys.executable, script, f"labels={labels}", "device=cpu", f"results_dir={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'hydra'}", "predict=[argmax,rankdice]"]  # fmt: skip
    proc = subprocess.run([*base, f"probs={probs}"], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Results for probabilities" in proc.stdout and "rankdice" in proc.stdout
    (labels / "b.png").unlink()
    proc = subprocess.run([*base, f"probs={probs}"], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 2 and proc.stderr.startswith("error: 1 probability file(s) in ")
    assert "b.npy" in proc.stderr and "Traceback" not in proc.stderr
