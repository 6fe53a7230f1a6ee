"""Every figure the quick book draws, read as a reviewer would: no text that collides, no panel of
several series without a key (:mod:`lcstudy.chapters.figcheck`), and the style's palettes fixed.

The figures are drawn by the chapters' and run pages' own builders from ``tests/fixture_quick``:
the result files of a quick-profile build (``make book PROFILE=quick``; notebooks left out), and a
second platform beside it made at test time (the same runs relabelled as a 1-thread pass) so that
the several-platform layouts are drawn too. ``python -m tests.test_figures results-quick`` (:func:`refresh`) rebuilds it from a new
``results-quick/`` after a result-schema change.
"""
import shutil
from pathlib import Path

import pytest

from lcstudy.chapters import figcheck, style
from lcstudy.chapters.page import Page

DATA = Path(__file__).resolve().parent / "fixture_quick"


def _runs(results: Path):
    from lcstudy.runs import layout

    for meta in sorted(results.glob("*/*/*/*/run.json")):
        yield layout.Run(meta.parent, layout.read_meta(meta.parent))


def draw_all(results: Path, reference, chapters: bool = True, runs: bool = True) -> dict[str, object]:
    """Every figure of the book over ``results`` (the chapters', the run pages', or both):
    {"chapter/key" or "run <label> (<platform>)/key": its problems}."""
    from lcstudy.chapters import CHAPTERS, run_page, standard_run
    from lcstudy.chapters.study import load
    from lcstudy.runs.learned import RunResult
    from lcstudy.runs.tidy import run_tables

    found = {}
    where = {"page": ""}
    orig = Page.figure

    def spy(self, key, fig, caption):
        if fig is not None:
            found[f"{where['page']}/{key}"] = figcheck.problems(fig)
        return orig(self, key, fig, caption)

    load.cache_clear()
    Page.figure = spy
    try:
        import importlib

        for c in CHAPTERS if chapters else ():
            where["page"] = c.name
            importlib.import_module(f"lcstudy.chapters.{c.name}").build(results, reference, None)
        for run in _runs(results) if runs else ():
            where["page"] = f"run {run.label} ({run.meta['environ'].get('platform', '?')})"
            res = RunResult(run, None, [], run_tables(run))
            (standard_run if run.kind == "standard" else run_page).build(res)
    finally:
        Page.figure = orig
        load.cache_clear()
    return found


@pytest.fixture(scope="module")
def drawn(reference, tmp_path_factory):
    if not any(DATA.glob("*/*/*/*/run.json")):
        pytest.fail(f"no results fixture at {DATA}: see this module's docstring")
    results = tmp_path_factory.mktemp("figures") / "results-quick"
    shutil.copytree(DATA, results)
    add_second_platform(results)
    # the chapters over both platforms; the run pages once (the second platform's are the same pages)
    return {**draw_all(results, reference, runs=False), **draw_all(DATA, reference, chapters=False)}


@pytest.mark.slow
def test_every_figure_is_drawn(drawn):
    """The fixture draws the figures of every chapter that has one and of every run page (a fixture gone
    stale, e.g. after a result-schema change, would draw none and pass the checks below unseen)."""
    pages = {k.split("/")[0] for k in drawn}
    for name in ("assessment", "flops_runtime", "rd_frontier", "standard_codecs"):
        assert name in pages, f"the {name} chapter drew no figure from {DATA}"
    assert sum(k.startswith("run ") for k in pages) >= 8, sorted(pages)


@pytest.mark.slow
def test_no_figure_has_colliding_text_or_an_unexplained_series(drawn):
    bad = {k: v for k, v in drawn.items() if v}
    report = "\n".join(f"{k}: {p}" for k, v in bad.items() for p in v[:6])
    assert not bad, f"{len(bad)} of {len(drawn)} figures fail a reviewer's reading:\n{report}"


def test_the_checker_sees_collisions_and_missing_legends():
    """figcheck itself: two labels on one spot, a title over a panel, two series and no key."""
    plt = style.setup()
    fig, (a, b) = plt.subplots(1, 2, figsize=(4, 2))
    a.plot([1, 2], [1, 2], label="one")
    a.plot([1, 2], [2, 1], label="two")
    a.text(1.5, 1.5, "DGM")
    a.text(1.5, 1.5, "DGM-ATT")
    a.set_title("left panel")
    b.set_title("a title long enough to run into the panel on its left side" * 2, loc="right")
    p = figcheck.problems(fig)
    assert any("'DGM' overlaps text 'DGM-ATT'" in x for x in p), p
    assert any("no legend" in x for x in p), p
    assert any("title 'left panel' overlaps title 'a title long" in x for x in p), p
    plt.close(fig)


def test_turned_tick_labels_collide_only_where_their_letters_meet():
    """Long tick labels at 30° (the decodability matrix's nine decoder columns in the standard book): the
    upright box around each reaches under its neighbour's though no letters meet — no collision; the same
    labels four times as dense, closer than a line's height across their slant, do collide. Near 45° the
    text is measured upright (the box's size does not tell its sides apart there)."""
    plt = style.setup()

    def ticks(n, angle):
        fig, ax = plt.subplots(figsize=(style.FIG_WIDTH, 2.5))
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_xticks(range(n), [f"channels_last · cpu · 2thr · h_s+{i}ulp" for i in range(n)], rotation=angle,
                      ha="right")
        fig.tight_layout()
        fig.canvas.draw()
        return fig, ax

    for angle in (30, 45, 60):
        fig, ax = ticks(9, angle)
        r = fig.canvas.get_renderer()
        first, second = (t.get_window_extent(r) for t in ax.get_xticklabels()[:2])
        assert first.overlaps(second), "the upright boxes overlap: the case this test is about"
        assert figcheck.problems(fig) == [], angle
        plt.close(fig)
    fig, ax = ticks(36, 30)
    p = figcheck.problems(fig)
    assert any("x tick 'channels_last · cpu · 2thr · h_s+0ulp' overlaps x tick" in x for x in p), p
    plt.close(fig)


def test_label_points_places_crowded_labels_apart():
    """Points on top of each other (DGM and DGM-ATT have nearly the same MACs and time) get labels
    that overlap nothing."""
    plt = style.setup()
    fig, ax = plt.subplots(figsize=(3, 2.5))
    xs, ys = [1, 1.02, 1.04, 3, 3.1, 10], [1, 1.01, 1.0, 5, 5.2, 9]
    names = ["DGM", "DGM-ATT", "CKBD", "ELIC", "ARC", "MS-HP"]
    ax.scatter(xs, ys, label="_")
    ax.set(xscale="log", yscale="log")
    style.label_points(ax, xs, ys, names)
    style.finish(fig, "crowded")
    assert figcheck.problems(fig) == []
    assert sorted(t.get_text() for t in ax.texts) == sorted(names)
    plt.close(fig)


def test_labels_keep_off_lines_and_a_moved_label_points_at_its_dot():
    """A label is not written across a drawn line (a frontier step ran through 'x265 HEIC'), and a label
    that had to move away from its point in a cluster is tied to it by a leader line (a reader saw 'CKBD'
    beside FP's dot, with nothing saying whose name it was)."""
    import math

    plt = style.setup()
    fig, ax = plt.subplots(figsize=(3, 2.5))
    ax.set(xlim=(0, 10), ylim=(0, 10))
    # a frontier step (drawn as steps: the corner, not the diagonal) leaving the point to the right, through its
    # label's first place
    ax.step([5, 5.6], [5, 9.9], where="post", color="k")
    ax.scatter([5], [5], label="_")
    xs, ys = [2, 2.1, 2.2, 2.05, 2.15], [2, 2.1, 2.0, 1.95, 2.05]  # five dots on top of each other
    style.label_points(ax, [5], [5], ["x265 HEIC"])
    style.label_points(ax, xs, ys, ["DGM", "DGM-ATT", "CKBD", "ELIC", "ARC"])
    style.finish(fig, "lines and a cluster")
    r = fig.canvas.get_renderer()
    heic = next(t for t in ax.texts if t.get_text() == "x265 HEIC")
    box = heic.get_window_extent(r)
    line = ax.lines[0].get_transform().transform([(5, 5), (5.6, 5)])  # the step's flat part, as drawn
    y, (x0, x1) = line[0][1], sorted((line[0][0], line[1][0]))
    assert not (box.y0 < y < box.y1 and box.x1 > x0 and box.x0 < x1), "label written across the line"
    for t in ax.texts:
        if t.get_text() == "x265 HEIC":
            continue
        b = t.get_window_extent(r)
        px, py = ax.transData.transform(t.xy)
        gap = math.hypot(max(b.x0 - px, 0, px - b.x1), max(b.y0 - py, 0, py - b.y1))
        assert gap < 12 or t.arrow_patch is not None, f"{t.get_text()} is {gap:.0f} px from its dot, no leader line"
    assert figcheck.problems(fig) == []
    plt.close(fig)


def test_log_ticks_are_plain_and_do_not_crowd():
    plt = style.setup()
    fig, ax = plt.subplots(figsize=(2.2, 2))
    ax.plot([150, 450], [0.02, 0.05])  # less than a decade on both axes: minor ticks labelled
    ax.set(xscale="log", yscale="log")
    style.finish(fig, "short log axes")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert labels and all("10^" not in x and "$" not in x for x in labels), labels
    assert figcheck.problems(fig) == []
    plt.close(fig)


def test_one_palette_per_concept():
    """A value's colour is the same wherever it is drawn, and no two values of a concept share one."""
    from lcstudy.core.instrument import STAGE_ORDER
    from lcstudy.core.kernels import CATEGORIES, OUTSIDE

    for concept, values in (("stage", STAGE_ORDER), ("category", [c for c, _ in CATEGORIES] + ["other", OUTSIDE]),
                            ("backend", style.BACKEND_ORDER), ("direction", ("encode", "decode"))):
        cols = style.colors(concept, values)
        assert len(set(cols)) == len(values), concept
        assert style.UNKNOWN not in cols, concept
    assert style.color("category", "convolution") == style.palette("category")["convolution"]
    assert style.color("stage", "no such stage") == style.UNKNOWN
    learned = style.codec_order()
    assert len({style.codec_color(c) for c in learned[:9]}) == min(len(learned), 9)


def refresh(src: Path, dest: Path = DATA) -> None:
    """Copy a quick build's result files (not its notebooks nor its caches) to ``dest``. Repeats that were
    contended are kept as measured but no longer flagged, so that every item has a time to draw (on a
    shared machine a quick build can leave items with every repeat contended): the fixture is for the
    figures' layout, never for their numbers."""
    import json

    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.ipynb", ".notebooks", "*.lock", "_stale", "_cache"))
    for f in dest.glob("*/*/*/*/items/*.json"):
        rec = json.loads(f.read_text())
        for rep in rec.get("repeats", []):
            rep["contended"] = False
        f.write_text(json.dumps(rec))
    for meta in dest.glob("*/*/*/*/run.json"):
        m = json.loads(meta.read_text())
        m["complete"], m["contended_items"] = True, []
        meta.write_text(json.dumps(m, indent=1))


def add_second_platform(results: Path) -> None:
    """The learned runs of ``results`` once more, as if measured with 1 thread: a second platform, so that
    the several-platform layouts (hatched bars, platform legends, a panel per platform) are drawn."""
    import json

    for meta in list(results.glob("*/*/*/*/run.json")):
        m = json.loads(meta.read_text())
        if m.get("kind", "learned") != "learned":
            continue
        other = meta.parent.with_name(meta.parent.name[:-1] + "t")
        shutil.copytree(meta.parent, other)
        m["run_id"] = other.name
        env = m["environ"]
        env["platform"] = env["platform"].rsplit(", ", 1)[0] + ", 1 thr"
        env["threads"] = m["request"]["threads"] = 1
        (other / "run.json").write_text(json.dumps(m, indent=1))


if __name__ == "__main__":  # python -m tests.test_figures <results-quick>: refresh the fixture
    import sys

    refresh(Path(sys.argv[1]))
    print(f"wrote {DATA}")


def test_run_pages_are_titled_by_their_run(tmp_path):
    """The run notebook's generic heading is replaced, in the book's copy, by the run's own title."""
    import json
    from types import SimpleNamespace

    from lcstudy.pipeline.book import copy_titled, run_title

    r = SimpleNamespace(run_kind="learned", codec="HP", quality=3, label="HP-q3-threads1", device="cpu",
                        platform="AMD EPYC, 2 cores, 1 thr")
    assert run_title(r) == "HP q3 (threads1) on cpu · AMD EPYC, 2 cores, 1 thr"
    s = SimpleNamespace(run_kind="standard", codec="standard", quality=None, label="standard-codecs", device="cpu",
                        platform="P")
    assert run_title(s) == "Standard codecs on cpu · P"
    b = SimpleNamespace(run_kind="learned", codec="FP", quality=1, label="FP-q1-channels_last", device="cpu",
                        platform="P", backend="channels_last")
    assert run_title(b) == "FP q1 · channels_last on cpu · P"  # the backend once (it was "… (channels_last)" too)
    b.label = "FP-q1-onnxruntime-threads1"
    b.backend = "onnxruntime"
    assert run_title(b) == "FP q1 · onnxruntime (threads1) on cpu · P"
    # the rows the book titles are the runs table's own (a renamed column fails here, not in `make book`: the
    # quick book failed so when the runs table's ``kind`` became ``run_kind``)
    import shutil

    from lcstudy.runs.tidy import load_results

    from .test_rerender import FIXTURE

    shutil.copytree(FIXTURE, tmp_path / "results")
    titles = [run_title(row) for row in load_results(tmp_path / "results", "runs").itertuples()]
    assert any(t.startswith("HP q1 on cpu") for t in titles) and any(t.startswith("Standard codecs") for t in titles)
    src = tmp_path / "nb.ipynb"
    src.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["# Profile of one codec on one device"],
                                          "metadata": {}}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    copy_titled(src, tmp_path / "out.ipynb", run_title(r))
    cell = json.loads((tmp_path / "out.ipynb").read_text())["cells"][0]
    assert "".join(cell["source"]) == "# HP q3 (threads1) on cpu · AMD EPYC, 2 cores, 1 thr"


def test_the_data_page_describes_the_findings_columns_as_findings(tmp_path):
    import pandas as pd

    from lcstudy.chapters import CHAPTERS
    from lcstudy.chapters.columns import COLUMNS
    from lcstudy.pipeline.book import downloads_page

    pd.DataFrame(columns=["finding", "sentence", "number", "value", "table", "row", "column"]).to_csv(
        tmp_path / "lcstudy_assessment_findings.csv", index=False)
    pd.DataFrame(columns=["codec", "value"]).to_csv(tmp_path / "lcstudy_standard_codecs_sweep.csv", index=False)
    for t, col in (("runs", "run_kind"), ("kernels", "op_kind"), ("timings", "stage_kind")):
        pd.DataFrame(columns=[col]).to_csv(tmp_path / f"lcstudy_{t}.csv", index=False)
    page = downloads_page(tmp_path, COLUMNS, CHAPTERS)
    findings, sweep = page.split("lcstudy_standard_codecs_sweep.csv")[0], page.split("sweep.csv")[-1]
    assert "unrounded value" in findings and "standard codec's quality" not in findings
    assert "standard codec's quality" in sweep.split("lcstudy_timings.csv")[0]

    def row(name, col):  # the row of column ``col`` in one CSV's column list
        block = page.split(f"{name}.csv <")[1].split("{download}")[0]
        return next(line for line in block.splitlines() if line.startswith(f"| `{col}`"))

    # issue 25: one name per concept — a stage's kind, the run's and the operator's are three columns
    assert "run kind" in row("lcstudy_runs", "run_kind") and "standard" in row("lcstudy_runs", "run_kind")
    assert "operator kind" in row("lcstudy_kernels", "op_kind") and "cpu_op" in row("lcstudy_kernels", "op_kind")
    assert "stage kind" in row("lcstudy_timings", "stage_kind")


def test_tables_round_to_three_digits_or_to_what_the_interval_says():
    from lcstudy.chapters.columns import fmt

    assert fmt("ci", (12.3456, 4.5)) == "12.3 ± 4.5"
    assert fmt("ci", (12.3456, 0.0123)) == "12.346 ± 0.012"  # a narrow interval says more digits
    assert fmt("pct", 0.012345) == "0.0123" and fmt("pct", 83.45) == "83.5"


def test_the_deployment_heat_map_reads_as_speed_ups_on_every_cell():
    """Its colour bar is labelled in speed-ups (0.25×…4×), not in the log₂ values behind the colour, and a number
    on a dark cell (slower than 0.5×, faster than 2×: bf16 on a CPU without bf16 instructions read 0.21–0.39×) is
    white, elsewhere black. Seen failing with the log₂ ticks (−2…2) and black text everywhere, as it was."""
    import matplotlib.colors as mcolors
    import pandas as pd

    from lcstudy.chapters import deployment

    rows = [{"platform": "vm · cpu · 2thr", "codec": "HP", "stage": stage, "direction": d, "backend": b,
             "speedup_vs_eager": s}
            for d in ("encode", "decode") for stage in ("network", "total")
            for b, s in (("bf16", 0.22), ("channels_last", 1.3), ("onnxruntime", 3.0))]
    fig = deployment.fig_heatmap(pd.DataFrame(rows))
    bar = fig.axes[2]
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0.25×", "0.5×", "1×", "2×", "4×"]
    colours = {t.get_text(): mcolors.to_hex(t.get_color()) for t in fig.axes[0].texts}
    assert colours == {"0.22": "#ffffff", "1.3": "#000000", "3": "#ffffff"}, colours
