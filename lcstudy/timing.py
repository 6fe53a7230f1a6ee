"""Clocks and measurements.

Why a module of its own: every number in the study goes through here, so the rules
that make a timing honest live in one place.

* On a GPU, work is queued, not done, when a Python call returns. A clock read without
  ``torch.cuda.synchronize()`` bills a module's kernels to whichever later module first
  waits for the device (the ICASSP 2023 data shows exactly that: its CUDA "AEz" is ~10x
  its "g_a"). :class:`StageClock` therefore synchronises at every stage boundary.
* One sample says little on a noisy 2-core machine: :class:`Measurement` keeps every raw
  sample and derives median and IQR from them, and flags a spread larger than 10 % of
  the median, as ``torch.utils.benchmark`` does.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

#: IQR / median above which a measurement is flagged as noisy (torch.utils.benchmark uses 10 %).
NOISY_IQR_RATIO = 0.10


def synchronizer(device: str | torch.device) -> Callable[[], None]:
    """Return the function that waits until ``device`` has finished all queued work."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    if dev.type == "mps":  # pragma: no cover - no Apple hardware here
        return torch.mps.synchronize
    return lambda: None


@dataclass
class Measurement:
    """Raw samples of one quantity (seconds, unless stated) and the statistics derived from them."""

    samples: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.samples.append(float(value))

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples)) if self.samples else float("nan")

    @property
    def iqr(self) -> float:
        if len(self.samples) < 2:
            return 0.0 if self.samples else float("nan")
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q3 - q1)

    @property
    def noisy(self) -> bool:
        m = self.median
        return bool(m > 0 and self.iqr / m > NOISY_IQR_RATIO)


class StageClock:
    """Bills wall time to named stages, with nesting.

    ``with clock.stage("g_a"): ...`` adds the time of the block to ``"g_a"``. A stage opened
    inside another is recorded under ``"parent/child"`` and its time stays part of the
    parent's too; only top-level stages (no ``/``) add up to the total. The device is
    synchronised before every clock read, so a stage's time includes the device work it
    launched and nothing from the stage before.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.sync = synchronizer(device)
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
