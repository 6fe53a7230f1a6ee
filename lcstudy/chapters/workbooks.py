"""The xlsx workbooks in the ICASSP 2023 paper's own layout: ours written, the paper's (and ours)
read back into the tidy table.

The first columns are the paper's, in its order, so :func:`read_paper_xlsx` reads the paper's
workbooks and ours alike; our extra columns (platform, threads, weights, IQR, PSNR, MS-SSIM,
sub-stages, provenance) follow.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pandas as pd

from ..core.instrument import StageKind
from ..core.codec_sources import get_spec
from ..core.codec_table import CODECS
from ..errors import InputError

ENC_COLS = {"g_a": "ga", "h_a": "ha", "AEz": "AEz", "ADz": "ADz", "h_s": "hs", "AEy": "AEy"}
DEC_COLS = {"ADz": "ADz", "h_s": "hs", "ADy": "ADy", "g_s": "gs"}
DEVICE_FILE = {"cpu": "CPU", "cuda": "Cuda"}
_LABEL = {s.name: s.label for s in CODECS}



# --- xlsx in the paper's layout -------------------------------------------------------

def _wide(df: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Per image, one row: the paper's columns, then ours."""
    cols = ENC_COLS if direction == "encode" else DEC_COLS
    d = df[df.direction == direction]
    # item: a run of several sizes has one item per image and size (one row each)
    keys = ["host", "device", "codec", "quality", "weights", "threads", "image", "run_id"] + (
        ["item"] if "item" in d else [])
    d = d[d.stage_kind.isin(list(StageKind))]
    med = d.pivot_table(index=keys, columns="stage", values="seconds", aggfunc="first")
    iqr = d.pivot_table(index=keys, columns="stage", values="iqr_seconds", aggfunc="first")
    first = d.groupby(keys).first()
    out = pd.DataFrame(index=med.index)
    out["Model"] = [_name(c) for c in med.index.get_level_values("codec")]
    out["Q"] = med.index.get_level_values("quality")
    out["mse/ssim"] = "mse"
    out["Image"] = [f"{i}.png" for i in med.index.get_level_values("image")]
    out["CPU/GPU"] = [str(x).split(":")[0] for x in med.index.get_level_values("device")]
    for stage, col in cols.items():
        out[col] = med[stage] if stage in med else 0.0
    out["Misc"] = med["misc"]
    out["Total time"] = med["total"]
    out["Model Loading"] = first["load_seconds"]
    if direction == "encode":
        out["BPP"] = first["bpp"]
    # our extra columns
    out["Label"] = med.index.get_level_values("codec")
    out["Host"] = med.index.get_level_values("host")
    out["Platform"] = first["platform"]
    out["CPU model"] = first["cpu_model"]
    out["GPU"] = first["gpu_name"]
    out["Threads"] = med.index.get_level_values("threads")
    out["Weights"] = [lbl or w for lbl, w in zip(first["weights_label"].fillna(""),
                                                   med.index.get_level_values("weights"))]
    out["Seed"] = first["seed"]
    out["Height"] = first["height"]
    out["Width"] = first["width"]
    out["Crop"] = first["crop"]
    out["Resize"] = first["resize"] if "resize" in first else None
    out["Repeats"] = first["n_samples"]
    out["Stopped by"] = first["stop"]
    out["Network time"] = med["network"]
    out["Total IQR"] = iqr["total"] if "total" in iqr else float("nan")  # blank with one repeat
    out["PSNR"] = first["psnr"]
    out["MS-SSIM"] = first["ms_ssim"]
    if direction == "decode":
        out["BPP"] = first["bpp"]
    for stage in sorted(s for s in med.columns if "/" in s):
        out[stage] = med[stage]
    out["torch"] = first["torch_version"]
    out["compressai"] = first["compressai_version"]
    out["lcstudy"] = first["lcstudy_version"]
    out["git commit"] = first["git_commit"]
    out["Run"] = med.index.get_level_values("run_id")
    out["Measured (UTC)"] = first["time_utc"]
    return out.reset_index(drop=True)


def _avg(wide: pd.DataFrame) -> pd.DataFrame:
    """The paper's "AVG Total Times": mean over images of each image's median, per run."""
    keys = ["Label", "Q", "mse/ssim", "CPU/GPU", "Host", "Platform", "Threads", "Weights", "Crop", "Run"]
    num = [c for c in wide.columns if c not in keys and pd.api.types.is_numeric_dtype(wide[c])
           and c not in ("Seed", "Height", "Width", "Repeats")]
    g = wide.groupby(keys, dropna=False)[num].mean().reset_index()
    g.insert(0, "Images", wide.groupby(keys, dropna=False).size().values)
    g = g.rename(columns={"Label": "Model"})
    g["Q"] = "Q" + g["Q"].astype(str)
    g["Image"] = "avg"
    return g


def write_reports(df: pd.DataFrame, out_dir) -> list[Path]:
    """Write ``All_{enc,dec}_report_{CPU,Cuda}.xlsx`` (sheets ``Per Image`` and ``AVG Total Times``).

    The first columns are the paper's, in its order, so :func:`read_paper_xlsx` reads the
    paper's workbooks and ours alike; our extra columns (host, threads, weights, IQR,
    PSNR, MS-SSIM, sub-stages, provenance) follow.
    """
    if df is None or df.empty:
        raise InputError("no results to write; run some profiles first")
    # an item whose every repeat was contended has no time (blank): the workbooks hold what was measured
    if "stop" in df:
        skipped = sorted(set(df.loc[df.stop == "contended", "item" if "item" in df else "image"]))
        df = df[df.stop != "contended"]
        if df.empty:
            raise InputError(f"nothing was measured: every repeat of every item was contended by other processes "
                             f"({', '.join(skipped[:8])}); run it again on a quieter machine")
    out_dir = Path(out_dir)
    written = []
    from ..runs.store import atomic_write_excel

    for dev_type, suffix in DEVICE_FILE.items():
        d = df[df.device.astype(str).str.split(":").str[0] == dev_type]
        if d.empty:
            continue
        for direction, tag in (("encode", "enc"), ("decode", "dec")):
            wide = _wide(d, direction)
            path = out_dir / f"All_{tag}_report_{suffix}.xlsx"
            atomic_write_excel(path, {"Per Image": wide, "AVG Total Times": _avg(wide)})
            written.append(path)
    return written


def _name(label: str) -> str:
    try:
        return get_spec(label).name
    except InputError:
        return label


def read_paper_xlsx(path) -> pd.DataFrame:
    """Read one ``All_{enc,dec}_report_*.xlsx`` (the paper's or ours) into a tidy table.

    Columns: ``codec`` (paper label), ``name`` (CompressAI name), ``quality``, ``metric``,
    ``image``, ``device``, ``direction``, ``stage`` (our stage keys), ``seconds``, plus
    ``model_loading`` and ``bpp``. The paper's per-image sheet records "Total time*2"
    (twice the total; its AVG sheet has both): ``total`` is that value / 2.
    """
    path = Path(path)
    try:
        raw = pd.read_excel(path, sheet_name="Per Image")
    except FileNotFoundError:
        raise InputError(f"{path} not found; run `make data` to fetch the reference data") from None
    except (ValueError, KeyError, OSError) as e:
        raise InputError(f"{path} is not a readable xlsx with a 'Per Image' sheet ({e}); it may be corrupt: "
                         "delete it and run `make data` again") from None
    except Exception as e:  # zipfile.BadZipFile and friends from openpyxl
        raise InputError(f"{path} is not a readable xlsx ({type(e).__name__}: {e}); it may be corrupt: delete it "
                         "and run `make data` again") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    direction = "encode" if "ga" in raw.columns else "decode"
    cols = ENC_COLS if direction == "encode" else DEC_COLS
    raw = raw[raw["Model"].notna() & raw["Q"].notna() & (raw["Model"].astype(str) != "AVG")]
    raw = raw[raw["Image"].astype(str).str.startswith("kodim") | ~raw["Image"].astype(str).eq("avg")]
    total = None
    for c in raw.columns:
        if c.replace(" ", "").lower() == "totaltime":
            total = raw[c].astype(float)
    if total is None:
        for c in raw.columns:
            if c.replace(" ", "").lower() == "totaltime*2":
                total = raw[c].astype(float) / 2
    loading = next((raw[c] for c in raw.columns if c.lower().startswith("model load")), None)
    rows = []
    for stage, col in list(cols.items()) + [("misc", "Misc")]:
        if col not in raw.columns:
            continue
        rows.append(pd.DataFrame({"stage": stage, "seconds": raw[col].astype(float)}, index=raw.index))
    if total is not None:
        rows.append(pd.DataFrame({"stage": "total", "seconds": total}, index=raw.index))
    long = pd.concat(rows)
    meta = pd.DataFrame({
        "name": raw["Model"].astype(str),
        "codec": raw["Label"] if "Label" in raw.columns else raw["Model"].astype(str).map(_LABEL),
        "quality": raw["Q"].astype(int),
        "metric": raw["mse/ssim"].astype(str),
        "image": raw["Image"].astype(str).str.replace(".png", "", regex=False),
        "device": raw["CPU/GPU"].astype(str).str.lower(),
        "model_loading": loading.astype(float) if loading is not None else float("nan"),
        "bpp": raw["BPP"].astype(float) if "BPP" in raw.columns else float("nan"),
        "host": raw["Host"].astype(str) if "Host" in raw.columns else "paper",
    }, index=raw.index)
    out = long.join(meta)
    out["direction"] = direction
    out["source"] = str(path)
    return out.reset_index(drop=True)[["codec", "name", "quality", "metric", "image", "device", "host",
                                       "direction", "stage", "seconds", "model_loading", "bpp", "source"]]


def read_paper_reference(folder) -> pd.DataFrame:
    """All four timing workbooks of the paper's data (``…/FALCON_ICASSP2023_WP1_V1.0/Timing``)."""
    folder = Path(folder)
    files = sorted(folder.rglob("All_*_report_*.xlsx"))
    if not files:
        raise InputError(f"no All_*_report_*.xlsx under {folder}; run `make data`")
    return _read_workbooks(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files),
                           os.environ.get("LCSTUDY_CODECS", "")).copy()


@functools.lru_cache(maxsize=4)
def _read_workbooks(files: tuple[tuple[str, int, int], ...], codecs_file: str) -> pd.DataFrame:
    """The workbooks read once per process while none of them changes (path, size and mtime are the key, with the codecs file that names the codecs). Why:
    openpyxl reads the four workbooks in ~3 s on the 2-core VM and the chapters asked for them four times
    (Assessment once, Against the published data three times). Callers get a copy: a cached frame is never
    changed under them."""
    return pd.concat([read_paper_xlsx(f) for f, _, _ in files], ignore_index=True)


