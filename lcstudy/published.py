"""Our measurements beside the published ones: the ICASSP 2023 paper's raw data and
CompressAI's published Kodak results (RD points, runtimes, and RD points quoted from papers).

Nothing here is measured: it reads ``data/reference/`` (``make data``) and the tidy tables.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .codecs import CODECS, get_spec
from .errors import InputError
from .results import main_rows, read_paper_reference

LC_TIMING = "lc-assessment/FALCON_ICASSP2023_WP1_V1.0/Timing"
CAI = "compressai-results"
#: RD points CompressAI quotes from papers, for the codecs without zoo weights.
PAPER_RD = {"CKBD": "paper-cheng2020-checkerboard-6M_mse.json", "ELIC": "paper-elic2022_mse.json"}
ANCHOR = "bpg_444_x265_ycbcr.json"


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
                             "source": "CompressAI published (Quadro RTX 8000 / Xeon Gold 5218R, 1 thread, "
                                       "1 run per image, no warm-up)"})
    return pd.DataFrame(rows)


def paper_module_times(reference) -> pd.DataFrame:
    """The paper's per-image times (mse models), averaged over images per codec/quality/device/stage."""
    p = read_paper_reference(Path(reference) / LC_TIMING)
    p = p[p.metric == "mse"]
    return p.groupby(["codec", "quality", "device", "direction", "stage"], as_index=False).seconds.mean()


def ours_module_times(df: pd.DataFrame) -> pd.DataFrame:
    d = main_rows(df)
    d = d[(d.level.isin([0, 2])) & (d.stage != "network") & (d.crop.isna())]
    d = d.assign(device=d.device.astype(str).str.split(":").str[0])
    return d.groupby(["codec", "quality", "device", "threads", "host", "direction", "stage"],
                     as_index=False).seconds.mean()


def compare_modules(df: pd.DataFrame, reference) -> pd.DataFrame:
    """Ours / paper per codec, quality (the qualities we measured), device, direction, stage."""
    ours = ours_module_times(df)
    paper = paper_module_times(reference).rename(columns={"seconds": "paper_seconds"})
    m = ours.merge(paper, on=["codec", "quality", "device", "direction", "stage"], how="inner")
    m["ours_over_paper"] = m.seconds / m.paper_seconds.where(m.paper_seconds > 0)
    return m


def rankings(df: pd.DataFrame, reference, quality_of: dict[str, int] | None = None) -> pd.DataFrame:
    """Encode/decode total per codec at one quality each: ours (per platform), paper, CompressAI."""
    ours = ours_module_times(df)
    ours = ours[ours.stage == "total"]
    quality_of = quality_of or {s.label: s.qualities[0] for s in CODECS}
    rows = []
    for (c, dev, thr, host), g in ours.groupby(["codec", "device", "threads", "host"]):
        g = g[g.quality == quality_of.get(c, 1)]
        for _, r in g.iterrows():
            rows.append({"codec": c, "quality": r.quality, "source": f"ours · {host} · {dev} · {thr} thr",
                         "direction": r.direction, "seconds": r.seconds})
    paper = paper_module_times(reference)
    paper = paper[paper.stage == "total"]
    for _, r in paper.iterrows():
        if quality_of.get(r.codec) == r.quality:
            rows.append({"codec": r.codec, "quality": r.quality, "source": f"paper · {r.device}",
                         "direction": r.direction, "seconds": r.seconds})
    cai = compressai_results(reference)
    for _, r in cai.iterrows():
        if quality_of.get(r.codec) == r.quality:
            for d in ("encode", "decode"):
                rows.append({"codec": r.codec, "quality": r.quality, "source": f"CompressAI · {r.device}",
                             "direction": d, "seconds": r[d]})
    return pd.DataFrame(rows)


def kendall(rank: pd.DataFrame) -> pd.DataFrame:
    """Kendall τ between every pair of sources' codec rankings, per direction (codecs in common)."""
    from scipy.stats import kendalltau

    out = []
    if rank.empty:
        return pd.DataFrame(columns=["direction", "a", "b", "codecs", "tau", "p_value"])
    from .beyond import column_pairs

    for d, a, b, both in column_pairs(rank, "source", "seconds"):
        if len(both) >= 3:
            tau, p = kendalltau(both[a], both[b])
            out.append({"direction": d, "a": a, "b": b, "codecs": len(both), "tau": tau, "p_value": p})
    return pd.DataFrame(out)


# --- rate-distortion -------------------------------------------------------------------

def rd_points(reference, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """RD points: CompressAI's published pretrained results (zoo codecs), the paper-quoted points
    for CKBD and ELIC, the x265 anchor, and ours wherever a run used pretrained weights."""
    rows = []
    cai = compressai_results(reference)
    for _, r in cai[cai.device == "cpu"].iterrows():
        rows.append({"codec": r.codec, "quality": r.quality, "bpp": r.bpp, "psnr": r.psnr,
                     "source": "CompressAI published (pretrained)"})
    for label, f in PAPER_RD.items():
        d = compressai_json(reference, f)["results"]
        for i, (b, p) in enumerate(zip(d["bpp"], d["psnr-rgb"])):
            rows.append({"codec": label, "quality": i + 1, "bpp": b, "psnr": p,
                         "source": f"quoted from the paper ({compressai_json(reference, f)['name']})"})
    d = compressai_json(reference, ANCHOR)["results"]
    for i, (b, p) in enumerate(zip(d["bpp"], d["psnr-rgb"])):
        rows.append({"codec": "x265 (BPG)", "quality": i, "bpp": b, "psnr": p,
                     "source": "CompressAI published (BPG 0.9.8, x265, 4:4:4)"})
    if df is not None and not df.empty:
        m = main_rows(df, all_threads=False)
        pre = m[(m.weights == "pretrained") & (m.stage == "total") & (m.direction == "encode") & m.crop.isna()]
        for (c, q), g in pre.groupby(["codec", "quality"]):
            rows.append({"codec": c, "quality": q, "bpp": g.bpp.mean(), "psnr": g.psnr.mean(),
                         "source": "ours (pretrained)"})
    return pd.DataFrame(rows)


OURS_X265 = "x265 HEIC (ours)"


def ours_label(codec: str) -> str:
    """How our measured standard codec is named beside the published curves."""
    return OURS_X265 if codec == "HEVC (x265)" else f"{codec} (ours)"


def standard_rd_points(std: pd.DataFrame) -> pd.DataFrame:
    """Our measured standard-codec RD points (mean bpp and PSNR over the images per sweep value,
    the way CompressAI averages its curves); x265 is named :data:`OURS_X265`, the others
    ``"<codec> (ours)"``. One host's measurement (the first, if several)."""
    if std is None or std.empty:
        return pd.DataFrame(columns=["codec", "quality", "bpp", "psnr", "source"])
    h = sorted(std.host.unique())[0]
    s = std[(std.host == h) & (std.direction == "encode")]
    g = s.groupby(["codec", "value"], as_index=False).agg(bpp=("bpp", "mean"), psnr=("psnr", "mean"),
                                                         images=("image", "nunique"))
    g["codec"] = g.codec.map(ours_label)
    g["source"] = [f"ours (measured on {h}, {n} images)" for n in g.images]
    return g.rename(columns={"value": "quality"})[["codec", "quality", "bpp", "psnr", "source"]]


def bd_rates_both(rd: pd.DataFrame) -> pd.DataFrame:
    """BD-rate against the published BPG/x265 anchor and, where measured, against our own x265."""
    out = bd_rates(rd[rd.codec != OURS_X265])
    if (rd.codec == OURS_X265).sum() >= 2:
        ours = bd_rates(rd[rd.codec != "x265 (BPG)"], anchor=OURS_X265).rename(
            columns={"bd_rate_vs_x265_pct": "bd_rate_vs_x265_ours_pct"})
        out = out.merge(ours[["codec", "source", "bd_rate_vs_x265_ours_pct"]], on=["codec", "source"], how="outer")
        ref = bd_rates(rd[rd.codec.isin(["x265 (BPG)", OURS_X265])], anchor="x265 (BPG)")
        out = pd.concat([out, ref], ignore_index=True).drop_duplicates(["codec", "source"])
    else:
        out["bd_rate_vs_x265_ours_pct"] = float("nan")
    return out


def bd_rates(rd: pd.DataFrame, anchor: str = "x265 (BPG)") -> pd.DataFrame:
    """BD-rate (%) of each codec's published curve against the anchor (the ``bjontegaard`` package,
    Akima interpolation; negative = fewer bits at equal PSNR)."""
    import bjontegaard as bd

    a = rd[rd.codec == anchor].sort_values("bpp")
    out = []
    for (c, src), g in rd[rd.codec != anchor].groupby(["codec", "source"]):
        g = g.sort_values("bpp")
        try:
            val = bd.bd_rate(a.bpp.values, a.psnr.values, g.bpp.values, g.psnr.values, method="akima",
                             require_matching_points=False, min_overlap=0.0)
        except Exception as e:  # too little overlap between the curves
            val, src = float("nan"), f"{src} ({type(e).__name__})"
        out.append({"codec": c, "source": src, "points": len(g), "bd_rate_vs_x265_pct": float(val)})
    return pd.DataFrame(out)


def frontier(points: pd.DataFrame, x: str, y: str = "bd_rate_vs_x265_pct") -> pd.Series:
    """Pareto frontier (lower x and lower y are better): True where no other point is better on both."""
    pts = points[[x, y]].to_numpy(dtype=float)
    keep = []
    for i, (xi, yi) in enumerate(pts):
        dominated = np.any((pts[:, 0] <= xi) & (pts[:, 1] <= yi) & ((pts[:, 0] < xi) | (pts[:, 1] < yi)))
        keep.append(not dominated and not np.isnan(xi) and not np.isnan(yi))
    return pd.Series(keep, index=points.index)


def rd_complexity(reference, df: pd.DataFrame, cx: pd.DataFrame, std: pd.DataFrame | None = None) -> pd.DataFrame:
    """BD-rate vs x265 (published, and ours where measured) beside decoder kMAC/px (full-size
    counts) and our median decode time; our standard codecs enter with their decode time."""
    rd = pd.concat([rd_points(reference, df), standard_rd_points(std)], ignore_index=True)
    bdr = bd_rates_both(rd)
    # kMAC/px barely depends on the size (padding aside): use whatever size was counted
    c = cx[(cx.stage == "total") & (cx.direction == "decode")]
    kmac = c.groupby("codec").kmac_per_px.agg(["min", "max"]).rename(
        columns={"min": "dec_kmac_px_min", "max": "dec_kmac_px_max"})
    m = main_rows(df, all_threads=False)
    # the main size (the same images as the standard codecs), each codec at its lowest quality measured
    t = m[(m.stage == "total") & (m.direction == "decode") & (m.device == "cpu")]
    t = t[t.quality == t.groupby("codec").quality.transform("min")]
    dec = t.groupby("codec").seconds.median().rename("decode_seconds_cpu")
    thr = t.groupby("codec").threads.first().rename("threads")
    sizes = c.assign(size=c.width.astype(str) + "×" + c.height.astype(str)).groupby("codec")["size"].agg(
        lambda v: ", ".join(sorted(set(v)))).rename("counted_at")
    out = bdr.merge(kmac, left_on="codec", right_index=True, how="left").merge(
        sizes, left_on="codec", right_index=True, how="left")
    out = out.merge(dec, left_on="codec", right_index=True, how="left").merge(thr, left_on="codec",
                                                                              right_index=True, how="left")
    if std is not None and not std.empty:
        h = sorted(std.host.unique())[0]
        sd = std[(std.host == h) & (std.direction == "decode")].groupby("codec").seconds.median()
        sd.index = sd.index.map(ours_label)
        fill = out.codec.map(sd)
        out["decode_seconds_cpu"] = out.decode_seconds_cpu.fillna(fill)
        out["threads"] = out.threads.where(fill.isna(), int(std.threads.iloc[0]))
    out["order"] = out.codec.map({s.label: i for i, s in enumerate(CODECS)}).fillna(99)
    out = out.sort_values("order").drop(columns="order").reset_index(drop=True)
    ok = out.dropna(subset=["bd_rate_vs_x265_pct", "dec_kmac_px_min"])
    out["frontier_kmac"] = False
    out.loc[ok.index, "frontier_kmac"] = frontier(ok, "dec_kmac_px_min")
    ok = out.dropna(subset=["bd_rate_vs_x265_pct", "decode_seconds_cpu"])
    out["frontier_time"] = False
    out.loc[ok.index, "frontier_time"] = frontier(ok, "decode_seconds_cpu")
    return out
