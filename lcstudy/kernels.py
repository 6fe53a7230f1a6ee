"""The heaviest operators (CPU) and kernels (CUDA) of one encode and one decode.

``torch.profiler`` over the model's own ``compress()``/``decompress()``. Self time is
used, so time is counted once, at the op that spent it. Categories follow the paper's
kernel summary; what the profiler cannot see (the Python loop of the autoregressive
codecs, the rANS coder in C++) is reported as ``outside torch ops``: wall time minus
the summed self time of all ops.
"""
from __future__ import annotations

import re
import time

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from .timing import synchronizer

# first match wins; matched against the lower-cased op or kernel name
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("transposed convolution", r"conv_transpose|convtranspose|deconv|slow_conv_transpose|dgrad"),
    ("convolution", r"conv|cudnn|winograd|implicit_gemm|xmma|sm\d+_.*(fprop|conv)"),
    ("attention", r"softmax|bmm|matmul|sigmoid|baddbmm|scaled_dot"),
    ("GDN/normalisation", r"sqrt|rsqrt|pow|square|norm|abs\b|aten::abs"),
    ("copies", r"copy|memcpy|memset|cat\b|aten::cat|clone|contiguous|pad|empty|zeros|fill|to\b|aten::to|"
               r"_to_copy|slice|select|index|view|reshape|expand|stack|split|chunk|squeeze|unsqueeze|permute"),
    ("elementwise", r"add|sub|mul|div|clamp|relu|leaky|round|neg|exp|log|where|max|min|sum|mean|gt|lt|ge|le|"
                    r"eq|floor|ceil|elementwise|vectorized|unrolled|reduce"),
)
OUTSIDE = "outside torch ops"


def categorize(name: str) -> str:
    n = name.lower()
    for cat, pat in CATEGORIES:
        if re.search(pat, n):
            return cat
    return "other"


def profile_ops(codec, x: torch.Tensor, top: int = 15) -> pd.DataFrame:
    """Per-op self times of one encode and one decode of padded ``x``.

    Returns one row per (direction, kind, op) with ``self_seconds``, ``calls``, ``share``
    (of that direction's wall time) and ``category``; ``kind`` is ``cpu_op`` or
    ``cuda_kernel``. Only the ``top`` ops by self time are kept per kind and direction, plus
    one ``(rest)`` row and one ``outside torch ops`` row, so shares add up to 1.
    """
    model = codec.model
    sync = synchronizer(codec.device)
    activities = [ProfilerActivity.CPU]
    on_cuda = codec.device.type == "cuda"
    if on_cuda:
        activities.append(ProfilerActivity.CUDA)
    rows = []
    with torch.inference_mode():
        enc = model.compress(x)  # warm-up outside the profile
        model.decompress(enc["strings"], enc["shape"])
        for direction in ("encode", "decode"):
            with profile(activities=activities) as prof:
                sync()
                t0 = time.perf_counter()
                if direction == "encode":
                    enc = model.compress(x)
                else:
                    model.decompress(enc["strings"], enc["shape"])
                sync()
                wall = time.perf_counter() - t0
            avgs = prof.key_averages()
            kinds = [("cpu_op", "self_cpu_time_total")]
            if on_cuda:
                kinds.append(("cuda_kernel", "self_device_time_total"))
            for kind, attr in kinds:
                evs = [(e.key, getattr(e, attr, 0.0) / 1e6, e.count) for e in avgs]
                evs = [e for e in evs if e[1] > 0]
                evs.sort(key=lambda e: -e[1])
                total_self = sum(e[1] for e in evs)
                for name, sec, calls in evs[:top]:
                    rows.append({"direction": direction, "kind": kind, "op": name, "category": categorize(name),
                                 "self_seconds": sec, "calls": calls, "wall_seconds": wall})
                rest = evs[top:]
                if rest:
                    # the rest is still categorised op by op, then summed per category
                    by_cat: dict[str, list] = {}
                    for name, sec, calls in rest:
                        c = by_cat.setdefault(categorize(name), [0.0, 0])
                        c[0] += sec
                        c[1] += calls
                    for cat, (sec, calls) in by_cat.items():
                        rows.append({"direction": direction, "kind": kind, "op": f"(rest: {cat})", "category": cat,
                                     "self_seconds": sec, "calls": calls, "wall_seconds": wall})
                if kind == "cpu_op":
                    rows.append({"direction": direction, "kind": kind, "op": OUTSIDE, "category": OUTSIDE,
                                 "self_seconds": max(wall - total_self, 0.0), "calls": 0, "wall_seconds": wall})
    df = pd.DataFrame(rows)
    denom = df.groupby(["direction", "kind"])["self_seconds"].transform("sum")
    df["share"] = df["self_seconds"] / denom
    return df


def category_shares(kernels: pd.DataFrame) -> pd.DataFrame:
    """Share of self time per category (the paper's kernel summary), per direction and kind."""
    keys = [c for c in ("host", "device", "codec", "quality", "weights") if c in kernels.columns]
    g = kernels.groupby(keys + ["direction", "kind", "category"], as_index=False)["self_seconds"].sum()
    g["share"] = g["self_seconds"] / g.groupby(keys + ["direction", "kind"])["self_seconds"].transform("sum")
    return g
