"""The pretrained path through torch.hub's real download code, against a loopback server."""
import contextlib
import functools
import http.server
import threading
import time

import pytest
import torch

import lcstudy
from lcstudy.codecs import build_model, get_spec, weights_url
from lcstudy.errors import WeightsError


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
    yield tmp_path


def test_pretrained_download_and_cache(hub, monkeypatch):
    spec = get_spec("FP")
    made = build_model(spec, 1, seed=123)
    served = hub / "served"
    served.mkdir()
    fname = weights_url(spec, 1).rsplit("/", 1)[1]
    torch.save(made.state_dict(), served / fname)  # what the zoo serves: a plain state dict
    with serve(served) as url:
        monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", url)
        c = lcstudy.load_codec("FP", 1, weights="pretrained")
    assert c.weights == "pretrained" and c.seed is None and c.weights_source.startswith("http://127.0.0.1")
    got = c.model.state_dict()
    for k, v in made.state_dict().items():
        assert torch.equal(got[k], v), k
    assert (hub / "torch" / "hub" / "checkpoints" / fname).exists()  # cached by torch.hub
    # second load comes from the cache: no server needed
    monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", "http://127.0.0.1:9")
    c2 = lcstudy.load_codec("FP", 1, weights="pretrained")
    assert torch.equal(c2.model.state_dict()["g_a.0.weight"], made.state_dict()["g_a.0.weight"])


def test_pretrained_without_network_fails_fast_naming_url_and_cache(hub, monkeypatch):
    with serve(hub) as url:
        pass  # the port is closed now: connection refused
    monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", url)
    t = time.perf_counter()
    with pytest.raises(WeightsError) as e:
        lcstudy.load_codec("HP", 2, weights="pretrained")
    assert time.perf_counter() - t < 10
    assert url in str(e.value) and "checkpoints" in str(e.value) and "weights='random'" in str(e.value)


def test_auto_falls_back_to_random_with_warning(hub, monkeypatch):
    with serve(hub) as url:
        pass
    monkeypatch.setenv("LCSTUDY_WEIGHTS_URL", url)
    with pytest.warns(UserWarning, match="random weights"):
        c = lcstudy.load_codec("HP", 1, weights="auto")
    assert c.weights == "random" and c.notes


def test_no_pretrained_for_ckbd():
    with pytest.raises(WeightsError, match="no pretrained"):
        lcstudy.load_codec("CKBD", 1, weights="pretrained")
