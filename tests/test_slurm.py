"""The study on a real SLURM cluster: a single-node slurm-wlm 22.05 started by the harness
(tests/slurm/up.sh, state in a temporary folder, stopped by pid files). Needs Debian's slurmctld,
slurmd, slurm-client, munge, slurmdbd and mariadb-server (.ci/run installs them)."""
import json
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import MIRROR, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.slurm,
              pytest.mark.skipif(shutil.which("slurmctld") is None or os.geteuid() != 0,
                                 reason="needs Debian's SLURM packages and root (.ci/run installs them)")]
HARNESS = ROOT / "tests" / "slurm"


@pytest.fixture(scope="module")
def cluster():
    import tempfile

    # not under pytest's tmp folder: that is root-only (0700), and MariaDB runs as the mysql user
    base = Path(tempfile.mkdtemp(prefix="lcstudy-slurm-", dir="/tmp"))
    base.chmod(0o755)
    env = {**os.environ, "BASE": str(base)}
    up = subprocess.run(["bash", str(HARNESS / "up.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    try:
        yield {**os.environ, "SLURM_CONF": str(base / "slurm.conf"), "LCSTUDY_MIRROR": str(MIRROR)}
    finally:
        subprocess.run(["bash", str(HARNESS / "down.sh")], env=env, capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def _make(env, *args, timeout=2400):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _sacct(env, job):
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "JobID,State"], env=env, capture_output=True,
                         text=True).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def _arrays(results):
    return [json.loads(f.read_text()) for f in sorted((Path(results) / ".slurm").glob("array-*.json"))]


def test_quick_book_on_slurm(cluster, tmp_path):
    """`make book PROFILE=quick EXECUTOR=slurm` end to end on a real SLURM: every kind of run the quick
    profile plans (a codec's main run, its deployment runs beside eager, the standard codecs' sweep) as
    tasks of one array, none overlapping on the node, the book built from them.

    Two codecs (a hyperprior and a context model), not all eight: the whole quick book is built by
    tests/test_book.py, and the other six codecs add 18 tasks of the same kinds, which took 16 of this
    test's 22 minutes on the AVX2 VM (with the CI at 79 of its 90 minutes)."""
    book = tmp_path / "book"
    book.mkdir()
    for f in ("_config.yml", "intro.md", "methodology.md"):
        shutil.copy(ROOT / "book" / f, book / f)
    env = {**cluster, "LCSTUDY_LOCK": str(tmp_path / "lock")}
    t0 = time.time()
    out = _make(env, "book", "PROFILE=quick", "EXECUTOR=slurm", f"BOOK={book}", f"RESULTS_DIR={tmp_path / 'results'}",
                "WEIGHTS=random", "CODECS=HP CKBD")
    wall = time.time() - t0
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(f"SLURM quick book: {wall:.0f} s")
    arrays = _arrays(tmp_path / "results")
    tasks = [(a["job"], t) for a in arrays for t in a["tasks"]]
    assert len(tasks) == 7  # 2 codecs, each also beside quick's 2 backends, + the standard codecs: the CPU array
    for job in {a["job"] for a in arrays}:
        assert set(_sacct(env, job).values()) == {"COMPLETED"}
    from lcstudy.runs.tidy import load_results

    runs = load_results(tmp_path / "results", "runs")
    assert len(runs) == 7 and runs.complete.all() and runs.slurm_jobs.astype(bool).all()
    assert set(runs.codec.dropna()) >= {"HP", "CKBD"} and runs.backend.nunique() == 3, runs
    spans = []
    for p in (tmp_path / "results").rglob("run.json"):
        for e in json.loads(p.read_text())["executions"]:
            spans.append((datetime.fromisoformat(e["started_utc"]), datetime.fromisoformat(e["finished_utc"])))
    spans.sort()
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        assert s2 >= e1, "two timing runs overlapped on the node"
    html = book / "_build" / "html"
    pages = {p.name for p in html.glob("*.html")}
    assert {"assessment.html", "paper_comparison.html", "flops_runtime.html", "rd_frontier.html",
            "standard_codecs.html", "scaling.html"} <= pages
    assert len(list((html / "runs").rglob("*.html"))) == 7


def test_scancel_then_resubmit_resumes(cluster, tmp_path):
    """A run cancelled part-way and submitted again resumes at its first unfinished image: none lost,
    none measured twice."""
    env = {**cluster, "LCSTUDY_LOCK": str(tmp_path / "lock")}
    res = tmp_path / "results"
    args = ("runs", "PROFILE=quick", "EXECUTOR=slurm", "CODECS=DGM", "BACKENDS=none", "LIMIT=6", "WEIGHTS=random",
            f"RESULTS_DIR={res}")  # one run (no deployment runs beside it): the one cancelled and resubmitted
    out = _make(env, *args, "SLURM_WAIT=0")
    assert out.returncode == 0, out.stderr[-2000:]
    job = _arrays(res)[0]["job"]
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip().split(".")[0]
    dgm = res / host / "cpu" / "DGM-q1"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(dgm.rglob("items/*.json"))) < 2:
        time.sleep(0.2)
    assert len(list(dgm.rglob("items/*.json"))) >= 2
    subprocess.run(["scancel", job], env=env, check=True)
    while time.time() < deadline and any(v in ("RUNNING", "PENDING") for v in _sacct(env, job).values()):
        time.sleep(0.5)
    done_before = {f.name: f.read_bytes() for f in dgm.rglob("items/*.json")}
    assert 2 <= len(done_before) < 6, "the run should have been cancelled part-way"
    out = _make(env, *args)  # resubmit and wait
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    files = list(dgm.rglob("items/*.json"))
    assert len(files) == 6 and len({f.name for f in files}) == 6
    for f in files:
        if f.name in done_before:
            assert f.read_bytes() == done_before[f.name]  # finished images were not measured again
    meta = json.loads(next(dgm.rglob("run.json")).read_text())
    assert meta["complete"] and len(meta["executions"]) == 2
    assert len({e["slurm_job"] for e in meta["executions"]}) == 2


def test_a_failed_run_is_reported_with_its_log_and_the_others_go_on(cluster, tmp_path):
    env = {**cluster, "LCSTUDY_LOCK": str(tmp_path / "lock")}
    codecs = tmp_path / "codecs.toml"
    codecs.write_text('[[codec]]\nlabel = "BROKEN"\nclass = "tests.fakecodec:Broken"\n[codec.qualities]\n1 = {}\n')
    res = tmp_path / "results"
    args = ("PROFILE=quick", "EXECUTOR=slurm", "CODECS=HP BROKEN", "BACKENDS=none", "WEIGHTS=random",
            f"RESULTS_DIR={res}", f"CODECS_FILE={codecs}")
    out = _make(env, "runs", *args)
    assert out.returncode != 0
    err = [ln for ln in out.stderr.splitlines() if "BROKEN" in ln]
    assert err and "FAILED" in err[0] and ".slurm/logs/" in err[0], out.stderr[-2000:]
    log = Path(err[0].rsplit("log ", 1)[1])
    assert "cannot be built" in log.read_text()
    from lcstudy.runs.tidy import load_results

    runs = load_results(res, "runs")
    assert sorted(runs.codec) == ["HP", "standard"] and runs.complete.all()  # the standard codecs are planned too
    miss = subprocess.run([".venv/bin/python", "-m", "lcstudy.pipeline", "missing", "--profile", "quick",
                           "--codecs", "HP BROKEN", "--backends", "none", "--results-dir", str(res), "weights=random"], cwd=ROOT,
                          env={**env, "LCSTUDY_CODECS": str(codecs)}, capture_output=True, text=True)
    assert miss.returncode == 1 and "1 of 3 planned runs have no results" in miss.stderr and "BROKEN" in miss.stderr


def test_without_slurm_it_fails_at_once_naming_the_fix(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no sbatch anywhere
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "lcstudy.pipeline", "runs", "--profile", "quick",
                          "--executor", "slurm", "--results-dir", str(tmp_path / "r")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "module load slurm" in out.stderr and "Nothing was submitted" in out.stderr
    assert not (tmp_path / "r").exists()
