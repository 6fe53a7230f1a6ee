"""The study's tables as the chapters read them (one load per notebook)."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..runs.layout import planned_ids
from ..runs.tidy import load_results, main_rows


@dataclass
class Study:
    results_dir: Path
    timings: pd.DataFrame  # every learned run (main, thread pass, scaling)
    main: pd.DataFrame  # the main measurements (no scaling runs)
    complexity: pd.DataFrame  # from the main runs with the most threads per platform
    memory: pd.DataFrame
    kernels: pd.DataFrame
    standard: pd.DataFrame
    runs: pd.DataFrame
    memory_all: pd.DataFrame  # every run's, the scaling runs' included
    #: the backend runs (BACKEND≠eager) with every table but samples, for the Deployment chapter only: the other
    #: tables above hold the eager runs (a backend run times eager beside it; that is not a main run)
    deployment: dict | None = None
    others: pd.DataFrame = None  # the runs table's rows of runs outside the plan (not compared; listed)
    #: makes :attr:`samples` (the eager runs' every repeat): read by the Scaling chapter and written as a download
    #: by the Assessment's, and the largest table — 5.9 s of each of the standard book's chapter notebooks on the AMD
    #: EPYC AVX-512 VM (7 Dec) when every chapter loaded it
    samples_of: object = field(default=None, repr=False)

    @functools.cached_property
    def samples(self) -> pd.DataFrame:
        """Every timed repeat of the planned eager runs (the ``samples`` table), made on first read."""
        return self.samples_of() if self.samples_of is not None else pd.DataFrame()

    @property
    def weights(self) -> str:
        from .style import weights_text

        return weights_text(self.main if not self.main.empty else self.timings)


@functools.lru_cache(maxsize=4)
def load(results_dir) -> Study:
    """Every table under ``results_dir``. Memory, operators and MACs come from the main runs with the
    most threads per platform: the 1-thread pass measures time only, and its memory would mix with the
    main run's."""
    d = Path(results_dir)
    if not d.exists():
        raise InputError(f"no results under {d}; run `make runs` first")
    t = {k: load_results(d, k) for k in ("timings", "complexity", "memory", "kernels", "standard", "runs")}
    # the chapters compare the runs `make runs`/`make book` planned here (a codecs file's included), not the
    # trials of `make run` beside them (other threads, qualities, images): those are listed as other runs
    planned = planned_ids(d)
    others = t["runs"].iloc[:0]
    if planned is not None and not t["runs"].empty:
        others = t["runs"][~t["runs"].request_id.isin(planned)]

    def planned_only(v: pd.DataFrame) -> pd.DataFrame:
        return v[v.request_id.isin(planned)] if planned is not None and "request_id" in v else v

    def eager_samples() -> pd.DataFrame:
        v = planned_only(load_results(d, "samples"))
        return v[v.run_backend == "eager"] if "run_backend" in v else v

    t = {k: planned_only(v) for k, v in t.items()}
    deployed = {k: v[v.run_backend != "eager"] for k, v in t.items() if "run_backend" in v}
    t.update({k: v[v.run_backend == "eager"] for k, v in t.items() if "run_backend" in v})
    # an item whose every repeat was contended has no time: its run page and the Runs index name it; the
    # chapters compare what was measured (a codec with no measured item drops out of the comparisons)
    if "stop" in t["timings"]:
        t["timings"] = t["timings"][t["timings"].stop != "contended"]
    timings = t["timings"]
    main = main_rows(timings) if not timings.empty else timings
    ids = set(main_rows(timings, all_threads=False).run_id) if not timings.empty else set()
    side = {}
    for k in ("complexity", "memory", "kernels"):
        side[k] = t[k][t[k].run_id.isin(ids)] if not t[k].empty else t[k]
    return Study(d, timings, main, side["complexity"], side["memory"], side["kernels"], t["standard"], t["runs"],
                 t["memory"], deployment=deployed, others=others, samples_of=eager_samples)


def others_note(study: Study) -> str:
    """One line naming the runs outside the plan (each has its run page; none is in this chapter's
    comparisons), or ''."""
    o = study.others
    if o is None or o.empty:
        return ""
    names = ", ".join(f"{r.label} ({r.platform})" for r in o.itertuples())
    return (f"\n\nNot compared here: {len(o)} other run(s) in the results folder that the profile did not plan "
            f"({names}); see their pages under Runs.")


def lowest_quality(df: pd.DataFrame) -> pd.DataFrame:
    """Each codec at the lowest quality measured (the paper's and the chapters' common ground)."""
    if df.empty:
        return df
    return df[df.quality == df.groupby("codec").quality.transform("min")]
