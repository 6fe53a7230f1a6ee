"""The paper's workbooks read back; ours written in its layout and read back; old schemas ignored."""
import json

import pandas as pd
import pytest

import lcstudy
from lcstudy.chapters.workbooks import read_paper_reference, read_paper_xlsx, write_reports
from lcstudy.errors import InputError

PAPER = "lc-assessment/FALCON_ICASSP2023_WP1_V1.0/Timing"


def test_read_paper_data(reference):
    p = read_paper_reference(reference / PAPER)
    assert set(p.codec) == {"FP", "HP", "MS-HP", "ARC", "DGM", "DGM-ATT"}
    assert set(p.device) == {"cpu", "cuda"}
    arc = p[(p.codec == "ARC") & (p.quality == 1) & (p.metric == "mse") & (p.device == "cpu")]
    assert arc.image.nunique() == 24
    enc = arc[arc.direction == "encode"].groupby("stage").seconds.mean()
    assert enc["AEy"] > enc["g_a"] > enc["h_s"] > 0  # the AR loop dominates on CPU
    fp = p[(p.codec == "FP") & (p.direction == "encode")].groupby("stage").seconds.sum()
    assert fp["h_a"] == fp["AEz"] == 0  # FP has no hyperprior: the paper records zeros


def test_xlsx_round_trip(kodak, tmp_path):
    codec = lcstudy.load_codec("MS-HP", 1, weights="random")
    df = lcstudy.profile(codec, [kodak / "kodim02.png", kodak / "kodim03.png"], repeats=1, warmup=0, crop=128)
    files = write_reports(df, tmp_path)
    assert sorted(f.name for f in files) == ["All_dec_report_CPU.xlsx", "All_enc_report_CPU.xlsx"]
    enc = read_paper_xlsx(tmp_path / "All_enc_report_CPU.xlsx")
    ours = df[df.direction == "encode"].set_index(["image", "stage"]).seconds
    for _, r in enc.iterrows():
        assert r.seconds == pytest.approx(ours[(r.image, r.stage)])
    assert set(enc.codec) == {"MS-HP"} and (enc.bpp > 0).all()
    head = list(pd.read_excel(tmp_path / "All_dec_report_CPU.xlsx", sheet_name="Per Image").columns[:12])
    assert head == ["Model", "Q", "mse/ssim", "Image", "CPU/GPU", "ADz", "hs", "ADy", "gs", "Misc", "Total time",
                    "Model Loading"]
    avg = pd.read_excel(tmp_path / "All_enc_report_CPU.xlsx", sheet_name="AVG Total Times")
    assert avg["Total time"].iloc[0] == pytest.approx(ours.xs("total", level="stage").mean())


def test_corrupt_xlsx_is_a_clear_error(tmp_path):
    bad = tmp_path / "All_enc_report_CPU.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="make data"):
        read_paper_xlsx(bad)


def test_old_schema_is_ignored_with_one_warning(kodak, tmp_path):
    """A run folder of another result schema is neither read nor resumed: one warning names the fix."""
    import shutil

    codec = lcstudy.load_codec("FP", 1, weights="random")
    df = lcstudy.profile(codec, [kodak / "kodim05.png"], repeats=1, warmup=0, crop=64, results_dir=tmp_path)
    run = next(tmp_path.rglob("run.json")).parent
    old = run.parent / "0123456789ab"
    shutil.copytree(run, old)
    meta = json.loads((old / "run.json").read_text())
    meta["schema_version"] = 1
    (old / "run.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="1 run folder.*another result schema.*make clean-stale") as w:
        back = lcstudy.load_results(tmp_path)
    assert len(w) == 1
    assert set(back.run_id) == {df.run_id.iloc[0]} and len(back) == len(df)
    from lcstudy.runs.layout import stale_runs

    assert stale_runs(tmp_path) == [old]


def test_a_run_page_makes_only_the_tables_it_reads():
    """The run tables are made when first read: building the standard codecs' page and a learned run's never
    makes ``samples`` (2.5 s of the standard codecs' notebook of 864 items); reading every table gives what
    making them at once gives."""
    from pathlib import Path

    from lcstudy.chapters import run_page, standard_run
    from lcstudy.runs import layout, tidy
    from lcstudy.runs.learned import RunResult

    fixture = Path(__file__).resolve().parent / "fixture_quick"
    made, orig = [], tidy._table
    runs = {r.kind: r for r in layout.runs(fixture, warn=False)}
    assert set(runs) == {"learned", "standard"}, runs
    try:
        tidy._table = lambda rs, t, *a: made.append(t) or orig(rs, t, *a)
        for kind, build in (("standard", standard_run.build), ("learned", run_page.build)):
            made.clear()
            tables = tidy.run_tables(runs[kind])
            build(RunResult(runs[kind], None, [], tables))
            assert "samples" not in made and len(made) == len(set(made)), (kind, made)
            assert "samples" in tables and "nope" not in tables and len(made) == len(set(made))
    finally:
        tidy._table = orig
    for run in runs.values():
        for t, df in tidy.run_tables(run).items():
            pd.testing.assert_frame_equal(df, orig([run], t))


def test_the_chapters_make_the_samples_table_only_when_one_reads_it(monkeypatch):
    """Only the Scaling chapter reads every repeat: the study's samples table is made on first read (it was 5.9 s
    of each chapter notebook of the standard book), and is then what loading it with the others gave."""
    from pathlib import Path

    from lcstudy.chapters import study
    from lcstudy.runs.layout import planned_ids
    from lcstudy.runs.tidy import load_results

    fixture = Path(__file__).resolve().parent / "fixture_quick"
    made = []
    monkeypatch.setattr(study, "load_results", lambda d, t: made.append(t) or load_results(d, t))
    study.load.cache_clear()
    try:
        lcs = study.load(fixture)
        assert made and "samples" not in made, made
        got = lcs.samples
        assert made.count("samples") == 1 and lcs.samples is got
    finally:
        study.load.cache_clear()
    want = load_results(fixture, "samples")
    planned = planned_ids(fixture)
    if planned is not None:
        want = want[want.request_id.isin(planned)]
    want = want[want.run_backend == "eager"]
    assert len(got) and want.run_backend.nunique() == 1
    pd.testing.assert_frame_equal(got, want)


def _frame_item_rows(rec: dict, base: dict, standard: bool) -> list[dict]:
    """The known answer: the timing rows of an item as lcstudy computed them up to commit 75a8495 (7 Dec 2026),
    through a DataFrame and a groupby per item (``lcstudy.runs.tidy._item_rows`` now reads the record's columns)."""
    import math

    from lcstudy.core import drift
    from lcstudy.core.stats import Measurement
    from lcstudy.runs.tidy import _item_base, _samples_frame

    s = _samples_frame(rec, base["run_backend"])
    base = _item_base(rec, base)
    rows = []
    extra = ({"codec": rec["codec"], "knob": rec["knob"], "value": rec["value"], "options": str(rec.get("options")),
              "threading": rec.get("threading")} if standard else {})
    deployed = {"identical_bitstream": rec.get("identical_bitstream"), "prime_seconds": rec.get("prime_seconds")}
    for (backend, direction, stage), g in s.groupby(["backend", "direction", "stage"], sort=False):
        ok = g[~g.contended]
        own = (rec.get("by_backend") or {}).get(backend, rec)
        m = Measurement(ok.seconds.tolist())
        lo, hi = m.ci()
        run_lo, run_hi = drift.widen(m.median, lo, hi, 0.0, ok.seconds.tolist())
        joules = ok.energy_j.dropna()
        rows.append({**base, **extra, "image": rec["image"], "node": rec.get("node"), "height": rec["height"],
                     "width": rec["width"], "direction": direction, "stage": stage,
                     "stage_kind": g.stage_kind.iloc[0],
                     "measured": bool(g.measured.iloc[0]), "seconds": m.median, "iqr_seconds": m.iqr,
                     "ci_low": lo, "ci_high": hi, "ci_run_low": run_lo, "ci_run_high": run_hi, "n_samples": len(ok),
                     "n_contended": int(g.contended.sum()),
                     "noisy": m.noisy, "stop": rec.get("stop"), "bpp": own.get("bpp"), "psnr": own.get("psnr"),
                     "ms_ssim": own.get("ms_ssim"), "nbytes": own.get("nbytes"), "backend": backend, **deployed,
                     "warmup_codings": (rec.get("warmup") or {}).get("codings"),
                     "energy_j": float(joules.median()) if len(joules) else math.nan,
                     "energy_j_per_mp": (float(joules.median()) / (rec["height"] * rec["width"] / 1e6)
                                         if len(joules) else math.nan)})
    return rows


def test_an_items_timing_rows_are_the_frame_computations_to_the_bit():
    """Made-up records with what the stored runs lack — contended repeats, energy readings, a backend run's eager
    calls beside its own, a stage never measured, a blank time, 8 repeats (an interval) — give the rows the
    frame-based computation gave, value for value."""
    import math
    import random

    from lcstudy.runs.tidy import _item_rows

    rnd = random.Random(0)
    base = {"label": "HP-q1-onnxruntime", "run_backend": "onnxruntime", "codec": "HP"}
    for backend_column, n_rep in ((True, 8), (False, 3), (True, 1)):
        samples = {k: [] for k in ("repeat", "direction", "stage", "kind", "measured", "seconds")}
        if backend_column:
            samples["backend"] = []
        for r in range(n_rep):
            for b in (("onnxruntime", "eager") if backend_column else ("onnxruntime",)):
                for d in ("encode", "decode"):
                    for st, kind, measured in (("g_a", "partition", True), ("misc", "partition", False),
                                               ("total", "aggregate", True)):
                        samples["repeat"].append(r)
                        samples["direction"].append(d)
                        samples["stage"].append(st)
                        samples["kind"].append(kind)
                        samples["measured"].append(measured)
                        samples["seconds"].append(None if (r, st, b) == (1, "g_a", "eager") else rnd.uniform(0.1, 1))
                        if backend_column:
                            samples["backend"].append(b)
        repeats = [{"repeat": r, "contended": r == 2,
                    **{f"{p}{d}": {"other_cpu_s": 0.01 * r, "energy_j": None if r == 3 else rnd.uniform(1, 9)}
                       for p in ("", "eager:") for d in ("encode", "decode")}} for r in range(n_rep)]
        rec = {"samples": samples, "repeats": repeats, "image": "kodim01", "item": "kodim01", "node": "n1",
               "height": 512, "width": 768, "stop": "precise", "bpp": 0.3, "psnr": 30.0, "ms_ssim": 0.9, "nbytes": 99,
               "by_backend": {"eager": {"bpp": 0.31, "psnr": 30.1, "ms_ssim": 0.91, "nbytes": 100}},
               "identical_bitstream": True, "prime_seconds": 0.5, "warmup": {"codings": 1}}
        got, want = _item_rows(rec, base, False), _frame_item_rows(rec, base, False)
        assert len(got) == len(want) == (12 if backend_column else 6)
        assert any(w["n_contended"] for w in want) == (n_rep > 2)
        assert any(not math.isnan(w["energy_j"]) for w in want) and any(not w["measured"] for w in want)
        for g, w in zip(got, want):
            assert list(g) == list(w)
            for k in w:
                same = (g[k] == w[k] or (isinstance(w[k], float) and math.isnan(w[k]) and math.isnan(g[k])))
                assert same and type(g[k]) is type(w[k]), (k, g[k], w[k])
