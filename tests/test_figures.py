"""Every figure the quick book draws, read as a reviewer would: no text that collides, no panel of
several series without a key (:mod:`lcstudy.chapters.figcheck`), and the style's palettes fixed.

The figures are drawn by the chapters' and run pages' own builders from ``tests/data/results-quick``:
the result files of a quick-profile build (``make book PROFILE=quick``; notebooks left out), with a
second platform beside it (the same runs relabelled as a 1-thread pass) so that the several-platform
layouts are drawn too. ``make figures-fixture`` (below, :func:`refresh`) rebuilds it from a new
``results-quick/`` after a result-schema change.
"""
import shutil
from pathlib import Path

import pytest

from lcstudy.chapters import figcheck, style
from lcstudy.chapters.page import Page

DATA = Path(__file__).resolve().parent / "data" / "results-quick"


def _runs(results: Path):
    from lcstudy.runs import layout

    for meta in sorted(results.glob("*/*/*/*/run.json")):
        yield layout.Run(meta.parent, layout.read_meta(meta.parent))


def draw_all(results: Path, reference) -> dict[str, object]:
    """Every figure of the book over ``results``: {"chapter/key" or "run <label>/key": problems}."""
    from lcstudy.chapters import CHAPTERS, run_page, standard_run
    from lcstudy.chapters.study import load
    from lcstudy.runs.learned import RunResult
    from lcstudy.runs.tables import run_tables

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

        for c in CHAPTERS:
            where["page"] = c.name
            importlib.import_module(f"lcstudy.chapters.{c.name}").build(results, reference, None)
        for run in _runs(results):
            where["page"] = f"run {run.label} ({run.meta['environ'].get('platform', '?')})"
            res = RunResult(run, None, [], run_tables(run))
            (standard_run if run.kind == "standard" else run_page).build(res)
    finally:
        Page.figure = orig
        load.cache_clear()
    return found


@pytest.fixture(scope="module")
def drawn(reference):
    if not any(DATA.glob("*/*/*/*/run.json")):
        pytest.fail(f"no results fixture at {DATA}: see this module's docstring")
    return draw_all(DATA, reference)


def test_every_figure_is_drawn(drawn):
    """The fixture draws the figures of every chapter that has one and of every run page (a fixture gone
    stale, e.g. after a result-schema change, would draw none and pass the checks below unseen)."""
    pages = {k.split("/")[0] for k in drawn}
    for name in ("assessment", "flops_runtime", "rd_frontier", "standard_codecs"):
        assert name in pages, f"the {name} chapter drew no figure from {DATA}"
    assert sum(k.startswith("run ") for k in pages) >= 8, sorted(pages)


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
    b.set_title("a title long enough to run into the panel on its left side" * 2, loc="right")
    p = figcheck.problems(fig)
    assert any("'DGM' overlaps text 'DGM-ATT'" in x for x in p), p
    assert any("no legend" in x for x in p), p
    assert any("title" in x and "overlaps" in x for x in p), p
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
    """Copy a quick build's result files (not its notebooks) to ``dest``, plus a second platform: the
    same runs as if measured with 1 thread (so the several-platform layouts are drawn)."""
    import json

    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("notebook.ipynb", "*.lock", "_stale"))
    for meta in list(dest.glob("*/*/*/*/run.json")):
        m = json.loads(meta.read_text())
        if m.get("kind", "learned") != "learned":
            continue
        other = meta.parent.with_name(meta.parent.name[:-1] + "t")
        shutil.copytree(meta.parent, other)
        m["run_id"] = other.name
        env = m["environ"]
        env["platform"] = env["platform"].rsplit(", ", 1)[0] + ", 1 thr"
        env["threads"] = 1
        m["request"]["threads"] = 1
        (other / "run.json").write_text(json.dumps(m, indent=1))


if __name__ == "__main__":  # python -m tests.test_figures <results-quick>: refresh the fixture
    import sys

    refresh(Path(sys.argv[1]))
    print(f"wrote {DATA}")
