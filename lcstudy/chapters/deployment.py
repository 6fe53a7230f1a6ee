"""Chapter "Deployment": what each codec costs when its transforms are deployed — ``channels_last``,
``torch.compile``, bf16/fp16 autocast, int8 (PT2E) or ONNX Runtime — not only run in eager fp32, and
what it loses to get there.

Every speed-up here is measured **side by side in one process**: a backend run times ``eager`` on
the same items, alternating which goes first per repeat (:class:`lcstudy.runs.learned.BackendSubject`),
because two separate runs of the same thing drift apart by more than several of these speed-ups.
One-off costs (export, calibration, compilation) are kept apart from the medians.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.backends import BACKENDS
from ..core.instrument import StageKind
from . import style
from .page import Page
from .study import load
from .columns import present

TITLE = "Deployment"
KEYS = ["platform", "codec", "quality", "backend", "direction", "stage"]
#: the heat map's rows per codec: the transforms the backend runs, and the whole coding
HEATMAP_STAGES = ("network", "total")


def _backend_order(names) -> list[str]:
    from ..core.backends import BACKENDS

    return [b for b in BACKENDS if b in set(names)]


def speedups(t: pd.DataFrame) -> pd.DataFrame:
    """Per platform, codec, quality, backend, direction and stage of the backend runs in ``t`` (timings
    rows, each backend's and the eager rows timed beside it): eager's and the backend's time (median over
    images) and the speed-up (eager over backend per image, median over images; > 1: faster)."""
    if t.empty or "run_backend" not in t or not (t.run_backend != "eager").any():
        return pd.DataFrame()
    d = t[(t.run_backend != "eager") & (t.stage_kind.isin([StageKind.PARTITION, StageKind.AGGREGATE]))]
    keys = ["platform", "codec", "quality", "run_backend", "run_id", "image", "direction", "stage"]
    own = d[d.backend == d.run_backend].set_index(keys).seconds.rename("backend_s")
    ref = d[d.backend == "eager"].set_index(keys).seconds.rename("eager_s")
    per = pd.concat([own, ref], axis=1, join="inner").reset_index()
    per = per[per.backend_s > 0]
    per["speedup"] = per.eager_s / per.backend_s
    out = per.groupby(["platform", "codec", "quality", "run_backend", "direction", "stage"], as_index=False,
                      sort=False).agg(eager_s=("eager_s", "median"), backend_s=("backend_s", "median"),
                                      speedup_vs_eager=("speedup", "median"), images=("image", "nunique"))
    flags = d.drop_duplicates("platform").set_index("platform").get("cpu_flags")
    out["cpu_flags"] = out.platform.map(flags) if flags is not None else ""
    out = out.rename(columns={"run_backend": "backend"})
    order = {b: i for i, b in enumerate(_backend_order(out.backend))}
    stages = {s: i for i, s in enumerate(list(style.ordered_stages(out.stage.unique())) + ["network", "total"])}
    out = out.assign(_b=out.backend.map(order), _d=out.direction.map({"encode": 0, "decode": 1}),
                     _s=out.stage.map(lambda s: stages.get(s, 99)))
    return style.sort_codecs(out, then=["platform", "_b", "_d", "_s"]).drop(columns=["_b", "_d", "_s"]) \
        .reset_index(drop=True)


def rd_price(t: pd.DataFrame) -> pd.DataFrame:
    """Per platform, codec, quality and backend: bpp, PSNR and MS-SSIM of the backend and of eager with the
    same weights on the same images (medians over images), their differences, and the share of images whose
    bitstream is byte-identical to eager's."""
    if t.empty or "run_backend" not in t:
        return pd.DataFrame()
    d = t[(t.run_backend != "eager") & (t.stage == "total") & (t.direction == "encode")]
    if d.empty:
        return pd.DataFrame()
    rows = []
    for (plat, codec, q, b), g in d.groupby(["platform", "codec", "quality", "run_backend"], sort=False):
        own, ref = g[g.backend == b], g[g.backend == "eager"]
        row = {"platform": plat, "codec": codec, "quality": int(q), "backend": b, "images": own.image.nunique(),
               "weights_label": g.weights_label.iloc[0]}
        for m in ("bpp", "psnr", "ms_ssim"):
            row[m] = float(own[m].median())
            row[f"eager_{m}"] = float(ref[m].median())
        mo = own.set_index("image")[["bpp", "psnr", "ms_ssim"]]
        mr = ref.set_index("image")[["bpp", "psnr", "ms_ssim"]]
        row["delta_bpp_pct"] = float(100 * (mo.bpp / mr.bpp - 1).median())
        row["delta_psnr_db"] = float((mo.psnr - mr.psnr).median())
        row["delta_ms_ssim"] = float((mo.ms_ssim - mr.ms_ssim).median())
        row["identical_share"] = float(own.identical_bitstream.astype(float).mean())
        row["identical_count"] = int(own.identical_bitstream.astype(bool).sum())
        rows.append(row)
    return _by_backend(pd.DataFrame(rows))


def costs(t: pd.DataFrame) -> pd.DataFrame:
    """Per platform, codec, quality and backend: the one-off costs (setup: export, calibration, conversion;
    the untimed first coding of each new input shape: compilation, first-run allocation), the model's bytes
    at its precision against eager's, and the layers the quantizer left fp32."""
    if t.empty or "run_backend" not in t:
        return pd.DataFrame()
    d = t[(t.run_backend != "eager") & (t.backend == t.run_backend) & (t.stage == "total")]
    if d.empty:
        return pd.DataFrame()
    cols = [c for c in ("setup_seconds", "model_bytes", "eager_model_bytes", "precision", "kept_fp32",
                        "deployed_modules", "max_rel_diff") if c in d]
    g = d.groupby(["platform", "codec", "quality", "run_backend"], as_index=False, sort=False)
    out = g.agg(prime_seconds=("prime_seconds", "max"), **{c: (c, "first") for c in cols})
    out = out.rename(columns={"run_backend": "backend"})
    if "model_bytes" in out:
        out["model_ratio"] = out.model_bytes / out.eager_model_bytes
    return _by_backend(out)


#: the backends whose transforms run outside torch (:attr:`Backend.outside_torch`)
OUTSIDE_TORCH = [b.name for b in BACKENDS.values() if b.outside_torch]


def profile_top(k: pd.DataFrame) -> pd.DataFrame:
    """Per platform, codec, quality, backend and direction of the backend runs' operator profiles (``k``: the
    kernels rows; each run profiles one coding of its first image under its backend): the operator with the most
    self time, its category, seconds and share of the profiled coding's wall time. What still runs in torch: under
    ``onnxruntime`` the transforms' operators are ONNX Runtime's and appear only as time outside torch ops, so for
    that backend the time outside torch ops competes too (elsewhere it is Python and the entropy coder's C++, no
    operator of the backend's)."""
    if k is None or k.empty or "run_backend" not in k:
        return pd.DataFrame()
    outside = (k.op == "outside torch ops") & ~k.run_backend.isin(OUTSIDE_TORCH)
    d = k[(k.run_backend != "eager") & (k.backend == k.run_backend) & (k.op_kind == "cpu_op")
          & ~outside & ~k.op.astype(str).str.startswith("(rest")]
    if d.empty:
        return pd.DataFrame()
    keys = ["platform", "codec", "quality", "run_backend", "direction"]
    top = d.loc[d.groupby(keys, sort=False).self_seconds.idxmax()]
    out = top[keys + ["op", "category", "self_seconds", "wall_seconds", "share", "calls"]].rename(
        columns={"run_backend": "backend", "share": "op_share"})
    return _by_backend(out)


def _by_backend(out: pd.DataFrame) -> pd.DataFrame:
    """Rows in the codecs' order, then platform, then the backends' order (as the heat map's columns)."""
    order = {b: i for i, b in enumerate(_backend_order(out.backend))}
    return style.sort_codecs(out.assign(_b=out.backend.map(order)), then=["platform", "_b"]).drop(columns="_b") \
        .reset_index(drop=True)


#: |log₂ speed-up| beyond which a heat-map cell is dark enough in RdBu (±2 at its ends) to need white text
HEATMAP_DARK_LOG2 = 1.0


def fig_heatmap(sp: pd.DataFrame):
    """Speed-up per codec × {transforms, whole coding} (rows) and backend (columns), encode and decode side by
    side. Only the network and total rows: every stage of every codec made ~70 rows a direction in the quick
    book, too many to read at the book's width; each stage's speed-up is in the page's download."""
    plat = (style.main_platforms(sp) or [sp.platform.iloc[0]])[0]
    sp = sp[(sp.platform == plat) & sp.stage.isin(HEATMAP_STAGES)]
    plt = style.setup()
    backends = _backend_order(sp.backend)
    rows_max = max(len(sp[sp.direction == d][["codec", "stage"]].drop_duplicates()) for d in ("encode", "decode"))
    fig, axes = plt.subplots(1, 3, figsize=(style.FIG_WIDTH, 0.9 + 0.22 * max(rows_max, 8)),
                             gridspec_kw={"width_ratios": [1, 1, 0.05]})
    im = None
    for ax, direction in zip(axes[:2], ("encode", "decode")):
        d = sp[sp.direction == direction]
        if d.empty:
            ax.axis("off")
            continue
        rows = d[["codec", "stage"]].drop_duplicates()
        labels = [f"{str(c).split(':')[-1]} · {s}" for c, s in zip(rows.codec, rows.stage)]
        w = d.pivot_table(index=["codec", "stage"], columns="backend", values="speedup_vs_eager", sort=False)
        w = w.reindex(pd.MultiIndex.from_frame(rows)).reindex(columns=backends)
        v = np.log2(w.to_numpy(dtype=float))
        im = ax.imshow(v, cmap="RdBu", vmin=-2, vmax=2, aspect="auto")
        ax.set_xticks(range(len(backends)), backends, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for i in range(v.shape[0]):
            for j in range(v.shape[1]):
                if np.isfinite(v[i, j]):  # white on the dark ends of the scale (beyond 0.5× and 2×), black elsewhere
                    ax.text(j, i, f"{w.iloc[i, j]:.2g}", ha="center", va="center", fontsize=6,
                            color="white" if abs(v[i, j]) > HEATMAP_DARK_LOG2 else "black")
        ax.set_title(direction)
    if im is not None:
        bar = fig.colorbar(im, cax=axes[2], label="speed-up over eager (blue: faster)")
        ticks = np.arange(-2, 3)  # the colour is log₂ of the speed-up; its ticks read as speed-ups
        bar.set_ticks(ticks, labels=[f"{2.0 ** t:g}×" for t in ticks])
    return style.finish(fig, style.title("Speed-up over eager per stage and backend", sp, [plat]))


def findings(page: Page, t: dict) -> None:
    """At most six sentences whatever the number of codecs and backends (the chapters' rule): on the main
    platform, which backend decodes each codec fastest (names only), the largest gain per direction, the
    largest slow-down of a transform with the CPU's flags, and each lossy backend's largest change in
    quality."""
    from .findings import fact

    sp, rd = t["speedup"].dropna(subset=["speedup_vs_eager"]), t["rd_price"]
    if sp.empty:
        return
    plat = (style.main_platforms(sp) or [sp.platform.iloc[0]])[0]
    sp = sp[sp.platform == plat]
    k = lambda r: {"platform": r.platform, "codec": r.codec, "quality": r.quality, "backend": r.backend,  # noqa: E731
                   "direction": r.direction, "stage": r.stage}
    tot = sp[sp.stage == "total"]
    dec = tot[tot.direction == "decode"]
    if len(dec):
        best = dec.loc[dec.groupby("codec", sort=False).speedup_vs_eager.idxmax()]
        # eager itself where no backend beat it (a median speed-up of 1 or less)
        best = best.assign(winner=best.backend.where(best.speedup_vs_eager > 1, "eager"))
        by = {b: ", ".join(str(c).split(":")[-1] for c in g.codec) for b, g in best.groupby("winner", sort=False)}
        page.findings.add("On {p}, the fastest decoder of each codec is " + "; ".join(
            f"{{b{i}}}'s for {{c{i}}}" for i in range(len(by))) + ".", p=plat,
            **{f"b{i}": b for i, b in enumerate(by)}, **{f"c{i}": c for i, c in enumerate(by.values())})
    for direction in ("decode", "encode"):
        g = tot[tot.direction == direction]
        if len(g) and g.speedup_vs_eager.max() > 1:
            r = g.loc[g.speedup_vs_eager.idxmax()]
            page.findings.add("The largest {d} gain: {c} under {b}, at {x} eager's speed ({s} s against {e} s).",
                              d=direction, c=r.codec, b=r.backend, x=fact(t, "speedup", k(r), "speedup_vs_eager", "x"),
                              s=fact(t, "speedup", k(r), "backend_s", "s"), e=fact(t, "speedup", k(r), "eager_s", "s"))
    slow = sp[(sp.stage.isin(["g_a", "g_s"])) & (sp.speedup_vs_eager < 1)]
    if len(slow):
        r = slow.loc[slow.speedup_vs_eager.idxmin()]
        sentence = ("The largest slow-down of a transform: {c}'s {st} under {b} runs at {x} eager's speed "
                    "on {p}, whose CPU flags are {f} (bf16 and int8 have native instructions only with "
                    "avx512_bf16/amx_bf16 and avx512_vnni/avx_vnni/amx_int8)")
        facts = dict(c=r.codec, st=r.stage, b=r.backend, p=r.platform, f=r.get("cpu_flags") or "unknown",
                     x=fact(t, "speedup", k(r), "speedup_vs_eager", "x"))
        top = t.get("profile_top", pd.DataFrame())
        kp = {"platform": r.platform, "codec": r.codec, "quality": r.quality, "backend": r.backend,
              "direction": r.direction}
        mine = top[(top.platform == r.platform) & (top.codec.astype(str) == str(r.codec)) & (top.backend == r.backend)
                   & (top.direction == r.direction)] if not top.empty else top
        if len(mine) and mine.iloc[0].op == "outside torch ops":
            # ONNX Runtime's operators are not torch's: its profile holds them only as time outside torch ops
            sentence += ("; its transforms run in ONNX Runtime, whose operators torch's profiler does not see: that "
                         "run's operator profile of one {d} puts its largest share, {o}, outside torch ops ({os} s, "
                         "against {e} s for eager's whole {st})")
            facts.update(d=r.direction, o=fact(t, "profile_top", kp, "op_share", "frac"),
                         os=fact(t, "profile_top", kp, "self_seconds", "s"),
                         e=fact(t, "speedup", k(r), "eager_s", "s"))
        elif len(mine):
            row = mine.iloc[0]
            # why, in the operator profile's words: the operator that took the most of that coding under it
            sentence += ("; that run's operator profile of one {d} puts its largest share, {o}, in {op} "
                         "({oc}: {os} s over {n} calls, against {e} s for eager's whole {st})")
            facts.update(d=r.direction, op=row.op, oc=row.category, n=fact(t, "profile_top", kp, "calls", "int"),
                         o=fact(t, "profile_top", kp, "op_share", "frac"),
                         os=fact(t, "profile_top", kp, "self_seconds", "s"),
                         e=fact(t, "speedup", k(r), "eager_s", "s"))
        page.findings.add(sentence + ".", **facts)
    if not rd.empty:
        kr = lambda r: {"platform": r.platform, "codec": r.codec, "quality": r.quality, "backend": r.backend}  # noqa
        lossy = rd[rd.backend.isin(["int8", "bf16"])].dropna(subset=["delta_psnr_db", "delta_bpp_pct"])
        for _, g in lossy.groupby("backend", sort=False):  # the largest change in quality per lossy backend
            r = g.loc[g.delta_psnr_db.abs().idxmax()]
            page.findings.add("{b} changes PSNR by at most {d} dB (on {c}; its rate by {r}) against eager with the "
                              "same weights ({w}); {i} of that codec's {n} images keep eager's bitstream byte for byte.",
                              b=r.backend, c=r.codec, w=r.weights_label,
                              d=fact(t, "rd_price", kr(r), "delta_psnr_db", "db"),
                              r=fact(t, "rd_price", kr(r), "delta_bpp_pct", "pct"),
                              i=fact(t, "rd_price", kr(r), "identical_count", "int"),
                              n=fact(t, "rd_price", kr(r), "images", "int"))


def build(results_dir, reference=None, downloads_dir=None) -> Page:
    lcs = load(results_dir)
    page = Page("deployment")
    dep = lcs.deployment or {}
    t = dep.get("timings", pd.DataFrame())
    sp, rd, oc = speedups(t), rd_price(t), costs(t)
    tables = {"speedup": sp, "rd_price": rd, "costs": oc, "profile_top": profile_top(dep.get("kernels"))}
    if sp.empty:
        page.findings.missing("No backend run here: `make run CODEC=HP BACKEND=onnxruntime` (or the standard profile, "
                              "`make runs`, which runs every backend at each codec's lowest quality) measures one.")
    else:
        findings(page, tables)
        if not page.findings.items:
            page.findings.missing("Every repeat of the backend runs here was contended by other processes, so no "
                                  "speed-up was measured: run `make runs` again on a quieter machine.")
    page.header = ("Each backend runs the transforms (`g_a`, `h_a`, `h_s`, `g_s`); the entropy coders, the context "
                   "model and the entropy-parameter networks stay CompressAI's eager code. Eager is timed beside "
                   "each backend in the same process, alternating per repeat, so each speed-up compares like with "
                   "like. Under ONNX Runtime the operators are ONNX Runtime's, not aten's: the operator profile of a "
                   "backend run shows only what still runs in torch.\n\n"
                   + (style.weights_banner(t, extra="The speed-ups hold (network time does not depend on the "
                                              "weights), but a backend's Δ PSNR and Δ rate do not: random entropy "
                                              "models are degenerate, so they say nothing about a trained codec.")
                      if not t.empty else ""))
    if not sp.empty:
        page.figure("heatmap", fig_heatmap(sp), "Each cell: eager's time over the backend's for one codec's "
                    "transforms (network) or whole coding (total), median over images; blue: the backend is faster, "
                    "red: slower. Every stage's speed-up is in this page's download.")
        # the heat map answers "which backend, how much faster"; its rows (64 in the quick book) would be read
        # in minutes, so they go to the download, as the roofline's do
        page.text("heatmap", f"The {len(sp)} rows behind the heat map (eager's and the backend's median time and the "
                  "speed-up, per codec, backend, direction and stage, every stage) are the table "
                  "`lcstudy_deployment_speedup.csv` on the {doc}`Data <data>` page.")
    if not oc.empty:
        page.table("costs", present(oc, [c for c in ["codec", "platform", "backend", "precision", "setup_seconds",
                                                      "prime_seconds", "model_bytes", "model_ratio", "kept_fp32"]
                                          if c in oc]),
                   "One-off costs, never in a median: setup (export, calibration, conversion) and the first "
                   "coding of a new input shape (compilation); the model's size at the backend's precision.")
    if not rd.empty:
        page.table("rd", present(rd, ["codec", "platform", "backend", "bpp", "psnr", "delta_bpp_pct",
                                      "delta_psnr_db", "delta_ms_ssim", "identical_share", "images"]),
                   "The rate-distortion price of each backend against eager with the same weights.")
    page.write(downloads_dir, tables)
    return page
