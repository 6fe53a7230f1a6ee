"""Drift between runs: a fixed reference workload, and intervals that cover what it measures.

Why: a median's 95 % interval from its repeats describes the noise *inside* one run. Made again
an hour later, the same measurement moves by more than that (on the 2-core VM: four back-to-back
runs of one codec spanned 1.18× in encode time, every stage moving together — the machine, not the
code). Nothing in a run's own repeats can see that, so every run also times a **reference
workload** that never changes: a fixed float32 convolution and a matrix product (the two kinds of
work a codec's transforms are made of), at the run's threads and device, synchronised on a GPU.

* **Allocation-free, so it measures the machine and not the process.** Its tensors are small
  (the convolution's output 72 KiB, below glibc's smallest mmap threshold) and the product writes
  into a buffer made once. Why: the first workload (a 1×64×128×128 convolution, 4 MiB per output)
  made ~3,200 minor page faults per call in a process whose allocator still had its default mmap
  threshold, and none in a process whose earlier allocations had raised it — the same machine timed
  it at 7.3 ms or 3.4 ms depending on what the process had allocated before (measured 4 Dec on the
  2-core VM). So a run's start probe, taken right after loading the model, was "slower" than its
  end probe, and 9 of 25 runs of a quick book were flagged as drifting 1.6–2.1× within the run
  while the machine had not moved. This workload makes no page fault after its untimed call in
  either state (tests/test_drift.py counts them), and times the same in both (3.1–3.6 ms, the
  process-to-process spread of this VM). References made with another workload are not compared
  with its (:func:`probes_of`).

* **When**: at the run's start, between items (at most every :data:`PROBE_EVERY_S`) and at its end
  (:func:`probe`; about 35 ms each on the 2-core VM, :data:`PROBE_CALLS` timed calls after one untimed).
  Each probe is bracketed by the contention monitor like a timed coding; a contended probe is kept,
  flagged and left out.
* **What a run says** (:func:`run_summary`): its reference speed (the median of its probes'
  medians), its *within-run drift* (slowest probe over fastest), and — against the other runs of
  its platform in the results folder — the *ratio* to the platform's median reference. A run whose
  reference moved within it, or whose ratio is off, by more than its platform's usual noise gives in
  :data:`FLAG_P` of runs (at least :data:`DRIFT_BOUND` and :data:`PLATFORM_TOLERANCE`; :func:`bounds`,
  :func:`noise_spread`) is flagged like a slow node (:func:`flag`).
* **The between-run component** (:func:`platform_spread`): the standard deviation of the log of
  every uncontended probe of a platform (all its runs pooled, and the reruns of the results folder's
  earlier ``make reproducibility`` checks, each against the platform's centre):
  how much the machine's speed varies between moments, within and between runs. Not robust on
  purpose: one slow run is exactly what the interval has to cover.
* **Measured on the codecs, where a check has rerun them** (:func:`rerun_spread`): once the results
  folder holds a ``make reproducibility`` check with at least :data:`MIN_RERUN_ROWS` rerun rows of a
  platform, its between-run component is taken from those rows instead of from the probes. Why: on the
  2-core VM the probe at 2 threads is bimodal (3.3 or 5.7–8 ms per pass: spells of 0.1–0.5 s in which the
  second vCPU is not the process's), a single probe lands in one state, and the pooled sd of the probes
  (0.25) was twice what the codecs' reruns moved (0.13): intervals of ±70 % where ±33 % covered 92 % of
  the rows (measured 4 Dec). Codec repeats of 0.3–1 s average over those spells; the probe cannot.
* **Intervals that cover it** (:func:`widen`): each side of a median's interval is widened in
  quadrature by the between-run half-width of that side, taken on the log scale where the component
  lives: ``median · (exp(b) − 1)`` above and ``median · (1 − exp(−b))`` below, with
  ``b = z · √2 · sd`` — the 95 % half-width of the log of the ratio of two runs' speed factors (this
  run's, and a rerun's). So the widened interval answers the reader's question: where would this
  median land if it were measured again on this platform. Why the log scale: a speed factor is a
  ratio, and a rerun 1.5× slower is as likely as one 1.5× faster; the earlier linear ``± z√2·sd·median``
  put the upper side too low (on the 4 Dec quick-profile checks it covered 85.8 % of the next check's
  rows where the log form covers 87.9 %, at 37.8 % median half-width instead of 36.9 %). A steady
  machine (sd ≈ 0) keeps the within-run interval unchanged. Where the within-run interval is blank
  (fewer than 6 repeats), the range of the repeats stands in for it.
"""
from __future__ import annotations

import functools
import math
import statistics
import time
from datetime import datetime, timezone

#: timed calls of the workload per probe (after one untimed call): the probe's value is their median
PROBE_CALLS = 9
#: between items, a probe at most this often (seconds since the last): the standard codecs' run has over a
#: thousand short items, and a probe before each would add minutes; so the probes cost at most ~1 % of a run
PROBE_EVERY_S = 10.0
#: a run whose slowest probe is more than this many times its fastest drifted within the run (the floor: on a
#: noisy platform the bound is what its usual noise exceeds only rarely, :func:`bounds`)
DRIFT_BOUND = 1.10
#: a run whose reference is more than this fraction off its platform's median sits outside its spread (the floor)
PLATFORM_TOLERANCE = 0.10
#: the flags' bounds are the FLAG_P quantiles of what the platform's usual noise gives (:func:`bounds`)
FLAG_P = 0.99
#: fewest rerun rows of a platform (in the results folder's reproducibility checks) from which its between-run
#: component is measured on the codecs (:func:`rerun_spread`) rather than on the reference probes
MIN_RERUN_ROWS = 10
#: two-sided 95 % normal quantile (the between-run component is a sum of many small slow-downs)
Z95 = 1.959963984540054
#: what the workload is, recorded with every run (change it and the references are no longer comparable)
WORKLOAD = "24 x conv2d 1x32x24x24 * 32x32x3x3 (pad 1) + 2 x mm 384x384 @ 384x384 (out=), float32, seed 0"


#: TEST HOOK, never set in real use: ``LCSTUDY_TEST_SPEED`` (a factor) replaces the workload by this many
#: seconds of this thread's CPU time times the factor, timed on that clock, so that tests (and their child
#: processes) run on a "machine" whose speed they set: a known drift between runs, whatever else loads the
#: machine the tests run on (a wall clock would see the scheduler's preemptions)
TEST_WORK_S = 0.004


def _clock():
    import os

    return time.thread_time if os.environ.get("LCSTUDY_TEST_SPEED") else time.perf_counter


def _workload(device: str):
    """The fixed work, as a function that does it once and waits for the device (built once per device)."""
    import os

    import torch

    speed = os.environ.get("LCSTUDY_TEST_SPEED")
    if speed:
        seconds = TEST_WORK_S * float(speed)

        def busy() -> None:
            end = time.thread_time() + seconds
            while time.thread_time() < end:
                pass

        return busy

    from .clocks import synchronizer

    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(1, 32, 24, 24, generator=g).to(dev)
    w = torch.rand(32, 32, 3, 3, generator=g).to(dev)
    a = torch.rand(384, 384, generator=g).to(dev)
    out = torch.empty(384, 384, device=dev)
    sync = synchronizer(dev)

    def once() -> None:
        with torch.inference_mode():
            for _ in range(24):
                torch.nn.functional.conv2d(x, w, padding=1)
            for _ in range(2):
                torch.mm(a, a, out=out)
        sync()

    return once


_BUILT: dict = {}


def probe(device: str, threads: int, at: str) -> dict:
    """One probe of the reference workload: ``at`` says when (``start``, an item's key, ``end``)."""
    from .clocks import threads as _threads
    from .contention import CpuContention

    import os

    with _threads(threads):
        key = (str(device), os.environ.get("LCSTUDY_TEST_SPEED"))
        once = _BUILT.get(key)
        if once is None:
            once = _BUILT[key] = _workload(str(device))
        once()  # untimed: caches and kernels warm
        mon = CpuContention()
        mon.begin()
        samples = []
        clock = _clock()
        for _ in range(PROBE_CALLS):
            t0 = clock()
            once()
            samples.append(clock() - t0)
        c = mon.end()
    return {"at": at, "utc": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "samples": samples,
            "seconds": statistics.median(samples), "other_cpu_s": c["other_cpu_s"], "contended": c["contended"]}


def probes_of(reference: dict | None) -> list[dict]:
    """A run's probes (its run.json ``reference``) if they timed this :data:`WORKLOAD`; none otherwise: a
    reference made with another workload is not comparable with this one's."""
    r = reference or {}
    return list(r.get("probes") or []) if r.get("workload") == WORKLOAD else []


def _good(probes: list[dict]) -> list[float]:
    return [p["seconds"] for p in probes or [] if not p.get("contended") and p.get("seconds", 0) > 0]


def run_summary(probes: list[dict]) -> dict:
    """A run's reference speed (median of its uncontended probes, seconds), its within-run drift (slowest
    probe over fastest; 1 with one probe) and how many probes it has; blanks without any."""
    good = _good(probes)
    if not good:
        return {"ref_seconds": math.nan, "ref_drift": math.nan, "ref_probes": len(probes or [])}
    return {"ref_seconds": statistics.median(good), "ref_drift": max(good) / min(good), "ref_probes": len(good)}


def noise_spread(probe_sets: list[list[dict]]) -> float:
    """The platform's *usual* moment-to-moment noise of the reference: a robust standard deviation (1.4826 ×
    the median absolute deviation) of the log of every uncontended probe of its runs, pooled; 0 with fewer than
    three. Why robust, unlike :func:`platform_spread`: this sets the bounds of the flags (:func:`flag`), which
    must say "this run's machine moved more than it usually does", and a minority of slow spells is exactly what
    they are to find, not what should widen their bounds."""
    logs = [math.log(s) for probes in probe_sets for s in _good(probes)]
    if len(logs) < 3:
        return 0.0
    med = statistics.median(logs)
    return 1.4826 * statistics.median(abs(x - med) for x in logs)


@functools.lru_cache(maxsize=64)
def range_quantile(n: int, p: float = 0.99) -> float:
    """The ``p`` quantile of the range (largest minus smallest) of ``n`` independent standard normal draws:
    SciPy's studentized range with infinite degrees of freedom, which is exactly that distribution. 0 below two
    draws. (It replaced a quadrature of ``P(R ≤ w) = n ∫ φ(x) (Φ(x + w) − Φ(x))^(n−1) dx`` solved by brentq:
    the same values to 1e-13 for 2–13 draws, in 1.5 ms instead of 0.3 s per call, paid by every run page.)"""
    if n < 2:
        return 0.0
    import numpy as np
    from scipy import stats

    return float(stats.studentized_range.ppf(p, n, np.inf))


def bounds(noise_sd: float = 0.0, probes: int = 2) -> tuple[float, float]:
    """(within-run drift bound, relative tolerance off the platform's median) of a run with ``probes`` probes on
    a platform whose usual noise is ``noise_sd`` (:func:`noise_spread`): each the fixed floor
    (:data:`DRIFT_BOUND`, :data:`PLATFORM_TOLERANCE`) or what that noise alone exceeds only with probability
    1 − :data:`FLAG_P`, whichever is larger — the range of ``probes`` probes for the drift, one probe's
    deviation for the ratio. Why: on the 2-core VM the 2-thread probe alone moves 1.3–1.6× within runs whose
    codec reran within ±12 %, and the fixed bounds flagged 12 of a quick book's 25 runs (4 Dec): flags that fire
    on half the runs tell a reader nothing."""
    from scipy import stats

    sd = 0.0 if noise_sd is None or math.isnan(noise_sd) else noise_sd
    n = 2 if probes is None or (isinstance(probes, float) and math.isnan(probes)) else max(2, int(probes))
    return (max(DRIFT_BOUND, math.exp(sd * range_quantile(n, FLAG_P))),
            max(PLATFORM_TOLERANCE, math.expm1(sd * float(stats.norm.ppf((1 + FLAG_P) / 2)))))


def platform_spread(probe_sets: list[list[dict]]) -> float:
    """The between-moment standard deviation of the log of the reference speed over every uncontended probe
    of one platform's runs (each run's probes a list); 0 with fewer than two probes."""
    logs = [math.log(s) for probes in probe_sets for s in _good(probes)]
    return statistics.stdev(logs) if len(logs) >= 2 else 0.0


def rerun_spread(ratios) -> float:
    """The between-run component measured on the codecs themselves: from the ratios rerun / original of
    every row a reproducibility check reran, ``sqrt(mean(log(ratio)²) / 2)``. Each side of a ratio carries
    one run's speed factor, hence the 2; the mean square (not the variance) keeps a shift of the whole
    rerun, which is drift too. Blank (nan) without a usable ratio."""
    logs = [math.log(r) for r in ratios if r is not None and r > 0 and not math.isnan(r) and not math.isinf(r)]
    return math.sqrt(sum(x * x for x in logs) / len(logs) / 2.0) if logs else math.nan


def between_log_half(sd: float) -> float:
    """The between-run 95 % half-width on the log scale: ``z · √2 · sd`` (two runs' speed factors, each of
    log-sd ``sd``)."""
    return Z95 * math.sqrt(2.0) * sd


def between_half(median: float, sd: float) -> float:
    """The between-run half-width (seconds) of a median on its upper side, ``median · (exp(z·√2·sd) − 1)``
    (the wider side; as a relative ``rel`` it is exactly the bound :func:`within_uncertainty` tests,
    ``log1p(rel) = z·√2·sd``)."""
    return median * math.expm1(between_log_half(sd))


def widen(median: float, low: float, high: float, sd: float, samples=None) -> tuple[float, float]:
    """A median's interval widened by the between-run component, each side in quadrature with that side's
    half-width on the log scale. ``low``/``high`` blank (too few repeats): the range of ``samples`` stands
    in (nothing with one sample)."""
    if median is None or math.isnan(median):
        return math.nan, math.nan
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        xs = [s for s in (samples or []) if s is not None and not math.isnan(s)]
        low, high = (min(xs), max(xs)) if xs else (median, median)
    b = between_log_half(sd)
    return median - math.hypot(median - low, -median * math.expm1(-b)), median + math.hypot(high - median,
                                                                                         median * math.expm1(b))


def flag(ref_drift: float, ref_ratio: float, noise_sd: float = 0.0, probes: int = 2) -> str:
    """Why a run's reference is flagged (empty when it is not): drifted within the run, or off its platform,
    beyond the :func:`bounds` of its platform's usual noise ``noise_sd`` (0: the fixed floors)."""
    drift_bound, tolerance = bounds(noise_sd, probes)
    why = []
    if ref_drift is not None and not math.isnan(ref_drift) and ref_drift > drift_bound:
        why.append(f"reference drifted {ref_drift:.2f}× within the run (bound {drift_bound:.2f}×)")
    if ref_ratio is not None and not math.isnan(ref_ratio) and abs(ref_ratio - 1) > tolerance:
        why.append(f"reference {ref_ratio:.2f}× its platform's median (bound ±{tolerance:.0%})")
    return "; ".join(why)


def ratio_uncertainty(rel_a: float, rel_b: float) -> float:
    """The relative uncertainty of a ratio of two medians from different runs, each stated with its
    across-runs relative half-width: their quadratic mean (the √2 of a rerun is in each already, and two
    runs' difference needs it once)."""
    vals = [0.0 if v is None or math.isnan(v) else v for v in (rel_a, rel_b)]
    return math.sqrt((vals[0] ** 2 + vals[1] ** 2) / 2)


def within_uncertainty(ratio: float, rel: float) -> bool:
    """Whether a ratio of two medians is within their stated across-runs uncertainty ``rel`` (relative)."""
    if ratio is None or math.isnan(ratio) or ratio <= 0:
        return False
    return abs(math.log(ratio)) <= math.log1p(rel)
