"""Chapter "Assessment": the paper's own measurements, ours — encode and decode time per codec and
platform, the share of each module, MACs and parameters, memory, operator categories."""
from __future__ import annotations

import pandas as pd

from ..core.instrument import StageKind
from . import style
from .page import Page
from .study import load, lowest_quality, others_note
from .findings import drift_clause
from .columns import present, summarise

TITLE = "Assessment"


def overall(main: pd.DataFrame) -> pd.DataFrame:
    """Per codec, quality, platform and direction: the total time (median over images ± 95 % interval),
    its rank and its ratio to the fastest codec of the platform and direction."""
    d = main[main.stage == "total"]
    s = summarise(d, ["codec", "quality", "platform", "device", "weights", "direction"])
    s["rank"] = s.groupby(["platform", "direction"])["median"].rank(method="min").astype("Int64")  # blank: an all-contended codec
    s["ratio_to_fastest"] = s["median"] / s.groupby(["platform", "direction"])["median"].transform("min")
    s = s.rename(columns={"median": "median_s", "half": "ci_half_s", "run_half": "run_half_s"})
    return style.sort_codecs(s, then=["quality", "platform", "direction"])


def _compare(a: pd.Series, b: pd.Series) -> dict:
    """The uncertainty across runs of ``a``'s time over ``b``'s (two codecs' or platforms' runs), and whether
    their ratio is within it (:func:`lcstudy.core.drift.ratio_uncertainty`)."""
    from ..core.drift import ratio_uncertainty, within_uncertainty

    u = ratio_uncertainty(a.run_half_pct / 100, b.run_half_pct / 100)
    return {"ratio_uncertainty_pct": 100 * u, "within_uncertainty": within_uncertainty(a.median_s / b.median_s, u)}


def energy_table(main: pd.DataFrame) -> pd.DataFrame:
    """Per codec, quality, platform and direction: joules per image and per megapixel (median over images of
    each image's median over repeats), where the platform exposes an energy counter; a platform without one
    is one row that says so (its provenance says why)."""
    d = main[main.stage == "total"]
    if "energy_j" not in d.columns:  # results from before energy was read
        d = d.assign(energy_j=float("nan"), energy_j_per_mp=float("nan"), energy="not recorded (older results)")
    rows = []
    for plat, g in d.groupby("platform", sort=False):
        if g.energy_j.notna().any():
            e = summarise(g, ["codec", "quality", "platform", "direction"], "energy_j")
            mp = summarise(g, ["codec", "quality", "platform", "direction"], "energy_j_per_mp")
            e = e.rename(columns={"median": "joules", "half": "joules_ci_half"})
            e["joules_per_mp"] = mp["median"].values
            e["energy_source"] = str(g.energy.dropna().iloc[0]) if g.energy.notna().any() else ""
            rows.append(e[["codec", "quality", "platform", "direction", "joules", "joules_ci_half", "joules_per_mp",
                           "images", "energy_source"]])
        else:
            why = str(g.energy.dropna().iloc[0]) if "energy" in g and g.energy.notna().any() else "not recorded"
            rows.append(pd.DataFrame([{"platform": plat, "energy_source": why}]))
    if not rows:
        return pd.DataFrame()
    return pd.concat(rows, ignore_index=True)


def overall_wide(o: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (c, q, p), g in o.groupby(["codec", "quality", "platform"], sort=False):
        e, d = g[g.direction == "encode"], g[g.direction == "decode"]
        rows.append({"codec": c, "quality": q, "platform": p,
                     "encode_s": (e.median_s.iloc[0], e.ci_half_s.iloc[0]) if len(e) else None,
                     "decode_s": (d.median_s.iloc[0], d.ci_half_s.iloc[0]) if len(d) else None,
                     "precise": (bool(e.precise.iloc[0]) and bool(d.precise.iloc[0])) if len(e) and len(d) and
                     e.precise.iloc[0] is not None and d.precise.iloc[0] is not None else None,
                     "images": int(g.images.min())})
    return pd.DataFrame(rows)


def module_shares(main: pd.DataFrame, reference=None) -> pd.DataFrame:
    """Share of each top-level stage in the total, per codec, quality, platform and direction (mean over
    images, as the paper's AVG sheets), with the paper's share beside it where the paper has one."""
    d = main[main.stage_kind == StageKind.PARTITION]
    t = d.groupby(["codec", "quality", "platform", "device", "direction", "stage"], as_index=False).seconds.mean()
    t["share_pct"] = 100 * t.seconds / t.groupby(["codec", "quality", "platform", "direction"]).seconds.transform("sum")
    t["source"] = "ours"
    if reference is not None:
        try:
            from .published import paper_module_times

            p = paper_module_times(reference)
        except Exception:  # noqa: BLE001 - no reference data: ours alone
            p = pd.DataFrame()
        if not p.empty:
            p = p[p.stage != "total"]
            p["paper_share_pct"] = 100 * p.seconds / p.groupby(["codec", "quality", "device", "direction"]) \
                .seconds.transform("sum")
            t = t.merge(p[["codec", "quality", "device", "direction", "stage", "paper_share_pct"]],
                        on=["codec", "quality", "device", "direction", "stage"], how="left")
    return style.sort_codecs(t, then=["quality", "platform", "direction", "stage"])


def fig_overall(o: pd.DataFrame, main: pd.DataFrame):
    plt = style.setup()
    plats = list(dict.fromkeys(o.platform))
    fig, axes = plt.subplots(1, 2, figsize=(style.FIG_WIDTH, 3.6), sharey=True)
    codecs = list(dict.fromkeys(o.codec + " q" + o.quality.astype(str)))
    width = 0.8 / max(len(plats), 1)
    for ax, direction in zip(axes, ("encode", "decode")):
        for j, p in enumerate(plats):
            g = o[(o.direction == direction) & (o.platform == p)]
            g = g.set_index(g.codec + " q" + g.quality.astype(str)).reindex(codecs)
            x = [i + (j - (len(plats) - 1) / 2) * width for i in range(len(codecs))]
            colors = [style.codec_color(c.split(" q")[0]) for c in codecs]
            err = g.ci_half_s.fillna(0).values
            ax.barh(x, g.median_s.values, height=width, color=colors, xerr=err, label=p, error_kw={"lw": 0.8},
                    alpha=1.0 - 0.6 * j / max(len(plats) - 1, 1), hatch=["", "//", "..", "xx", "\\\\"][j % 5])
        ax.set_yticks(range(len(codecs)), codecs)
        ax.invert_yaxis()
        ax.set(xscale="log", xlabel="seconds per image (median; bar: 95 % interval)", title=direction)
    if len(plats) > 1:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor="#999999", alpha=1.0 - 0.6 * j / max(len(plats) - 1, 1),
                         hatch=["", "//", "..", "xx", "\\\\"][j % 5], label=p) for j, p in enumerate(plats)]
        style.legend_above(fig, handles, plats, ncol=1)
    return style.finish(fig, style.title("Encode and decode time per codec", main))


def fig_module_shares(ms: pd.DataFrame, main: pd.DataFrame):
    plt = style.setup()
    ours = ms.copy()
    ours["bar"] = ours.codec + " q" + ours.quality.astype(str) + " · ours"
    bars = [ours]
    if "paper_share_pct" in ms.columns and ms.paper_share_pct.notna().any():
        p = ms.dropna(subset=["paper_share_pct"]).drop_duplicates(["codec", "quality", "device", "direction", "stage"])
        p = p.assign(share_pct=p.paper_share_pct, bar=p.codec + " q" + p.quality.astype(str) + " · paper ("
                     + p.device + ")")
        bars.append(p)
    t = pd.concat(bars, ignore_index=True)
    panels = [(d, pl) for pl in dict.fromkeys(ms.platform) for d in ("encode", "decode")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(style.FIG_WIDTH, 0.28 * t.bar.nunique() * len(panels) + 1.2),
                             squeeze=False)
    stages = style.ordered_stages(t.stage)
    for ax, (direction, plat) in zip(axes[:, 0], panels):
        s = t[(t.direction == direction) & ((t.platform == plat) | t.bar.str.contains("paper"))]
        w = s.pivot_table(index="bar", columns="stage", values="share_pct", fill_value=0)
        order = [b for c in style.codec_order() for b in sorted(w.index) if b.startswith(c + " q")]
        w = w.reindex(order)[[c for c in stages if c in w.columns]]
        w.plot.barh(stacked=True, ax=ax, color=style.stage_colors(w.columns), legend=False, width=0.8)
        ax.set(xlim=(0, 100), xlabel="share of the total (%)", ylabel="", title=f"{direction} · ours on {plat}")
        ax.invert_yaxis()
        style.legend_outside(ax, title="stage")
    return style.finish(fig, style.title("Share of each module in the total time, ours beside the paper's",
                                         main))


def macs_table(cx: pd.DataFrame) -> pd.DataFrame:
    if cx.empty:
        return cx
    c = cx[cx.stage == "total"].drop_duplicates(["codec", "quality", "direction"])
    w = c.pivot_table(index=["codec", "quality"], columns="direction", values="kmac_per_px", aggfunc="first")
    w = w.rename(columns={"encode": "kmac_encode", "decode": "kmac_decode"}).reset_index()
    mp = cx.drop_duplicates(["codec", "quality"]).set_index(["codec", "quality"]).model_params
    w["params_m"] = [mp[(c, q)] / 1e6 for c, q in zip(w.codec, w.quality)]
    w["ratio_to_least"] = w.kmac_decode / w.kmac_decode.where(w.kmac_decode > 0).min()
    size = c.drop_duplicates(["codec", "quality"]).set_index(["codec", "quality"])
    w["size"] = [f"{int(size.loc[(a, b), 'width'])}×{int(size.loc[(a, b), 'height'])}"
                 for a, b in zip(w.codec, w.quality)]
    return style.sort_codecs(w, then=["quality"])


def fig_macs(cx: pd.DataFrame):
    plt = style.setup()
    c = cx[(cx.stage_kind == StageKind.PARTITION) & (cx.macs > 0)].drop_duplicates(["codec", "quality", "direction", "stage"])
    c = c.assign(bar=c.codec + " q" + c.quality.astype(str))
    fig, axes = plt.subplots(1, 2, figsize=(style.FIG_WIDTH, 3.4), sharey=True)
    for ax, direction in zip(axes, ("encode", "decode")):
        w = c[c.direction == direction].pivot_table(index="bar", columns="stage", values="kmac_per_px", fill_value=0)
        order = [b for cc in style.codec_order() for b in sorted(w.index) if b.startswith(cc + " q")]
        w = w.reindex(order)[[s for s in style.ordered_stages(w.columns)]]
        w.plot.barh(stacked=True, ax=ax, color=style.stage_colors(w.columns), legend=False)
        ax.set(xlabel="kMAC per pixel", ylabel="", title=direction)
        ax.invert_yaxis()
    style.legend_above(fig)
    return style.finish(fig, "MACs per module (ptflops aten, on the shapes each stage sees; independent of the "
                             "weights)")


def memory_table(mem: pd.DataFrame) -> pd.DataFrame:
    if mem.empty:
        return mem
    m = mem[(mem.memory == mem.memory.map(lambda x: x)) & ~mem.contended.astype(bool)]
    g = m.groupby(["codec", "quality", "platform", "memory", "direction"], as_index=False)[["peak_mb", "working_mb"]] \
        .median()
    w = g.pivot_table(index=["codec", "quality", "platform", "memory"], columns="direction",
                      values=["peak_mb", "working_mb"]).reset_index()
    w.columns = [f"{a}_{b}" if b else a for a, b in w.columns]
    if "mac_imports_resident" in m and m.mac_imports_resident.fillna(False).astype(bool).any():
        flag = m.assign(r=m.mac_imports_resident.fillna(False).astype(bool)).groupby(
            ["codec", "quality", "platform", "memory"]).r.any().map({True: "yes", False: ""}).rename(
            "mac_imports_resident").reset_index()
        w = w.merge(flag, on=["codec", "quality", "platform", "memory"], how="left")
    return style.sort_codecs(w, then=["quality", "platform", "memory"])


def fig_kernel_shares(kern: pd.DataFrame):
    from ..core.kernels import category_shares

    if kern.empty:
        return None
    plt = style.setup()
    s = category_shares(kern)
    s = s.assign(bar=s.codec + " q" + s.quality.astype(str), panel=s.direction + " · " + s.op_kind + " · " + s.platform)
    panels = sorted(set(s.panel), key=lambda p: ("cuda" in p, p.split(" · ")[2], p.startswith("decode")))
    cats = [c for c in style.palette("category") if c in set(s.category)] + \
        sorted(set(s.category) - set(style.palette("category")))
    fig, axes = plt.subplots(len(panels), 1, figsize=(style.FIG_WIDTH, 0.3 * s.bar.nunique() * len(panels) + 1.2),
                             squeeze=False)
    for ax, p in zip(axes[:, 0], panels):
        w = s[s.panel == p].pivot_table(index="bar", columns="category", values="share", fill_value=0)
        order = [b for cc in style.codec_order() for b in sorted(w.index) if b.startswith(cc + " q")]
        w = w.reindex(order)[[c for c in cats if c in w.columns]]
        w.plot.barh(stacked=True, ax=ax, color=style.colors("category", w.columns), legend=False)
        ax.set(xlim=(0, 1), xlabel="share of the call's time", ylabel="",
               title=p.replace("cpu_op", "CPU operators").replace("cuda_kernel", "CUDA kernels"))
        ax.invert_yaxis()
        style.legend_outside(ax, title="operator category")
    return style.finish(fig, style.title("Time by operator category (torch.profiler, self time)", kern))


def extremes(o: pd.DataFrame) -> pd.DataFrame:
    """Per platform and direction, among each codec's lowest quality: the slowest and the fastest codec,
    their times and their ratio."""
    lo = lowest_quality(o)
    rows = []
    for (plat, d), g in lo.groupby(["platform", "direction"], sort=False):
        g = g.dropna(subset=["median_s"])
        if len(g) < 2:
            continue
        slow, fast = g.loc[g.median_s.idxmax()], g.loc[g.median_s.idxmin()]
        rows.append({"platform": plat, "direction": d, "slowest": slow.codec, "slowest_s": slow.median_s,
                     "fastest": fast.codec, "fastest_s": fast.median_s, "ratio": slow.median_s / fast.median_s,
                     **_compare(slow, fast)})
    return pd.DataFrame(rows, columns=["platform", "direction", "slowest", "slowest_s", "fastest", "fastest_s",
                                       "ratio", "ratio_uncertainty_pct", "within_uncertainty"])


def gpu_speedup(o: pd.DataFrame) -> pd.DataFrame:
    """Per codec, quality and direction: the main CPU platform's time over the main GPU platform's, with the
    ratio's uncertainty across runs."""
    plats = style.main_platforms(o)
    cpu = [p for p in plats if "(CUDA)" not in p]
    gpu = [p for p in plats if "(CUDA)" in p]
    if not cpu or not gpu:
        return pd.DataFrame(columns=["codec", "quality", "direction", "cpu_s", "cuda_s", "speedup",
                                     "ratio_uncertainty_pct", "within_uncertainty"])
    k = ["codec", "quality", "direction"]
    a = o[o.platform == cpu[0]].set_index(k)[["median_s", "run_half_pct"]]
    b = o[o.platform == gpu[0]].set_index(k)[["median_s", "run_half_pct"]]
    m = a.join(b, how="inner", lsuffix="_cpu", rsuffix="_cuda").reset_index()
    m["cpu_s"], m["cuda_s"] = m.median_s_cpu, m.median_s_cuda
    m["speedup"] = m.cpu_s / m.cuda_s
    cmp = [_compare(pd.Series({"median_s": r.cpu_s, "run_half_pct": r.run_half_pct_cpu}),
                    pd.Series({"median_s": r.cuda_s, "run_half_pct": r.run_half_pct_cuda})) for r in m.itertuples()]
    m["ratio_uncertainty_pct"] = [c["ratio_uncertainty_pct"] for c in cmp]
    m["within_uncertainty"] = [c["within_uncertainty"] for c in cmp]
    m = m[k + ["cpu_s", "cuda_s", "speedup", "ratio_uncertainty_pct", "within_uncertainty"]]
    return style.sort_codecs(m, then=["quality", "direction"])


def findings(page: Page, t: dict, study) -> None:
    from .findings import fact

    ex = t["extremes"]
    for plat in style.main_platforms(t["overall"]):
        for direction in ("encode", "decode"):
            row = ex[(ex.platform == plat) & (ex.direction == direction)]
            if not len(row):
                continue
            w = {"platform": plat, "direction": direction}
            page.findings.add("On {plat}, the slowest " + direction + "r is {slow} at {ts} s per image and the "
                              "fastest {fast} at {tf} s: {ratio} apart (each codec at its lowest quality)"
                              + drift_clause(row.iloc[0]),
                              plat=plat, slow=row.slowest.iloc[0], fast=row.fastest.iloc[0],
                              ts=fact(t, "extremes", w, "slowest_s", "s"), tf=fact(t, "extremes", w, "fastest_s", "s"),
                              ratio=fact(t, "extremes", w, "ratio", "x"),
                              u=fact(t, "extremes", w, "ratio_uncertainty_pct", "pct"))
    ms = t["module_shares"]
    from ..core.codec_table import CODECS

    for c in (s.label for s in CODECS if s.family == "autoregressive"):
        rows = ms[(ms.codec == c) & (ms.direction == "decode") & (ms.stage == "ADy")]
        if len(rows):
            r = rows.sort_values("quality").iloc[0]
            w = {"codec": c, "quality": r.quality, "platform": r.platform, "direction": "decode", "stage": "ADy"}
            page.findings.add("{codec}'s decoder spends {share} of its time on {plat} in the entropy decoding of y "
                              "(ADy: the sequential autoregressive loop).", codec=c, plat=r.platform,
                              share=fact(t, "module_shares", w, "share_pct", "pct"))
            break
    sp = t["gpu_speedup"]
    devices = set(t["overall"].device)
    if len(sp):
        d = sp[sp.direction == "decode"]
        hi, lo = d.loc[d.speedup.idxmax()], d.loc[d.speedup.idxmin()]
        key = lambda r: {"codec": r.codec, "quality": r.quality, "direction": "decode"}  # noqa: E731
        page.findings.add("Decoding on the GPU is {hi} faster than on the CPU for {a} and {lo} for {b}"
                          + drift_clause(lo), a=hi.codec, b=lo.codec,
                          hi=fact(t, "gpu_speedup", key(hi), "speedup", "x"),
                          lo=fact(t, "gpu_speedup", key(lo), "speedup", "x"),
                          u=fact(t, "gpu_speedup", key(lo), "ratio_uncertainty_pct", "pct"))
    else:
        other = "cuda" if "cuda" not in devices else "cpu"
        page.findings.missing(f"Only {', '.join(sorted(devices))} results are here: run `make runs DEVICES={other}` on "
                              f"a machine with {'an NVIDIA GPU' if other == 'cuda' else 'a CPU'} and copy its results "
                              "folder here to set GPU against CPU.")
    m = t["macs"]
    if len(m) >= 2 and m.kmac_decode.notna().any():
        top = m.loc[m.kmac_decode.idxmax()]
        least = m.loc[m.kmac_decode.idxmin()]
        page.findings.add("{top} has the most decoder MACs, {k} kMAC per pixel, {ratio} {least}'s; MACs do not "
                          "depend on the weights.", top=top.codec, least=least.codec,
                          k=fact(t, "macs", {"codec": top.codec, "quality": top.quality}, "kmac_decode"),
                          ratio=fact(t, "macs", {"codec": top.codec, "quality": top.quality}, "ratio_to_least", "x"))
    elif m.empty:
        page.findings.missing("No MAC counts here (runs with MACS=false): `make runs` counts them in the main runs.")


def build(results_dir, reference=None, downloads_dir=None) -> Page:
    from ..runs.tidy import TABLES
    from .workbooks import write_reports

    st = load(results_dir)
    main = st.main
    page = Page("assessment")
    if main.empty:
        return page.nothing_yet("No learned-codec results yet: `make runs`.",
                                "No learned-codec runs yet: `make runs` measures them.", downloads_dir)
    o = overall(main)
    ms = module_shares(main, reference)
    mt = macs_table(st.complexity)
    mem = memory_table(st.memory)
    en = energy_table(main)
    tables = {"overall": o, "extremes": extremes(o), "gpu_speedup": gpu_speedup(o), "module_shares": ms,
              "macs": mt, "memory": mem, "energy": en}
    findings(page, tables, st)
    page.header = (f"{main.run_id.nunique()} runs on {main.platform.nunique()} platform(s) "
                   f"({', '.join(sorted(main.platform.unique()))}); weights: **{st.weights}**.\n\n"
                   + style.weights_banner(main) + others_note(st))
    ow = overall_wide(o)
    page.table("overall", present(ow, ["codec", "quality", "platform", "encode_s", "decode_s", "precise", "images"]),
               "Seconds per image: median over images of each image's median over repeats, ± half its 95 % "
               "interval over images; ✓ where that half-width is within 5 % of the median (blank: fewer than 6 "
               "images, no interval).")
    page.figure("overall", fig_overall(o, main), "Bars are medians on a log scale, whiskers the 95 % interval: "
                "look for the autoregressive codecs' decoders, an order of magnitude above the rest.")
    page.figure("module_shares", fig_module_shares(ms, main),
                "Each bar splits a codec's time into its modules, ours beside the paper's: look at how the entropy "
                "coding of y (AEy/ADy) dominates the autoregressive codecs on both.")
    if not mt.empty:
        page.table("macs", present(mt, ["codec", "quality", "kmac_encode", "kmac_decode", "ratio_to_least", "params_m",
                                        "size"]),
                   "Thousand MACs per pixel per direction (counted at the image size shown) and the model's "
                   "parameters.")
        page.figure("macs", fig_macs(st.complexity), "MACs per module: the transforms g_a/g_s carry most of the "
                    "arithmetic except in the context codecs, whose context model and entropy parameters add to it.")
    if not mem.empty:
        cols = [c for c in ["codec", "quality", "platform", "memory", "peak_mb_encode", "working_mb_encode",
                            "peak_mb_decode", "working_mb_decode", "mac_imports_resident"] if c in mem.columns]
        page.table("memory", present(mem, cols), "Memory around the timed calls (median over images and repeats): "
                   "peak resident memory and the working set (peak minus the memory just before the call)."
                   + (" Rows marked in the last column were measured by lcstudy before its commit a775b1c (7 Dec "
                      "2026), when the MAC count ran in the run's first warm-up and left ~150 MB of its imports "
                      "(torch._dynamo, sympy) resident: their peaks read that much high against the others' (the "
                      "working sets do not); rerun them for comparable peaks." if "mac_imports_resident" in cols
                      else ""))
    if not en.empty:
        measured = en[en.joules.notna()] if "joules" in en else en.iloc[0:0]
        if not measured.empty:
            page.table("energy", present(measured, ["codec", "quality", "platform", "direction", "joules",
                                                    "joules_per_mp", "images", "energy_source"]),
                       "Energy per image and per megapixel of the timed calls (median over images of each image's "
                       "median over repeats). A GPU's is the whole board's (idle power included), a CPU's the "
                       "packages' (RAPL): both include what else ran, so contended calls are left out as for time.")
        for _, r in en[en.joules.isna()].iterrows() if "joules" in en else en.iterrows():
            page.text("energy", f"**{r.platform}**: energy {r.energy_source}. Energy is read from NVML on a CUDA "
                      "GPU and from RAPL (`/sys/class/powercap`) on a CPU where the kernel exposes it to the run.")
    page.figure("kernels", fig_kernel_shares(st.kernels), "Where the self time goes by operator category: "
                "'outside torch ops' is the Python loop and the entropy coder, which no MAC count sees.")
    page.write(downloads_dir, tables)
    if downloads_dir is not None:
        from pathlib import Path

        from ..runs.store import atomic_write_csv

        page.downloads += write_reports(main, downloads_dir)
        for name in TABLES:
            df = getattr(st, name, None) if name not in ("timings",) else st.timings
            if df is not None and not df.empty:
                p = Path(downloads_dir) / f"lcstudy_{name}.csv"
                atomic_write_csv(p, df)
                page.downloads.append(p)
    return page
