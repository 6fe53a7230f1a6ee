"""Standard codecs in the harness: real encodes, resume, clear errors; pause between images."""
import threading
import time

import pytest

from lcstudy import lock, standard
from lcstudy.errors import InputError


def test_measure_sweep_resume_and_load(kodak, tmp_path):
    kw = dict(codecs=["JPEG", "HEVC (x265)"], sweep="short", repeats=2, warmup=1, crop=192, results_dir=tmp_path,
              progress=False)
    df = standard.measure([kodak / "kodim01.png"], **kw)
    assert set(df.codec) == {"JPEG", "HEVC (x265)"} and set(df.direction) == {"encode", "decode"}
    assert (df.n_samples == 2).all() and (df.seconds > 0).all()
    jpeg = df[(df.codec == "JPEG") & (df.direction == "encode")].sort_values("value")
    assert list(jpeg.value) == list(standard.get_codec("JPEG").short_sweep())
    assert jpeg.bpp.is_monotonic_increasing and jpeg.psnr.is_monotonic_increasing
    assert (jpeg.psnr > 15).all() and (jpeg.ms_ssim <= 1).all()
    files = sorted(tmp_path.rglob("images/*.json"))
    assert len(files) == 6
    mt = {f: f.stat().st_mtime_ns for f in files}
    again = standard.measure([kodak / "kodim01.png"], **kw)
    assert {f: f.stat().st_mtime_ns for f in files} == mt  # nothing remeasured
    loaded = standard.load_standard(tmp_path)
    cols = ["codec", "value", "direction", "seconds", "bpp"]
    key = ["codec", "value", "direction"]
    assert loaded[cols].sort_values(key).reset_index(drop=True).equals(
        again[cols].sort_values(key).reset_index(drop=True))
    from lcstudy.results import run_costs

    cost = run_costs(tmp_path).set_index("codec")
    jp = df[df.codec == "JPEG"]
    assert cost.loc["JPEG", "images_with_wall"] == len(jp) // 2 == cost.loc["JPEG", "images"]
    assert cost.loc["JPEG", "codec_s"] == pytest.approx(2 * jp.seconds.sum())  # median of 2 samples = their mean
    assert 0 < cost.loc["HEVC (x265)", "codec_share"] < 1


def test_bad_inputs(kodak):
    with pytest.raises(InputError, match="valid: JPEG"):
        standard.get_codec("BPG")
    with pytest.raises(InputError, match="sweep must be"):
        standard.measure([kodak / "kodim01.png"], sweep="long", progress=False)
    with pytest.raises(InputError, match="limit must be"):
        standard.run(images=kodak, limit=0)


def test_pause_waits_between_images(tmp_path, monkeypatch):
    monkeypatch.setenv("LCSTUDY_LOCK", str(tmp_path / "lock"))
    p = lock.pause_path()
    p.touch()
    seen = []

    def release():
        t0 = time.monotonic()
        ack = p.with_name(p.name + ".ack")
        while not ack.exists() and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        seen.append(ack.exists())
        p.unlink()

    th = threading.Thread(target=release)
    th.start()
    waited = lock.wait_if_paused(log=lambda m: None, poll_s=0.05)
    th.join()
    assert seen == [True] and waited > 0
    assert not p.with_name(p.name + ".ack").exists()
    assert lock.wait_if_paused(log=lambda m: None) == 0.0
