"""rankseg.calibration: ECE against a hand-computed case and a naive per-pixel loop, NLL against torch's losses,
and temperature scaling recovering the temperature of data simulated from a tempered softmax (or sigmoid)."""

import math

import pytest
import torch
import torch.nn.functional as F

from rankseg.calibration import calibration_bins, ece_from_bins, fit_temperature, pixel_nll

IGNORE = 255


def test_ece_hand_computed():
    """4 bins [0, .25), [.25, .5), [.5, .75), [.75, 1]; 3 classes; images of 1 x 4 pixels.

    image 0: conf .9 (bin 3, right), .6 (bin 2, wrong), .7 (bin 2, right), .4 (ignored)
        bin 3: 1 pixel, 1 right, conf .9; bin 2: 2 pixels, 1 right, conf 1.3
        ECE_0 = (|1 - .9| + |1 - 1.3|) / 3 = .4 / 3
    image 1: conf .8 (bin 3, wrong), .45 (bin 1, right), .34 (bin 1, wrong), .5 (on an edge: bin 2, right)
        bin 1: 2 pixels, 1 right, conf .79; bin 2: 1, 1, .5; bin 3: 1, 0, .8
        ECE_1 = (.21 + .5 + .8) / 4 = 1.51 / 4
    image 2: every pixel ignored -> no ECE (NaN)
    dataset: bin 1: 2, 1, .79; bin 2: 3, 2, 1.8; bin 3: 2, 1, 1.7 -> ECE = (.21 + .2 + .7) / 7 = 1.11 / 7
    """
    pixels = [
        [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.35, 0.25]],
        [[0.1, 0.1, 0.8], [0.45, 0.3, 0.25], [0.34, 0.33, 0.33], [0.2, 0.3, 0.5]],
        [[0.5, 0.25, 0.25]] * 4,
    ]
    probs = torch.tensor(pixels).permute(0, 2, 1).unsqueeze(2)  # (3 images, 3 classes, 1, 4)
    target = torch.tensor([[0, 1, 1, IGNORE], [0, 0, 2, 2], [IGNORE] * 4]).unsqueeze(1)  # (3, 1, 4)
    bins = calibration_bins(probs, target, num_bins=4)
    assert bins.shape == (3, 3, 4) and bins.dtype == torch.float64
    expected_counts = [[0, 0, 2, 1], [0, 2, 1, 1], [0, 0, 0, 0]]
    assert bins[:, 0].tolist() == expected_counts
    assert bins[:, 1].tolist() == [[0, 0, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert torch.allclose(bins[:, 2], torch.tensor([[0, 0, 1.3, 0.9], [0, 0.79, 0.5, 0.8], [0, 0, 0, 0]]).double())
    per_image = ece_from_bins(bins)
    assert per_image[0].item() == pytest.approx(0.4 / 3, abs=1e-6)
    assert per_image[1].item() == pytest.approx(1.51 / 4, abs=1e-6)
    assert math.isnan(per_image[2].item())
    assert ece_from_bins(bins.sum(0)).item() == pytest.approx(1.11 / 7, abs=1e-6)


def _naive_ece(probs, target, num_bins):
    """Pixel by pixel, with the reference's float32 lower edges and bucketize(right=True) semantics."""
    edges = torch.linspace(0.0, 1.0 - 1.0 / num_bins, num_bins).tolist()
    count, right, conf_sum = [0] * num_bins, [0] * num_bins, [0.0] * num_bins
    c = probs.shape[1]
    for p, y in zip(probs.permute(0, 2, 3, 1).reshape(-1, c).tolist(), target.reshape(-1).tolist(), strict=True):
        if y == IGNORE:
            continue
        conf = max(p)
        b = max(i for i, e in enumerate(edges) if e <= conf)
        count[b] += 1
        right[b] += int(p.index(conf) == y)
        conf_sum[b] += conf
    n = sum(count)
    return sum(abs(r - s) for r, s in zip(right, conf_sum, strict=True)) / n


@pytest.mark.parametrize("num_bins", [1, 10, 15])
def test_ece_matches_a_naive_loop(num_bins):
    gen = torch.Generator().manual_seed(num_bins)
    probs = (3 * torch.randn(2, 4, 5, 6, generator=gen)).softmax(1)
    target = torch.randint(0, 4, (2, 5, 6), generator=gen)
    target[0, 0] = IGNORE
    bins = calibration_bins(probs, target, num_bins)
    assert ece_from_bins(bins.sum(0)).item() == pytest.approx(_naive_ece(probs, target, num_bins), abs=1e-9)
    for i in range(2):
        assert ece_from_bins(bins[i]).item() == pytest.approx(_naive_ece(probs[i : i + 1], target[i : i + 1], num_bins))
    # a perfectly confident, always right prediction is perfectly calibrated
    one_hot = F.one_hot(target.clamp_max(3), 4).permute(0, 3, 1, 2).float()
    assert ece_from_bins(calibration_bins(one_hot, target, num_bins).sum(0)).item() == 0.0


def test_pixel_nll_matches_torch_losses():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 5), generator=gen)
    target[1, 2] = IGNORE
    nll = pixel_nll(logits, target, "softmax", temperature=2.0)
    ce = F.cross_entropy(logits / 2.0, target, ignore_index=IGNORE, reduction="none")
    assert torch.allclose(nll, ce)
    one_hot = F.one_hot(target.clamp_max(2), 3).permute(0, 3, 1, 2).double()
    bce = F.binary_cross_entropy_with_logits(logits / 0.5, one_hot, reduction="none").sum(1)
    assert torch.allclose(pixel_nll(logits, target, "sigmoid", temperature=0.5), torch.where(target == IGNORE, 0, bce))
    with pytest.raises(ValueError, match="activation"):
        pixel_nll(logits, target, "tanh")


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_temperature_scaling_recovers_a_known_softmax_temperature(true_t):
    gen = torch.Generator().manual_seed(int(10 * true_t))
    logits = 3.0 * torch.randn(100_000, 5, generator=gen)
    labels = torch.multinomial((logits / true_t).softmax(1), 1, generator=gen).squeeze(1)
    fit = fit_temperature(logits, labels, "softmax")
    assert abs(fit.temperature - true_t) < 0.03 * true_t
    assert fit.nll_after <= fit.nll_before and not fit.at_bound and fit.evaluations < 40
    # the NLL at T = 1 is the plain cross-entropy
    assert fit.nll_before == pytest.approx(F.cross_entropy(logits.double(), labels).item(), rel=1e-9)


def test_temperature_scaling_recovers_a_known_sigmoid_temperature():
    """Two one-vs-rest classes with z_0 = -z_1, so the label y ~ Bernoulli(sigmoid(z_1 / T0)) agrees with both."""
    gen = torch.Generator().manual_seed(1)
    z = 4.0 * torch.randn(100_000, generator=gen)
    labels = torch.bernoulli(torch.sigmoid(z / 1.7), generator=gen).long()
    fit = fit_temperature(torch.stack([-z, z], 1), labels, "sigmoid")
    assert abs(fit.temperature - 1.7) < 0.05


def test_fit_flags_a_minimum_on_the_bracket_and_refuses_bad_input():
    logits = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    fit = fit_temperature(logits, torch.tensor([0, 1]), bounds=(0.5, 2.0))  # always right: NLL falls as T -> 0
    assert fit.at_bound and fit.temperature == pytest.approx(0.5, rel=1e-3)
    with pytest.raises(ValueError, match="no labelled pixels"):
        fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        fit_temperature(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))
