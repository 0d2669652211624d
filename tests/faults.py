"""Fault injection for the training tests: a cross-entropy loss that sends a signal to its own process.

Used as ``loss._target_=faults.SignalAtCall`` (this folder is on ``sys.path`` under pytest; subprocesses get it
through ``PYTHONPATH``). It behaves exactly like ``torch.nn.CrossEntropyLoss`` unless ``RANKSEG_FAULT_SIGNAL``
names a signal (``TERM``, ``INT``, ``KILL``, ``USR2``): then its ``RANKSEG_FAULT_AT``-th call (1-based, counted
per instance, i.e. per training invocation) sends that signal before computing the loss, so the signal lands in
the middle of a known training step. The environment is not part of the run config, so a faulty and a clean
invocation train the same run.
"""

from __future__ import annotations

import os
import signal

import torch


class SignalAtCall(torch.nn.CrossEntropyLoss):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        name = os.environ.get("RANKSEG_FAULT_SIGNAL")
        if name and self.calls == int(os.environ["RANKSEG_FAULT_AT"]):
            os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
        return super().forward(input, target)
