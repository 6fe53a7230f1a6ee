"""Warm kernels: a notebook's kernel forked from a process that has imported the study already.

Why. Every run notebook is a fresh kernel, so that nothing another codec allocated colours its memory
readings and its timings (:mod:`lcstudy.core.memory`). A fresh kernel pays the study's imports again —
torch, CompressAI, SciPy's stats, matplotlib and seaborn, IPython: ~2–3.5 s of a quick run notebook's
7 s outside its measurement (`make bench-startup`), 25–70 times a book. A kernel *forked* from a
process that holds those imports is still a process of its own, with its own pid, memory counters and
heap, but starts with them done.

How, in two processes:

* the **zygote** (``python -m lcstudy.pipeline.zygote``): started by the process that executes
  notebooks (the runner), at its first notebook, with that notebook's environment. It imports
  :data:`PRELOAD` — what every run notebook imports anyway, no more, so a warm run's RSS baseline is a
  cold run's — runs no torch operation and starts no Python thread (checked: it refuses to fork otherwise;
  OpenBLAS's native pool is there and handles fork itself), and then forks one child per kernel asked for and
  reports each child's exit status. It lives in a session of its own, so that signals to the runner's group
  reach only the runner (which passes them on to the kernels); it exits when the runner closes its request pipe,
  after its last kernel — at once, killing them, if the runner has died.
* the **child** becomes the kernel exactly as ``python -m ipykernel_launcher -f <connection file>``
  would: a session of its own (jupyter_client starts kernels with ``start_new_session``: Ctrl-C and
  SIGTERM reach it through :mod:`lcstudy.pipeline.notebooks`), the kernel's environment and working
  directory, the launcher's ``sys.path``, stdin from ``/dev/null``, the generators of ``random`` and
  numpy re-seeded (a fresh process gets fresh ones; torch's default seed is the same in both), and at
  exit its ``atexit`` hooks (an interrupted run records its interruption there).

The runner's side is :class:`Zygote`, used by :class:`lcstudy.pipeline.notebooks.IPCKernelManager` through
:func:`launch`. A kernel is started cold, as before, when warm kernels are off (``LCSTUDY_WARM_KERNEL=0``),
when the kernel spec is not this interpreter's ``ipykernel_launcher``, or when the zygote cannot be used
(it failed to start, or found a thread) — said once on stderr. A zygote serves only kernels whose
environment equals the one it imported under (less the per-kernel variables in :data:`PER_KERNEL_ENV`): an
environment variable can change what an import does (``LCSTUDY_LEAN_IMPORT``, ``OMP_NUM_THREADS``), so
another environment gets a new zygote.

What was checked, and where: ``tests/test_zygote.py`` runs the same tiny measurement in a cold and in a warm
kernel and compares their operator profiles, memory readings and timings; the lifecycle (exit status, the
kernel's own session, a retired zygote, the zygote's death) is tested there too; Ctrl-C and a kernel that dies
in ``tests/test_notebooks.py``. ``make bench-startup`` prints a
notebook's fixed cost cold and warm.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import threading

#: what every run notebook imports before it measures (notebooks/profile_codec.md and the codec load): the zygote
#: imports these and nothing else, so a warm kernel's memory baseline is a cold one's
PRELOAD = ("lcstudy.runs.learned", "lcstudy.chapters.run_page", "compressai.zoo", "ipykernel.kernelapp")

#: environment variables that differ from kernel to kernel and that no import reads: not part of a zygote's key
PER_KERNEL_ENV = frozenset({"LCSTUDY_LOCK_TOKEN", "LCSTUDY_WARM_KERNEL", "JPY_PARENT_PID", "JPY_SESSION_NAME", "PYDEVD_USE_FRAME_EVAL",
                            "PYDEVD_DISABLE_FILE_VALIDATION"})

#: seconds a zygote may take to import :data:`PRELOAD` (a cold machine's first import of torch can take a minute)
READY_TIMEOUT_S = 300.0


class Unavailable(RuntimeError):
    """The zygote cannot start this kernel: start it cold."""


def enabled() -> bool:
    return os.environ.get("LCSTUDY_WARM_KERNEL", "1").strip().lower() not in {"0", "false", "no", "off"}


def env_key(env: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in env.items() if k not in PER_KERNEL_ENV))


def is_ipykernel_cmd(cmd: list) -> bool:
    """Whether ``cmd`` is this interpreter's ``python -m ipykernel_launcher ...`` (the zygote's interpreter and
    packages); any other kernel command is started cold."""
    try:
        # not realpath: another virtual environment's python links to the same base interpreter
        same = os.path.abspath(cmd[0]) == os.path.abspath(sys.executable)
    except (IndexError, TypeError):
        return False
    return same and list(cmd[1:3]) == ["-m", "ipykernel_launcher"]


# ---------------------------------------------------------------------------------------------- runner side


class Zygote:
    """One zygote process and the kernels it forked (runner side). Thread-safe: chapters start kernels from
    several threads."""

    def __init__(self, env: dict, cwd: str | None = None):
        import subprocess

        self.key = env_key(env)
        req_r, self._req_w = os.pipe()
        evt_r, evt_w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", "lcstudy.pipeline.zygote", str(req_r), str(evt_w)],
                                     pass_fds=(req_r, evt_w), env={k: v for k, v in env.items()
                                                                    if k not in PER_KERNEL_ENV},
                                     cwd=cwd, stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(req_r)
        os.close(evt_w)
        self._evt = os.fdopen(evt_r, "r")
        self._cond = threading.Condition()
        self._replies: dict[int, dict] = {}
        self._exits: dict[int, int] = {}
        self._ready: dict | None = None
        self._dead = False
        self._next = 0
        self._closed = False
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name="lcstudy-zygote-events", daemon=True).start()

    def _read(self) -> None:
        for line in self._evt:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if "ready" in msg:
                    self._ready = msg
                elif "exit" in msg:
                    self._exits[int(msg["exit"])] = int(msg["code"])
                elif "id" in msg:
                    self._replies[int(msg["id"])] = msg
                self._cond.notify_all()
        with self._cond:
            self._dead = True
            self._cond.notify_all()

    def ready(self, timeout: float = READY_TIMEOUT_S) -> dict:
        """The zygote's report once it has imported :data:`PRELOAD` (import seconds, threads); raises
        :class:`Unavailable` if it died or refuses to fork."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready is not None or self._dead, timeout):
                raise Unavailable(f"the zygote did not finish its imports in {timeout:.0f} s")
            if self._ready is None:
                raise Unavailable(f"the zygote exited ({self.proc.poll()}) before it was ready")
            if self._ready.get("error"):
                raise Unavailable(self._ready["error"])
            return self._ready

    def spawn(self, argv: list, env: dict, cwd: str) -> int:
        """Fork a kernel running ``ipykernel_launcher`` with ``argv`` (what follows ``-m ipykernel_launcher``)
        in ``env`` and ``cwd``; its pid once it is in a session of its own."""
        self.ready()
        with self._send_lock:
            if self._closed:
                raise Unavailable("the zygote was retired")
            self._next += 1
            rid = self._next
            data = (json.dumps({"id": rid, "argv": list(argv), "env": dict(env), "cwd": str(cwd)}) + "\n").encode()
            try:
                while data:
                    data = data[os.write(self._req_w, data):]
            except OSError as e:
                raise Unavailable(f"the zygote does not take requests ({e})") from None
        with self._cond:
            if not self._cond.wait_for(lambda: rid in self._replies or self._dead, 60):
                raise Unavailable("the zygote did not answer a request for a kernel in 60 s")
            if rid not in self._replies:
                raise Unavailable("the zygote exited")
            reply = self._replies.pop(rid)
        if "error" in reply:
            raise Unavailable(reply["error"])
        return int(reply["pid"])

    def returncode(self, pid: int) -> int | None:
        """``pid``'s exit status; None while it runs. After the zygote's death nobody reports it: then a kernel that
        is gone reads -9."""
        with self._cond:
            if pid in self._exits or not self._dead:
                return self._exits.get(pid)
        return _reap_orphan(pid)

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or self._dead, timeout)
            if pid not in self._exits and self._dead:
                return _reap_orphan(pid)
            return self._exits.get(pid)

    def alive(self) -> bool:
        return self.proc.poll() is None and not self._dead

    def close(self, wait: bool = True) -> None:
        """Retire the zygote: it forks no more kernels, and exits after the last of those it forked has ended (each
        has its manager, which stops it)."""
        with self._send_lock:
            if not self._closed:
                self._closed = True
                try:
                    os.close(self._req_w)
                except OSError:
                    pass
        if wait:
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - a kernel of it still runs: it exits after that kernel
                pass


def _reap_orphan(pid: int) -> int | None:
    """A kernel whose zygote died: still running (None) or gone (-9: nobody knows its status)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return -9
    except OSError:
        return None
    return -9 if state in ("Z", "X") else None  # a zombie: its new parent (init) has yet to reap it


class WarmProcess:
    """What :class:`jupyter_client.provisioning.LocalProvisioner` needs of a ``Popen``, for a kernel the zygote
    forked (a grandchild of this process: only the zygote can wait for it)."""

    stdin = stdout = stderr = None

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote = zygote
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            self.returncode = self.zygote.returncode(self.pid)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.returncode = self.zygote.wait(self.pid, timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        import signal

        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)


_ZYGOTE: Zygote | None = None
_LOCK = threading.Lock()
_WARNED: set = set()
#: environment keys whose zygote refused (an import failed, a thread, no MADV_POPULATE_READ): their kernels start
#: cold without trying again (a zygote's imports cost seconds)
_REFUSED: set = set()


def _say_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        print(f"note: {msg}", file=sys.stderr, flush=True)


def zygote_for(env: dict, cwd: str | None = None) -> Zygote:
    """The zygote for kernels of environment ``env``: the running one, or a new one (the old one retired: its running
    kernels go on)."""
    global _ZYGOTE
    key = env_key(env)
    with _LOCK:
        if key in _REFUSED:
            raise Unavailable("the zygote of this environment refused before")
        z = _ZYGOTE
        if z is None or not z.alive() or z.key != key:
            if z is not None:
                z.close(wait=False)  # its running kernels go on; it exits after them
            _ZYGOTE = z = Zygote(env, cwd)
        return z


def stop() -> None:
    """Stop this process's zygote (tests; a process exiting needs not: the zygote sees its pipe close)."""
    global _ZYGOTE
    with _LOCK:
        if _ZYGOTE is not None:
            _ZYGOTE.close()
            _ZYGOTE = None


def launch(provisioner, cmd: list, kw: dict):
    """Start the kernel ``cmd`` for ``provisioner`` (a :class:`~jupyter_client.provisioning.LocalProvisioner`)
    warm, as its ``launch_kernel`` would cold; returns its connection info. Falls back to the cold start (and says
    why, once) when the zygote cannot serve it."""
    import pathlib

    if not enabled() or not is_ipykernel_cmd(cmd) or kw.get("stdin") or kw.get("stdout") or kw.get("stderr"):
        return None
    env = dict(kw.get("env") or os.environ)
    cwd = str(kw.get("cwd") or os.getcwd())
    try:
        z = zygote_for(env)
        try:
            z.ready()
        except Unavailable:
            with _LOCK:
                _REFUSED.add(z.key)
            raise
        pid = z.spawn(cmd[3:], env, cwd)  # answered once the kernel is in a session of its own
    except Unavailable as e:
        _say_once(f"kernels start cold ({e}); LCSTUDY_WARM_KERNEL=0 says so without trying")
        return None
    provisioner.__class__ = _warm_provisioner(type(provisioner))
    provisioner.process = WarmProcess(z, pid)
    provisioner.pid = provisioner.pgid = pid
    provisioner.cwd = kw.get("cwd", pathlib.Path.cwd())
    return provisioner.connection_info


@functools.lru_cache(maxsize=None)
def _warm_provisioner(base):
    """``base`` (a LocalProvisioner) that signals a warm kernel's group only while the kernel runs: the zygote reaps
    a kernel as it exits, so its pid — its group's id — is free again at once (a cold kernel's stays taken until its
    manager has waited for it)."""

    class WarmProvisioner(base):
        async def send_signal(self, signum: int) -> None:
            if self.process is not None and self.process.poll() is not None:
                return
            await super().send_signal(signum)

    return WarmProvisioner


# ---------------------------------------------------------------------------------------------- zygote side


def _threads_now() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def main(req_fd: int, evt_fd: int) -> int:
    import importlib
    import select
    import signal
    import time

    # in a session of its own (Zygote starts it so): a signal to the runner's group (Ctrl-C, a hang-up, a CI job's
    # SIGTERM) is the runner's to pass on to the kernels, which stop their runs as cold kernels do; the zygote
    # ends when its request pipe closes, after its last kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.path and (sys.path[0] in ("", os.getcwd())):
        del sys.path[0]  # as ipykernel_launcher does: imports do not come from the working directory

    def send(msg: dict) -> None:
        try:
            os.write(evt_fd, (json.dumps(msg) + "\n").encode())
        except OSError:  # the runner has gone (EPIPE): its kernels are being stopped; nothing to tell, nobody to tell
            pass

    t0 = time.perf_counter()
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    except Exception as e:  # noqa: BLE001
        send({"ready": True, "error": f"the zygote could not import {name}: {type(e).__name__}: {e}"})
        return 1
    import_s = time.perf_counter() - t0
    # native threads (OpenBLAS's pool, started when numpy loads it) are not refused: their libraries handle fork
    # (pthread_atfork); tests/test_zygote.py's cold/warm comparison is the check that a kernel computes alike
    py_threads, threads = threading.active_count(), _threads_now()
    error = None
    if py_threads != 1:
        error = (f"the zygote has {py_threads} Python threads after its imports "
                 f"({', '.join(t.name for t in threading.enumerate())}): forking it is not safe")
    resident = _resident_file_pages()
    if error is None and not sys.platform.startswith("linux"):
        # its kernels die with it by PR_SET_PDEATHSIG (:func:`_child`), and a warm kernel's memory readings are a
        # cold one's by mapping the libraries' pages again (/proc, madvise): both Linux's
        error = f"a warm kernel needs Linux (this is {sys.platform})"
    if error is None and resident and not _map_again(resident[:1]):
        error = ("this kernel cannot map a process's library pages again (madvise MADV_POPULATE_READ needs Linux "
                 "≥ 5.14): a warm kernel's memory readings would not be a cold one's")
    send({"ready": True, "import_s": import_s, "threads": threads, "pid": os.getpid(), "error": error,
          "resident_file_mb": sum(n for _, n in resident) / 2**20})
    if error:
        return 1
    runner = os.getppid()
    children: set[int] = set()
    buf, open_ = b"", True
    while open_ or children:
        r, _, _ = select.select([req_fd] if open_ else [], [], [], 0.05)
        if r:
            chunk = os.read(req_fd, 1 << 16)
            if not chunk:
                open_ = False  # retired, or the runner has gone: no more kernels; those running are waited for
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                pid = _fork_kernel(req, req_fd, evt_fd, resident)
                if isinstance(pid, str):
                    send({"id": req["id"], "error": pid})
                else:
                    children.add(pid)
                    send({"id": req["id"], "pid": pid})
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
        if children and os.getppid() != runner:  # the runner died: its kernels go with it, as cold ones do
            for pid in children:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
    return 0


def _fork_kernel(req: dict, req_fd: int, evt_fd: int, resident: list):
    """Fork the kernel of request ``req``; its pid once it is in a session of its own (it says so on a pipe: until
    then its process group is the zygote's), or what went wrong."""
    import select

    r, w = os.pipe()
    zygote = os.getpid()
    try:
        pid = os.fork()
    except OSError as e:
        os.close(r)
        os.close(w)
        return f"fork failed: {e}"
    if pid == 0:
        os.close(r)
        _child(req, req_fd, evt_fd, resident, w, zygote)  # never returns
    os.close(w)
    try:
        ok = select.select([r], [], [], 30)[0] and os.read(r, 1) == b"1"
    finally:
        os.close(r)
    return pid if ok else f"the forked kernel {pid} did not start its session in 30 s"


def _resident_file_pages() -> list[tuple[int, int]]:
    """(address, bytes) of the runs of pages of file mappings (shared libraries, Python's own files) that this
    process has in its page table (``/proc/self/pagemap``'s present bit: an unprivileged process reads its own).

    Why: ``fork`` copies the page table of anonymous memory but not of file mappings that were never written
    (libraries' code and constants); the child maps those pages again only when it touches them. A kernel forked
    right after the imports would read ~230 MB less RSS than a fresh kernel that did the same imports (HP, 2-core
    VM: 481 MB against 708 MB before any coding), and every ``baseline_mb`` and ``peak_mb`` of a run would
    depend on how its kernel was started. The child maps these pages again (:func:`_map_again`)."""
    import numpy as np

    page = os.sysconf("SC_PAGE_SIZE")
    chunk = 4096  # pages per read: 32 KB buffers. A larger one would move glibc's dynamic mmap threshold (it rises to
    # the size of the largest mmapped block freed), and the kernels would inherit an allocator that keeps a codec's
    # buffers between codings where a fresh process's returns them: another working set (seen: 0 MB against 32 MB)
    out: list[tuple[int, int]] = []
    try:
        with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb", buffering=0) as pm:
            for line in maps:
                f = line.split()
                if len(f) < 6 or f[4] == "0":
                    continue  # anonymous: fork copies its page table
                start, end = (int(a, 16) for a in f[0].split("-"))
                run_start = None
                for first in range(start, end, chunk * page):
                    n = min(chunk, (end - first) // page)
                    pm.seek(first // page * 8)
                    flags = np.frombuffer(pm.read(n * 8), dtype="<u8")
                    present = (flags >> np.uint64(63)).astype(bool)
                    for i in range(n) if present.any() or run_start is not None else ():
                        addr = first + i * page
                        if present[i] and run_start is None:
                            run_start = addr
                        elif not present[i] and run_start is not None:
                            out.append((run_start, addr - run_start))
                            run_start = None
                if run_start is not None:
                    out.append((run_start, end - run_start))
    except OSError:
        return []
    return out


def _map_again(resident: list[tuple[int, int]]) -> bool:
    """Map the zygote's resident file pages into this child's page table, as a fresh process that made the same
    imports has them (``MADV_POPULATE_READ``, Linux ≥ 5.14: page-cache pages, no read from disk)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    MADV_POPULATE_READ = 22
    ok = True
    for addr, n in resident:  # a mapping that refuses (e.g. no read permission) stays as it is
        ok = libc.madvise(addr, n, MADV_POPULATE_READ) == 0 and ok
    return ok


def _child(req: dict, req_fd: int, evt_fd: int, resident: list, started: int, zygote: int) -> None:
    """The forked kernel: set up as ``python -m ipykernel_launcher`` in a fresh process would be, run it, exit.

    It dies with the zygote (``PR_SET_PDEATHSIG``; then a check that the zygote, ``zygote``'s pid, had not already
    gone before that call). Why not only ipykernel's parent poller (``parent_handle``): the poller reads the parent
    pid when its thread starts, a second or more into the kernel's start; a zygote killed before that left a kernel
    whose poller took the orphan's new parent for its own and which ran on forever (seen in the tests: a kernel
    killed with its zygote right after it started outlived it by 15 s). A retired zygote waits for its kernels,
    and one whose runner died kills them itself, so the signal only reaches the kernels of a zygote that was killed
    or crashed (and one whose start it had given up on)."""
    import ctypes
    import signal
    import traceback

    code = 1
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) != 0:  # PR_SET_PDEATHSIG (main(): Linux only)
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed: the kernel would not die with its zygote")
        if os.getppid() != zygote:
            os._exit(1)
        os.setsid()
        os.write(started, b"1")
        os.close(started)
        _map_again(resident)
        os.close(req_fd)
        os.close(evt_fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP):  # the zygote's dispositions are not a kernel's
            signal.signal(sig, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        if "numpy" in sys.modules:  # (Python's random re-seeds itself in a forked child: os.register_at_fork)
            sys.modules["numpy"].random.seed()
        import ipykernel_launcher
        from ipykernel import kernelapp

        sys.argv = [ipykernel_launcher.__file__, *req["argv"]]
        # the kernel stops if its parent goes: here the zygote, which exits when the runner does
        app = kernelapp.IPKernelApp.instance(parent_handle=os.getppid())
        app.initialize(req["argv"])
        app.start()
        code = 0
    except SystemExit as e:
        code = e.code
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    raise _KernelExit(code)


class _KernelExit(BaseException):
    """Raised by a forked kernel when it is done: it unwinds out of the zygote's loop to the module's end, where the
    child exits as the interpreter of a cold kernel does (``sys.exit``: non-daemon threads joined, then the atexit
    hooks, then the streams flushed). Hooks run while the kernel's threads still sent their last replies printed
    "Socket operation on non-socket" tracebacks after a Ctrl-C."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


if __name__ == "__main__":
    try:
        status = main(int(sys.argv[1]), int(sys.argv[2]))
    except _KernelExit as e:  # in a forked kernel only
        status = e.code
    sys.exit(status)
