"""The run protocol: tidy tables and resume, memory and operators with known answers, contention
detected and redone, pause → resume → warm-up again, a run's identity, odd and bad inputs."""
import json
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pandas as pd
import pytest
import torch

import lcstudy
from lcstudy.core.stats import fixed
from lcstudy.errors import InputError
from lcstudy.runs import layout, lock
from lcstudy.runs.tidy import load_results

FAKE = "tests.fakecodec:FakeHyperprior"


@pytest.fixture(scope="module")
def hp():
    return lcstudy.load_codec("HP", 1, weights="random")


def test_tidy_table_resume_and_costs(hp, kodak, tmp_path):
    imgs = [kodak / "kodim01.png", kodak / "kodim04.png"]  # both orientations
    df = lcstudy.profile(hp, imgs, repeats=2, crop=192, results_dir=tmp_path)
    need = ["codec", "quality", "platform", "device", "threads", "weights", "weights_label", "image", "node",
            "height", "width", "direction", "stage", "stage_kind", "measured", "seconds", "iqr_seconds", "ci_low",
            "n_samples", "stop", "bpp", "psnr", "ms_ssim", "cpu_model", "torch_version", "run_id"]
    assert set(need) <= set(df.columns)
    assert set(df.image) == {"kodim01", "kodim04"} and (df.n_samples == 2).all() and (df.stop == "ceiling").all()
    enc = df[(df.image == "kodim01") & (df.direction == "encode")].set_index("stage")
    assert {"g_a", "h_a", "AEz", "ADz", "h_s", "AEy", "misc", "total", "network"} <= set(enc.index)
    assert (df.bpp > 0).all() and df.psnr.notna().all() and df.ms_ssim.notna().all()
    files = sorted(tmp_path.rglob("items/*.json"))
    assert len(files) == 2
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    df2 = lcstudy.profile(hp, imgs, repeats=2, crop=192, results_dir=tmp_path)  # resume: nothing remeasured
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    pd.testing.assert_frame_equal(df.drop(columns=["time_utc"]), df2.drop(columns=["time_utc"]))
    df3 = lcstudy.profile(hp, imgs[:1], repeats=1, crop=192, results_dir=tmp_path)  # another setting: another run
    assert df3.run_id.iloc[0] != df.run_id.iloc[0]
    assert len(load_results(tmp_path)) == len(df) + len(df3)
    runs = load_results(tmp_path, "runs").set_index("run_id")
    first = runs.loc[df.run_id.iloc[0]]
    s = df.attrs["samples"]
    work = s[s.stage == "total"].seconds.sum()
    assert first["items"] == 2 and first.repeats == 4 and first.codec_seconds == pytest.approx(work)
    assert work < first.item_wall_seconds < first.wall_seconds
    assert first.interrupted_executions == 0
    # an execution killed before it finished records no wall time: the run's wall is then its items'
    # walls plus its phases (a lower bound), not the other executions' alone
    meta_file = next(f for f in tmp_path.rglob("run.json") if df.run_id.iloc[0] in str(f))
    meta = json.loads(meta_file.read_text())
    meta["executions"] = [{"started_utc": "x", "node": "n"}, {**meta["executions"][0], "wall_seconds": 0.5}]
    meta["phase_seconds"] = {"kernels": 7.0}
    meta_file.write_text(json.dumps(meta))
    again = load_results(tmp_path, "runs").set_index("run_id").loc[df.run_id.iloc[0]]
    assert again.interrupted_executions == 1
    assert again.wall_seconds == pytest.approx(first.item_wall_seconds + 7.0)


def test_a_known_allocation_shows_in_peak_memory(tmp_path, small_png):
    """200 MB allocated inside the decode: the working memory of the decode is 200 MB within 10 %."""

    class Alloc(torch.nn.Module):
        def forward(self, x):
            big = torch.ones(50_000_000)  # 200 MB, touched
            return x + big[:1].sum() * 0

    codec = lcstudy.load_codec(FAKE, weights="random")
    codec.model.g_s = torch.nn.Sequential(codec.model.g_s, Alloc())
    df = lcstudy.profile(codec, [small_png("a", 64, 64)], repeats=3, warmup=0)
    mem = df.attrs["memory"]
    rss = mem[mem.memory == "cpu_rss"].groupby("direction").working_mb.median()
    assert set(mem.method) == {"VmHWM reset via clear_refs"}
    assert rss["decode"] == pytest.approx(200 * 1e6 / 2**20, rel=0.10)
    assert rss["encode"] < 20


def test_operator_shares_with_a_known_dominant_operator(tmp_path, small_png):
    """A codec whose analysis transform is one large convolution: convolution dominates the encode."""
    import torch.nn.functional as F

    class Conv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.rand(64, 3, 9, 9))

        def forward(self, x):
            F.conv2d(torch.rand(1, 3, 512, 512), self.w)
            return x

    codec = lcstudy.load_codec(FAKE, weights="random", kwargs={k: 0.0 for k in ("enc_g_a", "enc_h_a", "enc_AEz",
                                                                                "enc_ADz", "enc_h_s", "enc_AEy")})
    codec.model.g_a = Conv()
    df = lcstudy.profile(codec, [small_png("a", 64, 64)], repeats=1, kernels=True)
    k = df.attrs["kernels"]
    enc = k[(k.direction == "encode") & (k.op_kind == "cpu_op")].groupby("category").share.sum()
    assert enc.idxmax() == "convolution" and enc["convolution"] > 0.5, enc
    dec = k[(k.direction == "decode") & (k.op_kind == "cpu_op")].groupby("category").share.sum()
    assert dec.get("convolution", 0.0) == 0.0  # the decoder does no convolution at all


BURN = ("import sys, time\nprint('burning', flush=True)\nend = time.time() + float(sys.argv[1])\n"
        "while time.time() < end: pass\n")


def test_contention_is_detected_redone_and_kept(tmp_path, small_png):
    """A CPU-burning process beside a run: its samples are marked contended, kept in the raw samples,
    left out of the medians, and measured again once the machine is quiet."""
    codec = lcstudy.load_codec(FAKE, weights="random")
    img = small_png("a", 64, 64)
    lcstudy.profile(codec, [img], repeats=3, warmup=0)  # imports and caches warm
    # The burner stops when the run reports its first contended repeat (at most 60 s): a fixed spell
    # (1.2 s) could end during the run's own setup (probe, warm-up, split check: ~0.5 s here, twice
    # that beside the burner on the slow AVX2 VM), leaving no repeat contended
    burner = subprocess.Popen([sys.executable, "-c", BURN, "60"], stdout=subprocess.PIPE, text=True)
    assert burner.stdout.readline().strip() == "burning"

    def log(message):
        if "was contended" in message and burner.poll() is None:
            burner.kill()
            burner.wait()

    rule = replace(fixed(3, warmup=0), max_redo=30)
    try:
        df = lcstudy.profile(codec, [img], rule=rule, results_dir=tmp_path, log=log)
    finally:
        burner.kill()
        burner.wait()
    s = df.attrs["samples"]
    tot = s[(s.stage == "total") & (s.direction == "encode")]
    assert tot.contended.sum() >= 1 and (~tot.contended).sum() == 3
    assert (tot[tot.contended].other_cpu_s > 0.03).all()
    row = df[(df.stage == "total") & (df.direction == "encode")].iloc[0]
    assert row.n_samples == 3 and row.n_contended == tot.contended.sum()
    assert row.seconds == pytest.approx(tot[~tot.contended].seconds.median())
    runs = load_results(tmp_path, "runs").iloc[0]
    assert 0 < runs.contended_share < 1


def test_pause_resume_and_warm_up_again(tmp_path, small_png):
    """Paused between two images of one shape, the run waits (acknowledging), goes on when released,
    and warms the shape up again; no timed repeat contains the pause."""
    codec = lcstudy.load_codec(FAKE, weights="random")
    imgs = [small_png(f"i{k}", 64, 64, seed=k) for k in range(3)]
    p = lock.pause_path()
    ack = p.with_name(p.name + ".ack")
    out = {}

    def run():
        out["df"] = lcstudy.profile(codec, imgs, repeats=2, warmup=1, results_dir=tmp_path, log=lambda m: None)

    th = threading.Thread(target=run)
    try:
        th.start()
        deadline = time.time() + 60
        while time.time() < deadline and not list(tmp_path.rglob("items/i0.json")):
            time.sleep(0.005)
        p.touch()
        t0 = time.time()
        while time.time() < deadline and not ack.exists():
            time.sleep(0.01)
        assert ack.exists(), "the run never acknowledged the pause"
        n_paused = len(list(tmp_path.rglob("items/*.json")))
        time.sleep(0.5)
        assert len(list(tmp_path.rglob("items/*.json"))) == n_paused  # it really waits
        p.unlink()
        th.join(60)
        paused_for = time.time() - t0
    finally:
        p.unlink(missing_ok=True)
    assert not ack.exists()
    run_dir = next(tmp_path.rglob("run.json")).parent
    recs = {r["item"]: r for r in layout.read_items(run_dir)}
    assert recs["i0"]["warmup"]["codings"] == 1
    after = f"i{n_paused}"
    assert recs[after]["warmup"]["codings"] == 1  # same shape, warmed again after the pause
    untouched = [k for k in recs if k not in ("i0", after)]
    assert all(recs[k]["warmup"]["codings"] == 0 for k in untouched)
    s = out["df"].attrs["samples"]
    assert s[s.stage == "total"].seconds.max() < paused_for / 2


def test_same_name_other_content_is_another_run(hp, tmp_path, small_png):
    a = small_png("photo", 64, 64, seed=1, folder=tmp_path / "a")
    b = small_png("photo", 64, 64, seed=2, folder=tmp_path / "b")
    res = tmp_path / "res"
    da = lcstudy.profile(hp, [a], repeats=1, results_dir=res)
    db = lcstudy.profile(hp, [b], repeats=1, results_dir=res)
    assert da.run_id.iloc[0] != db.run_id.iloc[0]  # measured again, not "1 of 1 already measured"
    back = load_results(res)
    assert back.run_id.nunique() == 2 and set(back.image) == {"photo"}


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_odd_images_are_converted_with_a_note(hp, small_png, mode):
    p = small_png(f"odd_{mode.replace(';', '')}", 80, 100, mode=mode)  # not a multiple of 64 either
    notes = []
    df = lcstudy.profile(hp, [p], repeats=1, log=notes.append)
    assert any("converted" in n for n in notes)
    assert (df.height == 80).all() and (df.width == 100).all()


def test_bad_inputs_name_the_file_and_write_nothing(hp, tmp_path, small_png):
    good = small_png("good")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    text = tmp_path / "notes.png"
    text.write_text("hello")
    res = tmp_path / "res"
    for bad in (tmp_path / "missing.png", empty, trunc, text):
        with pytest.raises(InputError, match=bad.name):
            lcstudy.profile(hp, [good, bad], repeats=1, results_dir=res)
    assert not res.exists()
    with pytest.raises(InputError, match="repeats"):
        lcstudy.profile(hp, [good], repeats="three")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="no images"):
        lcstudy.profile(hp, tmp_path / "emptydir")


@pytest.mark.slow
def test_matmul_peak_measured_once_per_node_and_threads(tmp_path, small_png):
    """The second run in a results folder reads the peak its node measured; another thread count measures
    its own; a damaged cache file is measured again, not trusted."""
    codec = lcstudy.load_codec(FAKE, weights="random")
    lcstudy.profile(codec, [small_png("a", 64, 64)], repeats=1, results_dir=tmp_path)
    lcstudy.profile(codec, [small_png("b", 64, 64)], repeats=1, results_dir=tmp_path)
    lcstudy.profile(codec, [small_png("c", 64, 64)], repeats=1, threads=1, results_dir=tmp_path)
    runs = {r.meta["request"]["images"][0]["name"]: r for r in layout.runs(tmp_path)}
    a, b, c = (runs[k].meta["peak"] for k in "abc")
    assert a["peak_run_id"] == runs["a"].meta["run_id"] and b == a  # read, not measured again
    assert c["peak_run_id"] == runs["c"].meta["run_id"] and c["peak_matmul_threads"] == 1
    caches = sorted((tmp_path / "_cache" / "peak").glob("*.json"))
    assert len(caches) == 2
    for f in caches:
        f.write_text("{not json")
    lcstudy.profile(codec, [small_png("d", 64, 64)], repeats=1, results_dir=tmp_path)
    d = next(r for r in layout.runs(tmp_path) if r.meta["request"]["images"][0]["name"] == "d").meta["peak"]
    assert d["peak_run_id"] != a["peak_run_id"] and d["peak_matmul_gflops"] > 0


def test_free_heap_is_given_back_before_each_item(tmp_path, small_png, monkeypatch):
    """Freed heap memory stays resident until trimmed (it would sit in the next item's baseline and hide
    its working set); the protocol trims before every item."""
    import ctypes

    from lcstudy.core import memory
    from lcstudy.runs import protocol

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    rss = lambda: memory._status_kb("VmRSS") / 1024  # noqa: E731
    ptrs = [libc.malloc(60_000) for _ in range(2000)]  # 120 MB of heap blocks (below the mmap threshold)
    for p in ptrs:
        ctypes.memset(p, 1, 60_000)
    held = rss()
    for p in ptrs[:-1]:  # the last one pins the top of the heap: only a trim gives the rest back
        libc.free(p)
    kept = rss()
    assert memory.release_free_heap()
    after = rss()
    libc.free(ptrs[-1])
    assert held - kept < 30 and kept - after > 80, (held, kept, after)

    calls = []
    monkeypatch.setattr(protocol, "release_free_heap", lambda: calls.append(1))
    codec = lcstudy.load_codec(FAKE, weights="random")
    lcstudy.profile(codec, [small_png(n, 64, 64) for n in "abc"], repeats=1, warmup=0)
    assert len(calls) == 3


_HEAVY_PROBE = r"""
import json, sys
import lcstudy
from lcstudy.core import memory

HEAVY = ("torch._dynamo", "ptflops", "sympy", "torchvision")
seen = []
begin = memory.PeakMemory.begin
def spy(self):
    seen.append(sorted(m for m in HEAVY if m in sys.modules))
    return begin(self)
memory.PeakMemory.begin = spy
codec = lcstudy.load_codec("HP", 1, weights="random")
df = lcstudy.profile(codec, sys.argv[1:3], repeats=2, warmup=1, macs=True, results_dir=sys.argv[3])
print(json.dumps({"at_readings": seen, "after": sorted(m for m in HEAVY if m in sys.modules),
                  "macs": int(df.attrs["complexity"].macs.sum())}))
"""


@pytest.mark.slow
def test_memory_is_read_before_the_mac_count_loads_its_imports(tmp_path, small_png):
    """Counting MACs runs torch's dispatch modes, which import torch._dynamo (and sympy; ptflops imports
    torchvision): ~150 MB of RSS. Counted in the first warm-up, as until 7 Dec, it raised every later memory
    reading of that run — not those of a run whose MACs came from the cache (HP at 256²: baseline 697 → 858 MB).
    Every reading of a run that counts must be made before those imports: in a fresh process, none loaded at
    any reading, all loaded by the end (the count did run there)."""
    out = subprocess.run([sys.executable, "-c", _HEAVY_PROBE, str(small_png("m", 96, 64)), str(small_png("n", 64, 96)),
                          str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["macs"] > 0 and "torch._dynamo" in r["after"], r
    assert r["at_readings"] and all(not m for m in r["at_readings"]), r["at_readings"]
    # the memory table says which runs read with them resident: those measured before (run.json "capture")
    assert not load_results(tmp_path / "r", "memory").mac_imports_resident.any()
    from .test_rerender import FIXTURE

    old = load_results(FIXTURE, "memory")
    assert old[old.label == "HP-q1"].mac_imports_resident.all()


@pytest.mark.parametrize("first_warmup,macs_s,resident", [
    ({"codings": 1, "captured": True}, 2.6, True),   # counted in its first warm-up (before a775b1c)
    ({"codings": 1, "captured": True}, 0.01, False),  # the same, but the table came from the cache: nothing counted
    ({"codings": 0, "reason": "skipped"}, 9.0, False),  # first warm-up skipped: counted after the items
    ({"codings": 1, "seconds": 0.2}, 2.6, False),     # since 7 Dec: never in a warm-up
])
def test_which_old_runs_read_memory_with_the_mac_imports_resident(first_warmup, macs_s, resident):
    from lcstudy.runs.tidy import mac_imports_resident

    meta = {"items": ["a", "b"], "phase_seconds": {"macs": macs_s}, "capture": "b"}
    second = {"codings": 1, "captured": True} if first_warmup.get("codings") == 0 else {"codings": 1}
    recs = [{"item": "a", "warmup": first_warmup}, {"item": "b", "warmup": second}]
    assert mac_imports_resident(meta, recs) is resident


def test_one_run_of_several_sizes(tmp_path, kodak):
    """SIZES: one item per size, smallest first, each with its own size and crop/resize in every table."""
    from lcstudy.runs import learned

    r = learned.run(codec="FP", images=str(kodak), limit=1, sizes="crop64,160x96", weights="random", kernels=False,
                    macs=False, results_dir=str(tmp_path), profile="quick", progress=False, log=lambda *a: None)
    assert r.run.meta["items"] == ["kodim01@crop64", "kodim01@160x96"] and r.run.complete
    t = r.tables["timings"]
    tot = t[(t.stage == "total") & (t.direction == "decode")].set_index("item")
    assert tot.loc["kodim01@crop64", ["height", "width", "crop"]].tolist() == [64, 64, 64]
    assert tot.loc["kodim01@160x96", ["height", "width", "resize"]].tolist() == [96, 160, "160x96"]
    assert pd.isna(tot.loc["kodim01@160x96", "crop"]) and set(tot.image) == {"kodim01"}
    for table in ("samples", "memory"):
        d = r.tables[table]
        assert set(zip(d["item"], d["resize"].fillna("-"))) == {("kodim01@crop64", "-"), ("kodim01@160x96", "160x96")}
    # the main measurements: where every row is cropped (quick), its common crop; never a synthetic size
    from lcstudy.runs.tidy import main_rows

    assert set(main_rows(t).item) == {"kodim01@crop64"}
    # the run page lists the items in the order measured (by file name 160x96 would come first)
    from lcstudy.chapters import run_page

    page = run_page.build(r)
    for part in ("stages", "memory"):
        assert list(dict.fromkeys(page.parts[part][0].obj.data.iloc[:, 0])) == ["kodim01@crop64", "kodim01@160x96"]
