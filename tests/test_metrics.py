"""Hand-computed cases for rankseg.metrics: label maps, masks, ignore pixels, empty classes, aggregation."""

import math

import pytest
import torch

from rankseg.metrics import (
    IGNORE_INDEX,
    MetricAccumulator,
    aggregate,
    confusion_stats,
    per_image_scores,
    scores_from_stats,
)

NAN = float("nan")


def assert_scores(actual: torch.Tensor, expected: list[list[float]]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), equal_nan=True)


def test_label_map_hand_computed():
    # one image, 3 classes, 6 pixels; class 2 absent from both -> NaN
    target = torch.tensor([[0, 0, 0, 1, 1, 1]])
    pred = torch.tensor([[0, 0, 1, 1, 1, 0]])
    tp, fp, fn = confusion_stats(pred, target, 3)
    assert tp.tolist() == [[2, 2, 0]] and fp.tolist() == [[1, 1, 0]] and fn.tolist() == [[1, 1, 0]]
    dice, iou = per_image_scores(pred, target, 3)
    assert_scores(dice, [[4 / 6, 4 / 6, NAN]])
    assert_scores(iou, [[2 / 4, 2 / 4, NAN]])
    assert dice.dtype == torch.float64 and dice.shape == (1, 3)


def test_predicted_but_absent_scores_zero_and_missed_scores_zero():
    target = torch.tensor([[0, 0, 0, 0]])
    pred = torch.tensor([[0, 0, 0, 1]])  # class 1 predicted, not in GT -> 0; class 2 empty -> NaN
    dice, iou = per_image_scores(pred, target, 3)
    assert_scores(dice, [[6 / 7, 0.0, NAN]])
    assert_scores(iou, [[3 / 4, 0.0, NAN]])
    dice, _ = per_image_scores(torch.tensor([[0, 0, 0, 0]]), torch.tensor([[0, 0, 0, 1]]), 2)
    assert_scores(dice, [[6 / 7, 0.0]])


def test_ignore_pixels_are_excluded():
    target = torch.tensor([[0, 1, IGNORE_INDEX, IGNORE_INDEX]])
    pred = torch.tensor([[0, 1, 1, 0]])  # predictions on ignored pixels do not count
    dice, iou = per_image_scores(pred, target, 2)
    assert_scores(dice, [[1.0, 1.0]])
    assert_scores(iou, [[1.0, 1.0]])


def test_reference_ignore_counts_ignore_as_background_everywhere():
    target = torch.tensor([[0, 1, IGNORE_INDEX, IGNORE_INDEX]])
    pred = torch.tensor([[0, 1, 1, 0]])
    tp, fp, fn = confusion_stats(pred, target, 2, reference_ignore=True)
    assert tp.tolist() == [[1, 1]] and fp.tolist() == [[1, 1]] and fn.tolist() == [[0, 0]]
    dice, iou = per_image_scores(pred, target, 2, reference_ignore=True)
    assert_scores(dice, [[2 / 3, 2 / 3]])
    assert_scores(iou, [[1 / 2, 1 / 2]])
    # masks: predictions on ignored pixels are false positives too
    masks = torch.tensor([[[1, 0, 1, 1], [0, 1, 0, 0]]], dtype=torch.bool)
    tp, fp, fn = confusion_stats(masks, target, 2, reference_ignore=True)
    assert tp.tolist() == [[1, 1]] and fp.tolist() == [[2, 0]] and fn.tolist() == [[0, 0]]
    tp, fp, fn = confusion_stats(masks, target, 2)
    assert fp.tolist() == [[0, 0]]


def test_masks_overlap_and_unassigned_pixels():
    target = torch.tensor([[[0, 1], [1, IGNORE_INDEX]]])  # (B=1, 2, 2)
    masks = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    # class 0: tp 1, fp 1 at pixel (0,1), pixel (1,1) ignored
    masks[0, 0] = torch.tensor([[True, True], [False, True]])
    masks[0, 1] = torch.tensor([[False, True], [False, False]])  # class 1: tp 1, fn 1
    tp, fp, fn = confusion_stats(masks, target, 2)
    assert tp.tolist() == [[1, 1]] and fp.tolist() == [[1, 0]] and fn.tolist() == [[0, 1]]
    dice, iou = per_image_scores(masks, target, 2)
    assert_scores(dice, [[2 / 3, 2 / 3]])
    assert_scores(iou, [[1 / 2, 1 / 2]])
    # integer {0,1} masks give the same counts as bool masks
    assert confusion_stats(masks.long(), target, 2)[0].tolist() == tp.tolist()


def test_label_map_and_one_hot_masks_agree():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (3, 5, 7), generator=gen)
    target[:, 0, :2] = IGNORE_INDEX
    pred = torch.randint(0, 4, (3, 5, 7), generator=gen)
    masks = torch.nn.functional.one_hot(pred, 4).movedim(-1, 1).bool()
    for ref in (False, True):
        a = confusion_stats(pred, target, 4, reference_ignore=ref)
        b = confusion_stats(masks, target, 4, reference_ignore=ref)
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)


def test_shape_errors():
    with pytest.raises(ValueError):
        confusion_stats(torch.zeros(1, 3, 4, dtype=torch.bool), torch.zeros(1, 4, 4, dtype=torch.long), 3)
    with pytest.raises(ValueError):
        confusion_stats(torch.zeros(1, 5, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long), 3)


def test_scores_from_stats_empty_rule_only_when_all_zero():
    dice, iou = scores_from_stats(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1]))
    assert math.isnan(dice[0]) and dice[1] == 0 and dice[2] == pytest.approx(2 / 3)
    assert math.isnan(iou[0]) and iou[1] == 0 and iou[2] == pytest.approx(1 / 2)


def test_aggregate_paper_and_dataset_level():
    # two images, 3 classes, CoI = [1, 2]
    tp = torch.tensor([[5, 1, 0], [5, 0, 0]])
    fp = torch.tensor([[0, 1, 0], [0, 0, 2]])
    fn = torch.tensor([[0, 0, 0], [0, 2, 0]])
    out = aggregate(tp, fp, fn, classes_of_interest=[1, 2])
    # image 1: class 1 dice 2/3, class 2 NaN -> 2/3; image 2: class 1 dice 0, class 2 dice 0 -> 0
    assert out["mdice"] == pytest.approx((2 / 3 + 0) / 2)
    assert out["miou"] == pytest.approx((1 / 2 + 0) / 2)
    # per-class columns: nanmean over images, all classes
    assert out["class_dice"][0] == pytest.approx(1.0)
    assert out["class_dice"][1] == pytest.approx(1 / 3)
    assert out["class_dice"][2] == pytest.approx(0.0)
    # dataset level: class 1 tp 1 fp 1 fn 2 -> dice 2/5, iou 1/4; class 2 tp 0 -> 0
    assert out["class_dataset_dice"][1] == pytest.approx(2 / 5)
    assert out["dataset_dice"] == pytest.approx(1 / 5)
    assert out["dataset_iou"] == pytest.approx(1 / 8)
    assert out["num_images"] == 2


def test_aggregate_drops_images_without_any_class_of_interest():
    tp = torch.tensor([[4, 0], [2, 3]])
    fp = torch.tensor([[0, 0], [0, 1]])
    fn = torch.tensor([[0, 0], [0, 0]])
    out = aggregate(tp, fp, fn, classes_of_interest=[1])  # image 1 has class 1 empty -> NaN, dropped
    assert out["mdice"] == pytest.approx(6 / 7)
    expected = (1 + (1 + 6 / 7) / 2) / 2
    assert aggregate(tp, fp, fn, classes_of_interest="all")["mdice"] == pytest.approx(expected)
    empty = torch.zeros(0, 2, dtype=torch.long)
    assert math.isnan(aggregate(empty, empty, empty)["mdice"])


def test_accumulator_matches_aggregate():
    acc = MetricAccumulator(3, classes_of_interest=[1, 2])
    target = torch.tensor([[0, 1, 2, IGNORE_INDEX]])
    acc.update(torch.tensor([[0, 1, 1, 2]]), target)
    acc.update(torch.tensor([[0, 1, 2, 2]]), target)
    tp, fp, fn = acc.counts()
    assert tp.shape == (2, 3)
    out = acc.compute()
    assert out["dataset_dice"] == aggregate(tp, fp, fn, classes_of_interest=[1, 2])["dataset_dice"]
    assert out["mdice"] == pytest.approx(((2 / 3 + 0) / 2 + 1) / 2)
