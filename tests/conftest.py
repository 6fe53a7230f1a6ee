import os
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("LCSTUDY_MIRROR") or ROOT.parent / "shared")
KODAK = MIRROR / "data" / "kodak"


def write_tiny_codecs_file(path: Path, checkpoint: Path, title: str = "Tiny", citation: str = "example") -> Path:
    """A codecs file registering the example codec TINY (``examples/tiny_codec.py``) with ``checkpoint``."""
    import textwrap

    path.write_text(textwrap.dedent(f"""
        [[codec]]
        label = "TINY"
        class = "tiny_codec:TinyHyperprior"
        python_path = ["{ROOT / 'examples'}"]
        title = "{title}"
        citation = "{citation}"
        [codec.qualities]
        1 = {{ N = 32, M = 48 }}
        [codec.checkpoints]
        1 = "{checkpoint}"
    """))
    return path
REFERENCE = MIRROR / "reference"

warnings.filterwarnings("ignore", category=FutureWarning)
# the test fixtures (tests.fakecodec) are importable by path, in this process and in the notebooks' kernels
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    # the tests' own machine lock: a timing run of the user's (make book) on this machine is not waited for
    # — pause it (make pause) before running the tests, or their load distorts its timings
    if not os.environ.get("LCSTUDY_LOCK"):
        import tempfile

        os.environ["LCSTUDY_LOCK"] = str(Path(tempfile.mkdtemp(prefix="lcstudy-test-lock-")) / "lock")


@pytest.fixture(autouse=True)
def _threads_restored():
    """No test may leave torch's thread count changed behind it."""
    import torch

    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before, "a test (or the code under test) left torch.set_num_threads changed"


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

    def make(name="img", h=96, w=128, mode="RGB", seed=0, folder=None):
        rng = np.random.default_rng(seed)
        if mode == "I;16":
            im = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
        else:
            c = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
            small = (max(h // 8, 2), max(w // 8, 2))
            base = rng.integers(0, 255, small + ((c,) if c > 1 else ()), dtype=np.uint8)
            im = Image.fromarray(base, mode=mode).resize((w, h), Image.BILINEAR)  # smooth, like a photo
        d = Path(folder) if folder else tmp_path
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{name}.png"
        im.save(p)
        return p

    return make


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
