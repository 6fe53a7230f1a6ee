"""How the book looks, in one place: codec order and colours, stage colours, platform names, the
weights banner, and figure conventions (titles that name the platform and weights, legends outside
the data, log axes where values span decades, captions).

Colours: Paul Tol's colour-blind-safe "muted" scheme for the learned codecs (the same colour for a
codec in every chapter), his "bright" scheme for the standard codecs (drawn dashed, square
markers), and "light" for the stages.
"""
from __future__ import annotations

import math

import pandas as pd

#: Paul Tol, "muted" (colour-blind safe): rose, indigo, sand, green, cyan, wine, teal, olive, purple
MUTED = ["#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499"]
#: Paul Tol, "bright": blue, red, green, yellow, cyan, purple, grey
BRIGHT = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB"]
#: Paul Tol, "light", for the stages
LIGHT = ["#77AADD", "#99DDFF", "#44BB99", "#BBCC33", "#AAAA00", "#EEDD88", "#EE8866", "#FFAABB", "#DDDDDD"]
STANDARD_ORDER = ["JPEG", "JPEG 2000", "WebP", "AVIF", "HEVC (x265)", "JPEG XL"]
X265_PUBLISHED = "x265 (BPG)"
X265_OURS = "x265 HEIC (ours)"
FIG_WIDTH = 7.6  # inches: at 110 dpi, about the book's content column at a laptop's width (fonts stay legible)

WEIGHTS_NOTE = ("Random weights (seeded): network time, MACs, parameters and memory do not depend on the weights; "
                "entropy-coding time (AEz/ADz/AEy/ADy), bitrate and quality do, so those are not what the "
                "pretrained codecs would give.")


def codec_order() -> list[str]:
    from ..core.registry import codec_order as order

    return order()


def sort_codecs(df: pd.DataFrame, col: str = "codec", then: list[str] | None = None) -> pd.DataFrame:
    """Rows in the study's codec order (built-in codecs as in the paper, then the user's), then ``then``."""
    order = {c: i for i, c in enumerate(codec_order() + STANDARD_ORDER)}
    key = df[col].map(lambda c: order.get(c, len(order)))
    d = df.assign(_order=key)
    return d.sort_values(["_order"] + (then or []), kind="stable").drop(columns="_order").reset_index(drop=True)


def codec_color(codec: str) -> str:
    order = codec_order()
    if codec in order:
        i = order.index(codec)
        return MUTED[i] if i < len(MUTED) else "#555555"
    if codec in STANDARD_ORDER:
        return BRIGHT[STANDARD_ORDER.index(codec)]
    base = codec.replace(" (ours)", "").replace(" (published)", "")
    if base in STANDARD_ORDER:
        return BRIGHT[STANDARD_ORDER.index(base)]
    if "x265" in codec:
        return BRIGHT[STANDARD_ORDER.index("HEVC (x265)")]
    return "#555555"


def stage_colors(stages) -> list[str]:
    from ..core.instrument import STAGE_ORDER

    return [LIGHT[STAGE_ORDER.index(s)] if s in STAGE_ORDER else "#BBBBBB" for s in stages]


def ordered_stages(stages) -> list[str]:
    from ..core.instrument import STAGE_ORDER

    known = [s for s in STAGE_ORDER if s in set(stages)]
    return known + sorted(s for s in set(stages) if s not in STAGE_ORDER)


def platform_of(df: pd.DataFrame) -> pd.Series:
    """A measurement's platform: CPU model, cores and threads (CPU runs) or the GPU (CUDA runs) —
    recorded by each run (``platform``); nodes of one platform are one platform."""
    if "platform" in df.columns:
        return df["platform"].astype(str)
    return df.host.astype(str) + " · " + df.device.astype(str) + " · " + df.threads.astype(str) + " thr"


def main_platforms(df: pd.DataFrame) -> list[str]:
    """The platforms a chapter speaks of first: per device type, the one whose runs used the most threads
    (the 1-thread pass is a second CPU platform, not the main one); CPU first."""
    if df.empty or "platform" not in df.columns:
        return []
    dev = df.device.astype(str).str.split(":").str[0] if "device" in df.columns else \
        df.platform.map(lambda p: "cuda" if "(CUDA)" in str(p) else "cpu")
    d = df.assign(_dev=dev)
    out = []
    for dev in sorted(d._dev.unique(), key=lambda x: (x != "cpu", x)):
        g = d[d._dev == dev]
        g = g[g.threads == g.threads.max()] if "threads" in g.columns else g
        out.append(g.platform.value_counts().index[0])
    return out


def weights_text(df: pd.DataFrame) -> str:
    col = "weights_label" if "weights_label" in df.columns and df["weights_label"].astype(bool).any() else "weights"
    vals = sorted({str(v) for v in df[col].dropna() if str(v)}) if col in df.columns else []
    return ", ".join(vals) or "none"


def weights_banner(df: pd.DataFrame, extra: str = "") -> str:
    """The warning every page with random-weight results shows (one text for the whole book)."""
    if "weights" not in df.columns or not (df["weights"] == "random").any():
        return ""
    return f"```{{warning}}\n{WEIGHTS_NOTE}{(' ' + extra) if extra else ''}\n```\n"


def title(what: str, df: pd.DataFrame | None = None, platforms=None) -> str:
    """A figure title that names what is shown, the platform(s) and the weights."""
    parts = [what]
    if platforms is None and df is not None and not df.empty:
        platforms = sorted(platform_of(df).unique())
    if platforms:
        parts.append("; ".join(platforms) if len(platforms) <= 2 else f"{len(platforms)} platforms")
    if df is not None and not df.empty and ("weights" in df.columns or "weights_label" in df.columns):
        parts.append(f"weights: {weights_text(df)}")
    return " — ".join(parts)


def setup():
    """Matplotlib defaults for the book (readable at the content width)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "font.size": 8.5, "axes.titlesize": 9,
                         "axes.labelsize": 8.5, "legend.fontsize": 7.5, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
                         "axes.spines.top": False, "axes.spines.right": False, "figure.titlesize": 9.5})
    return plt


def legend_outside(ax, ncol: int = 1, **kw):
    """A legend to the right of the axes, never over the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncol=ncol, **kw)


def log_if_spread(ax, values, axis: str = "y", decades: float = 1.0) -> None:
    """Log scale where the values span more than ``decades`` decades."""
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x)) and x > 0]
    if v and max(v) / min(v) > 10 ** decades:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def finish(fig, title: str):
    """The figure's title (what, platform, weights: see :func:`title`) and a tight layout."""
    fig.suptitle(title)
    fig.tight_layout()
    return fig
