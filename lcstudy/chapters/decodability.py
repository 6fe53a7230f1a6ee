"""Decodability: which codecs survive a change of decoder (threads, backend, device, machine).

Reads the cross-decodes of :mod:`lcstudy.runs.decodability` (``make decodability``, a phase of ``make
book``): every fingerprinted stored bitstream it selected decoded under each decoder configuration of each machine whose results
were merged here. Per codec, the matrix of encoder × decoder with the share of images ``identical`` /
``close`` / ``corrupt`` / ``error`` (:mod:`lcstudy.core.decoding`), how spread the entropy model's scales
are and how close they came to a table boundary (the *margin*, in ulps), and what the float64 mitigation
restores and costs. Every table says when the entropy model is degenerate (seeded random weights): then
no decoder can desynchronise and the matrix cannot tell anything about a trained codec.
"""
from __future__ import annotations

import pandas as pd

from . import style
from .page import Page
from .columns import present

OUTCOMES = ("identical", "close", "corrupt", "error")


def _encoder(d: pd.DataFrame) -> pd.Series:
    return (d.enc_host.astype(str) + " · " + d.enc_backend.astype(str) + " · " + d.enc_device.astype(str) + " · "
            + d.enc_threads.astype("Int64").astype(str) + "thr")


def _decoder(d: pd.DataFrame) -> pd.Series:
    return d.dec_host.astype(str) + " · " + d.decoder.astype(str)


def matrix(t: pd.DataFrame) -> pd.DataFrame:
    """Per codec, encoder configuration and decoder configuration: the images decoded and the share of each
    outcome, whether the entropy model is degenerate, and the first reason of an image not identical."""
    d = t[t.row_type == "decode"].assign(encoder=lambda x: _encoder(x), decoder_at=lambda x: _decoder(x))
    keys = ["codec", "quality", "weights_label", "encoder", "decoder_at"]
    if d.empty:
        return pd.DataFrame(columns=keys)
    out = []
    for k, g in d.groupby(keys, sort=False, dropna=False):
        rec = dict(zip(keys, k))
        rec["images"] = len(g)
        for o in OUTCOMES:
            rec[f"{o}_images"] = float((g.outcome == o).mean())
        rec["degenerate"] = bool(g.degenerate.fillna(False).astype(bool).all()) if g.degenerate.notna().any() else None
        rec["simulated"] = bool((g.dec_ulps > 0).any())
        bad = g[g.outcome != "identical"]
        rec["example"] = str(bad.reason.iloc[0]) if len(bad) else ""
        out.append(rec)
    return style.sort_codecs(pd.DataFrame(out))


def margins(t: pd.DataFrame) -> pd.DataFrame:
    """Per codec: the encoder's scale statistics over its images (eager runs): the median share of the most used
    table entry, the median number of entries used, the smallest margin to a table boundary (ulps), the scales
    within :data:`lcstudy.core.decoding.RISK_ULPS` of one."""
    d = t[(t.row_type == "decode") & (t.enc_backend == "eager")].drop_duplicates(["enc_host", "enc_run_id", "item"])
    if d.empty or d.scale_top_share.isna().all():
        return pd.DataFrame()
    g = d.dropna(subset=["scale_top_share"]).groupby(["codec", "quality", "weights_label"], sort=False, as_index=False)
    out = g.agg(images=("item", "count"), top_share=("scale_top_share", "median"),
                indexes_used=("scale_indexes_used", "median"), margin_ulps=("margin_ulps", "min"),
                at_risk=("at_risk", "sum"), degenerate=("degenerate", "all"))
    return style.sort_codecs(out)


def mitigation(t: pd.DataFrame) -> pd.DataFrame:
    m = t[t.row_type == "mitigation"] if "row_type" in t else t.iloc[:0]
    if m.empty:
        return pd.DataFrame()
    m = m.assign(mitigated=m["mitigated"] if "mitigated" in m else m.decoder)
    out = m.groupby(["codec", "quality", "weights_label", "mitigated"], sort=False, as_index=False).agg(
        images=("item", "count"), restored_share=("outcome", lambda s: float(s.isin(["identical", "close"]).mean())),
        mitigation_cost=("mitigation_cost", "median"))
    return style.sort_codecs(out)


def summary(mx: pd.DataFrame) -> pd.DataFrame:
    """One row for the decoders run here and one for the simulated platforms: configurations, encoder × decoder
    pairs, the pairs that lost an image (corrupt or error), that changed only the reconstruction's bits (close),
    and the largest share of a codec's images corrupted."""
    out = []
    for what, g in (("run here", mx[~mx.simulated]), ("simulated", mx[mx.simulated])) if len(mx) else ():
        if len(g):
            out.append({"decoders": what, "configurations": g.decoder_at.nunique(),
                        "codecs_decoded": g.codec.nunique(), "pairs": len(g), "lost_pairs": int(((g.corrupt_images + g.error_images) > 0).sum()),
                        "close_pairs": int((g.close_images > 0).sum()),
                        "max_corrupt_share": float(g.corrupt_images.max())})
    return pd.DataFrame(out)


def findings(page: Page, t: dict) -> None:
    """At most five sentences: the degenerate-weights warning (when it applies), the decoders run here, the
    simulated platforms, and the mitigation."""
    from .findings import fact

    mx, mg, mt, sm = t["matrix"], t["margins"], t["mitigation"], t["summary"]
    if not mg.empty and mg.degenerate.all():
        r = mg.loc[mg.top_share.idxmin()]
        page.findings.add("Every codec's entropy model here is degenerate (the least concentrated, {c} with {w}, "
                          "puts a share of {s} of its scale indexes at one table entry), so no decoder can "
                          "desynchronise and this matrix says nothing about a trained codec.", c=r.codec,
                          w=r.weights_label, s=fact(t, "margins", {"codec": r.codec, "quality": r.quality},
                                                    "top_share", "sig3"))
    f = lambda what, col: fact(t, "summary", {"decoders": what}, col, "int")  # noqa: E731
    if (sm.decoders == "run here").any():
        page.findings.add("Under the {n} decoder configurations run here, {b} of {m} encoder × decoder pairs lost an "
                          "image (corrupt or error); {c} kept every symbol but changed the reconstruction's bits "
                          "(close).", n=f("run here", "configurations"), b=f("run here", "lost_pairs"),
                          m=f("run here", "pairs"), c=f("run here", "close_pairs"))
    sim = mx[mx.simulated]
    if len(sim) and sim.corrupt_images.max() == 0:
        page.findings.add("The simulated platforms (h_s nudged by one ulp, and by TF32's rounding) corrupt no image "
                          "of the {n} codecs decoded here.", n=f("simulated", "codecs_decoded"))
    elif len(sim):
        worst = sim.loc[sim.corrupt_images.idxmax()]
        page.findings.add("The simulated platforms (h_s nudged by one ulp, and by TF32's rounding) corrupt at most {s} "
                          "of a codec's images ({c}, {d}).", s=fact(t, "matrix", {
                              "codec": worst.codec, "encoder": worst.encoder, "decoder_at": worst.decoder_at},
                              "corrupt_images", "sig3"), c=worst.codec, d=worst.decoder_at)
    if not mt.empty:
        r = mt.loc[mt.mitigation_cost.idxmax()]
        page.findings.add("Computing h_s in float64 on both sides restores {s} of the images of {c} that {d} "
                          "corrupted, at {x} the decode time.", c=r.codec, d=r.mitigated,
                          s=fact(t, "mitigation", {"codec": r.codec, "mitigated": r.mitigated}, "restored_share", "sig3"),
                          x=fact(t, "mitigation", {"codec": r.codec, "mitigated": r.mitigated}, "mitigation_cost", "x"))


#: the figure's colours: identical, close, corrupt, error (the worst outcome of a cell decides its colour)
COLOURS = {"identical": "#9ecae1", "close": "#f6d55c", "corrupt": "#d1495b", "error": "#303030"}


def fig_matrix(mx: pd.DataFrame):
    """Encoder (rows: codec · encoder) × decoder (columns), coloured by the worst outcome of the cell's images,
    the share of images of that outcome written in it where it is not every image."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if mx.empty:
        return None
    plt = style.setup()
    enc = mx.encoder.astype(str).str.split(" · ")  # host · backend · device · threads
    base = mx.codec.astype(str) + " · " + enc.str[:2].str.join(" ")
    # an encoder's thread count named where one codec, host and backend encoded with several (the standard profile's
    # 1-thread pass beside the main runs): one row each, not one row whose cells the last of them overwrote
    several = enc.str[3].groupby(base).transform("nunique") > 1
    d = mx.assign(row=base.where(~several, base + " " + enc.str[3]))
    order = {c: i for i, c in enumerate(dict.fromkeys(d.codec))}
    # per codec: eager first, the most threads first (the main run above its thread pass), then by name
    threads = [int(n) if (n := str(th).removesuffix("thr")).isdigit() else 0 for th in enc.str[3]]
    rank = {r: (order[c], b != "eager", -n, r) for r, c, b, n in zip(d.row, d.codec, enc.str[1], threads)}
    rows = sorted(rank, key=rank.get)
    cols = sorted(dict.fromkeys(d.decoder_at), key=lambda c: (" · h_s" in c, not c.split(" · ")[1] == "eager", c))
    worst = np.full((len(rows), len(cols)), np.nan)
    fig, ax = plt.subplots(figsize=(style.FIG_WIDTH, 1.6 + 0.24 * max(len(rows), 6)))
    for r in d.itertuples():
        i, j = rows.index(r.row), cols.index(r.decoder_at)
        shares = [getattr(r, f"{o}_images") for o in OUTCOMES]
        k = max(n for n, v in enumerate(shares) if v > 0)
        worst[i, j] = k
        if shares[k] < 1:
            ax.text(j, i, f"{shares[k]:.2g}", ha="center", va="center", fontsize=6,
                    color="white" if k >= 2 else "black")
    ax.imshow(np.ma.masked_invalid(worst), cmap=ListedColormap(list(COLOURS.values())), vmin=-0.5, vmax=3.5,
              aspect="auto")
    ax.set_xticks(range(len(cols)), [c.split(" · ", 1)[1] if c.count(" · ") else c for c in cols], rotation=30,
                  ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.legend(handles=[Patch(color=c, label=o) for o, c in COLOURS.items()], ncol=4, fontsize=7,
              loc="lower left", bbox_to_anchor=(0, 1.01), frameon=False)
    hosts = sorted({c.split(" · ")[0] for c in cols})
    return style.finish(fig, style.title("Decodability: encoder × decoder", d, [f"decoded on {', '.join(hosts)}"]))


def build(results_dir, reference=None, downloads_dir=None) -> Page:
    from ..runs.tidy import load_results

    page = Page("decodability")
    t = load_results(results_dir, "decodability")
    if t.empty:
        return page.nothing_yet("No cross-decodes yet: `make decodability` decodes the stored bitstreams under "
                                "each decoder configuration of this machine.",
                                "No cross-decodes here: `make decodability` (a phase of `make book`).", downloads_dir)
    mx = matrix(t)
    tables = {"matrix": mx, "margins": margins(t), "mitigation": mitigation(t), "summary": summary(mx)}
    findings(page, tables)
    page.header = ("The stored bitstreams of each run's first images (those its encoder fingerprinted: `DECODE_LIMIT`, "
                   "`FINGERPRINTS`) decoded again under another decoder: other thread counts, the deployment "
                   "backends, CUDA where present, another machine's results merged here, and two *simulated* "
                   "platforms (the hyper-synthesis output nudged by 1 ulp and by 2¹³ ulps, the size of a GPU's "
                   "TF32 rounding). *identical*: bit-exact; *close*: the same decoded symbols, other "
                   "reconstruction bits; *corrupt*: the entropy decoding desynchronised; *error*: the decoder "
                   "failed.\n\n" + style.weights_banner(t, extra="Decodability depends on the weights: with "
                                                          "random weights the scales sit at the bottom of the "
                                                          "table, so no decoder can desynchronise."))
    page.figure("matrix", fig_matrix(mx), "Each cell: one codec's bitstreams from one encoder (rows: codec · "
                "encoder's host and backend) decoded under one decoder configuration (columns: backend · device · "
                "threads, on the decoding host the title names), coloured by the worst outcome of its images, with "
                "that outcome's share of the images where it is not all of them. White: not decoded (a variant encoder's "
                "streams — a backend run's, a 1-thread pass's — are decoded by the reference decoder only).")
    # the question the table answers: did a decoder lose an image? The pairs that only changed the
    # reconstruction's bits (close) are counted, not listed: on a CPU they are most pairs, and listing them
    # made a 40-row table wider than the page; every pair is in the download
    page.table("matrix", present(tables["summary"], ["decoders", "configurations", "codecs_decoded", "pairs",
                                                      "lost_pairs", "close_pairs", "max_corrupt_share"]),
               "Encoder × decoder pairs per kind of decoder: those that lost an image (corrupt or error) and those "
               "that kept every symbol but changed the reconstruction's bits (close).")
    lost = mx[(mx.corrupt_images + mx.error_images) > 0]
    if len(lost):
        page.table("matrix", present(lost, ["codec", "encoder", "decoder_at", "images", "corrupt_images",
                                          "error_images", "degenerate", "example"]),
                   f"The {len(lost)} encoder × decoder pair(s) that lost an image (every pair, with the outcome of "
                   "each image, is in this page's download).")
    else:
        same = int((mx.identical_images == 1).sum())
        page.text("matrix", f"No encoder × decoder pair lost an image: of {len(mx)} pairs, {same} "
                  f"decoded every image bit-exactly and {int((mx.close_images > 0).sum())} kept every symbol but "
                  "changed the reconstruction's bits (every pair is in this page's download).")
    if not tables["margins"].empty:
        page.table("margins", present(tables["margins"], ["codec", "quality", "weights_label", "images", "top_share",
                                                          "indexes_used", "margin_ulps", "at_risk", "degenerate"]),
                   "How spread each encoder's scales are, and how close they came to a table boundary: a decoder "
                   "whose scales differ by more than the margin can desynchronise.")
    if not tables["mitigation"].empty:
        page.table("mitigation", present(tables["mitigation"], ["codec", "quality", "mitigated", "images",
                                                                "restored_share", "mitigation_cost"]),
                   "The float64 mitigation, measured where a decoder configuration corrupted an image.")
    else:  # the section's heading is in the notebook: say why it is empty and what would fill it
        page.text("mitigation", "No decoder configuration corrupted an image here, so the float64 mitigation (h_s "
                  "in float64 on both sides) was not measured: `make decodability` measures it wherever one does "
                  "— a trained codec (`make weights`), a GPU's results merged here, another machine's.")
    page.write(downloads_dir, tables)
    return page
