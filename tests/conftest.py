import os
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("LCSTUDY_MIRROR") or ROOT.parent / "shared")
KODAK = MIRROR / "data" / "kodak"
REFERENCE = MIRROR / "reference"

warnings.filterwarnings("ignore", category=FutureWarning)


def pytest_configure(config):
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def kodak():
    if not KODAK.is_dir():
        pytest.fail(f"Kodak mirror not found at {KODAK}: set LCSTUDY_MIRROR to the folder holding data/kodak")
    return KODAK


@pytest.fixture(scope="session")
def reference():
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE}: set LCSTUDY_MIRROR")
    return REFERENCE


@pytest.fixture
def small_png(tmp_path):
    """Make a PNG of given size/mode in tmp_path."""
    import numpy as np
    from PIL import Image

    def make(name="img", h=96, w=128, mode="RGB", seed=0):
        rng = np.random.default_rng(seed)
        if mode == "I;16":
            arr = rng.integers(0, 65535, (h, w), dtype=np.uint16)
            im = Image.fromarray(arr)
        else:
            c = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
            arr = rng.integers(0, 255, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)
            # smooth-ish content so codecs behave like on photos
            im = Image.fromarray(arr, mode=mode)
        p = tmp_path / f"{name}.png"
        im.save(p)
        return p

    return make


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
