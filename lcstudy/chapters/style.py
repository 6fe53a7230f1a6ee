"""How the book looks, in one place: one palette per concept, platform names, the weights banner, and
the figure conventions every chapter's figures follow.

Palettes, each fixed across every page (a colour means one thing wherever it appears):

- **codec**: Paul Tol's colour-blind-safe "muted" scheme for the learned codecs (in the registry's
  order), his "bright" scheme for the standard codecs (drawn dashed, square markers);
- **stage**: Tol's "light" scheme, in coding order (:data:`lcstudy.core.instrument.STAGE_ORDER`);
- **category** (operator categories of the profiler): Okabe–Ito, with the time outside torch
  operators (the Python loop, the entropy coder) in vermillion;
- **backend** (deployment backends): Tol's "vibrant" scheme, the eager baseline in grey;
- **direction** (encode, decode, when they are the series): Tol's "high-contrast" blue and red.

:func:`color` / :func:`colors` read them; a value a palette does not know is drawn grey, never in
another value's colour.

Figure conventions (:func:`finish` applies the last four to every figure): titles that name the
platform and weights (:func:`title`); legends outside the data, one per panel that draws several
series (:func:`legend_outside`), or one for a row of panels that share their series
(:func:`legend_above`); point labels placed where they collide with nothing (:func:`label_points`:
greedy candidate positions around each point, a leader line when the label had to move away);
log axes with plain tick labels (1, 10, 100 — minor ticks labelled only where an axis spans less
than a decade); titles wrapped to the figure's width; sizes for the content column
(:data:`FIG_WIDTH`), drawn at twice the screen's resolution (:data:`SCREEN_DPI`,
:data:`RETINA`) so text stays sharp. :mod:`lcstudy.chapters.figcheck` checks the result.
"""
from __future__ import annotations

import math

import pandas as pd

from ..core.backends import BACKENDS

#: Paul Tol, "muted" (colour-blind safe): rose, indigo, sand, green, cyan, wine, teal, olive, purple
MUTED = ["#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499"]
#: Paul Tol, "bright": blue, red, green, yellow, cyan, purple, grey
BRIGHT = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB"]
#: Paul Tol, "light", for the stages
LIGHT = ["#77AADD", "#99DDFF", "#44BB99", "#BBCC33", "#AAAA00", "#EEDD88", "#EE8866", "#FFAABB", "#DDDDDD"]
STANDARD_ORDER = ["JPEG", "JPEG 2000", "WebP", "AVIF", "HEVC (x265)", "JPEG XL"]
X265_PUBLISHED = "x265 (BPG)"
X265_OURS = "x265 HEIC (ours)"
#: Okabe & Ito's colour-blind-safe scheme, for the profiler's operator categories
OKABE_ITO = ["#0072B2", "#56B4E9", "#CC79A7", "#009E73", "#F0E442", "#E69F00", "#999999", "#D55E00"]
#: Paul Tol, "vibrant": blue, cyan, teal, orange, red, magenta, grey
VIBRANT = ["#0077BB", "#33BBEE", "#009988", "#EE7733", "#CC3311", "#EE3377", "#BBBBBB"]
#: the colour of a value a palette does not know (never another value's colour)
UNKNOWN = "#777777"
#: the deployment backends, in the order the book lists them: the registry's (eager, the baseline, first)
BACKEND_ORDER = tuple(BACKENDS)
#: inches: the book's content column at a laptop's width (1280 px window: about 690 CSS px) at SCREEN_DPI,
#: so a figure is shown at its own size (its text at the size it was set), not scaled down
FIG_WIDTH = 7.1
#: CSS pixels per inch of a figure on the page, and how many image pixels per CSS pixel it is drawn with
SCREEN_DPI = 96
RETINA = 2

WEIGHTS_NOTE = ("Random weights (seeded): network time, MACs, parameters and memory do not depend on the weights; "
                "entropy-coding time (AEz/ADz/AEy/ADy), bitrate and quality do, so those are not what the "
                "pretrained codecs would give.")


def codec_order() -> list[str]:
    from ..core.codec_sources import codec_order as order

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


def palette(concept: str) -> dict[str, str]:
    """The fixed value → colour map of a concept (``stage``, ``category``, ``backend``, ``direction``);
    codecs go through :func:`codec_color` (their order comes from the registry, users' codecs included)."""
    if concept == "stage":
        from ..core.instrument import STAGE_ORDER

        return dict(zip(STAGE_ORDER, LIGHT))
    if concept == "category":
        from ..core.kernels import CATEGORIES, OUTSIDE

        names = [c for c, _ in CATEGORIES] + ["other", OUTSIDE]
        return dict(zip(names, OKABE_ITO))
    if concept == "backend":
        return {"eager": VIBRANT[6], "channels_last": VIBRANT[1], "compile": VIBRANT[0], "bf16": VIBRANT[3],
                "fp16": VIBRANT[4], "int8": VIBRANT[5], "onnxruntime": VIBRANT[2]}
    if concept == "direction":
        return {"encode": "#004488", "decode": "#BB5566"}
    raise KeyError(f"no palette for {concept!r}: stage, category, backend, direction (codecs: codec_color)")


def color(concept: str, value) -> str:
    if concept == "codec":
        return codec_color(str(value))
    return palette(concept).get(str(value), UNKNOWN)


def colors(concept: str, values) -> list[str]:
    return [color(concept, v) for v in values]


def stage_colors(stages) -> list[str]:
    return colors("stage", stages)


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
    thin = rests_on(df) if df is not None else ""
    if thin:
        parts.append(thin)
    return " — ".join(parts)


#: Kodak's image count: a figure over fewer images (or over crops) says what it rests on
FULL_SET = 24


def rests_on(df: pd.DataFrame) -> str:
    """"2 images, 256² crops" where ``df`` rests on fewer images than the full set or on crops, else ""."""
    if df is None or df.empty or "image" not in df.columns:
        return ""
    n = df.image.nunique()
    crops = df.crop.dropna().unique() if "crop" in df.columns else []
    if n >= FULL_SET and not len(crops):
        return ""
    return f"{n} image{'s' if n != 1 else ''}" + (f", {int(crops[0])}² crops" if len(crops) == 1 else
                                                   ", crops" if len(crops) else "")


def setup():
    """Matplotlib defaults for the book (readable at the content width)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": SCREEN_DPI, "savefig.dpi": SCREEN_DPI * RETINA, "font.size": 9,
                         "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
                         "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
                         "figure.titlesize": 10, "legend.frameon": False, "axes.titlelocation": "left"})
    return plt


def legend_outside(ax, ncol: int = 1, **kw):
    """A legend to the right of the axes, never over the data (:func:`finish` makes room for it)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncol=ncol, **kw)


def legend_above(fig, handles=None, labels=None, ncol: int | None = None, **kw):
    """One legend for a row of panels that draw the same series: under the figure's title, above the
    panels (:func:`finish` makes room for it). Without ``handles``, the series of every panel, each once."""
    if handles is None:
        seen = {}
        for ax in fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lab, h)
        labels, handles = list(seen), list(seen.values())
    if not handles:
        return None
    n = ncol or min(len(handles), max(1, int(FIG_WIDTH * 72 / (8 * max(len(str(x)) for x in labels) + 30))))
    fig._lcstudy_legend_above = fig.legend(handles, labels, loc="upper center", ncol=n, frameon=False, **kw)
    return fig._lcstudy_legend_above


def log_if_spread(ax, values, axis: str = "y", decades: float = 1.0) -> None:
    """Log scale where the values span more than ``decades`` decades."""
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x)) and x > 0]
    if v and max(v) / min(v) > 10 ** decades:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _plain(x, _pos=None) -> str:
    """A tick label in plain digits: 0.001 … 100 000, three significant digits at most."""
    if x <= 0 or not math.isfinite(x):
        return ""
    if x >= 1e6 or x < 1e-4:
        e = math.floor(math.log10(x))
        m = x / 10 ** e
        return (f"{m:.2g}×" if abs(m - 1) > 1e-9 else "") + f"10$^{{{e}}}$"
    return f"{x:,.3g}" if x >= 1 else f"{x:.3g}"


def readable_log(ax) -> None:
    """Plain tick labels on each log axis of ``ax``; minor ticks labelled (2 and 5 of each decade) only
    where the axis spans less than a decade and a half, so labels never crowd each other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale != "log":
            continue
        lo, hi = sorted(axis.get_view_interval())
        span = math.log10(hi / lo) if lo > 0 and hi > 0 else 99
        axis.set_major_locator(LogLocator(base=10, numticks=12))
        axis.set_major_formatter(FuncFormatter(_plain))
        if span < 1.5:
            axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0) if span > 0.7 else (2.0, 3.0, 5.0, 7.0),
                                              numticks=12))
            axis.set_minor_formatter(FuncFormatter(_plain))
        else:
            axis.set_minor_locator(LogLocator(base=10, subs="auto", numticks=12))
            axis.set_minor_formatter(NullFormatter())


def label_points(ax, xs, ys, labels, colors=None, fontsize: float = 7) -> None:
    """Name each point (x, y) by a text beside it, placed by :func:`finish` once the layout is final:
    of a ring of candidate positions around the point (right, left, above, below, then further out), the
    first whose box overlaps no other label, no point, no drawn line (a frontier step, a curve) and stays
    inside the axes. A label that had to leave the first ring is tied to its point by a leader line in the
    point's colour: in a cluster, a reader must not have to guess which name is whose."""
    pts = [(float(x), float(y), str(lab), (colors[i] if colors is not None else "#333333"))
           for i, (x, y, lab) in enumerate(zip(xs, ys, labels))
           if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
    if not hasattr(ax, "_lcstudy_labels"):
        ax._lcstudy_labels = []
    ax._lcstudy_labels.append((pts, fontsize))


def _candidates(w: float, h: float, pad: float):
    """Offsets (dx, dy) of a label's lower-left corner from its point, in display pixels: the eight
    places around the point first, then rings further out."""
    for ring, r in enumerate((1.0, 2.2, 3.6, 5.2, 7.0, 9.0)):
        d = pad * r
        for dx, dy in ((d, -h / 2), (-d - w, -h / 2), (-w / 2, d), (-w / 2, -d - h),
                       (d, d * 0.3), (d, -h - d * 0.3), (-d - w, d * 0.3), (-d - w, -h - d * 0.3)):
            yield dx, dy, ring


def _line_boxes(ax, step: float = 4.0) -> list:
    """Small boxes along every drawn line of ``ax`` (display pixels, one per ``step``): obstacles for labels.
    Lines spanning the whole axes (a reference at y = 0, drawn dotted) count too: a label across one is
    as hard to read as one across a curve."""
    import numpy as np
    from matplotlib.cbook import STEP_LOOKUP_MAP
    from matplotlib.transforms import Bbox

    boxes = []
    for line in ax.lines:
        if not line.get_visible() or line.get_linestyle() in ("None", "", " "):
            continue
        # as drawn: a step line (ax.step, the frontier) runs through its corners, not from point to point
        data = np.asarray(line.get_xydata(), dtype=float)
        drawn = STEP_LOOKUP_MAP.get(line.get_drawstyle() or "default", STEP_LOOKUP_MAP["default"])(*data.T)
        xy = line.get_transform().transform(np.column_stack(drawn[:2]))
        xy = xy[np.isfinite(xy).all(axis=1)]
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
            n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
            for k in range(n + 1):
                x, y = x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n
                boxes.append(Bbox.from_bounds(x - 1.5, y - 1.5, 3, 3))
    return boxes


def _place_labels(fig) -> None:
    """Resolve every :func:`label_points` request of ``fig`` (the layout must be final)."""
    from matplotlib.transforms import Bbox

    if not any(getattr(ax, "_lcstudy_labels", None) for ax in fig.axes):
        return
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        reqs = getattr(ax, "_lcstudy_labels", None)
        if not reqs:
            continue
        ax._lcstudy_labels = []
        inside = ax.get_window_extent(renderer)
        # every point of the panel is an obstacle: its marker's box
        dots = [Bbox.from_bounds(*(ax.transData.transform((x, y)) - 5), 10, 10)
                for pts, _ in reqs for x, y, _, _ in pts]
        lines = _line_boxes(ax)
        placed: list = []
        for pts, fontsize in reqs:
            for x, y, lab, col in pts:
                px, py = ax.transData.transform((x, y))
                t = ax.text(0, 0, lab, fontsize=fontsize, color="#222222")
                bb = t.get_window_extent(renderer)
                t.remove()
                w, h = bb.width, bb.height
                best, best_cost = None, None
                for dx, dy, ring in _candidates(w, h, pad=max(5.0, fontsize * 0.9)):
                    box = Bbox.from_bounds(px + dx, py + dy, w, h)
                    out = (box.x0 < inside.x0 or box.x1 > inside.x1 or box.y0 < inside.y0 or box.y1 > inside.y1)
                    # a label over a line is a lesser evil than one over another label or a point
                    hits = sum(_area(box, o) for o in placed + dots) + 0.25 * sum(_area(box, o) for o in lines)
                    cost = hits + (1e6 if out else 0)
                    if best_cost is None or cost < best_cost:
                        best, best_cost = (dx, dy, box, ring), cost
                    if cost == 0:
                        break
                dx, dy, box, ring = best
                placed.append(box)
                far = ring > 0
                tx, ty = ax.transData.inverted().transform((px + dx, py + dy))
                ax.annotate(lab, (x, y), xytext=(tx, ty), textcoords="data", fontsize=fontsize, color="#222222",
                            ha="left", va="bottom", annotation_clip=False,
                            arrowprops=dict(arrowstyle="-", color=col, lw=0.6, shrinkA=0, shrinkB=3) if far else None)


def _area(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def wrap(text: str, width_in: float = FIG_WIDTH, fontsize: float = 10) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (about half an em a
    character), at the separators of :func:`title` first."""
    import textwrap

    per_line = max(20, int(width_in * 72 / (fontsize * 0.56)))
    return "\n".join(textwrap.wrap(text, per_line, break_on_hyphens=False)) if len(text) > per_line else text


def finish(fig, title: str):
    """The figure's title (what, platform, weights: see :func:`title`), wrapped to the figure's width;
    plain log-axis ticks; a tight layout that makes room for the legends and the title; then the point
    labels, placed on the final layout."""
    for ax in fig.axes:
        readable_log(ax)
    fig.suptitle(wrap(title, fig.get_figwidth()), x=0.01, ha="left")
    above = getattr(fig, "_lcstudy_legend_above", None)
    fig.tight_layout()
    # the panels (with their titles and legends) shrink from the top until they clear the figure's title
    # and the legend above them, if any. The layout is measured on a draw that places every artist without
    # rasterising it (draw_without_rendering: the same text extents, none of the pixels): a figure was
    # rasterised up to five times before, the run page's two figures ~0.5 s of its ~1.2 s on the 2-core VM
    fig.draw_without_rendering()
    r = fig.canvas.get_renderer()
    fh = fig.bbox.height
    floor = fig._suptitle.get_window_extent(r).y0 - 4
    if above is not None:
        above.set_bbox_to_anchor((0.5, floor / fh), transform=fig.transFigure)
        floor = above.get_window_extent(r).y0 - 4
    top = 1.0
    for _ in range(3):
        reach = max(ax.get_tightbbox(r).y1 for ax in fig.axes)
        if reach <= floor:
            break
        top -= (reach - floor + 1) / fh
        fig.tight_layout(rect=(0, 0, 1, top))
        fig.draw_without_rendering()
    _place_labels(fig)
    return fig
