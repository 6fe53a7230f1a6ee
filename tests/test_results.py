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
