"""Executing a notebook: the jupytext text in ``notebooks/`` through papermill.

papermill cannot read a jupytext ``.md`` (``NotJSONError``), so the text is converted with
jupytext's API first; :func:`ipynb` writes that conversion where a user can run plain papermill
on it. The notebook is executed into a temporary file next to its destination and renamed only
when the execution succeeded: a failed or interrupted run never leaves a notebook that looks
finished. What the notebook prints (notes, "resuming…", progress) goes to this terminal.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SOURCES = ROOT / "notebooks"


@functools.lru_cache(maxsize=None)
def _ipc_manager():
    from jupyter_client.manager import KernelManager
    from jupyter_client.utils import run_sync

    class IPCKernelManager(KernelManager):
        """The kernel talks to papermill over Unix sockets, not TCP on 127.0.0.1: no network needed,
        and no "running over TCP without encryption" warning on every run."""

        client_class = "lcstudy.pipeline.notebooks.WatchedKernelClient"

        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            # the sockets in a folder of their own under the temp dir: by default jupyter_client puts
            # them in the working directory (the repository), where a killed kernel leaves them behind
            kw.setdefault("ip", os.path.join(tempfile.mkdtemp(prefix="lcstudy-kernel-"), "ipc"))
            super().__init__(**kw)
            # the thread whose execute() started it: concurrent executions (the chapters) clean up their own
            self._lcstudy_owner = threading.get_ident()
            #: set by :func:`_interrupt_kernels_too` when a stop signal reached the kernel
            self.lcstudy_interrupted = False
            _LIVE.append(self)

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            """Warm where it can be (:mod:`lcstudy.pipeline.zygote`: forked from a process that has imported the
            study), cold as jupyter_client starts it otherwise."""
            from jupyter_client.provisioning import LocalProvisioner

            from . import zygote

            if type(self.provisioner) is LocalProvisioner:
                info = zygote.launch(self.provisioner, kernel_cmd, kw)
                if info is not None:
                    self._reconcile_connection_info(info)
                    return
            await super()._async_launch_kernel(kernel_cmd, **kw)

        _launch_kernel = run_sync(_async_launch_kernel)

        def shutdown_kernel(self, now: bool = False, restart: bool = False):
            """At once, unless a stop signal interrupted the kernel. papermill shuts a kernel down gracefully:
            it asks the kernel to quit and waits for its process to exit, and a process that holds torch takes
            0.5–1 s to tear down (`make bench-startup`: "kernel exit"), paid by every notebook. When the
            notebook has finished or failed, the kernel is idle: every cell, and every ``finally`` of the run,
            has ended and its files are written (atomically), so nothing is lost by stopping it at once. After
            Ctrl-C, SIGTERM or SIGHUP the kernel is still stopping its run and recording the interruption: then
            it is given papermill's graceful shutdown, as before."""
            return super().shutdown_kernel(now=now or not self.lcstudy_interrupted, restart=restart)

    return IPCKernelManager


@functools.lru_cache(maxsize=None)
def _watched_client():
    from jupyter_client.blocking.client import BlockingKernelClient
    from jupyter_client.channels import ZMQSocketChannel
    from traitlets import Type

    class WatchedChannel(ZMQSocketChannel):
        """A channel whose endless wait for a message ends when the kernel's process has ended."""

        #: set by :class:`WatchedKernelClient`: whether the kernel's process still runs
        lcstudy_alive = None

        def get_msg(self, timeout: float | None = None):
            from queue import Empty

            if timeout is not None or self.lcstudy_alive is None:
                return super().get_msg(timeout)
            while True:  # a message is returned the moment it arrives; the kernel's process is looked at each second
                try:
                    return super().get_msg(1.0)
                except Empty:
                    if not self.lcstudy_alive():
                        from nbclient.exceptions import DeadKernelError

                        try:  # what it sent just before it ended (a message may arrive between the wait and the look)
                            return super().get_msg(0)
                        except Empty:
                            pass
                        raise DeadKernelError("Kernel died (its process ended in the middle of a cell: out of "
                                              "memory, or a crash in a native library)") from None

    class WatchedKernelClient(BlockingKernelClient):
        """papermill's client, whose waits end when the kernel dies.

        Why: papermill executes with a synchronous kernel manager, so nbclient's coroutines run the blocking client's
        ``get_msg(timeout=None)``, which holds the event loop until a message comes; nbclient's once-a-second check
        that the kernel lives never got to run, and a kernel killed in the middle of a cell (the OOM killer, a crash in
        a native library, its zygote gone) left ``make book`` waiting for ever, cold or warm. An asynchronous manager
        lets that check run, but it also changes how a Ctrl-C unwinds (the graceful shutdown met the interrupted
        cell's reply in flight: 594b7a5, taken back). Here only the endless waits change: they wait a second at a
        time and look at the kernel's process in between (``poll``: the ``Popen`` of a cold kernel, the zygote's
        report for a warm one); a dead one raises nbclient's ``DeadKernelError``, and the notebook fails as any
        failed notebook does."""

        shell_channel_class = Type(WatchedChannel)
        iopub_channel_class = Type(WatchedChannel)

        def _lcstudy_alive(self) -> bool:
            if not hasattr(self.parent, "provisioner"):
                return True  # not a kernel manager's client: nothing to look at, it waits as the blocking client does
            proc = getattr(self.parent.provisioner, "process", None)  # None: shut down
            return proc is not None and proc.poll() is None

        @property
        def shell_channel(self):
            ch = super().shell_channel
            ch.lcstudy_alive = self._lcstudy_alive
            return ch

        @property
        def iopub_channel(self):
            ch = super().iopub_channel
            ch.lcstudy_alive = self._lcstudy_alive
            return ch

    return WatchedKernelClient


#: kernel managers started by :func:`execute` in this process, in any thread (to pass a Ctrl-C on to their kernels)
_LIVE: list = []
#: stop signals received while :func:`stop_signals_reach_kernels` was in force (a signal, not a stored exception)
_STOPS = 0


def _interrupt_kernels_too(signum, frame):
    """Ctrl-C (and SIGTERM, SIGHUP: :mod:`lcstudy.pipeline.signals`): interrupt the kernels first, then this
    process. jupyter_client starts a kernel in a
    session of its own, so the terminal's Ctrl-C never reaches it; without this, papermill's graceful
    shutdown waits while the kernel goes on measuring, and the run is not stopped where the user
    pressed Ctrl-C. The kernel's timing loop stops at once (its items are written atomically)."""
    import signal

    global _STOPS
    _STOPS += 1
    for km in list(_LIVE):
        km.lcstudy_interrupted = True  # its shutdown waits for it (IPCKernelManager.shutdown_kernel)
        pgid = getattr(getattr(km, "provisioner", None), "pgid", None)
        if pgid:
            try:
                os.killpg(pgid, signal.SIGINT)
            except OSError:
                pass
    raise KeyboardInterrupt


def __getattr__(name):
    if name == "IPCKernelManager":
        return _ipc_manager()
    if name == "WatchedKernelClient":
        return _watched_client()
    raise AttributeError(name)


def source(name: str) -> Path:
    return SOURCES / f"{name}.md"


def ipynb(name: str, dest: Path) -> Path:
    """The notebook ``name`` as ``.ipynb`` at ``dest`` (for running plain papermill on it)."""
    import jupytext
    import nbformat

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(jupytext.read(source(name)), dest)
    return dest


@contextlib.contextmanager
def stop_signals_reach_kernels():
    """While inside: Ctrl-C, SIGTERM and SIGHUP interrupt every kernel this process started (in any thread),
    then raise ``KeyboardInterrupt`` here. Only the main thread can install signal handlers; elsewhere this
    does nothing (the main thread's own use of it covers the kernels of its worker threads)."""
    import signal

    from .signals import STOP

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _interrupt_kernels_too) for s in STOP} if main else {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def execute(name: str, out: Path, parameters: dict, cwd: Path | None = None, echo: bool = True,
            timeout_s: int | None = None) -> Path:
    """Execute notebook ``name`` with ``parameters`` into ``out`` (atomically). Safe to call from several
    threads at once (:func:`lcstudy.pipeline.book.execute_chapters`): each call cleans up its own kernel."""
    import nbformat
    import papermill

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    me = threading.get_ident()
    try:
        with stop_signals_reach_kernels():
            _settle_event_loop()
            return _execute(papermill, nbformat, name, out, parameters, cwd, echo, timeout_s)
    except BaseException:
        _UNSETTLED.add(me)
        raise
    finally:
        import shutil

        mine = [km for km in list(_LIVE) if getattr(km, "_lcstudy_owner", None) == me]
        for km in mine:  # the kernels' socket folders (made in IPCKernelManager)
            folder = os.path.dirname(getattr(km, "ip", "") or "")
            if os.path.basename(folder).startswith("lcstudy-kernel-"):
                shutil.rmtree(folder, ignore_errors=True)
            _LIVE.remove(km)


#: threads whose last execution raised: their event loop may hold that execution's unfinished tasks
_UNSETTLED: set = set()


def _settle_event_loop() -> None:
    """Before a thread's next notebook: end what its last, failed or interrupted, execution left in its event loop.

    nbclient's synchronous calls run their coroutines on one event loop per thread (jupyter_core's ``run_sync``),
    kept for the thread's life. A stop signal raises ``KeyboardInterrupt`` inside whichever task is running, often
    nbclient's output poll; the cell's own task is left pending, waiting on it. The next notebook executed in the
    same thread (a test, a user of the notebook API) ran that loop again, the old task woke on the stored
    ``KeyboardInterrupt`` and raised it there: a second notebook failed with the first one's Ctrl-C (seen aborting the
    CI's test run). Here the leftovers are cancelled and run to their end first, their errors unheard (what they
    end with — the old ``KeyboardInterrupt``, nbclient's kernel check failing on a closed client — belongs to the
    execution that already failed and was reported). Done before the next execution, not after the failed one: a
    process that stops after a Ctrl-C (the runner) exits as before, without running or printing any of it. A stop
    signal that arrives while the leftovers end is the user's: it is raised."""
    import asyncio
    import gc

    me = threading.get_ident()
    if me not in _UNSETTLED:
        return
    _UNSETTLED.discard(me)
    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop()
    if loop.is_running() or loop.is_closed():
        return
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda loop, context: None)
    try:
        for _ in range(8):  # each round ends the tasks that waited on the ones cancelled before
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if not pending:
                break
            for t in pending:
                t.cancel()
            stops = _STOPS
            try:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            except BaseException:  # a task's stored KeyboardInterrupt, raised once more: it is done now
                if _STOPS != stops:
                    raise  # a stop signal meanwhile: the user's, not the old one

        pending = None
        gc.collect()  # the finished tasks go now, while their complaints are unheard
    finally:
        loop.set_exception_handler(handler)


def _execute(papermill, nbformat, name, out, parameters, cwd, echo, timeout_s) -> Path:
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".exec-{os.getpid()}-") as tmp:
        src = ipynb(name, Path(tmp) / "in.ipynb")
        dst = Path(tmp) / out.name
        papermill.execute_notebook(str(src), str(dst), parameters=parameters, cwd=str(cwd or ROOT),
                                   kernel_name="python3", progress_bar=False, log_output=False,
                                   kernel_manager_class="lcstudy.pipeline.notebooks.IPCKernelManager",
                                   stdout_file=sys.stdout if echo else None, stderr_file=sys.stderr if echo else None,
                                   execution_timeout=timeout_s)
        done = nbformat.read(dst, as_version=4)
        for cell in done.cells:  # papermill tags its injected cell only "injected-parameters": hide it
            tags = cell.metadata.setdefault("tags", [])
            if "injected-parameters" in tags and "remove-cell" not in tags:
                tags.append("remove-cell")
        nbformat.write(done, dst)
        os.replace(dst, out)
    return out


def failure_text(e: Exception) -> str:
    """The useful line of a notebook's failure: the exception's own message, not the traceback."""
    ename = getattr(e, "ename", None)
    evalue = getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
