"""One entry point for every kernel launch, so that the cost model sees each launch and the bytes it moves.

``launch(kernel, grid, args, reads=..., writes=...)`` runs ``kernel[grid](*args)``; every hook registered with
:func:`hooks` is told the kernel's name and the bytes it declares (what it reads and writes at most), and the
kernel runs inside the hook's ``paused()`` context (the interpreter's own tensor copies are not launches).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol


class Hook(Protocol):
    def kernel(self, name: str, nbytes: int) -> None: ...

    def paused(self) -> contextlib.AbstractContextManager: ...


_HOOKS: list[Hook] = []


@contextlib.contextmanager
def hooks(hook: Hook) -> Iterator[None]:
    """Tell ``hook`` about every kernel launched while the context is active."""
    _HOOKS.append(hook)
    try:
        yield
    finally:
        _HOOKS.remove(hook)


def launch(
    kernel: Any,
    grid: tuple[int, ...],
    args: tuple,
    *,
    reads: int | Callable[[], int],
    writes: int | Callable[[], int],
    **meta: Any,
) -> None:
    """Run ``kernel[grid](*args, **meta)``, reporting one launch of ``reads + writes`` bytes to the hooks.

    ``reads`` / ``writes`` may be callables (bytes that depend on what the kernel did, e.g. its iteration
    counts): they are evaluated after the kernel, and only when a hook listens, so CUDA runs never sync on them.
    """
    fn = getattr(kernel, "fn", kernel)
    name = getattr(fn, "__name__", "kernel")
    if not _HOOKS:
        kernel[grid](*args, **meta)
        return
    with contextlib.ExitStack() as stack:
        for hook in _HOOKS:
            stack.enter_context(hook.paused())
        kernel[grid](*args, **meta)
        nbytes = sum(int(x() if callable(x) else x) for x in (reads, writes))
    for hook in _HOOKS:
        hook.kernel(name, nbytes)
