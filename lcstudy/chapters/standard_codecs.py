"""Chapter "Learned versus standard codecs": JPEG, JPEG 2000, WebP, AVIF, HEVC intra (x265) and JPEG XL
measured in the same harness (the ``standard-codecs`` run of each platform), and the learned codecs
set against them at a matched bitrate, the way l3ic reports "N× slower than JPEG"."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import style
from .page import Page
from .published import rd_points
from .study import load
from .columns import present

TITLE = "Learned versus standard codecs"


def standard_summary(std: pd.DataFrame) -> pd.DataFrame:
    """Per platform, codec and sweep value: mean bpp/PSNR/MS-SSIM over images, median time and
    median seconds per megapixel (over images of each image's median over repeats)."""
    s = std.assign(s_per_mpx=std.seconds / (std.height * std.width / 1e6))
    g = s.groupby(["platform", "codec", "knob", "value", "direction"], as_index=False).agg(
        bpp=("bpp", "mean"), psnr=("psnr", "mean"), ms_ssim=("ms_ssim", "mean"), seconds=("seconds", "median"),
        s_per_mpx=("s_per_mpx", "median"), images=("image", "nunique"), noisy_share=("noisy", "mean"),
        threading=("threading", "first"))
    return g


def standard_at_bpp(summary: pd.DataFrame, bpp: float = 0.5) -> pd.DataFrame:
    """Seconds per megapixel of each standard codec at ``bpp``: log-linear interpolation of
    s/Mpx in log(bpp) between the two sweep points around it (``note`` says where it had to
    take the nearest point instead)."""
    rows = []
    for (host, codec, d), g in summary.groupby(["platform", "codec", "direction"]):
        g = g.sort_values("bpp")
        lo, hi = g[g.bpp <= bpp].tail(1), g[g.bpp >= bpp].head(1)
        if len(lo) and len(hi):
            b0, b1 = float(lo.bpp.iloc[0]), float(hi.bpp.iloc[0])
            t0, t1 = float(lo.s_per_mpx.iloc[0]), float(hi.s_per_mpx.iloc[0])
            w = 0.0 if b1 == b0 else (np.log(bpp) - np.log(b0)) / (np.log(b1) - np.log(b0))
            v, note = float(np.exp(np.log(t0) + w * (np.log(t1) - np.log(t0)))), \
                f"interpolated between settings {lo.value.iloc[0]} and {hi.value.iloc[0]}"
            p0, p1 = float(lo.psnr.iloc[0]), float(hi.psnr.iloc[0])
            psnr = p0 + w * (p1 - p0)
        else:
            near = g.iloc[(g.bpp - bpp).abs().argsort()[:1]]
            v, psnr = float(near.s_per_mpx.iloc[0]), float(near.psnr.iloc[0])
            note = f"nearest point {near.value.iloc[0]} at {near.bpp.iloc[0]:.3f} bpp (sweep does not reach {bpp})"
        rows.append({"platform": host, "codec": codec, "direction": d, "s_per_mpx": v, "psnr_at_bpp": psnr,
                     "how": note, "codec_type": "standard"})
    return pd.DataFrame(rows)


def learned_at_bpp(df: pd.DataFrame, rd: pd.DataFrame, bpp: float = 0.5) -> pd.DataFrame:
    """Seconds per megapixel of each learned codec at ``bpp``.

    Which quality gives ``bpp`` comes from the *published* RD points (pretrained weights;
    with random weights our own bitrate means nothing); complexity depends on the quality only
    through the channel configuration, so the time is our measurement of the lowest quality
    of that configuration (``measured_q``), where we have one, else of the nearest measured one
    (``how`` says so).
    """
    from ..core.codec_sources import get_spec
    from ..runs.tidy import main_rows

    m = main_rows(df, all_threads=False)
    t = m[(m.stage == "total")].assign(s_per_mpx=lambda x: x.seconds / (x.height * x.width / 1e6))
    rows = []
    for (host, codec, dev, thr), g in t.groupby(["platform", "codec", "device", "threads"]):
        pts = rd[(rd.codec == codec) & ~rd.source.str.startswith("ours")].sort_values("bpp")
        if pts.empty:
            continue
        near = pts.iloc[(pts.bpp - bpp).abs().argsort()[:1]]
        q_rd = int(near.quality.iloc[0])
        spec = get_spec(codec)
        cfg = spec.args.get(q_rd, spec.args[spec.qualities[0]])
        same = [q for q in sorted(g.quality.unique()) if spec.args.get(q) == cfg]
        if same:
            mq, how = same[0], f"published q{q_rd} at {near.bpp.iloc[0]:.3f} bpp; same channels as measured q{same[0]}"
        else:
            mq = min(g.quality.unique(), key=lambda q: abs(q - q_rd))
            how = (f"published q{q_rd} at {near.bpp.iloc[0]:.3f} bpp; its channel configuration was not measured, "
                   f"q{mq} used instead (different network size)")
        h = g[g.quality == mq]
        for d, hd in h.groupby("direction"):
            rows.append({"platform": host, "codec": codec, "device": dev, "threads": thr, "direction": d,
                         "s_per_mpx": float(hd.s_per_mpx.median()), "psnr_at_bpp": float(near.psnr.iloc[0]),
                         "measured_q": int(mq), "weights": ", ".join(sorted(hd.weights.unique())), "how": how,
                         "codec_type": "learned", "images": hd.image.nunique()})
    return pd.DataFrame(rows, columns=["platform", "codec", "device", "threads", "direction", "s_per_mpx",
                                       "psnr_at_bpp", "measured_q", "weights", "how", "codec_type", "images"])


def speed_vs_standard(learned: pd.DataFrame, standard: pd.DataFrame, refs=("JPEG", "HEVC (x265)"),
                      drift_sd: dict | None = None) -> pd.DataFrame:
    """The l3ic-style table: each learned codec's time per megapixel at the matched bitrate, and
    how many times slower it is than each reference standard codec on the same platform; with the
    platform's between-run spread (``drift_sd``: platform → sd), the uncertainty across runs of those
    ratios (``ratio_uncertainty_pct``: each side's between-run half-width, :func:`lcstudy.core.drift.between_half`,
    in their quadratic mean)."""
    if learned.empty or standard.empty:
        return pd.DataFrame()
    w = learned.pivot_table(index=["platform", "codec", "device", "threads", "measured_q", "weights"],
                            columns="direction", values="s_per_mpx").reset_index()
    for ref in refs:
        r = standard[standard.codec == ref].pivot_table(index="platform", columns="direction", values="s_per_mpx")
        if r.empty:
            continue
        for d in ("encode", "decode"):
            if d in w and d in r:
                w[f"{d}_x_{ref.split()[0].lower()}"] = w[d] / w.platform.map(r[d])
    w = w.rename(columns={"encode": "encode_s_per_mpx", "decode": "decode_s_per_mpx"})
    if drift_sd:
        from ..core.drift import between_half

        w["ratio_uncertainty_pct"] = [100 * between_half(1.0, drift_sd.get(p, 0.0)) for p in w.platform]
    return style.sort_codecs(w, then=["platform"])




def fig_side_by_side(summary: pd.DataFrame, rd: pd.DataFrame, stdb: pd.DataFrame, learned: pd.DataFrame, bpp: float,
                     std: pd.DataFrame, df: pd.DataFrame):
    plt = style.setup()
    # the RD curves on top (their legend beside them), the time at the matched bitrate below
    fig, axes = plt.subplots(2, 1, figsize=(style.FIG_WIDTH, 7.0), height_ratios=(1, 1.1))
    e = summary[summary.direction == "encode"]
    for c, g in e.groupby("codec", sort=False):
        g = g.sort_values("bpp")
        axes[0].plot(g.bpp, g.psnr, marker="s", ms=3, ls="--", lw=1, color=style.codec_color(c), label=f"{c} (ours)")
    pub = rd[rd.source.str.startswith(("CompressAI", "quoted"))]
    for c, g in pub.groupby("codec", sort=False):
        g = g.sort_values("bpp")
        axes[0].plot(g.bpp, g.psnr, marker="o", ms=2.5, lw=1, color=style.codec_color(c), label=f"{c} (published)")
    axes[0].axvline(bpp, color="grey", lw=0.6, ls=":")
    n, crop = std.image.nunique(), std.crop.dropna().unique() if "crop" in std else []
    ours = f"{n} images" + (f", {int(crop[0])}² crops" if len(crop) == 1 else "")
    axes[0].set(xlabel="bits per pixel", ylabel="PSNR RGB (dB)", xlim=(0, 2.0),
                title=f"rate-distortion: ours on {ours} (dashed), published on 24 full Kodak images")
    style.legend_outside(axes[0], ncol=2, fontsize=6.5)
    plat = next((p for p in style.main_platforms(std) if "(CUDA)" not in p), None)
    parts = [stdb[stdb.platform == plat].assign(label=lambda x: x.codec)]
    if not learned.empty:
        parts.append(learned[learned.platform == plat].assign(label=lambda x: x.codec))
    both = pd.concat(parts)
    w = both.pivot_table(index="label", columns="direction", values="s_per_mpx")
    order = [c for c in style.codec_order() + style.STANDARD_ORDER if c in w.index]
    w = w.reindex(order)
    y = np.arange(len(w))
    for d, dy in (("encode", -0.2), ("decode", 0.2)):
        axes[1].barh(y + dy, w.get(d, pd.Series(np.nan, index=w.index)), height=0.4, color=style.color("direction", d),
                     label=d)
    axes[1].set_yticks(y, w.index)
    axes[1].invert_yaxis()
    axes[1].set(xscale="log", xlabel=f"seconds per megapixel at {bpp} bpp (log)", title=f"time at {bpp} bpp on {plat}")
    style.legend_outside(axes[1])
    both = pd.concat([df, std], ignore_index=True)
    return style.finish(fig, style.title("Learned and standard codecs", both))


def findings(page: Page, t: dict, bpp: float, weights: str) -> None:
    from ..core.drift import within_uncertainty
    from .findings import fact

    sp = t["speed"]
    ok = sp.dropna(subset=[c for c in ("decode_x_jpeg",) if c in sp.columns]) if not sp.empty else sp
    if ok.empty or "decode_x_jpeg" not in ok.columns:
        page.findings.missing("No standard-codec run or no learned run at full size on the same CPU yet: `make runs` "
                              "measures both.")
        return
    plat = next((p for p in style.main_platforms(ok) if p in set(ok.platform)), ok.platform.iloc[0])
    s = ok[ok.platform == plat]
    key = lambda r: {"platform": plat, "codec": r.codec, "threads": r.threads}  # noqa: E731
    for ref, col in (("JPEG", "decode_x_jpeg"), ("x265", "decode_x_hevc")):
        g = s.dropna(subset=[col]) if col in s.columns else s.iloc[0:0]
        if len(g) < 1:
            continue
        slow, fast = g.loc[g[col].idxmax()], g.loc[g[col].idxmin()]
        u = fast.get("ratio_uncertainty_pct", float("nan"))
        near = u > 0 and within_uncertainty(fast[col], u / 100)  # the fastest as fast as the reference, given drift
        page.findings.add("At {bpp} on {plat}, the learned decoders take from {lo} ({f}) to {hi} ({sl}) " + ref
                          + "'s decode time" + (f"; {fast.codec}'s ratio is within the uncertainty across runs "
                                                "(±{u}): the machine's drift between the two runs could account for "
                                                "it." if near else "."), bpp=f"{bpp:g} bpp", plat=plat, f=fast.codec,
                          sl=slow.codec, lo=fact(t, "speed", key(fast), col, "x"),
                          hi=fact(t, "speed", key(slow), col, "x"),
                          **({"u": fact(t, "speed", key(fast), "ratio_uncertainty_pct", "pct")} if near else {}))
    g = s.dropna(subset=["encode_x_jpeg"]) if "encode_x_jpeg" in s.columns else s.iloc[0:0]
    if len(g):
        fast = g.loc[g.encode_x_jpeg.idxmin()]
        page.findings.add("The fastest learned encoder, {c}, takes {x} JPEG's encode time at the same bitrate.",
                          c=fast.codec, x=fact(t, "speed", key(fast), "encode_x_jpeg", "x"))
    sb = t["at_bpp_standard"]
    d = sb[(sb.direction == "decode") & (sb.platform == plat)]
    if len(d):
        f = d.loc[d.s_per_mpx.idxmin()]
        page.findings.add("Among the standard codecs, {c} decodes fastest: {v} s per megapixel.", c=f.codec,
                          v=fact(t, "at_bpp_standard", {"platform": plat, "codec": f.codec, "direction": "decode"},
                                 "s_per_mpx", "s"))
    if "random" in weights:
        page.findings.missing("The learned codecs ran with random weights: their network time is right, their "
                              "entropy-coding time is that of random latents; `make weights` then `make book` "
                              "with network access measures the pretrained codecs.")


def build(results_dir, reference=None, downloads_dir=None, bpp: float = 0.5) -> Page:
    st = load(results_dir)
    page = Page("standard_codecs")
    df, std = st.main, st.standard
    if std.empty:
        return page.nothing_yet("No standard-codec measurement yet: `make runs` (it runs `standard-codecs` on each "
                                "platform).", "No standard-codec run yet: `make runs` measures JPEG, JPEG 2000, "
                                "WebP, AVIF, x265 and JPEG XL.", downloads_dir)
    summary = standard_summary(std)
    rd = rd_points(reference, df)
    learned = learned_at_bpp(df, rd, bpp) if not df.empty else pd.DataFrame()
    stdb = style.sort_codecs(standard_at_bpp(summary, bpp), then=["platform", "direction"])
    parts = [d[["platform", "drift_sd"]] for d in (df, std) if "drift_sd" in d.columns]
    sd = pd.concat(parts) if parts else pd.DataFrame()
    speed = speed_vs_standard(learned, stdb, drift_sd=sd.groupby("platform").drift_sd.median().to_dict()
                              if len(sd) else None)
    tables = {"sweep": summary, "at_bpp_standard": stdb, "at_bpp_learned": learned, "speed": speed}
    findings(page, tables, bpp, st.weights)
    page.header = (f"Standard codecs: {', '.join(sorted(std.platform.unique()))}, {std.image.nunique()} images. "
                   f"Learned codecs: weights **{st.weights}**, time per megapixel on the same images. The bitrate a "
                   "learned codec reaches at a quality comes from the *published* pretrained RD points; its time "
                   f"from our run of that channel configuration. Matched bitrate: **{bpp:g} bpp**.\n\n"
                   + style.weights_banner(df, "Here: the learned codecs' network time is right, their entropy-coding "
                                              "time is that of random latents (for the autoregressive decoders, "
                                              "seconds more than trained weights would take)."))
    if not speed.empty:
        cols = [c for c in ["codec", "platform", "encode_s_per_mpx", "decode_s_per_mpx", "encode_x_jpeg",
                            "decode_x_jpeg", "encode_x_hevc", "decode_x_hevc"] if c in speed.columns]
        page.table("speed", present(speed, cols), "Learned codecs at the matched bitrate: seconds per megapixel and "
                   "how many times JPEG's and x265's time.")
    page.table("speed", present(stdb, ["codec", "platform", "direction", "s_per_mpx", "psnr_at_bpp", "how"]),
               "Standard codecs at the matched bitrate (log-linear interpolation between the two sweep points "
               "around it).")
    page.figure("figure", fig_side_by_side(summary, rd, stdb, learned, bpp, std, df), "Top, our standard codecs' RD "
                "curves (dashed) beside the published learned ones; below, time per megapixel at the matched bitrate "
                "on a log axis: look at the orders of magnitude between the groups.")
    page.write(downloads_dir, {**tables, "per_image": std})
    return page
