"""Chapter "Against the published data": our module times beside the ICASSP 2023 paper's raw data
and CompressAI's published Kodak runtimes — ratios, rankings, Kendall τ."""
from __future__ import annotations

import pandas as pd

from ..core.instrument import StageKind
from ..core.codec_table import CODECS
from . import style
from .page import Page
from .ranking import inversions, kendall
from .study import load
from .columns import present

TITLE = "Against the published data"


def ours_module_times(main: pd.DataFrame) -> pd.DataFrame:
    d = main[(main.stage_kind.isin([StageKind.PARTITION, StageKind.AGGREGATE])) & (main.stage != "network") & main.crop.isna()]
    d = d.assign(device=d.device.astype(str).str.split(":").str[0])
    return d.groupby(["codec", "quality", "device", "threads", "platform", "direction", "stage"],
                     as_index=False).seconds.mean()


def compare_modules(main: pd.DataFrame, reference) -> pd.DataFrame:
    """Ours / paper per codec, quality (the qualities we measured), device, direction and stage."""
    from .published import paper_module_times

    ours = ours_module_times(main)
    if ours.empty:
        return pd.DataFrame()
    paper = paper_module_times(reference).rename(columns={"seconds": "paper_seconds"})
    m = ours.merge(paper, on=["codec", "quality", "device", "direction", "stage"], how="inner")
    m["ours_over_paper"] = m.seconds / m.paper_seconds.where(m.paper_seconds > 0)
    return style.sort_codecs(m, then=["quality", "platform", "direction"])


def rankings(main: pd.DataFrame, reference) -> pd.DataFrame:
    """Encode/decode total per codec at its lowest quality: ours (per platform), the paper's, CompressAI's."""
    from .published import compressai_results, paper_module_times

    quality_of = {s.label: s.qualities[0] for s in CODECS}
    rows = []
    ours = ours_module_times(main)
    for _, r in ours[(ours.stage == "total")].iterrows():
        if quality_of.get(r.codec, r.quality) == r.quality:
            rows.append({"codec": r.codec, "quality": r.quality, "source": f"ours · {r.platform}",
                         "direction": r.direction, "seconds": r.seconds})
    paper = paper_module_times(reference)
    for _, r in paper[paper.stage == "total"].iterrows():
        if quality_of.get(r.codec) == r.quality:
            rows.append({"codec": r.codec, "quality": r.quality, "source": f"paper · {r.device}",
                         "direction": r.direction, "seconds": r.seconds})
    for _, r in compressai_results(reference).iterrows():
        if quality_of.get(r.codec) == r.quality:
            for d in ("encode", "decode"):
                rows.append({"codec": r.codec, "quality": r.quality, "source": f"CompressAI · {r.device}",
                             "direction": d, "seconds": r[d]})
    return style.sort_codecs(pd.DataFrame(rows), then=["direction", "source"])


def paper_sync(reference) -> pd.DataFrame:
    """The paper's CUDA AEz over its g_a (encode), per codec with a hyperprior: the unsynchronised clock's
    signature (g_a's kernels finish while the entropy coder waits for them)."""
    from .published import paper_module_times

    p = paper_module_times(reference)
    p = p[(p.device == "cuda") & (p.direction == "encode") & p.stage.isin(["AEz", "g_a"])]
    w = p.pivot_table(index=["codec", "quality"], columns="stage", values="seconds").reset_index()
    w = w[w.AEz > 0]
    w["aez_over_ga"] = w.AEz / w.g_a
    w = w.groupby("codec", as_index=False).aez_over_ga.median()
    return style.sort_codecs(w)


def paper_shares(reference) -> pd.DataFrame:
    """The paper's own share of each stage in the total, per codec, quality, device and direction."""
    from .published import paper_module_times

    p = paper_module_times(reference)
    p = p[p.stage != "total"].copy()
    p["share_pct"] = 100 * p.seconds / p.groupby(["codec", "quality", "device", "direction"]).seconds.transform("sum")
    return style.sort_codecs(p, then=["quality", "device", "direction"])


def findings(page: Page, t: dict, main: pd.DataFrame) -> None:
    from .findings import fact

    tau = t["kendall"]
    plats = style.main_platforms(main[main.crop.isna()]) if not main.empty else []
    cpu = [p for p in plats if "(CUDA)" not in p]
    src = f"ours · {cpu[0]}" if cpu else None
    if src is None or tau.empty or not ((tau.a == src) | (tau.b == src)).any():
        page.findings.missing("No ranking of ours to set against the paper's yet: it needs full-size runs of at least "
                              "three of the paper's codecs on a CPU (`make book`, standard profile; the quick profile "
                              "crops its images).")
    else:
        for direction in ("encode", "decode"):
            row = tau[(tau.direction == direction) & (((tau.a == src) & (tau.b == "paper · cpu"))
                                                      | ((tau.b == src) & (tau.a == "paper · cpu")))]
            if len(row):
                w = {"direction": direction, "a": row.a.iloc[0], "b": row.b.iloc[0]}
                page.findings.add("Our " + direction + " ranking of {n} codecs on {plat} and the paper's CPU ranking "
                                  "have Kendall τ = {tau} (p = {p}).", plat=cpu[0],
                                  tau=fact(t, "kendall", w, "tau"), n=fact(t, "kendall", w, "codecs", "int"),
                                  p=fact(t, "kendall", w, "p_value"))
        inv = t["inversions"]
        inv = inv[inv.a.isin([src, "paper · cpu"]) & inv.b.isin([src, "paper · cpu"])]
        if len(inv):
            page.findings.add("Ordered differently from the paper's CPU data: {pairs}. Ours differ from the paper's "
                              "runs in CPU, thread count and weights.",
                              pairs="; ".join(f"{x.pair} ({x.direction})" for x in inv.itertuples()))
        else:
            page.findings.add("Every pair of the codecs both measured is in the paper's CPU order.")
        rs = t["ratio"]
        row = rs[(rs.direction == "decode") & (rs.platform == cpu[0])]
        if len(row):
            page.findings.add("Our decode totals on {plat} are {r} the paper's CPU ones (median over the codecs and "
                              "qualities both measured).", plat=cpu[0],
                              r=fact(t, "ratio", {"direction": "decode", "platform": cpu[0]}, "ratio_median", "x"))
    ps = t["paper_shares"]
    arc = ps[(ps.codec == "ARC") & (ps.device == "cpu") & (ps.direction == "decode") & (ps.stage == "ADy")]
    if len(arc):
        q = int(arc.quality.min())
        page.findings.add("In the paper's CPU data, ARC's decoder ({q}) spends {s} of its time in the entropy "
                          "decoding of y, the sequential loop.", q=f"q{q}",
                          s=fact(t, "paper_shares", {"codec": "ARC", "quality": q, "device": "cpu",
                                                     "direction": "decode", "stage": "ADy"}, "share_pct", "pct"))
    sync = t["paper_sync"]
    if not sync.empty:
        c = "HP" if "HP" in set(sync.codec) else sync.codec.iloc[0]
        page.findings.add("In the paper's CUDA data, {c}'s AEz takes {r} as long as its g_a: without a device "
                          "synchronisation between modules, g_a's GPU kernels are billed to the entropy coder that "
                          "waits for them. Our clock synchronises at every stage boundary.", c=c,
                          r=fact(t, "paper_sync", {"codec": c}, "aez_over_ga", "x"))


def build(results_dir, reference=None, downloads_dir=None) -> Page:
    st = load(results_dir)
    main = st.main
    page = Page("paper_comparison")
    full = main[main.crop.isna()] if not main.empty else main
    m = compare_modules(main, reference) if not main.empty else pd.DataFrame()
    r = rankings(main, reference) if not main.empty else rankings(main.reindex(columns=[
        "stage_kind", "stage", "crop", "device", "codec", "quality", "threads", "platform", "direction", "seconds"]),
        reference)
    tau = kendall(r)
    inv = inversions(r, "source", "seconds")
    ps = paper_sync(reference)
    ratio = pd.DataFrame()
    if not m.empty:
        tot = m[(m.stage == "total") & (m.device == "cpu")]
        ratio = tot.groupby(["platform", "direction"], as_index=False).ours_over_paper.median() \
            .rename(columns={"ours_over_paper": "ratio_median"})
    tables = {"modules": m, "rankings": r, "kendall": tau, "inversions": inv, "paper_sync": ps, "ratio": ratio,
              "paper_shares": paper_shares(reference)}
    findings(page, tables, main)
    page.header = ("Compared at the qualities we measured (the paper's per-quality data, not its q1–8 average). "
                   f"Ours: {full.run_id.nunique() if not full.empty else 0} full-size runs on "
                   f"{', '.join(sorted(full.platform.unique())) if not full.empty else 'no platform'}; weights "
                   f"**{st.weights}**. The paper's CPU is not named in its data; its GPU stages were timed without "
                   "synchronisation. CompressAI's times come from one run per image, no warm-up, one CPU thread, on a "
                   "Xeon Gold 5218R / Quadro RTX 8000.\n\n" + style.weights_banner(main))
    if not m.empty:
        t = m.pivot_table(index=["codec", "quality", "platform", "direction"], columns="stage",
                          values="ours_over_paper").reset_index()
        sc = [c for c in t.columns if c not in ("codec", "quality", "platform", "direction")]
        stages = [s for s in style.ordered_stages(sc) if s != "total"] + (["total"] if "total" in sc else [])
        from .columns import COLUMNS

        for s in stages:
            COLUMNS.setdefault(s, (f"{s} ours/paper", "x", f"our {s} time over the paper's"))
        for direction in ("encode", "decode"):
            d = style.sort_codecs(t[t.direction == direction])
            cols = [s for s in stages if d[s].notna().any()]
            page.table("modules", present(d, ["codec", "quality", "platform"] + cols),
                       f"{direction.capitalize()}: our time over the paper's, per module (1 = the same).")
    else:
        page.text("modules", "_No full-size runs to compare module by module (the quick profile crops its images)._")
    w = r.pivot_table(index=["direction", "codec"], columns="source", values="seconds").reset_index()
    from .columns import COLUMNS

    for s in w.columns[2:]:
        COLUMNS.setdefault(s, (f"{s} (s)", "s", f"total time per image, {s}"))
    for direction in ("encode", "decode"):
        d = style.sort_codecs(w[w.direction == direction])
        page.table("rankings", present(d, ["codec"] + list(w.columns[2:])), f"{direction.capitalize()} time per image "
                   "at each codec's lowest quality, by source.")
    page.table("kendall", present(tau, ["direction", "a", "b", "codecs", "tau", "p_value"]),
               "Kendall τ between each pair of sources' codec rankings (1 = same order).")
    page.write(downloads_dir, tables)
    return page
