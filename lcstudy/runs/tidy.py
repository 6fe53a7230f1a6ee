"""The tidy tables, rebuilt from the run folders (:mod:`lcstudy.runs.layout`).

One tidy table per kind of quantity is the source of everything: every xlsx, CSV and figure
of the book is derived from these. Columns (every table also carries the run's provenance:
``host`` (the results folder), ``platform``, ``device``, ``codec``, ``quality``, ``label``,
``run_id``, ``weights``, ``weights_label``, ``threads``, ``crop``, ``resize`` (the item's, where a run
measured several sizes), ``item`` (timings, samples, memory: the item's key, ``kodim01@1920x1080``), ``profile``,
``cpu_model``, ``gpu_name``, versions, ``peak_matmul_gflops``, ``run_backend`` (how the run deployed the
transforms; ``eager`` for every result made before the backend axis) and ``backend`` (the row's own: a backend
run also times ``eager`` beside it, side by side; timings add ``identical_bitstream`` and ``prime_seconds``)):

============= =====================================================================================
table          one row per … and its own columns
============= =====================================================================================
timings        run × image × direction × stage: ``node`` (who measured the image), ``height``,
               ``width``, ``stage``, ``stage_kind`` (partition / sub / aggregate), ``measured`` (clocked, or
               derived: misc, \\*/other, network), ``seconds`` (median of the uncontended repeats),
               ``iqr_seconds`` (blank with one sample), ``ci_low``/``ci_high`` (95 % interval of
               the median, blank below 6 samples: the noise within the run), ``ci_run_low``/``ci_run_high``
               (the 95 % interval across runs: within-run widened by the platform's between-run component
               ``drift_sd``, :mod:`lcstudy.core.drift`; ``drift_source``: measured on the rows a
               reproducibility check reran, ``reruns``, or on the reference probes, ``reference``),
               ``n_samples``, ``n_contended``, ``noisy``,
               ``stop`` (why the repeats stopped), ``bpp``, ``psnr``, ``ms_ssim``, ``nbytes``,
               ``energy_j``/``energy_j_per_mp`` (``total`` rows: median joules of the uncontended calls,
               where the platform exposes a counter — :mod:`lcstudy.core.energy`; blank elsewhere)
samples        run × image × repeat × direction × stage: ``stage_kind``, ``seconds``, ``contended``,
               ``other_cpu_s`` (the rest of the machine's CPU seconds during the call), ``energy_j``
memory         run × image × repeat × direction × memory (cpu_rss, cuda_allocated, cuda_reserved):
               ``baseline_mb``, ``peak_mb``, ``working_mb``, ``method``
kernels        run × direction × ``op_kind`` (cpu_op, cuda_kernel) × op: ``category``, ``self_seconds``,
               ``calls``, ``share``
complexity     run × direction × stage: ``stage_kind``, ``macs``, ``flops_torch``, ``params``, ``kmac_per_px``,
               ``gmac``, ``mac_vs_torch``, ``count_mode``, ``uncounted``
standard       standard run × codec × value × image × direction: ``knob``, ``value``, ``seconds``,
               … as timings (stage is always ``total``), ``options``, ``threading``
runs           run: ``run_kind``, ``items``, ``complete``, ``notebook_seconds``, ``wall_seconds``, ``codec_seconds``,
               ``contended_share``, ``nodes``, ``phase_seconds_*``, ``notebook``,
               ``ref_seconds`` (the reference workload's median), ``ref_drift`` (its slowest probe over
               its fastest), ``ref_probes``, ``ref_platform_seconds``, ``ref_ratio`` (to the platform's
               median), ``ref_flag`` (why the reference is flagged; empty when not), ``drift_sd``, ``drift_source``
============= =====================================================================================

"The stages add up to the total" is one filter: ``stage_kind == "partition"`` rows of a direction
sum to its ``stage == "total"`` row, per repeat (in ``samples``).

**One name per concept.** The files of a run call three different things ``kind``, each clear in its own
file: a stage row's (a sample in ``items/*.json``, a row of ``complexity.csv``), an operator's
(``kernels.csv``) and the run's (``run.json``, :class:`lcstudy.runs.layout.RunKind`). A table joins
them with the run's provenance, so here each has its own name (:data:`KIND_COLUMN`): ``stage_kind``,
``op_kind``, ``run_kind``. The files keep their key, so results measured before the rename read as
they are, under the same schema and run ids (a renamed column changes no measurement).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..core import drift
from ..core.stats import Measurement
from . import layout
from .params import STORED_BEFORE_SPLIT

#: the name each table gives what the run's files call ``kind`` (module docstring: one name per concept)
KIND_COLUMN = {"timings": "stage_kind", "samples": "stage_kind", "standard": "stage_kind",
               "complexity": "stage_kind", "kernels": "op_kind", "runs": "run_kind"}

#: the tables of one run; ``decodability`` (the cross-decodes of every run's bitstreams) is the results folder's
RUN_TABLES = ("timings", "samples", "memory", "kernels", "complexity", "standard", "runs")
TABLES = RUN_TABLES + ("decodability",)
_ENV = ("cpu_model", "cpu_count", "gpu_name", "torch_version", "cuda_version", "compressai_version",
        "python_version", "lcstudy_version", "git_commit", "time_utc", "cpu_flags", "energy")


def base_columns(run: layout.Run) -> dict:
    m = run.meta
    # a standard run's request holds no quality, weights or seed since the split into one type per kind; its rows
    # carry the values its stored request held before (RERUN_KEYS group on them: a blank would drop the rows)
    req, env = {**STORED_BEFORE_SPLIT, **m["request"]}, m["environ"]
    peak = m.get("peak", {})
    return {"host": run.host, "platform": env.get("platform", ""), "device": run.device.split(":")[0],
            "device_name": run.device,
            "codec": req.get("codec") if run.kind == layout.RunKind.LEARNED else "standard", "quality": req.get("quality"),
            "label": m.get("label"), "run_id": m["run_id"], "request_id": m.get("request_id"),
            "weights": req.get("weights"), "weights_label": env.get("weights_label", ""),
            "seed": req.get("seed"), "threads": env.get("threads"), "crop": req.get("crop"),
            "resize": req.get("resize"), "profile": req.get("profile"),
            **{k: env.get(k) for k in _ENV}, "peak_matmul_gflops": peak.get("peak_matmul_gflops"),
            "load_seconds": env.get("load_seconds"),
            # the run's backend (results from before the backend axis: eager); ``backend`` is each row's own
            # (a backend run also times eager beside it)
            "run_backend": req.get("backend") or "eager", "backend": req.get("backend") or "eager",
            **deployment_columns(env.get("deployment"))}


#: a MAC phase (old runs: with the count made in the warm-up, ``phase_seconds["macs"]``) shorter than this read its
#: table from the cache: counting imports torch._dynamo alone in ~0.9 s, reading the CSV takes milliseconds
MAC_CACHE_READ_S = 0.25


def mac_imports_resident(meta: dict, recs: list[dict]) -> bool:
    """Whether a run's memory readings were made with the MAC counters' imports (torch._dynamo, sympy; ~150 MB)
    resident: runs measured by lcstudy before commit a775b1c (7 Dec 2026) that counted MACs in the warm-up of
    their first item. The old code marked that warm-up ``"captured"`` in the item's record (which a resume keeps,
    unlike run.json's ``capture``), and added the count's seconds to the ``macs`` phase. Not marked: a run whose
    MACs came from the cache (the capture coding imported nothing, nothing was counted), one whose first warm-up
    was skipped (it counted after its items, as every run does now), and every run since."""
    first = (meta.get("items") or [None])[0]
    captured = any(r.get("item") == first and (r.get("warmup") or {}).get("captured") for r in recs)
    return bool(captured and (meta.get("phase_seconds") or {}).get("macs", 0.0) > MAC_CACHE_READ_S)


def deployment_columns(dep: dict | None) -> dict:
    """A backend run's deployment (:meth:`lcstudy.core.backends.Deployment.as_dict`) as columns: its one-off
    setup (export, calibration, conversion), the model's bytes at its precision and eager's, the layers
    the quantizer left fp32. Eager runs have none."""
    if not dep:
        return {}
    return {"setup_seconds": sum(dep.get("setup_seconds", {}).values()), "model_bytes": dep.get("model_bytes"),
            "eager_model_bytes": dep.get("eager_model_bytes"), "precision": dep.get("precision"),
            "kept_fp32": ", ".join(dep.get("kept_fp32", [])), "deployed_modules": ", ".join(dep.get("modules", [])),
            "max_rel_diff": max(dep.get("max_abs_diff", {}).values(), default=None)}


def _energy_by_call(rec: dict, backend: str) -> dict:
    """Joules per (repeat, backend, direction) of an item. Energy is read around the whole call of a direction: it
    belongs to its "total" row only (a backend run reads eager's calls, timed beside its own, under
    "eager:<direction>")."""
    return {(r["repeat"], *(d.split(":", 1) if ":" in d else (backend, d))): v["energy_j"]
            for r in rec.get("repeats", []) for d, v in r.items()
            if isinstance(v, dict) and v.get("energy_j") is not None}


def _samples_frame(rec: dict, backend: str = "eager") -> pd.DataFrame:
    s = pd.DataFrame(rec["samples"]).rename(columns={"kind": KIND_COLUMN["samples"]})
    if "backend" not in s.columns:
        s["backend"] = backend
    cont = {r["repeat"]: bool(r.get("contended")) for r in rec.get("repeats", [])}
    other = {r["repeat"]: sum(v.get("other_cpu_s", 0.0) for k, v in r.items() if isinstance(v, dict))
             for r in rec.get("repeats", [])}
    s["contended"] = s["repeat"].map(cont).fillna(False).astype(bool)
    s["other_cpu_s"] = s["repeat"].map(other)
    energy = _energy_by_call(rec, backend)
    s["energy_j"] = [energy.get((r, b, d), math.nan) if st == "total" else math.nan
                     for r, b, d, st in zip(s["repeat"], s["backend"], s["direction"], s["stage"])]
    return s


def _item_base(rec: dict, base: dict) -> dict:
    """The run's columns, with the item's own: its key and — in a run of several sizes — its crop/resize."""
    own = {k: rec[k] for k in ("crop", "resize") if k in rec}
    return {**base, **own, "item": rec.get("item", rec.get("image"))}


def _item_rows(rec: dict, base: dict, standard: bool) -> list[dict]:
    """One row per backend × direction × stage of an item: its median and intervals over the uncontended
    repeats. Read from the record's columns in plain Python, not through a frame per item (as the ``samples``
    table is): a DataFrame and a groupby per item were 2.2 s of the standard codecs' run page (864 items) and
    most of the 5.3 s of reading the standard book's timings for each chapter (AMD EPYC AVX-512 VM, 7 Dec);
    the rows are the same to the bit (tests/test_results.py keeps the frame-based computation as the known
    answer)."""
    smp, own_backend = rec["samples"], base["run_backend"]
    n = len(smp["repeat"])
    backends = smp["backend"] if "backend" in smp else [own_backend] * n
    cont = {r["repeat"]: bool(r.get("contended")) for r in rec.get("repeats", [])}
    contended = [cont.get(r, False) for r in smp["repeat"]]
    kinds = smp["kind"] if "kind" in smp else smp.get("stage_kind", [None] * n)
    energy = _energy_by_call(rec, own_backend)
    groups: dict[tuple, list[int]] = {}  # in the order of their first sample, as groupby(sort=False)
    for i, key in enumerate(zip(backends, smp["direction"], smp["stage"])):
        if not any(k is None or (isinstance(k, float) and math.isnan(k)) for k in key):  # as groupby's dropna
            groups.setdefault(key, []).append(i)
    base = _item_base(rec, base)
    rows = []
    extra = ({"codec": rec["codec"], "knob": rec["knob"], "value": rec["value"], "options": str(rec.get("options")),
              "threading": rec.get("threading")} if standard else {})
    deployed = {"identical_bitstream": rec.get("identical_bitstream"), "prime_seconds": rec.get("prime_seconds")}
    nan = math.nan
    for (backend, direction, stage), idx in groups.items():
        ok = [i for i in idx if not contended[i]]
        secs = [nan if smp["seconds"][i] is None else float(smp["seconds"][i]) for i in ok]
        own = (rec.get("by_backend") or {}).get(backend, rec)  # this backend's rate and quality
        m = Measurement(secs)  # every repeat contended: blank (the next run measures it again)
        lo, hi = m.ci()
        # the interval across runs starts from the within-run one (the repeats' range where that is blank);
        # :func:`_across_runs` widens it by the platform's between-run component
        run_lo, run_hi = drift.widen(m.median, lo, hi, 0.0, secs)
        joules = [j for j in (energy.get((smp["repeat"][i], backend, direction), nan) if stage == "total" else nan
                              for i in ok) if j is not None and not math.isnan(j)]
        rows.append({**base, **extra, "image": rec["image"], "node": rec.get("node"), "height": rec["height"],
                     "width": rec["width"], "direction": direction, "stage": stage,
                     "stage_kind": kinds[idx[0]],
                     "measured": bool(smp["measured"][idx[0]]), "seconds": m.median,
                     "iqr_seconds": m.iqr,
                     "ci_low": lo, "ci_high": hi, "ci_run_low": run_lo, "ci_run_high": run_hi, "n_samples": len(ok),
                     "n_contended": len(idx) - len(ok),
                     "noisy": m.noisy, "stop": rec.get("stop"), "bpp": own.get("bpp"), "psnr": own.get("psnr"),
                     "ms_ssim": own.get("ms_ssim"), "nbytes": own.get("nbytes"), "backend": backend, **deployed,
                     "warmup_codings": (rec.get("warmup") or {}).get("codings"),
                     "energy_j": float(np.median(joules)) if joules else nan,
                     "energy_j_per_mp": (float(np.median(joules)) / (rec["height"] * rec["width"] / 1e6)
                                         if joules else nan)})
    return rows


def _prefixed(t: pd.DataFrame, cols: dict) -> pd.DataFrame:
    """``t`` after the constant columns ``cols`` (in their order) that it does not have: one concatenation, not
    a DataFrame.insert per column (each copies the frame's blocks: 2 s of the quick book's tables on the
    2-core VM)."""
    add = {k: v for k, v in cols.items() if k not in t.columns}
    if not add:
        return t
    return pd.concat([pd.DataFrame(add, index=t.index), t], axis=1)


class RunTables(Mapping):
    """Every table of one run (:data:`RUN_TABLES`), each made the first time it is read. Why: a run page reads
    four or five of the seven, and the one no page reads, ``samples``, took 2.5 s of the 6.2 s its notebook
    spent outside the measurement for the standard codecs' run of 864 items (AMD EPYC AVX-512 VM, 7 Dec); a
    caller that iterates gets every table, as before."""

    def __init__(self, run: layout.Run):
        self._run, self._made = run, {}

    def __getitem__(self, table: str) -> pd.DataFrame:
        if table not in RUN_TABLES:
            raise KeyError(table)
        if table not in self._made:
            self._made[table] = _table([self._run], table)
        return self._made[table]

    def __contains__(self, table) -> bool:  # without making it
        return table in RUN_TABLES

    def __iter__(self):
        return iter(RUN_TABLES)

    def __len__(self) -> int:
        return len(RUN_TABLES)


def run_tables(run: layout.Run) -> RunTables:
    """Every table of one run, each made when first read (:class:`RunTables`)."""
    return RunTables(run)


def _table(runs: list[layout.Run], table: str, checked: list[layout.Run] = ()) -> pd.DataFrame:
    frames = []
    for run in runs:
        base = base_columns(run)
        if table == "runs":
            frames.append(pd.DataFrame([_run_row(run, base)]))
            continue
        if table in ("kernels", "complexity"):
            f = layout.table_file(run.path, table)
            if f.exists() and run.kind == layout.RunKind.LEARNED:
                t = pd.read_csv(f, keep_default_na=False, na_values=[""]).rename(columns={"kind": KIND_COLUMN[table]})
                frames.append(_prefixed(t, base))
            continue
        if (table == "standard") != (run.kind == layout.RunKind.STANDARD):
            if table != "samples":
                continue
        recs = run.items()
        if table in ("timings", "standard"):
            rows = [r for rec in recs for r in _item_rows(rec, base, run.kind == layout.RunKind.STANDARD)]
            frames.append(pd.DataFrame(rows))
        elif table == "samples":
            for rec in recs:
                s = _samples_frame(rec, base["run_backend"])
                own = ({"item_codec": rec["codec"], "value": rec["value"]} if run.kind == layout.RunKind.STANDARD
                       else {})
                frames.append(_prefixed(s, {**_item_base(rec, base), **own, "image": rec["image"],
                                            "node": rec.get("node")}))
        elif table == "memory":
            rows = []
            resident = mac_imports_resident(run.meta, recs)
            for rec in recs:
                for rep in rec.get("repeats", []):
                    for key, read in rep.items():  # "encode", "decode"; "eager:encode" beside a backend
                        if not isinstance(read, dict):
                            continue
                        backend, _, direction = key.rpartition(":")
                        for m in read.get("memory", []):
                            rows.append({**_item_base(rec, base), "image": rec["image"], "node": rec.get("node"),
                                         "height": rec["height"], "width": rec["width"], "repeat": rep["repeat"],
                                         "contended": rep.get("contended"), "direction": direction, **m,
                                         "working_mb": m["peak_mb"] - m["baseline_mb"],
                                         "backend": backend or base["run_backend"],
                                         "mac_imports_resident": resident})
            frames.append(pd.DataFrame(rows))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    if table in ("timings", "standard", "runs"):
        out = _across_runs(out, runs, table, checked)
    return out


#: what identifies a row across a run and its rerun in a reproducibility check
RERUN_KEYS = ["label", "codec", "quality", "weights", "seed", "device", "threads", "run_backend", "backend", "crop",
              "resize", "image", "direction", "stage"]


def _timing_rows(runs: list[layout.Run]) -> pd.DataFrame:
    """The measured, uncontended stage rows of the learned runs, before anything across runs."""
    rows = [r for run in runs if run.kind == layout.RunKind.LEARNED for rec in run.items()
            for r in _item_rows(rec, base_columns(run), False)]
    d = pd.DataFrame(rows)
    return d[d.measured.astype(bool) & d.seconds.notna()] if not d.empty else d


def match_reruns(old: pd.DataFrame, new: pd.DataFrame, name: str = "rerun_seconds") -> pd.DataFrame:
    """The rows of ``old`` that ``new`` (a reproducibility check's timing rows) measured again, with the rerun's
    median as column ``name``: the one matching of a rerun to its original, on :data:`RERUN_KEYS` (both the
    tables' between-run component and ``make reproducibility``'s coverage use it)."""
    keys = [k for k in RERUN_KEYS if k in old.columns and k in new.columns]
    return old.merge(new[keys + ["seconds"]].rename(columns={"seconds": name}), on=keys, how="inner")


def rerun_by_platform(runs: list[layout.Run], checked: list[layout.Run], rows: pd.DataFrame | None = None) -> dict:
    """(platform, device) → (between-run component measured on the rows the checks ``checked`` reran,
    :func:`lcstudy.core.drift.rerun_spread`; how many rows). ``rows``: the study's timing rows, if at hand."""
    if not checked:
        return {}
    new = _timing_rows(list(checked))
    old = _timing_rows(runs) if rows is None else rows[rows.measured.astype(bool) & rows.seconds.notna()]
    if new.empty or old.empty:
        return {}
    m = match_reruns(old, new)
    out = {}
    for key, g in m.groupby(["platform", "device"]):
        out[key] = (drift.rerun_spread((g.rerun_seconds / g.seconds).tolist()), len(g))
    return out


class PlatformReference(NamedTuple):
    """What a platform's runs say about its speed between moments (:func:`reference_by_platform`)."""

    median: float  # the median reference seconds over its runs
    sd: float  # the between-run component that widens its intervals
    source: str  # where ``sd`` comes from: "reruns" or "reference"
    noise: float  # the probes' usual noise, which sets the flags' bounds (drift.noise_spread)


def reference_by_platform(runs: list[layout.Run], checked: list[layout.Run] = (), rows: pd.DataFrame | None = None
                          ) -> dict:
    """(platform, device) → :class:`PlatformReference`. The component is measured on the codecs' own rows where the
    reproducibility checks ``checked`` reran at least :data:`~lcstudy.core.drift.MIN_RERUN_ROWS` of them
    (``"reruns"``, :func:`rerun_by_platform`), else it is the between-moment spread of the platform's probes
    and the checks' (``"reference"``, :func:`lcstudy.core.drift.platform_spread`)."""
    probes: dict = {}
    n_own: dict = {}
    for i, run in enumerate(list(runs) + list(checked)):
        b = base_columns(run)
        key = (b["platform"], b["device"])
        probes.setdefault(key, []).append(drift.probes_of(run.meta.get("reference")))
        n_own[key] = n_own.get(key, 0) + (i < len(runs))
    out = {}
    for key, sets in probes.items():
        refs = [drift.run_summary(p)["ref_seconds"] for p in sets[:n_own[key]]]  # the study's runs: in order first
        refs = [r for r in refs if not math.isnan(r)]
        out[key] = PlatformReference(float(np.median(refs)) if refs else math.nan, drift.platform_spread(sets),
                                     "reference", drift.noise_spread(sets))
    for key, (sd, n) in rerun_by_platform(runs, checked, rows).items():
        if key in out and n >= drift.MIN_RERUN_ROWS and not math.isnan(sd):
            out[key] = out[key]._replace(sd=sd, source="reruns")
    return out


def _across_runs(df: pd.DataFrame, runs: list[layout.Run], table: str, checked=()) -> pd.DataFrame:
    """What depends on the platform's other runs: in ``runs``, each run's reference against its platform's
    median and its flag; in ``timings``/``standard``, each median's interval across runs
    (``ci_run_low``/``ci_run_high``: the within-run one widened by the platform's between-run component,
    :func:`lcstudy.core.drift.widen`) and that component (``drift_sd``)."""
    plat = reference_by_platform(runs, checked, df if table == "timings" else None)
    keys = list(zip(df["platform"], df["device"]))
    none = PlatformReference(math.nan, 0.0, "", 0.0)
    ref = [plat.get(k, none) for k in keys]
    sd = [p.sd for p in ref]
    df = df.assign(drift_sd=sd, drift_source=[p.source for p in ref])
    if table == "runs":
        df["ref_platform_seconds"] = [p.median for p in ref]
        df["ref_ratio"] = df.ref_seconds / df.ref_platform_seconds
        # the platform's usual noise sets the flags' bounds
        df["ref_flag"] = [drift.flag(d, r, p.noise, n) for d, r, p, n in zip(df.ref_drift, df.ref_ratio, ref,
                                                                              df.ref_probes)]
        return df
    lo_hi = [drift.widen(m, lo, hi, s) for m, lo, hi, s in zip(df.seconds, df.ci_run_low, df.ci_run_high, sd)]
    df["ci_run_low"] = [a for a, _ in lo_hi]
    df["ci_run_high"] = [b for _, b in lo_hi]
    return df


def _wall(executions: list, item_walls: float, phases: dict) -> float:
    recorded = sum(e.get("wall_seconds", 0.0) for e in executions)
    if any("wall_seconds" not in e for e in executions):
        return max(recorded, item_walls + sum(phases.values()))
    return recorded or math.nan


def _run_row(run: layout.Run, base: dict) -> dict:
    recs = run.items()
    codec_s = wall = 0.0
    n_rep = n_cont = 0
    for rec in recs:
        s = rec["samples"]
        codec_s += sum(sec for st, sec in zip(s["stage"], s["seconds"]) if st == "total")
        wall += rec.get("wall_seconds", math.nan)
        n_rep += len(rec.get("repeats", []))
        n_cont += sum(1 for r in rec.get("repeats", []) if r.get("contended"))
    m = run.meta
    ex = m.get("executions", [])
    row = {**base, "run_kind": run.kind, "items": len(recs), "items_planned": len(m.get("items", [])),
           "complete": run.complete,
           # measurement wall time of all executions, pauses (make pause) left out; an execution killed
           # before it finished (kill -9, a node lost) recorded none: the run's wall is then at least its
           # items' walls plus its phases, and that lower bound is used
           "wall_seconds": _wall(ex, wall, m.get("phase_seconds", {})),
           "interrupted_executions": sum(1 for e in ex if "wall_seconds" not in e),
           # the notebooks' wall (kernel start, imports, codec loading, measurement, run page), written by
           # the pipeline after each notebook; NaN when one execution has none (run outside the pipeline,
           # or interrupted)
           "notebook_seconds": sum(e["notebook_seconds"] for e in ex) if ex and all(
               "notebook_seconds" in e for e in ex) else math.nan,
           "item_wall_seconds": wall, "codec_seconds": codec_s, "repeats": n_rep, "contended": n_cont,
           "contended_share": n_cont / n_rep if n_rep else math.nan,
           "nodes": ", ".join(sorted({r.get("node", "") for r in recs})),
           "slurm_jobs": ", ".join(sorted({e.get("slurm_job", "") for e in ex if e.get("slurm_job")})),
           "started_utc": ex[0]["started_utc"] if ex else "", "finished_utc": ex[-1].get("finished_utc", "") if ex
           else "", "stops": ", ".join(f"{k} {v}" for k, v in pd.Series([r.get("stop") for r in recs]).value_counts()
                                       .items()),
           "notebook": str(run.notebook) if run.notebook.exists() else "",
           "rule": str(m.get("request", {}).get("rule", {})),
           **drift.run_summary(drift.probes_of(m.get("reference")))}
    for k, v in m.get("phase_seconds", {}).items():
        row[f"phase_seconds_{k}"] = v
    return row


def load_results(results_dir, table: str = "timings", checks_before: str | None = None) -> pd.DataFrame:
    """All runs under ``results_dir`` (every host and device) as one tidy table (see the module
    docstring for the tables and their columns). The reference probes of its reproducibility checks
    (:func:`lcstudy.runs.layout.checks`; those before ``checks_before``) count in the platform's
    between-run spread: they are the same machine at other moments."""
    if table not in TABLES:
        from ..errors import InputError

        raise InputError(f"unknown table {table!r}; valid: {', '.join(TABLES)}")
    if table == "decodability":  # the cross-decodes live apart from the runs (:mod:`lcstudy.runs.decodability`)
        from .decodability import table as decodes

        return decodes(results_dir)
    return _table(layout.runs(results_dir), table, layout.checks(results_dir, checks_before))


def main_rows(df: pd.DataFrame, all_threads: bool = True) -> pd.DataFrame:
    """The study's main measurements: the images at their own size — or, where a profile crops
    (``quick``), its common crop — not the resolution-scaling runs (synthetic sizes, 512² crops).

    ``all_threads=False`` keeps, per host and device, only the runs with the most threads (the
    1-thread pass of the FLOPs-vs-runtime chapter is a second platform, not a second sample).
    """
    if df.empty:
        return df
    if "run_backend" in df.columns:  # the backend runs feed the Deployment chapter only
        df = df[df.run_backend == "eager"]
    d = df[df["resize"].isna()] if "resize" in df.columns else df
    if d.crop.isna().any():
        d = d[d.crop.isna()]
    elif not d.empty:
        d = d[d.crop == d.crop.mode().iloc[0]]
    if not all_threads and not d.empty:
        top = d.groupby(["host", "device"]).threads.transform("max")
        d = d[d.threads == top]
    return d


def per_image(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One value per (keys, image): the median over the runs that measured the image (several
    nodes or copies of one platform's run count once per image)."""
    return df.groupby(keys + ["image"], as_index=False, dropna=False).agg(seconds=("seconds", "median"))


def nan_to_none(x):
    return None if isinstance(x, float) and np.isnan(x) else x
