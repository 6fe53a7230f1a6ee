"""CUDA paths, run only where a GPU is present (skipped without one): bit-exact and synchronised stage
timing on the device, CUDA memory, CUDA kernels, the GPU contention monitor."""
import pytest
import torch

import lcstudy
from lcstudy.core.instrument import encode_decode

from .conftest import has_cuda

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not has_cuda(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("label", ["HP", "ELIC"])
def test_cuda_bit_exact_and_synchronised(label):
    codec = lcstudy.load_codec(label, 1, device="cuda", weights="random")
    x = torch.rand(1, 3, 128, 128, device="cuda")
    with torch.inference_mode():
        ref = codec.model.compress(x)
    r = encode_decode(codec, x)
    assert r.strings == ref["strings"]
    assert r.encode["g_a"] > 0 and r.encode["misc"] >= -1e-3
    # synchronised: g_a's kernels are billed to g_a, not to the entropy coder after it
    assert r.encode["g_a"] > 0.2 * r.encode["AEz"]


def test_cuda_memory_kernels_and_monitor(tmp_path):
    codec = lcstudy.load_codec("HP", 1, device="cuda", weights="random")
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (128, 128), (120, 60, 30)).save(img)
    df = lcstudy.profile(codec, [img], repeats=2, kernels=True)
    mem = df.attrs["memory"]
    assert (mem[mem.memory == "cuda_allocated"].peak_mb > 0).all()
    k = df.attrs["kernels"]
    assert (k.op_kind == "cuda_kernel").any()
    assert not df.attrs["samples"].contended.any()
