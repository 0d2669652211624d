"""What the entrypoints say, and how they show progress, on a terminal and in log files alike.

* :func:`echo` prints a message and also writes it to the job's log file (Hydra's ``train.log``,
  ``evaluate.log``, ... through the ``rankseg.run`` logger that ``configs/hydra/job_logging/rankseg.yaml`` sends
  to that file only). Called outside a Hydra job (tests, notebooks), the logger has no handler and only the print
  remains.
* :func:`progress` is a tqdm bar when stderr is a terminal. Otherwise (SLURM output files, CI logs, pipes) it
  writes one plain line every ``interval`` seconds and one at the end, with the same counts and postfix, instead
  of a stream of carriage returns. ``RANKSEG_PROGRESS_INTERVAL`` sets the interval (seconds, default 30).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["PlainProgress", "echo", "progress"]

#: Messages of the entrypoints, for the job's log file (the console gets them by print).
RUN_LOG = logging.getLogger("rankseg.run")
_DEFAULT_INTERVAL = 30.0


def echo(message: str, *, err: bool = False) -> None:
    """Print ``message`` (to stderr with ``err``) and write it to the job's log file."""
    print(message, file=sys.stderr if err else sys.stdout, flush=True)
    (RUN_LOG.warning if err else RUN_LOG.info)(message)


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    initial: int = 0,
    desc: str = "",
    disable: bool = False,
    interval: float | None = None,
    unit: str = "it",
) -> Any:
    """A progress bar over ``iterable`` (or counted with ``update``): tqdm on a terminal, plain lines elsewhere.

    Args:
        iterable: what to iterate over, or None to call ``update`` by hand.
        total: number of steps (``len(iterable)`` when it has one).
        initial: steps already done (a resumed run).
        desc: the label of every line.
        disable: show nothing (e.g. on ranks other than 0).
        interval: seconds between plain lines (default ``RANKSEG_PROGRESS_INTERVAL`` or 30).
        unit: the unit shown after the counts.
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if _is_terminal():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True, unit=unit)
    if interval is None:
        interval = float(os.environ.get("RANKSEG_PROGRESS_INTERVAL", _DEFAULT_INTERVAL))
    return PlainProgress(iterable, total=total, initial=initial, desc=desc, disable=disable, interval=interval,
                         unit=unit)  # fmt: skip


class PlainProgress:
    """The parts of tqdm's interface the entrypoints use (iteration, ``update``, ``set_postfix``, ``close``),
    reporting by whole lines: ``desc: n/total (p%) elapsed, rate, postfix``."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        initial: int = 0,
        desc: str = "",
        disable: bool = False,
        interval: float = _DEFAULT_INTERVAL,
        unit: str = "it",
    ) -> None:
        self.iterable, self.total, self.n, self.desc = iterable, total, initial, desc
        self.disable, self.interval, self.unit = disable, interval, unit
        self._initial, self._postfix = initial, ""
        self._start = self._last = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("PlainProgress without an iterable: call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={_fmt(v)}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n > self._initial or self.total == 0:
            self._emit(final=True)

    def _line(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self._start
        done = self.n - self._initial
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {done / elapsed:.2f} {self.unit}/s" if elapsed > 0 and done else ""
        tail = f", {self._postfix}" if self._postfix else ""
        return f"{self.desc}: {count}{share} {'done in' if final else 'after'} {elapsed:.0f} s{rate}{tail}"

    def _emit(self, final: bool = False) -> None:
        if not self.disable:
            echo(self._line(final))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
