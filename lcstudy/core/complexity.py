"""MACs and parameters per stage, counted on the shapes each stage really sees.

How: one encode and one decode run through the same instrumentation as the timing
(:mod:`lcstudy.core.instrument`) in capture mode — after the run's timed items, never in their
warm-up: the counters' dispatch modes import ``torch._dynamo`` (~150 MB resident), which would sit in
every later memory reading — and every stage call is recorded with a copy
of its arguments (once per distinct argument shape, with a call count). Each distinct call is
then replayed under two counters:

* ptflops with ``backend='aten'`` (the reported figure). Its default ``pytorch`` backend hooks
  exact module types and counts GDN (``F.conv2d`` inside) and masked convolutions as zero:
  14.49 instead of 16.62 GMAC for FP's g_a at 768×512.
* ``torch.utils.flop_counter.FlopCounterMode`` as a cross-check (FLOPs = 2 × MAC); both count
  convolutions and matrix products, not elementwise ops or biases, and must agree within 1 %
  per stage (tested).

Autoregressive codecs (ARC, DGM, DGM-ATT): the context model and the entropy parameters are
counted in their **parallel** form — one pass over the whole latent, as ``forward()`` makes —
rather than replaying the sequential loop (one 5×5 patch per latent position): the masked
convolution still multiplies the zeroed taps, so the two are equal (``ar="executed"`` counts
the loop; a test proves the equality at a small size). ``AEy``/``ADy`` are the sum of their
counted sub-stages; rANS coding does no MACs.

Modules with parameters whose forward ran but that neither counter counted (elementwise
layers, custom kernels) are named in ``uncounted``, not silently counted as zero.
"""
from __future__ import annotations

import copy
import warnings

ENCODER_SIDE = ("g_a", "h_a", "AEz", "ADz", "h_s", "AEy")
DECODER_SIDE = ("ADz", "h_s", "ADy", "g_s")
COUNTERS = "ptflops 0.7.5 (backend='aten'); cross-check torch.utils.flop_counter.FlopCounterMode"


class _Replay:
    """A module whose forward is one recorded stage call (what ptflops needs)."""

    def __new__(cls, fn, args, kwargs):
        import torch

        class Replay(torch.nn.Module):
            def __init__(self):
                super().__init__()

            def forward(self, _unused=None):
                # fresh copies: several stages mutate their inputs in place (the AR loop fills y_hat)
                return fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))

        return Replay()


def _ptflops_macs(fn, args, kwargs) -> int:
    from ptflops import get_model_complexity_info

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = get_model_complexity_info(_Replay(fn, args, kwargs), (1,), input_constructor=lambda _: {},
                                            as_strings=False, backend="aten", print_per_layer_stat=False,
                                            verbose=False)
    if macs is None:
        raise RuntimeError(f"ptflops could not count {getattr(fn, '__qualname__', fn)}")
    return int(macs)


def _torch_flops(fn, args, kwargs) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        _Replay(fn, args, kwargs)()
    return int(counter.get_total_flops())


class LeafWatch:
    """Forward hooks on the model's parametric leaf modules during a capture: which leaves ran in
    which stage, with the shapes of their inputs (to replay them alone on zeros)."""

    def __init__(self, model, clock):
        import torch

        self.clock = clock
        self.seen: dict[tuple[str, str], tuple[str, object, list]] = {}
        self.direction = "encode"
        self._handles = []
        for name, m in model.named_modules():
            if name and not list(m.children()) and any(True for _ in m.parameters(recurse=False)):
                self._handles.append(m.register_forward_pre_hook(self._hook(name)))
        self._torch = torch

    def _hook(self, name):
        def pre(mod, args):
            stage = self.clock.current
            if stage is None:
                return
            key = (self.direction, name)
            if key not in self.seen and all(isinstance(a, self._torch.Tensor) for a in args):
                self.seen[key] = (stage, mod, [(tuple(a.shape), a.dtype, a.device) for a in args])
        return pre

    def remove(self):
        for h in self._handles:
            h.remove()

    def uncounted(self) -> dict[tuple[str, str], list[str]]:
        """(direction, stage) → ["path (Class)", …] of parametric leaves no counter counted."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        out: dict[tuple[str, str], list[str]] = {}
        for (direction, name), (stage, mod, shapes) in self.seen.items():
            args = [torch.zeros(s, dtype=d, device=dev) for s, d, dev in shapes]
            try:
                with torch.no_grad(), FlopCounterMode(display=False) as fc:
                    mod(*args)
                flops = fc.get_total_flops()
            except Exception:  # noqa: BLE001 - a leaf that cannot run on zeros: say so
                flops = 0
            if flops == 0:
                out.setdefault((direction, stage.split("/")[0]), []).append(f"{name} ({type(mod).__name__})")
        return out


def capture(codec, x, clock=None, ar_loop: bool = False):
    """One encode + decode of padded ``x`` in capture mode; returns (recorder, leaf watch, coding).
    ``ar_loop``: record the autoregressive loop's per-position context convolutions too (to
    count the loop as executed)."""
    from .clocks import StageClock
    from .instrument import CallRecorder, encode_decode

    clock = clock or StageClock(codec.device)
    rec = CallRecorder(ar_loop=ar_loop)
    watch = LeafWatch(codec.model, clock)
    try:
        class _Dir:  # keep the leaf watch's direction in step with the recorder's
            def begin(self, d):
                watch.direction = d

            def end(self, d):
                pass

        coding = encode_decode(codec, x, clock, recorder=rec, probe=_Dir())
    finally:
        watch.remove()
    return rec, watch, coding


def count(codec, rec, watch, height: int, width: int, ar: str = "parallel"):
    """MACs, FLOPs and parameters per stage from a capture at the unpadded ``height``×``width``."""
    import pandas as pd
    import torch

    from .images import padded_size
    from .instrument import top_stages

    family = codec.family or codec.spec.family
    hp, wp = padded_size(height, width)
    rows = []
    pixels = height * width
    # FlopCounterMode's module tracker hooks parameters that require grad, which fails on inference
    # tensors: count with requires_grad off (restored afterwards) under no_grad
    req = [(p, p.requires_grad) for p in codec.model.parameters()]
    for p, _ in req:
        p.requires_grad_(False)
    try:
        for (direction, key), calls in rec.calls.items():
            if family == "autoregressive" and ar == "parallel" and key in ("AEy/entropy_parameters",
                                                                            "ADy/entropy_parameters"):
                continue  # counted in the parallel form below
            macs = flops = 0
            for fn, args, kwargs, sig in calls:
                n = rec.counts[((direction, key), sig)]
                with torch.no_grad():
                    macs += n * _ptflops_macs(fn, args, kwargs)
                    flops += n * _torch_flops(fn, args, kwargs)
            rows.append({"direction": direction, "stage": key, "macs": macs, "flops_torch": flops,
                         "params": _params(rec, key), "count_mode": "executed"})
        if family == "autoregressive" and ar == "parallel":
            rows += _ar_counts(codec, hp, wp)
        uncounted = watch.uncounted() if watch is not None else {}
    finally:
        for p, r in req:
            p.requires_grad_(r)
    have = {(r["direction"], r["stage"]) for r in rows}
    for (direction, key) in rec.countable:  # stages recorded but not replayable (entropy coders): 0 MACs
        if (direction, key) not in have:
            rows.append({"direction": direction, "stage": key, "macs": 0, "flops_torch": 0,
                         "params": _params(rec, key), "count_mode": "executed"})
    df = pd.DataFrame(rows)
    tops = {d: top_stages(family, d) for d in ("encode", "decode")}
    if tops["encode"] is not None:
        df = df[[s.split("/")[0] in tops[d] for d, s in zip(df.direction, df.stage)]].reset_index(drop=True)
    # a parent whose own call is not replayed (the AR loop) is the sum of its counted sub-stages
    for i, r in df.iterrows():
        if "/" not in r.stage and not rec.countable.get((r.direction, r.stage), True):
            subs = df[(df.direction == r.direction) & df.stage.str.startswith(r.stage + "/")]
            df.loc[i, ["macs", "flops_torch"]] = [int(subs.macs.sum()), int(subs.flops_torch.sum())]
    for direction in ("encode", "decode"):
        top = df[(df.direction == direction) & (~df.stage.str.contains("/"))]
        ids = set().union(*(rec.params.get(k, set()) for k in top.stage))  # each parameter once
        df = pd.concat([df, pd.DataFrame([{
            "stage": "total", "direction": direction, "macs": int(top.macs.sum()),
            "flops_torch": int(top.flops_torch.sum()), "params": sum(rec.param_numel[i] for i in ids),
            "count_mode": "executed"}])], ignore_index=True)
    df["uncounted"] = [", ".join(uncounted.get((d, s), [])) for d, s in zip(df.direction, df.stage)]
    tot_unc = {d: ", ".join(sorted({u for (dd, _), us in uncounted.items() if dd == d for u in us}))
               for d in ("encode", "decode")}
    df.loc[df.stage == "total", "uncounted"] = df.loc[df.stage == "total", "direction"].map(tot_unc)
    from .instrument import stage_kind

    df["kind"] = [stage_kind(s)[0] for s in df.stage]
    df["kmac_per_px"] = df["macs"] / pixels / 1e3
    df["gmac"] = df["macs"] / 1e9
    df["mac_vs_torch"] = df["macs"] / (df["flops_torch"] / 2).where(df["flops_torch"] > 0)
    df.insert(0, "width", width)
    df.insert(0, "height", height)
    df.insert(0, "quality", codec.quality)
    df.insert(0, "codec", codec.spec.label)
    df["model_params"] = sum(p.numel() for p in codec.model.parameters())
    df["ar_count"] = ar if family == "autoregressive" else ""
    return df


def _params(rec, key) -> int:
    return sum(rec.param_numel[i] for i in rec.params.get(key, ()))


def _ar_counts(codec, hp: int, wp: int) -> list[dict]:
    """The AR loop's context model and entropy parameters in the parallel form: one pass over the
    whole latent (y is M×H/16×W/16), in each direction."""
    import torch

    m = codec.model
    y = torch.zeros(1, m.context_prediction.in_channels, hp // 16, wp // 16, device=codec.device)
    rows = []
    with torch.no_grad():
        ctx = m.context_prediction(y)
        params = torch.zeros(1, m.entropy_parameters[0].in_channels - ctx.shape[1], *ctx.shape[-2:],
                             device=codec.device)
        for name, mod, arg in (("context", m.context_prediction, y),
                               ("entropy_parameters", m.entropy_parameters, torch.cat([params, ctx], 1))):
            mac = _ptflops_macs(mod, (arg,), {})
            fl = _torch_flops(mod, (arg,), {})
            for direction, parent in (("encode", "AEy"), ("decode", "ADy")):
                rows.append({"stage": f"{parent}/{name}", "direction": direction, "macs": mac, "flops_torch": fl,
                             "params": sum(p.numel() for p in mod.parameters()), "count_mode": "parallel"})
    return rows


def count_complexity(codec, height: int = 512, width: int = 768, ar: str = "parallel"):
    """One row per (direction, stage): ``macs`` (ptflops aten), ``flops_torch`` (FlopCounterMode),
    ``params``, ``kmac_per_px``, ``uncounted``; plus ``total`` per direction. ``height``/``width``
    are padded to a multiple of 64 as for coding; a zero image is captured (MACs of convolutions do
    not depend on the values)."""
    import torch

    from .images import padded_size

    hp, wp = padded_size(height, width)
    x = torch.zeros(1, 3, hp, wp, device=codec.device)
    rec, watch, _ = capture(codec, x, ar_loop=(ar == "executed"))
    return count(codec, rec, watch, height, width, ar)


def side_totals(cx) -> dict[str, float]:
    """Encoder-side and decoder-side kMAC/pixel."""
    t = cx[(cx.stage == "total")].set_index("direction")["kmac_per_px"]
    return {"encode": float(t.get("encode", float("nan"))), "decode": float(t.get("decode", float("nan")))}
