"""The prepared CUDA check (lcstudy.pipeline.device_check), as far as a machine without CUDA can run it."""
import tarfile
import zipfile

import pytest
import torch

from lcstudy.pipeline import device_check as dc


def test_wheel_list_is_the_locked_closure_without_the_machines_own_stack():
    specs = dc.closure()
    names = {s.split("==")[0] for s in specs}
    assert {"compressai", "papermill", "ipykernel", "ptflops", "pillow-heif", "jupyter-client"} <= names
    # the GPU machine's own torch and scientific stack never travel; torch_geometric is not needed at all
    assert not names & {"torch", "torchvision", "numpy", "pandas", "scipy", "torch-geometric", "triton"}
    assert not any(n.startswith("nvidia-") for n in names)
    pins = dc.locked()
    assert all(pins[s.split("==")[0]] == s.split("==")[1] for s in specs)


def _fake_wheel(folder, project, version):
    folder.mkdir(parents=True, exist_ok=True)
    w = folder / f"{project}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        z.writestr(f"{project}-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
        z.writestr(f"{project}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{project}-{version}.dist-info/RECORD", "")
    return w


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop before the CUDA steps")
def test_runs_up_to_cuda_and_prints_what_it_would_run(tmp_path, monkeypatch, capsys):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    _fake_wheel(wheels, "compressai", "1.2.8")  # installed here: skipped
    _fake_wheel(wheels, "lcstudy_probe_pkg", "0.1")  # missing here: installed into the site folder
    monkeypatch.setattr(dc, "WHEELS", wheels)
    monkeypatch.setattr(dc, "SITE", site)
    out = tmp_path / "out"
    assert dc.main(["run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 wheels carried, 1 to install (1 already on this machine)" in text
    assert (site / "lcstudy_probe_pkg-0.1.dist-info").is_dir()
    assert "a compress/decompress round trip works" in text
    assert "no CUDA device here: stopping before the CUDA steps" in text
    for name, _, args in dc.STUDY:
        assert name in text and " ".join(args[:2]) in text
    with tarfile.open(out / "lcstudy-device.tar.gz") as tar:
        assert "logs/summary.txt" in tar.getnames() and "logs/smoke.log" in tar.getnames()


def test_no_wheels_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(dc, "WHEELS", tmp_path / "none")
    with pytest.raises(SystemExit, match="make device-wheels"):
        dc.main(["run", "--out", str(tmp_path / "out")])
