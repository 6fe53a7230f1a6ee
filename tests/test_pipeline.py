"""The pipeline's own errors: bad profile, bad notebook parameters, through papermill."""
import os
import subprocess
import sys

import pytest

from lcstudy.config import PROFILES, get_profile, plan
from lcstudy.errors import InputError

from .conftest import KODAK, ROOT


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(InputError, match="quick, standard, paper"):
        get_profile("fast")


def test_profiles_plan_what_the_issues_ask():
    runs = plan(PROFILES["standard"], ["cpu"])
    main = {(r.codec, r.quality) for r in runs if not r.params}
    assert main == {("FP", 1), ("FP", 6), ("HP", 1), ("HP", 6), ("MS-HP", 1), ("MS-HP", 5), ("ARC", 1), ("ARC", 5),
                    ("DGM", 1), ("DGM", 4), ("DGM-ATT", 1), ("DGM-ATT", 4), ("CKBD", 1), ("ELIC", 1)}
    one = [dict(r.params) for r in runs if r.suffix == "-1thread"]
    assert len(one) == 8 and all(p == {"threads": 1, "limit": 4, "kernels": False, "macs": False} for p in one)
    scale = [dict(r.params) for r in runs if "-scale-" in r.suffix]
    assert len(scale) == 3 * 8
    assert {p.get("resize") for p in scale} == {None, "1920x1080", "3840x2160"}
    assert all(p["limit"] == 1 and p["macs"] is False and p["kernels"] is False for p in scale)
    assert [r.stem for r in runs if r.notebook == "profile_standard"] == ["standard-codecs"]
    assert len({r.stem for r in runs}) == len(runs)  # one notebook file per run
    quick = plan(PROFILES["quick"], ["cpu", "cuda"])
    assert len(quick) == 17 and {r.quality for r in quick if r.notebook == "profile_codec"} == {1}
    assert [dict(r.params) for r in quick if r.params] == [{"sweep": "short"}]
    assert len([r for r in plan(PROFILES["paper"], ["cpu"]) if not r.params]) == 4 * 8 + 2 * 6 + 2


def test_wrong_parameter_type_through_papermill(tmp_path):
    env = {**os.environ, "LCSTUDY_LOCK": str(tmp_path / "lock"), "LCSTUDY_BOOK": str(tmp_path / "book")}
    out = subprocess.run([sys.executable, "-m", "lcstudy.pipeline", "run", "codec=HP", "repeats=three",
                          f"images={KODAK}", f"results_dir={tmp_path / 'res'}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1
    assert "repeats must be an integer" in out.stderr
    assert not list((tmp_path / "book").rglob("*.ipynb"))  # no half-written notebook
    assert not (tmp_path / "res").exists()


def test_unknown_parameter_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lcstudy.pipeline", "run", "codec=HP", "repeat=3"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown parameter 'repeat'" in out.stderr and "repeats" in out.stderr
