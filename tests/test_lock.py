"""The machine lock: it really waits for the holder and then proceeds, refuses with NOWAIT, clears a
stale holder, is handed down to a child through its token, and every run takes it."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from lcstudy.runs.lock import Busy, held_by_parent, lock_path, timing_lock

HOLD = textwrap.dedent("""
    import sys, time
    from lcstudy.runs.lock import timing_lock
    with timing_lock("test holder", log=lambda *a: None, token=sys.argv[2] if len(sys.argv) > 2 else None):
        print("held", flush=True)
        time.sleep(float(sys.argv[1]))
    print("released", flush=True)
""")


def _holder(seconds: float, token: str | None = None):
    args = [sys.executable, "-c", HOLD, str(seconds)] + ([token] if token else [])
    p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert p.stdout.readline().strip() == "held"
    return p


def test_waits_for_the_holder_then_proceeds():
    holder = _holder(1.5)
    msgs = []
    t0 = time.monotonic()
    with timing_lock("second", wait=True, log=msgs.append, poll_s=0.05):
        waited = time.monotonic() - t0
        assert holder.poll() is not None or holder.stdout.readline().strip() == "released"
    holder.wait()
    assert 1.0 < waited < 10
    assert len(msgs) == 1 and "waiting" in msgs[0] and "test holder" in msgs[0] and "since" in msgs[0]


def test_nowait_refuses_and_a_killed_holder_is_stale():
    holder = _holder(600)
    with pytest.raises(Busy, match="test holder"):
        with timing_lock("second", wait=False, log=lambda *a: None):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    msgs = []
    with timing_lock("third", wait=True, log=msgs.append, poll_s=0.05):
        pass
    assert any("stale" in m for m in msgs)


def test_a_child_given_the_token_runs_inside_its_parent_lock(monkeypatch):
    """The pipeline holds the lock and hands it to the notebook's kernel; anyone else still waits."""
    holder = _holder(600, token="tok123")
    try:
        monkeypatch.setenv("LCSTUDY_LOCK_TOKEN", "tok123")
        assert held_by_parent() is not None
        with timing_lock("child", wait=False, log=lambda *a: None):
            pass  # no Busy: the lock is held for us
        monkeypatch.setenv("LCSTUDY_LOCK_TOKEN", "other")
        assert held_by_parent() is None
        with pytest.raises(Busy):
            with timing_lock("stranger", wait=False, log=lambda *a: None):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_every_run_takes_the_lock(small_png, tmp_path):
    """lcstudy.profile (and so every run notebook) holds the machine while it measures."""
    import lcstudy

    codec = lcstudy.load_codec("tests.fakecodec:FakeHyperprior", weights="random")
    img = small_png("a", 64, 64)
    seen = {}

    def probe():
        time.sleep(0.3)
        try:
            with timing_lock("probe", wait=False, log=lambda *a: None):
                seen["free"] = True
        except Busy as e:
            seen["busy"] = str(e)

    th = threading.Thread(target=probe)
    th.start()
    lcstudy.profile(codec, [img], repeats=3)
    th.join()
    assert "lcstudy.profile" in seen.get("busy", "")


def test_pause_cli(tmp_path):
    """`make pause` with no run holding the lock returns at once; `make resume` removes the request."""
    from lcstudy.runs.lock import pause_path

    out = subprocess.run([sys.executable, "-m", "lcstudy.runs.lock", "pause"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "no timing run holds the lock" in out.stdout
    assert pause_path().exists()
    st = subprocess.run([sys.executable, "-m", "lcstudy.runs.lock", "status"], capture_output=True, text=True)
    assert "pause requested" in st.stdout
    out = subprocess.run([sys.executable, "-m", "lcstudy.runs.lock", "resume"], capture_output=True, text=True)
    assert out.returncode == 0 and not pause_path().exists()
    assert lock_path().parent.exists()
