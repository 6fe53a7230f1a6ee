"""Instrumented coding is CompressAI's coding, byte for byte; the stage accounting adds up."""
import pytest
import torch

import lcstudy
from lcstudy.stages import encode_decode, plain_encode_decode, top_stages

LABELS = ["FP", "HP", "MS-HP", "ARC", "DGM", "DGM-ATT", "CKBD", "ELIC"]


@pytest.fixture(scope="module")
def image():
    torch.manual_seed(0)
    # smooth content, 128×192 (a multiple of 64), in [0, 1]
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 24), size=(128, 192), mode="bilinear")
    return x.clamp(0, 1)


@pytest.mark.parametrize("label", LABELS)
def test_bit_exact_with_compressai_and_stages_add_up(label, image):
    codec = lcstudy.load_codec(label, 1)
    with torch.inference_mode():
        ref = codec.model.compress(image)
        ref_x = codec.model.decompress(ref["strings"], ref["shape"])["x_hat"]
    r = encode_decode(codec, image)
    assert r.strings == ref["strings"]  # byte-identical bitstreams
    assert torch.equal(r.x_hat, ref_x)  # identical reconstruction
    assert r.nbytes > 0
    for direction, st in (("encode", r.encode), ("decode", r.decode)):
        top = top_stages(codec, direction)
        assert all(st[k] >= 0 for k in top)
        assert all(st[k] > 0 for k in top), st  # every stage really ran and was timed
        assert st["total"] == pytest.approx(sum(st[k] for k in top) + st["misc"], abs=1e-12)
        assert st["misc"] >= -1e-3  # clock reads are ordered: stages cannot exceed the total
        assert st["misc"] < 0.5 * st["total"]
        subs = {k: v for k, v in st.items() if "/" in k}
        if codec.spec.family in ("autoregressive", "latent_codec"):
            parent = "AEy" if direction == "encode" else "ADy"
            assert {f"{parent}/context", f"{parent}/entropy_parameters", f"{parent}/rans"} <= set(subs)
            assert sum(subs.values()) == pytest.approx(st[parent], rel=1e-6)
        else:
            assert not subs


def test_instrumentation_is_removed_afterwards(image):
    import compressai.models.google as google

    codec = lcstudy.load_codec("ARC", 1)
    before = dict(vars(codec.model.g_a)), google.F, google.RansDecoder
    encode_decode(codec, image)
    assert "forward" not in vars(codec.model.g_a) and "compress" not in vars(codec.model.entropy_bottleneck)
    assert google.F is before[1] and google.RansDecoder is before[2]


def test_plain_reference_matches(image):
    codec = lcstudy.load_codec("HP", 1)
    te, td, enc, xh = plain_encode_decode(codec, image)
    r = encode_decode(codec, image)
    assert te > 0 and td > 0 and enc["strings"] == r.strings and torch.equal(xh, r.x_hat)
