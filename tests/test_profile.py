import json
import os

import pandas as pd
import pytest

import lcstudy
from lcstudy.errors import InputError
from lcstudy.profile import profile


@pytest.fixture(scope="module")
def hp():
    return lcstudy.load_codec("HP", 1)


def test_profile_tidy_table_and_resume(hp, kodak, tmp_path):
    imgs = [kodak / "kodim01.png", kodak / "kodim04.png"]  # both orientations
    df = profile(hp, imgs, repeats=2, warmup=1, crop=192, results_dir=tmp_path, memory=False, kernels=False,
                 progress=False)
    need = ["codec", "quality", "device", "threads", "weights", "image", "height", "width", "direction", "stage",
            "seconds", "iqr_seconds", "bpp", "psnr", "ms_ssim", "host", "cpu_model", "gpu_name", "torch_version",
            "compressai_version", "seed", "lcstudy_version", "git_commit", "time_utc"]
    assert set(need) <= set(df.columns)
    assert set(df.image) == {"kodim01", "kodim04"}
    assert (df.seconds >= 0).all() and (df.n_samples == 2).all()
    enc = df[(df.image == "kodim01") & (df.direction == "encode")].set_index("stage").seconds
    assert set(["g_a", "h_a", "AEz", "ADz", "h_s", "AEy", "misc", "total", "network"]) <= set(enc.index)
    assert (df.bpp > 0).all() and df.psnr.notna().all() and df.ms_ssim.notna().all()
    assert len(df.attrs["samples"]) == len(df) * 2
    files = sorted((tmp_path).rglob("images/*.json"))
    assert len(files) == 2
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    # rerun: nothing remeasured, same table shape
    df2 = profile(hp, imgs, repeats=2, warmup=1, crop=192, results_dir=tmp_path, memory=False, kernels=False,
                  progress=False)
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    pd.testing.assert_frame_equal(df.drop(columns=["time_utc"]), df2.drop(columns=["time_utc"]))
    # a changed setting is a new run, not mixed
    df3 = profile(hp, imgs[:1], repeats=1, warmup=0, crop=192, results_dir=tmp_path, memory=False, kernels=False,
                  progress=False)
    assert df3.run_id.iloc[0] != df.run_id.iloc[0]
    back = lcstudy.load_results(tmp_path)
    assert len(back) == len(df) + len(df3)
    # what the runs cost: codec work is the sum of the timed encode+decode samples, inside each image's wall
    from lcstudy.results import run_costs

    cost = run_costs(tmp_path).set_index("run_id")
    first = cost.loc[df.run_id.iloc[0]]
    s = df.attrs["samples"]
    work = s[s.stage == "total"].seconds.sum()
    assert first.images == first.images_with_wall == 2
    assert first.codec_s == pytest.approx(work) and first.codec_s_all_images == pytest.approx(work)
    assert work < first.image_wall_s and 0.2 < first.codec_share < 1  # 1 warm-up + 2 repeats per shape


def test_memory_and_kernels(hp, kodak):
    df = profile(hp, [kodak / "kodim01.png"], repeats=1, warmup=0, crop=128, progress=False)
    mem = df.attrs["memory"]
    rss = mem[mem.memory == "cpu_rss"].set_index("direction")
    assert (rss.peak_mb >= rss.baseline_mb).all() and (rss.peak_mb > 100).all()
    k = df.attrs["kernels"]
    for d in ("encode", "decode"):
        kk = k[(k.direction == d) & (k.kind == "cpu_op")]
        assert kk.share.sum() == pytest.approx(1.0)
        assert "convolution" in set(kk.category) or "transposed convolution" in set(kk.category)


def test_bad_inputs_name_the_file(hp, tmp_path, small_png):
    good = small_png("good")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "notes.png"
    text.write_text("hello")
    res = tmp_path / "res"
    for bad in (tmp_path / "missing.png", empty, trunc, text):
        with pytest.raises(InputError, match=bad.name):
            profile(hp, [good, bad], repeats=1, results_dir=res, memory=False, kernels=False, progress=False)
    assert not res.exists()  # nothing written for a failed run
    with pytest.raises(InputError, match="repeats"):
        profile(hp, [good], repeats="three", memory=False, kernels=False, progress=False)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="no images"):
        profile(hp, tmp_path / "emptydir", memory=False, kernels=False, progress=False)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_odd_images_are_converted_with_a_note(hp, small_png, mode):
    p = small_png(f"odd_{mode.replace(';', '')}", 80, 100, mode=mode)  # not a multiple of 64 either
    notes = []
    df = profile(hp, [p], repeats=1, warmup=0, memory=False, kernels=False, progress=False, log=notes.append)
    assert any("converted" in n for n in notes)
    assert (df.height == 80).all() and (df.width == 100).all()


def test_pause_is_honoured_before_every_measured_phase(hp, kodak, monkeypatch):
    """The peak matmul, memory and kernel phases are measurements too: a `make pause` must stop
    the run before each of them, not only between images."""
    from lcstudy import kernels, lock, machine, memory

    events = []
    monkeypatch.setattr(lock, "wait_if_paused", lambda log=print, poll_s=1.0: events.append("wait") or 0.0)
    monkeypatch.setattr(machine, "peak_matmul", lambda dev, threads: events.append("peak") or {})
    monkeypatch.setattr(memory, "measure_isolated", lambda *a, **k: events.append("memory") or [])
    monkeypatch.setattr(kernels, "profile_ops", lambda *a, **k: events.append("kernels") or pd.DataFrame())
    profile(hp, [kodak / "kodim01.png"], repeats=1, warmup=0, crop=64, progress=False)
    assert events == ["wait", "wait", "peak", "wait", "memory", "wait", "kernels"]
