"""Chapter "FLOPs versus runtime": does counting MACs tell which codec is faster? kMAC/px against the
measured time per platform, correlations, the pairs MACs order wrongly, rank flips between
platforms, and a roofline (each stage's achieved MAC rate against the machine's matmul peak)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.instrument import StageKind
from . import style
from .page import Page
from .ranking import inversions
from .study import load, lowest_quality
from .columns import present

TITLE = "FLOPs versus runtime"


def common_image_times(main: pd.DataFrame) -> pd.DataFrame:
    """Median total time per codec (lowest quality measured), platform and direction, over the images
    that every platform on the same machine measured — so a 4-image 1-thread pass is compared with the
    same 4 images of the all-threads run, not with 24."""
    t = lowest_quality(main[main.stage == "total"])
    if t.empty:
        return t
    out = []
    for cpu, h in t.groupby(["cpu_model", "device"], sort=False):
        per = h.groupby("platform").image.apply(set)
        common = set.intersection(*per.tolist())
        h = h[h.image.isin(common)].assign(mpx=lambda x: x.height * x.width / 1e6)
        g = h.groupby(["codec", "quality", "platform", "device", "threads", "direction"], as_index=False).agg(
            seconds=("seconds", "median"), images=("image", "nunique"), mpx=("mpx", "mean"),
            **({"drift_sd": ("drift_sd", "median")} if "drift_sd" in h else {}))
        out.append(g)
    g = pd.concat(out, ignore_index=True)
    g["mpx_per_s"] = g.mpx / g.seconds
    return style.sort_codecs(g, then=["platform", "direction"])


def with_kmac(times: pd.DataFrame, cx: pd.DataFrame) -> pd.DataFrame:
    """Add each codec's kMAC/px (the size-independent count) to each row."""
    if cx.empty:
        return times.assign(kmac_per_px=np.nan)
    c = cx[(cx.stage == "total")].groupby(["codec", "quality", "direction"], as_index=False).kmac_per_px.median()
    return times.merge(c, on=["codec", "quality", "direction"], how="left")


def correlations(t: pd.DataFrame) -> pd.DataFrame:
    """Pearson on log values and Spearman on ranks of kMAC/px vs seconds, per platform and direction."""
    from scipy.stats import pearsonr, spearmanr

    rows = []
    for (plat, d), h in t.dropna(subset=["kmac_per_px"]).groupby(["platform", "direction"], sort=False):
        if len(h) >= 3:
            r, _ = pearsonr(np.log(h.kmac_per_px), np.log(h.seconds))
            rho, p = spearmanr(h.kmac_per_px, h.seconds)
            rows.append({"platform": plat, "direction": d, "codecs": len(h), "images": int(h.images.min()),
                         "pearson_log": float(r), "spearman": float(rho), "spearman_p": float(p)})
    return pd.DataFrame(rows, columns=["platform", "direction", "codecs", "images", "pearson_log", "spearman",
                                       "spearman_p"])


def ranks(t: pd.DataFrame) -> pd.DataFrame:
    """Rank of each codec by median time (1 = fastest) per platform and direction, beside its rank by
    kMAC/px (what FLOPs alone would predict)."""
    r = t.copy()
    r["rank_time"] = r.groupby(["platform", "direction"]).seconds.rank(method="min").astype("Int64")  # blank: an all-contended codec
    r["rank_kmac"] = r.groupby(["platform", "direction"]).kmac_per_px.rank(method="min")
    return r[["codec", "quality", "direction", "platform", "seconds", "rank_time", "kmac_per_px", "rank_kmac"]]


def mac_flips(t: pd.DataFrame) -> pd.DataFrame:
    """Codec pairs whose order by kMAC/px is the opposite of their order by time, per platform and
    direction, with both ratios, and whether the time ratio is within the uncertainty across runs (the
    platform's between-run component: two codecs' runs, :func:`lcstudy.core.drift.between_half`)."""
    from ..core.drift import between_half, within_uncertainty

    rows = []
    for (plat, d), h in t.dropna(subset=["kmac_per_px"]).groupby(["platform", "direction"], sort=False):
        h = h.set_index("codec")
        codecs = list(h.index)
        for i, a in enumerate(codecs):
            for b in codecs[i + 1:]:
                ka, kb = h.loc[a, "kmac_per_px"], h.loc[b, "kmac_per_px"]
                ta, tb = h.loc[a, "seconds"], h.loc[b, "seconds"]
                if (ka - kb) * (ta - tb) < 0:
                    more, fewer = (a, b) if ka > kb else (b, a)
                    rows.append({"platform": plat, "direction": d, "more_macs": more, "fewer_macs": fewer,
                                 "mac_ratio": h.loc[more, "kmac_per_px"] / h.loc[fewer, "kmac_per_px"]
                                 if h.loc[fewer, "kmac_per_px"] > 0 else float("nan"),
                                 "time_ratio": h.loc[more, "seconds"] / h.loc[fewer, "seconds"]})
                    sd = float(h.drift_sd.median()) if "drift_sd" in h and h.drift_sd.notna().any() else 0.0
                    u = between_half(1.0, sd)
                    rows[-1].update(ratio_uncertainty_pct=100 * u,
                                    within_uncertainty=within_uncertainty(rows[-1]["time_ratio"], u))
    return pd.DataFrame(rows, columns=["platform", "direction", "more_macs", "fewer_macs", "mac_ratio", "time_ratio",
                                       "ratio_uncertainty_pct", "within_uncertainty"])


def roofline(main: pd.DataFrame, cx: pd.DataFrame) -> pd.DataFrame:
    """Achieved GMAC/s of each stage = its MACs (counted at the run's image size) / its median time, and
    the fraction of the platform's peak (the best float32 matmul measured by its runs, MAC = 2 FLOPs).

    A fraction near the matmul's says the stage is arithmetic-bound; far below says its time goes
    elsewhere: memory traffic, the per-position Python loop, the rANS coder."""
    if main.empty or cx.empty or "peak_matmul_gflops" not in main.columns:
        return pd.DataFrame()
    d = main[main.stage_kind == StageKind.PARTITION]
    c = cx[(cx.stage_kind == StageKind.PARTITION) & (cx.macs > 0)][["run_id", "direction", "stage", "height", "width", "gmac"]] \
        .drop_duplicates(["run_id", "direction", "stage"])
    m = d.merge(c, on=["run_id", "direction", "stage"], suffixes=("", "_counted"))
    m = m[(m.height * m.width) == (m.height_counted * m.width_counted)]
    if m.empty:
        return pd.DataFrame()
    peaks = d.groupby("platform").peak_matmul_gflops.max().rename("peak_gflops")
    g = m.groupby(["codec", "quality", "platform", "direction", "stage"], as_index=False).agg(
        seconds=("seconds", "median"), gmac=("gmac", "first"), images=("image", "nunique"))
    g = g.merge(peaks.reset_index(), on="platform", how="left")
    g["achieved_gmac_s"] = g.gmac / g.seconds
    g["peak_gmac_s"] = g.peak_gflops / 2
    g["fraction_of_peak_pct"] = 100 * g.achieved_gmac_s / g.peak_gmac_s
    return style.sort_codecs(g.drop(columns="peak_gflops"), then=["platform", "direction", "stage"])


def fig_scatter(t: pd.DataFrame, df):
    plt = style.setup()
    plats = list(dict.fromkeys(t.platform))
    fig, axes = plt.subplots(1, 2, figsize=(style.FIG_WIDTH, 3.6))
    markers = "os^Dv"
    for ax, d in zip(axes, ("encode", "decode")):
        for j, p in enumerate(plats):
            g = t[(t.platform == p) & (t.direction == d)].dropna(subset=["kmac_per_px"])
            for _, r in g.iterrows():
                ax.scatter(r.kmac_per_px, r.seconds, color=style.codec_color(r.codec), marker=markers[j % 5], s=36,
                           label=r.codec if j == 0 else None, zorder=3)
            if j == 0:  # each codec named once, beside its point on the first platform
                style.label_points(ax, g.kmac_per_px, g.seconds, g.codec, colors=[style.codec_color(c)
                                                                                  for c in g.codec])
        ax.set(xscale="log", yscale="log", xlabel=f"{d}r kMAC per pixel", ylabel="seconds per image (median)",
               title=d)
        ax.margins(0.15)
    if len(plats) > 1:
        from matplotlib.lines import Line2D

        style.legend_above(fig, [Line2D([], [], ls="", marker=markers[j % 5], color="k") for j in range(len(plats))],
                           plats, ncol=1, title="platform (codecs named on the first)")
    return style.finish(fig, style.title("MACs per pixel against time", df))


def fig_slope(rk: pd.DataFrame, df):
    plt = style.setup()
    fig, axes = plt.subplots(1, 2, figsize=(style.FIG_WIDTH, 3.6))
    for ax, d in zip(axes, ("encode", "decode")):
        g = rk[rk.direction == d]
        plats = list(dict.fromkeys(g.platform))
        cols = ["by kMAC/px"] + [p.replace(", ", "\n", 1) for p in plats]
        ends = []
        for c, h in g.groupby("codec", sort=False):
            ys = [h.rank_kmac.iloc[0]] + [h[h.platform == p].rank_time.iloc[0] if (h.platform == p).any() else np.nan
                                          for p in plats]
            ax.plot(range(len(cols)), ys, marker="o", color=style.codec_color(c), label=c)
            ends.append((len(cols) - 1, ys[-1], c))
        # every line named at its right end (ties: the labels move apart, with a leader line)
        style.label_points(ax, [e[0] for e in ends], [e[1] for e in ends], [e[2] for e in ends],
                           colors=[style.codec_color(e[2]) for e in ends])
        ax.set_xticks(range(len(cols)), cols, fontsize=7)
        ax.set(ylabel="rank (1 = fewest MACs / fastest)", title=d, xlim=(-0.2, len(cols) - 0.1 + 0.9))
        ax.set_ylim(g[["rank_kmac", "rank_time"]].max().max() + 0.7, 0.3)
    return style.finish(fig, style.title("Codec ranks by kMAC/px and by time", df))


def fig_roofline(rf: pd.DataFrame, df):
    if rf.empty or rf.fraction_of_peak_pct.isna().all():
        return None
    plt = style.setup()
    plats = list(dict.fromkeys(rf.platform))
    # one full-width panel per platform and direction, stacked: every codec's name fits under its bars
    panels = [(p, d) for p in plats for d in ("encode", "decode")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(style.FIG_WIDTH, 2.4 * len(panels) + 0.6), squeeze=False)
    stages = style.ordered_stages(rf.stage)
    for ax, (p, d) in zip(axes[:, 0], panels):
        g = rf[(rf.platform == p) & (rf.direction == d)]
        w = g.pivot_table(index="codec", columns="stage", values="fraction_of_peak_pct")
        w = w.reindex([c for c in style.codec_order() if c in w.index])[[s for s in stages if s in w.columns]]
        w.plot.bar(ax=ax, color=style.stage_colors(w.columns), legend=False, width=0.8, rot=0)
        ax.set_yscale("log")
        ax.axhline(100, color="k", lw=0.8, ls="--")
        ax.set(xlabel="", ylabel="of the matmul peak (%)", title=f"{d} · {p}")
    style.legend_above(fig, title="stage")
    return style.finish(fig, style.title("Achieved MAC rate of each stage against the matmul peak", df))


def findings(page: Page, t: dict) -> None:
    from .findings import drift_clause, fact

    corr, fl = t["correlation"], t["mac_flips"]
    for plat in style.main_platforms(t["times"])[:2]:
        row = corr[(corr.platform == plat) & (corr.direction == "decode")]
        if not len(row):
            continue
        w = {"platform": plat, "direction": "decode"}
        flips = fl[(fl.platform == plat) & (fl.direction == "decode")]
        page.findings.add("On {plat}, decoder kMAC/px and decode time have a Spearman ρ of {rho} over {n} codecs "
                          "(Pearson on logs: {r})" + (", and {k} pairs of codecs are in the opposite order by MACs "
                                                      "and by time." if len(flips) else "."),
                          plat=plat, rho=fact(t, "correlation", w, "spearman"), n=fact(t, "correlation", w, "codecs",
                                                                                      "int"),
                          r=fact(t, "correlation", w, "pearson_log"),
                          k=fact(t, "correlation", w, "pairs_reversed", "int"))
        if len(flips):
            r = flips.sort_values("time_ratio").iloc[0]
            from ..core.codec_sources import get_spec

            fam = {c: get_spec(c).family for c in (r.more_macs, r.fewer_macs)}
            why = (" {a}'s context model runs in parallel passes, {b}'s in a sequential loop over the latent "
                   "positions." if fam[r.more_macs] == "latent_codec" and fam[r.fewer_macs] == "autoregressive" else "")
            w2 = {"platform": plat, "direction": "decode", "more_macs": r.more_macs, "fewer_macs": r.fewer_macs}
            page.findings.add("{a} has {m} {b}'s decoder MACs but takes {tr} its decode time on {plat}"
                              + drift_clause(r) + why,
                              a=r.more_macs, b=r.fewer_macs, plat=plat, m=fact(t, "mac_flips", w2, "mac_ratio", "x"),
                              tr=fact(t, "mac_flips", w2, "time_ratio", "x"),
                              u=fact(t, "mac_flips", w2, "ratio_uncertainty_pct", "pct"))
        break
    pf = t["platform_flips"]
    if t["times"].platform.nunique() < 2:
        page.findings.missing("One platform only: the standard profile adds a single-thread CPU pass (`make book`), "
                              "and a GPU host adds its own, to see which codec pairs change order between platforms.")
    elif len(pf):
        page.findings.add("Codec pairs whose order flips between platforms: {pairs}.",
                          pairs="; ".join(f"{r.pair} ({r.direction}, {r.a} vs {r.b})" for r in pf.itertuples()))
    else:
        page.findings.add("No codec pair changes order between the platforms measured.")
    rf = t["roofline"]
    if not rf.empty:
        from ..core.codec_sources import get_spec

        def serial(c):  # the sequential autoregressive loop (not ELIC's or CKBD's parallel passes)
            try:
                return get_spec(c).family == "autoregressive"
            except Exception:  # noqa: BLE001 - a codec no longer registered here
                return False

        # per stage: the decode closest to the peak (the synthesis transform; the serial entropy decoding of y)
        for stage, text in (("g_s", "The synthesis transform closest to the float32 matmul peak is {c}'s, at {f} "
                                    "of it on {plat}."),
                            ("ADy", "No serial autoregressive codec's entropy decoding of y reaches more than {f} of "
                                    "the peak ({c} on {plat}): its time goes to the loop and the coder, not to "
                                    "arithmetic.")):
            g = rf[(rf.stage == stage) & (rf.direction == "decode")].dropna(subset=["fraction_of_peak_pct"])
            if stage == "ADy":
                g = g[g.codec.map(serial)]
            if len(g):
                best = g.loc[g.fraction_of_peak_pct.idxmax()]
                w = {"codec": best.codec, "quality": best.quality, "platform": best.platform,
                     "direction": "decode", "stage": stage}
                if stage == "g_s" and best.fraction_of_peak_pct > 100:
                    # a reader takes "peak" for a ceiling; the convolution library can beat the matrix product
                    # (no number of its own: every number in a finding is a cell of a table, test_book checks)
                    text += (" Beyond the peak: its convolutions run faster than the float32 matrix product that "
                             "sets it, so the peak is a reference rate measured here, not a ceiling.")
                page.findings.add(text, c=best.codec, plat=best.platform,
                                  f=fact(t, "roofline", w, "fraction_of_peak_pct", "pct"))


def build(results_dir, reference=None, downloads_dir=None) -> Page:
    st = load(results_dir)
    page = Page("flops_runtime")
    times = with_kmac(common_image_times(st.main), st.complexity) if not st.main.empty else pd.DataFrame()
    if times.empty:
        return page.nothing_yet("No results yet: `make runs`.",
                                "No learned-codec runs yet: `make runs` measures them.", downloads_dir)
    corr = correlations(times)
    rk = ranks(times)
    flips = mac_flips(times)
    corr["pairs_reversed"] = [int(((flips.platform == p) & (flips.direction == d)).sum())
                              for p, d in zip(corr.platform, corr.direction)]
    pflips = inversions(times.assign(source=times.platform), "platform", "seconds")
    rf = roofline(st.main, st.complexity)
    tables = {"times": times, "correlation": corr, "ranks": rk, "mac_flips": flips, "platform_flips": pflips,
              "roofline": rf}
    findings(page, tables)
    plats = list(dict.fromkeys(times.platform))
    page.header = (f"Platforms: {'; '.join(plats)}; weights: **{st.weights}**. Each codec at its lowest quality; "
                   "time = median over the images that every platform of a machine measured "
                   f"({', '.join(str(n) for n in sorted(times.images.unique()))} images).\n\n"
                   + style.weights_banner(st.main))
    page.table("times", present(times, ["codec", "platform", "direction", "kmac_per_px", "seconds", "mpx_per_s",
                                        "images"]), "kMAC per pixel beside the measured time and throughput.")
    page.figure("times", fig_scatter(times, st.main), "Each point is a codec; if MACs predicted time the points "
                "would lie on a rising line — look for the context codecs far above it.")
    page.table("correlation", present(corr, ["platform", "direction", "codecs", "pearson_log", "spearman",
                                             "spearman_p"]), "Correlation of kMAC/px with time per platform.")
    page.figure("ranks", fig_slope(rk, st.main), "Ranks by MACs (left column) and by time on each platform: a line "
                "that crosses another is a pair whose order depends on where, or whether, you measure.")
    if not flips.empty:
        page.table("ranks", present(flips, ["platform", "direction", "more_macs", "fewer_macs", "mac_ratio",
                                            "time_ratio"]), "Pairs that MACs order the wrong way round.")
    if not rf.empty:
        # the chart answers the table's question (which stages are arithmetic-bound) at a glance; its rows
        # (one per codec, platform, direction and stage) are in the downloads
        page.figure("roofline", fig_roofline(rf, st.main), "Bars near the dashed line are arithmetic-bound; the "
                    "entropy-coding stages sit orders of magnitude below it.")
        page.text("roofline", f"The {len(rf)} rows behind the chart (each stage's MACs, median time, achieved "
                  "GMAC/s and share of the peak) are the table `lcstudy_flops_runtime_roofline.csv` on the "
                  "{doc}`Data <data>` page.")
    page.write(downloads_dir, tables)
    return page
