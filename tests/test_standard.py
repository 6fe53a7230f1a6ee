"""The standard codecs: a round trip through each of the six, and their run through the protocol."""
import pytest

from lcstudy.core import images as I
from lcstudy.core import metrics
from lcstudy.core import pillow_codecs as S
from lcstudy.errors import InputError

# PSNR (dB) a codec must reach on kodim01 (256² crop) at the middle of its sweep: the codec really coded it
RANGES = {"JPEG": (26, 40), "JPEG 2000": (24, 40), "WebP": (26, 42), "AVIF": (26, 42), "HEVC (x265)": (26, 42),
          "JPEG XL": (26, 45)}


@pytest.mark.parametrize("name", [c.name for c in S.STANDARD])
def test_round_trip(name, kodak):
    S.libraries()
    c = S.get_codec(name)
    im = I.load_image(kodak / "kodim01.png", crop=256)
    pil = I.to_pil(im.x)
    value = c.sweep[len(c.sweep) // 2]
    data, te = S.encode(c, pil, c.save_kwargs(value, 2))
    out, td = S.decode(data)
    assert te > 0 and td > 0 and out.size == (256, 256) and out.mode == "RGB"
    bpp = metrics.bpp(len(data), 256, 256)
    q = metrics.quality(im.x, I.to_tensor(out))
    lo, hi = RANGES[name]
    assert 0.05 < bpp < 4 and lo < q["psnr"] < hi, (bpp, q)
    # more quality (or a lower JPEG 2000 ratio) costs more bits
    hi_data, _ = S.encode(c, pil, c.save_kwargs(c.sweep[-1], 2))
    lo_data, _ = S.encode(c, pil, c.save_kwargs(c.sweep[0], 2))
    assert len(hi_data) > len(data) > len(lo_data)


def test_standard_run_resumes_and_loads(kodak, tmp_path):
    from lcstudy.runs import standard_subject as standard
    from lcstudy.runs.tidy import load_results

    kw = dict(images=str(kodak / "kodim01.png"), crop=192, codecs="JPEG,HEVC (x265)", sweep="short", repeats=2,
              results_dir=str(tmp_path), profile="quick", progress=False)
    r = standard.run(log=lambda m: None, **kw)
    std = r.tables["standard"]
    assert set(std.codec) == {"JPEG", "HEVC (x265)"} and set(std.direction) == {"encode", "decode"}
    assert (std.n_samples == 2).all() and (std.seconds > 0).all()
    jpeg = std[(std.codec == "JPEG") & (std.direction == "encode")].sort_values("value")
    assert list(jpeg.value) == list(S.get_codec("JPEG").short_sweep())
    assert jpeg.bpp.is_monotonic_increasing and jpeg.psnr.is_monotonic_increasing
    files = sorted(tmp_path.rglob("items/*.json"))
    assert len(files) == 6
    mt = {f: f.stat().st_mtime_ns for f in files}
    standard.run(log=lambda m: None, **kw)
    assert {f: f.stat().st_mtime_ns for f in files} == mt  # nothing remeasured
    runs = load_results(tmp_path, "runs").iloc[0]
    assert runs["items"] == 6 and runs.codec_seconds == pytest.approx(
        load_results(tmp_path, "samples").seconds.sum())


def test_bad_inputs(kodak, tmp_path):
    from lcstudy.runs.params import resolve

    with pytest.raises(InputError, match="valid: JPEG"):
        S.get_codec("BPG")
    with pytest.raises(InputError, match="SWEEP='long'"):
        resolve({"images": str(kodak), "sweep": "long", "results_dir": str(tmp_path)}, "profile_standard")
