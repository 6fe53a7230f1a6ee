"""A busy machine, an interrupted run, an odd parameter: one clear outcome each (issue 26).

Contention is injected (``LCSTUDY_TEST_CONTENDED``, a test hook of :mod:`lcstudy.runs.protocol`): the other
items then read as quiet, so these tests do not depend on what else loads the machine they run on."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lcstudy
from lcstudy.errors import InputError

from .conftest import MIRROR, ROOT

FAKE = "tests.fakecodec:FakeHyperprior"


@pytest.fixture
def contended(monkeypatch):
    def inject(pattern: str):
        monkeypatch.setenv("LCSTUDY_TEST_CONTENDED", pattern)
        monkeypatch.setenv("LCSTUDY_CONTENDED_WAIT", "0")
    return inject


@pytest.fixture
def imgs(tmp_path, small_png):
    folder = tmp_path / "imgs"
    for k in range(2):
        small_png(f"im{k}", 64, 64, seed=k, folder=folder)
    return folder


def test_api_all_contended_item_retried_then_named_and_workbooks_of_the_rest(contended, imgs, tmp_path):
    contended("im0")
    codec = lcstudy.load_codec(FAKE, weights="random")
    said = []
    df = lcstudy.profile(codec, imgs, repeats=2, warmup=0, results_dir=tmp_path / "r", log=said.append)
    rec = json.loads(next((tmp_path / "r").rglob("items/im0.json")).read_text())
    assert rec["stop"] == "contended" and rec["contended_rounds"] == 3  # measured, then retried twice
    assert sum("retry" in s for s in said) == 2
    last = said[-1]
    assert last.startswith("note: incomplete:") and "1 of 2 item(s)" in last and "(im0;" in last
    assert "exit status 3" in last
    meta = json.loads(next((tmp_path / "r").rglob("run.json")).read_text())
    assert meta["complete"] is False and meta["contended_items"] == ["im0"]
    files = lcstudy.write_reports(df, tmp_path / "out")  # no KeyError: the measured image only
    import pandas as pd

    per_image = pd.read_excel(files[0], sheet_name="Per Image")
    assert list(per_image.Image) == ["im1.png"]
    contended("*")
    df = lcstudy.profile(codec, imgs, repeats=1, warmup=0, results_dir=tmp_path / "r2", log=said.append)
    with pytest.raises(InputError, match="nothing was measured: every repeat of every item was contended"):
        lcstudy.write_reports(df, tmp_path / "out2")


def test_run_page_of_an_all_contended_run_names_the_items(contended, imgs, tmp_path):
    from lcstudy.chapters import run_page
    from lcstudy.runs import learned

    contended("*")
    r = learned.run(codec=FAKE, weights="random", images=str(imgs), repeats=1, warmup=0, kernels=False, macs=False,
                    results_dir=str(tmp_path / "r"), progress=False, log=lambda s: None)
    page = run_page.build(r)  # no "no numeric data to plot"
    assert "```{warning}\nIncomplete:" in page.header and "im0, im1" in page.header
    assert not page.parts


def make(env, *args, timeout=1800):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_make_run_and_make_book_with_an_all_contended_item(imgs, tmp_path):
    """One item contended throughout: `make run` and `make book` write what was measured, name the item,
    exit with the pipeline's status 3 (make: "Error 3"), no traceback; the next `make run` measures only it."""
    env = {**os.environ, "LCSTUDY_MIRROR": str(MIRROR), "LCSTUDY_LOCK": str(tmp_path / "lock"),
           "LCSTUDY_TEST_CONTENDED": "*im0*", "LCSTUDY_CONTENDED_WAIT": "0"}
    r = tmp_path / "r"
    common = [f"IMAGES={imgs}", "CROP=0", "WEIGHTS=random", "REPEATS=1", f"RESULTS_DIR={r}"]
    run = make(env, "run", "CODEC=FP", "KERNELS=false", "MACS=false", *common)
    assert run.returncode == 2 and "Error 3" in run.stderr, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    said = [ln for ln in run.stderr.splitlines() if ln.startswith("incomplete:")]
    assert len(said) == 1 and "1 of 2 item(s)" in said[0] and "(im0;" in said[0]
    nb = next(r.rglob("notebook.ipynb")).read_text()
    assert "Incomplete: FP-q1" in nb and "TypeError" not in nb
    book = tmp_path / "book"
    book.mkdir()
    for f in ("_config.yml", "intro.md", "methodology.md"):
        shutil.copy(ROOT / "book" / f, book / f)
    out = make(env, "book", "PROFILE=quick", "CODECS=FP", f"BOOK={book}", *common)
    err = out.stderr
    assert out.returncode == 2 and "Error 3" in err, (out.stdout[-3000:], err[-3000:])
    assert "Traceback" not in err and "KeyError" not in err
    assert (book / "_build" / "html" / "index.html").exists()
    index = (book / "_build" / "html" / "runs_index.html").read_text()
    assert "Incomplete runs" in index and "im0" in index
    tail = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("make")]
    assert tail[-1].startswith("incomplete: 2 run(s)") and "The book names the missing items" in tail[-1]
    env.pop("LCSTUDY_TEST_CONTENDED")
    again = make(env, "run", "CODEC=FP", "KERNELS=false", "MACS=false", *common)
    assert again.returncode == 0 and "resuming run" in again.stdout + again.stderr, again.stderr[-2000:]
