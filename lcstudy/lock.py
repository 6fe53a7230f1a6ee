"""One timing run at a time per machine.

Two timing runs on one machine distort each other, so every timing run holds an
exclusive ``flock`` on a machine-wide lock file. The kernel releases a flock when its
process dies, however it dies (SIGKILL included), so a lock can never stay stuck; the
file's content (pid, run, start time) is only there to say who holds it, and a file left
by a dead process is reported as stale and taken over.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from .errors import LcstudyError


class Busy(LcstudyError, RuntimeError):
    """Another timing run holds the machine and we were told not to wait."""


def lock_path() -> Path:
    return Path(os.environ.get("LCSTUDY_LOCK") or Path(os.environ.get("TMPDIR", "/tmp")) / "lcstudy-timing.lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@contextlib.contextmanager
def timing_lock(what: str, wait: bool = True, log=print, poll_s: float = 2.0):
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
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
                    log(f"waiting: another timing run holds this machine: {desc}")
                    told = True
                time.sleep(poll_s)
        old = _read(path)
        if old.get("pid") and old.get("pid") != os.getpid() and not _alive(int(old["pid"])):
            log(f"cleared a stale timing lock left by pid {old['pid']} ({old.get('what', '?')})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what,
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
