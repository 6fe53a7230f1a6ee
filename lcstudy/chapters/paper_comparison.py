"""Chapter "Against the published data": our module times beside the ICASSP 2023 paper's raw data
and CompressAI's published Kodak runtimes — ratios, rankings, Kendall τ."""
from __future__ import annotations

import pandas as pd

from ..core.registry import CODECS
from . import style
from .page import Page
from .ranking import inversions, kendall
from .study import load
from .tables import present

TITLE = "Against the published data"


def ours_module_times(main: pd.DataFrame) -> pd.DataFrame:
    d = main[(main.kind.isin(["partition", "aggregate"])) & (main.stage != "network") & main.crop.isna()]
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


def findings(page: Page, t: dict, main: pd.DataFrame) -> None:
    from .findings import fact

    tau = t["kendall"]
    ours = [s for s in dict.fromkeys(t["rankings"].source) if s.startswith("ours")]
    if not ours or tau.empty:
        page.findings.missing("No full-size runs to rank against the paper yet (the quick profile crops its images): "
                              "`make book` (standard profile) measures them.")
    else:
        o = ours[0]
        for direction in ("encode", "decode"):
            row = tau[(tau.direction == direction) & (((tau.a == o) & (tau.b == "paper · cpu"))
                                                      | ((tau.b == o) & (tau.a == "paper · cpu")))]
            if len(row):
                r = row.iloc[0]
                w = {"direction": direction, "a": r.a, "b": r.b}
                page.findings.add("Our " + direction + " ranking of the codecs agrees with the paper's CPU ranking "
                                  "with Kendall τ = {tau} over {n} codecs (p = {p}).",
                                  tau=fact(t, "kendall", w, "tau"), n=fact(t, "kendall", w, "codecs", "int"),
                                  p=fact(t, "kendall", w, "p_value"))
        inv = t["inversions"]
        inv = inv[(inv.a.isin([o, "paper · cpu"])) & (inv.b.isin([o, "paper · cpu"]))]
        if len(inv):
            pairs = "; ".join(f"{r.pair} ({r.direction})" for r in inv.itertuples())
            page.findings.add("Pairs ordered differently from the paper's CPU data: " + pairs + ". Their times are "
                              "close, and ours differ from the paper's in CPU, thread count and weights (random "
                              "weights change the entropy-coding time).")
        else:
            page.findings.add("No pair of codecs is ordered differently from the paper's CPU data.")
        rs = t["ratio"]
        if not rs.empty:
            w = {"direction": "decode", "platform": rs.platform.iloc[0]}
            if len(rs[(rs.direction == "decode") & (rs.platform == w["platform"])]):
                page.findings.add("Our CPU decode totals are {r} the paper's (median over codecs at the qualities "
                                  "both measured).", r=fact(t, "ratio", w, "ratio_median", "x"))
    ps = t["paper_sync"]
    if not ps.empty:
        c = "HP" if "HP" in set(ps.codec) else ps.codec.iloc[0]
        page.findings.add("In the paper's CUDA data, " + c + "'s AEz takes {r} as long as its g_a: without a "
                          "device synchronisation between modules, g_a's GPU kernels are billed to the entropy coder "
                          "that waits for them. Our clock synchronises at every stage boundary.",
                          r=fact(t, "paper_sync", {"codec": c}, "aez_over_ga", "x"))


def build(results_dir, reference=None, downloads_dir=None) -> Page:
    st = load(results_dir)
    main = st.main
    page = Page("paper_comparison")
    full = main[main.crop.isna()] if not main.empty else main
    m = compare_modules(main, reference) if not main.empty else pd.DataFrame()
    r = rankings(main, reference)
    tau = kendall(r)
    inv = inversions(r, "source", "seconds")
    ps = paper_sync(reference)
    ratio = pd.DataFrame()
    if not m.empty:
        tot = m[(m.stage == "total") & (m.device == "cpu")]
        ratio = tot.groupby(["platform", "direction"], as_index=False).ours_over_paper.median() \
            .rename(columns={"ours_over_paper": "ratio_median"})
    tables = {"modules": m, "rankings": r, "kendall": tau, "inversions": inv, "paper_sync": ps, "ratio": ratio}
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
        stages = [s for s in style.ordered_stages(t.columns) if s in t.columns] + (["total"] if "total" in t else [])
        from .tables import COLUMNS

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
    from .tables import COLUMNS

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
