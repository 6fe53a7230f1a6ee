"""Atomic writes: every file is written to a temporary name in its folder and renamed, so a
killed process leaves either the old file or the new one, never half of one. (Where files go is
:mod:`lcstudy.runs.layout`'s business.)"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path



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


def atomic_write_csv(path: Path, df) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def atomic_write_excel(path: Path, sheets: dict) -> None:
    """An xlsx workbook (one sheet per DataFrame, no index) written to a temporary name and renamed."""
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xw:
            for name, df in sheets.items():
                df.to_excel(xw, sheet_name=str(name)[:31], index=False)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
