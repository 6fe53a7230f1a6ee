"""The operator profile's own aggregation of the profiler's events equals torch's ``key_averages()``.

``kernels.self_times`` exists because ``key_averages()`` took 36–62 s per direction on an
autoregressive codec's million op events; it must give the same self time and call count per op.
"""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import lcstudy
from lcstudy.core.kernels import profile_ops, self_times


def _both(codec, x):
    """(key_averages, self_times) of one encode and one decode of ``x``."""
    out = []
    with torch.inference_mode():
        with profile(activities=[ProfilerActivity.CPU]) as pe:
            enc = codec.model.compress(x)
        with profile(activities=[ProfilerActivity.CPU]) as pd_:
            codec.model.decompress(enc["strings"], enc["shape"])
    for prof in (pe, pd_):
        ref = {("cpu_op", e.key): [e.self_cpu_time_total / 1e6, e.count] for e in prof.key_averages()}
        out.append((ref, self_times(prof.profiler.kineto_results.events())))
    return out


# HP: aten ops that call themselves (an ``aten::add`` whose only child is an ``aten::add``: torch merges
# them into one call); ARC: the per-position loop of the autoregressive context model
@pytest.mark.parametrize("name,size", [("HP", 128), ("ARC", 64)])
def test_self_times_equal_key_averages(name, size):
    torch.manual_seed(0)
    codec = lcstudy.load_codec(name, 1, weights="random")
    for ref, got in _both(codec, torch.rand(1, 3, size, size)):
        assert set(got) == set(ref)
        for key, (sec, calls) in ref.items():
            assert got[key][1] == calls, key
            assert got[key][0] == pytest.approx(sec, rel=1e-9, abs=1e-12), key


def test_profile_ops_shares_add_up():
    """The CPU rows of a direction (top ops, the rest per category, and what the profiler cannot see)
    add up to the call's wall time."""
    codec = lcstudy.load_codec("HP", 1, weights="random")
    k = profile_ops(codec, torch.rand(1, 3, 128, 128))
    for direction, g in k[k.kind == "cpu_op"].groupby("direction"):
        assert g.share.sum() == pytest.approx(1.0, abs=1e-6), direction
        assert (g.self_seconds >= 0).all() and g.calls.sum() > 10


def test_the_cpu_profiler_sees_what_torch_profiler_sees():
    """profile_ops on a CPU uses torch.profiler.profile's inner Kineto profiler directly (kernels._profiler): the
    same ops with the same call counts as through the wrapper, for one encode and one decode."""
    from lcstudy.core.kernels import _kineto, _profiler

    torch.manual_seed(0)
    codec = lcstudy.load_codec("HP", 1, weights="random")
    x = torch.rand(1, 3, 64, 64)
    calls = []
    for make in (lambda: profile(activities=[ProfilerActivity.CPU]), lambda: _profiler(False)):
        with torch.inference_mode():
            with make() as prof:
                enc = codec.model.compress(x)
                codec.model.decompress(enc["strings"], enc["shape"])
        calls.append({k: n for k, (_, n) in self_times(_kineto(prof).kineto_results.events()).items()})
    assert calls[0] == calls[1] and len(calls[0]) > 10


def test_a_cpu_operator_profile_does_not_import_dynamo():
    """torch.profiler.profile's prepare_trace imports torch._inductor and torch._dynamo (1.7 s of a run notebook on
    the 2-core VM); the CPU operator profile does without them (the lean CompressAI import leaves torchvision's
    path to them out too)."""
    import subprocess
    import sys

    code = ("import sys, torch, lcstudy; from lcstudy.core.kernels import profile_ops; torch.manual_seed(0); "
            "c = lcstudy.load_codec('HP', 1, weights='random'); profile_ops(c, torch.rand(1, 3, 64, 64)); "
            "print('torch._dynamo' in sys.modules, 'torch._inductor' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-2:] == ["False", "False"]
