"""The ``RankSEG`` object: stores its settings and forwards to :func:`rankseg.functional.rankseg`."""

from __future__ import annotations

from typing import Any

import torch

from rankseg.functional import rankseg as _rankseg

__all__ = ["RankSEG"]


class RankSEG:
    """Metric-optimal segmentation from per-pixel probabilities.

    Like rankseg 0.0.8 the constructor only stores its arguments (``solver_params`` collects the extra ones);
    everything is checked when the object is called, with the same messages.

    Example:
        >>> import torch
        >>> from rankseg import RankSEG
        >>> probs = torch.rand(2, 3, 8, 8).softmax(1)
        >>> RankSEG(metric="dice", output_mode="multiclass").predict(probs).shape
        torch.Size([2, 8, 8])
    """

    def __init__(
        self,
        metric: str = "dice",
        smooth: float = 0.0,
        output_mode: str = "multiclass",
        solver: str = "RMA",
        pruning_prob: float = 0.5,
        **solver_params: Any,
    ) -> None:
        self.metric = metric
        self.smooth = smooth
        self.output_mode = output_mode
        self.solver = solver
        self.pruning_prob = pruning_prob
        self.solver_params = dict(solver_params)

    def predict(self, probs: torch.Tensor) -> torch.Tensor:
        """Masks (multilabel, bool (B, C, *S)) or a label map (multiclass, int64 (B, *S))."""
        return _rankseg(
            probs,
            metric=self.metric,
            smooth=self.smooth,
            output_mode=self.output_mode,
            solver=self.solver,
            pruning_prob=self.pruning_prob,
            **self.solver_params,
        )

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        return self.predict(probs)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.solver_params.items())
        return (
            f"RankSEG(metric={self.metric!r}, smooth={self.smooth!r}, output_mode={self.output_mode!r}, "
            f"solver={self.solver!r}, pruning_prob={self.pruning_prob!r}{extra})"
        )
