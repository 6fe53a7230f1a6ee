"""CUDA paths: run only where a GPU is present (skipped here and in CI)."""
import pytest
import torch

import lcstudy
from lcstudy.stages import encode_decode

from .conftest import cuda


@cuda
@pytest.mark.parametrize("label", ["HP", "ELIC"])
def test_cuda_bit_exact_and_synchronised(label):
    codec = lcstudy.load_codec(label, 1, device="cuda")
    x = torch.rand(1, 3, 128, 128, device="cuda")
    with torch.inference_mode():
        ref = codec.model.compress(x)
    r = encode_decode(codec, x)
    assert r.strings == ref["strings"]
    assert r.encode["g_a"] > 0 and r.encode["misc"] >= -1e-3


@cuda
def test_cuda_memory():
    from lcstudy.memory import measure_in_process

    codec = lcstudy.load_codec("HP", 1, device="cuda")
    rows = measure_in_process(codec, torch.rand(1, 3, 128, 128, device="cuda"))
    assert any(r["memory"] == "cuda_allocated" and r["peak_mb"] > 0 for r in rows)
