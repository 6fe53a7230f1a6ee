"""Deployment backends (BACKEND): bad values fail fast, and known answers —
an identity backend is byte-identical at speed-up 1, an exported transform agrees with eager, a wrong
backend is caught, a one-off cost never enters a median, old results read as eager."""
import copy
import dataclasses
import json
import os
import subprocess
import re
import sys
import time

import pytest
import torch

import lcstudy.core.contention as contention
from lcstudy.core import backends
from lcstudy.core.backends import BACKENDS, Backend
from lcstudy.errors import InputError
from lcstudy.runs import layout
from lcstudy.runs.params import resolve
from lcstudy.runs.tidy import load_results

from .conftest import KODAK, MIRROR, ROOT

FAKE = "tests.fakecodec:FakeHyperprior"


@pytest.mark.parametrize("value,device,msg", [
    ("nope", "cpu", "BACKEND='nope': must be one of eager, channels_last, compile, bf16, fp16, int8, onnxruntime"),
    ("fp16", "cpu", "BACKEND=fp16 runs on cuda only, not DEVICE=cpu; valid on cpu: eager, channels_last, compile, "
                    "bf16, int8, onnxruntime"),
])
def test_bad_backend_fails_fast_on_one_line(value, device, msg, tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(InputError) as e:
        resolve({"codec": "HP", "backend": value, "device": device, "images": str(KODAK),
                 "results_dir": str(tmp_path / "res")})
    assert str(e.value) == msg and "\n" not in str(e.value)
    assert time.perf_counter() - t0 < 3
    assert not (tmp_path / "res").exists()


def test_backend_in_the_identity_only_when_not_eager(tmp_path):
    """Every run made before the backend axis keeps its id: eager adds nothing to the identity."""
    p = {"codec": "HP", "images": str(KODAK), "limit": 1, "results_dir": str(tmp_path)}
    eager, explicit, ort = resolve(p), resolve({**p, "backend": "eager"}), resolve({**p, "backend": "onnxruntime"})
    assert "backend" not in eager.identity() and eager.request_id == explicit.request_id
    assert ort.identity()["backend"] == "onnxruntime" and ort.request_id != eager.request_id
    assert ort.label.endswith("-onnxruntime") and eager.label == explicit.label


# --- known answers on the fake codec (its modules do a known amount of work) ---------------------------

def _same(module, examples, threads):
    inner = copy.deepcopy(module)
    return inner, inner


def _first_call_slow(module, examples, threads):
    """The identity, but its first call on each input shape takes 0.5 s more: a compilation."""
    inner = copy.deepcopy(module)
    seen = set()

    def run(x):
        if tuple(x.shape) not in seen:
            seen.add(tuple(x.shape))
            time.sleep(0.5)
        return inner(x)
    return run, inner


def _perturbed(module, examples, threads):
    inner = copy.deepcopy(module)
    with torch.no_grad():
        for p in inner.parameters():
            p.mul_(1.5)
    return inner, inner


@pytest.fixture
def quiet(monkeypatch):
    """Other work on the development machine must not leave every repeat contended here."""
    monkeypatch.setattr(contention, "OTHER_CORES", 1e6)


def _run(monkeypatch, tmp_path, small_png, name, make, tolerance=None, repeats=4, warmup=1):
    from lcstudy.runs import learned

    monkeypatch.setitem(BACKENDS, name, Backend(name, "a test backend", "fp32", make, tolerance))
    for k in range(2):
        small_png(f"i{k}", 64, 64, seed=k, folder=tmp_path / "imgs")
    # not measured (LIMIT=2): the calibration image, of another size, so the measured shape is new after setup
    small_png("z", 96, 96, folder=tmp_path / "imgs")
    r = learned.run(codec=FAKE, backend=name, images=str(tmp_path / "imgs"), limit=2, repeats=repeats, warmup=warmup,
                    kernels=False, macs=False, results_dir=str(tmp_path / "res"), progress=False, log=lambda m: None)
    return r


@pytest.mark.slow
def test_identity_backend_is_byte_identical_at_speedup_one(monkeypatch, tmp_path, small_png, quiet):
    from lcstudy.chapters.deployment import speedups

    r = _run(monkeypatch, tmp_path, small_png, "same", _same, tolerance=0.0, repeats=5)
    t = r.tables["timings"]
    assert set(t.backend) == {"same", "eager"} and set(t.run_backend) == {"same"}
    assert t.identical_bitstream.all()
    sp = speedups(t)
    tot = sp[sp.stage == "total"].set_index("direction").speedup_vs_eager
    assert tot.between(0.8, 1.25).all(), tot  # the fake's work is ~0.1 s a coding: 1 within noise
    g = sp[(sp.stage == "g_a") & (sp.direction == "encode")].iloc[0]
    assert g.eager_s == pytest.approx(0.030, rel=0.3) and g.backend_s == pytest.approx(0.030, rel=0.3)
    s = r.tables["samples"]  # each repeat timed both, side by side
    assert s.groupby("repeat").backend.nunique().eq(2).all()
    from lcstudy.chapters import deployment, run_page

    page = run_page.build(r)
    assert "backend **same**" in page.header and "deployment" in page.parts
    ch = deployment.build(str(tmp_path / "res"), None, str(tmp_path / "dl"))
    first = ch.findings.sentences()[0]  # the identity: a speed-up of 1 within noise, so either may win
    assert re.search(r"fastest decoder of each codec is (same|eager)'s for", first), first
    assert (tmp_path / "dl" / "lcstudy_deployment_speedup.csv").exists() and "Random weights" in ch.header


def test_one_off_cost_never_enters_a_median(monkeypatch, tmp_path, small_png, quiet):
    """A backend whose first call per shape costs 0.5 s, with the warm-up off: the run primes the shape
    untimed, records the cost apart, and no timed repeat contains it."""
    r = _run(monkeypatch, tmp_path, small_png, "slowfirst", _first_call_slow, repeats=2, warmup=0)
    t = r.tables["timings"]
    own = t[(t.backend == "slowfirst") & (t.stage == "total")]
    assert own.seconds.max() < 0.3, own.seconds
    s = r.tables["samples"]
    assert s[(s.backend == "slowfirst") & (s.stage == "g_a")].seconds.max() < 0.3
    assert own.prime_seconds.dropna().max() > 0.5  # recorded apart
    assert own.setup_seconds.max() > 0.5  # the calibration shape's first call: in the setup, not in a median


def test_a_wrong_backend_is_caught_by_bytes_and_rd(monkeypatch, tmp_path, small_png, quiet):
    from lcstudy.chapters.deployment import rd_price

    r = _run(monkeypatch, tmp_path, small_png, "perturbed", _perturbed, repeats=1)
    t = r.tables["timings"]
    assert not t.identical_bitstream.any()
    rd = rd_price(t).iloc[0]
    assert rd.identical_share == 0 and rd.delta_psnr_db != 0


def test_old_results_read_as_eager(tmp_path, small_png, quiet):
    """A run written before the backend axis (no backend in its request): every table says eager."""
    import lcstudy

    codec = lcstudy.load_codec(FAKE, weights="random")
    lcstudy.profile(codec, [small_png("a", 64, 64)], repeats=1, results_dir=tmp_path, log=lambda m: None)
    meta_file = next(tmp_path.rglob(layout.RUN_META))
    meta = json.loads(meta_file.read_text())
    meta["request"].pop("backend", None)
    meta_file.write_text(json.dumps(meta))
    for table in ("timings", "samples", "memory"):
        d = load_results(tmp_path, table)
        assert set(d.backend) == {"eager"} and set(d.run_backend) == {"eager"}, table


# --- a real transform exported to ONNX Runtime ----------------------------------------------------------

@pytest.fixture(scope="module")
def hp_and_crops():
    import lcstudy
    from lcstudy.core import images as _images

    codec = lcstudy.load_codec("HP", 1, weights="random")
    return codec, [_images.load_image(KODAK / f"kodim0{k}.png", crop=64) for k in (3, 4)]


def test_exported_transforms_agree_with_eager(hp_and_crops):
    """Each transform under ONNX Runtime within the stated tolerance of eager (relative max-abs ≤ 1e-4), the
    entropy coders untouched: the same bitstream."""
    from lcstudy.core.instrument import encode_decode

    codec, crops = hp_and_crops
    dep = backends.deploy(codec, "onnxruntime", crops, 2)
    assert dep.modules == ("g_a", "h_a", "h_s", "g_s")
    assert all(v <= BACKENDS["onnxruntime"].tolerance for v in dep.max_abs_diff.values()), dep.max_abs_diff
    assert 0 < dep.setup_seconds["g_a"] and dep.model_bytes > 0.9 * dep.eager_model_bytes
    from lcstudy.core import images as _images

    x, _ = _images.pad(crops[0].x)
    assert encode_decode(dep.codec, x).strings == encode_decode(codec, x).strings
    assert type(codec.model.g_a).__name__ != "DeployedModule"  # the eager codec is left as it was


def test_a_transform_that_disagrees_is_refused_naming_it(hp_and_crops, monkeypatch):
    codec, crops = hp_and_crops
    real = backends._OrtModule.__call__
    monkeypatch.setattr(backends._OrtModule, "__call__", lambda self, x: real(self, x) * 1.01)
    with pytest.raises(InputError, match=r"HP: module g_a under BACKEND=onnxruntime differs from eager by .* > "
                                         r"0.0001; .* run this codec with another backend"):
        backends.deploy(codec, "onnxruntime", crops, 2)


def test_int8_names_the_layers_it_leaves_fp32():
    """PT2E with the x86 inductor quantizer quantizes a plain convolution's weight; GDN's inner convolution
    (its weight computed from gamma) stays fp32 — and is named."""
    from compressai.layers import GDN
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), GDN(8)).eval()
    x = torch.rand(1, 3, 16, 16)
    q = X86InductorQuantizer()
    q.set_global(get_default_x86_inductor_quantization_config())
    p = prepare_pt2e(torch.export.export(m, (x,)).module(), q)
    p(x)
    converted = convert_pt2e(p)
    kept = backends.unquantized_layers(converted)
    assert kept == ["1"], kept  # the GDN (module 1), not the plain convolution (module 0)
    # its size at its precision: the int8 weight, not the fp32 original the converted graph keeps unused
    assert backends.tensor_bytes(converted) < 0.75 * backends.tensor_bytes(m)


def _slower(module, examples, threads):
    """The identity, each call 20 ms longer: a backend slower than eager by a known time."""
    inner = copy.deepcopy(module)

    def run(x):
        time.sleep(0.02)
        return inner(x)
    return run, inner


def test_energy_of_each_side_is_its_own_call(monkeypatch, tmp_path, small_png, quiet):
    """A backend run reads the energy of its own calls and of eager's, timed beside them, apart: each total
    row's energy is the meter's power times that row's time, not the other side's."""
    from lcstudy.core import energy

    class Clockwork:
        source = "rapl"

        def read(self):
            return time.perf_counter()

        def joules(self, a, b):
            return (b - a) * 40.0

    monkeypatch.setattr(energy, "meter_for", lambda device: (Clockwork(), ""))
    t = _run(monkeypatch, tmp_path, small_png, "slower", _slower, tolerance=0.0, repeats=3).tables["timings"]
    tot = t[t.stage == "total"]
    assert set(tot.backend) == {"slower", "eager"} and tot.energy_j.notna().all()
    for _, r in tot.iterrows():
        assert 40.0 * r.seconds <= r.energy_j * 1.0001 <= 40.0 * r.seconds * 1.3 + 0.1, (r.backend, r.direction)


@pytest.mark.slow
def test_backends_variable_replaces_the_profiles_deployment_runs(tmp_path):
    """make BACKENDS=none plans no backend run; BACKENDS='onnxruntime' only that one; a wrong name fails in
    one line naming the valid ones, before any work."""
    def plan(*extra):
        return subprocess.run([sys.executable, "-m", "lcstudy.pipeline", "cost", "--profile", "quick", "--devices",
                               "cpu", "--codecs", "HP", *extra, "--results-dir", str(tmp_path / "r")], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "LCSTUDY_MIRROR": str(MIRROR)})

    runs = {k: plan(*v) for k, v in {"profile": (), "none": ("--backends", "none"),
                                     "one": ("--backends", "onnxruntime"), "bad": ("--backends", "onnx")}.items()}
    assert "plan: 4 runs" in runs["profile"].stdout, runs["profile"].stdout + runs["profile"].stderr
    assert "plan: 2 runs" in runs["none"].stdout and "plan: 3 runs" in runs["one"].stdout
    assert runs["bad"].returncode != 0 and runs["bad"].stderr.strip().splitlines()[-1] == (
        "error: BACKENDS='onnx': onnx is not a deployment backend; valid: none or any of channels_last, compile, "
        "bf16, fp16, int8, onnxruntime")
    assert not (tmp_path / "r").exists()


def test_deployments_of_one_codec_share_its_calibration_coding(hp_and_crops, monkeypatch):
    """The decodability phase deploys each codec under every backend on the same images: the eager coding that
    gives the transforms' calibration inputs is made once, and the deployments are those made without sharing;
    other images (or another codec) are coded afresh."""
    codec, crops = hp_and_crops
    real, calls = backends.calibration_inputs, []
    monkeypatch.setattr(backends, "calibration_inputs", lambda *a: calls.append(a[1]) or real(*a))
    alone = [backends.deploy(codec, b, crops, 2) for b in ("onnxruntime", "channels_last")]
    assert len(calls) == 2
    shared: dict = {}
    both = [backends.deploy(codec, b, crops, 2, shared=shared) for b in ("onnxruntime", "channels_last")]
    assert len(calls) == 3
    for a, b in zip(alone, both):
        assert a.max_abs_diff == b.max_abs_diff and a.modules == b.modules
    backends.deploy(codec, "channels_last", crops[:1], 2, shared=shared)  # other calibration images
    assert len(calls) == 4 and calls[-1] == crops[:1]
    other = lcstudy_load("FP")
    backends.deploy(other, "channels_last", crops, 2, shared=shared)  # another codec
    assert len(calls) == 5


def test_a_decoder_deploys_only_what_it_calls_and_compiles_nothing_up_front(hp_and_crops, monkeypatch):
    """The decodability phase deploys a codec to decode: only the transforms decompress() calls (h_s, g_s), not
    checked at the calibration crop — where a compiling backend would compile every module at a shape the phase
    never decodes. It decodes what the whole deployment decodes."""
    from lcstudy.core import images as _images
    from lcstudy.core.instrument import encode_decode

    codec, crops = hp_and_crops
    whole = backends.deploy(codec, "onnxruntime", crops, 2)
    dec = backends.deploy(codec, "onnxruntime", crops, 2, stages=backends.DECODER_STAGES, verify=False)
    assert whole.modules == ("g_a", "h_a", "h_s", "g_s") and dec.modules == ("h_s", "g_s"), dec.modules
    assert type(dec.codec.model.g_a).__name__ != "DeployedModule" and not dec.max_abs_diff
    x, _ = _images.pad(crops[0].x)
    coded = encode_decode(codec, x)
    shape = coded.shape
    with torch.inference_mode():
        a = whole.codec.model.decompress(coded.strings, shape)["x_hat"]
        b = dec.codec.model.decompress(coded.strings, shape)["x_hat"]
    assert torch.equal(a, b)
    # a stand-in for torch.compile that notes each call (a compilation at a new shape)
    called = []
    fake = dataclasses.replace(BACKENDS["compile"], make=lambda m, ex, t: (
        lambda x: called.append(tuple(x.shape)) or m(x), m))
    monkeypatch.setitem(backends.BACKENDS, "compile", fake)
    backends.deploy(codec, "compile", crops, 2, stages=backends.DECODER_STAGES, verify=False)
    assert called == []  # nothing called, so nothing compiled, before the first decode
    backends.deploy(codec, "compile", crops, 2)
    assert called, "a run's deployment is checked on the calibration inputs"


def lcstudy_load(label):
    import lcstudy

    return lcstudy.load_codec(label, 1, weights="random")


def test_cost_charges_a_compilation_only_at_a_shape_setup_did_not_compile(tmp_path, small_png, monkeypatch):
    """``make cost``: a compiling backend (compile, int8) compiles the calibration shape during setup, so a run at
    that crop pays its one-off cost once (setup); at another crop it pays it again, per deployed transform. A
    backend that does not compile (onnxruntime) pays setup only, whatever the shape. A factorized prior (FP)
    deploys two transforms, the others four."""
    import dataclasses

    from lcstudy.pipeline.cost import predict_one
    from lcstudy.runs.params import resolve

    small_png("a", h=600, w=600, folder=tmp_path / "im")
    cal = backends.CALIBRATION_CROP

    def one_off(codec, name, crop):
        """The prediction's part that is the backend's one-off cost: with 1000 s per transform less without."""
        def pred(s):
            monkeypatch.setitem(backends.BACKENDS, name, dataclasses.replace(backends.BACKENDS[name],
                                                                             guess_one_off_s=s))
            return predict_one(resolve({"codec": codec, "backend": name, "crop": crop, "repeats": 1,
                                        "images": str(tmp_path / "im"), "macs": False, "kernels": False}), {}, {})
        return round((pred(1000.0) - pred(0.0)) / 1000.0, 6)

    for name in ("compile", "int8"):
        assert (one_off("HP", name, cal), one_off("HP", name, 2 * cal)) == (4, 8), name
    assert (one_off("FP", "compile", cal), one_off("FP", "compile", 2 * cal)) == (2, 4)
    assert (one_off("HP", "onnxruntime", cal), one_off("HP", "onnxruntime", 2 * cal)) == (4, 4)


def test_a_slow_down_is_explained_by_the_operator_that_took_the_most_of_it():
    """The slow-down finding names the operator with the most self time in that backend run's profile of the
    same direction (never a '(rest: …)' row, nor another backend's or direction's operator, nor the time outside
    torch ops but under onnxruntime, whose operators are all outside torch), with its seconds and calls, beside
    eager's time for the whole transform."""
    import pandas as pd

    from lcstudy.chapters import deployment
    from lcstudy.chapters.page import Page

    key = {"platform": "P", "codec": "DGM", "quality": 1}
    sp = pd.DataFrame([{**key, "backend": "bf16", "direction": d, "stage": st, "eager_s": e, "backend_s": e / x,
                        "speedup_vs_eager": x, "images": 4, "cpu_flags": "avx2 fma"}
                       for d, st, e, x in [("decode", "g_s", 0.114, 0.2), ("decode", "total", 1.0, 0.7),
                                           ("encode", "g_a", 0.1, 0.5), ("encode", "total", 1.0, 0.8)]])

    def op(name, s, calls, backend="bf16", direction="decode"):
        return {**key, "run_backend": backend, "backend": backend, "direction": direction, "op_kind": "cpu_op",
                "op": name, "category": "convolution" if "conv" in name else "other", "self_seconds": s,
                "calls": calls, "wall_seconds": 1.4, "share": s / 1.4}
    k = pd.DataFrame([op("outside torch ops", 0.9, 0), op("(rest: copies)", 0.7, 900), op("aten::copy_", 0.1, 50),
                      op("aten::mkldnn_convolution", 0.6, 282), op("aten::mul", 0.65, 3, direction="encode"),
                      op("aten::addmm", 0.8, 4, backend="int8")])
    tables = {"speedup": sp, "rd_price": pd.DataFrame(), "costs": pd.DataFrame(),
              "profile_top": deployment.profile_top(k)}
    page = Page("deployment")
    deployment.findings(page, tables)
    slow = [s for s in page.findings.sentences() if "slow-down" in s]
    assert len(slow) == 1 and "DGM's g_s under *bf16* runs at 0.200× eager's speed" in slow[0], slow
    assert ("operator profile of one decode puts its largest share, 0.429, in aten::mkldnn_convolution "
            "(convolution: 0.600 s over 282 calls, against 0.114 s for eager's whole g_s)") in slow[0], slow[0]
    # under onnxruntime the transforms' operators are ONNX Runtime's: the time outside torch ops is theirs, and
    # an aten convolution (the context model's, still eager) is not why its g_s is slower
    ort = lambda r: {**r, "run_backend": "onnxruntime", "backend": "onnxruntime"} if r["backend"] == "bf16" else r  # noqa
    sp_ort, k_ort = sp.assign(backend="onnxruntime"), pd.DataFrame([ort(r) for r in k.to_dict("records")])
    page = Page("deployment")
    deployment.findings(page, {**tables, "speedup": sp_ort, "profile_top": deployment.profile_top(k_ort)})
    slow = [s for s in page.findings.sentences() if "slow-down" in s]
    assert len(slow) == 1 and "mkldnn" not in slow[0], slow
    assert ("its transforms run in ONNX Runtime, whose operators torch's profiler does not see: that run's operator "
            "profile of one decode puts its largest share, 0.643, outside torch ops (0.900 s, against 0.114 s for "
            "eager's whole g_s)") in slow[0], slow[0]


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_compile_compiles_every_shape_past_dynamos_cache_limit_or_says_so(monkeypatch):
    """Every module torch.compile wraps shares one code object, whose cache holds ``recompile_limit`` graphs (8
    by default): past it dynamo ran the module eager under the name ``compile``, with one warning — the standard
    book's decodability phase did so for its later codecs. Here the limit is 2 (as if two (module,
    shape) pairs had filled it): each of three shapes is compiled all the same; and a limit reached anyway is an
    error, not an eager run."""
    import torch._dynamo

    torch._dynamo.reset()
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)
    monkeypatch.setattr(torch._dynamo.config, "accumulated_recompile_limit", 2)
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", False)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    fn, _ = backends.BACKENDS["compile"].make(conv, [torch.rand(1, 3, 8, 8)], 1)
    before = _graphs()
    with torch.no_grad():
        for side in (8, 12, 16):
            torch.testing.assert_close(fn(torch.rand(1, 3, side, side)).shape, (1, 4, side, side))
    assert _graphs() - before == 3  # broken: 2, the third shape ran eager
    torch._dynamo.config.recompile_limit = 1  # reached now: the next new shape must fail, not run eager
    with pytest.raises(Exception, match="(?i)recompile.?limit|cache.?limit"), torch.no_grad():
        fn(torch.rand(1, 3, 20, 20))
    torch._dynamo.reset()
