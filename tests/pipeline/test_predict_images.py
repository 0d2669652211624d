"""CPU tests of ``predict.py`` (:mod:`rankseg.engine.predict_images`): predictions written as PNGs equal the
evaluation path's (network forward, ``probabilities``, the rule from ``build_rules``) pixel for pixel, for a
label-map rule and multi-label rules, on the synthetic val images and on images of other sizes; folders,
records and overwriting; bad inputs give one message. Tiny synthetic run (16 train / 8 val images of 32x32),
DeepLabV3+ on MobileNetV2, trained once for the module."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import smoke_overrides
from PIL import Image

from rankseg.data import build_eval_transform
from rankseg.data.fake import voc_palette
from rankseg.data.synthetic import SyntheticSegmentation, synthetic_sample
from rankseg.engine import CheckpointNotFoundError, ConfigError, user_errors
from rankseg.engine.build import build_dataset, build_model, build_rules
from rankseg.engine.checkpoint import load_checkpoint, weights_sha256
from rankseg.engine.predict_images import MANIFEST_FILE, PredictionInputError, run_prediction
from rankseg.engine.runs import run_identity, run_key
from rankseg.engine.train import model_logits, run_training
from rankseg.predict import probabilities

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["background", "disc", "square", "triangle", "speck"]
VAL = [f"{i:05d}" for i in range(8)]
# The tiny network's probabilities are nearly uniform (about 0.26 for background, 0.19 for the others), so with the
# default pruning (0.5) and threshold every rule would predict nothing: lowered here, on both sides of the comparison.
RULES = ["predict=[rma,threshold,rankdice]", "predict.rma.pruning_prob=0.0", "predict.rankdice.pruning_prob=0.0",
         "predict.threshold.threshold=0.2"]  # fmt: skip


def predict_cfg(compose, root, *extra):
    return compose("predict_images", [*smoke_overrides(root), *extra])


@pytest.fixture(scope="module")
def setup(tmp_path_factory, compose):
    """A trained tiny run and an input folder: the 8 synthetic val images (32x32, copied from the dataset's own
    files), a 48x48 PNG, a 36x50 JPEG, a corrupt PNG and a truncated one.

    Returns:
        (root, checkpoint, input folder, val set)
    """
    root = tmp_path_factory.mktemp("predict")
    checkpoint = Path(run_training(compose("train", [*smoke_overrides(root), "logger=none"]))["checkpoint"])
    val = build_dataset(predict_cfg(compose, root).dataset, "val")
    images = root / "images"
    images.mkdir()
    for path, _ in val.samples:
        shutil.copy(path, images / path.name)
    rng = np.random.default_rng(7)
    Image.fromarray(synthetic_sample(rng, 48)[0]).save(images / "square48.png")
    Image.fromarray(synthetic_sample(rng, 50)[0][:36]).save(images / "wide36x50.jpg", quality=95)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 8)
    (images / "truncated.png").write_bytes((images / "00000.png").read_bytes()[:600])  # header fine, data cut
    return root, checkpoint, images, val


@torch.no_grad()
def reference(compose, root, checkpoint, images, val, rules) -> dict[str, dict[str, torch.Tensor]]:
    """Predictions computed independently of predict.py: ``{rule: {image stem: prediction}}``.

    The val images go through evaluate.py's path (dataset items in its batches of 4, forward, probabilities, the
    rule); the others through the documented geometry: the dataset's eval transform (shorter side -> 32), padding
    to a multiple of 32, probabilities resized bilinearly to the original size, then the rule.
    """
    cfg = predict_cfg(compose, root, *RULES)
    model = build_model(cfg.model, pretrained=False).eval()
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    rule_fns = build_rules(cfg.predict)
    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in rules}

    def add(stems, probs):
        for name, rule in rule_fns.items():
            out[name].update(zip(stems, rule(probs), strict=True))

    for start in range(0, len(val), 4):
        batch = torch.stack([val[i][0] for i in range(start, start + 4)])
        add(VAL[start : start + 4], probabilities(model_logits(model(batch)), "softmax"))

    mean, std = SyntheticSegmentation.MEAN, SyntheticSegmentation.STD
    transform = build_eval_transform(32, mean, std)  # what the dataset applies: resize, centre crop, normalise
    square = np.asarray(Image.open(images / "square48.png").convert("RGB"))
    x = torch.from_numpy(transform(image=square)["image"].transpose(2, 0, 1).copy())[None]
    add(["square48"], F.interpolate(probabilities(model(x), "softmax"), size=(48, 48), mode="bilinear"))

    wide = np.asarray(Image.open(images / "wide36x50.jpg").convert("RGB"))
    resized = A.SmallestMaxSize(max_size=32, interpolation=cv2.INTER_LINEAR)(image=wide)["image"]
    assert resized.shape == (32, 44, 3)
    padded = np.zeros((32, 64, 3), np.uint8)  # black padding at the bottom/right to a multiple of 32
    padded[:, :44] = resized
    normalize = transform.transforms[-1]
    assert isinstance(normalize, A.Normalize)
    x = torch.from_numpy(normalize(image=padded)["image"].transpose(2, 0, 1).copy())[None]
    logits = model(x)[..., :32, :44]
    add(["wide36x50"], F.interpolate(probabilities(logits, "softmax"), size=(36, 50), mode="bilinear"))
    return out


def read_png(path: Path) -> tuple[np.ndarray, str]:
    with Image.open(path) as im:
        return np.array(im), im.mode


def test_predictions_equal_the_evaluation_path(setup, compose, capsys):
    root, checkpoint, images, val = setup
    rules = ["rma", "threshold", "rankdice"]
    out_dir = root / "out_all"
    result = run_prediction(predict_cfg(compose, root, f"input={images}", f"output={out_dir}", *RULES))
    captured = capsys.readouterr()
    assert f"skipped {images / 'broken.png'}: unreadable image (cannot identify image file)" in captured.err
    assert f"skipped {images / 'truncated.png'}: unreadable image (image file is truncated)" in captured.err
    assert "Traceback" not in captured.err
    assert (
        f"wrote 10 predictions (rma, threshold, rankdice) to {out_dir}/{{rma,threshold,rankdice}}, skipped 2 "
        "unreadable: broken.png (cannot identify image file), truncated.png (image file is truncated)" in captured.out
    )
    assert result["written"] == 10 and list(result["skipped"]) == ["broken.png", "truncated.png"]

    expected = reference(compose, root, checkpoint, images, val, rules)
    stems = [*VAL, "square48", "wide36x50"]
    sizes = {**{s: (32, 32) for s in VAL}, "square48": (48, 48), "wide36x50": (36, 50)}
    # label map: palette PNG of class ids
    for stem in stems:
        labels, mode = read_png(out_dir / "rma" / f"{stem}.png")
        assert mode == "P" and labels.shape == sizes[stem], stem
        np.testing.assert_array_equal(labels, expected["rma"][stem].numpy(), err_msg=stem)
    with Image.open(out_dir / "rma" / "00000.png") as im:
        assert im.getpalette()[: 3 * 256] == voc_palette()
    # multi-label rules: one 0/255 PNG per class
    for rule in ("threshold", "rankdice"):
        for stem in stems:
            for c, name in enumerate(CLASSES):
                mask, mode = read_png(out_dir / rule / f"{stem}_{name}.png")
                assert mode == "L" and mask.shape == sizes[stem] and set(np.unique(mask)) <= {0, 255}
                np.testing.assert_array_equal(mask == 255, expected[rule][stem][c].numpy(), err_msg=f"{rule} {stem}")
    # not constant maps, so the comparisons mean something (rankdice keeps every pixel of near-uniform maps)
    for rule in ("rma", "threshold"):
        assert all(len(expected[rule][s].unique()) > 1 for s in stems), rule

    manifest = json.loads((out_dir / "threshold" / MANIFEST_FILE).read_text())
    assert manifest["weights_sha256"] == weights_sha256(load_checkpoint(checkpoint)["model"])
    assert manifest["rule"] == "threshold" and manifest["output"] == "class_masks" and manifest["status"] == "complete"
    assert manifest["run_key"] == result["run"] and manifest["skipped"] == result["skipped"]
    assert sorted(manifest["files"]) == sorted(stems)
    assert manifest["files"]["wide36x50"]["size"] == [36, 50]
    assert manifest["files"]["wide36x50"]["source"] == str((images / "wide36x50.jpg").resolve())
    assert json.loads((out_dir / "rma" / MANIFEST_FILE).read_text())["output"] == "label_map"
    assert not list(out_dir.glob("**/*.tmp"))


def test_one_rule_overlays_default_folder_and_overwriting(setup, compose, capsys):
    root, _, images, _ = setup
    glob = f"input='{images}/0000[0-3].png'"  # quoted: [ would start a Hydra list
    # default folder: {paths.output_dir}/predictions/{run}/{rule}/; overlays beside the label maps
    result = run_prediction(predict_cfg(compose, root, glob, "predict=argmax", "save_overlays=true"))
    folder = Path(result["rules"]["argmax"]["folder"])
    assert folder == root / "outputs" / "predictions" / result["run"] / "argmax"
    assert sorted(p.name for p in folder.glob("*.png")) == [f"{s}.png" for s in VAL[:4]]
    overlay, mode = read_png(folder / "overlays" / "00000.png")
    assert mode == "RGB" and overlay.shape == (32, 32, 3)
    capsys.readouterr()
    # the same network, rule and settings: files are replaced with a note and the record grows
    run_prediction(predict_cfg(compose, root, f"input='{images}/0000[2-5].png'", "predict=argmax"))
    assert "replacing 2 existing files" in capsys.readouterr().out
    files = json.loads((folder / MANIFEST_FILE).read_text())["files"]
    assert sorted(files) == VAL[:6] and files["00002"]["outputs"] == ["00002.png", "overlays/00002.png"]
    assert (folder / "overlays" / "00002.png").is_file()  # still valid: same image, network, rule and settings

    # one rule writes into output= itself; another rule there is refused, unless overwrite=true
    out_dir = root / "one_rule"
    run_prediction(predict_cfg(compose, root, glob, "predict=rma", f"output={out_dir}"))
    assert (out_dir / "00000.png").is_file() and json.loads((out_dir / MANIFEST_FILE).read_text())["rule"] == "rma"
    with pytest.raises(PredictionInputError, match=r"holds predictions of another rule \('rma'.*overwrite=true"):
        run_prediction(predict_cfg(compose, root, glob, "predict=argmax", f"output={out_dir}"))
    (out_dir / "mine.txt").write_text("a file of the user's")
    run_prediction(predict_cfg(compose, root, glob, "predict=argmax", f"output={out_dir}", "overwrite=true"))
    assert json.loads((out_dir / MANIFEST_FILE).read_text())["rule"] == "argmax" and (out_dir / "mine.txt").is_file()
    # a file that no record lists is never replaced silently; an input image never at all
    foreign = root / "foreign"
    foreign.mkdir()
    (foreign / "00000.png").write_bytes(b"user data")
    with pytest.raises(PredictionInputError, match=r"00000\.png exists and no record"):
        run_prediction(predict_cfg(compose, root, glob, "predict=argmax", f"output={foreign}"))
    assert (foreign / "00000.png").read_bytes() == b"user data"
    with pytest.raises(PredictionInputError, match="is an input image"):
        run_prediction(predict_cfg(compose, root, glob, "predict=argmax", f"output={images}", "overwrite=true"))
    # pixels a label-map rule leaves unassigned keep their value (255 here: every class is pruned at 0.5 on the
    # tiny network's near-uniform probabilities); overlays leave them as they are
    void = root / "void"
    void_rule = ["predict=rma", "+predict.rma.solver_params.unassigned_policy=void", "save_overlays=true"]
    run_prediction(predict_cfg(compose, root, f"input={images / '00000.png'}", f"output={void}", *void_rule))
    labels, mode = read_png(void / "00000.png")
    assert mode == "P" and (labels == 255).all()
    np.testing.assert_array_equal(read_png(void / "overlays" / "00000.png")[0], read_png(images / "00000.png")[0])


def test_the_same_overrides_name_the_same_run_as_train_and_evaluate(compose):
    for extra in ([], ["seed=3", "optimizer.lr=0.02"], ["model=pspnet", "loss=focal", "dataset.batch_size=4"],
                  ["experiment=synthetic_table", "experiment/light_model@light_model=pspnet", "loss=bce"]):  # fmt: skip
        key = run_key(run_identity(compose("predict_images", extra)))
        assert (
            key == run_key(run_identity(compose("train", extra))) == run_key(run_identity(compose("evaluate", extra)))
        )
    assert list(compose("predict_images").predict) == ["rma"]
    assert list(compose("predict_images", ["predict=[rma,threshold]"]).predict) == ["rma", "threshold"]


def test_bad_inputs_give_one_message(setup, compose, tmp_path):
    root, _, images, _ = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    shutil.copy(images / "broken.png", only_broken)
    cases = [
        ([f"input={tmp_path / 'nowhere'}"], PredictionInputError, "no such folder or file"),
        ([f"input={images}/*.tiff"], PredictionInputError, "matches no file"),
        ([f"input={empty}"], PredictionInputError, "no images in input=.*it is empty"),
        ([f"input={only_broken}"], PredictionInputError, r"none of the 1 images.*broken\.png \(cannot identify"),
        (["predict=argmax"], PredictionInputError, "input= is required"),
        ([f"input={images}", "seed=7"], CheckpointNotFoundError,
         "python train.py dataset=synthetic model=deeplabv3plus loss=ce"),
        ([f"input={images}", "overlay_alpha=2"], ConfigError, r"overlay_alpha must be a number in \[0, 1\]"),
    ]  # fmt: skip
    for extra, error, words in cases:
        with pytest.raises(error, match=words):
            run_prediction(predict_cfg(compose, root, *extra))
        assert issubclass(error, user_errors())
    with pytest.raises(Exception, match="Could not find 'predict/nosuch'"):
        predict_cfg(compose, root, f"input={images}", "predict=nosuch")


def _predict_cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "predict.py"), *overrides],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_entrypoint_prints_a_summary_and_exits_2_on_setup_problems(setup, tmp_path):
    root, _, images, _ = setup
    base = [*smoke_overrides(root), f"hydra.run.dir={tmp_path / 'hydra'}"]
    out_dir = tmp_path / "cli"
    proc = _predict_cli(*base, f"input='{images}/0000*.png'", "predict=[rma,threshold]", f"output={out_dir}")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote 8 predictions (rma, threshold) to {out_dir}/{{rma,threshold}}" in proc.stdout
    assert len(list((out_dir / "rma").glob("*.png"))) == 8 and len(list((out_dir / "threshold").glob("*.png"))) == 40

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _predict_cli(*base, f"input={empty}")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: no images in input={empty}")
    assert "Traceback" not in proc.stderr
    # an unknown rule is refused by Hydra's composition (exit status 1), naming the rules there are
    proc = _predict_cli(*base, f"input={images}", "predict=nosuch")
    assert proc.returncode != 0 and "Could not find 'predict/nosuch'" in proc.stderr and "rankdice" in proc.stderr
    assert "Traceback" not in proc.stderr
