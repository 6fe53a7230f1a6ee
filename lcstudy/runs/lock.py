"""One timing run at a time per machine, for the whole run.

Two timing runs on one machine distort each other, and not only in their timed loops: one
run's kernel start, model load, MAC count or operator profile slowed the other's encodes
1.7–11× when only the loops were serialised. So a run holds an exclusive ``flock`` on a
machine-wide lock file from before its notebook's kernel starts until its results are
written, side measurements included. The pipeline (``make run``, ``make runs``) takes it
and hands it down to the notebook's kernel through ``LCSTUDY_LOCK_TOKEN`` (the kernel checks
the token in the lock file and that its holder is alive); a notebook run by hand takes it
itself. The kernel releases a flock when its process dies, however it dies (SIGKILL
included), so a lock can never stay stuck; the file's content (pid, run, start time, token)
says who holds it, and a file left by a dead process is reported as stale and taken over.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from ..errors import LcstudyError


class Busy(LcstudyError, RuntimeError):
    """Another timing run holds the machine and we were told not to wait."""


def lock_path() -> Path:
    """``LCSTUDY_LOCK`` or ``/tmp/lcstudy-timing.lock``: one file per machine whatever each shell's TMPDIR."""
    return Path(os.environ.get("LCSTUDY_LOCK") or "/tmp/lcstudy-timing.lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


TOKEN_ENV = "LCSTUDY_LOCK_TOKEN"


def held_by_parent() -> dict | None:
    """The lock's holder record when a parent process (the pipeline) holds it for us, else None."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        return None
    holder = _read(lock_path())
    if holder.get("token") == token and holder.get("pid") and _alive(int(holder["pid"])) and _held():
        return holder
    return None


@contextlib.contextmanager
def timing_lock(what: str, wait: bool = True, log=print, poll_s: float = 2.0, token: str | None = None):
    """Hold the machine for a timing run. ``token``: written into the lock file, so that a child
    process given it (``LCSTUDY_LOCK_TOKEN``) knows the lock is held for it. Inside a child whose
    parent holds the lock for it, this is a no-op."""
    if held_by_parent() is not None:
        yield
        return
    path = lock_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise LcstudyError(f"cannot open the machine lock {path} ({e.strerror}): set LCSTUDY_LOCK to a file every "
                           "user of this machine can write") from None
    try:
        os.fchmod(fd, 0o666)  # every user's runs queue behind each other
    except OSError:
        pass
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read(path)
                desc = f"{holder.get('what', '?')} (pid {holder.get('pid', '?')}, since {holder.get('since', '?')})"
                if not wait:
                    raise Busy(f"another timing run holds this machine: {desc}; wait for it, or run without "
                               f"NOWAIT=1 to queue behind it (lock file {path})") from None
                if not told:
                    log(f"waiting: another timing run holds this machine: {desc}; this run starts when it ends")
                    told = True
                time.sleep(poll_s)
        old = _read(path)
        if old.get("pid") and old.get("pid") != os.getpid() and not _alive(int(old["pid"])):
            log(f"cleared a stale timing lock left by pid {old['pid']} ({old.get('what', '?')})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what, "token": token or "",
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def pause_path() -> Path:
    """``<lock>.pause``: while this file exists, timing runs wait before their peak matmul, between
    items, and before each later phase (operator profile, MAC count)."""
    return lock_path().with_name(lock_path().name + ".pause")


def wait_if_paused(log=print, poll_s: float = 1.0) -> float:
    """Block while the pause file exists; return the seconds waited.

    Why: anything else that runs on the machine (a test suite, a build) distorts the timings
    of the run in progress. ``touch`` the pause file and the run stops *between* images (never
    inside a timed repeat), writes ``<pause>.ack`` with its pid, and goes on when the file is
    removed — no sample ever contains the pause. ``python -m lcstudy.runs.lock pause|resume``.
    """
    p = pause_path()
    if not p.exists():
        return 0.0
    ack = p.with_name(p.name + ".ack")
    t0 = time.monotonic()
    log(f"paused: {p} exists (`make resume`, or remove the file, to go on)")
    try:
        ack.write_text(f"{os.getpid()}\n")
    except OSError:
        pass
    while p.exists():
        time.sleep(poll_s)
    try:
        ack.unlink()
    except OSError:
        pass
    waited = time.monotonic() - t0
    log(f"resumed after {waited:.0f} s")
    return waited


def _main(argv=None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m lcstudy.runs.lock",
                                 description="pause/resume timing runs between images, or show who holds the lock")
    ap.add_argument("cmd", choices=["pause", "resume", "status"])
    ap.add_argument("--timeout", type=float, default=600, help="pause: seconds to wait for the run to stop")
    a = ap.parse_args(argv)
    p = pause_path()
    ack = p.with_name(p.name + ".ack")
    if a.cmd == "pause":
        p.touch()
        held = lock_path().exists() and _held()
        if not held:
            print("paused (no timing run holds the lock now)")
            return 0
        t0 = time.monotonic()
        while not ack.exists() and time.monotonic() - t0 < a.timeout:
            if not _held():
                break
            time.sleep(1)
        print("paused: the timing run is waiting (between images, or before its next measured phase)"
              if ack.exists() else
              "pause requested; the run holding the lock has not reached an image boundary yet", file=sys.stderr)
        return 0 if ack.exists() or not _held() else 1
    if a.cmd == "resume":
        p.unlink(missing_ok=True)
        print("resumed")
        return 0
    print(("held" if _held() else "free") + (", pause requested" if p.exists() else ""))
    return 0


def _held() -> bool:
    """Whether some process holds the timing lock now (a non-blocking flock attempt)."""
    path = lock_path()
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


if __name__ == "__main__":
    raise SystemExit(_main())
