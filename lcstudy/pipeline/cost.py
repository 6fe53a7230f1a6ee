"""What a study costs: measured per run, predicted where not yet measured, and on N nodes.

Every run records its wall time per execution, each item's wall time, its timed codings and its
phases (:mod:`lcstudy.runs.tidy`, table ``runs``). The **prediction** of a run not yet made:

1. a complete run of the same request on any platform: its measured wall time;
2. else the coding time per megapixel of this codec and channel configuration on this device and
   thread count, measured by any run here (else the reference table below, from the 2-core VM
   this study is developed on), times the repeats the profile's stopping rule will make, plus
   warm-up, metrics and the per-run overhead (kernel start, imports, peak matmul, phases).

``make cost NODES=1,4,16`` schedules the runs longest first on N exclusive nodes (list
scheduling: each run goes to the node that frees up first) and prints the makespan, so a user
can size a cluster request; the SLURM executor submits in that order, with each run's time limit
its prediction times a margin.
"""
from __future__ import annotations

import heapq
import math

from ..runs.profiles import reference_rate  # noqa: E402
#: the transforms' share of a coding (what a backend changes; the rest is entropy coding and, for the
#: autoregressive codecs, their sequential context loop, which stays eager)
NETWORK_SHARE = {"autoregressive": 0.1}
NETWORK_SHARE_DEFAULT = 0.8
#: per run: kernel start, imports, model load, peak matmul, tables and figures (seconds)
RUN_OVERHEAD_S = 20.0
#: the operator profile costs this many codings of the first image (the profiler's per-op overhead;
#: an autoregressive loop makes tens of thousands of small ops)
KERNELS_CODINGS = {"autoregressive": 9.0}
KERNELS_CODINGS_DEFAULT = 2.0
#: a standard codec item: encode + decode seconds per megapixel, and the quality metrics per item
STANDARD_S_PER_MPX = 0.6
METRICS_S_PER_MPX = 0.25
#: SLURM time limit = prediction × margin + slack
LIMIT_MARGIN = 2.0
LIMIT_SLACK_S = 600.0


def fmt_seconds(s: float) -> str:
    if s is None or math.isnan(s):
        return "?"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def measured_rates(runs_table, timings) -> dict:
    """(codec, quality, device, threads) → encode+decode seconds per megapixel, from measured runs."""
    if timings is None or timings.empty:
        return {}
    t = timings[timings.stage == "total"]
    if "run_backend" in t:  # eager's rate: a backend run's rows hold two codings (its own and eager's)
        t = t[(t.run_backend == "eager") & (t.backend == "eager")]
    t = t.assign(mpx=t.height * t.width / 1e6)
    g = t.groupby(["codec", "quality", "device", "threads", "image", "run_id"], as_index=False).agg(
        s=("seconds", "sum"), mpx=("mpx", "first"))
    g["rate"] = g.s / g.mpx
    return g.groupby(["codec", "quality", "device", "threads"]).rate.median().to_dict()


def predict_one(req, rates: dict, measured_walls: dict) -> float:
    """Predicted wall seconds of one run (see the module docstring)."""
    if req.request_id in measured_walls:
        return measured_walls[req.request_id]
    rule = req.rule
    if req.kind == "standard":
        from ..core.pillow_codecs import sweep_points

        points = len(sweep_points(req.codecs, req.sweep))
        mpx = sum(_mpx(req, r) for r in req.images)
        t_item = STANDARD_S_PER_MPX * mpx / max(len(req.images), 1)
        n = _repeats(rule, t_item)
        return RUN_OVERHEAD_S + points * (mpx * (STANDARD_S_PER_MPX * (n + 1) + METRICS_S_PER_MPX))
    from ..core.codec_sources import get_spec

    spec = get_spec(req.codec, req.codec_args)
    threads = req.threads or 2
    key = (spec.label, req.quality, req.device, threads)
    rate = rates.get(key)
    if rate is None:  # no measurement yet: the reference rate and its guesses for a GPU and for one thread
        rate = reference_rate(spec, req.quality, req.device, threads)
    total = RUN_OVERHEAD_S
    shapes = set()
    from ..core.backends import BACKENDS, CALIBRATION_CROP
    from ..core.codec_table import Family

    b = BACKENDS.get(req.backend, BACKENDS["eager"])
    # the transforms a backend deploys: a factorized prior has no hyper transforms
    transforms = 2 if spec.family == Family.FACTORIZED else 4
    calibration_mpx = CALIBRATION_CROP ** 2 / 1e6
    deployed = b.name != "eager"  # a backend run codes each item twice per repeat: the backend and eager
    share = NETWORK_SHARE.get(spec.family, NETWORK_SHARE_DEFAULT)
    ratio = 1 - share + share * b.guess_ratio  # the backend's coding over eager's
    for im, size in ((im, size) for im in req.images for size in (req.sizes or (None,))):
        mpx = _mpx(req, im, size)
        t = rate * mpx * ((1 + ratio) if deployed else 1)
        n = _repeats(rule, t)
        shape = (mpx,)
        new = shape not in shapes
        warm = 0 if not new or t > rule.warmup_skip_s else rule.warmup
        shapes.add(shape)
        total += (n + warm) * t + METRICS_S_PER_MPX * mpx
        if deployed and new:  # the untimed first coding of a new shape, and a compiling backend's compilation
            total += rate * mpx * ratio
            if b.per_shape and not math.isclose(mpx, calibration_mpx):
                total += b.guess_one_off_s * transforms
    if deployed:  # setup: export, conversion, the calibration shape's compilation, two calibration codings
        total += b.guess_one_off_s * transforms + 2 * rate * calibration_mpx
    first_size = req.sizes[0] if req.sizes else None
    first = rate * _mpx(req, req.images[0], first_size) if req.images else 0.0
    if req.kernels:
        total += KERNELS_CODINGS.get(spec.family, KERNELS_CODINGS_DEFAULT) * first * (
            (req.kernels_crop ** 2 / 1e6) / _mpx(req, req.images[0], first_size) if req.kernels_crop else 1.0)
    return total


def _mpx(req, image_ref, size=None) -> float:
    """Megapixels of one item: ``image_ref`` at ``size`` (an :class:`~lcstudy.core.images.ItemSize` of a run of
    several sizes) or at the run's crop/resize."""
    from ..runs.params import item_args

    made = item_args(req, size)
    if made["resize"] or made["crop"]:
        from ..core.images import ItemSize, parse_size

        size = ItemSize(resize=parse_size(made["resize"])) if made["resize"] else ItemSize(crop=made["crop"])
        return size.megapixels
    from PIL import Image

    with Image.open(image_ref.path) as im:
        return im.width * im.height / 1e6


def _repeats(rule, t_item: float) -> int:
    if t_item <= 0:
        return rule.max_repeats
    return int(min(max(math.ceil(rule.budget_s / t_item), rule.min_repeats), rule.max_repeats))


def predict(resolved: list, results_dir) -> None:
    """Fill ``predicted_s`` of every resolved planned run."""
    from pathlib import Path

    from ..runs.tidy import load_results

    rates, walls = {}, {}
    if Path(results_dir).exists():
        runs = load_results(results_dir, "runs")
        if not runs.empty:
            c = runs[runs.complete & runs.wall_seconds.notna()]
            walls = c.groupby("request_id").wall_seconds.median().to_dict()
            rates = measured_rates(runs, load_results(results_dir, "timings"))
    for r in resolved:
        r.predicted_s = predict_one(r.request, rates, walls)


def schedule(durations: list[float], nodes: int) -> float:
    """Makespan of list scheduling, longest first, on ``nodes`` identical nodes."""
    free = [0.0] * max(nodes, 1)
    heapq.heapify(free)
    for d in sorted(durations, reverse=True):
        t = heapq.heappop(free)
        heapq.heappush(free, t + d)
    return max(free)


def slurm_limit_minutes(predicted_s: float) -> int:
    return int(math.ceil((predicted_s * LIMIT_MARGIN + LIMIT_SLACK_S) / 60))


def outside_split(nb) -> dict:
    """What a set of run notebooks (rows of the runs table with ``notebook_seconds``) spent outside their
    measurement, in two parts: the backend runs' deployment before any timing (``setup_seconds``: export,
    calibration, conversion, compilation — a one-off cost the study measures and the Deployment chapter
    reports, which grows with the backends planned, not with the harness) and the rest, the harness's own
    fixed cost (kernel start, imports, codec loading, a backend's calibration codings — the check against
    eager is in ``setup_seconds`` — the run page). A resumed backend run deploys again at each execution while
    ``setup_seconds`` holds its first one's: the difference lands in the harness. Issue 29's targets are about
    the second: quoting the sum hid it behind compilation times (the standard book's 7.8 min outside were
    4.8 min of deploying, 7 Dec)."""
    outside = float((nb.notebook_seconds - nb.wall_seconds).sum())
    setup = float(nb.setup_seconds.fillna(0.0).sum()) if "setup_seconds" in nb else 0.0
    n = len(nb)
    return {"notebooks": n, "outside_s": outside, "deploy_s": setup, "harness_s": outside - setup,
            "harness_per_notebook_s": (outside - setup) / n if n else float("nan")}


def outside_text(nb) -> str:
    o = outside_split(nb)
    return (f"outside the measurement {fmt_seconds(o['outside_s'])}: deploying the backend runs (export, "
            f"calibration, compilation; one-off, measured) {fmt_seconds(o['deploy_s'])}, the harness (kernel start, "
            f"imports, codec loading, calibration codings, run page) {fmt_seconds(o['harness_s'])}, "
            f"{o['harness_per_notebook_s']:.1f} s a notebook")


def report(resolved: list, results_dir, nodes: list[int], chapters_s: float | None = None) -> str:
    """The text ``make cost`` prints."""
    import pandas as pd

    from ..runs.tidy import load_results

    lines = []
    runs = pd.DataFrame()
    from pathlib import Path

    if Path(results_dir).exists():
        runs = load_results(results_dir, "runs")
    if not runs.empty:
        phase_cols = [c for c in runs.columns if c.startswith("phase_seconds_")]
        r = runs.assign(share=runs.codec_seconds / runs.wall_seconds)
        if "notebook_seconds" not in r:
            r["notebook_seconds"] = float("nan")
        cols = ["label", "host", "device", "items", "repeats", "notebook_seconds", "wall_seconds", "item_wall_seconds",
                "codec_seconds", "share", "contended_share"] + phase_cols + (["interrupted_executions"] if
                                                             "interrupted_executions" in runs else [])
        if "ref_seconds" in r:  # the reference workload's median, in ms (rounded to 2 decimals below)
            r["ref_ms"] = 1e3 * r.ref_seconds
        cols += [c for c in ("ref_ms", "ref_drift", "ref_ratio") if c in r]
        with pd.option_context("display.width", 250, "display.max_rows", 500, "display.max_columns", 40):
            lines.append("measured runs (notebook: the whole run notebooks' wall, kernel start to run page; wall: "
                         "their measurement; codec: timed encodes+decodes; share = codec / wall)")
            lines.append(r[cols].sort_values("wall_seconds").round(2).to_string(index=False))
        if "ref_flag" in r:
            from ..core.drift import DRIFT_BOUND, PLATFORM_TOLERANCE

            off = r[r.ref_flag.astype(bool)]
            lines.append(f"reference workload (ref_ms: its median, ms; drift: slowest probe over fastest within the "
                         f"run, bound {DRIFT_BOUND:.2f}×; ratio: to the platform's median, bound "
                         f"±{PLATFORM_TOLERANCE:.0%}): " + ("no run flagged" if off.empty else f"{len(off)} run(s) "
                         "flagged, like a slow node: "
                         + "; ".join(f"{a} ({w})" for a, w in zip(off.label, off.ref_flag))))
        wall, work = r.wall_seconds.sum(), r.codec_seconds.sum()
        per_phase = {c[len('phase_seconds_'):]: r[c].sum() for c in phase_cols}
        lines.append(f"\nall runs: {fmt_seconds(wall)} of run wall time, {fmt_seconds(work)} of it codec work "
                     f"({work / wall:.1%}); item walls {fmt_seconds(r.item_wall_seconds.sum())}; phases: "
                     + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in per_phase.items()))
        nb = r[r.notebook_seconds.notna()]
        if not nb.empty:
            lines.append(f"run notebooks ({len(nb)} of {len(r)} runs, those the pipeline ran whole): "
                         f"{fmt_seconds(nb.notebook_seconds.sum())} of notebook wall time, "
                         f"{fmt_seconds(nb.codec_seconds.sum())} of it codec work "
                         f"({nb.codec_seconds.sum() / nb.notebook_seconds.sum():.1%}); " + outside_text(nb))
    if resolved:
        measured = [r for r in resolved if r.done is not None]
        missing = [r for r in resolved if r.done is None]
        durs = [r.predicted_s for r in resolved]
        lines.append(f"\nplan: {len(resolved)} runs ({len(measured)} measured, {len(missing)} missing); "
                     f"projected run time {fmt_seconds(sum(durs))}"
                     + (f" + chapters and HTML {fmt_seconds(chapters_s)}" if chapters_s else ""))
        for n in nodes:
            lines.append(f"  on {n} exclusive node(s): {fmt_seconds(schedule(durs, n))} (longest run "
                         f"{fmt_seconds(max(durs))})")
        if missing:
            longest = sorted(missing, key=lambda r: -r.predicted_s)
            lines.append("missing runs (predicted): " + "; ".join(
                f"{r.planned.describe()} {fmt_seconds(r.predicted_s)}" for r in longest))
    return "\n".join(lines)
