"""One run notebook, as ``make run``, ``make runs`` and every SLURM job execute it.

1. Every parameter is checked and resolved (:func:`lcstudy.runs.params.resolve`): a bad value fails here,
   in a second or two, on one line, with nothing written. The kernel is handed the resolved request
   (the notebook's ``request`` parameter), which it checks but does not resolve again.
2. A run whose results and notebook are complete is not run again.
3. The machine lock is taken *before* the notebook's kernel starts and held until it has
   written everything; the kernel is handed the lock (``LCSTUDY_LOCK_TOKEN``). Waiting for
   another run is said on the terminal: for whom, since when.
4. The notebook is executed into the run's own results folder (``notebook.ipynb`` beside the
   results it describes), so runs over other image folders or results folders never collide.
5. Ctrl-C: one line that says how to resume; nothing half-written is left looking finished.
6. Items whose every repeat was contended (after the retries): the run's page is written for what was
   measured, the missing items are named, and the exit status is 3 (:data:`~lcstudy.runs.protocol.EXIT_CONTENDED`).
"""
from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

from ..errors import LcstudyError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_notebook(notebook: str, params: dict, wait: bool = True, force: bool = False) -> int:
    """Execute one run notebook; return the exit status (0 done, 1 failed, 2 bad input, 3 incomplete: items
    whose every repeat was contended, what was measured written; 130 interrupted)."""
    from ..runs import layout
    from ..runs.lock import Busy, timing_lock
    from ..runs.params import REQUEST_PARAM, platform_fingerprint, resolve, run_id
    from ..runs import protocol
    from ..runs.protocol import EXIT_CONTENDED, contended_statement
    from . import notebooks

    try:
        req = resolve(params, notebook)
    except LcstudyError as e:
        _say(f"error: {e}")
        return 2
    for note in req.notes:
        print(f"note: {note}", flush=True)
    rid = run_id(req, platform_fingerprint(req))
    done = layout.find_complete(req.results_dir, req.request_id, req.device, rid, req.phases)
    if done is not None and not force:
        from .plan import fingerprints_not_applied

        note = fingerprints_not_applied(req, done, params.get("fingerprints") is not None)
        if note:
            print(f"note: {note}", flush=True)
        print(f"{req.label}: already measured ({done.path}); nothing to do", flush=True)
        return 0
    # the kernel gets the request itself (checked there, not resolved again): WEIGHTS=auto's network probe, the
    # images' checks and hashes are made once per run, here
    nb_params = {REQUEST_PARAM: req.to_json()}
    token = secrets.token_hex(8)
    os.environ["LCSTUDY_LOCK_TOKEN"] = token
    try:
        with timing_lock(f"{req.label} on {req.device} (pid {os.getpid()})", wait=wait, log=_say, token=token):
            print(f">>> {req.label} on {req.device} (profile {req.profile}, run {rid})", flush=True)
            tmp = Path(req.results_dir) / ".notebooks" / f"{req.label}-{rid}.ipynb"
            t0 = time.perf_counter()
            try:
                notebooks.execute(notebook, tmp, nb_params)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - papermill's PapermillExecutionError carries the cause
                _say(f"error: {req.label} failed: {notebooks.failure_text(e)}")
                return 1
            path = layout.find_run(req.results_dir, req.device, req.group, rid)
            if path is None:
                _say(f"error: {req.label}: the notebook finished but its results are not where run {rid} should be: "
                     "the notebook's kernel sees another platform or software than this process (another python3 "
                     f"kernelspec? run `jupyter kernelspec list`); its notebook is kept at {tmp}")
                return 1
            protocol.record_notebook_seconds(path, time.perf_counter() - t0)
            os.replace(tmp, path / layout.NOTEBOOK)
    except Busy as e:
        _say(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        path = layout.find_run(req.results_dir, req.device, req.group, rid)
        n = len(layout.read_items(path)) if path else 0
        _say(f"\ninterrupted; rerun the same command to resume at item {n + 1} of {len(_items(req))} "
             f"({req.label})")
        return 130
    finally:
        os.environ.pop("LCSTUDY_LOCK_TOKEN", None)
    print(f"wrote {path / layout.NOTEBOOK}", flush=True)
    incomplete = contended_statement(layout.read_meta(path))
    if incomplete:
        _say(incomplete)
        return EXIT_CONTENDED
    return 0


def _items(req) -> list:
    if req.kind == "learned":
        return list(req.images)
    from ..core.pillow_codecs import sweep_points

    return [None for _ in sweep_points(req.codecs, req.sweep) for _ in req.images]
