"""Executing notebooks concurrently (the chapters, lcstudy.pipeline.book.execute_chapters): each execution
cleans up its own kernel only, a Ctrl-C reaches every kernel still running, and a failed chapter does not
stop the others."""
import os
import signal
import threading
import time

import pytest

from lcstudy.pipeline import book, notebooks

NOTEBOOK = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

```{{code-cell}} ipython3
:tags: [parameters]

marker = ""
```

```{{code-cell}} ipython3
import pathlib, time
pathlib.Path(marker).write_text("started")
time.sleep({sleep})
```
"""


@pytest.fixture
def sources(tmp_path, monkeypatch):
    src = tmp_path / "notebooks"
    src.mkdir()
    (src / "short.md").write_text(NOTEBOOK.format(sleep=0.5))
    (src / "long.md").write_text(NOTEBOOK.format(sleep=120))
    monkeypatch.setattr(notebooks, "SOURCES", src)
    return tmp_path


def _wait_for(path, timeout=60):
    t0 = time.monotonic()
    while not path.exists():
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.1)


def test_ctrl_c_reaches_a_kernel_whose_neighbour_finished_first(sources):
    """Two notebooks at once; the short one ends first. Its cleanup must leave the long one's kernel known,
    so that a Ctrl-C still interrupts it (before each execution cleaned up its own, the first to end forgot
    every kernel, and the long one measured on for its full two minutes)."""
    from concurrent.futures import ThreadPoolExecutor

    out = sources / "out"
    errors = {}
    with notebooks.stop_signals_reach_kernels():
        pool = ThreadPoolExecutor(2)
        try:
            fa = pool.submit(notebooks.execute, "short", out / "a.ipynb", {"marker": str(sources / "a")}, echo=False)
            fb = pool.submit(notebooks.execute, "long", out / "b.ipynb", {"marker": str(sources / "b")}, echo=False)
            fa.result(timeout=120)
            _wait_for(sources / "b")
            assert len(notebooks._LIVE) == 1  # the long one's, and only it
            t0 = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(30)
            try:
                fb.result(timeout=60)
            except Exception as e:  # noqa: BLE001
                errors["b"] = e
            elapsed = time.monotonic() - t0
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    assert (out / "a.ipynb").exists() and not (out / "b.ipynb").exists()
    assert getattr(errors.get("b"), "ename", None) == "KeyboardInterrupt", errors
    assert elapsed < 30
    assert notebooks._LIVE == []


EXITS = NOTEBOOK.replace('pathlib.Path(marker).write_text("started")',
                         'import atexit, os\n'
                         'atexit.register(lambda: pathlib.Path(marker + ".exit").write_text("graceful"))\n'
                         # the pid written whole before the marker appears: a Ctrl-C sent as soon as it exists
                         # must not land between the file's creation and its write (CI read an empty marker once)
                         'pathlib.Path(marker + ".tmp").write_text(str(os.getpid()))\n'
                         'os.replace(marker + ".tmp", marker)')


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_finished_kernel_is_stopped_at_once_an_interrupted_one_gracefully(sources):
    """A notebook that finished has its kernel stopped at once: the 0.5–1 s a process holding torch takes to
    tear down is not waited for (its atexit hooks do not run). A notebook stopped by Ctrl-C has its kernel
    shut down gracefully, as papermill does, so that the run can record its interruption (the atexit hook
    runs). Seen failing with ``IPCKernelManager.shutdown_kernel`` removed (the finished kernel ran its hook)."""
    (sources / "notebooks" / "exits.md").write_text(EXITS.format(sleep=0.1))
    (sources / "notebooks" / "exits_long.md").write_text(EXITS.format(sleep=120))
    out = sources / "out"
    notebooks.execute("exits", out / "a.ipynb", {"marker": str(sources / "a")}, echo=False)
    pid = int((sources / "a").read_text())
    assert not _alive(pid) and not (sources / "a.exit").exists()

    with notebooks.stop_signals_reach_kernels():
        def stop():
            _wait_for(sources / "b")
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=stop, daemon=True).start()
        with pytest.raises(BaseException) as e:  # the run's KeyboardInterrupt, or the kernel's, as papermill saw it
            notebooks.execute("exits_long", out / "b.ipynb", {"marker": str(sources / "b")}, echo=False)
            time.sleep(60)
    assert "KeyboardInterrupt" in repr(e.value) or e.type is KeyboardInterrupt
    assert (sources / "b.exit").read_text() == "graceful" and not _alive(int((sources / "b").read_text()))
    assert notebooks._LIVE == [] and not (out / "b.ipynb").exists()
    # the next notebook in this thread runs: what the interrupted one left in the thread's event loop is cancelled
    # (it woke in the next execution and raised the old KeyboardInterrupt there: seen aborting the CI's test run,
    # and this test failing with ``notebooks._settle_event_loop`` not called)
    import asyncio

    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop()
    assert [t for t in asyncio.all_tasks(loop) if not t.done()], "no leftovers: the next execution tests nothing"
    notebooks.execute("exits", out / "c.ipynb", {"marker": str(sources / "c")}, echo=False)
    assert (out / "c.ipynb").exists() and ensure_event_loop() is loop
    assert not [t for t in asyncio.all_tasks(loop) if not t.done()]


DIES = NOTEBOOK.replace('pathlib.Path(marker).write_text("started")\ntime.sleep({sleep})',
                       'import os, signal\npathlib.Path(marker).write_text(str(os.getppid()))\nos.kill(os.getpid(), signal.SIGKILL)')


@pytest.mark.parametrize("warm", ["0", "1"])
def test_a_kernel_that_dies_fails_its_notebook_instead_of_hanging(sources, monkeypatch, warm):
    """A kernel killed in the middle of a cell (the OOM killer, a crash in a native library, its zygote gone) fails
    its notebook within seconds, cold or warm (lcstudy.pipeline.zygote), and leaves no notebook that looks
    finished. Seen failing (hung past 90 s, cold and warm) with papermill's blocking client, which waited for the
    dead kernel's output for ever (without ``IPCKernelManager.client_class``)."""
    from lcstudy.pipeline import zygote

    zygote.stop()
    monkeypatch.setenv("LCSTUDY_WARM_KERNEL", warm)
    (sources / "notebooks" / "dies.md").write_text(DIES.format())
    out = sources / "out" / "dies.ipynb"
    failure = {}

    def go():
        try:
            notebooks.execute("dies", out, {"marker": str(sources / "d")}, echo=False)
        except BaseException as e:  # noqa: BLE001
            failure["e"] = e

    t0 = time.monotonic()
    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    worker.join(90)
    assert not worker.is_alive(), "the notebook of a dead kernel was waited for"
    try:
        assert time.monotonic() - t0 < 30  # a kernel start, the cell, then a second or two
        parent = int((sources / "d").read_text())
        assert parent == (zygote._ZYGOTE.proc.pid if warm == "1" else os.getpid()), "not the kernel kind meant"
        assert type(failure.get("e")).__name__ == "DeadKernelError" and "native library" in str(failure["e"]), failure
        assert not out.exists()
    finally:
        zygote.stop()


def test_chapters_run_concurrently_and_a_failure_stops_none(monkeypatch, tmp_path, capsys):
    """The chapters run ``jobs`` at a time; a failed one is named and the exit status is 1, the others are
    written. (With the real chapters, tests/test_book.py builds the quick book this way.)"""
    from lcstudy.chapters import CHAPTERS

    running, peak, lock = set(), [0], threading.Lock()

    def fake_execute(name, out, params, echo=True, **kw):
        with lock:
            running.add(name)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.3)
        with lock:
            running.discard(name)
        if name == CHAPTERS[0].name:
            raise RuntimeError("broken chapter")
        out.write_text("{}")
        return out

    monkeypatch.setattr(notebooks, "execute", fake_execute)
    monkeypatch.setenv("LCSTUDY_BOOK", str(tmp_path))
    rc = book.execute_chapters(tmp_path / "results", tmp_path / "reference", jobs=2)
    err = capsys.readouterr().err
    assert rc == 1 and f"the {CHAPTERS[0].name} chapter failed: RuntimeError: broken chapter" in err
    assert peak[0] == 2
    assert all((tmp_path / f"{c.name}.ipynb").exists() for c in CHAPTERS[1:])


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_chapter_jobs_is_refused_before_any_work(monkeypatch, value):
    from lcstudy.errors import InputError

    monkeypatch.setenv("LCSTUDY_CHAPTER_JOBS", value)
    with pytest.raises(InputError, match="CHAPTER_JOBS"):
        book.chapter_jobs()
