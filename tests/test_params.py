"""Every parameter checked before a notebook starts: one line naming the value and the fix, an exit
status ≠ 0, in under 3 s, and nothing written."""
import subprocess
import sys
import time

import pytest

from lcstudy.errors import InputError
from lcstudy.runs.params import resolve

from .conftest import KODAK, ROOT

BAD = [
    ({"codec": "JPEG-AI"}, "unknown codec 'JPEG-AI'"),
    ({"codec": "FP", "quality": 9}, "quality 9 is out of range for FP: valid qualities are 1–8"),
    ({"codec": "FP", "device": "tpu"}, "unknown device 'tpu'"),
    ({"codec": "FP", "threads": 0}, "THREADS=0: must be an integer ≥ 1"),
    ({"codec": "FP", "limit": -1}, "LIMIT=-1"),
    ({"codec": "FP", "crop": 7}, "CROP=7: must be an integer ≥ 16"),
    ({"codec": "FP", "repeats": "three"}, "REPEATS='three'"),
    ({"codec": "FP", "weights": "/x.pth"}, "checkpoint not found"),
    ({"codec": "FP", "images": "/nonexistent/folder"}, "images not found"),
    ({"codec": "FP", "resize": "big"}, "WIDTHxHEIGHT"),
    ({"codec": "FP", "profile": "fast"}, "unknown profile 'fast'; valid profiles: quick, standard, paper"),
    ({"codec": "FP", "budget": -1}, "BUDGET=-1"),
    ({"codec": "FP", "sizes": "crop512,big"}, "'big' is neither cropN nor WIDTHxHEIGHT"),
    ({"codec": "FP", "sizes": "crop8"}, "must be an integer ≥ 16"),
    ({"codec": "FP", "sizes": "crop64,crop64"}, "crop64 given twice"),
    ({"codec": "FP", "sizes": "crop64", "crop": 32}, "give either SIZES or CROP/RESIZE"),
    ({"codec": "FP", "sizes": "crop64", "resize": "96x64"}, "give either SIZES or CROP/RESIZE"),
    ({"codec": "FP", "sizes": " , "}, "give at least one size"),
    ({"codec": "FP", "repeat": 3}, "unknown parameter 'repeat'"),
    ({"codec": "FP", "fingerprints": -1}, "FINGERPRINTS=-1: must be an integer ≥ 0; the number of items"),
    ({"codec": "FP", "fingerprints": "some"}, "FINGERPRINTS='some'"),
    ({"codec": "FP", "sizes": "crop64", "fingerprints": "all"}, "never decodes a resolution-scaling run's streams"),
    ({"codec": "FP", "results_dir": "/proc/lcstudy-results"}, "cannot be created"),
]


@pytest.mark.parametrize("params,msg", BAD)
def test_bad_values_are_refused_by_the_checks(params, msg, tmp_path):
    params = {"images": str(KODAK), "results_dir": str(tmp_path / "res"), **params}
    with pytest.raises(InputError) as e:
        resolve(params)
    assert msg in str(e.value)
    assert not (tmp_path / "res").exists()


def test_results_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        resolve({"codec": "FP", "images": str(KODAK), "results_dir": str(f)})


def test_profile_settings_are_honoured(tmp_path):
    q = resolve({"codec": "FP", "profile": "quick", "images": str(KODAK), "results_dir": str(tmp_path)})
    assert (len(q.images), q.crop, q.rule.max_repeats) == (2, 256, 6)
    s = resolve({"codec": "FP", "images": str(KODAK), "results_dir": str(tmp_path)})
    assert (len(s.images), s.crop) == (24, None)
    o = resolve({"codec": "FP", "profile": "quick", "limit": 3, "crop": 0, "images": str(KODAK),
                 "results_dir": str(tmp_path)})
    assert (len(o.images), o.crop) == (3, None)  # explicit values win over the profile's
    # operator profile on a crop: the quick profile's autoregressive codecs only
    kc = {(c, p): resolve({"codec": c, "profile": p, "images": str(KODAK), "results_dir": str(tmp_path)}).kernels_crop
          for c in ("ARC", "FP") for p in ("quick", "standard")}
    assert kc == {("ARC", "quick"): 128, ("FP", "quick"): None, ("ARC", "standard"): None, ("FP", "standard"): None}
    small = resolve({"codec": "ARC", "profile": "quick", "crop": 96, "images": str(KODAK),
                     "results_dir": str(tmp_path)})
    assert small.kernels_crop is None  # never a crop larger than what was measured


@pytest.mark.parametrize("args,msg", [
    (["codec=FP", "quality=9"], "quality 9 is out of range"),
    (["codec=FP", "device=tpu"], "unknown device"),
    (["codec=FP", "profile=fast"], "unknown profile"),
    (["codec=FP", "weights=/x.pth"], "checkpoint not found"),
])
def test_cli_fails_fast_on_one_line(args, msg, tmp_path):
    """What `make run` does with a bad value: exit 2 within 3 s, one line on stderr, nothing written."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lcstudy.pipeline", "run", "--results-dir", str(tmp_path / "r"),
                          *args, f"images={KODAK}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t
    assert out.returncode == 2 and elapsed < 3.0, (out.returncode, elapsed)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], out.stderr
    assert not (tmp_path / "r").exists()


def test_identity_covers_what_changes_numbers(tmp_path, small_png):
    a = small_png("a", 64, 64, seed=1)
    base = {"codec": "HP", "images": str(a), "results_dir": str(tmp_path), "weights": "random"}
    rid = resolve(base).request_id
    assert resolve({**base, "results_dir": str(tmp_path / "other")}).request_id == rid  # where is not what
    for change in ({"threads": 1}, {"crop": 32}, {"seed": 1}, {"repeats": 2}, {"quality": 2}, {"resize": "96x64"},
                   {"sizes": "crop32,96x64"},
                   {"device": "cpu:0"} if False else {"budget": 9}):
        assert resolve({**base, **change}).request_id != rid, change
    a.write_bytes(small_png("b", 64, 64, seed=2).read_bytes())  # same name, other content
    assert resolve(base).request_id != rid


def test_sizes_are_normalised_ordered_and_named(tmp_path):
    """SIZES keeps the given order (smallest first is the caller's choice), normalises each size, and the
    profile's crop gives way to it; the label names the sizes."""
    r = resolve({"codec": "HP", "profile": "quick", "images": str(KODAK), "limit": 1, "results_dir": str(tmp_path),
                 "sizes": " CROP64 ,96×64"})
    assert [str(s) for s in r.sizes] == ["crop64", "96x64"] and r.crop is None and r.resize is None
    assert r.label == "HP-q1-limit1-crop64-96x64"
    assert resolve({"codec": "HP", "images": str(KODAK), "results_dir": str(tmp_path), "sizes": "96x64,crop64"}) \
        .request_id != resolve({"codec": "HP", "images": str(KODAK), "results_dir": str(tmp_path),
                               "sizes": "crop64,96x64"}).request_id


def test_fingerprints_default_to_the_profiles_decode_limit_and_take_a_count_or_all(tmp_path):
    """FINGERPRINTS: how many of a run's items the encoder fingerprints (the decodability phase's references);
    not given, the profile's decode limit (quick 1, standard 2), a SIZES run none; ``all``: every item (None, as
    every run stored before the field). Not part of the run's identity."""
    base = {"codec": "FP", "images": str(KODAK), "results_dir": str(tmp_path)}
    got = {(p, f): resolve({**base, "profile": p, **({"fingerprints": f} if f is not None else {})}).fingerprints
           for p in ("quick", "standard") for f in (None, "all", 0, "3")}
    assert got == {("quick", None): 1, ("quick", "all"): None, ("quick", 0): 0, ("quick", "3"): 3,
                   ("standard", None): 2, ("standard", "all"): None, ("standard", 0): 0, ("standard", "3"): 3}
    assert resolve({**base, "sizes": "crop64,crop128", "limit": 1}).fingerprints == 0
    assert len({resolve({**base, "fingerprints": f}).request_id for f in (None, "all", 5)}) == 1
    # a measured run is not measured again for it: `make run`/`make runs` say so, naming the folder to remove
    from types import SimpleNamespace

    from lcstudy.pipeline.plan import fingerprints_not_applied

    req = resolve({**base, "fingerprints": "all"})
    done = SimpleNamespace(meta={"request": {"fingerprints": 2}}, path="results/vm/cpu/FP-q1/abc")
    note = fingerprints_not_applied(req, done, given=True)
    assert "already measured with 2 item(s) fingerprinted" in note and "remove results/vm/cpu/FP-q1/abc" in note
    assert fingerprints_not_applied(req, done, given=False) is None
    assert fingerprints_not_applied(req, SimpleNamespace(meta={"request": {"fingerprints": None}}, path="p"),
                                    given=True) is None


def test_the_scaling_runs_are_one_run_per_codec_with_every_size(tmp_path):
    """The standard plan measures kodim01's scaling sizes as the items of one run per codec (one kernel start
    and model load per codec, not per size), smallest first, with no operator profile or MAC count."""
    from lcstudy.core.codec_sources import registered
    from lcstudy.pipeline.plan import plan, resolve_plan
    from lcstudy.runs.profiles import get_profile

    prof = get_profile("standard")
    runs = plan(prof, ["cpu"])
    sc = [p for p in runs if p.role == "scaling"]
    assert len(sc) == len(list(registered())) and len({p.codec for p in sc}) == len(sc)
    # FINGERPRINTS given for every run (`make runs FINGERPRINTS=all`) does not reach a scaling run's
    res = resolve_plan(sc[:1], prof, str(tmp_path), {"images": str(KODAK), "weights": "random", "fingerprints": "all"})
    req = res[0].request
    assert req.fingerprints == 0
    main = [p for p in runs if p.role == "main" and p.codec == "FP"][:1]
    assert resolve_plan(main, prof, str(tmp_path), {"images": str(KODAK), "weights": "random",
                                                    "fingerprints": "all"})[0].request.fingerprints is None
    assert tuple(map(str, req.sizes)) == prof.scaling == ("crop512", "1920x1080", "3840x2160")
    assert (len(req.images), req.images[0].name, req.kernels, req.macs) == (1, "kodim01", False, False)
    from lcstudy.pipeline.cost import _mpx

    assert [round(_mpx(req, req.images[0], s), 3) for s in req.sizes] == [0.262, 2.074, 8.294]


def test_sizes_and_item_keys_are_values_read_back_from_their_text():
    """Issue 25: an item's size and key are values; their text (what SIZES takes, what item files are keyed
    by) reads back to the same value, and an image whose own name holds an ``@`` is not split."""
    from lcstudy.core.images import ItemKey, ItemSize

    for text in ("crop512", "1920x1080", "crop16"):
        assert str(ItemSize.parse(text)) == text
    assert ItemSize.parse("crop64").load_args() == {"crop": 64, "resize": None}
    assert ItemSize.parse("1920x1080").load_args() == {"crop": None, "resize": "1920x1080"}
    assert ItemSize.parse("3840x2160").megapixels == 3840 * 2160 / 1e6
    key = ItemKey("kodim01", ItemSize(resize=(1920, 1080)))
    assert str(key) == "kodim01@1920x1080" and ItemKey.parse(str(key)) == key
    assert ItemKey.parse("me@home") == ItemKey("me@home") and ItemKey.parse("kodim01") == ItemKey("kodim01")
    assert ItemKey.parse("me@home@crop64") == ItemKey("me@home", ItemSize(crop=64))
    for bad in ("crop8", "12x5", "big"):
        with pytest.raises(InputError):
            ItemSize.parse(bad)
