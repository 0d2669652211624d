"""Calibration of class probabilities: expected calibration error (ECE) over equal-width confidence bins, and
temperature scaling fitted by negative log-likelihood. Torch-only, like :mod:`rankseg.metrics`.

**ECE** (Guo et al. 2017, as the RankSEG-RMA evaluation computes it: ``exp/metrics/ece_metric.py`` of
ZixunWang/RankSEG-RMA). Per labelled pixel: confidence ``c = max_k p_k``, correct ``= 1[argmax_k p_k == y]``.
Bin ``b`` of ``n`` holds ``b/n <= c < (b+1)/n`` (the last bin also holds ``c = 1``; the edges are the float32
``linspace(0, 1 - 1/n, n)`` of the reference, used with ``bucketize(right=True)``). Then

    ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)| = sum_b |sum_{B_b} correct - sum_{B_b} c| / N.

*Dataset-level* ECE (the reference's ``ECED``) sums the bins over every labelled pixel of the split; *per-image*
ECE (``ECEI``) is the mean over images of each image's own ECE. An image without labelled pixels has no ECE
(NaN, left out of the mean; the reference counts it as 0). Pixels whose label is ``ignore_index`` never count.
With one-vs-rest sigmoid probabilities the same definition applies to the most probable class's own probability.

**Temperature scaling** (Guo et al. 2017): ``p = softmax(z / T)`` over classes, or ``sigmoid(z / T)`` per class
with one-vs-rest labels ``1[y == k]`` (losses with a sigmoid activation). ``T`` minimises the mean NLL of the
labelled pixels. The NLL is convex in ``1/T`` (log-sum-exp, or softplus, of a linear function minus a linear
function), hence unimodal in ``log T``, so a golden-section search on ``log T`` over a bracket finds its minimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TemperatureFit", "calibration_bins", "ece_from_bins", "fit_temperature", "pixel_nll"]

#: Rows of a :func:`calibration_bins` result.
COUNT, CORRECT, CONFIDENCE = 0, 1, 2


def _bin_edges(num_bins: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    # Lower edges, as the reference builds them (float32 linspace), so pixels on an edge fall alike.
    return torch.linspace(0.0, 1.0 - 1.0 / num_bins, num_bins, dtype=torch.float32).to(device=device, dtype=dtype)


def calibration_bins(probs: Tensor, target: Tensor, num_bins: int = 10, ignore_index: int = 255) -> Tensor:
    """Per-image reliability bins: pixel count, correct count and confidence sum of every confidence bin.

    Confidence is ``probs.amax(1)``, the prediction ``probs.argmax(1)``; pixels labelled ``ignore_index`` are
    left out. One scatter over the batch, on ``probs``' device, no host synchronisation.

    Args:
        probs: class probabilities (softmax, or one-vs-rest sigmoid).
        target: ground-truth label map.
        num_bins: n, equal-width bins on [0, 1].
        ignore_index: label of unlabelled pixels.

    Returns:
        float64 tensor; ``[:, COUNT]``, ``[:, CORRECT]``, ``[:, CONFIDENCE]`` are the per-bin sums.

    Shape:
        - probs: (B, C, *S); target: (B, *S)
        - output: (B, 3, num_bins)
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    batch = probs.shape[0]
    conf = probs.amax(1).reshape(batch, -1)
    pred = probs.argmax(1).reshape(batch, -1)
    target = target.reshape(batch, -1)
    if conf.shape != target.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and target {tuple(target.shape)} do not match")
    valid = target != ignore_index
    bins = (torch.bucketize(conf, _bin_edges(num_bins, conf.dtype, conf.device), right=True) - 1).clamp_(0)
    index = bins + num_bins * torch.arange(batch, device=conf.device).view(-1, 1)
    weights = torch.stack([valid, valid & (pred == target), valid]).to(torch.float64)
    weights[CONFIDENCE] *= conf.to(torch.float64)
    out = torch.zeros(3, batch * num_bins, dtype=torch.float64, device=conf.device)
    out.index_add_(1, index.reshape(-1), weights.reshape(3, -1))
    return out.view(3, batch, num_bins).transpose(0, 1)


def ece_from_bins(bins: Tensor) -> Tensor:
    """ECE from bins of :func:`calibration_bins` (per image), or of their sum over images (dataset-level).

    Returns:
        float64; NaN where the bins hold no pixel.

    Shape:
        - bins: (*, 3, num_bins); output: (*)
    """
    total = bins[..., COUNT, :].sum(-1)
    gap = (bins[..., CORRECT, :] - bins[..., CONFIDENCE, :]).abs().sum(-1)
    return torch.where(total > 0, gap / total.clamp_min(1), torch.full_like(total, float("nan")))


def pixel_nll(
    logits: Tensor, target: Tensor, activation: str, temperature: float = 1.0, ignore_index: int = 255
) -> Tensor:
    """Negative log-likelihood of every pixel's label under ``softmax(logits / T)`` (or the sum over classes of
    the one-vs-rest binary NLL under ``sigmoid(logits / T)``); 0 on pixels labelled ``ignore_index``. Computed
    in ``logits``' dtype (float64 for the fit).

    Shape:
        - logits: (B, C, *S); target: (B, *S); output: (B, *S)
    """
    z = logits / temperature
    valid = target != ignore_index
    labels = torch.where(valid, target, torch.zeros_like(target)).long().unsqueeze(1)
    if activation == "softmax":
        nll = -z.log_softmax(1).gather(1, labels).squeeze(1)
    elif activation == "sigmoid":
        # sum_k BCE(z_k, 1[y == k]) = sum_k softplus(z_k) - z_y
        nll = F.softplus(z).sum(1) - z.gather(1, labels).squeeze(1)
    else:
        raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
    return torch.where(valid, nll, torch.zeros_like(nll))


@dataclass(frozen=True)
class TemperatureFit:
    """Result of :func:`fit_temperature`: ``temperature``, the mean NLL at T = 1 and at ``temperature``, the
    number of NLL evaluations and whether the minimum lies on the bracket's edge (then the bracket was too
    narrow, or the NLL keeps falling: e.g. a network that predicts every pixel right)."""

    temperature: float
    nll_before: float
    nll_after: float
    evaluations: int
    at_bound: bool


def _mean_nll(logits: Tensor, labels: Tensor, activation: str, temperature: float, chunk: int) -> float:
    total = 0.0
    for start in range(0, labels.shape[0], chunk):
        z = logits[start : start + chunk].to(torch.float64)
        total += float(pixel_nll(z, labels[start : start + chunk], activation, temperature, ignore_index=-1).sum())
    return total / max(labels.shape[0], 1)


def fit_temperature(
    logits: Tensor,
    labels: Tensor,
    activation: str = "softmax",
    bounds: tuple[float, float] = (0.01, 100.0),
    tol: float = 1e-5,
    chunk: int = 1 << 18,
) -> TemperatureFit:
    """The temperature T minimising the mean NLL of ``labels`` under ``softmax(logits / T)`` (or per-class
    ``sigmoid(logits / T)``): golden-section search on ``log T`` in ``bounds`` down to a bracket of ``tol``
    (about 30 NLL evaluations, each one float64 pass over the pixels in chunks of ``chunk``).

    Args:
        logits: one row per labelled pixel.
        labels: class of each row, in [0, C).
        activation: ``softmax`` or ``sigmoid``.
        bounds: search bracket of T.
        tol: width of the final bracket in ``log T``.

    Shape:
        - logits: (N, C); labels: (N,)
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if labels.numel() == 0:
        raise ValueError("no labelled pixels to fit a temperature on")

    def f(log_t: float) -> float:
        return _mean_nll(logits, labels, activation, math.exp(log_t), chunk)

    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = math.log(bounds[0]), math.log(bounds[1])
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = f(c), f(d)
    evaluations = 2
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = f(d)
        evaluations += 1
    log_t, nll_after = (c, fc) if fc <= fd else (d, fd)
    nll_before = f(0.0)
    at_bound = min(log_t - math.log(bounds[0]), math.log(bounds[1]) - log_t) < 10 * tol
    return TemperatureFit(math.exp(log_t), nll_before, nll_after, evaluations + 1, at_bound)
