"""End to end: `make book PROFILE=quick`, with a user's own codec registered, into a temporary folder,
built with -W; then the book read as a researcher would: findings on every chapter traceable to the
downloaded tables, tables without index columns or snake_case headers, the own codec in the tables,
`make cost`, and the offline Chromium check."""
import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from lcstudy.chapters import CHAPTERS
from lcstudy.chapters.columns import COLUMNS, snake_headers

from .conftest import KODAK, MIRROR, ROOT, has_cuda, write_tiny_codecs_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    book = tmp / "book"
    book.mkdir()
    for f in ("_config.yml", "intro.md", "methodology.md"):
        shutil.copy(ROOT / "book" / f, book / f)
    # the user's path: train the example codec (CompressAI train.py's checkpoint format), register it
    ck = tmp / "tiny-q1.pth.tar"
    tr = subprocess.run([sys.executable, "train_tiny.py", "--images", str(KODAK), "--steps", "3", "--out", str(ck)],
                        cwd=ROOT / "examples", capture_output=True, text=True, timeout=300)
    assert tr.returncode == 0, tr.stderr[-2000:]
    codecs = write_tiny_codecs_file(tmp / "codecs.toml", ck, title="Tiny scale hyperprior (the example)",
                                    citation="after Ballé et al. 2018")
    # WEIGHTS=auto: the registered checkpoint for TINY; for the built-in codecs the zoo is made unreachable (a
    # closed loopback port), so the tests use seeded random weights whatever the machine's network
    env = {**os.environ, "LCSTUDY_MIRROR": str(MIRROR), "LCSTUDY_LOCK": str(tmp / "lock"),
           "LCSTUDY_WEIGHTS_URL": "http://127.0.0.1:9"}
    import time

    t0 = time.time()
    out = subprocess.run(["make", "--no-print-directory", "book", "PROFILE=quick", f"BOOK={book}",
                          f"RESULTS_DIR={tmp / 'results'}", f"CODECS_FILE={codecs}", "WEIGHTS=auto"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    print(f"quick book: {time.time() - t0:.0f} s")
    return tmp, out, env


def test_book_shape(built):
    tmp, out, _ = built
    html = tmp / "book" / "_build" / "html"
    assert (html / "index.html").exists() and "book:" in out.stdout
    devices = 2 if has_cuda() else 1
    runs = sorted((html / "runs").rglob("*.html"))
    # 9 codecs (8 + TINY) per device, each also beside quick's backends (onnxruntime: CPU only; channels_last)
    # + the standard codecs
    assert len(runs) == 9 * 3 + (9 * 2 if has_cuda() else 0) + 1, runs
    titles = set()
    for r in runs:
        text = r.read_text()
        assert "<img" in text
        title = re.search(r"<h1>(.*?)<", text).group(1).strip()
        titles.add(title)
        # an onnxruntime run's operator profile: its transforms' operators are ONNX Runtime's, outside torch's
        ort_said = "the transforms' ONNX Runtime operators" in text.replace("’", "'")
        assert ort_said == ("· onnxruntime" in title), (r, title)
    assert len(titles) == len(runs) and "Standard codecs on cpu" in " ".join(titles), titles  # titled by their run
    intro = (html / "intro.html").read_text()
    assert "peak matmul (GFLOP/s" in intro and "of measurement wall time" in intro and "What this shows" in intro
    for c in CHAPTERS:
        page = (html / f"{c.name}.html").read_text()
        assert "What this shows" in page and "<table" in page and "Traceback" not in page, c.name
        if c.name != "paper_comparison":
            assert "<img" in page, c.name
    assessment = (html / "assessment.html").read_text()
    assert "TINY" in assessment and "checkpoint tiny-q1.pth.tar (sha256" in assessment
    assert "random (seed 0)" in assessment and "Warning" in assessment  # the weights, said
    names = {p.name for p in (html / "_downloads").rglob("*") if p.is_file()}
    assert {"All_enc_report_CPU.xlsx", "lcstudy_timings.csv", "lcstudy_runs.csv"} <= names
    assert {f"lcstudy_{c.name}_findings.csv" for c in CHAPTERS} <= names
    data = (html / "data.html").read_text()
    assert "lcstudy_timings.csv" in data and "median over the uncontended repeats" in data


def test_every_table_reads_as_words(built):
    tmp, _, _ = built
    html = tmp / "book" / "_build" / "html"
    for page in [html / f"{c.name}.html" for c in CHAPTERS] + sorted((html / "runs").rglob("*.html")):
        text = page.read_text()
        assert not snake_headers(text), (page.name, snake_headers(text)[:5])
        for table in re.findall(r"<table.*?</table>", text, flags=re.S):
            assert 'class="blank level0"' not in table and "row_heading" not in table, page.name  # no index column


def _findings(html_text: str) -> list[tuple[str, str]]:
    """(sentence as text, the same without its emphasised names) of each finding on a page."""
    m = re.search(r"What this shows</strong></p>\s*<ul[^>]*>(.*?)</ul>", html_text, flags=re.S)
    assert m, "no findings list"
    items = re.findall(r"<li>(.*?)</li>", m.group(1), flags=re.S)
    # Sphinx's smartquotes turn ' into ’ (and " into “ ”): undo that to compare with the CSV
    quotes = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'})
    text = lambda h: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", h)).strip().translate(quotes)  # noqa: E731
    return [(text(i), text(re.sub(r"<em>.*?</em>|<code.*?</code>", "", i, flags=re.S))) for i in items]


NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?: %|×)?")


def test_every_stated_number_is_a_cell_of_a_downloaded_table(built):
    """Parse each finding, find every number in it, and look the number up in the table it came from."""
    tmp, _, _ = built
    html = tmp / "book" / "_build" / "html"
    downloads = {p.name: p for p in (html / "_downloads").rglob("*.csv")}
    from lcstudy.chapters.columns import fmt

    checked = 0
    for c in CHAPTERS:
        sentences = _findings((html / f"{c.name}.html").read_text())
        assert 1 <= len(sentences) <= 6, (c.name, sentences)
        facts = pd.read_csv(downloads[f"lcstudy_{c.name}_findings.csv"], keep_default_na=False, dtype=str)
        for s, bare in sentences:
            rows = facts[facts.sentence.map(lambda x: re.sub(r"[`*]", "", x)) == s]
            assert len(rows), (c.name, s)
            stated = [n for n in rows.number if n]
            # every number outside the names (emphasised) is a stated fact; q1, 512², 1920×1080 are names too
            for n in NUMBER.findall(re.sub(r"\b(q\d+|\d+×\d+|\d+²)", "", bare)):
                assert any(n.replace(",", "") in f.replace(",", "") for f in stated), (c.name, n, s)
            for _, f in rows[rows.table != ""].iterrows():
                t = pd.read_csv(downloads[f.table], keep_default_na=False, na_values=[""])
                where = json.loads(f.row)
                m = pd.Series(True, index=t.index)
                for k, v in where.items():
                    m &= t[k].astype(str) == str(v)
                assert m.sum() == 1, (f.table, where)
                value = t.loc[m, f.column].iloc[0]
                kind = "pct" if f.number.endswith(" %") else ("x" if f.number.endswith("×") else None)
                text = fmt(kind or ("s" if "." in f.number else "sig3"), value) + (" %" if kind == "pct" else "")
                number = f.number.replace(",", "")
                # or as the column's documented kind (columns.COLUMNS: a share stated as "frac", 0.024)
                documented = COLUMNS.get(f.column, (None, None, None))[1]
                as_documented = fmt(documented, value) if documented and not kind else None
                assert text.replace(",", "") == number or fmt("int", value).replace(",", "") == number \
                    or (as_documented is not None and as_documented.replace(",", "") == number), \
                    (f.table, f.column, value, f.number)
                checked += 1
    assert checked >= 10


def test_cost(built):
    tmp, _, env = built
    out = subprocess.run(["make", "--no-print-directory", "cost", "PROFILE=quick", f"BOOK={tmp / 'book'}",
                          f"RESULTS_DIR={tmp / 'results'}", f"CODECS_FILE={tmp / 'codecs.toml'}", "NODES=1,4"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"all runs: (.+?) of run wall time, (.+?) of it codec work \(([0-9.]+)%\)", out.stdout)
    assert m and 0 < float(m.group(3)) < 100, out.stdout[-2000:]
    # 9 codecs (8 + TINY), each also under quick's two backends, + the standard codecs
    assert "plan: 28 runs (28 measured, 0 missing)" in out.stdout, out.stdout[-2000:]
    # every run went through the pipeline: its whole notebook's wall is recorded, and holds the measurement
    m = re.search(r"run notebooks \((\d+) of (\d+) runs.*?: (.+?) of notebook wall time, .+? of it codec work "
                  r"\(([0-9.]+)%\)", out.stdout)
    assert m and m.group(1) == m.group(2) == "28" and float(m.group(4)) < float(
        re.search(r"codec work \(([0-9.]+)%\)", out.stdout).group(1)), out.stdout[-2000:]
    from lcstudy.runs.tidy import load_results

    runs = load_results(tmp / "results", "runs")
    assert (runs.notebook_seconds > runs.wall_seconds + 1.0).all(), runs[["label", "notebook_seconds", "wall_seconds"]]
    assert "on 4 exclusive node(s):" in out.stdout
    # what the notebooks spent outside their measurement, deploying apart from the harness
    assert re.search(r"outside the measurement .+?: deploying the backend runs .+?, the harness .+?, "
                     r"[0-9.]+ s a notebook", out.stdout), out.stdout[-2000:]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium not installed (.ci/run installs it)")
def test_check_html_offline(built):
    tmp, _, _ = built
    out = subprocess.run(["make", "--no-print-directory", "check-html", f"BOOK={tmp / 'book'}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    for s in ("assessment", "flops_runtime", "scaling"):
        assert (tmp / "book" / "_build" / "screenshots" / f"{s}.png").stat().st_size > 10_000


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium not installed")
def test_check_html_fails_on_external_requests_and_on_a_dead_browser(tmp_path):
    from lcstudy.pipeline.checkhtml import NoNetLog, chromium, load

    page = tmp_path / "p.html"
    page.write_text('<html><head><script src="https://cdn.example.org/x.js"></script></head><body>x</body></html>')
    ok = tmp_path / "ok.html"
    ok.write_text("<html><head><title>offline page</title></head><body>offline</body></html>")
    assert load(chromium(), page, None, tmp_path) == ["https://cdn.example.org/x.js"]
    assert load(chromium(), ok, None, tmp_path) == []
    dead = tmp_path / "dead"
    dead.write_text("#!/bin/sh\nexit 0\n")
    dead.chmod(0o755)
    with pytest.raises(NoNetLog):
        load(str(dead), ok, None, tmp_path)
    # a browser that writes a network log but renders nothing fails too
    liar = tmp_path / "liar"
    liar.write_text('#!/bin/sh\nfor a in "$@"; do case "$a" in\n'
                    '  --log-net-log=*) echo \'{"events": []}\' > "${a#--log-net-log=}";;\nesac; done\n')
    liar.chmod(0o755)
    with pytest.raises(NoNetLog):
        load(str(liar), ok, None, tmp_path)
