"""The chapters: one module per chapter of the book, named after its notebook
(``lcstudy/chapters/scaling.py`` for ``notebooks/scaling.md``). Each module's ``build(results_dir,
reference, downloads_dir)`` returns a :class:`~lcstudy.chapters.page.Page` — findings, tables,
figures with captions, downloads — and its notebook only shows the parts.

:data:`CHAPTERS` is the one declared list: the pipeline executes them in this order, the table of
contents, the introduction's headline findings and the downloads page are derived from it, and
the end-to-end test checks each. Adding a chapter is one module and one notebook, plus a line here.

Shared by the chapters: ``style`` (codec order and colours, platform names, the weights banner,
figure conventions), ``columns`` (column words and units, rounding, :func:`present`), ``findings``
(sentences whose numbers are cells of the downloads), ``study`` (the tables, loaded once),
``published`` and ``workbooks`` (the paper's and CompressAI's data; the paper's xlsx layout).
``run_page`` and ``standard_run`` are the pages of the run notebooks.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    name: str  # module and notebook name
    title: str
    what: str  # one line for the downloads page and the introduction


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("assessment", "Assessment", "encode and decode time per codec and platform, module shares, MACs, "
            "memory, operators"),
    Chapter("paper_comparison", "Against the published data", "ours beside the ICASSP 2023 paper's data and "
            "CompressAI's published runtimes: module ratios, rankings, Kendall τ"),
    Chapter("flops_runtime", "FLOPs versus runtime", "kMAC/px against time per platform, correlations, rank "
            "inversions, roofline"),
    Chapter("rd_frontier", "The RD-complexity frontier", "rate-distortion (published and ours) and BD-rate beside "
            "complexity"),
    Chapter("standard_codecs", "Learned versus standard codecs", "JPEG, JPEG 2000, WebP, AVIF, x265, JPEG XL in the "
            "same harness; learned codecs at a matched bitrate"),
    Chapter("scaling", "Resolution scaling", "time and memory from a 512² crop to 3840×2160, fitted exponents"),
    Chapter("deployment", "Deployment", "each codec's transforms under channels-last, torch.compile, bf16, int8 and "
            "ONNX Runtime: speed-up beside eager, one-off costs, rate-distortion price, model size"),
    Chapter("decodability", "Decodability", "every stored bitstream decoded under other threads, backends, devices "
            "and machines (and two simulated platforms): identical, close, corrupt or error; margins; mitigation"),
)


def get(name: str) -> Chapter:
    for c in CHAPTERS:
        if c.name == name:
            return c
    raise KeyError(name)
