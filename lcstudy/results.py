"""Loading results back, and the xlsx workbooks in the ICASSP 2023 paper's own layout.

One tidy table is the source of everything: :func:`load_results` rebuilds it from the
per-image files of every run under a results folder (all hosts and devices), and every
xlsx, CSV and plot is derived from it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import store
from .codecs import CODECS, get_spec
from .environ import SCHEMA_VERSION
from .errors import InputError, SchemaError

ENC_COLS = {"g_a": "ga", "h_a": "ha", "AEz": "AEz", "ADz": "ADz", "h_s": "hs", "AEy": "AEy"}
DEC_COLS = {"ADz": "ADz", "h_s": "hs", "ADy": "ADy", "g_s": "gs"}
DEVICE_FILE = {"cpu": "CPU", "cuda": "Cuda"}
_LABEL = {s.name: s.label for s in CODECS}


def _run_dirs(results_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(results_dir).glob("*/*/*/*/run.json"))


def _all_run_dirs(results_dir: Path) -> list[tuple[Path, bool]]:
    """(run folder, is a standard-codec run) for the learned and the standard-codec runs."""
    std = sorted(p.parent for p in Path(results_dir).glob("*/*/standard/*/*/run.json"))
    return [(p, False) for p in _run_dirs(results_dir)] + [(p, True) for p in std]


def codec_work_share(costs: pd.DataFrame) -> tuple[int, float, float]:
    """(images, codec seconds, image wall seconds) over the runs of :func:`run_costs` that
    recorded image wall times."""
    t = costs[costs.images_with_wall > 0] if not costs.empty else costs
    if t.empty:
        return 0, 0.0, 0.0
    return int(t.images_with_wall.sum()), float(t.codec_s.sum()), float(t.image_wall_s.sum())


def _read_run(rdir: Path) -> dict:
    meta = json.loads((rdir / "run.json").read_text())
    v = meta.get("schema_version")
    if v != SCHEMA_VERSION:
        raise SchemaError(f"{rdir} was written with result schema {v}, this lcstudy reads schema {SCHEMA_VERSION}; "
                          f"re-run that codec (`make clean-runs` then `make runs`) or move the folder out of the way")
    return meta


def load_results(results_dir, table: str = "timings") -> pd.DataFrame:
    """All runs under ``results_dir`` as one tidy table.

    ``table``: ``"timings"`` (default; one row per run × image × direction × stage),
    ``"samples"`` (raw samples), ``"memory"``, ``"kernels"``, ``"complexity"``.
    """
    from .profile import _tables

    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise InputError(f"results folder {results_dir} does not exist; run `make runs` (or lcstudy.profile with "
                         "results_dir=...) first")
    frames = []
    versions = set()
    for rdir in _run_dirs(results_dir):
        try:
            meta = json.loads((rdir / "run.json").read_text())
        except json.JSONDecodeError as e:
            raise SchemaError(f"{rdir / 'run.json'} is not valid JSON ({e}); delete that run folder") from None
        versions.add(meta.get("schema_version"))
        if len(versions) > 1:
            raise SchemaError(f"{results_dir} mixes result schema versions {sorted(map(str, versions))}; "
                              f"this lcstudy reads schema {SCHEMA_VERSION}. Re-run or remove the older runs "
                              f"(e.g. {rdir})")
        meta = _read_run(rdir)
        if table in ("timings", "samples"):
            recs = {}
            for p in sorted((rdir / "images").glob("*.json")):
                rec = json.loads(p.read_text())
                recs[rec["image"]] = rec
            if not recs:
                continue
            spec, env = meta["spec"], meta["environ"]
            base = {**env, "codec": spec["codec"], "quality": spec["quality"], "device": spec["device"],
                    "weights": spec["weights"], "seed": spec["seed"], "repeats": spec["repeats"],
                    "warmup": spec["warmup"], "crop": spec["crop"], "resize": spec.get("resize"),
                    "run_id": meta["run_id"],
                    "weights_source": spec.get("weights_source", ""),
                    "load_seconds": meta.get("load_seconds", float("nan"))}
            order = [n for n in meta["images"] if n in recs]
            df, samples = _tables(recs, order, base)
            frames.append(df if table == "timings" else samples)
        else:
            f = rdir / f"{table}.csv"
            if f.exists():
                frames.append(pd.read_csv(f))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def main_rows(df: pd.DataFrame, all_threads: bool = True) -> pd.DataFrame:
    """The study's main measurements: the images at their own size — or, where a profile crops
    (``quick``), its common crop — not the resolution-scaling runs (synthetic sizes, 512² crops).

    ``all_threads=False`` keeps, per host and device, only the runs with the most threads (the
    1-thread pass of the FLOPs-vs-runtime chapter is a second platform, not a second sample).
    """
    if df.empty:
        return df
    d = df[df["resize"].isna()] if "resize" in df.columns else df
    if d.crop.isna().any():
        d = d[d.crop.isna()]
    elif not d.empty:
        d = d[d.crop == d.crop.mode().iloc[0]]
    if not all_threads and not d.empty:
        top = d.groupby(["host", "device"]).threads.transform("max")
        d = d[d.threads == top]
    return d


def save_table(df: pd.DataFrame, run_dir, name: str) -> Path:
    path = Path(run_dir) / f"{name}.csv"
    store.atomic_write_csv(path, df)
    return path


# --- xlsx in the paper's layout -------------------------------------------------------

def _wide(df: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Per image, one row: the paper's columns, then ours."""
    cols = ENC_COLS if direction == "encode" else DEC_COLS
    d = df[df.direction == direction]
    keys = ["host", "device", "codec", "quality", "weights", "threads", "image", "run_id"]
    med = d.pivot_table(index=keys, columns="stage", values="seconds", aggfunc="first")
    iqr = d.pivot_table(index=keys, columns="stage", values="iqr_seconds", aggfunc="first")
    first = d.groupby(keys).first()
    out = pd.DataFrame(index=med.index)
    out["Model"] = [get_spec(c).name for c in med.index.get_level_values("codec")]
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
    out["CPU model"] = first["cpu_model"]
    out["GPU"] = first["gpu_name"]
    out["Threads"] = med.index.get_level_values("threads")
    out["Weights"] = med.index.get_level_values("weights")
    out["Seed"] = first["seed"]
    out["Height"] = first["height"]
    out["Width"] = first["width"]
    out["Crop"] = first["crop"]
    out["Repeats"] = first["repeats"]
    out["Network time"] = med["network"]
    out["Total IQR"] = iqr["total"]
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
    keys = ["Label", "Q", "mse/ssim", "CPU/GPU", "Host", "Threads", "Weights", "Crop", "Run"]
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
    out_dir = Path(out_dir)
    written = []
    for dev_type, suffix in DEVICE_FILE.items():
        d = df[df.device.astype(str).str.split(":").str[0] == dev_type]
        if d.empty:
            continue
        for direction, tag in (("encode", "enc"), ("decode", "dec")):
            wide = _wide(d, direction)
            path = out_dir / f"All_{tag}_report_{suffix}.xlsx"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with pd.ExcelWriter(tmp, engine="openpyxl") as xw:
                wide.to_excel(xw, sheet_name="Per Image", index=False)
                _avg(wide).to_excel(xw, sheet_name="AVG Total Times", index=False)
            tmp.replace(path)
            written.append(path)
    return written


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
    return pd.concat([read_paper_xlsx(f) for f in files], ignore_index=True)


def run_costs(results_dir) -> pd.DataFrame:
    """What each run cost: one row per run folder under ``results_dir`` (learned and standard codecs).

    ``codec_s`` is the sum of every timed encode and decode (all repeats) of the images whose
    wall time was recorded; ``image_wall_s`` the sum of those images' wall times (warm-up,
    repeats, metrics; images measured before lcstudy recorded it are left out, and a run with
    none has NaN); ``codec_share`` = codec_s / image_wall_s. ``phase_s``: wall time of a learned
    run's phases after its images (peak matmul, memory, kernel profile) in its last execution.
    MAC counting and plotting happen in the notebook, outside all of these.
    """
    results_dir = Path(results_dir)
    rows = []
    for rdir, is_std in _all_run_dirs(results_dir):
        meta = _read_run(rdir)
        spec = meta["spec"]
        recs = [json.loads(p.read_text()) for p in sorted((rdir / "images").glob("*.json"))]
        keys = ("encode", "decode") if is_std else ("encode|total", "decode|total")

        def work(rs):
            return sum(sum(r["samples"].get(k, [])) for r in rs for k in keys)

        timed = [r for r in recs if "wall_seconds" in r]
        wall = sum(r["wall_seconds"] for r in timed) if timed else float("nan")
        phases = meta.get("phase_seconds", {})
        rows.append({"host": meta["environ"]["host"], "device": spec.get("device", "cpu"), "codec": spec["codec"],
                     "quality": spec.get("quality"), "threads": spec["threads"], "crop": spec["crop"],
                     "resize": spec.get("resize"), "run_id": meta["run_id"], "images": len(recs),
                     "images_with_wall": len(timed), "codec_s_all_images": work(recs), "codec_s": work(timed),
                     "image_wall_s": wall, "codec_share": work(timed) / wall if timed else float("nan"),
                     "phase_s": sum(phases.values()) if phases else float("nan")})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["quality"] = out["quality"].astype("Int64")
    return out


def machines_table(results_dir) -> pd.DataFrame:
    """One row per host × device that has results: the machine and software behind them (from
    every run's ``environ`` block, learned and standard codecs), with the runs' thread counts,
    the best measured float32 matmul rate and when the runs were made."""
    results_dir = Path(results_dir)
    metas = [json.loads((p / "run.json").read_text()) for p, _ in _all_run_dirs(results_dir)]
    rows = []
    for m in metas:
        e = m["environ"]
        rows.append({"host": e["host"], "device": m["spec"].get("device", "cpu"), "cpu": e.get("cpu_model", ""),
                     "cores": e.get("cpu_count"), "gpu": e.get("gpu_name") or "—", "threads": e.get("threads"),
                     "torch": e.get("torch_version"), "compressai": e.get("compressai_version"),
                     "python": e.get("python_version"), "peak": e.get("peak_matmul_gflops"),
                     "time": e.get("time_utc", "")})
    cols = ["host", "device", "cpu", "cores", "gpu", "threads", "torch", "compressai", "python",
            "peak matmul GFLOP/s", "runs", "measured (UTC)"]
    if not rows:
        return pd.DataFrame(columns=cols)
    d = pd.DataFrame(rows)
    out = []
    for (host, dev), g in d.groupby(["host", "device"], sort=True):
        first = g.iloc[0]
        peak = g.peak.dropna()
        out.append([host, dev, first.cpu, first.cores, first.gpu,
                    ", ".join(str(t) for t in sorted(g.threads.dropna().unique())),
                    ", ".join(sorted(g.torch.dropna().unique())), ", ".join(sorted(g.compressai.dropna().unique())),
                    first.python, f"{peak.max():.0f}" if len(peak) else "—", len(g),
                    f"{g.time.min()[:10]} … {g.time.max()[:10]}"])
    return pd.DataFrame(out, columns=cols)
