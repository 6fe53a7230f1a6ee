"""Comparing codec rankings between sources or platforms: Kendall τ and the pairs whose order flips
(used by the paper comparison and the FLOPs-versus-runtime chapters)."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd


def column_pairs(t: pd.DataFrame, column: str, values: str):
    """Per direction, every pair (a, b) of ``column``'s values, with the codecs both have:
    yields (direction, a, b, frame with one row per codec and columns a, b)."""
    for d, g in t.groupby("direction", sort=False):
        w = g.pivot_table(index="codec", columns=column, values=values)
        cols = list(w.columns)
        for i, a in enumerate(cols):
            for b in cols[i + 1:]:
                yield d, a, b, w[[a, b]].dropna()


def kendall(t: pd.DataFrame, column: str = "source", values: str = "seconds") -> pd.DataFrame:
    """Kendall τ (SciPy's, with its p-value) between every pair of ``column``'s codec orderings, per
    direction, over the codecs both have (at least 3)."""
    from scipy.stats import kendalltau

    out = []
    for d, a, b, both in column_pairs(t, column, values):
        if len(both) >= 3:
            tau, p = kendalltau(both[a], both[b])
            out.append({"direction": d, "a": a, "b": b, "codecs": len(both), "tau": float(tau), "p_value": float(p)})
    return pd.DataFrame(out, columns=["direction", "a", "b", "codecs", "tau", "p_value"])


def inversions(t: pd.DataFrame, column: str, values: str) -> pd.DataFrame:
    """Pairs of codecs whose order by ``values`` flips between two of ``column``'s values."""
    rows = []
    for d, a, b, both in column_pairs(t, column, values):
        for c1, c2 in combinations(both.index, 2):
            s1 = np.sign(both.loc[c1, a] - both.loc[c2, a])
            s2 = np.sign(both.loc[c1, b] - both.loc[c2, b])
            if s1 * s2 < 0:
                rows.append({"direction": d, "a": a, "b": b, "lower_on_a": c1 if s1 < 0 else c2,
                             "lower_on_b": c1 if s2 < 0 else c2, "pair": " vs ".join(sorted((c1, c2)))})
    return pd.DataFrame(rows, columns=["direction", "a", "b", "lower_on_a", "lower_on_b", "pair"])
