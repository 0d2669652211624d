"""Stop requests from signals: SIGINT (Ctrl-C), SIGTERM (``kill``, SLURM) and the preemption signal of
submitit (SIGUSR2, or ``$SUBMITIT_PREEMPT_SIGNAL``) finish the current training step instead of killing it.

The training loop polls :attr:`StopSignals.signum` after every step, saves its checkpoint and then calls
:meth:`StopSignals.hand_over`, which restores the previous handlers and, if the previous handler of that signal
was a Python function (submitit's, which requeues the job), calls it. The loop then raises
:class:`TrainingInterrupted`; ``train.py`` exits with its :attr:`~TrainingInterrupted.exit_status`, 128 plus the
signal number as a shell reports it (130 for SIGINT, 143 for SIGTERM, 140 for SIGUSR2).

A second SIGINT while a stop is pending raises ``KeyboardInterrupt`` at once (the step in progress is lost; the
last checkpoint stays as it was).
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["StopSignals", "TrainingInterrupted", "ignore_stop_signals", "preemption_signal"]


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving its checkpoint (``message`` says where and how to resume)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def preemption_signal() -> signal.Signals:
    """The signal submitit sends before a timeout or on preemption (``SUBMITIT_PREEMPT_SIGNAL``, default USR2)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}", signal.SIGUSR2)


def ignore_stop_signals() -> None:
    """For DataLoader workers: leave SIGINT and SIGTERM to the main process, which stops at a step boundary and
    shuts the workers down itself (a worker killed by the terminal's Ctrl-C would fail the batch in flight)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class StopSignals:
    """Context manager that records the first stop signal (see the module docstring).

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.signums = (signal.SIGINT, signal.SIGTERM, preemption_signal())
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signums:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def hand_over(self) -> None:
        """Restore the previous handlers and pass the pending signal to the previous Python handler, if any."""
        previous = self._previous.get(self.signum) if self.signum is not None else None
        self._restore()
        if callable(previous) and previous is not signal.default_int_handler:
            previous(self.signum, None)

    def __exit__(self, *exc: object) -> None:
        self._restore()
