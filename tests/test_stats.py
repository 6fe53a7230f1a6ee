"""The statistics: the median's interval against SciPy's, and the stopping rule on timings of known spread."""
import numpy as np
import pytest
from scipy.stats import binom

from lcstudy.core.stats import Measurement, StopRule, fixed, median_ci, relative_half_width
from lcstudy.errors import InputError


def test_median_ci_is_the_order_statistic_interval():
    x = np.arange(1.0, 11.0)  # 10 samples
    lo, hi = median_ci(x, 0.95)
    # distribution-free: [x(k), x(n+1-k)] covers the median with 1 - 2 P(B ≤ k-1), B ~ Bin(n, 1/2)
    k = int(np.where(x == lo)[0][0]) + 1
    assert hi == x[len(x) - k]
    assert 1 - 2 * binom.cdf(k - 1, 10, 0.5) >= 0.95
    assert 1 - 2 * binom.cdf(k, 10, 0.5) < 0.95  # and it is the narrowest such pair
    assert np.isnan(median_ci([1.0, 2.0, 3.0, 4.0, 5.0])[0])  # 5 samples cannot give 95 %
    assert median_ci([1.0, 2, 3, 4, 5, 6]) == (1.0, 6.0)  # 6 can: min to max covers 96.9 %


def test_measurement_blank_spread_with_one_sample():
    m = Measurement([0.5])
    assert m.median == 0.5 and np.isnan(m.iqr) and not m.noisy
    assert Measurement([1.0, 1.0, 2.0, 2.0]).iqr == pytest.approx(1.0)  # numpy.percentile, linear


def _run(rule: StopRule, draws):
    """Apply the rule to successive (encode, decode) totals; return (repeats made, reason)."""
    totals = {"encode": [], "decode": []}
    for i, (e, d) in enumerate(draws, 1):
        totals["encode"].append(e)
        totals["decode"].append(d)
        reason = rule.decide(totals)
        if reason:
            return i, reason
    raise AssertionError("the rule never stopped")


def test_stops_early_on_tight_data():
    rng = np.random.default_rng(1)
    draws = [(0.03 * (1 + 0.005 * rng.standard_normal()), 0.04 * (1 + 0.005 * rng.standard_normal()))
             for _ in range(50)]
    n, reason = _run(StopRule(min_repeats=1, max_repeats=20, budget_s=100.0), draws)
    assert (n, reason) == (6, "precision")  # the first count at which a 95 % interval exists


def test_runs_to_the_ceiling_on_wide_data():
    rng = np.random.default_rng(2)
    draws = [(0.03 * rng.lognormal(0, 0.5), 0.04 * rng.lognormal(0, 0.5)) for _ in range(50)]
    n, reason = _run(StopRule(min_repeats=1, max_repeats=12, budget_s=100.0), draws)
    assert (n, reason) == (12, "ceiling")


def test_a_long_coding_stops_at_its_floor():
    draws = [(150.0, 160.0)] * 5  # a 4K autoregressive coding
    assert _run(StopRule(min_repeats=1, max_repeats=10, budget_s=3.0), draws) == (1, "time budget")
    assert _run(StopRule(min_repeats=2, max_repeats=10, budget_s=3.0), draws) == (2, "time budget")


def test_budget_counts_both_directions():
    draws = [(0.4, 0.6)] * 20  # 1 s per repeat, noisy enough never to be precise at n < 6
    assert _run(StopRule(min_repeats=1, max_repeats=10, budget_s=3.0), draws)[0] == 3


def test_relative_half_width_and_fixed():
    assert np.isnan(relative_half_width([1.0, 2.0]))
    assert relative_half_width([1.0] * 6) == 0.0
    r = fixed(4, warmup=0)
    assert r.min_repeats == r.max_repeats == 4 and r.warmup == 0
    with pytest.raises(InputError):
        StopRule(min_repeats=3, max_repeats=2)


def test_median_ci_equals_scipys_quantile_test_on_the_samples_themselves():
    """median_ci keeps the ranks of the interval per (n, confidence): it must give SciPy's interval on the
    samples as they come — unsorted, with ties, with open bounds — for every n it caches."""
    from scipy.stats import quantile_test

    rng = np.random.default_rng(7)
    for n in range(1, 60):
        for conf in (0.95, 0.9, 0.99):
            for x in (rng.random(n) * 3, rng.choice([0.5, 1.0, 1.0, 2.0], size=n), np.full(n, 0.25)):
                ci = quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(conf)
                np.testing.assert_equal(median_ci(list(x), conf), (ci.low, ci.high))
