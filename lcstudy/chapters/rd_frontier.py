"""Chapter "The RD-complexity frontier": rate-distortion (CompressAI's published pretrained results, the
RD points it quotes for CKBD and ELIC, ours where a run used real weights) and BD-rate against HEVC
intra — the published BPG/x265 anchor and our own x265 measurement — beside decoder kMAC/px and
our decode time; the Pareto frontier over each."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import style
from .page import Page
from .published import rd_points, standard_rd_points
from .study import load
from .style import X265_OURS, X265_PUBLISHED
from .columns import present

TITLE = "The RD-complexity frontier"


def bd_rates_both(rd: pd.DataFrame) -> pd.DataFrame:
    """BD-rate against the published BPG/x265 anchor and, where measured, against our own x265."""
    out = bd_rates(rd[rd.codec != X265_OURS])
    if (rd.codec == X265_OURS).sum() >= 2:
        ours = bd_rates(rd[rd.codec != X265_PUBLISHED], anchor=X265_OURS).rename(
            columns={"bd_rate_vs_x265_pct": "bd_rate_vs_x265_ours_pct"})
        out = out.merge(ours[["codec", "source", "bd_rate_vs_x265_ours_pct"]], on=["codec", "source"], how="outer")
        ref = bd_rates(rd[rd.codec.isin([X265_PUBLISHED, X265_OURS])], anchor=X265_PUBLISHED)
        out = pd.concat([out, ref], ignore_index=True).drop_duplicates(["codec", "source"])
    else:
        out["bd_rate_vs_x265_ours_pct"] = float("nan")
    return out


def bd_rates(rd: pd.DataFrame, anchor: str = X265_PUBLISHED) -> pd.DataFrame:
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
    c = cx[(cx.stage == "total") & (cx.direction == "decode")] if not cx.empty else pd.DataFrame(
        columns=["codec", "kmac_per_px", "width", "height"])
    kmac = c.groupby("codec").kmac_per_px.agg(["min", "max"]).rename(
        columns={"min": "dec_kmac_px_min", "max": "dec_kmac_px_max"})
    from ..runs.tidy import main_rows

    m = main_rows(df, all_threads=False)
    # the main size (the same images as the standard codecs), each codec at its lowest quality measured, on the
    # main CPU platform (the standard codecs' too)
    cpu = [p for p in style.main_platforms(m) if "(CUDA)" not in p]
    t = m[(m.stage == "total") & (m.direction == "decode") & (m.platform == (cpu[0] if cpu else None))]
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
        h = cpu[0] if cpu and cpu[0] in set(std.platform) else sorted(std.platform.unique())[0]
        sd = std[(std.platform == h) & (std.direction == "decode")].groupby("codec").seconds.median()
        from .published import ours_label

        sd.index = sd.index.map(ours_label)
        fill = out.codec.map(sd)
        out["decode_seconds_cpu"] = out.decode_seconds_cpu.fillna(fill)
        out["threads"] = out.threads.where(fill.isna(), int(std.threads.iloc[0]))
    out = style.sort_codecs(out)
    # on a frontier: True/False where both axes are known, blank where a codec could not be judged
    ok = out.dropna(subset=["bd_rate_vs_x265_pct", "dec_kmac_px_min"])
    out["frontier_kmac"] = pd.Series(None, index=out.index, dtype=object)
    out.loc[ok.index, "frontier_kmac"] = frontier(ok, "dec_kmac_px_min")
    ok = out.dropna(subset=["bd_rate_vs_x265_pct", "decode_seconds_cpu"])
    out["frontier_time"] = pd.Series(None, index=out.index, dtype=object)
    out.loc[ok.index, "frontier_time"] = frontier(ok, "decode_seconds_cpu")
    return out


def thin_data(rd: pd.DataFrame) -> str:
    """A caveat where our own RD curves rest on less than the published ones (crops, few images, few
    points), or "" where they do not."""
    ours = rd[rd.source.str.startswith("ours (") & rd.source.str.contains("images")]  # our standard codecs
    thin = ours[ours.source.str.contains("crops") | ~ours.source.str.contains("24 images")]
    if thin.empty:
        return ""
    pts = thin.groupby("codec").size()
    return (f"Our own curves ({', '.join(sorted(thin.codec.unique()))}) rest on {thin.source.iloc[0][6:-1]} at "
            f"{pts.min()}–{pts.max()} points each, the published ones on the 24 full-size Kodak images: their "
            "BD-rates are indicative only (a BD-rate integrates over the bitrate range both curves share; with "
            "few points, or crops, it can be off by tens of percent). The standard profile (`make book`) "
            "measures the 24 full images.")


def fig_frontier(rd: pd.DataFrame, t: pd.DataFrame, df):
    plt = style.setup()
    # the RD curves across the top (their legend beside them), BD-rate against complexity below
    fig = plt.figure(figsize=(style.FIG_WIDTH, 6.4))
    axes = [fig.add_subplot(2, 1, 1), fig.add_subplot(2, 2, 3), fig.add_subplot(2, 2, 4)]
    for (c, src), g in rd.groupby(["codec", "source"], sort=False):
        g = g.sort_values("bpp")
        standard = c not in style.codec_order()
        label = c if src.startswith(("CompressAI", "quoted")) or standard else f"{c} ({src})"
        axes[0].plot(g.bpp, g.psnr, marker="s" if standard else "o", ms=2.5, label=label,
                     color="#000000" if c == X265_PUBLISHED else style.codec_color(c),
                     ls=":" if c == X265_PUBLISHED else ("--" if standard else "-"), lw=1)
    ours = rd[rd.source.str.startswith("ours (") & rd.source.str.contains("images")]
    rests = f"; ours: {ours.source.iloc[0][6:-1]}" if len(ours) else ""
    axes[0].set(xlabel="bits per pixel", ylabel="PSNR RGB (dB)", xlim=(0, 2.0),
                title=f"RD on Kodak (published: 24 full images{rests}); dashed: standard codecs")
    style.legend_outside(axes[0], ncol=2, fontsize=6.5)
    for ax, x, title_, short in ((axes[1], "dec_kmac_px_min", "decoder kMAC per pixel", "BD-rate vs decoder MACs"),
                                 (axes[2], "decode_seconds_cpu", "our decode time on CPU (s)",
                                  "BD-rate vs our CPU decode time")):
        ok = t.dropna(subset=[x, "bd_rate_vs_x265_pct"]) if x in t else t.iloc[:0]
        if ok.empty:  # nothing measured that can be placed: say so instead of an empty log axis
            ax.text(0.5, 0.5, "no codec with both values", ha="center", va="center", transform=ax.transAxes)
            ax.set(xlabel=title_, title=short)
            continue
        for _, r in ok.iterrows():
            ax.scatter(r[x], r.bd_rate_vs_x265_pct, color=style.codec_color(r.codec), s=28, zorder=3,
                       marker="o" if r.codec in style.codec_order() else "s")
        style.label_points(ax, ok[x], ok.bd_rate_vs_x265_pct, ok.codec.str.replace(" (ours)", "", regex=False),
                           colors=[style.codec_color(c) for c in ok.codec])
        # .loc and a bool Series: an empty object column would otherwise select columns, not rows
        f = ok.loc[ok["frontier_kmac" if "kmac" in x else "frontier_time"].astype(bool)].sort_values(x)
        ax.step(f[x], f.bd_rate_vs_x265_pct, where="post", color="k", lw=0.8)
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set(xscale="log", xlabel=title_, ylabel="BD-rate vs x265 (%)", title=short)
        ax.margins(0.12)
    return style.finish(fig, style.title("Rate-distortion and complexity (black step: the frontier)", df))


def findings(page: Page, t: dict) -> None:
    from .findings import fact

    b = t["bd_rate_complexity"]
    learned = b[b.codec.isin(style.codec_order()) & b.bd_rate_vs_x265_pct.notna()]
    if learned.empty:
        page.findings.missing("No BD-rates: the reference data is missing (`make data`).")
        return
    best = learned.loc[learned.bd_rate_vs_x265_pct.idxmin()]
    w = {"codec": best.codec, "source": best.source}
    ours = pd.notna(best.get("bd_rate_vs_x265_ours_pct"))
    page.findings.add("{c} has the lowest BD-rate of the learned codecs, {bd} against the published x265 (BPG) anchor"
                      + (", {bo} against our own x265 measurement" if ours else "") + " (negative: fewer bits).",
                      c=best.codec, bd=fact(t, "bd_rate_complexity", w, "bd_rate_vs_x265_pct", "pct"),
                      **({"bo": fact(t, "bd_rate_complexity", w, "bd_rate_vs_x265_ours_pct", "pct")} if ours else {}))
    fk = learned[learned.frontier_kmac.astype(bool)].sort_values("dec_kmac_px_min")
    if len(fk):
        parts, facts = [], {}
        for i, r in enumerate(fk.itertuples()):
            w = {"codec": r.codec, "source": r.source}
            facts[f"k{i}"] = fact(t, "bd_rate_complexity", w, "dec_kmac_px_min")
            facts[f"b{i}"] = fact(t, "bd_rate_complexity", w, "bd_rate_vs_x265_pct", "pct")
            facts[f"c{i}"] = r.codec
            parts.append(f"{{c{i}}} ({{k{i}}} kMAC/px, {{b{i}}})")
        page.findings.add("On the frontier of BD-rate against decoder MACs: " + ", ".join(parts) + ".", **facts)
    ft = b[b.frontier_time.astype(bool)].sort_values("decode_seconds_cpu")
    if len(ft):
        names = {f"n{i}": c for i, c in enumerate(ft.codec)}
        page.findings.add("On the frontier of BD-rate against our CPU decode time: "
                          + ", ".join(f"{{{k}}}" for k in names) + ".", **names)
    x = b[b.codec == X265_OURS]
    if len(x) and pd.notna(x.bd_rate_vs_x265_pct.iloc[0]):
        w = {"codec": X265_OURS, "source": x.source.iloc[0]}
        more = x.bd_rate_vs_x265_pct.iloc[0] > 0
        page.findings.add("Our x265 (HEIC through pillow-heif, {chroma}) has a BD-rate of {bd} against the published "
                          "BPG points (" + ("more" if more else "fewer") + " bits at equal PSNR): libheif's x265 "
                          "settings and colour path are not BPG's, which is why both anchors are given.",
                          chroma="4:4:4", bd=fact(t, "bd_rate_complexity", w, "bd_rate_vs_x265_pct", "pct"))
    else:
        page.findings.missing("No x265 measurement of ours yet: the `standard-codecs` run (`make runs`) adds the "
                              "second anchor.")


def short_source(source: str) -> str:
    """The table's source column in a word or two (the full text, with the paper's name or the images and crops
    our curves rest on, is in the download and in the caption): 'CompressAI', 'paper', 'ours'. Why: the full
    phrases wrapped every row to four lines."""
    s = str(source)
    if s.startswith("CompressAI published"):
        return "CompressAI"
    if s.startswith("quoted from the paper ("):
        return "paper"
    return "ours" if s.startswith("ours") else s


def _papers(t: pd.DataFrame) -> str:
    """The caption's words for the rows whose source is 'paper': which RD points CompressAI quotes for whom."""
    q = t[t.source.astype(str).str.startswith("quoted from the paper (")]
    if q.empty:
        return ""
    names = ", ".join(f"{c} ({str(s)[len('quoted from the paper ('):].rstrip(')')})" for c, s in zip(q.codec, q.source))
    return f" *paper*: the RD points CompressAI quotes from the paper: {names}."


def build(results_dir, reference=None, downloads_dir=None) -> Page:
    st = load(results_dir)
    page = Page("rd_frontier")
    df, cx, std = st.main, st.complexity, st.standard
    rd = pd.concat([rd_points(reference, df), standard_rd_points(std)], ignore_index=True)
    t = rd_complexity(reference, df, cx, std) if not df.empty else pd.DataFrame()
    tables = {"rd_points": rd, "bd_rate_complexity": t}
    if not t.empty:
        findings(page, tables)
    page.header = ("Rate-distortion is *published* (CompressAI's pretrained results; CKBD and ELIC from the RD "
                   "points CompressAI quotes from their papers); complexity is ours (MACs counted, decode time "
                   f"measured with **{st.weights}** weights — its entropy-decoding part depends on the weights). "
                   "BD-rate: the `bjontegaard` package, Akima interpolation.\n\n" + style.weights_banner(df))
    if not t.empty:
        page.table("table", present(t.assign(source=t.source.map(short_source)), ["codec", "source", "bd_rate_vs_x265_pct", "bd_rate_vs_x265_ours_pct",
                                        "dec_kmac_px_min", "decode_seconds_cpu", "frontier_kmac", "frontier_time"]),
                   "BD-rate against both x265 anchors beside decoder MACs and our decode time; ✓ marks the "
                   "Pareto frontier." + _papers(t) + (" " + thin_data(rd) if thin_data(rd) else ""))
        page.figure("figure", fig_frontier(rd, t, df), "Top, the RD curves; below, each codec's BD-rate against "
                    "its complexity (decoder MACs, left; our decode time, right): codecs on the black step are not "
                    "beaten on both axes by any other.")
    page.write(downloads_dir, tables)
    return page
