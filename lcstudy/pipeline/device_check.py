"""The prepared CUDA check: one command that, on a GPU machine without network, installs what the
study needs beside the machine's own CUDA torch, runs the CUDA tests and a CUDA study sized to a few
minutes, and leaves everything as one archive.

Two steps, because the GPU machine reaches no package index:

``python -m lcstudy.pipeline.device_check wheels``  (here, with the package registry; ``make device-wheels``)
    Downloads, as Python 3.12 manylinux wheels, the pinned versions (``requirements.lock``) of every
    package the study needs that such a machine lacks: the closure of :data:`TARGETS`' requirements,
    read from this environment's installed metadata, less :data:`DEVICE_HAS` (what the lent H200
    machine ships: its CUDA torch and the scientific stack; ``shared/notes/gpu-device.md``). Into
    ``.device/wheels`` (ignored by git; name ``.device`` in the device tool's ``carry``).

``python3 -m lcstudy.pipeline.device_check run --out DIR``  (there; ``make device-check``)
    1. installs each carried wheel whose project is not installed already, with ``--no-deps`` into
       ``.device/site`` (put first on ``PYTHONPATH``): the machine's torch, numpy and pandas stay as they are;
    2. checks that CompressAI imports and codes an image with the machine's numpy (CompressAI 1.2.8
       declares ``numpy<2``; its rANS coder is pybind11, not the numpy C API);
    3. runs the CUDA tests (``pytest -m cuda``) and the protocol's fast tests on that machine;
    4. runs :data:`STUDY`: every codec at its lowest quality on CUDA (the quick profile's images at 512²
       crops), the resolution sizes for two codecs, the CUDA and CPU decoders of their streams, and two
       codecs under the fp16 and bf16 deployment backends (each beside eager, as every backend run) —
       each step under its own time limit;
    5. writes ``DIR/lcstudy-device.tar.gz``: the results folder, the logs, ``pip freeze`` and
       ``nvidia-smi -q``.
    Without a CUDA device it stops after step 2 and prints the commands it would have run (which is how
    it is tested on the development machines).

Sizing (the lent machine: 15 minutes of device time per task including its start, one command at most
10 minutes): installing ~1 min, tests ~1 min, study ~5 min, of which fp16/bf16 (4 runs) ~1 min (the
autoregressive codecs' Python loop dominates on a GPU: CompressAI's published mbt2018 decode is ~6 s per
full Kodak image on an RTX 8000).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DEVICE_DIR = ROOT / ".device"
WHEELS = DEVICE_DIR / "wheels"
SITE = DEVICE_DIR / "site"
RESULTS = "results-device"
#: what the study imports beyond torch and the scientific stack (the run notebooks, tests, standard codecs)
TARGETS = ("compressai", "pillow-heif", "pillow-jxl-plugin", "ptflops", "pytorch-msssim", "bjontegaard", "papermill",
           "jupytext", "ipykernel", "nbformat", "openpyxl", "hypothesis")
#: shipped on the lent GPU machine (shared/notes/gpu-device.md), never carried: its CUDA torch above all.
#: torch_geometric is not needed at all: CompressAI is imported without it and torchvision (lcstudy.core.lean_import).
DEVICE_HAS = frozenset({
    "torch", "torchvision", "triton", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "psutil", "tqdm", "pillow",
    "nvidia-ml-py", "pytest", "onnx", "onnxruntime", "torch-geometric", "sympy", "networkx", "mpmath", "jinja2",
    "markupsafe", "filelock", "fsspec", "typing-extensions", "setuptools", "packaging", "python-dateutil", "six",
    "pyparsing", "cycler", "kiwisolver", "fonttools", "contourpy", "tzdata", "pytz", "iniconfig", "pluggy", "pygments",
    "wheel"})
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
#: the CUDA study: (name, seconds allowed, pipeline arguments). Results go to RESULTS.
STUDY = (
    ("every codec, lowest quality, CUDA", 300,
     ["runs", "--profile", "quick", "--devices", "cuda", "--results-dir", RESULTS, "--", "crop=512", "limit=2"]),
    ("resolution sizes, HP, CUDA", 90,
     ["run", "--results-dir", RESULTS, "profile=quick", "codec=HP", "device=cuda", "limit=1",
      "sizes=crop512,1920x1080,3840x2160", "kernels=false"]),
    ("resolution sizes, ELIC, CUDA", 120,
     ["run", "--results-dir", RESULTS, "profile=quick", "codec=ELIC", "device=cuda", "limit=1",
      "sizes=crop512,1920x1080,3840x2160", "kernels=false"]),
    # the CUDA runs' streams decoded on the CPU and on CUDA (issue 27): the CPU↔GPU pairs no CPU box can make
    ("decodability, CUDA and CPU decoders", 150,
     ["decodability", "--results-dir", RESULTS, "--limit", "1", "--backends", ""]),
    # the deployment backends only a GPU runs (issue 32): fp16 autocast is CUDA only and has never been
    # measured; bf16 beside it (tensor cores; the 2-core CPUs without native bf16 ran it slower than fp32).
    # Last, so that a slow step before it costs this one, not the study's. compile and int8 are left out:
    # their compilation per module and shape is tens of seconds
    ("deployment backends fp16 and bf16, HP and ELIC, CUDA", 90,
     ["runs", "--profile", "quick", "--devices", "cuda", "--codecs", "HP ELIC", "--backends", "fp16 bf16",
      "--results-dir", RESULTS, "--", "crop=512", "limit=2"]),
)
TESTS = ("tests/test_cuda.py", "tests/test_lean_import.py", "tests/test_energy.py")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            out[norm(name)] = version.strip()
    return out


def closure(targets=TARGETS, exclude=DEVICE_HAS) -> list[str]:
    """``name==version`` of every package ``targets`` need on Python 3.12 that is not in ``exclude``,
    from this environment's installed metadata, at the lock file's versions."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    pins = locked()
    seen: set[str] = set()
    stack = list(targets)
    while stack:
        n = norm(stack.pop())
        if n in seen or n in exclude or n.startswith(("nvidia-", "cuda-")):
            continue
        seen.add(n)
        for r in md.requires(n) or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": "", "python_version": "3.12"}):
                stack.append(req.name)
    missing = sorted(n for n in seen if n not in pins)
    if missing:
        raise SystemExit(f"error: not in requirements.lock: {', '.join(missing)}; `make setup` first")
    return sorted(f"{n}=={pins[n]}" for n in seen)


def cmd_wheels(a) -> int:
    WHEELS.mkdir(parents=True, exist_ok=True)
    specs = closure()
    plat = [x for p in PLATFORMS for x in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", *plat, "-d", str(WHEELS), *specs]
    print(f"downloading {len(specs)} wheels for Python 3.12 into {WHEELS}", flush=True)
    subprocess.run(cmd, check=True)
    size = sum(f.stat().st_size for f in WHEELS.glob("*.whl"))
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB: carry '.device' to the GPU machine")
    return 0


def _installed(project: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(project)
        return True
    except md.PackageNotFoundError:  # or installed into SITE by an earlier call
        return any(True for _ in md.distributions(name=project, path=[str(SITE)]))


def _wheel_project(path: Path) -> str:
    return norm(path.name.split("-")[0])


def install(log) -> list[str]:
    """Install each carried wheel whose project is missing, without dependencies, into SITE."""
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"error: no wheels in {WHEELS}: run `make device-wheels` here first and carry '.device'")
    todo = [w for w in wheels if not _installed(_wheel_project(w))]
    log(f"{len(wheels)} wheels carried, {len(todo)} to install ({len(wheels) - len(todo)} already on this machine)")
    if todo:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
                        "--disable-pip-version-check", "--target", str(SITE), *map(str, todo)], check=True)
    return [w.name for w in todo]


def env_with_site() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join([str(SITE / "bin"), env.get("PATH", "")])
    return env


SMOKE = r"""
import numpy, torch, lcstudy, compressai
from compressai.zoo import bmshj2018_hyperprior
torch.manual_seed(0)
m = bmshj2018_hyperprior(quality=1, pretrained=False).eval(); m.update(force=True)
x = torch.rand(1, 3, 64, 64)
with torch.no_grad():
    c = m.compress(x); d = m.decompress(c["strings"], c["shape"])
assert d["x_hat"].shape == x.shape
print(f"python {__import__('sys').version.split()[0]}, numpy {numpy.__version__}, torch {torch.__version__} "
      f"(CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}), compressai {compressai.__version__}: "
      "a compress/decompress round trip works")
"""


def _step(name: str, cmd: list[str], limit: int, env: dict, logs: Path, log) -> int:
    logs.mkdir(parents=True, exist_ok=True)
    f = logs / (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") + ".log")
    shown = shlex.join(c if len(c) < 200 else "<script>" for c in cmd)
    log(f"[{time.strftime('%H:%M:%S')}] {name} (limit {limit} s): {shown}")
    t0 = time.perf_counter()
    with open(f, "w") as out:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=limit).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    tail = f.read_text().strip().splitlines()[-3:]
    log(f"    rc {rc} after {time.perf_counter() - t0:.0f} s; {' | '.join(tail)}")
    return rc


def rehearsal(args: list[str]) -> list[str]:
    """A study step on the CPU at a tiny size, into a scratch results folder: the same commands, notebooks and
    packages as on the GPU, for a machine without one (the development VM with a device-like environment)."""
    out = [x.replace("device=cuda", "device=cpu") for x in args]
    out = ["cpu" if x == "cuda" else x for x in out]
    out = [f"{RESULTS}-rehearsal" if x == RESULTS else x for x in out]
    if out[0] == "decodability":  # decodes what the rehearsal's runs stored: no notebook parameters
        return out
    out = [x for x in out if not x.startswith(("crop=", "sizes=", "limit=", "kernels=", "macs="))]
    tiny = ["crop=64", "limit=1", "repeats=2", "kernels=false", "macs=false"]
    return out + tiny if "--" in out or out[0] == "run" else out + ["--", *tiny]


def cmd_run(a) -> int:
    out = Path(a.out or os.environ.get("OUT") or DEVICE_DIR / "out")
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    summary: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        summary.append(msg)

    installed = install(log)
    env = env_with_site()
    env.setdefault("LCSTUDY_HOST", "device-h200")
    py = sys.executable
    rc = _step("smoke", [py, "-c", SMOKE], 120, env, logs, log)
    if rc != 0:
        log("stopping: CompressAI does not import or code here (see logs/smoke.log)")
        return _pack(out, summary, rc)
    import torch

    steps = [("tests", [py, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS], 240)]
    steps += [(name, [py, "-m", "lcstudy.pipeline", *(rehearsal(args) if a.rehearse else args)], limit)
              for name, limit, args in STUDY]
    if a.rehearse:
        log("rehearsal on the CPU at a tiny size: proves the installed environment, measures nothing worth keeping")
    elif not torch.cuda.is_available() or a.dry_run:
        log("no CUDA device here: stopping before the CUDA steps; on a GPU machine this would run:" if not a.dry_run
            else "dry run: would run:")
        for name, cmd, limit in steps:
            log(f"  {name} (limit {limit} s): PYTHONPATH={SITE}:{ROOT} {shlex.join(cmd)}")
        log(f"  then pack {RESULTS}/, the logs, pip freeze and nvidia-smi -q into {out}/lcstudy-device.tar.gz")
        return _pack(out, summary, 0)
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi", "-q"], stdout=open(logs / "nvidia-smi.txt", "w"), stderr=subprocess.STDOUT)
    subprocess.run([py, "-m", "pip", "freeze"], env=env, stdout=open(logs / "pip-freeze.txt", "w"),
                   stderr=subprocess.STDOUT)
    log(f"installed here: {len(installed)} wheels")
    worst = 0
    for name, cmd, limit in steps:
        worst = max(worst, _step(name, cmd, limit, env, logs, log))
    return _pack(out, summary, worst)


def _pack(out: Path, summary: list[str], rc: int) -> int:
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "logs" / "summary.txt").write_text("\n".join(summary) + "\n")
    archive = out / "lcstudy-device.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for folder in (RESULTS, f"{RESULTS}-rehearsal"):
            if (ROOT / folder).exists():
                tar.add(ROOT / folder, arcname=folder)
        tar.add(out / "logs", arcname="logs")
    print(f"archive: {archive} ({archive.stat().st_size / 2**20:.1f} MiB); rc {rc}")
    return rc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lcstudy.pipeline.device_check", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("wheels", help="download the Python 3.12 wheels the GPU machine lacks into .device/wheels")
    r = sub.add_parser("run", help="on the GPU machine: install, test, measure, pack")
    r.add_argument("--out", help="where the archive goes (default: $OUT, else .device/out)")
    r.add_argument("--dry-run", action="store_true", help="install and check, then print the CUDA steps only")
    r.add_argument("--rehearse", action="store_true", help="run every step on the CPU at a tiny size (no GPU needed)")
    a = ap.parse_args(argv)
    return {"wheels": cmd_wheels, "run": cmd_run}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
