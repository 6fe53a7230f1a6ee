"""End to end: `make book PROFILE=quick` with the mirror, into a temporary folder, with -W."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import MIRROR, ROOT


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    book = tmp / "book"
    book.mkdir()
    for f in ("_config.yml", "intro.md", "methodology.md"):
        shutil.copy(ROOT / "book" / f, book / f)
    env = {**os.environ, "LCSTUDY_MIRROR": str(MIRROR), "LCSTUDY_LOCK": str(tmp / "lock")}
    out = subprocess.run(["make", "--no-print-directory", "book", "PROFILE=quick", f"BOOK={book}",
                          f"RESULTS_DIR={tmp / 'results'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=3600)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    return tmp, out


def test_book_has_assessment_runs_and_downloads(built):
    tmp, out = built
    html = tmp / "book" / "_build" / "html"
    assert (html / "index.html").exists()
    intro = (html / "intro.html").read_text()  # the machines table and the build's cost, from the results
    assert "peak matmul GFLOP/s" in intro and "9 run notebooks took" in intro and "timed encodes and" in intro
    page = (html / "assessment.html").read_text()
    assert len(re.findall(r"<img [^>]*src=\"_images/", page)) >= 4  # the assessment's figures
    assert "random" in page and "Warning" in page  # the weights disclosure
    runs = sorted((html / "runs").rglob("*.html"))
    assert len(runs) == 9, runs  # 8 codecs + the standard codecs
    for r in runs:
        assert "<img" in r.read_text()
    for chapter in ("paper_comparison", "flops_runtime", "rd_frontier", "standard_codecs", "scaling"):
        page = (html / f"{chapter}.html").read_text()
        assert "<table" in page and "Traceback" not in page, chapter
        if chapter != "paper_comparison":  # tables only there
            assert "<img" in page, chapter
    std = (html / "standard_codecs.html").read_text()
    assert "encode_x_JPEG" in std and "HEVC (x265)" in std
    assert "x265 HEIC (ours)" in (html / "rd_frontier.html").read_text()
    names = {p.name for p in (html / "_downloads").rglob("*") if p.is_file()}
    assert {"All_enc_report_CPU.xlsx", "All_dec_report_CPU.xlsx", "lcstudy_timings.csv",
            "lcstudy_flops_runtime.xlsx", "lcstudy_standard_codecs.xlsx", "lcstudy_scaling.xlsx",
            "lcstudy_rd_frontier.xlsx", "lcstudy_paper_comparison.xlsx"} <= names
    data = (html / "data.html").read_text()
    assert "All_enc_report_CPU.xlsx" in data and "_downloads/" in data
    assert "book:" in out.stdout


def test_cost_table(built):
    tmp, _ = built
    env = {**os.environ, "LCSTUDY_MIRROR": str(MIRROR)}
    out = subprocess.run(["make", "--no-print-directory", "cost", f"BOOK={tmp / 'book'}",
                          f"RESULTS_DIR={tmp / 'results'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"total: ([0-9.]+) h over (\d+) notebooks", out.stdout)
    assert m and int(m.group(2)) == 9 and float(m.group(1)) > 0, out.stdout[-2000:]
    m = re.search(r"codec work / image wall over (\d+) images .*= ([0-9.]+)%", out.stdout)
    assert m and 0 < float(m.group(2)) < 100, out.stdout[-2000:]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium not installed (.ci/run installs it)")
def test_check_html_offline(built):
    tmp, _ = built
    out = subprocess.run(["make", "--no-print-directory", "check-html", f"BOOK={tmp / 'book'}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp / "book" / "_build" / "screenshots" / "assessment.png").stat().st_size > 10_000


def test_check_html_catches_external_requests(tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium not installed")
    from lcstudy.checkhtml import chromium, load

    page = tmp_path / "p.html"
    page.write_text('<html><head><script src="https://cdn.example.org/x.js"></script></head><body>x</body></html>')
    ok = tmp_path / "ok.html"
    ok.write_text("<html><body>offline</body></html>")
    assert load(chromium(), page, None, tmp_path) == ["https://cdn.example.org/x.js"]
    assert load(chromium(), ok, None, tmp_path) == []
