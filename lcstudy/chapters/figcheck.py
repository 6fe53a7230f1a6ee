"""What a reviewer checks on a figure before reading it, as code: text that collides and series
without a key.

:func:`problems` draws a figure with matplotlib's renderer and reads the window extent of every
text: two tick labels, axis labels or annotations of one axes that overlap; a title (a panel's, or
the figure's) that overlaps any other text, another panel or a legend; a legend that covers another
panel; and a panel that draws several labelled series with neither a legend (its own or the
figure's) nor each series named by a text beside it (direct labels). A rotated text is the rectangle
its glyphs are set in, turned by its angle — not the upright box around that rectangle, which for a
long tick label at 30° reaches under its neighbours' boxes though no letters meet (that false alarm
listed every column of the standard book's decodability matrix). The test suite runs it on every
figure the book draws; it is kept here, beside the style, so a figure can be checked where it is made.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from matplotlib.text import Text

#: pixels two boxes may share before they count as overlapping (anti-aliasing, rounding)
TOLERANCE = 0.5


def _corners(box) -> np.ndarray:
    """A region's corners in display pixels (4 × 2): a box's (matplotlib's ``Bbox``), or the array itself."""
    if isinstance(box, np.ndarray):
        return box
    return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]], dtype=float)


def _overlap(a, b) -> bool:
    """Do two convex regions (boxes or turned rectangles) share more than :data:`TOLERANCE` pixels of depth?
    Separating axes: they are apart when their shadows on some edge's normal are; for two upright boxes
    that is the x and the y axis, the plain box test."""
    pa, pb = _corners(a), _corners(b)
    for poly in (pa, pb):
        for k in range(len(poly)):
            edge = poly[(k + 1) % len(poly)] - poly[k]
            norm = math.hypot(*edge)
            if norm == 0:
                continue
            axis = np.array([-edge[1], edge[0]]) / norm
            sa, sb = pa @ axis, pb @ axis
            if min(sa.max(), sb.max()) - max(sa.min(), sb.min()) <= TOLERANCE:
                return False
    return True


def _region(t, extent, renderer):
    """Where a text's glyphs are: its window extent (``extent``) where it is upright, else the rectangle of its
    upright size turned by its angle about the extent's centre (matplotlib turns the text's rectangle and puts
    the box around it: the rectangle is inscribed in the extent, whatever its alignment)."""
    angle = t.get_rotation() % 180
    if extent.width == 0 or extent.height == 0 or min(angle % 90, 90 - angle % 90) < 1e-6:
        return extent
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    if abs(c * c - s * s) > 0.2:  # the extent is w|cos| + h|sin| by w|sin| + h|cos|: solve for w and h
        ac, as_ = abs(c), abs(s)
        w = (extent.width * ac - extent.height * as_) / (ac * ac - as_ * as_)
        h = (extent.height * ac - extent.width * as_) / (ac * ac - as_ * as_)
    else:  # near 45° that is ill-conditioned: measure the text upright
        turned = t.get_rotation()
        try:
            t.set_rotation(0)
            up = Text.get_window_extent(t, renderer)
        finally:
            t.set_rotation(turned)
        w, h = up.width, up.height
    half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return half @ np.array([[c, s], [-s, c]]) + [(extent.x0 + extent.x1) / 2, (extent.y0 + extent.y1) / 2]


def _visible_text(t) -> bool:
    return t.get_visible() and bool(t.get_text().strip())


def _name(ax, what: str) -> str:
    title = ax.get_title() or ax.get_title(loc="left") or ax.get_ylabel() or f"axes {id(ax) % 1000}"
    return f"[{title}] {what}"


def _texts(ax, renderer) -> list[tuple[str, object]]:
    """(what, bbox) of every visible text that belongs to ``ax``: tick labels inside the axis' view,
    axis labels, annotations and texts. The titles are checked separately."""
    out = []
    for axis, name in ((ax.xaxis, "x tick"), (ax.yaxis, "y tick")):
        lo, hi = sorted(axis.get_view_interval())
        for tick in list(axis.get_major_ticks()) + list(axis.get_minor_ticks()):
            loc = tick.get_loc()
            if loc is None or not (lo - abs(hi - lo) * 1e-9 <= loc <= hi + abs(hi - lo) * 1e-9):
                continue
            for lab in (tick.label1, tick.label2):
                if _visible_text(lab):
                    out.append((f"{name} '{lab.get_text()}'", _region(lab, lab.get_window_extent(renderer), renderer)))
    for lab, name in ((ax.xaxis.label, "x label"), (ax.yaxis.label, "y label")):
        if _visible_text(lab):
            out.append((f"{name} '{lab.get_text()}'", _region(lab, lab.get_window_extent(renderer), renderer)))
    for t in ax.texts:
        if _visible_text(t):  # the text's own box (an annotation's extent would include its leader line)
            out.append((f"text '{t.get_text()}'", _region(t, Text.get_window_extent(t, renderer), renderer)))
    return out


def _titles(fig, renderer) -> list[tuple[object, str, object]]:
    out = []
    for ax in fig.axes:
        for t in (ax.title, ax._left_title, ax._right_title):
            if _visible_text(t):
                out.append((ax, f"title '{t.get_text()}'", t.get_window_extent(renderer)))
    st = getattr(fig, "_suptitle", None)
    if st is not None and _visible_text(st):
        out.append((None, f"figure title '{st.get_text()[:60]}'", st.get_window_extent(renderer)))
    return out


def _series(ax) -> list[str]:
    """The labels of the panel's series, as matplotlib names them (lines, collections and bar
    containers whose label does not start with '_')."""
    labels = []
    for h in list(ax.lines) + list(ax.collections) + list(ax.containers):
        lab = h.get_label() if hasattr(h, "get_label") else ""
        if lab and not str(lab).startswith("_"):
            labels.append(str(lab))
    return list(dict.fromkeys(labels))


def _has_key(ax, fig) -> bool:
    return ax.get_legend() is not None or bool(fig.legends)


def _direct_labels(ax, series: list[str]) -> bool:
    named = {t.get_text().strip() for t in ax.texts if _visible_text(t)}
    return all(s in named or s.split(" (")[0] in named for s in series)


def _data_box(ax, renderer):
    return ax.get_window_extent(renderer)


def problems(fig) -> list[str]:
    """Every collision and missing key of ``fig`` (empty: the figure passes)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    for ax in axes:
        texts = _texts(ax, renderer)
        for (a, ba), (b, bb) in itertools.combinations(texts, 2):
            if _overlap(ba, bb):
                out.append(_name(ax, f"{a} overlaps {b}"))
        series = _series(ax)
        if len(series) > 1 and not _has_key(ax, fig) and not _direct_labels(ax, series):
            out.append(_name(ax, f"{len(series)} series ({', '.join(series[:4])}…) and no legend"))
    # titles: against every other text, every other panel and every legend
    titles = _titles(fig, renderer)
    legends = [(ax, leg.get_window_extent(renderer)) for ax in axes if (leg := ax.get_legend()) is not None]
    legends += [(None, leg.get_window_extent(renderer)) for leg in fig.legends]
    for (ax_a, a, ba), (ax_b, b, bb) in itertools.combinations(titles, 2):
        if _overlap(ba, bb):
            out.append(f"{a} overlaps {b}")
    for owner, what, box in titles:
        for ax in axes:
            for name, tb in _texts(ax, renderer):
                if _overlap(box, tb):
                    out.append(_name(ax, f"{what} overlaps {name}"))
            if ax is not owner and _overlap(box, _data_box(ax, renderer)):
                out.append(_name(ax, f"{what} overlaps the panel"))
        for lax, lb in legends:
            if _overlap(box, lb):
                out.append(f"{what} overlaps a legend")
    # legends: never over another panel's data or texts, nor over another legend
    for lax, lb in legends:
        for ax in axes:
            if ax is lax:
                continue
            if _overlap(lb, _data_box(ax, renderer)):
                out.append(_name(ax, "a legend of another panel covers this panel"))
            for name, tb in _texts(ax, renderer):
                if _overlap(lb, tb):
                    out.append(_name(ax, f"a legend of another panel overlaps {name}"))
    for (_, a), (_, b) in itertools.combinations(legends, 2):
        if _overlap(a, b):
            out.append("two legends overlap")
    # panels: one panel's texts never inside another's plotting area
    for a, b in itertools.permutations(axes, 2):
        box = _data_box(b, renderer)
        for name, tb in _texts(a, renderer):
            if _overlap(tb, box):
                out.append(_name(a, f"{name} runs into the panel '{b.get_title()}'"))
    return list(dict.fromkeys(out))
