"""The heaviest operators (CPU) and kernels (CUDA) of one encode and one decode.

``torch.profiler`` over the model's own ``compress()``/``decompress()``: one encode and one
decode, after the timed repeats (the process is warm). Self time is used, so time is counted
once, at the op that spent it. Categories follow the paper's kernel summary; what the profiler
cannot see (the Python loop of the autoregressive codecs, the rANS coder in C++) is reported
as ``outside torch ops``: wall time minus the summed self time of all ops. A share is an op's
self time over the call's wall time (CPU ops) or over the summed kernel time (CUDA kernels).
"""
from __future__ import annotations

import os
import re

# kineto (torch.profiler's backend) prints "gpuGetDeviceCount failed" and USDT lines on every
# profile of a machine without a GPU; level 6 silences its log (set before the profiler starts)
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

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


def profile_ops(codec, x, clock=None, top: int = 15):
    """Per-op self times of one encode and one decode of padded ``x``.

    One row per (direction, kind, op) with ``self_seconds``, ``calls``, ``share`` and
    ``category``; ``kind`` is ``cpu_op`` or ``cuda_kernel``. Only the ``top`` ops by self time are
    kept per kind and direction, plus one ``(rest: category)`` row per category and, for CPU
    ops, one ``outside torch ops`` row.
    """
    import pandas as pd
    import torch
    from torch.profiler import ProfilerActivity, profile

    from .clocks import StageClock

    clock = clock or StageClock(codec.device)
    model = codec.model
    on_cuda = codec.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    rows = []
    enc = None
    with torch.inference_mode():
        for direction in ("encode", "decode"):
            with profile(activities=activities) as prof:
                if direction == "encode":
                    enc, wall = clock.elapsed(model.compress, x)
                else:
                    _, wall = clock.elapsed(model.decompress, enc["strings"], enc["shape"])
            avgs = prof.key_averages()
            kinds = [("cpu_op", "self_cpu_time_total")]
            if on_cuda:
                kinds.append(("cuda_kernel", "self_device_time_total"))
            for kind, attr in kinds:
                evs = [(e.key, getattr(e, attr, 0.0) / 1e6, e.count) for e in avgs]
                evs = sorted((e for e in evs if e[1] > 0), key=lambda e: -e[1])
                total_self = sum(e[1] for e in evs)
                denom = wall if kind == "cpu_op" else total_self
                for name, sec, calls in evs[:top]:
                    rows.append({"direction": direction, "kind": kind, "op": name, "category": categorize(name),
                                 "self_seconds": sec, "calls": calls, "wall_seconds": wall, "share": sec / denom})
                by_cat: dict[str, list] = {}
                for name, sec, calls in evs[top:]:
                    c = by_cat.setdefault(categorize(name), [0.0, 0])
                    c[0] += sec
                    c[1] += calls
                for cat, (sec, calls) in by_cat.items():
                    rows.append({"direction": direction, "kind": kind, "op": f"(rest: {cat})", "category": cat,
                                 "self_seconds": sec, "calls": calls, "wall_seconds": wall, "share": sec / denom})
                if kind == "cpu_op":
                    out = max(wall - total_self, 0.0)
                    rows.append({"direction": direction, "kind": kind, "op": OUTSIDE, "category": OUTSIDE,
                                 "self_seconds": out, "calls": 0, "wall_seconds": wall, "share": out / wall})
    return pd.DataFrame(rows)


def category_shares(kernels):
    """Share of self time per category (the paper's kernel summary), per run, direction and kind."""
    keys = [c for c in ("run_id", "platform", "device", "codec", "quality", "weights") if c in kernels.columns]
    g = kernels.groupby(keys + ["direction", "kind", "category"], as_index=False, dropna=False)[
        ["self_seconds", "share"]].sum()
    return g
