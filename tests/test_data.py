"""The real download code against a loopback HTTP server serving the mirror."""
import time

import pytest

from lcstudy.pipeline import data
from lcstudy.errors import DataError

from .test_weights import serve


def urls(base):
    return {"kodak": f"{base}/data/kodak/", "lc": f"{base}/reference/lc-assessment/",
            "cai": f"{base}/reference/compressai-results/"}


def test_download_from_loopback(reference, tmp_path, monkeypatch):
    monkeypatch.delenv("LCSTUDY_MIRROR", raising=False)
    mirror = reference.parent
    with serve(mirror) as base:
        got = data.fetch(tmp_path / "data", mirror=None, urls=urls(base), log=lambda *a: None)
    assert len(sorted((tmp_path / "data" / "kodak").glob("kodim*.png"))) == 24
    timing = tmp_path / "data/reference/lc-assessment/FALCON_ICASSP2023_WP1_V1.0/Timing"
    assert (timing / "All_enc_report_CPU.xlsx").exists()
    assert (tmp_path / "data/reference/compressai-results/bpg_444_x265_ycbcr.json").exists()
    assert len(got) == len(data.items())
    assert not list((tmp_path / "data").rglob("*.tmp"))


def test_mirror_copy(reference, tmp_path):
    data.fetch(tmp_path / "d", mirror=reference.parent, log=lambda *a: None)
    assert len(list((tmp_path / "d" / "kodak").glob("*.png"))) == 24


def test_no_network_no_mirror_is_a_fast_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LCSTUDY_MIRROR", raising=False)
    with serve(tmp_path) as base:
        pass  # closed port
    t = time.perf_counter()
    with pytest.raises(DataError) as e:
        data.fetch(tmp_path / "data", urls=urls(base), log=lambda *a: None)
    assert time.perf_counter() - t < 10
    assert "LCSTUDY_MIRROR" in str(e.value) and "r0k.us" in str(e.value)
    assert not (tmp_path / "data" / "kodak").exists() or not list((tmp_path / "data" / "kodak").iterdir())


def test_bad_file_is_rejected_and_not_written(tmp_path, monkeypatch, reference):
    monkeypatch.delenv("LCSTUDY_MIRROR", raising=False)
    served = tmp_path / "srv"
    (served / "data" / "kodak").mkdir(parents=True)
    (served / "data" / "kodak" / "kodim01.png").write_bytes(
        (reference.parent / "data/kodak/kodim01.png").read_bytes()[:5000])  # truncated
    with serve(served) as base:
        with pytest.raises(DataError, match="kodim01"):
            data.fetch(tmp_path / "data", urls=urls(base), log=lambda *a: None)
    assert not (tmp_path / "data" / "kodak" / "kodim01.png").exists()
