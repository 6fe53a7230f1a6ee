"""Published reference data, read as tidy tables: the ICASSP 2023 paper's raw per-image xlsx and
CompressAI's published Kodak results (RD points and runtimes of its pretrained models, the standard
codecs, and the RD points it quotes from the CKBD and ELIC papers). Nothing here is measured: it
reads ``data/reference/`` (``make data``).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core.codec_table import CODECS
from ..errors import InputError
from .style import X265_OURS, X265_PUBLISHED
from .workbooks import read_paper_reference

LC_TIMING = "lc-assessment/FALCON_ICASSP2023_WP1_V1.0/Timing"
CAI = "compressai-results"
ANCHOR = "bpg_444_x265_ycbcr.json"
COMPRESSAI_MACHINE = "CompressAI published (Quadro RTX 8000 / Xeon Gold 5218R, 1 thread, 1 run per image, no warm-up)"


def compressai_json(reference, name: str) -> dict:
    p = Path(reference) / CAI / name
    if not p.exists():
        raise InputError(f"{p} not found; run `make data`")
    return json.loads(p.read_text())


def compressai_results(reference, metric: str = "mse") -> pd.DataFrame:
    """CompressAI's published per-quality Kodak averages for the zoo codecs (CPU and CUDA)."""
    rows = []
    for s in CODECS:
        if not s.pretrained:
            continue
        for dev in ("cpu", "cuda"):
            d = compressai_json(reference, f"compressai-{s.name}_{metric}_{dev}.json")["results"]
            for i, q in enumerate(s.qualities):
                if i >= len(d["bpp"]):
                    break
                rows.append({"codec": s.label, "quality": q, "device": dev, "bpp": d["bpp"][i],
                             "psnr": d["psnr-rgb"][i], "ms_ssim": d["ms-ssim-rgb"][i],
                             "encode": d["encoding_time"][i], "decode": d["decoding_time"][i],
                             "source": COMPRESSAI_MACHINE})
    return pd.DataFrame(rows)


def paper_module_times(reference) -> pd.DataFrame:
    """The paper's per-image times (mse models), averaged over images per codec/quality/device/stage."""
    p = read_paper_reference(Path(reference) / LC_TIMING)
    p = p[p.metric == "mse"]
    return p.groupby(["codec", "quality", "device", "direction", "stage"], as_index=False).seconds.mean()


def rd_points(reference, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """RD points: CompressAI's published pretrained results (zoo codecs), the paper-quoted points
    for CKBD and ELIC, the x265 anchor, and ours wherever a run used pretrained weights."""
    rows = []
    cai = compressai_results(reference)
    for _, r in cai[cai.device == "cpu"].iterrows():
        rows.append({"codec": r.codec, "quality": r.quality, "bpp": r.bpp, "psnr": r.psnr,
                     "source": "CompressAI published (pretrained)"})
    for s in CODECS:
        if not s.paper_rd:  # a codec with zoo weights: CompressAI's own points, above
            continue
        d = compressai_json(reference, s.paper_rd)["results"]
        for i, (b, p) in enumerate(zip(d["bpp"], d["psnr-rgb"])):
            rows.append({"codec": s.label, "quality": i + 1, "bpp": b, "psnr": p,
                         "source": f"quoted from the paper ({compressai_json(reference, s.paper_rd)['name']})"})
    d = compressai_json(reference, ANCHOR)["results"]
    for i, (b, p) in enumerate(zip(d["bpp"], d["psnr-rgb"])):
        rows.append({"codec": X265_PUBLISHED, "quality": i, "bpp": b, "psnr": p,
                     "source": "CompressAI published (BPG 0.9.8, x265, 4:4:4)"})
    if df is not None and not df.empty:
        from ..runs.tidy import main_rows

        m = main_rows(df, all_threads=False)
        pre = m[(m.weights == "pretrained") & (m.stage == "total") & (m.direction == "encode") & m.crop.isna()]
        for (c, q), g in pre.groupby(["codec", "quality"]):
            rows.append({"codec": c, "quality": q, "bpp": g.bpp.mean(), "psnr": g.psnr.mean(),
                         "source": "ours (pretrained)"})
    return pd.DataFrame(rows)


def ours_label(codec: str) -> str:
    """How our measured standard codec is named beside the published curves."""
    return X265_OURS if codec == "HEVC (x265)" else f"{codec} (ours)"


def standard_rd_points(std: pd.DataFrame) -> pd.DataFrame:
    """Our measured standard-codec RD points (mean bpp and PSNR over the images per sweep value,
    the way CompressAI averages its curves); x265 is named ``x265 HEIC (ours)``, the others
    ``"<codec> (ours)"``. One platform's measurement (the first, if several: bitrate and PSNR do not
    depend on the platform)."""
    if std is None or std.empty:
        return pd.DataFrame(columns=["codec", "quality", "bpp", "psnr", "source"])
    h = sorted(std.platform.unique())[0]
    s = std[(std.platform == h) & (std.direction == "encode")]
    g = s.groupby(["codec", "value"], as_index=False).agg(bpp=("bpp", "mean"), psnr=("psnr", "mean"),
                                                         images=("image", "nunique"))
    g["codec"] = g.codec.map(ours_label)
    crop = s.crop.dropna().unique() if "crop" in s else []
    what = f"{int(crop[0])}×{int(crop[0])} crops" if len(crop) == 1 else "full size"
    g["source"] = [f"ours ({n} images, {what})" for n in g.images]  # what the curve rests on, in its name
    return g.rename(columns={"value": "quality"})[["codec", "quality", "bpp", "psnr", "source"]]


