"""The book's tables, re-rendered from stored raw results, are what they were (issue 25's guard).

Every table a reader can download — each chapter's tables and findings, each run's tables — is rebuilt
from ``tests/fixture_quick`` (the result files of a quick book) and compared with
``tests/golden_tables.json``: its columns, its number of rows and a digest of its values. A refactor of
the request, the registry or the names must leave all of them as they were; a failure names each table
that moved and how (columns gained or lost, rows, values).

A change that *means* to change a table (a new column, a fixed number) refreshes the golden file on
purpose, and says so in its commit: ``python -m tests.test_rerender`` (:func:`refresh`).

Values are compared as their CSV text with floats written to 12 significant digits: the same raw
samples must give the same numbers, not merely close ones; 12 digits leave out only the last bits that
a change of summation order (another pandas) could move. That holds for floats in text columns too
(a findings table's ``value`` column mixes numbers and blanks, so pandas keeps it as objects and its
``float_format`` would not apply): the CSV of a Pearson correlation computed on an AVX2 CPU and on an
AVX-512 one differed in the 17th digit, and with it the digest.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent / "fixture_quick"
GOLDEN = Path(__file__).resolve().parent / "golden_tables.json"


def _describe(df) -> dict:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        return {"type": type(df).__name__}
    df = df.copy()
    for c in df.columns[df.dtypes == object]:
        df[c] = [f"{v:.12g}" if isinstance(v, float) else v for v in df[c]]
    text = df.to_csv(index=False, float_format="%.12g", lineterminator="\n")
    return {"columns": [str(c) for c in df.columns], "rows": len(df),
            "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}


def render(results: Path, reference) -> dict[str, dict]:
    """{"<chapter>/<table>" or "run <label>/<table>": its description} over the results in ``results``."""
    import importlib

    from lcstudy.chapters import CHAPTERS
    from lcstudy.chapters.study import load
    from lcstudy.runs import layout
    from lcstudy.runs.tidy import run_tables

    out: dict[str, dict] = {}
    load.cache_clear()
    try:
        for c in CHAPTERS:
            page = importlib.import_module(f"lcstudy.chapters.{c.name}").build(results, reference, None)
            for key, df in sorted(page.data.items()):
                if df is not None:
                    out[f"{c.name}/{key}"] = _describe(df)
            out[f"{c.name}/findings"] = _describe(page.findings.table())
        for run in layout.runs(results, warn=False):
            for key, df in sorted(run_tables(run).items()):
                out[f"run {run.label} {run.run_id}/{key}"] = _describe(df)
    finally:
        load.cache_clear()
    return out


@pytest.fixture(scope="module")
def rendered(reference, tmp_path_factory):
    if not any(FIXTURE.glob("*/*/*/*/run.json")):
        pytest.fail(f"no results fixture at {FIXTURE}: see tests/test_figures.py")
    results = tmp_path_factory.mktemp("rerender") / "results-quick"
    shutil.copytree(FIXTURE, results)
    return render(results, reference)


def _differences(now: dict, then: dict) -> list[str]:
    out = [f"{k}: new table" for k in sorted(set(now) - set(then))]
    out += [f"{k}: gone" for k in sorted(set(then) - set(now))]
    for k in sorted(set(now) & set(then)):
        a, b = then[k], now[k]
        if a == b:
            continue
        if a.get("columns") != b.get("columns"):
            ca, cb = a.get("columns") or [], b.get("columns") or []
            out.append(f"{k}: columns lost {[c for c in ca if c not in cb]}, gained {[c for c in cb if c not in ca]}"
                       + (", reordered" if set(ca) == set(cb) else ""))
        elif a.get("rows") != b.get("rows"):
            out.append(f"{k}: {a.get('rows')} rows then, {b.get('rows')} now")
        else:
            out.append(f"{k}: same columns and rows, other values")
    return out


def test_a_float_in_a_text_column_is_compared_at_12_digits():
    """The last bits of a float may differ between CPUs (another BLAS path); at 12 digits they do not, in a
    numeric column or in an object one (a findings table's ``value``), while a change in the 12th digit
    still shows."""
    import pandas as pd

    def table(x):
        return pd.DataFrame({"n": [x, 1.0], "value": [x, ""]})

    assert _describe(table(0.6977835316569884)) == _describe(table(0.6977835316569885))
    assert _describe(table(0.6977835316569884)) != _describe(table(0.697783531658))


@pytest.mark.slow
def test_every_chapter_and_run_table_is_rendered(rendered):
    """The re-render reaches every chapter that has data in the fixture and every run (a fixture gone stale
    would render nothing and compare nothing)."""
    chapters = {k.split("/")[0] for k in rendered if not k.startswith("run ")}
    for name in ("assessment", "flops_runtime", "rd_frontier", "standard_codecs", "paper_comparison"):
        assert any(k.startswith(f"{name}/") and k != f"{name}/findings" for k in rendered), (name, sorted(chapters))
    assert sum(k.startswith("run ") for k in rendered) >= 8 * 2


@pytest.mark.slow
def test_tables_rerendered_from_stored_results_are_unchanged(rendered):
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} missing: `python -m tests.test_rerender` writes it (see this module's docstring)")
    then = json.loads(GOLDEN.read_text())
    diff = _differences(rendered, then)
    assert not diff, ("tables re-rendered from tests/fixture_quick differ from tests/golden_tables.json; if the "
                      "change is meant, refresh with `python -m tests.test_rerender` and say so in the commit:\n  "
                      + "\n  ".join(diff))


def test_one_name_per_kind_and_the_files_written_before_read_as_they_are(tmp_path):
    """Issue 25: a run's files call three things ``kind`` (a stage row's, an operator's, the run's); the tables
    name each: ``stage_kind``, ``op_kind``, ``run_kind``. The fixture's files were written before the rename
    and keep ``kind``: they read as they are, every row with its kind (seen failing with the kernels
    table's rename taken out)."""
    from lcstudy.runs.tidy import KIND_COLUMN, load_results

    results = tmp_path / "results-quick"
    shutil.copytree(FIXTURE, results)
    values = {"stage_kind": {"partition", "sub", "aggregate"}, "op_kind": {"cpu_op"}, "run_kind": {"learned",
                                                                                                     "standard"}}
    for table, col in KIND_COLUMN.items():
        t = load_results(results, table)
        assert not t.empty and "kind" not in t.columns and col in t.columns, (table, list(t.columns))
        assert t[col].notna().all() and set(t[col]) <= values[col] and len(set(t[col])) >= 1, (table, set(t[col]))
    assert set(load_results(results, "timings").stage_kind) == values["stage_kind"]
    assert set(load_results(results, "runs").run_kind) == values["run_kind"]


@pytest.mark.slow
def test_a_request_stored_after_the_split_gives_the_same_tables(rendered, reference, tmp_path):
    """Issue 25: since the split into one request type per run kind, run.json holds only the run's own kind's
    fields (a standard run: no codec, quality, weights or seed). The fixture's requests were stored before, with
    both kinds' fields; rewritten as the code now stores them, every table renders the same (seen failing with
    ``base_columns`` reading the stored request without the fields it held before)."""
    from lcstudy.runs import layout
    from lcstudy.runs.params import RunRequest, request_dict

    results = tmp_path / "results-quick"
    shutil.copytree(FIXTURE, results)
    n = 0
    for f in results.glob("*/*/*/*/run.json"):
        meta = json.loads(f.read_text())
        stored = request_dict(RunRequest.from_dict(meta["request"]))
        assert stored["request_id"] == meta["request"]["request_id"]
        n += len(set(meta["request"]) - set(stored))
        f.write_text(json.dumps({**meta, "request": json.loads(json.dumps(stored))}, indent=1))
    assert n > 0, "the fixture's requests already have the stored-after-the-split form: nothing compared"
    assert {r.kind for r in layout.runs(results, warn=False)} == {"learned", "standard"}
    diff = _differences(render(results, reference), rendered)
    assert not diff, diff[:10]


def refresh() -> None:
    import tempfile

    from tests.conftest import REFERENCE

    with tempfile.TemporaryDirectory() as d:
        results = Path(d) / "results-quick"
        shutil.copytree(FIXTURE, results)
        now = render(results, REFERENCE)
    GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}: {len(now)} tables")


if __name__ == "__main__":
    refresh()
