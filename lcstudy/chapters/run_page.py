"""The page of one run (the ``profile_codec`` notebook): where the time goes, MACs, memory, operators."""
from __future__ import annotations

import pandas as pd

from ..core.backends import BACKENDS
from ..core.instrument import StageKind
from . import style
from .page import Page
from .columns import ci_cell, present, summarise


def header_markdown(result) -> str:
    t = result.tables["timings"]
    r = result.run
    req = r.meta["request"]
    env = r.meta["environ"]
    i = t.iloc[0]
    rule = req["rule"]
    if rule["min_repeats"] == rule["max_repeats"]:
        reps = f"{rule['min_repeats']} repeats per image"
    else:
        reps = (f"{rule['min_repeats']}–{rule['max_repeats']} repeats per image (stop at a 95 % interval within "
                f"±{rule['target']:.0%} of the median, or after {rule['budget_s']:g} s of codings)")
    if req.get("sizes"):
        size = f"image(s) at {len(req['sizes'])} sizes ({', '.join(req['sizes'])})"
    else:
        size = (f"{int(i.crop)}×{int(i.crop)} centre crops" if pd.notna(i.crop) else
                f"synthetic {i.resize} images" if isinstance(i.get("resize"), str) else "full-size images")
    runs = result.tables["runs"].iloc[0]
    lines = [f"**{i.codec} q{i.quality}** on **{i.device}** — platform *{i.platform}*, node(s) `{runs.nodes}`, "
             f"{i.threads} threads; {t.image.nunique()} {size}; {reps}; weights: **{env.get('weights_label')}**; "
             f"channels {env.get('codec_channels')}; stage split: {env.get('codec_family')}; torch "
             f"{i.torch_version}, CompressAI {i.compressai_version}; backend **{req.get('backend') or 'eager'}**"
             f"{deployed_words(env.get('deployment'))}; run `{i.run_id}`.",
             f"\nRepeats made: {int(runs.repeats)} ({int(runs.contended)} contended by other processes and "
             f"measured again: {runs.contended_share:.1%}); stopped by: {runs.stops}." + reference_words(runs)]
    lines.append(contended_note(r))
    if env.get("codec_family") == "generic":
        lines.append("\n```{note}\nThis codec does not follow CompressAI's module names, so its time is split by "
                     "its top-level modules, each timed as a whole: a coarser split than the other codecs'.\n```")
    banner = style.weights_banner(t)
    if banner:
        lines.append("\n" + banner)
    for n in result.codec_notes:
        lines.append(f"\n- {n}")
    for n in sorted({n for rec in r.items() for n in rec.get("notes", [])}):
        lines.append(f"\n- {n}")
    return "\n".join(lines)


def reference_words(runs) -> str:
    """The machine's speed during the run, in words: the fixed reference workload's median over its probes
    (start, between items, end; :mod:`lcstudy.core.drift`) and how far it moved within the run, flagged past
    the bound — so a reader can tell a slow run from a slow machine."""
    from ..core import drift

    sec, dr, n = (runs.get(k) for k in ("ref_seconds", "ref_drift", "ref_probes"))
    if sec is None or pd.isna(sec):
        return (" Reference workload: not measured in this run (run before it was added, or every probe "
                "contended).")
    # the runs table's flag where it has one (bounds from the platform's usual noise, drift.bounds), else the floor
    flagged = runs.get("ref_flag")
    why = flagged if isinstance(flagged, str) else drift.flag(dr, float("nan"))
    return (f" Reference workload (the machine's speed, {int(n)} probe{'s' if n != 1 else ''}): {sec * 1e3:.1f} ms, "
            f"slowest probe {dr:.2f}× the fastest" + (f" — **flagged**: {why}." if why else
                                                      " (within its platform's bound)."))


def deployed_words(dep: dict | None) -> str:
    """How a backend run deployed the codec, in words (nothing for eager)."""
    if not dep:
        return ""
    out = (f" ({dep['precision']}: {', '.join(dep['modules'])}; eager timed beside it in this process; "
           f"setup {sum(dep['setup_seconds'].values()):.2f} s, one-off; model {dep['model_bytes']:,} bytes against "
           f"eager's {dep['eager_model_bytes']:,}")
    if dep.get("kept_fp32"):
        out += f"; left fp32 by the quantizer: {', '.join(dep['kept_fp32'])}"
    if dep.get("eager_modules"):
        out += f"; left eager: {', '.join(dep['eager_modules'])}"
    return out + ")"


def contended_note(run) -> str:
    """A run that ended with all-contended items: the page names them (they are blank in its tables), in the
    words the terminal used (:func:`lcstudy.runs.protocol.contended_statement`)."""
    from ..runs.protocol import contended_statement

    text = contended_statement(run.meta)
    return f"\n```{{warning}}\n{text[0].upper()}{text[1:]}\n```\n" if text else ""


def measured(t: pd.DataFrame) -> pd.DataFrame:
    """The rows of the items that were measured (an all-contended item has no time: it is named, not drawn)."""
    return t[t.stop != "contended"] if "stop" in t and not t.empty else t


def stage_rows(t: pd.DataFrame, kinds=(StageKind.PARTITION, StageKind.AGGREGATE)) -> pd.DataFrame:
    d = t[t.stage_kind.isin(kinds) & (t.stage != "network")]
    s = summarise(d, ["direction", "stage"])
    tot = s[s.stage == "total"].set_index("direction")["median"]
    s["share_pct"] = [100 * m / tot.get(dr, float("nan")) for dr, m in zip(s.direction, s["median"])]
    order = {x: i for i, x in enumerate(list(style.ordered_stages(s.stage)) + ["total"])}
    s = s.assign(_d=s.direction.map({"encode": 0, "decode": 1}), _s=s.stage.map(lambda x: order.get(x, 99)))
    s = s.sort_values(["_d", "_s"]).drop(columns=["_d", "_s"]).reset_index(drop=True)
    s["median_s"] = ci_cell(s)
    return s


def fig_stages_per_image(t: pd.DataFrame, label: str):
    plt = style.setup()
    fig, axes = plt.subplots(1, 2, figsize=(style.FIG_WIDTH, 3.4))
    for ax, direction in zip(axes, ("encode", "decode")):
        d = t[(t.direction == direction) & (t.stage_kind == StageKind.PARTITION)]
        w = d.pivot_table(index="item" if "item" in d else "image", columns="stage", values="seconds", sort=False)
        if w.empty:  # every repeat of every item contended: nothing measured to draw
            ax.text(0.5, 0.5, "no uncontended repeat", ha="center", va="center", transform=ax.transAxes)
            ax.set(title=direction)
            continue
        cols = style.ordered_stages(w.columns)
        w[cols].plot.bar(stacked=True, ax=ax, color=style.stage_colors(cols), width=0.8, legend=False)
        ax.set(title=direction, ylabel="seconds (median of repeats)", xlabel="")
        ax.tick_params(axis="x", labelrotation=90)
    style.legend_above(fig)
    return style.finish(fig, f"Stage times per image — {label}")


def fig_kernels(k: pd.DataFrame, label: str):
    if k.empty:
        return None
    plt = style.setup()
    k = k[k.op_kind == ("cuda_kernel" if (k.op_kind == "cuda_kernel").any() else "cpu_op")]
    g = k.groupby(["direction", "category"]).share.sum().unstack(fill_value=0).reindex(["encode", "decode"])
    g = g[[c for c in style.palette("category") if c in g.columns] + sorted(set(g.columns) - set(
        style.palette("category")))]
    fig, ax = plt.subplots(figsize=(style.FIG_WIDTH, 2.4))
    g.plot.barh(stacked=True, ax=ax, color=style.colors("category", g.columns))
    ax.set(xlabel="share of the call's time", ylabel="", xlim=(0, 1))
    ax.invert_yaxis()
    style.legend_outside(ax, title="operator category")
    return style.finish(fig, f"Operator categories — {label}")


def _in_run_order(df: pd.DataFrame, result) -> pd.DataFrame:
    """A run of several sizes: its items in the order measured (smallest first), not by file name."""
    if df.empty or not result.run.meta["request"].get("sizes"):
        return df
    order = {k: n for n, k in enumerate(result.run.meta.get("items", []))}
    return df.iloc[df["item"].map(order).argsort(kind="stable")]


def build(result) -> Page:
    page = Page("run")
    page.header = header_markdown(result)
    t = measured(_in_run_order(result.tables["timings"], result))
    if t.empty:  # every item contended: the header says so; there is nothing to tabulate
        return page
    backend = result.run.meta["request"].get("backend") or "eager"
    if backend != "eager":  # a backend run: its own rows below; eager's, timed beside it, in the comparison
        from .deployment import speedups

        sp = speedups(t)
        page.table("deployment", present(sp, ["direction", "stage", "eager_s", "backend_s", "speedup_vs_eager", "images"]),
                   f"{backend} against eager, timed side by side in this run (eager over {backend} per image, median "
                   f"over images). Bitstream byte-identical to eager's on "
                   f"{int(t[t.stage == 'total'].groupby('image').identical_bitstream.first().sum())} of "
                   f"{t.image.nunique()} images.")
        t = t[t.backend == backend]
    i = t.iloc[0]
    label = f"{i.codec} q{i.quality} · {i.platform} · {style.weights_text(t)}"
    sized = bool(result.run.meta["request"].get("sizes"))
    if sized:  # a run of several sizes: one table per item, sizes not mixed
        s = pd.concat([stage_rows(g).assign(item=k) for k, g in t.groupby("item", sort=False)], ignore_index=True)
        page.table("stages", present(s, ["item", "direction", "stage", "median_s", "share_pct"]),
                   "Each item (image@size): its median over repeats; `misc` is the total minus the stages.")
    else:
        s = stage_rows(t)
        page.table("stages", present(s, ["direction", "stage", "median_s", "share_pct", "images"]),
                   "Median over images of each image's median over repeats, ± half its 95 % interval over images "
                   "(blank below 6 images); `misc` is the total minus the stages.")
    bar = "one image at one size (image@size)" if sized else "one image"  # a run of several sizes names them
    page.figure("per_image", fig_stages_per_image(t, label) if t.seconds.notna().any() else None,
                f"Each bar is {bar}; the colours are the stages, bottom to top in coding order — compare the "
                "height of the entropy-coding stages with the transforms.")
    subs = t[t.stage_kind == StageKind.SUB]
    if not subs.empty:
        ss = summarise(subs, ["direction", "stage"])
        ss["median_s"] = ci_cell(ss)
        page.table("substages", present(ss, ["direction", "stage", "median_s", "images"]),
                   "Inside the entropy coding of y: context model, entropy parameters, rANS and the rest of the loop.")
    cx = result.tables["complexity"]
    if cx.empty:
        page.text("complexity", "MACs were not counted in this run (MACS=false); the main run of this codec has them.")
    else:
        c = cx.assign(params_m=cx.model_params / 1e6)
        # two narrow tables, not one wide one: the counts, then how far the two counters agree
        page.table("complexity", present(c, ["direction", "stage", "count_mode", "gmac", "kmac_per_px", "params"]),
                   "ptflops (`backend='aten'`) on the shapes each stage sees.")
        page.table("complexity", present(c, ["direction", "stage", "mac_vs_torch", "uncounted"]),
                   "The count against torch's FlopCounterMode (1 = equal), and the modules with parameters that "
                   "neither counter counted.")
    mem = _in_run_order(result.tables["memory"], result)
    if "backend" in mem:
        mem = mem[mem.backend == backend]
    if not mem.empty:
        m = mem[~mem.contended.astype(bool)] if "contended" in mem else mem
        by = (["item"] if result.run.meta["request"].get("sizes") else []) + ["direction", "memory", "method"]
        mm = m.groupby(by, as_index=False, sort=False)[["baseline_mb", "peak_mb", "working_mb"]].median()
        page.table("memory", present(mm, by[:-1] + ["baseline_mb", "peak_mb", "working_mb", "method"]),
                   "Memory around the timed calls, median over " + ("repeats, per item." if len(by) == 4 else
                                                                    "images and repeats."))
    k = result.tables["kernels"]
    if not k.empty:
        top = k[~k.op.str.startswith("(rest")].sort_values("self_seconds", ascending=False) \
            .groupby(["direction", "op_kind"]).head(8)
        page.table("ops", present(top, ["direction", "op", "category", "self_seconds", "calls", "share"]),
                   "The heaviest operators of one encode and one decode (torch.profiler, self time)"
                   + (f", on a {int(k.height.iloc[0])}×{int(k.width.iloc[0])} crop" if "height" in k and
                      int(k.height.iloc[0]) < int(t.height.max()) else "") + ".")
        page.figure("kernels", fig_kernels(k, label), "The share of each operator category in the call's time; "
                    "'outside torch ops' is the Python loop and the entropy coder"
                    + (f", and under {backend} the transforms' ONNX Runtime operators." if backend in BACKENDS
                       and BACKENDS[backend].outside_torch else "."))
    return page
