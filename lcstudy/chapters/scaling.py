"""Chapter "Resolution scaling": how time and memory grow with the image — kodim01 as a 512×512 centre
crop, at its native 768×512, and upscaled to 1920×1080 and 3840×2160 (synthetic: Lanczos, cover,
centre-crop) — with the fitted exponent of each in megapixels (1 = linear in pixels)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.stats import median_ci
from . import style
from .page import Page
from .study import load
from .columns import present

TITLE = "Resolution scaling"


def size_label(h: int, w: int, crop, resize) -> str:
    if isinstance(resize, str):
        return f"{w}×{h} (synthetic)"
    if pd.notna(crop):
        return f"{w}×{h} (crop)"
    return f"{w}×{h} (native)"


def scaling_table(df: pd.DataFrame, samples: pd.DataFrame, mem: pd.DataFrame, image: str = "kodim01") -> pd.DataFrame:
    """Per platform, codec and size: total and network time of ``image`` (median over its repeats, with the
    95 % interval where there are at least 6) and its memory. Sizes: every run of the codec's lowest quality
    on CPU at the most threads that measured ``image`` — the scaling runs (one run of several sizes, or one run
    per size) and the main run (native size)."""
    d = df[(df.image == image) & (df.stage.isin(["total", "network"])) & (df.device == "cpu")] if not df.empty \
        else df
    if d.empty:
        return pd.DataFrame()
    d = d[d.quality == d.groupby("codec").quality.transform("min")]
    d = d[d.threads == d.groupby("cpu_model").threads.transform("max")].copy()
    d["mpx"] = d.height * d.width / 1e6
    d["size"] = [size_label(h, w, c, r) for h, w, c, r in zip(d.height, d.width, d.crop, d["resize"])]
    if "item" not in d:
        d["item"] = d.image
    rows = []
    for (plat, codec, size, rid, item), g in d.groupby(["platform", "codec", "size", "run_id", "item"], sort=False):
        row = {"platform": plat, "device": "cpu", "threads": g.threads.iloc[0], "codec": codec,
               "quality": int(g.quality.iloc[0]), "size": size,
               "mpx": float(g.mpx.iloc[0]), "run_id": rid, "item": item, "weights": g.weights.iloc[0],
               "weights_label": g.weights_label.iloc[0], "repeats": int(g.n_samples.max()),
               "warmup_codings": g.warmup_codings.iloc[0]}
        for direction in ("encode", "decode"):
            for stage in ("total", "network"):
                r = g[(g.direction == direction) & (g.stage == stage)]
                row[f"{direction}_{stage}_s"] = float(r.seconds.iloc[0]) if len(r) else np.nan
                if stage == "total":  # energy where the platform exposes it (RAPL): joules per megapixel
                    row[f"{direction}_j_per_mp"] = (float(r.energy_j_per_mp.iloc[0])
                                                    if len(r) and "energy_j_per_mp" in r else np.nan)
            s = samples[(samples.run_id == rid) & (_item(samples) == item) & (samples.direction == direction)
                        & (samples.stage == "total") & ~samples.contended.astype(bool)] if not samples.empty else None
            lo, hi = median_ci(s.seconds.tolist()) if s is not None and len(s) else (np.nan, np.nan)
            row[f"{direction}_ci_half_s"] = (hi - lo) / 2 if not np.isnan(lo) else np.nan
        rows.append(row)
    t = pd.DataFrame(rows)
    if not mem.empty:
        m = mem[(mem.memory == "cpu_rss") & (mem.image == image) & ~mem.contended.astype(bool)].copy()
        m["item"] = _item(m)
        w = m.groupby(["run_id", "item", "direction"])[["peak_mb", "working_mb"]].median().unstack("direction")
        w.columns = [f"{a}_{b}" for a, b in w.columns]
        t = t.merge(w.reset_index(), on=["run_id", "item"], how="left")
    return style.sort_codecs(t, then=["platform", "mpx"])


def _item(df: pd.DataFrame) -> pd.Series:
    """The item key of each row (results made before runs of several sizes have the image's name)."""
    return df["item"].fillna(df.image) if "item" in df else df.image


def fit_exponents(st: pd.DataFrame) -> pd.DataFrame:
    """Least-squares slope of log(y) on log(megapixels) per platform and codec (numpy.polyfit): 1 =
    linear in pixels. y: encode/decode total and network time, and working memory."""
    ys = [c for c in ("encode_total_s", "decode_total_s", "encode_network_s", "decode_network_s",
                      "working_mb_encode", "working_mb_decode") if c in st.columns]
    rows = []
    for (plat, codec), g in st.groupby(["platform", "codec"], sort=False):
        row = {"platform": plat, "codec": codec, "sizes": g.mpx.nunique(),
               "mpx_range": f"{g.mpx.min():.2f}–{g.mpx.max():.2f}"}
        for y in ys:
            ok = g[[y, "mpx"]].dropna()
            ok = ok[ok[y] > 0]
            name = "exp_" + y.replace("_s", "").replace("_mb", "")
            row[name] = float(np.polyfit(np.log(ok.mpx), np.log(ok[y]), 1)[0]) if ok.mpx.nunique() >= 2 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def first_repeat(df: pd.DataFrame, samples: pd.DataFrame, st: pd.DataFrame) -> pd.DataFrame:
    """Items measured without a warm-up (the rule skips it before long codings): the first repeat's total
    over the median of the repeats — the check that skipping costs nothing measurable (near 1, inside
    the spread). Needs at least 2 repeats."""
    if st.empty or samples.empty or "warmup_codings" not in df:
        return pd.DataFrame()
    cold = df[(df.warmup_codings == 0) & (df.stage == "total") & (df.n_samples >= 2) & df.run_id.isin(st.run_id)]
    cold = cold.assign(item=_item(cold))
    items = _item(samples)
    rows = []
    for (rid, item, image, d), _ in cold.groupby(["run_id", "item", "image", "direction"]):
        g = samples[(samples.run_id == rid) & (items == item) & (samples.direction == d)
                    & (samples.stage == "total")].sort_values("repeat")
        if len(g) >= 2:
            rows.append({"run_id": rid, "item": item, "image": image, "direction": d,
                         "first_over_median": g.seconds.iloc[0] / g.seconds.median(),
                         "max_over_min": g.seconds.max() / g.seconds.min(), "repeats": len(g)})
    r = pd.DataFrame(rows)
    if r.empty:
        return r
    return st[["run_id", "item", "codec", "size"]].drop_duplicates().merge(r, on=["run_id", "item"])


def fig_scaling(st: pd.DataFrame, df):
    plt = style.setup()
    fig, axes = plt.subplots(1, 3, figsize=(style.FIG_WIDTH, 3.4))
    plat = (style.main_platforms(st) or [None])[0]
    st = st[st.platform == plat]
    for c, g in st.groupby("codec", sort=False):
        g = g.sort_values("mpx")
        col = style.codec_color(c)
        for ax, y in zip(axes[:2], ("encode_total_s", "decode_total_s")):
            ax.plot(g.mpx, g[y], marker="o", ms=3, color=col, label=c)
            ax.plot(g.mpx, g[y.replace("total", "network")], ls=":", color=col)
        if "working_mb_decode" in g:
            axes[2].plot(g.mpx, g.working_mb_decode, marker="o", ms=3, color=col, label=c)
    for ax, t in zip(axes, ("encode (dotted: transforms only)", "decode (dotted: transforms only)",
                            "decode working memory")):
        ax.set(xscale="log", yscale="log", xlabel="megapixels", title=t)
    axes[0].set_ylabel("seconds")
    axes[2].set_ylabel("MB (peak minus before the call)")
    style.legend_above(fig)
    return style.finish(fig, style.title("Time and memory against image size", st, [plat] if plat else None))


def findings(page: Page, t: dict) -> None:
    from .findings import fact

    s, ex = t["sizes"], t["exponents"]
    key = lambda r: {"platform": r.platform, "codec": r.codec, "run_id": r.run_id, "item": r["item"]}  # noqa: E731
    big = s[s.mpx == s.mpx.max()].dropna(subset=["decode_total_s"])
    if len(big):
        r = big.loc[big.decode_total_s.idxmax()]
        page.findings.add("At {size}, the largest size measured, {c} takes {s} s to decode one image on {p}.",
                          size=r["size"], c=r.codec, p=r.platform, s=fact(t, "sizes", key(r), "decode_total_s", "s"))
    ok = ex.dropna(subset=["exp_decode_total"]) if "exp_decode_total" in ex else ex.iloc[0:0]
    if ok.empty:
        page.findings.missing("One image size only (the quick profile): the standard profile (`make book`) adds "
                              "kodim01 at a 512² crop, 1920×1080 and 3840×2160 for the exponents.")
    else:
        lo, hi = ok.loc[ok.exp_decode_total.idxmin()], ok.loc[ok.exp_decode_total.idxmax()]
        w = lambda r: {"platform": r.platform, "codec": r.codec}  # noqa: E731
        linear = 0.8 <= lo.exp_decode_total and hi.exp_decode_total <= 1.2
        page.findings.add("Decode time grows with the pixels with exponents from {lo} ({a}) to {hi} ({b})"
                          + (": about linear for every codec, the autoregressive loop included." if linear else "."),
                          a=lo.codec, b=hi.codec, lo=fact(t, "exponents", w(lo), "exp_decode_total"),
                          hi=fact(t, "exponents", w(hi), "exp_decode_total"))
        if "exp_working_decode" in ok and ok.exp_working_decode.notna().any():
            m = ok.dropna(subset=["exp_working_decode"])
            a, b = m.loc[m.exp_working_decode.idxmin()], m.loc[m.exp_working_decode.idxmax()]
            grows = a.exp_working_decode > 0.5
            page.findings.add("Decode working memory grows with exponents from {lo} ({a}) to {hi} ({b})"
                              + (": no codec bounds it (none tiles its input)." if grows else "."),
                              a=a.codec, b=b.codec, lo=fact(t, "exponents", w(a), "exp_working_decode"),
                              hi=fact(t, "exponents", w(b), "exp_working_decode"))
    if "working_mb_decode" in s and s.working_mb_decode.notna().any():
        r = s.loc[s.working_mb_decode.idxmax()]
        page.findings.add("The largest decode working memory measured is {c}'s at {size}: {mb} MB.", c=r.codec,
                          size=r["size"], mb=fact(t, "sizes", key(r), "working_mb_decode"))


def build(results_dir, reference=None, downloads_dir=None) -> Page:
    lcs = load(results_dir)
    page = Page("scaling")
    st = scaling_table(lcs.timings, lcs.samples, lcs.memory_all)
    ex = fit_exponents(st) if not st.empty else pd.DataFrame()
    first = first_repeat(lcs.timings, lcs.samples, st)
    tables = {"sizes": st, "exponents": ex, "first_repeat": first}
    if not st.empty:
        findings(page, tables)
    else:
        page.findings.missing("No CPU run of kodim01 here: `make runs` (the standard profile adds the scaling sizes).")
    n = st.mpx.nunique() if not st.empty else 0
    page.header = (f"{'; '.join(sorted(st.platform.unique())) if n else 'No CPU platform'}, weights "
                   f"**{style.weights_text(st) if n else 'none'}**; {n} size(s) measured. Synthetic sizes are "
                   "upscaled Kodak content, smoother than a real photograph of that size.\n\n"
                   + (style.weights_banner(st) if n else ""))
    if n:
        tt = st.assign(encode_total_s=list(zip(st.encode_total_s, st.encode_ci_half_s)),
                       decode_total_s=list(zip(st.decode_total_s, st.decode_ci_half_s)))
        page.table("sizes", present(tt, ["codec", "platform", "size", "encode_total_s", "encode_network_s",
                                         "decode_total_s", "decode_network_s", "repeats"]),
                   "Time per size: whole encode and decode, and the transforms alone (median over repeats, ± half "
                   "the 95 % interval where there were at least 6).")
        mcols = [c for c in ["codec", "platform", "size", "peak_mb_encode", "working_mb_encode", "peak_mb_decode",
                             "working_mb_decode"] if c in st.columns]
        if len(mcols) > 2:
            page.table("memory", present(st, mcols), "Memory per size around the timed calls (median over repeats).")
        if st[["encode_j_per_mp", "decode_j_per_mp"]].notna().any().any():
            page.table("energy", present(st, ["codec", "platform", "size", "encode_j_per_mp", "decode_j_per_mp"]),
                       "Energy per megapixel per size (RAPL, the CPU packages; median over repeats).")
        else:
            page.text("energy", "_Energy per megapixel: not exposed on this platform (RAPL through "
                      "`/sys/class/powercap` is not readable here; see the runs' provenance)._")
        page.figure("sizes", fig_scaling(st, lcs.timings), "Log-log: a slope of 1 is linear in the pixels; "
                    "look at the gap between the solid (whole coding) and dotted (transforms only) lines.")
    fitted = [c for c in ex.columns if c.startswith("exp_") and ex[c].notna().any()] if not ex.empty else []
    if not st.empty and not fitted:  # an exponent needs two sizes: say so instead of a table of blanks
        page.text("exponents", f"_No exponent can be fitted: every codec was measured at {n} size(s) "
                  f"({', '.join(sorted(st['size'].unique()))}), and a slope needs two. The standard profile "
                  "(`make book`) measures kodim01 at a 512² crop, its native 768×512, 1920×1080 and 3840×2160; "
                  "`make run CODEC=HP LIMIT=1 KERNELS=false MACS=false SIZES=crop512,1920x1080,3840x2160` "
                  "measures one codec's._")
    elif not ex.empty:
        cols = [c for c in ["codec", "platform", "sizes", "mpx_range", "exp_encode_total", "exp_decode_total",
                            "exp_encode_network", "exp_decode_network", "exp_working_encode", "exp_working_decode"]
                if c in ex.columns]
        page.table("exponents", present(ex, cols[:6]), "Fitted exponents of time in megapixels.")
        if len(cols) > 6:
            page.table("exponents", present(ex, cols[:2] + cols[6:]), "Fitted exponents of the transforms' time "
                       "and of the working memory.")
    if not first.empty:
        page.table("first", present(first, ["codec", "size", "image", "direction", "first_over_median",
                                            "max_over_min", "repeats"]),
                   "Items measured without a warm-up: the first repeat over the median (near 1: the warm-up would "
                   "have bought nothing).")
    else:
        page.text("first", "_No item was measured without a warm-up and more than one repeat._")
    page.write(downloads_dir, tables)
    return page
