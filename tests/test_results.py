import pandas as pd
import pytest

import lcstudy
from lcstudy.errors import InputError, SchemaError
from lcstudy.profile import profile
from lcstudy.results import read_paper_reference, read_paper_xlsx, write_reports

PAPER = "lc-assessment/FALCON_ICASSP2023_WP1_V1.0/Timing"


def test_read_paper_data(reference):
    p = read_paper_reference(reference / PAPER)
    assert set(p.codec) == {"FP", "HP", "MS-HP", "ARC", "DGM", "DGM-ATT"}
    assert set(p.device) == {"cpu", "cuda"}
    arc = p[(p.codec == "ARC") & (p.quality == 1) & (p.metric == "mse") & (p.device == "cpu")]
    assert arc.image.nunique() == 24
    enc = arc[arc.direction == "encode"].groupby("stage").seconds.mean()
    assert enc["AEy"] > enc["g_a"] > enc["h_s"] > 0  # the AR loop dominates on CPU
    # the paper's unsynchronised GPU stages: AEz absorbs g_a's kernels
    cu = p[(p.codec == "HP") & (p.device == "cuda") & (p.direction == "encode")].groupby("stage").seconds.mean()
    assert cu["AEz"] > 5 * cu["g_a"]
    fp = p[(p.codec == "FP") & (p.direction == "encode")].groupby("stage").seconds.sum()
    assert fp["h_a"] == fp["AEz"] == 0  # FP has no hyperprior: the paper records zeros


def test_xlsx_round_trip(kodak, tmp_path):
    codec = lcstudy.load_codec("MS-HP", 1)
    df = profile(codec, [kodak / "kodim02.png", kodak / "kodim03.png"], repeats=1, warmup=0, crop=128,
                 memory=False, kernels=False, progress=False)
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


def test_old_schema_is_refused(kodak, tmp_path):
    import json

    codec = lcstudy.load_codec("FP", 1)
    profile(codec, [kodak / "kodim05.png"], repeats=1, warmup=0, crop=64, results_dir=tmp_path, memory=False,
            kernels=False, progress=False)
    run = next(tmp_path.rglob("run.json"))
    meta = json.loads(run.read_text())
    meta["schema_version"] = 0
    run.write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="schema"):
        lcstudy.load_results(tmp_path)


def test_thread_pass_is_a_timing_platform_only(kodak, tmp_path):
    """The 1-thread pass adds a platform to the timings; memory, operators and MACs come from
    the run with the most threads (they would otherwise be mixed under one codec/quality)."""
    import torch

    from lcstudy import report

    before = torch.get_num_threads()
    codec = lcstudy.load_codec("FP", 1)
    try:
        for t in (1, 2):
            profile(codec, [kodak / "kodim05.png"], repeats=1, warmup=0, crop=64, threads=t, results_dir=tmp_path,
                    memory=t == 2, kernels=True, progress=False, peak=False)
    finally:
        torch.set_num_threads(before)
    t = report.load_all(tmp_path)
    assert sorted(t["timings"].threads.unique()) == [1, 2]
    two = set(t["timings"][t["timings"].threads == 2].run_id)
    assert len(two) == 1 and set(t["kernels"].run_id) == two and set(t["memory"].run_id) == two
