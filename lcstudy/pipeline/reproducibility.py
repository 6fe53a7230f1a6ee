"""``make reproducibility``: do the stated intervals cover a rerun?

A median's interval is a promise about what the same measurement gives when it is made again. This
check makes it again: it reruns a sample of the learned-codec runs already in a results folder, each
with its stored request (same codec, weights, images, crop, threads, stopping rule; no operator
profile or MAC count), in **fresh processes**, **interleaved** (each run's items split in ``split``
chunks; chunk 1 of every run, then chunk 2 of every run, …: asv's way of letting a slow spell of the
machine hit every run a little rather than one run whole), all **under the machine lock** (held here
and handed to each child as ``make run`` hands it to a notebook). The reruns are written apart, under
``<results>/.reproducibility/<UTC time>/`` — never into the study's tables (:func:`lcstudy.runs.layout.runs`
does not look that deep). Their reference probes are moments of the same machine, though: later loads of
the results count them in the platform's between-run spread (:func:`lcstudy.runs.layout.checks`), so each
check sharpens the intervals the next one tests — but never the ones it tests itself.

Then, per row (run × image × direction × clocked stage), whether the rerun's median lies within the
interval the study states for the original — the within-run one (``ci_low``/``ci_high``) and the one
across runs (``ci_run_low``/``ci_run_high``, :mod:`lcstudy.core.drift`) — the coverage over all rows,
the median stated half-width before and after widening, and the reference workload of each original
run and its rerun. The summary is saved beside the reruns (``check.json``, ``rows.csv``) and as
``<results>/.reproducibility/last.json``, which the methodology chapter shows.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..runs.layout import CHECKS, check_dirs
from ..runs.params import RunRequest
from ..runs.tidy import RERUN_KEYS

FOLDER = CHECKS
LAST = "last.json"
#: what identifies a row across the original and its rerun (the tables' own matching of reruns uses it too)
KEYS = RERUN_KEYS


def select(results_dir, codecs: list[str] | None, sample: int | None) -> list:
    """The complete learned runs to rerun: of ``codecs`` (labels as the tables name them) if given, at most
    ``sample`` of them, evenly spread over the runs in label order."""
    from ..runs import layout

    runs = [r for r in layout.runs(results_dir, kind=layout.RunKind.LEARNED) if r.complete]
    if codecs:
        want = {c.upper() for c in codecs}
        # a codec as the profiles name it ("HP"), or a user's class by its path or its name ("pkg.mod:Name", "Name")
        runs = [r for r in runs if {str(r.meta["request"].get("codec", "")).upper(),
                                    str(r.meta["request"].get("codec", "")).rsplit(":", 1)[-1].upper()} & want]
    if not runs:
        raise InputError(f"no complete learned-codec run{' of ' + ' '.join(codecs) if codecs else ''} in "
                         f"{results_dir} to rerun: `make runs` (or `make run CODEC=…`) first, or name other CODECS")
    runs.sort(key=lambda r: (r.meta.get("label", ""), r.meta["run_id"]))
    if sample and sample < len(runs):
        runs = [runs[int(i)] for i in np.linspace(0, len(runs) - 1, sample).round()]
    return runs


def plan(runs: list, limit: int | None, split: int) -> list[tuple[object, tuple]]:
    """(run, images of one chunk) in interleaved order: every run's first chunk, then every run's second, …"""
    chunks = []
    for r in runs:
        imgs = RunRequest.from_dict(r.meta["request"]).images[:limit]  # limit None: every image
        n = max(1, min(split, len(imgs)))
        chunks.append([tuple(c) for c in np.array_split(np.array(imgs, dtype=object), n)])
    out = []
    for k in range(max(len(c) for c in chunks)):
        for r, c in zip(runs, chunks):
            if k < len(c):
                out.append((r, tuple(c[k])))
    return out


def _child(request_file: str) -> int:
    """In a fresh process: measure the request written to ``request_file`` (the lock is the parent's)."""
    from ..runs.learned import run_request

    req = RunRequest.from_dict(json.loads(Path(request_file).read_text()))
    run_request(req, log=lambda s: print(s, flush=True), progress=False)
    return 0


def rerun(results_dir, codecs=None, limit=None, sample=None, split: int = 2, log=print) -> Path:
    """Rerun the selected runs (see the module docstring); return the check's folder."""
    import secrets

    from ..runs.lock import TOKEN_ENV, timing_lock
    from ..runs.params import request_dict
    from ..runs.store import atomic_write_json

    if split < 1 or (limit is not None and limit < 1) or (sample is not None and sample < 1):
        raise InputError("SPLIT, LIMIT and SAMPLE must be 1 or more")
    runs = select(results_dir, codecs, sample)
    todo = plan(runs, limit, split)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(results_dir) / FOLDER / stamp
    out.mkdir(parents=True, exist_ok=False)
    log(f"reproducibility: rerunning {len(runs)} run(s) in {len(todo)} fresh process(es), interleaved, "
        f"into {out}")
    origin: dict[str, str] = {}  # each rerun's request → the run it reruns
    token = secrets.token_hex(8)
    env = {**os.environ, TOKEN_ENV: token, "LCSTUDY_NOWAIT": "1"}
    with timing_lock(f"make reproducibility (pid {os.getpid()})", wait=not os.environ.get("LCSTUDY_NOWAIT"),
                     log=log, token=token):
        for i, (run, imgs) in enumerate(todo, 1):
            req = RunRequest.from_dict(run.meta["request"])
            # timings only: no side phase, and no stream fingerprinted (no decodability phase reads a rerun's)
            req = replace(req, images=imgs, results_dir=str(out), kernels=False, macs=False,
                          **({"fingerprints": 0} if hasattr(req, "fingerprints") else {}))
            origin[req.request_id] = run.meta["run_id"]
            f = out / f".request-{i}.json"
            atomic_write_json(f, request_dict(req))
            log(f"[{i}/{len(todo)}] {req.label}: {', '.join(im.name for im in imgs)}")
            rc = subprocess.run([sys.executable, "-m", "lcstudy.pipeline.reproducibility", "--child", str(f)],
                                env=env).returncode
            f.unlink()
            if rc:
                raise RuntimeError(f"the rerun of {req.label} failed (exit status {rc}); see above")
    atomic_write_json(out / "selected.json", {"results_dir": str(Path(results_dir).resolve()),
                                              "runs": [r.meta["run_id"] for r in runs], "limit": limit,
                                              "split": split, "origin": origin})
    return out


def compare(results_dir, out: Path) -> tuple[pd.DataFrame, dict]:
    """(per-row table, summary) of the reruns in ``out`` against the study's stated intervals."""
    from ..runs.tidy import load_results, match_reruns

    sel = json.loads((out / "selected.json").read_text())
    old = load_results(results_dir, "timings", checks_before=out.name)  # as stated before this check
    old = old[old.run_id.isin(sel["runs"]) & old.measured.astype(bool)]
    new = load_results(out, "timings")
    new = new[new.measured.astype(bool)]
    m = match_reruns(old, new, "new_seconds")
    if m.empty:
        raise InputError(f"the reruns in {out} match no row of {results_dir}")
    blank = int(m.new_seconds.isna().sum())  # every repeat of the rerun contended: nothing to compare
    m = m[m.new_seconds.notna()]
    if m.empty:
        raise InputError(f"every repeat of every rerun in {out} was contended by other processes: run the check again "
                         "when the machine is quiet")
    m["ratio"] = m.new_seconds / m.seconds
    m["in_ci"] = [None if math.isnan(lo) else bool(lo <= x <= hi) for x, lo, hi in zip(m.new_seconds, m.ci_low,
                                                                                        m.ci_high)]
    m["in_ci_run"] = (m.new_seconds >= m.ci_run_low) & (m.new_seconds <= m.ci_run_high)
    m["half_pct"] = 100 * (m.ci_high - m.ci_low) / 2 / m.seconds
    m["run_half_pct"] = 100 * (m.ci_run_high - m.ci_run_low) / 2 / m.seconds
    with_ci = m[m.in_ci.notna()]
    runs_old = load_results(results_dir, "runs", checks_before=out.name).set_index("run_id")
    # the checks whose reruns calibrated the intervals this one tests (never itself)
    earlier = [d.name for d in check_dirs(results_dir, before=out.name)]
    runs_new = load_results(out, "runs")
    refs = []
    for rid in sel["runs"]:
        o = runs_old.loc[rid]
        n = runs_new[runs_new.request_id.map(sel.get("origin", {})) == rid]
        refs.append({"label": o.label, "run_id": rid, "ref_seconds": o.ref_seconds, "ref_drift": o.ref_drift,
                     "rerun_ref_seconds": float(n.ref_seconds.median()) if len(n) else math.nan,
                     "rerun_ref_drift": float(n.ref_drift.max()) if len(n) else math.nan,
                     "rerun_over_run_ref": (float(n.ref_seconds.median()) / o.ref_seconds) if len(n) else math.nan,
                     "rerun_over_run_codec": float(m[m.run_id == rid].ratio.median())})
    summary = {"checked_utc": out.name, "results_dir": sel["results_dir"], "folder": str(out), "rows": len(m),
               "rows_contended": blank,
               "runs": len(sel["runs"]), "limit": sel["limit"], "split": sel["split"],
               "coverage_ci": float(with_ci.in_ci.mean()) if len(with_ci) else None,
               "rows_with_ci": len(with_ci),
               "coverage_ci_run": float(m.in_ci_run.mean()),
               "median_half_pct_before": float(m.half_pct.median()) if m.half_pct.notna().any() else None,
               "median_half_pct_after": float(m.run_half_pct.median()),
               "ratio_p10": float(m.ratio.quantile(0.1)), "ratio_p90": float(m.ratio.quantile(0.9)),
               "drift_sd": float(m.drift_sd.median()),
               "drift_source": ", ".join(sorted(set(m.drift_source.dropna()))) if "drift_source" in m else "",
               "calibrated_by": earlier,
               "reference": refs}
    return m, summary


def report(m: pd.DataFrame, s: dict) -> str:
    """The text ``make reproducibility`` prints."""
    cols = ["label", "image", "direction", "stage", "seconds", "ci_low", "ci_high", "ci_run_low", "ci_run_high",
            "new_seconds", "ratio", "in_ci", "in_ci_run"]
    t = m[cols].copy()
    t["in_ci"] = t.in_ci.map({True: "yes", False: "NO", None: "—"})
    t["in_ci_run"] = t.in_ci_run.map({True: "yes", False: "NO"})
    lines = ["per row: the original median and its stated intervals (within the run; across runs), the rerun's "
             "median, rerun / original, and whether the rerun lies within each interval"]
    with pd.option_context("display.width", 250, "display.max_rows", 100000, "display.max_columns", 40):
        lines.append(t.round(4).to_string(index=False))
    pct = lambda v: "—" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    lines.append(f"\ncoverage over {s['rows']} rows of {s['runs']} run(s): within-run interval {pct(s['coverage_ci'])} "
                 f"(of the {s['rows_with_ci']} rows that have one), across runs {pct(s['coverage_ci_run'])}"
                 + (f"; {s['rows_contended']} row(s) left out: every repeat of their rerun was contended"
                    if s.get("rows_contended") else ""))
    before = "—" if s["median_half_pct_before"] is None else f"±{s['median_half_pct_before']:.1f} %"
    lines.append(f"median stated half-width: before (within the run) {before}, after (across runs) "
                 f"±{s['median_half_pct_after']:.1f} %; rerun / original per row: {s['ratio_p10']:.2f}–"
                 f"{s['ratio_p90']:.2f} (10th–90th percentile); the platform's between-run sd {s['drift_sd']:.3f}"
                 + f" ({_calibration(s)})")
    lines.append("reference workload (ms; drift: slowest probe over fastest within the run):")
    for r in s["reference"]:
        lines.append(f"  {r['label']} ({r['run_id'][:6]}): run {1e3 * r['ref_seconds']:.2f} "
                     f"(drift {r['ref_drift']:.2f}×), rerun "
                     f"{1e3 * r['rerun_ref_seconds']:.2f} (drift {r['rerun_ref_drift']:.2f}×): reference rerun/run "
                     f"{r['rerun_over_run_ref']:.2f}, codec rerun/run {r['rerun_over_run_codec']:.2f} (median of rows)")
    return "\n".join(lines)


def markdown(results_dir) -> str:
    """The methodology chapter's paragraph on the last check of ``results_dir`` (or how to make one)."""
    f = Path(results_dir) / FOLDER / LAST
    if not f.exists():
        return "No check has been made on these results yet: `make reproducibility`.\n"
    s = json.loads(f.read_text())
    pct = lambda v: "—" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    before = "—" if s["median_half_pct_before"] is None else f"±{s['median_half_pct_before']:.1f} %"
    return (f"Last check ({s['checked_utc']}): {s['runs']} run(s) rerun, {s['rows']} rows. The rerun's median lay "
            f"within the within-run interval for **{pct(s['coverage_ci'])}** of the {s['rows_with_ci']} rows that have "
            f"one, and within the interval across runs for **{pct(s['coverage_ci_run'])}** of all rows; the median "
            f"stated half-width was {before} before widening and ±{s['median_half_pct_after']:.1f} % after (the "
            f"platform's between-run sd {s['drift_sd']:.3f}, {_calibration(s)}); rerun over original per row "
            f"{s['ratio_p10']:.2f}–{s['ratio_p90']:.2f} (10th–90th percentile).\n")


def _calibration(s: dict) -> str:
    """Which measurement set the between-run sd of the intervals a check tested: never the check itself."""
    if "reruns" in s.get("drift_source", ""):
        ck = s.get("calibrated_by") or []
        return (f"measured on the reruns of the earlier check{'s' if len(ck) > 1 else ''} "
                f"{', '.join(ck)}" if ck else "measured on the reruns of earlier checks") + \
            ": this check tested them out of sample"
    return "estimated from the reference probes: no earlier check had rerun the codecs"


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m lcstudy.pipeline.reproducibility")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--codecs", default="", help="a subset of codecs ('HP FP'); default: every learned run")
    ap.add_argument("--limit", default="", help="the first N images of each run (default: all)")
    ap.add_argument("--sample", default="", help="at most N runs (default: all that match)")
    ap.add_argument("--split", default="2", help="each run's images in N chunks, interleaved over the runs")
    ap.add_argument("--check-only", default="", help="compare an earlier check's folder again, no rerun")
    a = ap.parse_args(argv)
    if a.child:
        return _child(a.child)
    from ..runs.store import atomic_write_csv, atomic_write_json

    def num(name, v):
        if v in ("", None, "all"):
            return None
        try:
            return int(v)
        except ValueError:
            raise InputError(f"{name}={v!r}: give a whole number") from None

    if not Path(a.results_dir).exists():
        raise InputError(f"results folder {a.results_dir} does not exist: give RESULTS_DIR=<a folder with runs>")
    out = Path(a.check_only) if a.check_only else rerun(
        a.results_dir, a.codecs.split() or None, num("LIMIT", a.limit), num("SAMPLE", a.sample),
        num("SPLIT", a.split) or 2)
    m, s = compare(a.results_dir, out)
    print(report(m, s), flush=True)
    atomic_write_csv(out / "rows.csv", m)
    atomic_write_json(out / "check.json", s)
    atomic_write_json(Path(a.results_dir) / FOLDER / LAST, s)
    print(f"wrote {out / 'check.json'}, {out / 'rows.csv'} and {Path(a.results_dir) / FOLDER / LAST} (the methodology "
          "chapter shows it)", flush=True)
    return 0


if __name__ == "__main__":
    from ..errors import LcstudyError

    try:
        raise SystemExit(main())
    except LcstudyError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
