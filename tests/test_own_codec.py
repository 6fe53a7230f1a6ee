"""A user's own codec: registered in a codecs file or given by import path, split per module by
CompressAI's conventions (or coarsely, by its top-level modules), checked bit for bit before timing,
loaded from a train.py checkpoint — and every bad input refused with the fix."""
import os
import subprocess
import sys
import time

import pytest
import torch

import lcstudy
from lcstudy.core.codec_sources import codec_order, get_spec, read_codecs_file
from lcstudy.errors import InputError

from .conftest import KODAK, ROOT, write_tiny_codecs_file

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "tiny-q1.pth.tar"
    r = subprocess.run([sys.executable, "train_tiny.py", "--images", str(KODAK), "--steps", "3", "--out", str(out)],
                       cwd=EXAMPLES, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.fixture
def codecs_file(tmp_path, tiny_checkpoint, monkeypatch):
    f = write_tiny_codecs_file(tmp_path / "codecs.toml", tiny_checkpoint)
    monkeypatch.setenv("LCSTUDY_CODECS", str(f))
    return f


def test_registered_codec_runs_with_its_checkpoint(codecs_file, tmp_path):
    spec = get_spec("TINY")
    assert spec.source.startswith("codecs file") and codec_order()[-1] == "TINY"
    from lcstudy.runs.params import resolve

    req = resolve({"codec": "TINY", "images": str(KODAK / "kodim01.png"), "results_dir": str(tmp_path / "r")})
    assert req.weights == "checkpoint" and req.weights_hash  # auto → the registered checkpoint, hashed
    from lcstudy.runs import learned

    notes = []
    r = learned.run(codec="TINY", images=str(KODAK / "kodim01.png"), crop=128, repeats=1,
                    results_dir=str(tmp_path / "r"), progress=False, log=notes.append)
    t = r.tables["timings"]
    assert set(t[t.stage_kind == "partition"].stage) >= {"g_a", "h_a", "AEz", "ADz", "h_s", "AEy", "ADy", "g_s"}
    env = r.run.meta["environ"]
    assert env["codec_family"] == "hyperprior" and env["codec_channels"].startswith("read from the checkpoint")
    assert env["weights_label"].startswith("checkpoint tiny-q1.pth.tar (sha256 ")
    assert any("reproduces its own compress()/decompress() bit for bit" in n for n in notes)
    cx = r.tables["complexity"]
    assert cx[cx.stage == "g_a"].macs.iloc[0] > 0 and cx.uncounted.fillna("").eq("").all()


def test_import_path_with_constructor_arguments(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    c = lcstudy.load_codec("tiny_codec:TinyHyperprior", weights="random", kwargs={"N": 16, "M": 24})
    assert c.family == "hyperprior" and c.model.N == 16 and c.spec.source == "import path"
    df = lcstudy.profile(c, [KODAK / "kodim01.png"], crop=64, repeats=1)
    assert df.codec.iloc[0] == "tiny_codec:TinyHyperprior" and (df.seconds > 0).all()


def test_unknown_conventions_get_the_coarse_split(tmp_path):
    c = lcstudy.load_codec("tests.fakecodec:Custom", weights="random")
    assert c.family == "generic" and any("coarse" in n for n in c.notes)
    df = lcstudy.profile(c, [KODAK / "kodim01.png"], crop=64, repeats=3)
    part = df[df.stage_kind == "partition"]
    assert set(part[part.direction == "encode"].stage) == {"encoder", "misc"}
    assert set(part[part.direction == "decode"].stage) == {"decoder", "misc"}
    dec = df[(df.direction == "decode") & (df.stage == "decoder")].seconds.iloc[0]
    assert dec == pytest.approx(0.02, abs=0.003)


@pytest.mark.parametrize("name,msg", [
    ("no_such_pkg.models:Codec", "cannot import module 'no_such_pkg.models' (ModuleNotFoundError"),
    ("tests.fakecodec:Missing", "has no attribute 'Missing'"),
    ("tests.fakecodec:NotACodec", "is not a torch.nn.Module subclass"),
    ("tests.fakecodec:NoDecompress", "has no decompress method"),
])
def test_bad_import_paths(name, msg, tmp_path):
    from lcstudy.runs.params import resolve

    with pytest.raises(InputError) as e:
        resolve({"codec": name, "images": str(KODAK), "results_dir": str(tmp_path)})
    assert msg in str(e.value)


def test_bad_codecs_files(tmp_path, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text('[[codec]]\nlabel = "ARC"\nclass = "x:Y"\n[codec.qualities]\n1 = {}\n')
    monkeypatch.setenv("LCSTUDY_CODECS", str(f))
    with pytest.raises(InputError, match="'ARC' .* clashes with a built-in codec; choose another label"):
        get_spec("FP")
    f.write_text('[[codec]]\nlabel = "X"\n')
    with pytest.raises(InputError, match="missing field 'class'"):
        read_codecs_file(f)
    f.write_text("not toml [")
    with pytest.raises(InputError, match="not valid TOML"):
        read_codecs_file(f)
    monkeypatch.setenv("LCSTUDY_CODECS", str(tmp_path / "none.toml"))
    with pytest.raises(InputError, match="codecs file not found"):
        get_spec("FP")


@pytest.mark.slow
def test_a_checkpoint_of_a_builtin_architecture_through_make_run(tmp_path):
    """`make run CODEC=HP WEIGHTS=checkpoint.pth.tar`: the pipeline's checks, then the notebook."""
    from lcstudy.core.codec_sources import get_spec as gs

    torch.manual_seed(1)
    model = gs("HP").model_class()(128, 192)
    ck = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, ck)
    out = subprocess.run([sys.executable, "-m", "lcstudy.pipeline", "run", "--results-dir", str(tmp_path / "r"),
                          "codec=HP", f"weights={ck}", f"images={KODAK / 'kodim01.png'}", "crop=64", "repeats=1",
                          "kernels=false", "macs=false"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    from lcstudy.runs.tidy import load_results

    t = load_results(tmp_path / "r")
    assert set(t.weights) == {"checkpoint"} and t.label.iloc[0] == "HP-q1-crop64-repeats1-ckpt-checkpoint"
    assert t.weights_label.iloc[0].startswith("checkpoint checkpoint.pth.tar (sha256 ")
    nb = next((tmp_path / "r").rglob("notebook.ipynb")).read_text()
    assert "CDF tables were not in the checkpoint" in nb and "read from the checkpoint (N=128, M=192)" in nb


def test_a_codec_from_an_installed_entry_point_is_registered_once_its_distribution_is_on_the_path(tmp_path,
                                                                                                  monkeypatch):
    """A package that declares ``[project.entry-points."lcstudy.codecs"]`` registers its codecs; the lookup is
    kept per sys.path (it reads every installed distribution's metadata), so a distribution put on the path
    later is still found, and a broken entry point is still a clear error."""
    import textwrap

    (tmp_path / "epcodec.py").write_text(textwrap.dedent("""
        from lcstudy.core.codec_table import CodecSpec

        def specs():
            return [CodecSpec(label="EPC", name="tiny_codec:TinyHyperprior", cls="tiny_codec:TinyHyperprior",
                              family="auto", args={1: {"N": 32, "M": 48}}, pretrained=False, title="EP codec",
                              citation="example")]

        def broken():
            return ["not a spec"]
    """))
    dist = tmp_path / "epcodec-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: epcodec\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lcstudy.codecs]\nepc = epcodec:specs\n")
    monkeypatch.delitem(sys.modules, "epcodec", raising=False)
    assert "EPC" not in codec_order()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert codec_order()[-1] == "EPC" and get_spec("EPC").source == "entry point epc"
    import shutil

    # installed into a folder already on the path (its modification time changes): looked up again
    shutil.rmtree(dist)
    time.sleep(0.01)
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: epcodec\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lcstudy.codecs]\nbad = epcodec:broken\n")
    os.utime(tmp_path)
    for _ in range(2):  # a broken entry point is an error each time it is asked for, not once
        with pytest.raises(InputError, match="must give CodecSpec objects"):
            codec_order()
