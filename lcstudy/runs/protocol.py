"""The run protocol, once for learned and standard codecs.

A run is a list of *items* (an image; for the standard codecs an image at one codec and
quality). The protocol owns everything around "what one coding is", which a *subject*
supplies (:class:`Subject`):

1. **Resume.** The run's folder is found by its run id (any host: a cluster job may resume
   on another node of its platform); items already written are not measured again.
2. **Pause.** Before every item and every later phase the run waits while a pause is
   requested (``make pause``), and warms up again afterwards: caches went cold.
3. **Warm-up** per new input shape (``StopRule.warmup`` untimed codings), unless the first
   coding at that shape is predicted to take longer than ``StopRule.warmup_skip_s`` (the
   prediction: the last coding's time scaled by pixels). A warm-up is a plain coding: the MAC
   count's capture coding is made in its phase, after the items (6.) — counting runs torch's
   dispatch modes, which import ``torch._dynamo`` and sympy (ptflops: torchvision), ~150 MB of
   RSS; made in the first warm-up, as until 7 Dec, it raised every later memory reading of the
   run but not those of a run whose MACs came from the cache.
4. **Repeats** until :meth:`StopRule.decide` says stop. Every timed call is bracketed by the
   contention monitor (other processes' CPU time, other GPU processes) and peak memory; a
   contended repeat is kept in the raw samples, flagged, left out of the stopping rule and the
   medians, and redone (at most ``StopRule.max_redo`` times per item). An item whose every repeat was
   contended is measured again after the run's other items, after a wait (:data:`RETRY_ROUNDS` rounds,
   :func:`retry_wait_s`); if it still is, the run ends *incomplete*: what was measured is written (the
   run page and workbooks show it, the item blank), :func:`contended_statement` says which items, how
   contended and what to do, every entry point exits :data:`EXIT_CONTENDED` (3), and running the same
   command again measures only those items.
5. **Record**: each item is written atomically as soon as it is done, with its raw samples,
   its wall time (after any pause), its node, why it stopped and what was contended.
6. **Phases** after the items (operator profile, MAC count; learned codecs), each recorded as
   done in run.json so that a resumed run does not redo it.

The peak float32 matmul rate (the roofline's ceiling) is read first: measured once per node, device and
platform in a results folder (:func:`_peak`). A short fixed **reference workload** is timed at the run's start,
between items and at its end (:mod:`lcstudy.core.drift`), every probe kept in run.json (``reference``): how
far the machine's speed moved during the run, and between this run and the platform's others. Locking the
machine is the caller's job (:mod:`lcstudy.runs.lock`): the protocol runs inside the lock.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from ..core import drift
from ..core.contention import CpuContention
from ..core.environ import SCHEMA_VERSION
from ..core.memory import release_free_heap
from ..core.stats import StopRule
from . import layout
from .lock import wait_if_paused
from .params import RunRequest, request_dict


@dataclass
class Item:
    key: str  # unique within the run: the item file's name
    group: Any  # warm-up key (the padded input shape; for standard codecs codec × quality × shape)
    pixels: int
    payload: Any = None


class Subject(Protocol):
    """What one coding is, and what to record: the learned or the standard codecs."""

    kind: str

    def items(self) -> list[Item]: ...

    def warm(self, item: Item) -> None: ...

    def code(self, item: Item, monitor) -> tuple[list[tuple], Any]:
        """One timed encode + decode: (rows, output). Rows are (direction, stage, kind, measured,
        seconds); the monitor is given begin(direction)/end(direction) around each timed call."""

    def same_output(self, first: Any, other: Any) -> bool: ...

    def record(self, item: Item, first: Any) -> dict: ...

    def phases(self) -> list[tuple[str, Callable[[Callable], None]]]: ...

    def make_monitor(self): ...

    def first_guess(self, item: Item) -> tuple[int, float] | None:
        """(pixels, seconds) of a coding like ``item``'s before any was measured, or None."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def record_notebook_seconds(path: Path, seconds: float) -> None:
    """The whole notebook's wall time (kernel start, imports, loading the codec, the measurement, the run
    page) on the execution the kernel just recorded: what ``make cost`` sets the codec work against. The
    runner measures it (only the process that started the kernel can); this module writes it, so that
    ``run.json`` has one writer."""
    meta = layout.read_meta(path)
    if meta.get("executions"):
        meta["executions"][-1]["notebook_seconds"] = seconds
        layout.write_meta(path, meta)


def execute(subject: Subject, req: RunRequest, env: dict, run_id: str, log=print, progress: bool = True) -> layout.Run:
    """Measure every item of ``subject`` not yet in its run folder, then its phases; return the run."""
    rule = req.rule
    group = req.group
    path = layout.find_run(req.results_dir, req.device, group, run_id) or \
        layout.run_dir(req.results_dir, env["host"], req.device, group, run_id)
    meta = layout.read_meta(path) if (path / layout.RUN_META).exists() else {}
    items = subject.items()
    done = {it.key: layout.read_item(path, it.key) for it in items}
    # an item whose every repeat was contended is not done: it is measured again
    done = {k: v for k, v in done.items() if v is not None and v.get("stop") != "contended"}
    if done:
        log(f"resuming run {run_id} ({req.label}): {len(done)} of {len(items)} items already measured in {path}")
    execution = {"started_utc": now(), "node": env["host"], "slurm_job": env.get("slurm_job", "")}
    meta = {"schema_version": SCHEMA_VERSION, "kind": subject.kind, "run_id": run_id, "label": req.label,
            "group": group, "request_id": req.request_id, "request": request_dict(req),
            "environ": meta.get("environ", env), "items": [it.key for it in items],
            "phases_done": meta.get("phases_done", []), "phase_seconds": meta.get("phase_seconds", {}),
            "executions": meta.get("executions", []) + [execution], "complete": False,
            "peak": meta.get("peak", {}),
            # a resumed run keeps its probes, unless they timed another workload (not comparable: start afresh)
            "reference": meta["reference"] if drift.probes_of(meta.get("reference")) else
            {"workload": drift.WORKLOAD, "probes": []}}
    layout.write_meta(path, meta)

    t_run = time.perf_counter()
    paused = 0.0  # seconds waited for `make pause`: not part of what the run cost
    if not meta["peak"]:
        paused += wait_if_paused(log)
        meta["peak"] = _peak(req, env, run_id, log)
        layout.write_meta(path, meta)

    probed = [0.0]  # when the last probe was made (perf_counter)

    def reference(at: str) -> None:
        # the machine's speed now: a fixed workload at the run's threads and device, kept in run.json
        probed[0] = time.perf_counter()
        p = drift.probe(req.device, env["threads"], at)
        p["contended"] = _injected(f"reference@{at}", {"probe": p})["probe"]["contended"]  # the tests' hook
        meta["reference"]["probes"].append(p)
        layout.write_meta(path, meta)

    todo = [it for it in items if it.key not in done]
    if todo:
        paused += wait_if_paused(log)
        reference("start")
    bar = _bar(progress, len(todo), req.label)
    warmed: set = set()
    # (pixels, seconds) of the last coding: predicts the next one's, for the warm-up rule; before the
    # first coding, the subject's own guess (the reference rate of the codec)
    last: tuple[int, float] | None = subject.first_guess(todo[0]) if todo else None
    rounds: dict[str, int] = {}  # item → how many times every repeat of it was contended

    def measure(it: Item, between: bool = True) -> dict:
        nonlocal paused, last
        waited = wait_if_paused(log)
        if waited:
            paused += waited
            warmed.clear()  # warm up again: caches went cold during the pause
        if between and time.perf_counter() - probed[0] >= drift.PROBE_EVERY_S:
            reference(it.key)
        t_item = time.perf_counter()
        release_free_heap()  # each item's memory from a clean heap, whatever was measured before it
        warm = _warm_up(subject, it, rule, warmed, last)
        rec, last = _repeat(subject, it, rule, log)
        if rec["stop"] == "contended":
            rounds[it.key] = rounds.get(it.key, 0) + 1
        rec.update(schema_version=SCHEMA_VERSION, item=it.key, node=env["host"], warmup=warm,
                   contended_rounds=rounds.get(it.key, 0), **subject.record(it, rec.pop("_first")))
        rec.update(wall_seconds=time.perf_counter() - t_item, measured_utc=now())
        layout.write_item(path, it.key, rec)
        return rec

    for i, it in enumerate(todo):
        measure(it, between=i > 0)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    # an item whose every repeat was contended is measured again after the others, after a wait: a burst of
    # other work (a build, a backup, another user's job) is often over by then
    for rnd in range(1, RETRY_ROUNDS + 1):
        again = [it for it in todo if rounds.get(it.key, 0) == rnd]
        if not again:
            break
        wait_s = retry_wait_s()
        log(f"note: {len(again)} item(s) had every repeat contended ({', '.join(it.key for it in again[:5])}); "
            f"waiting {wait_s:g} s, then measuring them again (retry {rnd} of {RETRY_ROUNDS})")
        time.sleep(wait_s)
        paused += wait_s  # waiting for the machine is not what the run cost
        warmed.clear()
        for it in again:
            measure(it)
    if todo:
        reference("end")

    for name, fn in subject.phases():
        if name in meta["phases_done"]:
            continue
        paused += wait_if_paused(log)
        t0 = time.perf_counter()
        fn(lambda table, df: _save_table(path, table, df))
        meta["phase_seconds"][name] = time.perf_counter() - t0
        meta["phases_done"].append(name)
        layout.write_meta(path, meta)
    execution["finished_utc"] = now()
    execution["paused_seconds"] = paused
    execution["wall_seconds"] = time.perf_counter() - t_run - paused
    meta["executions"][-1] = execution
    recs = {it.key: layout.read_item(path, it.key) or {} for it in items}
    contended = [k for k, rec in recs.items() if rec.get("stop") == "contended"]
    meta["complete"] = not contended
    meta["contended_items"] = contended
    meta["contended"] = {k: _how_contended(recs[k]) for k in contended}
    if contended and not os.environ.get("LCSTUDY_LOCK_TOKEN"):  # under the pipeline, its last word says it
        log("note: " + contended_statement(meta))
    layout.write_meta(path, meta)
    return layout.Run(path, meta)


#: exit status of a run (and of ``make run``/``runs``/``book``) that ended with items whose every repeat
#: was contended: distinct from 1 (a failure) and 2 (bad input); what was measured is written
EXIT_CONTENDED = 3
#: rounds of measuring an all-contended item again, after the run's other items and a wait
RETRY_ROUNDS = 2
#: seconds waited before each round (``LCSTUDY_CONTENDED_WAIT`` overrides)
RETRY_WAIT_S = 30.0


def retry_wait_s() -> float:
    v = os.environ.get("LCSTUDY_CONTENDED_WAIT", "")
    try:
        return max(float(v), 0.0) if v else RETRY_WAIT_S
    except ValueError:
        return RETRY_WAIT_S


def _how_contended(rec: dict) -> dict:
    """How hard the rest of the machine pressed on an item: its repeats, and the median share of a core the
    other processes used during them."""
    import statistics

    shares = []
    for r in rec.get("repeats", []):
        reads = [v for v in r.values() if isinstance(v, dict)]
        other = sum(v.get("other_cpu_s", 0.0) for v in reads)
        window = sum(v.get("window_s", 0.0) for v in reads)
        if window > 0:
            shares.append(other / window)
    return {"repeats": len(rec.get("repeats", [])), "rounds": rec.get("contended_rounds", 1),
            "other_cores": statistics.median(shares) if shares else None}


def _span(xs: list[float]) -> str:
    lo, hi = f"{min(xs):.2f}", f"{max(xs):.2f}"
    return lo if lo == hi else f"{lo}–{hi}"


def contended_statement(meta: dict) -> str | None:
    """The one statement every entry point makes about a run with all-contended items: which, how
    contended, what was written and what to do (None when every item was measured)."""
    items = meta.get("contended_items") or []
    if not items:
        return None
    how = meta.get("contended") or {}
    cores = [h["other_cores"] for h in how.values() if h.get("other_cores") is not None]
    rounds = max((h.get("rounds", 1) for h in how.values()), default=1)
    n = len(meta.get("items", [])) or len(items)
    return (f"incomplete: {meta.get('label')}: {len(items)} of {n} item(s) had every repeat contended by other "
            f"processes ({', '.join(items[:8])}{' …' if len(items) > 8 else ''}"
            + (f"; the other processes used {_span(cores)} of a core during the timed calls" if cores else "")
            + f"; measured {rounds} time(s), the last after a wait). The run page and the workbooks show the items "
              "that were measured; these are blank. Stop the other work (or run where nothing else runs) and run "
              f"the same command again: only these items are measured (exit status {EXIT_CONTENDED}).")


def _injected(key: str, reads: dict) -> dict:
    """TEST HOOK, never set in real use: ``LCSTUDY_TEST_CONTENDED`` (comma-separated fnmatch patterns of item
    keys, ``*`` for all) makes every timed call of a matching item read as contended (the rest of the machine
    at a whole core) and every other item's as quiet (a reference probe's key: ``reference@<when>``), so that
    the tests follow one all-contended item through every entry point whatever else loads the machine they run
    on."""
    import fnmatch

    pats = [p for p in os.environ.get("LCSTUDY_TEST_CONTENDED", "").split(",") if p]
    if not pats:
        return reads
    hit = any(fnmatch.fnmatchcase(key, p) for p in pats)
    return {d: {**v, "other_cpu_s": max(v.get("window_s", 0.0), 0.05) if hit else 0.0, "contended": hit,
                "injected": True} for d, v in reads.items()}


def _save_table(path, table: str, df) -> None:
    from . import store

    store.atomic_write_csv(layout.table_file(path, table), df)


def _bar(progress: bool, total: int, label: str):
    if not progress or not total:
        return None
    import sys

    from tqdm import tqdm

    # a notebook run through papermill is not a terminal: update rarely, one line at a time
    return tqdm(total=total, desc=label, unit="item", mininterval=5 if not sys.stderr.isatty() else 0.1)


def peak_key(env: dict, device: str) -> str:
    """What the matmul peak depends on: the node, the device, and the platform (CPU or GPU model, its
    cores, threads, torch) — not the codec or the run."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(env["fingerprint"], sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{layout.safe_name(env['host'])}-{layout.safe_name(device)}-t{env['threads']}-{digest}"


def _peak(req: RunRequest, env: dict, run_id: str, log=print) -> dict:
    """The peak float32 matmul rate: measured once per node, device and platform in a results folder,
    then read from ``_cache/peak/`` by every later run there. It is the machine's ceiling, not a property
    of a run; measuring it again in each of the standard book's 47 runs cost ~4 s each (3 min). A
    contended measurement is kept by its run but not cached: the next run measures again."""
    import json

    from ..core.machine import peak_matmul
    from . import store

    cache = layout.peak_cache(req.results_dir, peak_key(env, req.device))
    if cache.exists():
        try:
            out = json.loads(cache.read_text())
            log(f"note: matmul peak from the cache ({cache.name}): measured by run {out['peak_run_id']}")
            return out
        except (json.JSONDecodeError, KeyError):
            pass  # a damaged cache file: measured again and rewritten
    mon = CpuContention()
    mon.begin()
    out = peak_matmul(req.device, env["threads"])
    c = mon.end()
    out = {**out, "peak_other_cpu_s": c["other_cpu_s"], "peak_contended": c["contended"], "peak_run_id": run_id,
           "peak_measured_utc": now()}
    if not c["contended"]:
        store.atomic_write_json(cache, out)
    return out


def _warm_up(subject: Subject, it: Item, rule: StopRule, warmed: set, last) -> dict:
    """Warm up ``it``'s input shape unless done, or the first coding is predicted long."""
    if it.group in warmed:
        return {"codings": 0, "reason": "shape already warm"}
    warmed.add(it.group)
    if rule.warmup == 0:
        return {"codings": 0, "reason": "warm-up off"}
    if last is not None:
        predicted = last[1] * it.pixels / last[0]
        if predicted > rule.warmup_skip_s:
            return {"codings": 0, "reason": f"skipped: predicted {predicted:.1f} s > {rule.warmup_skip_s:g} s"}
    t0 = time.perf_counter()
    for _ in range(rule.warmup):
        subject.warm(it)
    return {"codings": rule.warmup, "seconds": time.perf_counter() - t0}


def _repeat(subject: Subject, it: Item, rule: StopRule, log) -> tuple[dict, tuple[int, float]]:
    """The timed repeats of one item under the stopping rule."""
    samples = {"repeat": [], "direction": [], "stage": [], "kind": [], "measured": [], "seconds": []}
    repeats: list[dict] = []
    totals: dict[str, list[float]] = {}
    first = None
    redo = 0
    stop = None
    r = 0
    while stop is None:
        monitor = subject.make_monitor()
        rows, out = subject.code(it, monitor)
        reads = _injected(it.key, monitor.take())
        contended = any(v.get("contended") for v in reads.values())
        if first is None:
            first = out
        elif not subject.same_output(first, out):
            raise RuntimeError(f"{it.key}: the output changed between repeats (non-deterministic coding); the "
                               "repeats would not be comparable")
        for direction, stage, kind, measured, sec, *backend in rows:
            samples["repeat"].append(r)
            samples["direction"].append(direction)
            samples["stage"].append(stage)
            samples["kind"].append(kind)
            samples["measured"].append(measured)
            samples["seconds"].append(sec)
            if backend:  # a backend run's rows name their backend (its own, or eager timed beside it)
                samples.setdefault("backend", []).append(backend[0])
        repeats.append({"repeat": r, "contended": contended, **{d: v for d, v in reads.items()}})
        # the stopping rule sees each direction of each backend: both sides of a comparison are precise
        tot = {d if not b else f"{b[0]}:{d}": s for d, st, k, m, s, *b in rows if st == "total"}
        if contended:
            redo += 1
            top = [t for v in reads.values() for t in v.get("top", ())]  # LCSTUDY_CONTENTION_TRACE=1
            who = f", most by {max(top, key=lambda t: t[2])[0]}" if top else ""
            log(f"note: {it.key} repeat {r} was contended (other processes used "
                f"{sum(v.get('other_cpu_s', 0) for v in reads.values()):.2f} CPU s{who}); measuring it again")
            if redo > rule.max_redo:
                stop = "contended"
        else:
            for d, s in tot.items():
                totals.setdefault(d, []).append(s)
            stop = rule.decide(totals)
        r += 1
    last = (it.pixels, sum(tot.values()))
    return {"stop": stop, "repeats": repeats, "samples": samples, "_first": first}, last
