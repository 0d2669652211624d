"""per_image.csv, expected-vs-realised plots and overlay grids of evaluate.py (rankseg/engine/inspection.py), on a
tiny synthetic run (16 train / 8 val images of 32x32, DeepLabV3+ on MobileNetV2, no pretrained weights). Every
value of the CSV is recomputed here from the checkpoint, independently of the evaluation code."""

import csv
import math
from pathlib import Path

import pytest
import torch
from conftest import smoke_overrides
from PIL import Image

from rankseg import expected_metric
from rankseg.engine import ConfigError
from rankseg.engine.build import build_dataset, build_model, build_rules
from rankseg.engine.checkpoint import load_checkpoint
from rankseg.engine.evaluate import run_evaluation
from rankseg.engine.inspection import (
    COLUMNS,
    PANEL_SIZE,
    TITLE_HEIGHT,
    changed_pixels,
    expected_scores,
    plot_expected_vs_realised,
    rule_details,
    select_overlays,
)
from rankseg.engine.runs import run_identity, run_key
from rankseg.engine.train import model_logits, run_training
from rankseg.functional import rankseg as rs
from rankseg.metrics import per_image_scores
from rankseg.predict import probabilities

RULES = ["threshold", "argmax", "rma", "rankdice"]
CLASSES = ["background", "disc", "square", "triangle", "speck"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, compose):
    """A trained tiny run, evaluated with per_image=true save_overlays=2; returns (root, cfg, results folder)."""
    root = tmp_path_factory.mktemp("inspect")
    run_training(compose("train", [*smoke_overrides(root), "logger=none"]))
    # pruning_prob 0: the barely trained network is never above 0.5 on an object class; solve every class
    cfg = compose(
        "evaluate",
        [
            *smoke_overrides(root),
            f"predict=[{','.join(RULES)}]",
            "per_image=true",
            "save_overlays=2",
            "predict.rma.pruning_prob=0.0",
            "predict.rankdice.pruning_prob=0.0",
        ],
    )
    run_evaluation(cfg)
    return root, cfg, root / "results/runs" / run_key(run_identity(cfg))


@pytest.fixture(scope="module")
def reference(run):
    """Probabilities, targets and each rule's prediction recomputed from the checkpoint, in the evaluation's batches
    of 4 (so the forward pass is bit-identical)."""
    root, cfg, _ = run
    state = load_checkpoint(root / "checkpoints" / run_key(run_identity(cfg)) / "last.pt")
    model = build_model(cfg.model, pretrained=False)
    model.load_state_dict(state["model"])
    model.eval()
    val = build_dataset(cfg.dataset, "val")
    images, targets = zip(*(val[i] for i in range(len(val))), strict=True)
    with torch.no_grad():
        probs = torch.cat([probabilities(model_logits(model(torch.stack(images[i : i + 4]))), "softmax")
                           for i in range(0, len(images), 4)])  # fmt: skip
    rules = build_rules(cfg.predict)
    stems = [Path(image).stem for image, _ in val.samples]
    return probs, torch.stack(targets), {name: rules[name](probs) for name in RULES}, rules, stems


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def num(text: str) -> float:
    return math.nan if text == "" else float(text)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_per_image_csv_equals_independent_scores(run, reference):
    _, _, out = run
    probs, targets, preds, _, stems = reference
    rows = read_rows(out / "per_image.csv")
    assert len(rows) == len(RULES) * 8 * len(CLASSES)
    for rule in RULES:
        mine = [r for r in rows if r["rule"] == rule]
        dice, iou = per_image_scores(preds[rule], targets, len(CLASSES))
        masks = preds[rule] if preds[rule].dim() == 4 else preds[rule].unsqueeze(1) == torch.arange(5).view(1, 5, 1, 1)
        truth = targets.unsqueeze(1) == torch.arange(5).view(1, 5, 1, 1)
        for r in mine:
            b, c = int(r["index"]), CLASSES.index(r["class"])
            assert r["image"] == stems[b]
            assert same(num(r["dice"]), float(dice[b, c])) and same(num(r["iou"]), float(iou[b, c]))
            assert int(r["pred_size"]) == int(masks[b, c].sum()) and int(r["true_size"]) == int(truth[b, c].sum())
        assert len({r["eval_id"] for r in mine}) == 1
        if rule in ("threshold", "argmax"):
            assert all(r[k] == "" for r in mine for k in ("tau", "cutoff", "expected_dice", "expected_iou"))


@pytest.mark.parametrize("rule,solver,mode", [("rma", "RMA", "multiclass"), ("rankdice", "BA", "multilabel")])
def test_tau_cutoff_and_expected_scores_are_the_rule_s(run, reference, rule, solver, mode):
    _, _, out = run
    probs, _, preds, rules, _ = reference
    rows = {
        (int(r["index"]), CLASSES.index(r["class"])): r for r in read_rows(out / "per_image.csv") if r["rule"] == rule
    }
    # brute force: the class's own masks are the multilabel call of the same solver (before overlap resolution)
    own = rs(probs, metric="dice", output_mode="multilabel", solver=solver, pruning_prob=0.0)
    e_dice, e_iou = expected_metric(probs, preds[rule], "dice"), expected_metric(probs, preds[rule], "iou")
    for (b, c), r in rows.items():
        sel = probs[b, c][own[b, c]]
        assert int(r["tau"]) == sel.numel()
        assert same(num(r["cutoff"]), float(sel.min()) if sel.numel() else math.nan)
        # the CSV scores the non-empty masks only (expected_scores): the same values to rounding
        assert float(r["expected_dice"]) == pytest.approx(float(e_dice[b, c]), abs=1e-12)
        assert float(r["expected_iou"]) == pytest.approx(float(e_iou[b, c]), abs=1e-12)
    assert any(int(r["tau"]) > 0 for r in rows.values())
    pred, info = rule_details(rules[rule], probs)
    assert pred.dtype == preds[rule].dtype and torch.equal(pred, preds[rule])
    if mode == "multiclass":  # the final label map is not the per-class masks
        assert torch.equal(info.tau, own.sum((2, 3)))


def test_expected_scores_skip_empty_masks_exactly():
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 4, 6, 5, generator=gen).softmax(1)
    labels = torch.randint(0, 3, (3, 6, 5), generator=gen)  # class 3 never predicted: empty rows
    labels[0] = 0  # image 0: only class 0
    for pred in (labels, labels.unsqueeze(1) == torch.arange(4).view(1, 4, 1, 1)):
        dice, iou = expected_scores(probs, pred)
        assert torch.allclose(dice, expected_metric(probs, pred, "dice"), rtol=0, atol=1e-13)
        assert torch.allclose(iou, expected_metric(probs, pred, "iou"), rtol=0, atol=1e-13)
        assert bool((dice[:, 3] == 0).all() & (dice[0, 1:] == 0).all() & (iou[0, 1:] == 0).all())


def test_plot_per_rankseg_rule(run):
    _, _, out = run
    plots = sorted((out / "plots").glob("*.png"))
    assert [p.name for p in plots] == ["expected_vs_realised_rankdice.png", "expected_vs_realised_rma.png"]
    with Image.open(plots[0]) as im:
        assert im.size == (1000, 480)
    again = plot_expected_vs_realised(out / "per_image.csv", out / "replot", rules=["rma"])
    assert [p.name for p in again] == ["expected_vs_realised_rma.png"]


def test_overlays_have_one_panel_per_prediction(run, reference):
    _, _, out = run
    probs, _, preds, _, _ = reference
    files = sorted((out / "overlays").glob("*.png"))
    argmax = probs.argmax(1)
    score = torch.stack([changed_pixels(preds[r], argmax) for r in ("threshold", "rma", "rankdice")], 1).amax(1)
    first, top = select_overlays(torch.stack([torch.arange(8.0), score.double()], 1), 2)
    assert first == [0, 1] and len(top) == 2 and not set(top) & {0, 1}
    assert [int(f.name[:5]) for f in files] == sorted(first + top)
    panels = 3 + 3 + 1  # image, truth, argmax | threshold, rma, rankdice (argmax not twice) | changes of rma
    for f in files:
        with Image.open(f) as im:
            width, height = im.size
            assert im.mode == "RGB"
        assert width == panels * PANEL_SIZE  # 32x32 images: square panels of PANEL_SIZE
        assert TITLE_HEIGHT + PANEL_SIZE < height <= TITLE_HEIGHT + PANEL_SIZE + 80


def test_merge_keeps_other_rules_and_replaces_evaluated_ones(run, compose):
    root, _, out = run
    before = read_rows(out / "per_image.csv")
    cfg = compose("evaluate", [*smoke_overrides(root), "predict=[argmax]", "per_image=true"])
    run_evaluation(cfg)
    after = read_rows(out / "per_image.csv")
    assert sorted(map(str, before)) == sorted(map(str, after))  # same weights and settings: same rows
    run_evaluation(compose("evaluate", [*smoke_overrides(root), "predict=[rma]"]))  # per_image=false
    assert {r["rule"] for r in read_rows(out / "per_image.csv")} == {"threshold", "argmax", "rankdice"}


@pytest.mark.parametrize("extra", ["save_overlays=-1", "save_overlays=true", "per_image=3"])
def test_bad_values_are_config_errors(compose, tmp_path, extra):
    with pytest.raises(ConfigError, match=extra.split("=")[0]):
        run_evaluation(compose("evaluate", [*smoke_overrides(tmp_path), extra]))
