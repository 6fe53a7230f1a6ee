"""The stage split: CompressAI's own coding byte for byte, known-answer timings, billing, synchronisation."""
import statistics
import time

import pytest
import torch

import lcstudy
from lcstudy.core.clocks import StageClock
from lcstudy.core.instrument import encode_decode, plain_encode_decode, top_stages, verify_split
from tests.fakecodec import DECODE, ENCODE

LABELS = ["FP", "HP", "MS-HP", "ARC", "DGM", "DGM-ATT", "CKBD", "ELIC"]
FAKE = "tests.fakecodec:FakeHyperprior"


@pytest.fixture(scope="module")
def image():
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 24), size=(128, 192), mode="bilinear")
    return x.clamp(0, 1)


@pytest.mark.parametrize("label", LABELS)
def test_bit_exact_with_compressai(label, image):
    codec = lcstudy.load_codec(label, 1, weights="random")
    with torch.inference_mode():
        ref = codec.model.compress(image)
        ref_x = codec.model.decompress(ref["strings"], ref["shape"])["x_hat"]
    r = encode_decode(codec, image)
    assert r.strings == ref["strings"]  # byte-identical bitstreams
    assert torch.equal(r.x_hat, ref_x)  # identical reconstruction
    for direction, st in (("encode", r.encode), ("decode", r.decode)):
        top = top_stages(codec.family, direction)
        assert all(st[k] > 0 for k in top), st  # every stage really ran and was timed
        if codec.family in ("autoregressive", "latent_codec"):
            parent = "AEy" if direction == "encode" else "ADy"
            assert {f"{parent}/context", f"{parent}/entropy_parameters", f"{parent}/rans"} <= set(st)


def test_instrumentation_is_removed_afterwards(image):
    import compressai.models.google as google

    codec = lcstudy.load_codec("ARC", 1, weights="random")
    before = google.F, google.RansDecoder
    encode_decode(codec, image)
    assert "forward" not in vars(codec.model.g_a) and "compress" not in vars(codec.model.entropy_bottleneck)
    assert (google.F, google.RansDecoder) == before


def _fake(**kw):
    return lcstudy.load_codec(FAKE, weights="random", kwargs=kw)


def _median_stages(codec, x, n=7, clock=None):
    runs = [encode_decode(codec, x, clock) for _ in range(n)]
    med = {}
    for d in ("encode", "decode"):
        keys = getattr(runs[0], d).keys()
        med[d] = {k: sorted(getattr(r, d)[k] for r in runs)[n // 2] for k in keys}
    return med


def test_known_answer_stage_times():
    """Each stage of a codec whose modules do known work is timed at that work, within 2 ms."""
    codec = _fake()
    assert codec.family == "hyperprior"
    med = _median_stages(codec, torch.rand(1, 3, 64, 64))
    for d, known in (("encode", ENCODE), ("decode", DECODE)):
        for stage, seconds in known.items():
            assert med[d][stage] == pytest.approx(seconds, abs=0.002), (d, stage, med[d])
        assert med[d]["total"] == pytest.approx(sum(known.values()), abs=0.005)


def test_billing_extra_work_goes_to_its_stage_only():
    """20 ms more work in h_s: h_s grows by 20 ms in both directions, no other stage moves."""
    x = torch.rand(1, 3, 64, 64)
    base = _median_stages(_fake(), x)
    more = _median_stages(_fake(extra={"h_s": 0.020}), x)
    for d in ("encode", "decode"):
        assert more[d]["h_s"] - base[d]["h_s"] == pytest.approx(0.020, abs=0.002)
        for stage in base[d]:
            if stage not in ("h_s", "total"):
                assert more[d][stage] == pytest.approx(base[d][stage], abs=0.002), (d, stage)
        assert more[d]["total"] - base[d]["total"] == pytest.approx(0.020, abs=0.004)


def test_total_against_an_outer_wall_clock():
    """The measured totals fit inside a clock the test reads around the whole call, and the stages
    account for all but a sliver of them."""
    codec = _fake()
    x = torch.rand(1, 3, 64, 64)
    gaps, sums = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        r = encode_decode(codec, x)
        outer = time.perf_counter() - t0
        inner = r.encode["total"] + r.decode["total"]
        assert inner <= outer  # every coding: the clocks run inside the call
        gaps.append(outer - inner)
        sums.append(sum(v for k, v in r.encode.items() if k in ENCODE) + sum(v for k, v in r.decode.items()
                                                                             if k in DECODE))
    # the medians of 5 codings, not each: the fake's busy work only overruns, when the 2-core VM preempts it (one
    # coding in a CI run summed 0.141 s against 0.131 s, 7 Dec); a clock that misbills does so in every coding
    assert statistics.median(gaps) < 0.01  # instrumentation outside the clocks is small
    assert statistics.median(sums) == pytest.approx(sum(ENCODE.values()) + sum(DECODE.values()), abs=0.006)
    assert min(sums) >= sum(ENCODE.values()) + sum(DECODE.values()) - 0.006  # and never short of the work


def test_clock_synchronises_at_every_stage_boundary():
    """On a device whose work completes only when synchronised (like a GPU), every stage is still
    billed its own work: the clock synchronises before each read. Without the synchronisation, work
    would land in the next stage that waits (the ICASSP 2023 paper's CUDA AEz). Work queued after the
    last module (in no stage) is in the total too: the clock synchronises before reading the end."""
    tail = 0.010
    codec = _fake(deferred=True, tail=tail)
    dev = codec.model.dev
    clock = StageClock("cpu", sync=dev.synchronize)
    med = _median_stages(codec, torch.rand(1, 3, 64, 64), n=5, clock=clock)
    for d, known in (("encode", ENCODE), ("decode", DECODE)):
        for stage, seconds in known.items():
            assert med[d][stage] == pytest.approx(seconds, abs=0.002), (d, stage, med[d])
        assert med[d]["misc"] == pytest.approx(tail, abs=0.002), med[d]
        assert med[d]["total"] == pytest.approx(sum(known.values()) + tail, abs=0.005)
    assert dev.queued == 0.0 and dev.syncs > 20


def test_kinds_partition_the_total(image):
    codec = lcstudy.load_codec("ARC", 1, weights="random")
    r = encode_decode(codec, image)
    rows = r.rows()
    for d in ("encode", "decode"):
        part = sum(s for dd, st, kind, m, s in rows if dd == d and kind == "partition")
        total = next(s for dd, st, kind, m, s in rows if dd == d and st == "total")
        assert part == pytest.approx(total, rel=1e-9)
        subs = [(st, m) for dd, st, kind, m, s in rows if dd == d and kind == "sub"]
        assert ("AEy/other" if d == "encode" else "ADy/other", False) in subs
        assert all(m for st, m in subs if not st.endswith("other"))


def test_plain_reference_matches(image):
    codec = lcstudy.load_codec("HP", 1, weights="random")
    te, td, enc, xh = plain_encode_decode(codec, image)
    r = encode_decode(codec, image)
    assert te > 0 and td > 0 and enc["strings"] == r.strings and torch.equal(xh, r.x_hat)


def test_verify_split_passes_and_refuses_a_broken_split(monkeypatch, image):
    from lcstudy.core import instrument
    from lcstudy.errors import InputError

    codec = lcstudy.load_codec("MS-HP", 1, weights="random")
    verify_split(codec, image)  # the real split reproduces compress()/decompress()
    real = instrument._timed

    def broken(clock, stage, fn, recorder, countable, pmods):
        inner = real(clock, stage, fn, recorder, countable, pmods)
        if stage != "h_s":
            return inner
        return lambda *a, **k: inner(*a, **k) * 1.01  # a "split" that changes h_s's output

    monkeypatch.setattr(instrument, "_timed", broken)
    with pytest.raises(InputError, match="first difference in stage h_s"):
        verify_split(codec, image)
