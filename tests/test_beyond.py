"""The analyses beyond the paper, on small tables whose answers are known."""
import numpy as np
import pandas as pd
import pytest

from lcstudy import beyond, published
from lcstudy.errors import InputError
from lcstudy.images import load_image, parse_size
from lcstudy.profile import RunSpec


def _rows(codec, threads, seconds, images=("a", "b"), h=512, w=768, crop=None, resize=None, direction="encode",
          quality=1, run_id=None):
    return [{"host": "h", "device": "cpu", "threads": threads, "codec": codec, "quality": quality, "image": im,
             "height": h, "width": w, "direction": direction, "stage": "total", "level": 2, "seconds": seconds,
             "iqr_seconds": 0.0, "crop": crop, "resize": resize, "weights": "random",
             "run_id": run_id or f"{codec}{threads}{h}{crop}{resize}"} for im in images]


def test_inversions_are_found_on_common_images_only():
    # 2 threads: A faster than B; 1 thread (2 of the images): B faster than A
    df = pd.DataFrame(_rows("FP", 2, 1.0, images=("a", "b", "c")) + _rows("HP", 2, 2.0, images=("a", "b", "c"))
                      + _rows("FP", 1, 5.0, images=("a", "b")) + _rows("HP", 1, 3.0, images=("a", "b")))
    t = beyond.common_image_times(df)
    assert set(t.images) == {2}  # image c is not in the 1-thread pass
    cx = pd.DataFrame([{"codec": c, "quality": 1, "direction": "encode", "stage": "total", "kmac_per_px": k}
                       for c, k in (("FP", 40.0), ("HP", 45.0))])
    rk = beyond.ranks(beyond.with_kmac(t, cx))
    inv = beyond.inversions(rk)
    flips = inv[(inv.platform_a.str.contains("1 thr")) & (inv.platform_b.str.contains("2 thr"))]
    assert len(flips) == 1 and flips.faster_on_a.iloc[0] == "HP" and flips.faster_on_b.iloc[0] == "FP"
    assert beyond.inversions(rk[rk.platform != "h · cpu · 1 thr"]).empty  # kMAC order = 2-thread order


def test_scaling_exponents_recover_known_slopes():
    rows = []
    for mpx, (h, w, crop, resize) in zip((0.262144, 0.393216, 2.0736, 8.2944),
                                         ((512, 512, 512, None), (512, 768, None, None), (1080, 1920, None, "1920x1080"),
                                          (2160, 3840, None, "3840x2160"))):
        for codec, k in (("FP", 1.0), ("ARC", 1.5)):
            for stage, f in (("total", 1.0), ("network", 0.5)):
                for d in ("encode", "decode"):
                    r = _rows(codec, 2, f * 3.0 * mpx ** k, images=("kodim01",), h=h, w=w, crop=crop, resize=resize,
                              direction=d)[0]
                    r["stage"] = stage
                    rows.append(r)
    df = pd.DataFrame(rows)
    mem = pd.DataFrame([{"run_id": rid, "memory": "cpu_rss", "direction": d, "baseline_mb": 900.0,
                         "peak_mb": 900.0 + 100.0 * m} for rid, m in df.groupby("run_id").height.first().items()
                        for d in ("encode", "decode")])
    st = beyond.scaling_table(df, mem)
    assert {"peak_mb_encode", "working_mb_decode"} <= set(st.columns)
    assert st.mpx.nunique() == 4 and set(st["size"]) >= {"3840×2160 (synthetic)", "768×512 (native)"}
    ex = beyond.fit_exponents(st).set_index("codec")
    assert ex.loc["FP", "exp_encode_total"] == pytest.approx(1.0)
    assert ex.loc["ARC", "exp_decode_total"] == pytest.approx(1.5)
    assert ex.loc["ARC", "exp_decode_network"] == pytest.approx(1.5)
    assert ex.loc["FP", "exp_working_decode"] == pytest.approx(np.polyfit(np.log(st[st.codec == "FP"].mpx),
                                                                          np.log([512, 512, 1080, 2160]), 1)[0])


def test_standard_at_bpp_interpolates_log_linearly():
    s = pd.DataFrame([{"host": "h", "codec": "JPEG", "direction": "encode", "value": v, "bpp": b, "psnr": p,
                       "s_per_mpx": t} for v, b, p, t in ((10, 0.25, 28.0, 0.01), (50, 1.0, 34.0, 0.04))])
    r = beyond.standard_at_bpp(s, 0.5).iloc[0]
    # halfway in log(bpp) → geometric mean of the times, mean of the PSNRs
    assert r.s_per_mpx == pytest.approx(0.02) and r.psnr_at_bpp == pytest.approx(31.0)
    far = beyond.standard_at_bpp(s, 3.0).iloc[0]
    assert "nearest" in far.how and far.s_per_mpx == pytest.approx(0.04)


def test_learned_at_bpp_uses_the_channel_configuration_measured():
    df = pd.DataFrame(_rows("HP", 2, 0.5, quality=1) + _rows("HP", 2, 0.5, quality=1, direction="decode"))
    rd = pd.DataFrame([{"codec": "HP", "quality": q, "bpp": b, "psnr": 30 + q, "source": "CompressAI published"}
                       for q, b in ((3, 0.3), (4, 0.48), (6, 0.9))])
    out = beyond.learned_at_bpp(df, rd, 0.5)
    assert set(out.measured_q) == {1} and "same channels as measured q1" in out.how.iloc[0]
    assert out.s_per_mpx.iloc[0] == pytest.approx(0.5 / (512 * 768 / 1e6))
    rd6 = rd.assign(bpp=rd.bpp.where(rd.quality != 6, 0.5))
    out6 = beyond.learned_at_bpp(df, rd6, 0.5)  # q6 = other channels, not measured: said so
    assert "not measured" in out6.how.iloc[0]


def test_bd_rate_against_our_x265_equals_published_when_curves_agree(reference):
    rd = published.rd_points(reference)
    anchor = rd[rd.codec == "x265 (BPG)"].assign(codec=published.OURS_X265, source="ours (test)")
    both = published.bd_rates_both(pd.concat([rd, anchor], ignore_index=True))
    hp = both[both.codec == "HP"].iloc[0]
    assert hp.bd_rate_vs_x265_ours_pct == pytest.approx(hp.bd_rate_vs_x265_pct, abs=1e-9)
    assert both[both.codec == published.OURS_X265].bd_rate_vs_x265_pct.iloc[0] == pytest.approx(0, abs=1e-9)


def test_roofline_fraction_of_peak():
    df = pd.DataFrame(_rows("FP", 2, 2.0, images=("a",)))
    df["stage"], df["level"], df["peak_matmul_gflops"] = "g_a", 0, 100.0
    cx = pd.DataFrame([{"run_id": df.run_id.iloc[0], "direction": "encode", "stage": "g_a", "height": 512,
                        "width": 768, "gmac": 10.0, "macs": 1e10, "count_mode": "executed"}])
    rf = beyond.roofline(df, cx).iloc[0]
    assert rf.achieved_gmac_s == pytest.approx(5.0) and rf.fraction_of_peak == pytest.approx(0.1)


def test_resize_makes_exact_synthetic_sizes(kodak):
    im = load_image(kodak / "kodim01.png", resize="1920x1080")
    assert (im.width, im.height) == (1920, 1080) and "synthetic" in im.notes[0]
    x = im.x * 255
    assert torch_allclose_int(x)
    assert load_image(kodak / "kodim04.png", resize="320x200").width == 320  # portrait source: cover + crop
    for bad in ("1920", "10x10", "axb"):
        with pytest.raises(InputError, match="WIDTHxHEIGHT"):
            parse_size(bad)
    with pytest.raises(InputError, match="not both"):
        load_image(kodak / "kodim01.png", crop=256, resize="320x200")


def torch_allclose_int(x):
    return bool(((x - x.round()).abs() < 1e-4).all())


def test_run_id_of_earlier_runs_is_unchanged_by_the_resize_field():
    env = {"host": "h", "cpu_model": "c", "gpu_name": "", "torch_version": "t", "compressai_version": "c",
           "threads": 2, "schema_version": 1}
    spec = RunSpec("HP", 1, "cpu", "random", 0, 2, 3, 1, None, "seed 0")
    import hashlib
    import json
    from dataclasses import asdict

    old = {k: v for k, v in asdict(spec).items() if k != "resize"}
    legacy = hashlib.sha256(json.dumps({**old, **env}, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert spec.run_id(env) == legacy
    assert RunSpec(*asdict(spec).values()).run_id(env) == legacy
    big = RunSpec("HP", 1, "cpu", "random", 0, 2, 3, 1, None, "seed 0", "1920x1080")
    assert big.run_id(env) != legacy
