"""MAC counts: two counters agree, GDN and masked convolutions counted, the AR context in its
parallel form equals the executed loop, h_s once per direction, the cache, modules no counter knows."""
import pytest
import torch

import lcstudy
from lcstudy.core.complexity import count_complexity

LABELS = ["FP", "HP", "MS-HP", "ARC", "DGM", "DGM-ATT", "CKBD", "ELIC"]


@pytest.mark.parametrize("label", LABELS)
def test_ptflops_aten_agrees_with_flopcountermode(label):
    cx = count_complexity(lcstudy.load_codec(label, 1, weights="random"), 64, 128)
    counted = cx[cx.macs > 0]
    assert len(counted) >= 3
    ratio = counted.macs / (counted.flops_torch / 2)  # FLOPs = 2 × MAC; within 1 % on every stage
    assert ((ratio - 1).abs() < 0.01).all(), cx[["direction", "stage", "macs", "flops_torch"]]
    for d in ("encode", "decode"):
        total = cx[(cx.stage == "total") & (cx.direction == d)].iloc[0]
        part = cx[(cx.direction == d) & (cx.kind == "partition")]
        assert total.macs == part.macs.sum() > 0 and total.params > 0
    assert (cx[cx.stage.isin(["g_a", "g_s"])].macs > 0).all()


def test_fp_g_a_full_size_counts_gdn():
    """At 768×512: 16.62 GMAC with aten; ptflops' default backend misses GDN (14.49)."""
    from ptflops import get_model_complexity_info

    codec = lcstudy.load_codec("FP", 1, weights="random")
    cx = count_complexity(codec, 512, 768)
    g_a = cx[(cx.stage == "g_a") & (cx.direction == "encode")].iloc[0]
    assert g_a.gmac == pytest.approx(16.62, abs=0.01)
    assert g_a.flops_torch / 2 / 1e9 == pytest.approx(16.58, abs=0.01)
    default, _ = get_model_complexity_info(codec.model.g_a, (3, 512, 768), as_strings=False,
                                           print_per_layer_stat=False, backend="pytorch")
    assert default / 1e9 == pytest.approx(14.49, abs=0.01)
    assert g_a.params == sum(p.numel() for p in codec.model.g_a.parameters())


@pytest.mark.parametrize("label", ["ARC", "DGM"])
def test_ar_context_parallel_form_equals_the_executed_loop(label):
    """The context model and entropy parameters counted in one parallel pass equal the same counted
    per latent position as the decoder's loop runs them (a 5×5 patch each, zeroed taps included)."""
    codec = lcstudy.load_codec(label, 1, weights="random")
    par = count_complexity(codec, 64, 128, ar="parallel").set_index(["direction", "stage"])
    exe = count_complexity(codec, 64, 128, ar="executed").set_index(["direction", "stage"])
    for d, parent in (("encode", "AEy"), ("decode", "ADy")):
        for sub in ("context", "entropy_parameters"):
            key = (d, f"{parent}/{sub}")
            assert par.loc[key, "count_mode"] == "parallel" and exe.loc[key, "count_mode"] == "executed"
            assert par.loc[key, "macs"] == exe.loc[key, "macs"] > 0
        assert par.loc[(d, parent), "macs"] == exe.loc[(d, parent), "macs"]
        assert par.loc[(d, "total"), "macs"] == exe.loc[(d, "total"), "macs"]


@pytest.mark.parametrize("label", ["MS-HP", "ARC", "CKBD"])
def test_h_s_counted_once_per_direction(label):
    """h_s runs in compress() and in decompress(): one call each, not two in both."""
    from torch.utils.flop_counter import FlopCounterMode

    codec = lcstudy.load_codec(label, 1, weights="random")
    cx = count_complexity(codec, 128, 192)
    hs = cx[cx.stage == "h_s"].set_index("direction").macs
    h_s = codec.model.latent_codec["hyper"].h_s if label == "CKBD" else codec.model.h_s
    n = next(m for m in h_s.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))).in_channels
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        h_s(torch.zeros(1, n, 128 // 64, 192 // 64))
    assert hs["encode"] == hs["decode"] == pytest.approx(fc.get_total_flops() / 2, rel=0.01)


def test_mac_cache_returns_the_fresh_count(kodak, tmp_path):
    """The second run of a configuration and size reads the cache, and gets the same table."""
    import pandas as pd

    codec = lcstudy.load_codec("HP", 1, weights="random")
    a = lcstudy.profile(codec, [kodak / "kodim05.png"], repeats=1, crop=64, macs=True, results_dir=tmp_path / "a")
    b = lcstudy.profile(codec, [kodak / "kodim05.png"], repeats=2, crop=64, macs=True, results_dir=tmp_path / "a")
    assert a.run_id.iloc[0] != b.run_id.iloc[0]  # two runs (other repeats), one configuration and size
    assert len(list((tmp_path / "a" / "_cache" / "macs").glob("*.csv"))) == 1
    fresh = count_complexity(codec, 64, 64)
    cols = ["direction", "stage", "macs", "flops_torch", "params"]
    for t in (a.attrs["complexity"], b.attrs["complexity"]):
        pd.testing.assert_frame_equal(t[cols].reset_index(drop=True), fresh[cols].reset_index(drop=True),
                                      check_dtype=False)


def test_modules_no_counter_knows_are_named():
    """A layer with parameters that does only elementwise work is named, not counted as zero silently."""

    class Scale(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(1, n, 1, 1))

        def forward(self, x):
            return x * self.gain

    codec = lcstudy.load_codec("HP", 1, weights="random")
    codec.model.g_s = torch.nn.Sequential(Scale(192), codec.model.g_s)
    cx = count_complexity(codec, 64, 64)
    g_s = cx[(cx.stage == "g_s")].iloc[0]
    assert "g_s.0 (Scale)" in g_s.uncounted and g_s.macs > 0
    assert cx[(cx.stage == "g_a")].uncounted.fillna("").iloc[0] == ""
