"""How the network sees a val image: in one forward pass, or by sliding windows, optionally with a flipped copy.

``evaluate.py inference.mode=slide inference.window=[512,512] inference.stride=[342,342]`` (the RankSEG-RMA
protocol; ``configs/experiment/rma_*.yaml`` set it per dataset). ``mode=whole`` (the default) is one forward pass
of the whole image, as before this module existed.

Sliding windows follow the RMA repository's ``Segmentor.predict`` (``exp/models/segmentor.py``), which is
mmsegmentation's "slide" mode: along each axis ``n = ceil((size - window) / stride) + 1`` windows start at
``0, stride, 2 stride, ...``, the last ones moved back so that they end at the border. An image smaller than the
window is first padded to it, centred, with zeros (the RMA val transform pads with the normalisation mean, which
normalises to 0, and gives the padding the ignore label), and the padded border is cut off the logits again.
Every window's **logits** are summed into the image's frame and divided by the number of windows covering each
pixel, then turned into probabilities. With ``flip=true`` the horizontally flipped image is
predicted the same way, flipped back, and the two **probabilities** are averaged (the RMA code's flip, which it
only applies with multi-scale ratios; its published settings have ``flip: False``); the logits returned with them
are the average of the two logits, used only by the calibration pass (temperature fit, not ECE).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rankseg.predict import probabilities

__all__ = ["InferenceSettings", "infer", "inference_settings", "slide_logits", "window_starts"]

MODES = ("whole", "slide")


@dataclass(frozen=True)
class InferenceSettings:
    """``mode`` whole or slide; ``window`` and ``stride`` (height, width) for slide; ``flip`` averaging."""

    mode: str = "whole"
    window: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    flip: bool = False

    def record(self) -> dict[str, Any] | None:
        """What joins ``eval_settings`` in ``metrics.json``: None for the default (whole image, no flip), so
        records written before this option existed still merge with new ones."""
        if self.mode == "whole" and not self.flip:
            return None
        out: dict[str, Any] = {"mode": self.mode, "flip": self.flip}
        if self.mode == "slide":
            out.update(window=list(self.window or ()), stride=list(self.stride or ()))
        return out


def _pair(value: Any, key: str) -> tuple[int, int]:
    items = [value, value] if isinstance(value, int) else list(value) if isinstance(value, Sequence) else None
    if items is None or len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"inference.{key} must be an integer or [height, width] of positive integers, got {value!r}")
    if min(items) < 1:
        raise ValueError(f"inference.{key} must be positive, got {value!r}")
    return int(items[0]), int(items[1])


def inference_settings(node: Mapping[str, Any] | None) -> InferenceSettings:
    """Validated settings from the ``inference`` config node (None or absent keys: whole image, no flip).

    Raises:
        ValueError: an unknown mode, or slide without a positive window and stride.
    """
    node = dict(node or {})
    mode = str(node.get("mode") or "whole")
    if mode not in MODES:
        raise ValueError(f"inference.mode must be one of {MODES}, got {mode!r}")
    flip = node.get("flip", False)
    if not isinstance(flip, bool):
        raise ValueError(f"inference.flip must be true or false, got {flip!r}")
    if mode == "whole":
        return InferenceSettings("whole", None, None, flip)
    if node.get("window") is None or node.get("stride") is None:
        raise ValueError("inference.mode=slide needs inference.window=[h,w] and inference.stride=[h,w]")
    return InferenceSettings("slide", _pair(node["window"], "window"), _pair(node["stride"], "stride"), flip)


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis of length ``size`` (module docstring); ``window <= size``."""
    count = max(math.ceil((size - window) / stride), 0) + 1
    return [min(i * stride, size - window) for i in range(count)]


def slide_logits(
    forward: Callable[[Tensor], Tensor], images: Tensor, window: tuple[int, int], stride: tuple[int, int]
) -> Tensor:
    """Logits of ``images`` averaged over overlapping windows (module docstring).

    Args:
        forward: the network, images (B, 3, h, w) -> logits (B, C, h, w).
        images: the batch.
        window, stride: (height, width) in pixels; an image smaller than the window is padded to it.

    Returns:
        float32 logits, averaged over the windows that cover each pixel.

    Shape:
        - images: (B, channels, H, W)
        - output: (B, C, H, W)
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = max(window[0] - height, 0), max(window[1] - width, 0)
    if pad_h or pad_w:  # centred, as the RMA val transform pads (left/top get the smaller half)
        top, left = pad_h // 2, pad_w // 2
        padded = torch.nn.functional.pad(images, (left, pad_w - left, top, pad_h - top))
        return slide_logits(forward, padded, window, stride)[..., top : top + height, left : left + width]
    win_h, win_w = window
    total: Tensor | None = None
    count = torch.zeros(height, width, device=images.device, dtype=torch.float32)
    for top in window_starts(height, win_h, stride[0]):
        for left in window_starts(width, win_w, stride[1]):
            out = forward(images[..., top : top + win_h, left : left + win_w]).float()
            if total is None:
                total = out.new_zeros(*out.shape[:2], height, width)
            total[..., top : top + win_h, left : left + win_w] += out
            count[top : top + win_h, left : left + win_w] += 1
    assert total is not None  # at least one window per axis
    return total / count


def infer(
    forward: Callable[[Tensor], Tensor], images: Tensor, settings: InferenceSettings, activation: str
) -> tuple[Tensor, Tensor]:
    """The network's logits and probabilities on ``images`` under ``settings`` (module docstring).

    With the default settings this is ``forward(images)`` and its ``softmax``/``sigmoid``, nothing else.

    Returns:
        ``(logits, probs)``; probs are float32.

    Shape:
        - images: (B, channels, H, W)
        - outputs: (B, C, H, W) each
    """

    def once(x: Tensor) -> Tensor:
        if settings.mode == "slide":
            return slide_logits(forward, x, settings.window, settings.stride)  # type: ignore[arg-type]
        return forward(x)

    logits = once(images)
    probs = probabilities(logits, activation)
    if settings.flip:
        flipped = once(images.flip(-1)).flip(-1)
        probs = (probs + probabilities(flipped, activation)) / 2
        logits = (logits.float() + flipped.float()) / 2
    return logits, probs
