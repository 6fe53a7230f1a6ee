"""SIGTERM and SIGHUP stop a pipeline as Ctrl-C does: the kernel is interrupted, the machine lock released,
and the last line says where to resume.

What sends them, and why three mechanisms:

* a terminal hang-up, SLURM's ``scancel`` and a CI runner that signals the process group reach this process
  directly: :func:`install` makes SIGTERM and SIGHUP raise ``KeyboardInterrupt`` like SIGINT (and
  :func:`lcstudy.pipeline.notebooks.execute` passes all three on to the kernel, which runs in a session of
  its own);
* ``kill <make pid>`` and ``timeout make …`` signal make alone. GNU make passes SIGTERM on to the shell of
  the recipe it is running, which may die without passing it on; so this process asks the kernel
  (``prctl(PR_SET_PDEATHSIG)``) for a SIGTERM when its parent dies;
* make does not pass SIGHUP (or SIGINT) on at all: it waits for its children, the pipeline included, which
  would measure on to the end. While it handles such a signal, GNU make resets it to the default action, so
  the signal leaves the set the process catches (``SigCgt`` in ``/proc/<pid>/status``): a thread watches the
  make processes above this one and stops the pipeline when one of them is gone or has stopped catching a
  signal it caught at the start.
"""
from __future__ import annotations

import os
import signal
import threading

#: the signals that stop a run like Ctrl-C
STOP = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_MASK = sum(1 << (s - 1) for s in STOP)


def _as_ctrl_c(signum, frame):
    raise KeyboardInterrupt


def install(poll_s: float = 0.5) -> None:
    """SIGTERM and SIGHUP as Ctrl-C; a SIGTERM when the parent dies; a watch on the make processes above."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _as_ctrl_c)
    parent = os.getppid()
    _death_signal()
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
    makes = {pid: mask for pid, mask in _make_ancestors()}
    if makes:
        threading.Thread(target=_watch, args=(makes, poll_s), daemon=True, name="lcstudy-make-watch").start()


def _death_signal() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1 (Linux)
    except (OSError, AttributeError):
        pass  # not Linux: the make watch and the group's signals remain


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def _make_ancestors() -> list[tuple[int, int]]:
    """(pid, caught stop signals) of every ``make`` above this process."""
    out = []
    pid = os.getppid()
    try:
        while pid > 1:
            st = _status(pid)
            if st.get("Name") in ("make", "gmake"):
                out.append((pid, int(st.get("SigCgt", "0"), 16) & _MASK))
            pid = int(st.get("PPid", "0"))
    except (OSError, ValueError):
        pass  # no /proc (not Linux), or a process gone meanwhile
    return out


def _stopping(pid: int, mask: int) -> bool:
    try:
        return int(_status(pid).get("SigCgt", "0"), 16) & mask != mask
    except (OSError, ValueError):
        return True  # make is gone


def _watch(makes: dict[int, int], poll_s: float) -> None:
    import time

    while True:
        time.sleep(poll_s)
        if any(_stopping(pid, mask) for pid, mask in makes.items()):
            os.kill(os.getpid(), signal.SIGTERM)
            return
