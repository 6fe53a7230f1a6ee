"""What the notebooks call: run one profile, and the tables and figures of the book.

The notebooks stay thin (a parameters cell, calls into here, the figures); every table
and figure is derived from the tidy tables that :func:`lcstudy.load_results` returns,
and every title names codec, device, host and the weights used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import results as _results  # noqa: E402
from .codecs import CODECS, load_codec  # noqa: E402
from .complexity import count_complexity  # noqa: E402
from .errors import InputError  # noqa: E402
from .images import RESIZE_FILTER, list_images, load_image  # noqa: E402
from .lock import timing_lock  # noqa: E402
from .profile import profile  # noqa: E402

STAGE_ORDER = ["g_a", "h_a", "AEz", "ADz", "h_s", "AEy", "ADy", "g_s", "misc"]
CODEC_ORDER = [s.label for s in CODECS]
PALETTE = dict(zip(STAGE_ORDER, sns.color_palette("tab10", len(STAGE_ORDER))))
WEIGHTS_NOTE = ("Random weights (seeded): network time, MACs, parameters and memory do not depend on the weights; "
                "entropy-coding time (AEz/ADz/AEy/ADy), bitrate and quality do, so those are not what the "
                "pretrained codecs would give.")


@dataclass
class ProfileRun:
    timings: pd.DataFrame
    complexity: pd.DataFrame
    memory: pd.DataFrame
    kernels: pd.DataFrame
    run_dir: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def info(self) -> dict:
        r = self.timings.iloc[0]
        return {k: r[k] for k in ("codec", "quality", "device", "host", "weights", "threads", "cpu_model",
                                  "gpu_name", "repeats", "crop", "resize", "run_id", "torch_version", "compressai_version")}

    @property
    def label(self) -> str:
        i = self.info
        return f"{i['codec']} q{i['quality']} · {i['device']} @ {i['host']} · {i['threads']} thr · {i['weights']} weights"


def _none(v):
    return None if v in (None, "", "None", "none") else v


def run_profile(codec: str, quality: int = 1, device: str = "cpu", threads=None, images="data/kodak", limit=None,
                crop=None, repeats: int = 3, warmup: int = 1, weights: str = "random", seed: int = 0,
                results_dir="results", wait: bool | None = None, progress: bool = True, resize=None,
                kernels: bool = True, macs: bool = True) -> ProfileRun:
    """Load, profile (under the machine-wide timing lock) and count one codec; save everything.

    ``resize="WxH"`` measures synthetic W×H versions of the images (resolution scaling);
    ``kernels=False`` skips the profiler pass and ``macs=False`` the MAC count (both cost one or
    more extra codings, minutes per coding for an autoregressive codec at 4K; MACs per pixel do
    not depend on the size).
    """
    threads, limit, crop, resize = _none(threads), _none(limit), _none(crop), _none(resize)
    if wait is None:  # NOWAIT=1 (make) sets LCSTUDY_NOWAIT: refuse instead of queueing behind another run
        import os

        wait = not os.environ.get("LCSTUDY_NOWAIT")
    notes: list[str] = []
    c = load_codec(codec, quality, weights=weights, device=device, seed=seed)
    notes += c.notes
    paths = list_images(images, limit)
    with timing_lock(f"{c.label} q{c.quality} on {device}", wait=wait):
        df = profile(c, paths, repeats=repeats, warmup=warmup, crop=crop, threads=threads, results_dir=results_dir,
                     progress=progress, log=lambda m: (notes.append(m), print(m, flush=True)), resize=resize,
                     kernels=bool(kernels))
    if not macs:
        return ProfileRun(df, pd.DataFrame(), df.attrs.get("memory", pd.DataFrame()),
                          df.attrs.get("kernels", pd.DataFrame()), df.attrs.get("run_dir"), notes)
    first = load_image(paths[0], crop=crop, resize=resize)
    # counting MACs is not timing: it runs outside the lock
    cx = count_complexity(c, first.height, first.width)
    base = df.iloc[0]
    for k in ("run_id", "weights", "threads", "torch_version", "compressai_version", "git_commit", "cpu_model",
              "gpu_name", "device", "host"):
        cx.insert(0, k, base[k])
    if df.attrs.get("run_dir"):
        _results.save_table(cx, df.attrs["run_dir"], "complexity")
    return ProfileRun(df, cx, df.attrs.get("memory", pd.DataFrame()), df.attrs.get("kernels", pd.DataFrame()),
                      df.attrs.get("run_dir"), notes)


# --- one run --------------------------------------------------------------------------

def header_markdown(run: ProfileRun) -> str:
    i = run.info
    lines = [f"**{i['codec']} q{i['quality']}** on **{i['device']}** ({i['gpu_name'] or i['cpu_model']}), host "
             f"`{i['host']}`, {i['threads']} threads, {i['repeats']} repeats"
             + (f", {i['crop']}×{i['crop']} centre crop" if pd.notna(i["crop"]) else
                f", synthetic {i['resize']} images ({RESIZE_FILTER})" if isinstance(i.get("resize"), str)
                else ", full-size images")
             + f"; torch {i['torch_version']}, CompressAI {i['compressai_version']}; run `{i['run_id']}`."]
    if i["weights"] == "random":
        lines.append(f"\n```{{warning}}\n{WEIGHTS_NOTE}\n```")
    for n in run.notes:
        lines.append(f"\n- {n}")
    return "\n".join(lines)


def stage_table(df: pd.DataFrame) -> pd.DataFrame:
    """Median over images of each image's median, per direction and top-level stage, with share of total."""
    d = df[df.level.isin([0, 2]) & (df.stage != "network")]
    t = d.groupby(["direction", "stage"]).agg(seconds=("seconds", "median"), iqr_seconds=("iqr_seconds", "median"),
                                              images=("image", "nunique")).reset_index()
    tot = t[t.stage == "total"].set_index("direction").seconds
    t["share_of_total"] = t.apply(lambda r: r.seconds / tot[r.direction], axis=1)
    order = {s: i for i, s in enumerate(STAGE_ORDER + ["total"])}
    return t.sort_values(["direction", "stage"], key=lambda s: s.map(order) if s.name == "stage" else s,
                         ascending=[False, True]).reset_index(drop=True)


def fig_stages_per_image(run: ProfileRun):
    df = run.timings
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=False)
    for ax, direction in zip(axes, ("encode", "decode")):
        d = df[(df.direction == direction) & (df.level == 0) | (df.direction == direction) & (df.stage == "misc")]
        w = d.pivot_table(index="image", columns="stage", values="seconds")
        w = w[[s for s in STAGE_ORDER if s in w.columns]]
        w.plot.bar(stacked=True, ax=ax, color=[PALETTE[s] for s in w.columns], width=0.8, legend=True)
        ax.set_title(f"{direction}")
        ax.set_ylabel("seconds (median of repeats)")
        ax.set_xlabel("")
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Stage times per image — {run.label}", fontsize=10)
    fig.tight_layout()
    return fig


def substage_table(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df.level == 1]
    if d.empty:
        return pd.DataFrame()
    return d.groupby(["direction", "stage"]).seconds.median().reset_index()


def complexity_table(cx: pd.DataFrame) -> pd.DataFrame:
    if cx.empty:
        return pd.DataFrame({"note": ["MACs not counted in this run (macs=False); see the full-size runs"]})
    c = cx[["direction", "stage", "count_mode", "gmac", "kmac_per_px", "params", "mac_vs_torch"]].copy()
    c["params_M"] = c.pop("params") / 1e6
    return c.round(4)


def fig_kernels(run: ProfileRun):
    k = run.kernels
    if k.empty:
        return None
    k = k[k.kind == ("cuda_kernel" if (k.kind == "cuda_kernel").any() else "cpu_op")]
    g = k.groupby(["direction", "category"]).share.sum().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(8, 2.6))
    g.plot.barh(stacked=True, ax=ax, colormap="tab20")
    ax.set_xlabel("share of self time")
    ax.set_title(f"Operator categories — {run.label}", fontsize=10)
    ax.legend(fontsize=7, bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def top_ops(run: ProfileRun, n: int = 8) -> pd.DataFrame:
    k = run.kernels
    if k.empty:
        return k
    k = k[~k.op.str.startswith("(rest")]
    return (k.sort_values("self_seconds", ascending=False).groupby(["direction", "kind"]).head(n)
            [["direction", "kind", "op", "category", "self_seconds", "calls", "share"]].round(4))


# --- the assessment (all runs) --------------------------------------------------------

def load_all(results_dir="results") -> dict[str, pd.DataFrame]:
    """The main runs' tables (see :func:`lcstudy.results.main_rows`; the resolution-scaling runs
    have their own chapter). Timings keep every thread count; the other tables only the runs
    with the most threads."""
    out = {t: _results.load_results(results_dir, t) for t in ("timings", "complexity", "memory", "kernels")}
    if out["timings"].empty:
        raise InputError(f"no results under {results_dir}; run `make runs` first")
    out["timings"] = _results.main_rows(out["timings"])
    # memory, operators and MACs from the runs with the most threads per host and device: the
    # 1-thread pass measures time only (its memory and operator mix would mix with the main run's)
    ids = set(_results.main_rows(out["timings"], all_threads=False).run_id)
    for k in ("complexity", "memory", "kernels"):
        if not out[k].empty:
            out[k] = out[k][out[k].run_id.isin(ids)]
    return out


def _platform(df: pd.DataFrame) -> pd.Series:
    return df.host.astype(str) + " · " + df.device.astype(str) + " · " + df.threads.astype(str) + " thr"


def machines(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["host", "device", "cpu_model", "cpu_count", "gpu_name", "threads", "torch_version", "cuda_version",
            "compressai_version", "python_version", "lcstudy_version", "git_commit"]
    return df[cols].drop_duplicates().reset_index(drop=True)


def overall(df: pd.DataFrame) -> pd.DataFrame:
    """Per codec/quality/platform: mean over images of the median total (the paper's AVG)."""
    d = df[df.stage == "total"].copy()
    d["platform"] = _platform(d)
    d["size"] = d.crop.map(lambda c: "full" if pd.isna(c) else f"{int(c)}² crop")
    t = d.groupby(["codec", "quality", "weights", "platform", "size", "direction"]).agg(
        seconds=("seconds", "mean"), images=("image", "nunique")).reset_index()
    return t.pivot_table(index=["codec", "quality", "weights", "platform", "size", "images"],
                         columns="direction", values="seconds").reset_index()


def fig_overall(df: pd.DataFrame):
    d = df[df.stage == "total"].copy()
    d["platform"] = _platform(d)
    d["codec_q"] = d.codec + " q" + d.quality.astype(str)
    order = [f"{c} q{q}" for c in CODEC_ORDER for q in range(1, 9) if f"{c} q{q}" in set(d.codec_q)]
    g = sns.catplot(data=d, x="codec_q", y="seconds", hue="platform", col="direction", kind="bar", order=order,
                    estimator="mean", errorbar=("pi", 50), height=3.6, aspect=1.6, sharey=False)
    g.set_xticklabels(rotation=45, ha="right")
    g.set_axis_labels("", "seconds per image (mean of medians)")
    g.figure.suptitle(f"Encode and decode time per codec — weights: {', '.join(sorted(d.weights.unique()))}",
                      y=1.03, fontsize=10)
    return g.figure


def module_shares(df: pd.DataFrame) -> pd.DataFrame:
    d = df[(df.level == 0) | (df.stage == "misc")].copy()
    d["platform"] = _platform(d)
    t = d.groupby(["codec", "quality", "platform", "direction", "stage"]).seconds.mean().reset_index()
    t["share"] = t.seconds / t.groupby(["codec", "quality", "platform", "direction"]).seconds.transform("sum")
    return t


def fig_module_shares(df: pd.DataFrame):
    t = module_shares(df)
    t["codec_q"] = t.codec + " q" + t.quality.astype(str)
    panels = t[["direction", "platform"]].drop_duplicates().sort_values(["platform", "direction"],
                                                                         ascending=[True, False])
    n = len(panels)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n), squeeze=False)
    for ax, (_, p) in zip(axes[:, 0], panels.iterrows()):
        s = t[(t.direction == p.direction) & (t.platform == p.platform)]
        w = s.pivot_table(index="codec_q", columns="stage", values="share", fill_value=0)
        w = w.reindex([c for c in sorted(w.index, key=lambda c: (CODEC_ORDER.index(c.split(" ")[0]), c))])
        w = w[[c for c in STAGE_ORDER if c in w.columns]]
        w.plot.barh(stacked=True, ax=ax, color=[PALETTE[c] for c in w.columns], legend=False)
        ax.set_title(f"{p.direction} · {p.platform}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_ylabel("")
    from matplotlib.patches import Patch

    present = [s for s in STAGE_ORDER if s in set(t.stage)]
    fig.legend(handles=[Patch(color=PALETTE[s], label=s) for s in present], ncol=len(present), fontsize=7,
               loc="upper center", bbox_to_anchor=(0.5, 1.0))
    fig.suptitle("Share of each module in the total time", y=1.04, fontsize=10)
    fig.tight_layout()
    return fig


def complexity_overview(cx: pd.DataFrame) -> pd.DataFrame:
    if cx.empty:
        return cx
    c = cx[(cx.count_mode == "executed") & (~cx.stage.str.contains("/"))]
    t = c.pivot_table(index=["codec", "quality", "height", "width"], columns=["direction", "stage"],
                      values="gmac", aggfunc="first")
    return t


def side_table(cx: pd.DataFrame) -> pd.DataFrame:
    c = cx[cx.stage == "total"].drop_duplicates(["codec", "quality", "height", "width", "direction"])
    t = c.pivot_table(index=["codec", "quality", "height", "width"], columns="direction",
                      values=["kmac_per_px", "params"], aggfunc="first")
    t.columns = [f"{a}_{b}" for a, b in t.columns]
    t = t.reset_index()
    mp = cx.drop_duplicates(["codec", "quality"]).set_index(["codec", "quality"]).model_params
    t["model_params_M"] = [mp[(c, q)] / 1e6 for c, q in zip(t.codec, t.quality)]
    return t


def fig_macs(cx: pd.DataFrame):
    c = cx[(cx.count_mode == "executed") & (~cx.stage.str.contains("/")) & (cx.stage != "total")].copy()
    c = c[c.macs > 0]
    c["codec_q"] = c.codec + " q" + c.quality.astype(str)
    c = c.drop_duplicates(["codec_q", "direction", "stage", "height", "width"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ax, direction in zip(axes, ("encode", "decode")):
        w = c[c.direction == direction].pivot_table(index="codec_q", columns="stage", values="kmac_per_px",
                                                     aggfunc="first", fill_value=0)
        w = w[[s for s in STAGE_ORDER if s in w.columns]]
        w.plot.bar(stacked=True, ax=ax, color=[PALETTE[s] for s in w.columns])
        ax.set_title(f"{direction}: kMAC per pixel by module", fontsize=9)
        ax.set_xlabel("")
        ax.legend(fontsize=7)
    fig.suptitle("MACs per module (ptflops aten, counted as executed; independent of weights)", fontsize=10)
    fig.tight_layout()
    return fig


def memory_table(mem: pd.DataFrame) -> pd.DataFrame:
    if mem.empty:
        return mem
    m = mem.copy()
    m["working_mb"] = m.peak_mb - m.baseline_mb
    return m.pivot_table(index=["codec", "quality", "host", "device", "memory"], columns="direction",
                         values=["peak_mb", "working_mb"], aggfunc="first").round(1)


def kernel_shares(kern: pd.DataFrame) -> pd.DataFrame:
    from .kernels import category_shares

    return category_shares(kern) if not kern.empty else kern


def fig_kernel_shares(kern: pd.DataFrame):
    s = kernel_shares(kern)
    if s.empty:
        return None
    s["codec_q"] = s.codec + " q" + s.quality.astype(str)
    s["panel"] = s.direction + " · " + s.host + " · " + s.device.astype(str) + " · " + s.kind
    panels = sorted(s.panel.unique(), reverse=True)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.5 * len(panels)), squeeze=False)
    cats = sorted(s.category.unique())
    colors = dict(zip(cats, sns.color_palette("tab20", len(cats))))
    for ax, p in zip(axes[:, 0], panels):
        w = s[s.panel == p].pivot_table(index="codec_q", columns="category", values="share", fill_value=0)
        w.plot.barh(stacked=True, ax=ax, color=[colors[c] for c in w.columns], legend=False)
        ax.set_title(p, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylabel("")
    axes[0, 0].legend(ncol=4, fontsize=7, bbox_to_anchor=(0.5, 1.45), loc="center")
    fig.suptitle("Self time by operator category (torch.profiler)", y=1.02, fontsize=10)
    fig.tight_layout()
    return fig


def write_downloads(tables: dict[str, pd.DataFrame], out_dir) -> list[Path]:
    """The combined xlsx workbooks (paper layout) and CSVs of every tidy table."""
    from .store import atomic_write_csv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = _results.write_reports(tables["timings"], out_dir)
    for name, t in tables.items():
        if not t.empty:
            p = out_dir / f"lcstudy_{name}.csv"
            atomic_write_csv(p, t)
            files.append(p)
    return files


def flops_vs_runtime(df: pd.DataFrame, cx: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per codec/quality/platform: kMAC/px beside measured time and megapixels/second, and the
    correlation between the two per platform and direction (Pearson on log values, Spearman on ranks).

    kMAC/px comes from the counts at the run's own image size; time is the mean over images of the
    per-image median total.
    """
    from scipy.stats import pearsonr, spearmanr

    if df.empty or cx.empty:
        return pd.DataFrame(), pd.DataFrame()
    t = df[df.stage == "total"].copy()
    t["platform"] = _platform(t)
    t["mpx"] = t.height * t.width / 1e6
    g = t.groupby(["codec", "quality", "platform", "direction", "run_id"], as_index=False).agg(
        seconds=("seconds", "mean"), mpx=("mpx", "mean"))
    k = cx[cx.stage == "total"][["run_id", "direction", "kmac_per_px"]].drop_duplicates(["run_id", "direction"])
    m = g.merge(k, on=["run_id", "direction"], how="inner")
    m["mpx_per_s"] = m.mpx / m.seconds
    rows = []
    for (plat, d), h in m.groupby(["platform", "direction"]):
        if len(h) >= 3:
            import numpy as np

            r, _ = pearsonr(np.log(h.kmac_per_px), np.log(h.seconds))
            rho, _ = spearmanr(h.kmac_per_px, h.seconds)
            rows.append({"platform": plat, "direction": d, "codecs": len(h), "pearson_log": r, "spearman": rho})
    return m.drop(columns="run_id"), pd.DataFrame(rows)
