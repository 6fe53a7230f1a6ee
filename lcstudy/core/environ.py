"""Provenance: what machine and software a result came from (TorchBench's ``environ`` block),
and the *platform* a measurement belongs to.

Every run records its ``environ`` block, so results from several machines merge and can still
be told apart. Results are compared per **platform** — CPU model and core count, device, GPU
model, thread count, and the software versions — not per host name: on a cluster the runs of
one study land on many nodes of one platform, and a run interrupted on one node may be
finished on another of the same platform (each image records its node).
"""
from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import socket
import subprocess
from pathlib import Path

SCHEMA_VERSION = 2


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "unknown"


#: the CPU features that decide which kernels bf16, int8 and fp32 convolutions can use
KEY_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> tuple[str, ...]:
    """Which of :data:`KEY_CPU_FLAGS` the CPU has (``/proc/cpuinfo``): an AVX2-only CPU has no native bf16."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return tuple(f for f in KEY_CPU_FLAGS if f in have)
    except OSError:
        pass
    return ()


def describe_energy(device: str) -> str:
    from .energy import describe

    return describe(device)


def host_name() -> str:
    """``LCSTUDY_HOST`` or the machine's host name: the key results are filed under."""
    return os.environ.get("LCSTUDY_HOST") or socket.gethostname().split(".")[0] or "localhost"


def gpu_name(device=None) -> str:
    import torch

    if torch.cuda.is_available():
        dev = torch.device(device) if device is not None else torch.device("cuda")
        idx = dev.index if dev.type == "cuda" and dev.index is not None else 0
        return torch.cuda.get_device_name(idx)
    return ""


def environ(device="cpu", threads: int | None = None) -> dict:
    import compressai
    import torch

    from .. import __version__

    dev = torch.device(device)
    env = {
        "host": host_name(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "cpu_flags": " ".join(cpu_flags()),
        "gpu_name": gpu_name(dev) if dev.type == "cuda" else "",
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "compressai_version": compressai.__version__,
        "python_version": platform.python_version(),
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "lcstudy_version": __version__,
        "git_commit": git_commit(),
        "schema_version": SCHEMA_VERSION,
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "slurm_job": os.environ.get("SLURM_JOB_ID", ""),
        "slurm_partition": os.environ.get("SLURM_JOB_PARTITION", ""),
        "energy": describe_energy(str(dev)),
    }
    env["platform"] = platform_label(env, dev.type)
    env["fingerprint"] = fingerprint(dev, env["threads"])
    return env


def fingerprint(device, threads: int) -> dict:
    """What decides whether two runs measured on the same platform with the same software: CPU model
    and cores, GPU model, thread count, torch and CompressAI (installed versions), result schema —
    not the host (nodes of one platform are interchangeable). Imports torch only for CUDA."""
    from importlib.metadata import version

    dev = str(device)
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count() or 0,
            "gpu_name": gpu_name(dev) if dev.startswith("cuda") else "", "threads": int(threads),
            "torch": version("torch"), "compressai": version("compressai"), "schema_version": SCHEMA_VERSION}


def platform_label(env: dict, device_type: str) -> str:
    """How tables name a platform: the GPU for CUDA runs, the CPU model, cores and threads for CPU runs."""
    if device_type == "cuda" and env.get("gpu_name"):
        return f"{env['gpu_name']} (CUDA)"
    cpu = " ".join(str(env.get("cpu_model", "CPU")).replace("(R)", "").replace("(TM)", "").split())
    return f"{cpu}, {env.get('cpu_count')} cores, {env.get('threads')} thr"
