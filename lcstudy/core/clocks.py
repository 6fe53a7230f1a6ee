"""Clocks: every second the study reports goes through here.

Why a module of its own: the rules that make a timing honest live in one place.

* On a GPU, work is queued, not done, when a Python call returns. A clock read without
  ``torch.cuda.synchronize()`` bills a module's kernels to whichever later module first
  waits for the device (the ICASSP 2023 data shows exactly that: its CUDA "AEz" is ~10x
  its "g_a"). :class:`StageClock` therefore synchronises at every stage boundary, and
  whoever reads a total uses the clock's own :attr:`StageClock.sync`.
* The thread count is part of what is measured, so it is set for the measurement and
  restored afterwards (:func:`threads`, as ``torch.utils.benchmark`` does), never left
  changed behind a caller's back.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator


def synchronizer(device) -> Callable[[], None]:
    """Return the function that waits until ``device`` has finished all queued work."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    if dev.type == "mps":  # pragma: no cover - no Apple hardware here
        return torch.mps.synchronize
    return _no_sync


def _no_sync() -> None:
    return None


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: leave as is); restore afterwards.

    Yields the thread count in force inside the block.
    """
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


class StageClock:
    """Bills wall time to named stages, with nesting.

    ``with clock.stage("g_a"): ...`` adds the time of the block to ``"g_a"``. A stage opened
    inside another is recorded under ``"parent/child"`` and its time stays part of the
    parent's too; only top-level stages (no ``/``) partition the total. The device is
    synchronised before every clock read, so a stage's time includes the device work it
    launched and nothing from the stage before.

    ``sync`` replaces the device's synchroniser (tests use a fake device whose work
    completes only when it is synchronised).
    """

    def __init__(self, device="cpu", sync: Callable[[], None] | None = None):
        self.sync = sync or synchronizer(device)
        self.totals: dict[str, float] = {}
        self._stack: list[str] = []

    def reset(self) -> None:
        self.totals = {}
        self._stack = []

    @property
    def current(self) -> str | None:
        return self._stack[-1] if self._stack else None

    def stage(self, name: str) -> "_StageContext":
        return _StageContext(self, name)

    def wrap(self, name: str, fn: Callable) -> Callable:
        """Return ``fn`` wrapped so that each call is billed to stage ``name``."""

        def timed(*args, **kwargs):
            with _StageContext(self, name):
                return fn(*args, **kwargs)

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed

    def elapsed(self, fn: Callable, *args, **kwargs):
        """``(result, seconds)`` of one call, from a synchronised device to a synchronised device."""
        self.sync()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.sync()
        return out, time.perf_counter() - t0


class _StageContext:
    __slots__ = ("clock", "name", "key", "t0")

    def __init__(self, clock: StageClock, name: str):
        self.clock = clock
        self.name = name

    def __enter__(self):
        clock = self.clock
        parent = clock._stack[-1] if clock._stack else None
        self.key = f"{parent}/{self.name}" if parent else self.name
        clock._stack.append(self.key)
        clock.sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        clock = self.clock
        clock.sync()
        dt = time.perf_counter() - self.t0
        clock._stack.pop()
        clock.totals[self.key] = clock.totals.get(self.key, 0.0) + dt
        return False
