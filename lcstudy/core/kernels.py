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


def self_times(kineto_events) -> dict[tuple[str, str], list]:
    """``{(kind, name): [self seconds, calls]}`` of a profile's events, as ``key_averages()`` gives them.

    *Why not* ``key_averages()``: it builds one Python ``FunctionEvent`` per event first; an
    autoregressive codec's encode of one Kodak image makes ~1 million op events (the per-position
    loop), and that parse took 36–62 s per direction on the 2-core VM for 3–4 s of profiled coding —
    the operator profile was 10 % of the standard book. This reads the same kineto events and applies
    the same rules (torch's ``_parse_kineto_results`` and ``EventList._populate_cpu_children``): CPU
    ops that are not async, nested per thread by time range (a child lies inside its parent; a
    partial overlap is no nesting), self time = own duration minus the direct children's. A CUDA
    kernel's self time is its duration. ``tests/test_kernels.py`` checks the result against
    ``key_averages()`` op by op.
    """
    from torch.autograd import DeviceType

    try:
        from torch.autograd.profiler_util import _filter_name, _rewrite_name
    except ImportError:  # pragma: no cover - torch moved them; names stay as recorded
        def _filter_name(name):
            return name in ("[memory]", "[OutOfMemory]")

        def _rewrite_name(name, with_wildcard=False):
            return name

    names: dict[str, str] = {}
    out: dict[tuple[str, str], list] = {}
    per_thread: dict[int, list] = {}
    for e in kineto_events:
        raw = e.name()
        if _filter_name(raw) or e.is_hidden_event():
            continue
        name = names.get(raw)
        if name is None:
            name = names[raw] = _rewrite_name(raw, with_wildcard=True)
        dev = e.device_type()
        if dev == DeviceType.CPU:
            tid = e.start_thread_id()
            if e.is_async() or tid != e.end_thread_id():
                continue
            per_thread.setdefault(tid, []).append((e.start_ns(), -e.end_ns(), name))
        elif dev == DeviceType.CUDA:
            c = out.setdefault(("cuda_kernel", name), [0.0, 0])
            c[0] += e.duration_ns() / 1e9
            c[1] += 1
    for evs in per_thread.values():
        evs.sort()
        # [end_ns, name, duration_ns, children_ns, n_children, last child's (name, children_ns, self_ns)]
        stack: list[list] = []  # each event lies inside the ones below it
        for start, neg_end, name in evs:
            end = -neg_end
            while stack and (start >= stack[-1][0] or end > stack[-1][0]):
                _close(out, stack)
            if stack:
                stack[-1][3] += end - start
            stack.append([end, name, end - start, 0, 0, None])
        while stack:
            _close(out, stack)
    return out


def _close(out: dict, stack: list) -> None:
    """Pop the top event, record its self time, and tell its parent. As torch's ``_remove_dup_nodes``:
    an event whose only child has its own name (``aten::add`` calling ``aten::add``) absorbs it — one
    call, whose children are the child's."""
    end, name, dur, children, n, last = stack.pop()
    if n == 1 and last[0] == name:
        c = out[("cpu_op", name)]
        c[0] -= last[2] / 1e9
        c[1] -= 1
        children = last[1]
    own = dur - children
    c = out.setdefault(("cpu_op", name), [0.0, 0])
    c[0] += own / 1e9
    c[1] += 1
    if stack:
        stack[-1][4] += 1
        stack[-1][5] = (name, children, own)


def _profiler(on_cuda: bool):
    """The Kineto profiler, as ``torch.profiler.profile`` builds it. On a CPU, its inner
    ``torch.autograd.profiler.profile(use_kineto=True)`` directly: the same events, but the wrapper's
    ``prepare_trace`` asks ``hasattr(torch, "_inductor")``, which imports ``torch._inductor`` and
    ``torch._dynamo`` (1.7 s of every run notebook on the 2-core VM) only to read a CUDA-graphs setting.
    On CUDA the wrapper is kept: that setting guards CUPTI against CUDA graphs there."""
    import torch

    if on_cuda:
        from torch.profiler import ProfilerActivity, profile

        return profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
    return torch.autograd.profiler.profile(use_cpu=True, use_kineto=True)


def _kineto(prof):
    """The legacy profiler object holding ``kineto_results`` (inside ``torch.profiler.profile``, or itself)."""
    return getattr(prof, "profiler", None) or prof


def profile_ops(codec, x, clock=None, top: int = 15):
    """Per-op self times of one encode and one decode of padded ``x``.

    One row per (direction, kind, op) with ``self_seconds``, ``calls``, ``share`` and
    ``category``; ``kind`` is ``cpu_op`` or ``cuda_kernel``. Only the ``top`` ops by self time are
    kept per kind and direction, plus one ``(rest: category)`` row per category and, for CPU
    ops, one ``outside torch ops`` row.
    """
    import pandas as pd
    import torch

    from .clocks import StageClock

    clock = clock or StageClock(codec.device)
    model = codec.model
    on_cuda = codec.device.type == "cuda"
    rows = []
    enc = None
    with torch.inference_mode():
        for direction in ("encode", "decode"):
            with _profiler(on_cuda) as prof:
                if direction == "encode":
                    enc, wall = clock.elapsed(model.compress, x)
                else:
                    _, wall = clock.elapsed(model.decompress, enc["strings"], enc["shape"])
            times = self_times(_kineto(prof).kineto_results.events())
            del prof  # a million events: free them before the next direction
            kinds = ["cpu_op"] + (["cuda_kernel"] if on_cuda else [])
            for kind in kinds:
                evs = [(name, sec, calls) for (k, name), (sec, calls) in times.items() if k == kind]
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
    """Share of self time per category (the paper's kernel summary), per run, direction and operator kind
    (of the ``kernels`` table: :func:`lcstudy.runs.tidy.load_results`)."""
    keys = [c for c in ("run_id", "platform", "device", "codec", "quality", "weights") if c in kernels.columns]
    g = kernels.groupby(keys + ["direction", "op_kind", "category"], as_index=False, dropna=False)[
        ["self_seconds", "share"]].sum()
    return g
