"""What the Makefile promises, executed at a tiny size: runs are never redone, two runs queue, NOWAIT
refuses, pause/resume, Ctrl-C, the THREADS/RESIZE/MACS variables, PROFILE honoured, results of two
machines merged, and plain papermill from another folder."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import KODAK, MIRROR, ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "LCSTUDY_MIRROR": str(MIRROR), "LCSTUDY_LOCK": str(tmp_path / "lock")}


@pytest.fixture
def imgs(tmp_path, small_png):
    folder = tmp_path / "imgs"
    for k in range(2):
        small_png(f"im{k}", 96, 128, seed=k, folder=folder)
    return folder


def make(env, *args, timeout=900, **kw):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def _results(path, table="timings"):
    from lcstudy.runs.tidy import load_results

    return load_results(path, table)


def test_runs_twice_executes_nothing_the_second_time(env, imgs, tmp_path):
    # CROP=0: the images are smaller than the quick profile's 256² crop (which would be refused)
    args = ("runs", "PROFILE=quick", "CODECS=FP", "BACKENDS=none", f"IMAGES={imgs}", "CROP=0", "WEIGHTS=random",
            f"RESULTS_DIR={tmp_path / 'r'}")
    first = make(env, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 to run" in first.stdout and first.stdout.count(">>> ") == 2
    notebooks = {p: p.stat().st_mtime_ns for p in (tmp_path / "r").rglob("notebook.ipynb")}
    assert len(notebooks) == 2
    second = make(env, *args)
    assert second.returncode == 0 and "2 already measured, 0 to run" in second.stdout and ">>> " not in second.stdout
    assert {p: p.stat().st_mtime_ns for p in notebooks} == notebooks
    for out in (first, second):
        assert "gpuGetDeviceCount" not in out.stdout + out.stderr  # no CUDA noise on a CPU-only run


def test_two_runs_at_once_queue_and_nowait_refuses(env, tmp_path):
    r = tmp_path / "r"
    base = ["run", "CODEC=HP", "PROFILE=quick", "WEIGHTS=random", f"RESULTS_DIR={r}"]
    first = subprocess.Popen(["make", "--no-print-directory", *base, "SEED=1"], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not Path(env["LCSTUDY_LOCK"]).exists():
        time.sleep(0.1)
    time.sleep(1.0)  # the first holds the machine now (before its kernel starts)
    refused = make(env, *base, "SEED=2", "NOWAIT=1", timeout=120)
    assert refused.returncode != 0 and "another timing run holds this machine" in refused.stderr
    second = make(env, *base, "SEED=2", timeout=600)
    out1, err1 = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, err1[-2000:] + second.stderr[-2000:]
    assert "waiting: another timing run holds this machine: HP-q1-seed1" in second.stderr
    runs = _results(r, "runs").set_index("seed")
    assert runs.loc[1, "contended"] == 0  # the first run's samples were not disturbed by the second
    assert runs.loc[2, "started_utc"] >= runs.loc[1, "finished_utc"]


def test_pause_and_resume_a_running_run(env, tmp_path):
    r = tmp_path / "r"
    run = subprocess.Popen(["make", "--no-print-directory", "run", "CODEC=DGM", "PROFILE=quick", "LIMIT=5",
                            "WEIGHTS=random", f"RESULTS_DIR={r}"], cwd=ROOT, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not list(r.rglob("items/*.json")):
        time.sleep(0.2)
    p = make(env, "pause", timeout=300)
    assert p.returncode == 0 and "paused: the timing run is waiting" in p.stderr + p.stdout
    n = len(list(r.rglob("items/*.json")))
    time.sleep(3)
    assert len(list(r.rglob("items/*.json"))) == n  # it really waits
    assert make(env, "resume").returncode == 0
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-2000:]
    assert len(list(r.rglob("items/*.json"))) == 5
    assert "paused" in out + err and "resumed" in out + err


def test_ctrl_c_says_how_to_resume(env, tmp_path):
    r = tmp_path / "r"
    cmd = [sys.executable, "-m", "lcstudy.pipeline", "run", "--results-dir", str(r), "codec=DGM", "profile=quick",
           "limit=6", "weights=random", f"images={KODAK}"]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(r.rglob("items/*.json"))) < 2:
        time.sleep(0.1)
    os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130
    lines = [ln for ln in err.splitlines() if ln.strip() and "item/s" not in ln and "%|" not in ln]
    assert "Traceback" not in err
    assert lines[-1].startswith("interrupted; rerun the same command to resume at item ")
    assert not list(r.rglob("notebook.ipynb"))
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "resuming run" in again.stdout + again.stderr
    assert len(list(r.rglob("items/*.json"))) == 6


def test_make_run_variables_threads_resize_macs(env, imgs, tmp_path):
    r = tmp_path / "r"
    out = make(env, "run", "CODEC=FP", f"IMAGES={imgs}", "LIMIT=1", "THREADS=1", "RESIZE=128x64", "MACS=false",
               "KERNELS=false", "REPEATS=2", "WEIGHTS=random", f"RESULTS_DIR={r}")
    assert out.returncode == 0, out.stderr[-2000:]
    t = _results(r)
    assert set(t.threads) == {1} and set(t.height) == {64} and set(t.width) == {128} and set(t.n_samples) == {2}
    assert t.label.iloc[0] == "FP-q1-threads1-limit1-128x64-repeats2"
    assert _results(r, "complexity").empty and _results(r, "kernels").empty
    assert "synthetic 128×64" in " ".join(json.loads(next(r.rglob("items/*.json")).read_text())["notes"])


def test_make_run_honours_the_profile(env, tmp_path):
    r = tmp_path / "r"
    out = make(env, "run", "CODEC=FP", "PROFILE=quick", "WEIGHTS=random", "KERNELS=false", "MACS=false",
               f"RESULTS_DIR={r}")
    assert out.returncode == 0, out.stderr[-2000:]
    t = _results(r)
    assert t.image.nunique() == 2 and set(t.height) == {256} and set(t.profile) == {"quick"}
    bad = make(env, "run", "CODEC=FP", "PROFILE=fast", f"RESULTS_DIR={tmp_path / 'b'}", timeout=120)
    assert bad.returncode != 0 and "unknown profile 'fast'" in bad.stderr and not (tmp_path / "b").exists()


def test_two_platforms_merged_into_one_book(env, imgs, tmp_path):
    """Results copied in from another machine (another CPU): both platforms in the machines table and
    the chapters, nothing rerun."""
    r = tmp_path / "r"
    assert make(env, "run", "CODEC=HP", f"IMAGES={imgs}", "REPEATS=1", "WEIGHTS=random", "KERNELS=false",
                f"RESULTS_DIR={r}").returncode == 0
    run = next(r.rglob("run.json")).parent
    other = r / "gpubox" / "cpu" / run.parent.name / "0badc0ffee00"
    shutil.copytree(run, other)
    meta = json.loads((other / "run.json").read_text())
    meta["run_id"] = "0badc0ffee00"
    meta["environ"].update(host="gpubox", cpu_model="Other CPU 9000", platform="Other CPU 9000, 16 cores, 16 thr",
                           threads=16, cpu_count=16)
    (other / "run.json").write_text(json.dumps(meta))
    for item in (other / "items").glob("*.json"):  # each item names the node that measured it
        rec = json.loads(item.read_text())
        rec["node"] = "gpubox"
        item.write_text(json.dumps(rec))
    book = tmp_path / "book"
    book.mkdir()
    for f in ("_config.yml", "intro.md", "methodology.md"):
        shutil.copy(ROOT / "book" / f, book / f)
    out = make(env, "data", "chapters", "html", f"BOOK={book}", f"RESULTS_DIR={r}")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    intro = (book / "_build" / "html" / "intro.html").read_text()
    assert "Other CPU 9000, 16 cores, 16 thr" in intro and "gpubox" in intro
    assessment = (book / "_build" / "html" / "assessment.html").read_text()
    assert "Other CPU 9000" in assessment


def test_papermill_from_another_folder(env, tmp_path):
    out = make(env, "notebooks", "data")
    assert out.returncode == 0, out.stderr[-2000:]
    nb = ROOT / "book" / "_generated" / "notebooks" / "profile_codec.ipynb"
    res = tmp_path / "r"
    pm = subprocess.run([str(ROOT / ".venv" / "bin" / "papermill"), str(nb), str(tmp_path / "out.ipynb"),
                         "-p", "codec", "FP", "-p", "profile", "quick", "-p", "weights", "random", "-p", "kernels",
                         "False", "-p", "results_dir", str(res)], cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=600)
    assert pm.returncode == 0, pm.stderr[-3000:]
    assert _results(res).image.nunique() == 2  # the default images (data/kodak) found from another folder
