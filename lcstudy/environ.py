"""Provenance: what machine and software a result came from (TorchBench's ``environ`` block).

Every row of every result table carries these columns, so results from several machines
can be merged and still be told apart.
"""
from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import socket
import subprocess
from pathlib import Path

import torch

SCHEMA_VERSION = 1


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


def host_name() -> str:
    """``LCSTUDY_HOST`` or the machine's host name: the key results are filed under."""
    return os.environ.get("LCSTUDY_HOST") or socket.gethostname().split(".")[0] or "localhost"


def gpu_name(device: torch.device | str | None = None) -> str:
    if torch.cuda.is_available():
        dev = torch.device(device) if device is not None else torch.device("cuda")
        idx = dev.index if dev.type == "cuda" and dev.index is not None else 0
        return torch.cuda.get_device_name(idx)
    return ""


def environ(device="cpu", threads: int | None = None) -> dict:
    import compressai

    from . import __version__

    dev = torch.device(device)
    return {
        "host": host_name(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
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
    }


#: Columns of the environ block that decide whether two runs measured the same thing.
FINGERPRINT_KEYS = ("host", "cpu_model", "gpu_name", "torch_version", "compressai_version", "threads",
                    "schema_version")
