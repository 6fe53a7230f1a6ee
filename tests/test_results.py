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
