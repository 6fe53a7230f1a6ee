"""The SLURM executor: every missing planned run a SLURM job on a node of its own.

Why generated ``sbatch`` scripts, not submitit: a job here is exactly the local executor's
command line (``python -m lcstudy.pipeline run …``, which runs the notebook through papermill),
so there is nothing to pickle; each run needs its own time limit inside one job array, which
takes ``sbatch --hold`` + ``scontrol update`` per task + ``scontrol release`` — calls submitit does
not expose; and logs land at paths we choose and report. ``sbatch``, ``scontrol``, ``squeue`` and
``sacct`` are all it uses.

* One job array per device (its partition: ``SLURM_PARTITION`` for CPU runs,
  ``SLURM_GPU_PARTITION`` for CUDA runs with ``--gres=gpu:1``), ``--exclusive`` so that two timing
  runs never share a node; account, QOS and extra options from ``SLURM_ACCOUNT``, ``SLURM_QOS``,
  ``SLURM_OPTS``.
* Tasks in the order of :mod:`lcstudy.pipeline.cost`: longest predicted run first (list
  scheduling); each task's time limit is its prediction × margin + slack.
* Missing means: no complete run of the request on any platform and none queued or running
  (submissions are recorded under ``<results>/.slurm/``). A resubmission after a failure, a
  ``scancel`` or a node crash therefore redoes only what is missing, and a half-finished run
  resumes at its first unfinished item — on whichever node of its platform it lands.
* With ``SLURM_WAIT=1`` (the default) the submitting ``make`` waits for its jobs, reports every
  failed one with its log, and ``make book`` then builds the chapters and HTML on the submit host
  — or, if runs are missing, says which and stops. ``SLURM_WAIT=0`` returns after submitting.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..errors import LcstudyError

ROOT = Path(__file__).resolve().parent.parent.parent
POLL_S = 5.0


class SlurmMissing(LcstudyError):
    """SLURM's client commands are not available here."""


def check_available() -> None:
    missing = [c for c in ("sbatch", "scontrol", "squeue", "sacct") if shutil.which(c) is None]
    if missing:
        raise SlurmMissing(f"EXECUTOR=slurm needs SLURM's client commands ({', '.join(missing)} not found on PATH): "
                           "on a cluster `module load slurm`; on Debian `apt-get install slurm-client`. Nothing was "
                           "submitted")


def _run(cmd: list[str], **kw) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if out.returncode != 0:
        raise LcstudyError(f"{' '.join(cmd[:2])} failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def _state_dir(results_dir) -> Path:
    return Path(results_dir) / ".slurm"


#: pending reasons that never clear by themselves: such a task is reported, not waited for
STUCK = ("PartitionTimeLimit", "PartitionNodeLimit", "PartitionConfig", "InvalidAccount", "InvalidQOS",
         "QOSMaxWallDurationPerJobLimit", "AssocMaxWallDurationPerJobLimit", "JobHeldAdmin", "BadConstraints",
         "launch failed requeued held", "DependencyNeverSatisfied", "ReqNodeNotAvail")


def expand(jid: str) -> list[str]:
    """``A_3`` → [A_3]; ``A_[3-5,7%1]`` (how squeue and sacct show pending ranges) → [A_3, A_4, A_5, A_7]."""
    if "_[" not in jid:
        return [jid]
    job, rng = jid.split("_[", 1)
    rng = rng.rstrip("]").split("%")[0]
    out = []
    for part in rng.split(","):
        a, _, b = part.partition("-")
        out += [f"{job}_{i}" for i in range(int(a), int(b or a) + 1)]
    return out


def live_tasks(jobs: list[str]) -> dict[str, str]:
    """Pending or running tasks of our arrays: ``A_i`` → the pending reason (or "RUNNING")."""
    if not jobs:
        return {}
    out = _run(["squeue", "-h", "-r", "--me", "-j", ",".join(jobs), "-o", "%i|%T|%r"])
    res = {}
    for line in out.splitlines():
        if "|" in line:
            jid, st, reason = line.split("|", 2)
            for t in expand(jid.strip()):
                res[t] = reason.strip() if st.strip() == "PENDING" else st.strip()
    return res


def _arrays(results_dir) -> list[dict]:
    out = []
    for f in sorted(_state_dir(results_dir).glob("array-*.json")):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # written atomically; a stray file is not ours to trust
    return out


#: squeue states of a task that has ended and is being cleaned up (a cancelled task whose pipeline is still
#: stopping, an epilog): not queued, but its run folder may still be written to
ENDING = ("COMPLETING", "STAGE_OUT")


def settle(results_dir, settle_s: float = 300, poll_s: float = 1.0) -> None:
    """Wait (up to ``settle_s``) until no task of ours is ending. After ``scancel`` a task's pipeline stops
    gracefully and squeue shows the task COMPLETING meanwhile: it is neither queued nor done, and its run
    folder may still be written to. Planning waits for it, so that the run is judged by what the task left
    (resubmitted if unfinished) and never measured by two tasks at once."""
    jobs = [s["job"] for s in _arrays(results_dir)]
    deadline = time.time() + settle_s
    while True:
        ending = sorted(k for k, v in live_tasks(jobs).items() if v in ENDING)
        if not ending:
            return
        if time.time() >= deadline:
            raise LcstudyError(f"SLURM tasks {', '.join(ending)} are still ending {settle_s:.0f} s after planning "
                               "began: run again when squeue no longer lists them")
        time.sleep(poll_s)


def queued(results_dir) -> dict[str, str]:
    """request id → task id of the runs submitted earlier that are still pending or running (not ending:
    :func:`settle` comes first)."""
    subs = _arrays(results_dir)
    live = {k: v for k, v in live_tasks([s["job"] for s in subs]).items() if v not in ENDING}
    return {t["request_id"]: f"{s['job']}_{t['index']}" for s in subs for t in s["tasks"]
            if f"{s['job']}_{t['index']}" in live}


def _script(tasks_file: Path) -> str:
    """The array's job script: task i runs the planned run on line i of the tasks file (JSON), through the
    same command as the local executor (sbatch passes the submitting environment: LCSTUDY_*, SLURM_CONF …)."""
    return "\n".join([
        "#!/bin/bash",
        "# generated by lcstudy.pipeline.slurm",
        "set -euo pipefail",
        f"cd {shlex.quote(str(ROOT))}",
        'echo "task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID on $(hostname) from $(date -u +%FT%TZ)"',
        f'exec {shlex.quote(sys.executable)} -m lcstudy.pipeline task {shlex.quote(str(tasks_file))} '
        '"$SLURM_ARRAY_TASK_ID"',
        "",
    ])


def run_task(tasks_file, index: int) -> int:
    """What an array task runs: line ``index`` of the tasks file, through the local executor's runner."""
    from .runner import run_notebook

    task = json.loads(Path(tasks_file).read_text().splitlines()[int(index)])
    return run_notebook(task["notebook"], task["params"])


def submit(resolved: list, results_dir, partitions: dict[str, str], account: str = "", qos: str = "",
           extra: str = "") -> list[dict]:
    """Submit one held array per device, set each task's time limit, release; return the submissions."""
    from .cost import slurm_limit_minutes

    state = _state_dir(results_dir)
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    subs = []
    by_device: dict[str, list] = {}
    for r in sorted(resolved, key=lambda r: -r.predicted_s):  # longest first
        by_device.setdefault("cuda" if r.request.device.startswith("cuda") else "cpu", []).append(r)
    for device, runs in by_device.items():
        stamp = time.strftime("%Y%m%dT%H%M%S")
        tasks_file = state / f"tasks-{device}-{stamp}.jsonl"
        lines = []
        for r in runs:
            params = {k: v for k, v in r.request_params.items() if v is not None}
            params["results_dir"] = str(Path(results_dir).resolve())
            lines.append(json.dumps({"notebook": r.planned.notebook, "params": params}))
        tasks_file.write_text("\n".join(lines) + "\n")
        script = state / f"job-{device}-{stamp}.sh"
        script.write_text(_script(tasks_file))
        limits = [slurm_limit_minutes(r.predicted_s) for r in runs]
        cmd = ["sbatch", "--parsable", "--hold", f"--array=0-{len(runs) - 1}", "--exclusive",
               f"--job-name=lcstudy-{device}", f"--time={max(limits)}",
               f"--output={logs}/%A_%a.out", f"--error={logs}/%A_%a.out"]
        if partitions.get(device):
            cmd.append(f"--partition={partitions[device]}")
        if device == "cuda":
            cmd.append("--gres=gpu:1")
        if account:
            cmd.append(f"--account={account}")
        if qos:
            cmd.append(f"--qos={qos}")
        cmd += shlex.split(extra or "")
        cmd.append(str(script))
        job = _run(cmd).strip().split(";")[0]
        # recorded at once (before the time limits and the release): a make killed from here on still knows
        # these runs are queued, and a resubmission does not submit them twice
        sub = {"job": job, "device": device, "script": str(script), "tasks_file": str(tasks_file),
               "submitted_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "tasks": [{"index": i, "describe": r.planned.describe(), "request_id": r.request.request_id,
                          "label": r.request.label, "time_limit_min": m, "predicted_s": r.predicted_s,
                          "log": f"{logs}/{job}_{i}.out"} for i, (r, m) in enumerate(zip(runs, limits))]}
        from ..runs.store import atomic_write_json

        atomic_write_json(state / f"array-{job}.json", sub)
        try:
            for i, m in enumerate(limits):
                if m != max(limits):
                    _run(["scontrol", "update", f"JobId={job}_{i}", f"TimeLimit={m}"])
        finally:
            _run(["scontrol", "release", job])
        subs.append(sub)
        print(f"submitted job array {job} ({device}, {len(runs)} runs, longest first; time limits "
              f"{min(limits)}–{max(limits)} min); logs in {logs}", flush=True)
    return subs


def states(jobs: list[str]) -> dict[str, str]:
    """``A_i`` → final state (sacct) of the tasks of our arrays that sacct knows."""
    if not jobs:
        return {}
    try:
        out = _run(["sacct", "-X", "-n", "-P", "-j", ",".join(jobs), "-o", "JobID,State"])
    except LcstudyError:
        return {}  # no accounting: the tasks that left the queue are judged by their results (`missing`)
    res = {}
    for line in out.splitlines():
        if "|" in line:
            jid, st = line.split("|", 1)
            for t in expand(jid.strip()):
                res[t] = st.strip().split()[0]
    return res


def wait(subs: list[dict], poll_s: float = POLL_S) -> list[dict]:
    """Wait until every task of ``subs`` has left the queue; return the tasks that did not complete. A task
    stuck for a reason that never clears (a time limit above the partition's, a bad account …) is reported
    and not waited for; a task gone from the queue that sacct does not know is reported as UNKNOWN after a
    few polls (the results decide, through ``make book``'s check of missing runs)."""
    tasks = {f"{s['job']}_{t['index']}": t for s in subs for t in s["tasks"]}
    jobs = sorted({s["job"] for s in subs})
    gone: dict[str, int] = {}
    deadline = time.time() + sum(t["time_limit_min"] for t in tasks.values()) * 60 + 3600
    while tasks and time.time() < deadline:
        live = live_tasks(jobs)
        st = states(jobs)
        for jid in list(tasks):
            t = tasks[jid]
            if jid in live:
                if live[jid] in STUCK:
                    t["state"] = f"PENDING ({live[jid]}: it will not start)"
                else:
                    continue
            elif st.get(jid) in (None, "PENDING", "RUNNING", "REQUEUED", "SUSPENDED"):
                gone[jid] = gone.get(jid, 0) + 1
                if gone[jid] < 4:
                    continue
                t["state"] = st.get(jid) or "UNKNOWN"
            else:
                t["state"] = st[jid]
            print(f"  {jid} {t['state']}: {t['describe']}", flush=True)
            tasks.pop(jid)
        if tasks:
            time.sleep(poll_s)
    for t in tasks.values():
        t["state"] = "still queued when make stopped waiting"
    return [t for s in subs for t in s["tasks"] if t.get("state") != "COMPLETED"]


def execute(resolved: list, a) -> int:
    from .cost import fmt_seconds

    results_dir = a.results_dir
    already = queued(results_dir)
    todo = [r for r in resolved if r.done is None and r.request.request_id not in already]
    print(f"plan: {len(resolved)} runs, {sum(r.done is not None for r in resolved)} already measured, "
          f"{len(already)} queued or running, {len(todo)} to submit", flush=True)
    for r in resolved:
        for note in r.notes:
            print(f"note: {note}", flush=True)
    subs = []
    if todo:
        for note in dict.fromkeys(n for r in todo for n in getattr(r.request, "notes", ())):
            print(f"note: {note}", flush=True)
        parts = {"cpu": os.environ.get("SLURM_PARTITION", ""), "cuda": os.environ.get("SLURM_GPU_PARTITION", "")}
        subs = submit(todo, results_dir, parts, os.environ.get("SLURM_ACCOUNT", ""), os.environ.get("SLURM_QOS", ""),
                      os.environ.get("SLURM_OPTS", ""))
        print(f"predicted: {fmt_seconds(sum(r.predicted_s for r in todo))} of runs", flush=True)
    if str(getattr(a, "wait", "1")) in ("0", "false", "no"):
        print("not waiting (SLURM_WAIT=0): `make book EXECUTOR=slurm` again when the jobs have ended", flush=True)
        return 0
    if already:
        # and the runs an earlier make submitted that are still queued or running
        live = set(already.values())
        earlier = []
        for s in _arrays(results_dir):
            s["tasks"] = [t for t in s["tasks"] if f"{s['job']}_{t['index']}" in live]
            if s["tasks"]:
                earlier.append(s)
        subs = earlier + subs
    if not subs:
        return 0
    print("waiting for the jobs (squeue/sacct every few seconds) …", flush=True)
    failed = wait(subs)
    # a task that exited 3 (sacct: FAILED) ended incomplete: contended — its run is written, not failed
    from ..runs import layout
    from ..runs.protocol import EXIT_CONTENDED, contended_statement
    from .local import incomplete_summary

    contended = []
    for t in list(failed):
        r = layout.find_contended(results_dir, t["request_id"])
        if r is not None:
            print(contended_statement(r.meta), file=sys.stderr)
            contended.append(t["describe"])
            failed.remove(t)
    if failed:
        for t in failed:
            print(f"error: {t['describe']}: job state {t.get('state')}; log {t['log']}", file=sys.stderr)
        return 1
    if contended:
        print(incomplete_summary(contended), file=sys.stderr)
        return EXIT_CONTENDED
    print("all jobs completed", flush=True)
    return 0
