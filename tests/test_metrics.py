"""Hand-computed cases for rankseg.metrics: label maps, masks, ignore pixels, empty classes, aggregation."""

import math

import pytest
import torch

from rankseg.metrics import (
    IGNORE_INDEX,
    MetricAccumulator,
    aggregate,
    confusion_stats,
    image_scores,
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


# ---------------------------------------------------------------------------------------------------------------
# Strict inputs: void predictions, validated ground truth and masks, images that cannot touch each other's counts.


def oracle_counts(
    pred: list, target: list, num_classes: int, ignore_index: int, reference_ignore: bool
) -> tuple[list, list, list]:
    """tp, fp, fn per image and class by plain per-pixel loops over nested lists.

    ``target[b][i]`` is a ground-truth value; ``pred[b][i]`` a label-map value (anything outside
    ``range(num_classes)`` is void) or ``pred[b][k][i]`` a per-class mask value (nonzero = predicted).
    """
    tp = [[0] * num_classes for _ in target]
    fp = [[0] * num_classes for _ in target]
    fn = [[0] * num_classes for _ in target]
    is_masks = isinstance(pred[0][0], list)
    for b, pixels in enumerate(target):
        for i, t in enumerate(pixels):
            if t == ignore_index and not reference_ignore:
                continue
            for k in range(num_classes):
                predicted = pred[b][k][i] != 0 if is_masks else pred[b][i] == k
                actual = t == k  # an ignore pixel (reference_ignore) is background for every class
                tp[b][k] += predicted and actual
                fp[b][k] += predicted and not actual
                fn[b][k] += actual and not predicted
    return tp, fp, fn


def random_case(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """A small batch: (label map with void values, per-class masks, target with ignore pixels, C, ignore)."""

    def draw(pool: list[int], shape: tuple[int, ...]) -> torch.Tensor:
        return torch.tensor(pool)[torch.randint(0, len(pool), shape, generator=gen)]

    batch = int(torch.randint(1, 5, (), generator=gen))
    num_classes = int(torch.randint(1, 6, (), generator=gen))
    shape = (batch, int(torch.randint(1, 4, (), generator=gen)), int(torch.randint(1, 5, (), generator=gen)))
    ignore_index = [IGNORE_INDEX, -1, num_classes + 2][int(torch.randint(0, 3, (), generator=gen))]
    classes = list(range(num_classes))
    target = draw(classes * 3 + [ignore_index], shape)
    void = [-1, -5, num_classes, num_classes + 1, IGNORE_INDEX, 10**6]
    labels = draw(classes * 2 + void, shape)
    masks = torch.randint(0, 2, (batch, num_classes, *shape[1:]), generator=gen)
    return labels, masks, target, num_classes, ignore_index


def test_counts_match_per_pixel_oracle():
    gen = torch.Generator().manual_seed(1234)
    seen_void = 0
    for trial in range(300):
        labels, masks, target, num_classes, ignore_index = random_case(gen)
        seen_void += int(((labels < 0) | (labels >= num_classes)).sum())
        target_list = target.flatten(1).tolist()
        labels_list = labels.flatten(1).tolist()
        masks_list = masks.flatten(2).tolist()
        label_dtype = (torch.int64, torch.int32, torch.int16)[trial % 3]
        mask_dtype = (torch.bool, torch.uint8, torch.int64)[trial % 3]
        if ignore_index == IGNORE_INDEX and trial % 2:
            target = target.to(torch.uint8)
        for reference_ignore in (False, True):
            expected = oracle_counts(labels_list, target_list, num_classes, ignore_index, reference_ignore)
            got = confusion_stats(labels.to(label_dtype), target, num_classes, ignore_index, reference_ignore)
            assert [x.tolist() for x in got] == list(expected), (trial, reference_ignore, "label map")
            expected = oracle_counts(masks_list, target_list, num_classes, ignore_index, reference_ignore)
            got = confusion_stats(masks.to(mask_dtype), target, num_classes, ignore_index, reference_ignore)
            assert [x.tolist() for x in got] == list(expected), (trial, reference_ignore, "masks")
            assert all(x.dtype == torch.int64 and x.shape == (labels.shape[0], num_classes) for x in got)
    assert seen_void > 100


def test_void_predictions_are_misses_not_class_zero():
    target = torch.tensor([[0, 0, 1, 1, IGNORE_INDEX, IGNORE_INDEX]])
    pred = torch.tensor([[0, -1, 1, 7, -1, 1]])
    tp, fp, fn = confusion_stats(pred, target, 2)
    assert tp.tolist() == [[1, 1]] and fp.tolist() == [[0, 0]] and fn.tolist() == [[1, 1]]
    # reference_ignore: the class prediction on an ignore pixel is a false positive, the void one counts nothing
    tp, fp, fn = confusion_stats(pred, target, 2, reference_ignore=True)
    assert tp.tolist() == [[1, 1]] and fp.tolist() == [[0, 1]] and fn.tolist() == [[1, 1]]
    # an all-void prediction of an image without class 1 leaves class 1 empty (NaN), class 0 missed (0)
    dice, _ = per_image_scores(torch.full((1, 3), -1), torch.tensor([[0, 0, IGNORE_INDEX]]), 2)
    assert_scores(dice, [[0.0, NAN]])


def test_bad_ground_truth_raises_naming_values_and_images():
    pred = torch.zeros(3, 2, 3, dtype=torch.long)
    target = torch.zeros(3, 2, 3, dtype=torch.long)
    target[0, 0, 0] = -1
    target[0, 1, 2] = 9
    target[2, 1, 1] = 5
    for reference_ignore in (False, True):
        with pytest.raises(ValueError, match=r"values \[-1, 5, 9\] in image\(s\) \[0, 2\]") as info:
            confusion_stats(pred, target, 5, reference_ignore=reference_ignore)
        assert "ignore index" in str(info.value) and "num_classes" in str(info.value)
        masks = torch.zeros(3, 5, 2, 3, dtype=torch.bool)
        with pytest.raises(ValueError, match=r"\[-1, 5, 9\]"):
            confusion_stats(masks, target, 5, reference_ignore=reference_ignore)
    # a single bad value in image 0 of an otherwise valid batch
    target = torch.tensor([[0, 7], [1, IGNORE_INDEX]])
    with pytest.raises(ValueError, match=r"values \[7\] in image\(s\) \[0\]"):
        confusion_stats(torch.tensor([[0, 1], [1, 0]]), target, 5)
    # the ignore index itself is accepted, whatever it is
    confusion_stats(torch.tensor([[0, 1]]), torch.tensor([[0, -1]]), 2, ignore_index=-1)


def test_each_image_counts_only_its_own_pixels():
    gen = torch.Generator().manual_seed(7)
    target1 = torch.tensor([[0, 1, 2, IGNORE_INDEX, 1, 0]])
    pred1 = torch.tensor([[0, 1, 1, 2, -1, 3]])
    for reference_ignore in (False, True):
        alone = confusion_stats(pred1, target1, 3, reference_ignore=reference_ignore)
        for _ in range(20):
            target0 = torch.tensor([0, 1, 2, IGNORE_INDEX])[torch.randint(0, 4, (1, 6), generator=gen)]
            pred0 = torch.randint(-3, 300, (1, 6), generator=gen)
            both = confusion_stats(
                torch.cat([pred0, pred1]), torch.cat([target0, target1]), 3, reference_ignore=reference_ignore
            )
            for x, y in zip(both, alone, strict=True):
                assert torch.equal(x[1:], y)
    # a negative ground-truth value in image 1 used to add its pixel to image 0's confusion matrix
    with pytest.raises(ValueError, match=r"values \[-1\] in image\(s\) \[1\]"):
        confusion_stats(torch.tensor([[0, 0], [2, 0]]), torch.tensor([[0, 0], [-1, 0]]), 3)


def test_float_masks_raise_type_error():
    target = torch.tensor([[0, 1, 1]])
    probs = torch.tensor([[[0.9, 0.2, 0.4], [0.1, 0.8, 0.6]]])
    for dtype in (torch.float32, torch.float16, torch.float64):
        with pytest.raises(TypeError, match="masks must be bool or integer 0/1") as info:
            confusion_stats(probs.to(dtype), target, 2)
        assert str(dtype).removeprefix("torch.") in str(info.value) and "probs > 0.5" in str(info.value)
    with pytest.raises(TypeError, match="float32"):
        per_image_scores(probs, target, 2)


def test_integer_masks_must_be_zero_one():
    target = torch.tensor([[0, 1, 1], [1, 0, IGNORE_INDEX]])
    masks = torch.tensor([[[1, 0, 0], [0, 1, 1]], [[0, 1, 1], [1, 0, 0]]])
    for dtype in (torch.uint8, torch.int32, torch.int64):
        for ref in (False, True):
            as_bool = confusion_stats(masks.bool(), target, 2, reference_ignore=ref)
            as_int = confusion_stats(masks.to(dtype), target, 2, reference_ignore=ref)
            assert all(torch.equal(x, y) for x, y in zip(as_int, as_bool, strict=True))
    bad = masks.clone()
    bad[1, 0, 2] = 2
    bad[1, 1, 0] = 3
    for dtype in (torch.uint8, torch.int64):
        with pytest.raises(ValueError, match=r"values \[2, 3\] in image\(s\) \[1\]"):
            confusion_stats(bad.to(dtype), target, 2)
    bad = masks.clone()
    bad[0, 0, 0] = -1
    with pytest.raises(ValueError, match=r"\[-1\]"):
        confusion_stats(bad, target, 2)


def test_label_maps_and_targets_must_be_integer():
    target = torch.tensor([[0, 1, 1]])
    with pytest.raises(TypeError, match="float32") as info:
        confusion_stats(torch.tensor([[0.0, 1.0, 1.0]]), target, 2)
    assert "argmax" in str(info.value)
    with pytest.raises(TypeError, match="bool"):
        confusion_stats(torch.tensor([[True, False, True]]), target, 2)
    with pytest.raises(TypeError, match="float32"):
        confusion_stats(torch.tensor([[0, 1, 1]]), target.float(), 2)
    with pytest.raises(TypeError, match="bool"):
        confusion_stats(torch.ones(1, 2, 3, dtype=torch.bool), target.bool(), 2)


def test_accumulator_propagates_validation_errors():
    acc = MetricAccumulator(3)
    target = torch.tensor([[0, 1, 2, IGNORE_INDEX]])
    with pytest.raises(ValueError, match=r"values \[3\]"):
        acc.update(torch.tensor([[0, 1, 2, 0]]), torch.tensor([[0, 1, 3, 0]]))
    with pytest.raises(TypeError, match="probs > 0.5"):
        acc.update(torch.rand(1, 3, 4), target)
    with pytest.raises(ValueError, match=r"values \[2\]"):
        acc.update(torch.full((1, 3, 4), 2), target)
    with pytest.raises(TypeError, match="float32"):
        acc.update(torch.zeros(1, 4), target)
    assert acc.counts()[0].shape == (0, 3)
    tp, fp, fn = acc.update(torch.tensor([[0, 1, -1, 5]]), target)
    assert tp.tolist() == [[1, 1, 0]] and fp.tolist() == [[0, 0, 0]] and fn.tolist() == [[0, 0, 1]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(99)
    for _ in range(50):
        labels, masks, target, num_classes, ignore_index = random_case(gen)
        for pred in (labels, masks.bool()):
            for ref in (False, True):
                cpu = confusion_stats(pred, target, num_classes, ignore_index, ref)
                gpu = confusion_stats(pred.cuda(), target.cuda(), num_classes, ignore_index, ref)
                assert all(g.is_cuda and torch.equal(g.cpu(), c) for g, c in zip(gpu, cpu, strict=True))
    bad = torch.tensor([[0, -1]], device="cuda")
    with pytest.raises(ValueError, match=r"\[-1\]"):
        confusion_stats(torch.zeros_like(bad), bad, 2)


# --- RankSEG-RMA's per-image scores (mIoU^I, mDice^I) ---------------------------------------------------------
def test_rma_image_miou_hand_computed():
    # 4 classes, one 2x3 image. Class 3 is predicted once but absent from the truth: mIoU^I leaves it out, the
    # paper's miou (nanmean over all classes) counts it as 0.
    #   truth [[0, 0, 1], [1, 2, 2]]   prediction [[0, 3, 1], [1, 1, 2]]
    #   class 0: tp 1, fn 1 -> IoU 1/2, Dice 2/3;  class 1: tp 2, fp 1 -> IoU 2/3, Dice 4/5
    #   class 2: tp 1, fn 1 -> IoU 1/2, Dice 2/3;  class 3: fp 1 (not in the truth)
    # mIoU^I = (1/2 + 2/3 + 1/2) / 3 = 5/9; mDice^I = (2/3 + 4/5 + 2/3) / 3 = 32/45; miou = (1/2+2/3+1/2+0)/4 = 5/12
    # A second image holds only ignore pixels: NaN, left out of the mean.
    target = torch.tensor([[[0, 0, 1], [1, 2, 2]], [[IGNORE_INDEX] * 3] * 2])
    pred = torch.tensor([[[0, 3, 1], [1, 1, 2]], [[0, 1, 2], [3, 3, 3]]])
    stats = confusion_stats(pred, target, 4)
    dice, iou = image_scores(*stats)
    torch.testing.assert_close(iou, torch.tensor([5 / 9, NAN], dtype=torch.float64), equal_nan=True)
    torch.testing.assert_close(dice, torch.tensor([32 / 45, NAN], dtype=torch.float64), equal_nan=True)
    scores = aggregate(*stats)
    assert scores["miou_image"] == pytest.approx(5 / 9) and scores["mdice_image"] == pytest.approx(32 / 45)
    assert scores["miou"] == pytest.approx(5 / 12)
    # classes of interest do not change mIoU^I (the RMA code averages every class present in the truth)
    assert aggregate(*stats, classes_of_interest=[1, 2])["miou_image"] == pytest.approx(5 / 9)


def test_rma_image_miou_binary_scores_the_foreground_and_one_class_images_as_one():
    # two classes: the foreground's IoU; an image with one class only in prediction and truth together scores 1
    #   image A: truth and prediction all background             -> 1
    #   image B: truth fg on 2 of 4 pixels, prediction on 1 of them -> IoU 1/2, Dice 2/3
    #   image C: truth all background, one fg pixel predicted     -> 0
    target = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
    pred = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]])
    dice, iou = image_scores(*confusion_stats(pred, target, 2))
    assert iou.tolist() == [1.0, 0.5, 0.0] and dice.tolist() == pytest.approx([1.0, 2 / 3, 0.0])
    assert aggregate(*confusion_stats(pred, target, 2))["miou_image"] == pytest.approx(0.5)
    # CT slices of cases 7, 7, 3 (+ a slice of case 3 without labelled pixels: NaN, left out): per case, then
    # over cases: case 7 (1 + 1/2) / 2 = 3/4, case 3 0 -> 3/8
    target4 = torch.cat([target, torch.full((1, 4), IGNORE_INDEX)])
    pred4 = torch.cat([pred, torch.zeros(1, 4, dtype=torch.long)])
    scores = aggregate(*confusion_stats(pred4, target4, 2), groups=[7, 7, 3, 3])
    assert scores["miou_image"] == pytest.approx(3 / 8)
    assert aggregate(*confusion_stats(pred4, target4, 2))["miou_image"] == pytest.approx(0.5)
    # binary=False: the mean over the classes present in the truth (image B: (2/3 + 1/2) / 2)
    _, iou = image_scores(*confusion_stats(pred, target, 2), binary=False)
    assert iou.tolist() == pytest.approx([1.0, (2 / 3 + 1 / 2) / 2, 3 / 4])
