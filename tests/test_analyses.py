"""Every analysis behind a chapter, on small tables whose answers are known."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, pearsonr, spearmanr

from lcstudy.chapters import assessment, flops_runtime, paper_comparison, rd_frontier, scaling, standard_codecs
from lcstudy.chapters.findings import Findings, fact
from lcstudy.chapters.ranking import inversions, kendall
from lcstudy.chapters.columns import fmt, present, snake_headers, summarise

PLAT = "CPU X, 2 cores, 2 thr"


def _rows(codec, seconds, images=("a", "b"), platform=PLAT, threads=2, h=512, w=768, crop=None, resize=None,
          direction="encode", quality=1, stage="total", kind="aggregate", run_id=None):
    return [{"host": "h", "device": "cpu", "platform": platform, "threads": threads, "codec": codec,
             "quality": quality, "image": im, "height": h, "width": w, "direction": direction, "stage": stage,
             "stage_kind": kind, "seconds": seconds, "crop": crop, "resize": resize, "weights": "random",
             "weights_label": "random (seed 0)", "cpu_model": "CPU X", "n_samples": 1, "warmup_codings": 1,
             "run_id": run_id or f"{codec}{threads}{h}{crop}{resize}{platform}"} for im in images]


def test_overall_ranks_and_ratios():
    df = pd.DataFrame(_rows("FP", 1.0) + _rows("HP", 3.0) + _rows("ARC", 10.0))
    o = assessment.overall(df).set_index("codec")
    assert list(o["rank"][["FP", "HP", "ARC"]]) == [1, 2, 3]
    assert o.loc["ARC", "ratio_to_fastest"] == pytest.approx(10.0)
    assert o.loc["HP", "median_s"] == 3.0 and o.loc["HP", "images"] == 2


def test_module_shares_and_the_papers():
    rows = (_rows("HP", 3.0, stage="g_a", kind="partition") + _rows("HP", 1.0, stage="AEy", kind="partition")
            + _rows("HP", 4.0, stage="total"))
    ms = assessment.module_shares(pd.DataFrame(rows)).set_index("stage")
    assert ms.loc["g_a", "share_pct"] == pytest.approx(75.0) and ms.loc["AEy", "share_pct"] == pytest.approx(25.0)


def test_summarise_median_and_its_interval_over_images():
    vals = np.arange(1.0, 25.0)  # 24 images
    df = pd.DataFrame([{"codec": "FP", "image": f"i{k}", "seconds": v} for k, v in enumerate(vals)])
    s = summarise(df, ["codec"]).iloc[0]
    assert s["median"] == 12.5 and s.images == 24
    # order statistics for n = 24 at 95 %: the 7th and 18th values (scipy's quantile_test)
    assert s.half == pytest.approx((18.0 - 7.0) / 2)
    assert s.precise is False or s.precise == False  # noqa: E712 - 44 % is not within 5 %
    few = summarise(df.head(3), ["codec"]).iloc[0]
    assert np.isnan(few.half) and few.precise is None


def test_kendall_matches_scipy_and_inversions_find_the_flip():
    t = pd.DataFrame([{"codec": c, "direction": "encode", "source": s, "seconds": v}
                      for s, vals in (("A", [1, 2, 3, 4]), ("B", [1, 3, 2, 4]))
                      for c, v in zip(["FP", "HP", "ARC", "DGM"], vals)])
    k = kendall(t).iloc[0]
    tau, p = kendalltau([1, 2, 3, 4], [1, 3, 2, 4])
    assert k.tau == pytest.approx(tau) and k.p_value == pytest.approx(p) and k.codecs == 4
    inv = inversions(t, "source", "seconds")
    assert len(inv) == 1 and inv.pair.iloc[0] == "ARC vs HP"
    assert inv.lower_on_a.iloc[0] == "HP" and inv.lower_on_b.iloc[0] == "ARC"


def test_flops_runtime_common_images_correlation_flips():
    # 2 threads: FP < HP < ARC < CKBD by time; 1 thread on 2 of the 3 images: HP faster than FP
    df = pd.DataFrame(_rows("FP", 1.0, images=("a", "b", "c")) + _rows("HP", 2.0, images=("a", "b", "c"))
                      + _rows("ARC", 8.0, images=("a", "b", "c")) + _rows("CKBD", 4.0, images=("a", "b", "c"))
                      + _rows("FP", 5.0, images=("a", "b"), threads=1, platform="CPU X, 2 cores, 1 thr")
                      + _rows("HP", 3.0, images=("a", "b"), threads=1, platform="CPU X, 2 cores, 1 thr"))
    t = flops_runtime.common_image_times(df)
    assert set(t.images) == {2}
    cx = pd.DataFrame([{"codec": c, "quality": 1, "direction": "encode", "stage": "total", "kmac_per_px": k}
                       for c, k in (("FP", 40.0), ("HP", 45.0), ("ARC", 110.0), ("CKBD", 400.0))])
    t = flops_runtime.with_kmac(t, cx)
    c = flops_runtime.correlations(t).set_index("platform").loc[PLAT]
    two = t[t.platform == PLAT]
    assert c.spearman == pytest.approx(spearmanr(two.kmac_per_px, two.seconds)[0])
    assert c.pearson_log == pytest.approx(pearsonr(np.log(two.kmac_per_px), np.log(two.seconds))[0])
    fl = flops_runtime.mac_flips(t)
    f = fl[(fl.platform == PLAT)].iloc[0]
    assert (f.more_macs, f.fewer_macs) == ("CKBD", "ARC")
    assert f.mac_ratio == pytest.approx(400 / 110) and f.time_ratio == pytest.approx(0.5)
    pf = inversions(t, "platform", "seconds")
    assert list(pf.pair) == ["FP vs HP"]


def test_roofline_fraction_of_peak():
    df = pd.DataFrame(_rows("FP", 2.0, images=("a",), stage="g_a", kind="partition"))
    df["peak_matmul_gflops"] = 100.0
    cx = pd.DataFrame([{"run_id": df.run_id.iloc[0], "direction": "encode", "stage": "g_a", "stage_kind": "partition",
                        "height": 512, "width": 768, "gmac": 10.0, "macs": 1e10}])
    rf = flops_runtime.roofline(df, cx).iloc[0]
    assert rf.achieved_gmac_s == pytest.approx(5.0) and rf.fraction_of_peak_pct == pytest.approx(10.0)


def test_bd_rate_known_answer_and_frontier():
    """A curve that needs 10 % fewer bits at every PSNR has a BD-rate of exactly -10 %."""
    bpp = np.array([0.2, 0.4, 0.8, 1.6])
    psnr = np.array([28.0, 31.0, 34.0, 37.0])
    rd = pd.DataFrame([{"codec": "x265 (BPG)", "bpp": b, "psnr": p, "source": "anchor"} for b, p in zip(bpp, psnr)]
                      + [{"codec": "NEW", "bpp": 0.9 * b, "psnr": p, "source": "test"} for b, p in zip(bpp, psnr)])
    bd = rd_frontier.bd_rates(rd).iloc[0]
    assert bd.codec == "NEW" and bd.bd_rate_vs_x265_pct == pytest.approx(-10.0, abs=1e-6)
    pts = pd.DataFrame({"x": [1.0, 2.0, 3.0, 2.5], "y": [0.0, -5.0, -6.0, -4.0]})
    assert list(rd_frontier.frontier(pts, "x", "y")) == [True, True, True, False]


def test_standard_at_bpp_interpolates_log_linearly_and_speed_ratios():
    s = pd.DataFrame([{"platform": PLAT, "codec": "JPEG", "direction": d, "value": v, "bpp": b, "psnr": p,
                       "s_per_mpx": t} for d in ("encode", "decode")
                      for v, b, p, t in ((10, 0.25, 28.0, 0.01), (50, 1.0, 34.0, 0.04))])
    r = standard_codecs.standard_at_bpp(s, 0.5)
    e = r[r.direction == "encode"].iloc[0]
    assert e.s_per_mpx == pytest.approx(0.02) and e.psnr_at_bpp == pytest.approx(31.0)  # halfway in log(bpp)
    far = standard_codecs.standard_at_bpp(s, 3.0).iloc[0]
    assert "nearest" in far.how and far.s_per_mpx == pytest.approx(0.04)
    learned = pd.DataFrame([{"platform": PLAT, "codec": "HP", "device": "cpu", "threads": 2, "measured_q": 1,
                             "weights": "random", "direction": d, "s_per_mpx": 2.0} for d in ("encode", "decode")])
    sp = standard_codecs.speed_vs_standard(learned, r).iloc[0]
    assert sp.encode_x_jpeg == pytest.approx(100.0)


def test_learned_at_bpp_uses_the_channel_configuration_measured():
    df = pd.DataFrame(_rows("HP", 0.5) + _rows("HP", 0.5, direction="decode"))
    rd = pd.DataFrame([{"codec": "HP", "quality": q, "bpp": b, "psnr": 30 + q, "source": "CompressAI published"}
                       for q, b in ((3, 0.3), (4, 0.48), (6, 0.9))])
    out = standard_codecs.learned_at_bpp(df, rd, 0.5)
    assert set(out.measured_q) == {1} and "same channels as measured q1" in out.how.iloc[0]
    assert out.s_per_mpx.iloc[0] == pytest.approx(0.5 / (512 * 768 / 1e6))


@pytest.mark.parametrize("one_run", [False, True], ids=["a run per size", "one run of several sizes"])
def test_scaling_exponents_recover_known_slopes(one_run):
    """The sizes come from a run each (results made before SIZES) or from the items of one run (SIZES): each
    size keeps its own time and memory either way (one run's items are not merged)."""
    rows, mem, samples = [], [], []
    for mpx, (h, w, crop, resize) in zip((0.262144, 0.393216, 2.0736, 8.2944),
                                         ((512, 512, 512, None), (512, 768, None, None),
                                          (1080, 1920, None, "1920x1080"), (2160, 3840, None, "3840x2160"))):
        native = crop is None and resize is None
        for codec, k in (("FP", 1.0), ("ARC", 1.5)):
            rid = f"{codec}-sizes" if one_run and not native else None
            item = f"kodim01@{resize or f'crop{crop}'}" if one_run and not native else "kodim01"
            for stage, f in (("total", 1.0), ("network", 0.5)):
                for d in ("encode", "decode"):
                    rows += [dict(r, item=item) for r in _rows(codec, f * 3.0 * mpx ** k, images=("kodim01",), h=h,
                                                               w=w, crop=crop, resize=resize, direction=d,
                                                               stage=stage, run_id=rid)]
            mem += [{"run_id": rows[-1]["run_id"], "item": item, "image": "kodim01", "memory": "cpu_rss",
                     "direction": d, "contended": False, "peak_mb": 900 + 100 * mpx, "working_mb": 100 * mpx}
                    for d in ("encode", "decode")]
            samples += [{"run_id": rows[-1]["run_id"], "item": item, "image": "kodim01", "direction": d,
                         "stage": "total", "repeat": r, "seconds": 3.0 * mpx ** k * (1 + 0.01 * (r % 3 - 1)),
                         "contended": False} for d in ("encode", "decode") for r in range(7)]
    st = scaling.scaling_table(pd.DataFrame(rows), pd.DataFrame(samples), pd.DataFrame(mem))
    assert len(st) == 8 and st.mpx.nunique() == 4
    assert {"3840×2160 (synthetic)", "768×512 (native)", "512×512 (crop)"} <= set(st["size"])
    assert st.run_id.nunique() == (4 if one_run else 8)
    # each size's interval is its own samples' (1 % spread around its own median)
    assert (st.encode_ci_half_s / st.encode_total_s).max() < 0.02
    ex = scaling.fit_exponents(st).set_index("codec")
    assert ex.loc["FP", "exp_encode_total"] == pytest.approx(1.0)
    assert ex.loc["ARC", "exp_decode_total"] == pytest.approx(1.5)
    assert ex.loc["ARC", "exp_decode_network"] == pytest.approx(1.5)
    assert ex.loc["FP", "exp_working_decode"] == pytest.approx(1.0)


def test_first_repeat_check():
    df = pd.DataFrame(_rows("ARC", 10.0, images=("kodim01",), h=2160, w=3840, resize="3840x2160"))
    df["warmup_codings"], df["n_samples"] = 0, 3
    st = scaling.scaling_table(df, pd.DataFrame(), pd.DataFrame())
    samples = pd.DataFrame([{"run_id": df.run_id.iloc[0], "image": "kodim01", "direction": "encode",
                             "stage": "total", "repeat": r, "seconds": s, "contended": False}
                            for r, s in enumerate((12.0, 10.0, 10.0))])
    f = scaling.first_repeat(df, samples, st).iloc[0]
    assert f.first_over_median == pytest.approx(1.2) and f.max_over_min == pytest.approx(1.2)


def test_paper_comparison_ratios_against_the_reference(reference):
    from lcstudy.chapters.published import paper_module_times

    paper = paper_module_times(reference)
    p = paper[(paper.codec == "HP") & (paper.quality == 1) & (paper.device == "cpu") & (paper.direction == "encode")
              & (paper.stage == "g_a")].seconds.iloc[0]
    df = pd.DataFrame(_rows("HP", 2 * p, stage="g_a", kind="partition"))
    m = paper_comparison.compare_modules(df, reference)
    assert m.ours_over_paper.iloc[0] == pytest.approx(2.0)
    ps = paper_comparison.paper_sync(reference).set_index("codec")
    assert ps.loc["HP", "aez_over_ga"] > 5  # the paper's unsynchronised CUDA AEz absorbs g_a


def test_tables_read_as_words_and_findings_trace_to_cells():
    t = pd.DataFrame({"codec": ["FP"], "median_s": [0.123456], "share_pct": [12.345], "ratio_to_fastest": [3.0]})
    html = present(t).to_html()
    assert "median (s)" in html and "share of total (%)" in html and not snake_headers(html)
    assert "<th" in html and "level0_row0" not in html  # no index column
    assert fmt("s", 0.123456) == "0.123" and fmt("pct", 12.345) == "12.3" and fmt("x", 3.0) == "3.00×"
    with pytest.raises(KeyError, match="document it"):
        present(pd.DataFrame({"not_documented": [1]}))
    f = Findings("demo")
    f.add("{c} takes {s} s.", c="FP", s=fact({"overall": t}, "overall", {"codec": "FP"}, "median_s", "s"))
    row = f.table().iloc[0]
    assert f.sentences() == ["FP takes 0.123 s."] and row.table == "lcstudy_demo_overall.csv"
    assert row.column == "median_s" and row.value == pytest.approx(0.123456)


def test_machines_table_flags_a_slow_node():
    from lcstudy.pipeline.book import machines_table

    runs = pd.DataFrame([{"platform": PLAT, "device": "cpu", "nodes": n, "peak_matmul_gflops": p, "run_id": f"r{i}",
                          "cpu_model": "CPU X", "gpu_name": "", "torch_version": "t", "compressai_version": "c",
                          "python_version": "p", "contended": 0, "repeats": 10, "started_utc": "2026-11-23",
                          "finished_utc": "2026-11-23"}
                         for i, (n, p) in enumerate((("n1", 200.0), ("n2", 201.0), ("n3", 180.0), ("n1", 199.0)))])
    m, nodes = machines_table(runs)
    nodes = nodes.set_index("node")
    assert bool(nodes.loc["n3", "flagged"]) and not nodes.loc["n1", "flagged"] and not nodes.loc["n2", "flagged"]
    assert "slow or shared: n3" in m.nodes.iloc[0]


def test_cost_list_scheduling():
    from lcstudy.pipeline.cost import schedule

    assert schedule([5, 4, 3, 3, 2, 2, 1], 1) == 20
    assert schedule([5, 4, 3, 3, 2, 2, 1], 2) == 10
    assert schedule([10, 1, 1, 1], 4) == 10


def test_cost_splits_outside_the_measurement_into_deploying_and_the_harness():
    """The time a run notebook spends outside its measurement: a backend run's deployment (compilation, export:
    measured and reported by the study) apart from the harness's fixed cost; eager runs have no setup (NaN)."""
    from lcstudy.pipeline.cost import outside_split, outside_text

    nb = pd.DataFrame({"notebook_seconds": [10.0, 30.0, 5.0], "wall_seconds": [8.0, 12.0, 4.0],
                       "setup_seconds": [np.nan, 15.0, 0.5]})
    o = outside_split(nb)
    assert o["outside_s"] == pytest.approx(21.0) and o["deploy_s"] == pytest.approx(15.5)
    assert o["harness_s"] == pytest.approx(5.5) and o["harness_per_notebook_s"] == pytest.approx(5.5 / 3)
    assert "deploying the backend runs (export, calibration, compilation; one-off, measured) 16 s" in outside_text(nb)
    assert "1.8 s a notebook" in outside_text(nb)
    # results from before the backend axis: no setup column, all of it the harness's
    assert outside_split(nb.drop(columns="setup_seconds"))["harness_s"] == pytest.approx(21.0)


def test_stale_run_pages_are_removed_from_the_built_html(tmp_path):
    """A run removed or relabelled: its old HTML page must not be published beside the current ones."""
    from lcstudy.pipeline.book import prune_stale_run_pages

    book, html = tmp_path / "book", tmp_path / "book" / "_build" / "html"
    (book / "runs" / "P" / "cpu").mkdir(parents=True)
    (book / "runs" / "P" / "cpu" / "FP-q1-abc.ipynb").write_text("{}")
    (html / "runs" / "P" / "cpu").mkdir(parents=True)
    for name in ("FP-q1-abc.html", "FP-q1-old.html"):
        (html / "runs" / "P" / "cpu" / name).write_text("<html></html>")
    (html / "intro.html").write_text("<html></html>")
    gone = prune_stale_run_pages(book, html)
    assert [p.name for p in gone] == ["FP-q1-old.html"]
    assert not (html / "runs" / "P" / "cpu" / "FP-q1-old.html").exists()
    assert (html / "runs" / "P" / "cpu" / "FP-q1-abc.html").exists() and (html / "intro.html").exists()
    assert prune_stale_run_pages(book, tmp_path / "nothing") == []
