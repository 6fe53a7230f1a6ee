"""MACs and parameters per stage, counted on the shapes each stage really sees.

How: one encode and one decode of a (zero) image of the requested size run through the
same instrumentation as the timing (:mod:`lcstudy.stages`), in capture mode: every
stage call is recorded with a copy of its arguments. Each distinct call is then
replayed under two counters:

* ptflops with ``backend='aten'`` (the reported figure). Its default ``pytorch``
  backend hooks exact module types and counts GDN (``F.conv2d`` inside) and masked
  convolutions as zero: 14.49 instead of 16.62 GMAC for FP's g_a at 768×512.
* ``torch.utils.flop_counter.FlopCounterMode`` as a cross-check (FLOPs = 2 × MAC); both
  count convolutions and matrix products, not elementwise ops or biases, and must
  agree within 1 % per stage (tested).

For the autoregressive codecs (ARC, DGM, DGM-ATT) the context model and entropy
parameters are counted *as executed* in the sequential loop (one 5×5 patch per latent
position; sub-stages ``AEy/context``, ``AEy/entropy_parameters``), and also as the
single parallel pass ``forward()`` makes (rows with ``count_mode='parallel'``).
Entropy coding itself (rANS) does no MACs; its stages count whatever tensor ops they do.
"""
from __future__ import annotations

import warnings

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from .codecs import Codec
from .images import PAD_MULTIPLE
from .stages import _Recorder, encode_decode, top_stages
from .timing import StageClock

ENCODER_SIDE = ("g_a", "h_a", "AEz", "ADz", "h_s", "AEy")
DECODER_SIDE = ("ADz", "h_s", "ADy", "g_s")


class _Replay(torch.nn.Module):
    """A module whose forward is one recorded stage call (what ptflops needs)."""

    def __init__(self, fn, args, kwargs):
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def forward(self, _unused=None):
        import copy

        # fresh copies: several stages mutate their inputs in place (the AR loop fills y_hat)
        return self.fn(*copy.deepcopy(self.args), **copy.deepcopy(self.kwargs))


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
    counter = FlopCounterMode(display=False)
    with counter:
        _Replay(fn, args, kwargs)()
    return int(counter.get_total_flops())


def count_complexity(codec: Codec, height: int = 512, width: int = 768) -> pd.DataFrame:
    """One row per (direction, stage): ``macs`` (ptflops aten), ``flops_torch`` (FlopCounterMode),
    ``params``, ``kmac_per_px``; plus ``side`` totals (encoder, decoder) and, for AR codecs,
    parallel counts. ``height``/``width`` are padded to a multiple of 64 as for coding."""
    from compressai.ops import compute_padding

    (l, r, t, b), _ = compute_padding(height, width, min_div=PAD_MULTIPLE)
    hp, wp = height + t + b, width + l + r
    x = torch.zeros(1, 3, hp, wp, device=codec.device)
    rec = _Recorder()
    with torch.inference_mode():
        # capture pass: records each stage's calls and arguments (zeros image: shapes are what matter;
        # MACs of convolutions do not depend on the values)
        encode_decode(codec, x, StageClock(codec.device), recorder=rec)
    # the recorder keys calls by (direction, stage): compress() calls are encode, decompress() decode
    rows = []
    pixels = height * width
    # FlopCounterMode's module tracker hooks parameters that require grad, which fails on
    # inference tensors: count with requires_grad off (restored afterwards) under no_grad
    req = [(p, p.requires_grad) for p in codec.model.parameters()]
    for p, _ in req:
        p.requires_grad_(False)
    try:
        for (direction, key), calls in rec.calls.items():
            macs = flops = 0
            for fn, args, kwargs, sig in calls:
                n = rec.counts[((direction, key), sig)]
                with torch.no_grad():
                    macs += n * _ptflops_macs(fn, args, kwargs)
                    flops += n * _torch_flops(fn, args, kwargs)
            params = sum(rec.param_numel[i] for i in rec.params.get(key, ()))
            rows.append({"direction": direction, "stage": key, "macs": macs, "flops_torch": flops,
                         "params": params, "count_mode": "executed"})
        parallel = _parallel_counts(codec, hp, wp) if codec.spec.family == "autoregressive" else None
    finally:
        for p, r in req:
            p.requires_grad_(r)
    for (direction, key) in rec.countable:  # stages recorded but never counted (entropy coder calls): 0 MACs
        if (direction, key) not in rec.calls:
            params = sum(rec.param_numel[i] for i in rec.params.get(key, ()))
            rows.append({"direction": direction, "stage": key, "macs": 0, "flops_torch": 0, "params": params,
                         "count_mode": "executed"})
    df = pd.DataFrame(rows)
    tops = {d: set(top_stages(codec, d)) for d in ("encode", "decode")}
    df = df[[s.split("/")[0] in tops[d] for d, s in zip(df.direction, df.stage)]].reset_index(drop=True)
    if parallel is not None:
        df = pd.concat([df, parallel], ignore_index=True)
    for direction in ("encode", "decode"):
        top = df[(df.direction == direction) & (~df.stage.str.contains("/")) & (df.count_mode == "executed")]
        ids = set().union(*(rec.params.get(k, set()) for k in top.stage))  # each parameter once
        df = pd.concat([df, pd.DataFrame([{
            "stage": "total", "direction": direction, "macs": int(top.macs.sum()),
            "flops_torch": int(top.flops_torch.sum()),
            "params": sum(rec.param_numel[i] for i in ids), "count_mode": "executed"}])], ignore_index=True)
    df["kmac_per_px"] = df["macs"] / pixels / 1e3
    df["gmac"] = df["macs"] / 1e9
    df["mac_vs_torch"] = df["macs"] / (df["flops_torch"] / 2).where(df["flops_torch"] > 0)
    df.insert(0, "width", width)
    df.insert(0, "height", height)
    df.insert(0, "quality", codec.quality)
    df.insert(0, "codec", codec.spec.label)
    df["model_params"] = sum(p.numel() for p in codec.model.parameters())
    return df


def _parallel_counts(codec: Codec, hp: int, wp: int) -> pd.DataFrame:
    """Context model and entropy parameters as one parallel pass over the whole latent."""
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
    return pd.DataFrame(rows)


def side_totals(cx: pd.DataFrame) -> dict[str, float]:
    """Encoder-side and decoder-side kMAC/pixel (executed counts)."""
    t = cx[(cx.stage == "total")].set_index("direction")["kmac_per_px"]
    return {"encode": float(t.get("encode", float("nan"))), "decode": float(t.get("decode", float("nan")))}
