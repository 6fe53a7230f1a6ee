"""Statistics of raw samples: median, spread, confidence interval, and when to stop repeating.

Why these choices:

* **Medians**, because one encode in ten on a shared 2-core machine can take several times
  the others; every raw sample is kept, so anyone can recompute anything else.
* **The confidence interval of a median is distribution-free**: SciPy's
  :func:`scipy.stats.quantile_test` gives the interval between two order statistics that
  covers the population median with at least the stated confidence. It assumes nothing about
  the shape of the noise (timing noise is skewed: a run is slowed, never sped up) and needs
  at least 6 samples for 95 % (with 5 the widest interval, min to max, covers only 94 %);
  with fewer there is no interval, and the tables say so instead of inventing one.
* **Stop repeating when the answer is known** (``torch.utils.benchmark``'s
  ``adaptive_autorange``): :class:`StopRule` repeats an item until its median is precise
  enough, or the item has had its time budget, or the ceiling is reached — never fewer than
  the floor. A 300 s encode at 3840×2160 gets its floor; a 30 ms one gets repeats until its
  interval is tight.
"""
from __future__ import annotations

import functools
import math
import statistics
from dataclasses import asdict, dataclass

import numpy as np

#: IQR / median above which a per-image measurement is flagged as noisy (torch.utils.benchmark: 10 %).
NOISY_IQR_RATIO = 0.10
#: Confidence level of every interval the study reports.
CONFIDENCE = 0.95
#: Target half-width of a reported median's confidence interval, relative to the median.
TARGET_REL = 0.05


def median_ci(samples, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (order statistics, SciPy's
    ``quantile_test``); ``(nan, nan)`` when there are too few samples for ``confidence``."""
    x = np.asarray([s for s in samples if s is not None and not math.isnan(s)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    lo, hi = _median_ci_ranks(len(x), float(confidence))
    x.sort()
    return (float("nan") if lo is None else float(x[lo])), (float("nan") if hi is None else float(x[hi]))


@functools.lru_cache(maxsize=1024)
def _median_ci_ranks(n: int, confidence: float) -> tuple[int | None, int | None]:
    """The order statistics (0-based ranks in the sorted samples) that bound the median's interval for ``n``
    samples, from SciPy's ``quantile_test`` on the ranks themselves; None where the bound is open.

    Why: the interval is a pair of order statistics whose ranks depend on ``n`` and ``confidence`` only, never on
    the values (ties included: checked against ``quantile_test`` on the samples themselves in tests/test_stats.py).
    SciPy derives them with a frozen binomial each call (~4 ms); the tidy tables ask for one interval per item ×
    stage × direction, which made loading the quick book's results ~12 s on the 2-core VM."""
    from scipy.stats import quantile_test

    r = np.arange(n, dtype=float)
    ci = quantile_test(r, q=float(np.median(r)), p=0.5).confidence_interval(confidence)
    return (None if math.isnan(ci.low) else int(ci.low)), (None if math.isnan(ci.high) else int(ci.high))


def relative_half_width(samples, confidence: float = CONFIDENCE) -> float:
    """Half the width of the median's confidence interval over the median; nan when there is none."""
    lo, hi = median_ci(samples, confidence)
    med = float(np.median(samples)) if len(samples) else float("nan")
    if math.isnan(lo) or math.isnan(hi) or not med > 0:
        return float("nan")
    return (hi - lo) / 2 / med


@dataclass
class Measurement:
    """Raw samples of one quantity (seconds, unless stated) and the statistics derived from them."""

    samples: list[float]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples)) if self.samples else float("nan")

    @property
    def iqr(self) -> float:
        """Interquartile range; nan (not 0) with fewer than 2 samples: one sample has no spread."""
        if len(self.samples) < 2:
            return float("nan")
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q3 - q1)

    @property
    def noisy(self) -> bool:
        m, iqr = self.median, self.iqr
        return bool(m > 0 and not math.isnan(iqr) and iqr / m > NOISY_IQR_RATIO)

    def ci(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        return median_ci(self.samples, confidence)


@dataclass(frozen=True)
class StopRule:
    """When to stop repeating one item (an image, or a standard codec's image at one quality).

    After each repeat, with ``n`` uncontended samples of each direction's total:

    1. ``n < min_repeats``: go on (the floor);
    2. ``n ≥ max_repeats``: stop (``"ceiling"``);
    3. every direction's median has a ``confidence`` interval whose half-width is at most
       ``target`` × the median: stop (``"precision"``; needs n ≥ 6 at 95 %);
    4. the item's timed codings add up to ``budget_s`` or more: stop (``"time budget"``) —
       a long coding's floor is enough; a short one repeats until it is precise or has
       had its budget.

    ``warmup_skip_s``: a new input shape is warmed up (one untimed coding) unless the first
    coding at that shape is predicted, from the previous shape scaled by pixels, to take longer
    than this — the first call's extra cost (kernel selection, first-touch allocation) is then
    far below the repeat spread, and a warm-up would double the cost of a 4K autoregressive
    coding. ``warmup`` is the number of warm-up codings per new shape otherwise.
    """

    min_repeats: int = 1
    max_repeats: int = 10
    target: float = TARGET_REL
    confidence: float = CONFIDENCE
    budget_s: float = 3.0
    warmup: int = 1
    warmup_skip_s: float = 10.0
    #: contended samples are redone, at most this many times per item
    max_redo: int = 3

    def __post_init__(self):
        from ..errors import InputError

        if self.min_repeats < 1 or self.max_repeats < self.min_repeats:
            raise InputError(f"repeats: need 1 ≤ min_repeats ≤ max_repeats, got {self.min_repeats} and "
                             f"{self.max_repeats}")
        if not (0 < self.target < 1) or not (0.5 < self.confidence < 1):
            raise InputError(f"target must be in (0, 1) and confidence in (0.5, 1), got {self.target}, "
                             f"{self.confidence}")

    def decide(self, totals: dict[str, list[float]]) -> str | None:
        """The reason to stop now, or ``None`` to repeat once more. ``totals``: direction → the
        uncontended samples of that direction's total, in seconds."""
        n = min((len(v) for v in totals.values()), default=0)
        if n < self.min_repeats:
            return None
        if n >= self.max_repeats:
            return "ceiling"
        if all(relative_half_width(v, self.confidence) <= self.target for v in totals.values()):
            return "precision"
        if sum(sum(v) for v in totals.values()) >= self.budget_s:
            return "time budget"
        return None

    def as_dict(self) -> dict:
        return asdict(self)


def fixed(repeats: int, warmup: int = 1) -> StopRule:
    """Exactly ``repeats`` repeats per item (the floor is the ceiling), ``warmup`` per new shape."""
    return StopRule(min_repeats=repeats, max_repeats=repeats, warmup=warmup, warmup_skip_s=float("inf"))
