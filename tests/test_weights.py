"""Weights: the pretrained path through torch.hub's real download code against a loopback server,
`auto` offline within seconds, `make weights`, and a user's own checkpoints in every shape
CompressAI's train.py writes them — with a clear error for each bad one."""
import contextlib
import json
import functools
import http.server
import threading
import time

import pytest
import torch

import lcstudy
from lcstudy.core import weights as W
from lcstudy.core.codec_sources import get_spec
from lcstudy.core.weights import build_model
from lcstudy.errors import InputError, WeightsError


@contextlib.contextmanager
def serve(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch" / "hub"))
    monkeypatch.setattr(W, "_ONLINE", {})
    yield tmp_path


def _closed_port(folder) -> str:
    with serve(folder) as url:
        pass
    return url  # nothing listens there now: connection refused


def test_pretrained_download_and_cache(hub, monkeypatch):
    spec = get_spec("FP")
    made = build_model(spec, 1, seed=123)
    served = hub / "served"
    served.mkdir()
    fname = W.weights_url(spec, 1).rsplit("/", 1)[1]
    torch.save(made.state_dict(), served / fname)  # what the zoo serves: a plain state dict
    with serve(served) as url:
        monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", url)
        c = lcstudy.load_codec("FP", 1, weights="pretrained")
    assert c.weights == "pretrained" and c.seed is None and c.weights_source.startswith("http://127.0.0.1")
    got = c.model.state_dict()
    for k, v in made.state_dict().items():
        assert torch.equal(got[k], v), k
    assert (hub / "torch" / "hub" / "checkpoints" / fname).exists()  # cached by torch.hub
    monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", "http://127.0.0.1:9")  # second load: from the cache
    c2 = lcstudy.load_codec("FP", 1, weights="pretrained")
    assert torch.equal(c2.model.state_dict()["g_a.0.weight"], made.state_dict()["g_a.0.weight"])


def test_pretrained_without_network_fails_fast_naming_url_and_cache(hub, monkeypatch):
    url = _closed_port(hub)
    monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", url)
    t = time.perf_counter()
    with pytest.raises(WeightsError) as e:
        lcstudy.load_codec("HP", 2, weights="pretrained")
    assert time.perf_counter() - t < 10
    assert url in str(e.value) and "checkpoints" in str(e.value) and "make weights" in str(e.value)


def test_auto_offline_falls_back_within_seconds_probing_once(hub, monkeypatch, tmp_path):
    """Offline, `auto` resolves every planned run to random weights with one network probe in all."""
    from lcstudy.runs.params import resolve

    from .conftest import KODAK

    monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", _closed_port(hub))
    calls = []
    real = W.online
    monkeypatch.setattr(W, "online", lambda url: calls.append(url) or real(url))
    t = time.perf_counter()
    reqs = [resolve({"codec": c, "quality": q, "images": str(KODAK / "kodim01.png"), "results_dir": str(tmp_path)})
            for c in ("FP", "HP", "MS-HP", "ARC") for q in (1, 5)]
    assert time.perf_counter() - t < 5
    assert {r.weights for r in reqs} == {"random"} and all("not reachable" in r.notes[0] for r in reqs)
    assert len(W._ONLINE) == 1  # one host asked, once
    c = lcstudy.load_codec("HP", 1, weights="auto")
    assert c.weights == "random" and any("random weights" in n for n in c.notes)


def test_make_weights_fills_the_hub_cache(hub, monkeypatch):
    from lcstudy.pipeline.checkpoints import fetch_all
    from lcstudy.runs.profiles import get_profile

    served = hub / "served"
    served.mkdir()
    for q in (1,):
        spec = get_spec("HP")
        torch.save(build_model(spec, q).state_dict(), served / W.weights_url(spec, q).rsplit("/", 1)[1])
    with serve(served) as url:
        monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", url)
        assert fetch_all(get_profile("quick"), ["HP"]) == 0
        assert fetch_all(get_profile("quick"), ["FP"]) == 1  # not served: reported, exit status 1
    assert len(list((hub / "torch" / "hub" / "checkpoints").glob("*.pth.tar"))) == 1


def test_no_pretrained_for_ckbd():
    with pytest.raises(WeightsError, match="no pretrained"):
        lcstudy.load_codec("CKBD", 1, weights="pretrained")


# --- a user's own checkpoints ---------------------------------------------------------------

def _train_py_checkpoint(path, model, dataparallel=False, updated=False, stripped=False):
    """What CompressAI's examples/train.py saves (its save_checkpoint), optionally after update_model,
    or (``stripped``) with the entropy models' CDF buffers left out entirely."""
    if updated:
        model.update(force=True)
    sd = model.state_dict()
    if stripped:
        sd = {k: v for k, v in sd.items() if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length",
                                                             "scale_table"))}
    if dataparallel:
        sd = {f"module.{k}": v for k, v in sd.items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    torch.save({"epoch": 3, "state_dict": sd, "loss": torch.tensor(0.5), "optimizer": opt.state_dict(),
                "aux_optimizer": opt.state_dict(), "lr_scheduler": {"last_epoch": 3}}, path)
    return path


def _untrained(spec, q):
    torch.manual_seed(5)
    cls = spec.model_class()
    return cls(*spec.args[q])


@pytest.mark.parametrize("dataparallel,updated,stripped", [(False, False, False), (True, False, False),
                                                           (False, True, False), (False, False, True)])
def test_own_checkpoint_of_a_known_architecture(tmp_path, dataparallel, updated, stripped):
    spec = get_spec("MS-HP")
    model = _untrained(spec, 5)  # N=192, M=320: the quality asked below does not matter
    ck = _train_py_checkpoint(tmp_path / "checkpoint.pth.tar", model, dataparallel, updated, stripped)
    c = lcstudy.load_codec("MS-HP", 1, weights=str(ck))
    assert c.weights == "checkpoint" and c.channels == "read from the checkpoint (N=192, M=320)"
    assert c.weights_label.startswith("checkpoint checkpoint.pth.tar (sha256 ")
    got = c.model.state_dict()
    assert torch.equal(got["g_a.0.weight"], model.state_dict()["g_a.0.weight"])
    notes = " ".join(c.notes)
    assert "training checkpoint's 'state_dict' (epoch 3)" in notes
    assert ("DataParallel prefix" in notes) == dataparallel
    assert ("CDF tables were not in the checkpoint" in notes) == (not updated)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        enc = c.model.compress(x)
        assert c.model.decompress(enc["strings"], enc["shape"])["x_hat"].shape == x.shape


def test_checkpoint_errors_name_the_fix(tmp_path):
    spec = get_spec("HP")
    with pytest.raises(InputError, match="checkpoint not found"):
        W.load_checkpoint(spec, 1, tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a torch file")
    with pytest.raises(InputError, match="not a torch file"):
        W.load_checkpoint(spec, 1, junk)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": _untrained(spec, 1).state_dict(), "args": argparse_like()}, unsafe)
    with pytest.raises(InputError, match="weights_only=True.*never unpickles"):
        W.load_checkpoint(spec, 1, unsafe)
    other = _train_py_checkpoint(tmp_path / "fp.pth.tar", _untrained(get_spec("FP"), 1))
    with pytest.raises(InputError, match=r"does not fit HP .*h_a\.0\.weight.*missing|does not fit HP"):
        W.load_checkpoint(spec, 1, other)


class _Args:
    lmbda = 0.01


def argparse_like():
    return _Args()


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path):
    """A user codec's checkpoint whose shapes do not fit the registered constructor arguments."""
    from lcstudy.core.codec_table import CodecSpec

    spec = CodecSpec(label="TINY", name="tests.fakecodec:FakeHyperprior", cls="tests.fakecodec:FakeHyperprior",
                     family="auto", args={1: {}}, pretrained=False, title="t", citation="", source="import path")
    model = spec.model_class()()
    sd = model.state_dict()
    sd["g_a.weight"] = torch.ones(3)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(InputError, match=r"g_a\.weight has shape \[3\] in the checkpoint and \[1\] in the model"):
        W.load_checkpoint(spec, 1, bad)


def test_cdf_missing_and_update_failing(tmp_path, monkeypatch):
    spec = get_spec("HP")
    ck = _train_py_checkpoint(tmp_path / "c.pth.tar", _untrained(spec, 1))
    cls = spec.model_class()

    def broken(self, *a, **k):
        raise RuntimeError("no scale table")

    monkeypatch.setattr(cls, "update", broken)
    with pytest.raises(InputError, match="update\\(\\) failed .*no scale table.*update_model"):
        W.load_checkpoint(spec, 1, ck)


def test_a_run_request_and_load_codec_get_their_weights_from_one_decision(hub, monkeypatch, tmp_path):
    """Issue 25: which weights a codec gets is decided once (``weights.choose``): a run request and
    ``load_codec`` agree for every kind of ask (offline here, so ``auto`` means random for the zoo's codecs)."""
    from lcstudy.runs.params import resolve

    from .conftest import KODAK

    monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", _closed_port(hub))
    ck = tmp_path / "fp.pth"
    torch.save(build_model(get_spec("FP"), 1, seed=5).state_dict(), ck)
    asked = []
    real = W.choose
    monkeypatch.setattr(W, "choose", lambda *a: asked.append(a[2]) or real(*a))
    for codec, weights, kind in [("FP", "auto", "random"), ("CKBD", "auto", "random"), ("FP", "random", "random"),
                                 ("FP", str(ck), "checkpoint")]:
        req = resolve({"codec": codec, "quality": 1, "images": str(KODAK / "kodim01.png"), "weights": weights,
                       "results_dir": str(tmp_path)})
        c = lcstudy.load_codec(codec, 1, weights=weights)
        assert req.weights == c.weights == kind, (codec, weights)
        assert req.notes == tuple(n for n in c.notes if n.startswith("WEIGHTS=")), (codec, weights)
    assert asked == [w for _, w, _ in [("FP", "auto", 0), ("FP", "auto", 0), ("CKBD", "auto", 0), ("CKBD", "auto", 0),
                                        ("FP", "random", 0), ("FP", "random", 0), ("FP", str(ck), 0),
                                        ("FP", str(ck), 0)]]
    with pytest.raises(InputError, match="no pretrained weights for CKBD"):
        resolve({"codec": "CKBD", "images": str(KODAK / "kodim01.png"), "weights": "pretrained",
                 "results_dir": str(tmp_path)})


def _zoo_urls_in_a_fresh_process(cache):
    """zoo_urls() in a new interpreter: (table, whether CompressAI got imported)."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from lcstudy.core.weights import zoo_urls; t = zoo_urls(); "
            "print(json.dumps({'table': t, 'imported': 'compressai' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LCSTUDY_CACHE": str(cache)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {a: {m: {int(q): u for q, u in qs.items()} for m, qs in ms.items()} for a, ms in got["table"].items()}, \
        got["imported"]


@pytest.mark.slow
def test_the_zoo_table_is_compressais_own_read_once_then_without_importing_it(tmp_path):
    from compressai.zoo import image

    cache = tmp_path / "cache"
    first, imported = _zoo_urls_in_a_fresh_process(cache)  # nothing cached: CompressAI imported, table kept
    assert first == image.model_urls and imported
    (kept,) = cache.glob("zoo-urls-*.json")
    again, imported = _zoo_urls_in_a_fresh_process(cache)  # the runner's case: the table without CompressAI
    assert again == image.model_urls and not imported
    kept.write_text('{"bmshj2018-factorized": ')  # a damaged copy: read afresh and rewritten, never trusted
    fixed, imported = _zoo_urls_in_a_fresh_process(cache)
    assert fixed == image.model_urls and imported and json.loads(kept.read_text())


def test_the_zoo_tables_key_follows_compressais_version(monkeypatch):
    import importlib.metadata

    key = W._zoo_key()
    assert key
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "9.9.9" if name == "compressai" else real(name))
    assert W._zoo_key() not in (None, key)
