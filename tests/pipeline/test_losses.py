"""Losses on tiny hand-checkable inputs, and each loss config instantiated and differentiated."""

import math

import pytest
import torch
import torch.nn.functional as F

from rankseg.engine.build import build_loss
from rankseg.losses import BCEOneVsRestLoss, FocalLoss, SoftDiceLoss, one_hot_with_ignore
from rankseg.metrics import IGNORE_INDEX

LOSSES = ["ce", "focal", "bce", "soft_dice", "b_soft_dice", "lovasz_softmax"]


def _batch(ignore: bool = True, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 4, 5, generator=gen)
    target = torch.randint(0, 3, (2, 4, 5), generator=gen)
    if ignore:
        target[:, 0, :3] = IGNORE_INDEX
    return logits, target


def test_one_hot_with_ignore():
    onehot, valid = one_hot_with_ignore(torch.tensor([[0, 2, IGNORE_INDEX]]), 3)
    assert onehot.shape == (1, 3, 3) and valid.shape == (1, 1, 3)
    assert onehot[0].T.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert valid.tolist() == [[[True, True, False]]]


def test_focal_gamma_zero_equals_cross_entropy():
    logits, target = _batch(ignore=False)
    ce = F.cross_entropy(logits, target)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), ce)
    logits, target = _batch(ignore=True)
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(FocalLoss(gamma=0.0, mean_over_ignored=False)(logits, target), ce)
    # the reference averages over all pixels, ignored ones contributing 0
    valid = (target != IGNORE_INDEX).float().mean()
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), ce * valid)


def test_focal_hand_computed():
    # one pixel, p_y = 0.5: CE = log 2, focal = (1 - 0.5)^2 * log 2
    logits = torch.tensor([0.0, 0.0]).view(1, 2, 1, 1)
    target = torch.tensor([0]).view(1, 1, 1)
    assert float(FocalLoss(gamma=2.0)(logits, target)) == pytest.approx(0.25 * math.log(2))
    assert float(FocalLoss(gamma=2.0)(logits, target)) < float(FocalLoss(gamma=0.0)(logits, target))


def test_bce_ignores_255_pixels():
    logits, target = _batch()
    onehot = F.one_hot(target.clamp(max=2), 3).movedim(-1, 1).float()
    per = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    valid = (target != IGNORE_INDEX).unsqueeze(1).expand_as(per)
    torch.testing.assert_close(BCEOneVsRestLoss()(logits, target), per[valid].mean())
    # changing logits at ignored pixels changes nothing
    moved = logits.clone()
    moved[:, :, 0, :3] += 10
    torch.testing.assert_close(BCEOneVsRestLoss()(moved, target), BCEOneVsRestLoss()(logits, target))
    # the reference variant: ignored pixels are negatives for every class
    onehot_ref = onehot * (target != IGNORE_INDEX).unsqueeze(1)
    ref = F.binary_cross_entropy_with_logits(logits, onehot_ref)
    torch.testing.assert_close(BCEOneVsRestLoss(ignore_as_negative=True)(logits, target), ref)


def test_soft_dice_hand_computed():
    # two pixels, two classes, probabilities via huge logits are one-hot-exact
    # (1, 2, 1, 2): pixel 0 -> class 0, pixel 1 -> class 1
    logits = torch.tensor([[[[50.0, -50.0]], [[-50.0, 50.0]]]])
    target = torch.tensor([[[0, 0]]])
    # sum p*y = 1, sum p = 2, sum y = 2 -> 1 - (2 + 1)/(2 + 2 + 1) = 0.4
    assert float(SoftDiceLoss(smooth=1.0)(logits, target)) == pytest.approx(0.4)
    assert float(SoftDiceLoss(smooth=1.0)(logits, torch.tensor([[[0, 1]]]))) == pytest.approx(0.0, abs=1e-6)
    # ignored pixels are masked: only pixel 0 counts -> p*y = 1, p = 1, y = 1 -> 0
    masked = SoftDiceLoss(smooth=1.0)(logits, torch.tensor([[[0, IGNORE_INDEX]]]))
    assert float(masked) == pytest.approx(0.0, abs=1e-6)
    # sigmoid variant: logits 0 -> p = 0.5 everywhere; 1 pixel, 2 classes, y = (1, 0)
    zero = torch.zeros(1, 2, 1, 1)
    expected = 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)
    assert float(SoftDiceLoss("sigmoid")(zero, torch.tensor([[[0]]]))) == pytest.approx(expected)
    with pytest.raises(ValueError):
        SoftDiceLoss("relu")


@pytest.mark.parametrize("name", LOSSES)
def test_loss_configs_instantiate_and_backprop(compose, name):
    cfg = compose("train", [f"loss={name}", "dataset=synthetic"])
    assert cfg.loss.name == name
    assert isinstance(cfg.loss.proper, bool) and cfg.loss.activation in ("softmax", "sigmoid")
    assert cfg.loss.proper == (name in ("ce", "focal", "bce"))
    loss_fn = build_loss(cfg.loss)
    logits, target = _batch()
    logits.requires_grad_(True)
    value = loss_fn(logits, target)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all()
    # ignored pixels get no gradient from any loss (smp's Lovasz drops them too)
    assert logits.grad[:, :, 0, :3].abs().max() < 1e-7


def test_ce_config_equals_torch(compose):
    loss_fn = build_loss(compose("train", ["loss=ce"]).loss)
    logits, target = _batch()
    torch.testing.assert_close(loss_fn(logits, target), F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX))
