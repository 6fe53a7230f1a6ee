"""Results on disk: plain files keyed by host and device, written atomically.

Layout (one folder per run; a run = one codec × quality × device × measurement settings)::

    results/<host>/<device>/<codec>-q<quality>/<run_id>/
        run.json              the frozen RunSpec and the environ block
        images/<image>.json   one file per finished image: tidy rows and raw samples
        memory.csv, kernels.csv, complexity.csv

``run_id`` is a hash of everything that changes what is measured (settings, library
versions, host, threads), so a changed parameter starts a new run and never mixes
with an old one; the same parameters find the old run and continue it (resume).
Every file is written to a temporary name in the same folder and renamed: a killed
process leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared and copied
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=True, default=str))


def atomic_write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(s))
