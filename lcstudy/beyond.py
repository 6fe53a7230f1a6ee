"""The analyses that go past the ICASSP 2023 paper: FLOPs versus runtime (platforms, rank
inversions, roofline), resolution scaling, and learned versus standard codecs at matched bitrate.

Everything here is derived from the tidy tables (:func:`lcstudy.load_results`,
:func:`lcstudy.standard.load_standard`) and the published reference data; nothing is measured.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .codecs import CODECS, get_spec
from .results import main_rows

CODEC_ORDER = [s.label for s in CODECS]


def platform(df: pd.DataFrame) -> pd.Series:
    """``host · device · N thr``: one platform is one machine, device and thread count."""
    return df.host.astype(str) + " · " + df.device.astype(str) + " · " + df.threads.astype(str) + " thr"


# --- FLOPs versus runtime ----------------------------------------------------------------

def _totals(df: pd.DataFrame) -> pd.DataFrame:
    t = df[df.stage == "total"].copy()
    t["platform"] = platform(t)
    return t


def common_image_times(df: pd.DataFrame) -> pd.DataFrame:
    """Median total time per codec (lowest quality measured), platform and direction, over the
    images that *every* platform of the same host measured — so a 4-image 1-thread pass is
    compared with the same 4 images of the all-threads run, not with 24."""
    t = _totals(main_rows(df))
    if t.empty:
        return t
    q = t.groupby("codec").quality.min()
    t = t[t.quality == t.codec.map(q)]
    out = []
    for host, h in t.groupby("host"):
        per = h.groupby("platform").image.apply(set)
        common = set.intersection(*per.tolist())
        h = h[h.image.isin(common)].assign(mpx=lambda x: x.height * x.width / 1e6)
        g = h.groupby(["codec", "quality", "platform", "device", "threads", "direction"], as_index=False).agg(
            seconds=("seconds", "median"), images=("image", "nunique"), mpx=("mpx", "mean"))
        g["host"] = host
        out.append(g)
    g = pd.concat(out, ignore_index=True)
    g["mpx_per_s"] = g.mpx / g.seconds
    return g


def with_kmac(times: pd.DataFrame, cx: pd.DataFrame) -> pd.DataFrame:
    """Add the codec's kMAC/px (ptflops aten, executed; the size-independent count) to each row."""
    c = cx[(cx.stage == "total")].groupby(["codec", "quality", "direction"], as_index=False).kmac_per_px.median()
    return times.merge(c, on=["codec", "quality", "direction"], how="left")


def correlations(t: pd.DataFrame) -> pd.DataFrame:
    """Pearson on log values and Spearman on ranks of kMAC/px vs seconds, per platform and direction."""
    from scipy.stats import pearsonr, spearmanr

    rows = []
    for (plat, d), h in t.dropna(subset=["kmac_per_px"]).groupby(["platform", "direction"]):
        if len(h) >= 3:
            r, _ = pearsonr(np.log(h.kmac_per_px), np.log(h.seconds))
            rho, p = spearmanr(h.kmac_per_px, h.seconds)
            rows.append({"platform": plat, "direction": d, "codecs": len(h), "images": int(h.images.min()),
                         "pearson_log": r, "spearman": rho, "spearman_p": p})
    return pd.DataFrame(rows)


def ranks(t: pd.DataFrame) -> pd.DataFrame:
    """Rank of each codec by median time (1 = fastest) per platform and direction, plus the
    rank by kMAC/px (what FLOPs alone would predict)."""
    r = t.copy()
    r["rank"] = r.groupby(["platform", "direction"]).seconds.rank(method="min").astype(int)
    k = (r.drop_duplicates(["codec", "direction"]).assign(platform="kMAC/px (count)")
         .dropna(subset=["kmac_per_px"]))
    k["rank"] = k.groupby("direction").kmac_per_px.rank(method="min").astype(int)
    return pd.concat([k, r], ignore_index=True)[["codec", "direction", "platform", "rank", "seconds", "kmac_per_px"]]


def column_pairs(t: pd.DataFrame, column: str, values: str):
    """Per direction, every pair (a, b) of ``column``'s values, with the codecs both have:
    yields (direction, a, b, frame with one row per codec and columns a, b)."""
    for d, g in t.groupby("direction"):
        w = g.pivot_table(index="codec", columns=column, values=values)
        cols = list(w.columns)
        for i, a in enumerate(cols):
            for b in cols[i + 1:]:
                yield d, a, b, w[[a, b]].dropna()


def inversions(rk: pd.DataFrame) -> pd.DataFrame:
    """Pairs of codecs whose order flips between two platforms (including the kMAC/px ranking)."""
    from itertools import combinations

    rows = []
    for d, a, b, both in column_pairs(rk, "platform", "rank"):
        for c1, c2 in combinations(both.index, 2):
            s1 = np.sign(both.loc[c1, a] - both.loc[c2, a])
            s2 = np.sign(both.loc[c1, b] - both.loc[c2, b])
            if s1 * s2 < 0:
                rows.append({"direction": d, "platform_a": a, "platform_b": b,
                             "faster_on_a": c1 if s1 < 0 else c2, "faster_on_b": c1 if s2 < 0 else c2,
                             "pair": " vs ".join(sorted((c1, c2)))})
    return pd.DataFrame(rows)


def fig_slope(rk: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    dirs = ["encode", "decode"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, d in zip(axes, dirs):
        g = rk[rk.direction == d]
        plats = ["kMAC/px (count)"] + sorted(p for p in g.platform.unique() if p != "kMAC/px (count)")
        for c, h in g.groupby("codec"):
            h = h.set_index("platform").reindex(plats)
            ax.plot(range(len(plats)), h["rank"], marker="o")
            last = h["rank"].last_valid_index()
            if last is not None:
                ax.annotate(c, (plats.index(last), h.loc[last, "rank"]), xytext=(5, 0), textcoords="offset points",
                            fontsize=8, va="center")
        ax.set_xticks(range(len(plats)), [p.replace(" · ", "\n") for p in plats], fontsize=8)
        ax.invert_yaxis()
        ax.set_ylabel("rank (1 = fewest MACs / fastest)")
        ax.set_title(d, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def roofline(df: pd.DataFrame, cx: pd.DataFrame) -> pd.DataFrame:
    """Achieved GMAC/s of each stage = its MACs (counted at the run's image size) / its median
    time, and the fraction of the machine's peak (a float32 matmul, ``peak_matmul_gflops`` / 2).

    A fraction near the matmul's says the stage is arithmetic-bound; far below says its time goes
    elsewhere: memory traffic, the per-position Python loop, the rANS coder.
    """
    d = main_rows(df)
    if d.empty or cx.empty or "peak_matmul_gflops" not in d.columns:
        return pd.DataFrame()
    d = d[d.level == 0]
    c = cx[(cx.count_mode == "executed") & (~cx.stage.str.contains("/")) & (cx.macs > 0)]
    c = c[["run_id", "direction", "stage", "height", "width", "gmac"]].drop_duplicates(
        ["run_id", "direction", "stage"])
    m = d.merge(c, on=["run_id", "direction", "stage"], suffixes=("", "_counted"))
    m = m[(m.height * m.width) == (m.height_counted * m.width_counted)]
    peaks = d.groupby(["host", "device", "threads"]).peak_matmul_gflops.max().rename("peak_gflops")
    g = m.groupby(["codec", "quality", "host", "device", "threads", "direction", "stage"], as_index=False).agg(
        seconds=("seconds", "median"), gmac=("gmac", "first"), images=("image", "nunique"))
    g = g.merge(peaks.reset_index(), on=["host", "device", "threads"], how="left")
    g["achieved_gmac_s"] = g.gmac / g.seconds
    g["peak_gmac_s"] = g.peak_gflops / 2
    g["fraction_of_peak"] = g.achieved_gmac_s / g.peak_gmac_s
    g["platform"] = platform(g)
    g["order"] = g.codec.map({c: i for i, c in enumerate(CODEC_ORDER)})
    return g.sort_values(["platform", "order", "direction", "stage"]).drop(columns="order").reset_index(drop=True)


def fig_roofline(rf: pd.DataFrame):
    import matplotlib.pyplot as plt
    import seaborn as sns

    if rf.empty or rf.fraction_of_peak.isna().all():
        return None
    plats = sorted(rf.platform.unique())
    fig, axes = plt.subplots(len(plats), 2, figsize=(13, 3.6 * len(plats)), squeeze=False)
    for row, p in zip(axes, plats):
        for ax, d in zip(row, ("encode", "decode")):
            g = rf[(rf.platform == p) & (rf.direction == d)].copy()
            g["codec_q"] = g.codec + " q" + g.quality.astype(str)
            sns.barplot(data=g, x="codec_q", y="fraction_of_peak", hue="stage", ax=ax)
            ax.set_yscale("log")
            ax.axhline(1.0, color="k", lw=0.8, ls="--")
            ax.set(xlabel="", ylabel="achieved / matmul peak", title=f"{d} · {p} "
                   f"(peak {g.peak_gmac_s.iloc[0]:.0f} GMAC/s)" if len(g) else d)
            ax.tick_params(axis="x", labelrotation=45, labelsize=8)
            ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


# --- resolution scaling -----------------------------------------------------------------

def size_label(h: int, w: int, crop, resize) -> str:
    if isinstance(resize, str):
        return f"{w}×{h} (synthetic)"
    if pd.notna(crop):
        return f"{w}×{h} (crop)"
    return f"{w}×{h} (native)"


def scaling_table(df: pd.DataFrame, mem: pd.DataFrame, image: str = "kodim01") -> pd.DataFrame:
    """Per codec and size: total and network (E/D vs CE/DE) time of ``image`` and peak memory.

    Sizes: every run of the codec's lowest quality on CPU at the most threads that measured
    ``image`` — the scaling runs (crops, synthetic sizes) and the main run (native size).
    """
    if df.empty:
        return pd.DataFrame()
    d = df[(df.image == image) & (df.stage.isin(["total", "network"])) & (df.device == "cpu")].copy()
    if d.empty:
        return pd.DataFrame()
    q = d.groupby("codec").quality.min()
    d = d[d.quality == d.codec.map(q)]
    d = d[d.threads == d.groupby("host").threads.transform("max")]
    d["mpx"] = d.height * d.width / 1e6
    d["size"] = [size_label(h, w, c, r) for h, w, c, r in zip(d.height, d.width, d.crop, d["resize"])]
    t = d.pivot_table(index=["host", "codec", "quality", "threads", "size", "mpx", "run_id", "weights"],
                      columns=["direction", "stage"], values="seconds", aggfunc="first")
    t.columns = [f"{a}_{b}_s" for a, b in t.columns]
    t = t.reset_index()
    iqr = d[d.stage == "total"].pivot_table(index="run_id", columns="direction", values="iqr_seconds",
                                            aggfunc="first")
    for direction in ("encode", "decode"):
        if direction in iqr.columns:
            t[f"{direction}_total_iqr_s"] = t.run_id.map(iqr[direction])
    if not mem.empty:
        m = mem[mem.memory == "cpu_rss"].assign(working_mb=lambda x: x.peak_mb - x.baseline_mb)
        w = m.pivot_table(index="run_id", columns="direction", values=["peak_mb", "working_mb"], aggfunc="first")
        w.columns = [f"{a}_{b}" for a, b in w.columns]
        t = t.merge(w.reset_index(), on="run_id", how="left")
    t["order"] = t.codec.map({c: i for i, c in enumerate(CODEC_ORDER)})
    return t.sort_values(["host", "order", "mpx"]).drop(columns="order").reset_index(drop=True)


def fit_exponents(st: pd.DataFrame) -> pd.DataFrame:
    """Least-squares slope of log(y) on log(megapixels) per codec: 1 = linear in pixels.
    y: encode/decode total and network time, and working memory (peak − baseline RSS)."""
    ys = [c for c in ("encode_total_s", "decode_total_s", "encode_network_s", "decode_network_s",
                      "working_mb_encode", "working_mb_decode") if c in st.columns]
    rows = []
    for (host, codec), g in st.groupby(["host", "codec"]):
        row = {"host": host, "codec": codec, "sizes": g.mpx.nunique(),
               "mpx_range": f"{g.mpx.min():.2f}–{g.mpx.max():.2f}"}
        for y in ys:
            ok = g[[y, "mpx"]].dropna()
            ok = ok[ok[y] > 0]
            row[f"exp_{y.replace('_s', '').replace('_mb', '')}"] = (
                float(np.polyfit(np.log(ok.mpx), np.log(ok[y]), 1)[0]) if ok.mpx.nunique() >= 2 else np.nan)
        rows.append(row)
    out = pd.DataFrame(rows)
    if not out.empty:
        out["order"] = out.codec.map({c: i for i, c in enumerate(CODEC_ORDER)})
        out = out.sort_values(["host", "order"]).drop(columns="order").reset_index(drop=True)
    return out


def fig_scaling(st: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for c, g in st.groupby("codec"):
        g = g.sort_values("mpx")
        for ax, y in zip(axes[:2], ("encode_total_s", "decode_total_s")):
            line, = ax.plot(g.mpx, g[y], marker="o", label=c)
            net = y.replace("total", "network")
            if net in g:
                ax.plot(g.mpx, g[net], ls=":", color=line.get_color())
        if "working_mb_decode" in g:
            axes[2].plot(g.mpx, g.working_mb_decode, marker="o", label=c)
    for ax, t in zip(axes, ("encode (solid: full, dotted: network only)", "decode (solid: full, dotted: network)",
                            "decode working memory (peak − baseline RSS, MB)")):
        ax.set(xscale="log", yscale="log", xlabel="megapixels", title=t)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("seconds")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --- learned versus standard codecs at matched bitrate ----------------------------------

def standard_summary(std: pd.DataFrame) -> pd.DataFrame:
    """Per host, codec and sweep value: mean bpp/PSNR/MS-SSIM over images, median time and
    median seconds per megapixel (over images of each image's median over repeats)."""
    s = std.assign(s_per_mpx=std.seconds / (std.height * std.width / 1e6))
    g = s.groupby(["host", "codec", "knob", "value", "direction"], as_index=False).agg(
        bpp=("bpp", "mean"), psnr=("psnr", "mean"), ms_ssim=("ms_ssim", "mean"), seconds=("seconds", "median"),
        s_per_mpx=("s_per_mpx", "median"), images=("image", "nunique"), noisy=("noisy", "mean"),
        threading=("threading", "first"))
    return g


def standard_at_bpp(summary: pd.DataFrame, bpp: float = 0.5) -> pd.DataFrame:
    """Seconds per megapixel of each standard codec at ``bpp``: log-linear interpolation of
    s/Mpx in log(bpp) between the two sweep points around it (``note`` says where it had to
    take the nearest point instead)."""
    rows = []
    for (host, codec, d), g in summary.groupby(["host", "codec", "direction"]):
        g = g.sort_values("bpp")
        lo, hi = g[g.bpp <= bpp].tail(1), g[g.bpp >= bpp].head(1)
        if len(lo) and len(hi):
            b0, b1 = float(lo.bpp.iloc[0]), float(hi.bpp.iloc[0])
            t0, t1 = float(lo.s_per_mpx.iloc[0]), float(hi.s_per_mpx.iloc[0])
            w = 0.0 if b1 == b0 else (np.log(bpp) - np.log(b0)) / (np.log(b1) - np.log(b0))
            v, note = float(np.exp(np.log(t0) + w * (np.log(t1) - np.log(t0)))), \
                f"interpolated between {lo.value.iloc[0]} and {hi.value.iloc[0]}"
            p0, p1 = float(lo.psnr.iloc[0]), float(hi.psnr.iloc[0])
            psnr = p0 + w * (p1 - p0)
        else:
            near = g.iloc[(g.bpp - bpp).abs().argsort()[:1]]
            v, psnr = float(near.s_per_mpx.iloc[0]), float(near.psnr.iloc[0])
            note = f"nearest point {near.value.iloc[0]} at {near.bpp.iloc[0]:.3f} bpp (sweep does not reach {bpp})"
        rows.append({"host": host, "codec": codec, "direction": d, "s_per_mpx": v, "psnr_at_bpp": psnr,
                     "how": note, "kind": "standard"})
    return pd.DataFrame(rows)


def learned_at_bpp(df: pd.DataFrame, rd: pd.DataFrame, bpp: float = 0.5) -> pd.DataFrame:
    """Seconds per megapixel of each learned codec at ``bpp``.

    Which quality gives ``bpp`` comes from the *published* RD points (pretrained weights;
    with random weights our own bitrate means nothing); complexity depends on the quality only
    through the channel configuration, so the time is our measurement of the lowest quality
    of that configuration (``measured_q``), where we have one, else of the nearest measured one
    (``how`` says so).
    """
    m = main_rows(df, all_threads=False)
    t = m[(m.stage == "total")].assign(s_per_mpx=lambda x: x.seconds / (x.height * x.width / 1e6))
    rows = []
    for (host, codec, dev, thr), g in t.groupby(["host", "codec", "device", "threads"]):
        pts = rd[(rd.codec == codec) & ~rd.source.str.startswith("ours")].sort_values("bpp")
        if pts.empty:
            continue
        near = pts.iloc[(pts.bpp - bpp).abs().argsort()[:1]]
        q_rd = int(near.quality.iloc[0])
        spec = get_spec(codec)
        cfg = spec.channels.get(q_rd, spec.channels[spec.qualities[0]])
        same = [q for q in sorted(g.quality.unique()) if spec.channels.get(q) == cfg]
        if same:
            mq, how = same[0], f"published q{q_rd} at {near.bpp.iloc[0]:.3f} bpp; same channels as measured q{same[0]}"
        else:
            mq = min(g.quality.unique(), key=lambda q: abs(q - q_rd))
            how = (f"published q{q_rd} at {near.bpp.iloc[0]:.3f} bpp; its channel configuration was not measured, "
                   f"q{mq} used instead (different network size)")
        h = g[g.quality == mq]
        for d, hd in h.groupby("direction"):
            rows.append({"host": host, "codec": codec, "device": dev, "threads": thr, "direction": d,
                         "s_per_mpx": float(hd.s_per_mpx.median()), "psnr_at_bpp": float(near.psnr.iloc[0]),
                         "measured_q": int(mq), "weights": ", ".join(sorted(hd.weights.unique())), "how": how,
                         "kind": "learned", "images": hd.image.nunique()})
    return pd.DataFrame(rows)


def speed_vs_standard(learned: pd.DataFrame, standard: pd.DataFrame, refs=("JPEG", "HEVC (x265)")) -> pd.DataFrame:
    """The l3ic-style table: each learned codec's time per megapixel at the matched bitrate, and
    how many times slower it is than each reference standard codec on the same host."""
    if learned.empty or standard.empty:
        return pd.DataFrame()
    w = learned.pivot_table(index=["host", "codec", "device", "threads", "measured_q", "weights"],
                            columns="direction", values="s_per_mpx").reset_index()
    for ref in refs:
        r = standard[standard.codec == ref].pivot_table(index="host", columns="direction", values="s_per_mpx")
        if r.empty:
            continue
        for d in ("encode", "decode"):
            if d in w and d in r:
                w[f"{d}_x_{ref.split()[0]}"] = w[d] / w.host.map(r[d])
    w = w.rename(columns={"encode": "encode_s_per_mpx", "decode": "decode_s_per_mpx"})
    w["order"] = w.codec.map({c: i for i, c in enumerate(CODEC_ORDER)})
    return w.sort_values(["host", "device", "threads", "order"]).drop(columns="order").reset_index(drop=True)


# --- downloads ------------------------------------------------------------------------------

def write_tables(downloads_dir, name: str, tables: dict[str, pd.DataFrame]) -> list:
    """One xlsx per chapter (a sheet per table) and a CSV per table, beside the assessment's
    downloads; written to temporary names and renamed."""
    from pathlib import Path

    from .store import atomic_write_csv

    out = Path(downloads_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {k: v for k, v in tables.items() if v is not None and not v.empty}
    files = []
    if not tables:
        return files
    path = out / f"lcstudy_{name}.xlsx"
    tmp = path.with_name(f".{path.name}.tmp")
    with pd.ExcelWriter(tmp, engine="openpyxl") as xw:
        for k, v in tables.items():
            v.to_excel(xw, sheet_name=k[:31], index=False)
    tmp.replace(path)
    files.append(path)
    for k, v in tables.items():
        p = out / f"lcstudy_{name}_{k}.csv"
        atomic_write_csv(p, v)
        files.append(p)
    return files


def first_repeat_ratio(samples: pd.DataFrame, st: pd.DataFrame) -> pd.DataFrame:
    """For the scaling runs without warm-up: the first repeat's total over the median of the
    repeats, per run and direction — the check that skipping the warm-up costs nothing
    measurable (a ratio near 1, inside the spread)."""
    if samples.empty or st.empty:
        return pd.DataFrame()
    s = samples[samples.run_id.isin(st.run_id) & (samples.stage == "total")]
    rows = []
    for (rid, d), g in s.groupby(["run_id", "direction"]):
        g = g.sort_values("repeat")
        if len(g) >= 2:
            rows.append({"run_id": rid, "direction": d, "first_over_median": g.seconds.iloc[0] / g.seconds.median(),
                         "max_over_min": g.seconds.max() / g.seconds.min(), "repeats": len(g)})
    r = pd.DataFrame(rows)
    if r.empty:
        return r
    return st[["run_id", "codec", "size"]].drop_duplicates().merge(r, on="run_id").drop(columns="run_id")
