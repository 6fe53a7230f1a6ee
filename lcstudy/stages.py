"""Instrumented encode and decode: CompressAI's own ``compress()``/``decompress()``, with
every second billed to the paper's stage that did the work.

Why instrument instead of re-implementing: the bitstream must be byte-identical to
``model.compress()``. So this module runs the model's own ``compress``/``decompress``
and, for the duration of the call only, wraps the sub-modules and entropy-coder calls
that make up each stage (``g_a``, ``h_a``, ``AEz``, ``ADz``, ``h_s``, ``AEy``/``ADy``,
``g_s``) with a :class:`~lcstudy.timing.StageClock`. Nothing is copied from CompressAI,
so nothing can drift from it.

Stage keys follow CompressAI's sub-module names (as in the papers):

=========== ===================================================================
``g_a``     analysis transform
``h_a``     hyper-analysis
``AEz``     entropy-encode z (``entropy_bottleneck.compress``)
``ADz``     entropy-decode z (the encoder decodes z too, for its own ``h_s``)
``h_s``     hyper-synthesis
``AEy``     entropy-encode y; for ARC/DGM/DGM-ATT the sequential context loop,
            for CKBD the two checkerboard passes, for ELIC the 5 channel groups
            × 2 checkerboard passes
``ADy``     entropy-decode y (same structure as AEy)
``g_s``     synthesis transform (incl. the final clamp)
``misc``    total − sum of the stages above (padding of y, index building, …)
=========== ===================================================================

For FP, the factorized entropy model codes y itself: its stages are ``g_a``, ``AEy``
(``entropy_bottleneck.compress``) and ``ADy``, ``g_s``.

Inside ``AEy``/``ADy`` of the context codecs, sub-stages are recorded under
``"AEy/context"`` (masked/checkerboard context convolution; for ELIC also
``channel_context``), ``"AEy/entropy_parameters"`` and ``"AEy/rans"`` (the rANS coder
calls; for CKBD/ELIC the whole ``gaussian_conditional.compress``/``decompress`` incl.
the encoder's own re-decode of y), and ``"AEy/other"`` (the rest: Python loop, index
building, quantisation, tensor↔list conversions).
"""
from __future__ import annotations

import copy
import fnmatch
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from .codecs import Codec
from .timing import StageClock, synchronizer

ENCODE_STAGES = ("g_a", "h_a", "AEz", "ADz", "h_s", "AEy")
DECODE_STAGES = ("ADz", "h_s", "ADy", "g_s")
SUB_STAGES = ("context", "entropy_parameters", "rans", "other")
#: Transform stages: the "network-only" time (l3ic's E/D, vs CE/DE with entropy coding).
NETWORK_STAGES = {"encode": ("g_a", "h_a", "h_s"), "decode": ("h_s", "g_s")}


@dataclass(frozen=True)
class Probe:
    """One thing to time: ``target`` is a module path (glob allowed) or ``path.method``.

    ``params_of`` names the module paths whose parameters belong to the stage (default:
    the module the probe sits on).
    """

    target: str
    stage: str
    params_of: tuple[str, ...] | None = None
    count: bool = True  # False for entropy-coder calls that cannot be replayed (no MACs)


_HYPER = (
    Probe("g_a", "g_a"), Probe("h_a", "h_a"), Probe("h_s", "h_s"), Probe("g_s", "g_s"),
    Probe("entropy_bottleneck.compress", "AEz", ("entropy_bottleneck",)),
    Probe("entropy_bottleneck.decompress", "ADz", ("entropy_bottleneck",)),
    Probe("gaussian_conditional.compress", "AEy", ("gaussian_conditional",)),
    Probe("gaussian_conditional.decompress", "ADy", ("gaussian_conditional",)),
)

PROBES: dict[str, tuple[Probe, ...]] = {
    "factorized": (
        Probe("g_a", "g_a"), Probe("g_s", "g_s"),
        Probe("entropy_bottleneck.compress", "AEy", ("entropy_bottleneck",)),
        Probe("entropy_bottleneck.decompress", "ADy", ("entropy_bottleneck",)),
    ),
    "hyperprior": _HYPER,
    "autoregressive": _HYPER[:6] + (
        Probe("._compress_ar", "AEy", ("context_prediction", "entropy_parameters", "gaussian_conditional")),
        Probe("._decompress_ar", "ADy", ("context_prediction", "entropy_parameters", "gaussian_conditional")),
        Probe("entropy_parameters", "entropy_parameters"),
        # context: F.conv2d called by _compress_ar/_decompress_ar (see _ar_globals); rans: the coders
    ),
    "latent_codec": (
        Probe("g_a", "g_a"), Probe("g_s", "g_s"),
        Probe("latent_codec.hyper.h_a", "h_a"), Probe("latent_codec.hyper.h_s", "h_s"),
        Probe("latent_codec.hyper.entropy_bottleneck.compress", "AEz", ("latent_codec.hyper.entropy_bottleneck",)),
        Probe("latent_codec.hyper.entropy_bottleneck.decompress", "ADz", ("latent_codec.hyper.entropy_bottleneck",)),
        Probe("latent_codec.y.compress", "AEy", ("latent_codec.y",)),
        Probe("latent_codec.y.decompress", "ADy", ("latent_codec.y",)),
        Probe("latent_codec.y*.context_prediction", "context"),
        Probe("latent_codec.y.channel_context.y[0-9]", "context"),
        Probe("latent_codec.y*.entropy_parameters", "entropy_parameters"),
        Probe("latent_codec.y*.gaussian_conditional.compress", "rans", count=False),
        Probe("latent_codec.y*.gaussian_conditional.decompress", "rans", count=False),
    ),
}


def _resolve(model: torch.nn.Module, target: str) -> list[tuple[str, Any, str | None]]:
    """``target`` → [(module path, module, method name or None)]. ``.meth`` is a method of the root."""
    modules = dict(model.named_modules())
    if target.startswith("."):
        return [("", model, target[1:])]
    hits = [(n, m, None) for n, m in modules.items()
            if n and fnmatch.fnmatchcase(n, target) and not isinstance(m, torch.nn.Identity)]
    if hits:
        return hits
    path, _, meth = target.rpartition(".")
    return [(n, m, meth) for n, m in modules.items() if n and fnmatch.fnmatchcase(n, path) and hasattr(m, meth)]


class _Recorder:
    """What a capture pass saw: each stage's calls (replayable copies) and its parameters."""

    def __init__(self):
        # keyed by (direction, stage): a stage that runs in both directions (h_s, the hyper-latent
        # decoder, runs in compress() and in decompress()) is counted once in each, not twice in both
        self.direction = "encode"
        self.calls: dict[tuple[str, str], list[tuple[Callable, tuple, dict]]] = {}
        self.counts: dict[tuple[tuple[str, str], str], int] = {}
        self.params: dict[str, set[int]] = {}
        self.param_numel: dict[int, int] = {}
        self.countable: dict[tuple[str, str], bool] = {}

    @staticmethod
    def signature(args, kwargs) -> str:
        def sig(a):
            if isinstance(a, torch.Tensor):
                return f"T{tuple(a.shape)}"
            if isinstance(a, (list, tuple)):
                return f"L{len(a)}"
            return type(a).__name__
        return ",".join(sig(a) for a in (*args, *kwargs.values()))

    def record(self, key: str, fn: Callable, args, kwargs, countable: bool, param_modules) -> None:
        dk = (self.direction, key)
        self.countable[dk] = self.countable.get(dk, True) and countable
        for m in param_modules:
            ids = self.params.setdefault(key, set())
            for p in m.parameters():
                ids.add(id(p))
                self.param_numel[id(p)] = p.numel()
        sig = self.signature(args, kwargs)
        n = self.counts.get((dk, sig), 0)
        self.counts[(dk, sig)] = n + 1
        if n == 0 and countable:
            self.calls.setdefault(dk, []).append((fn, copy.deepcopy(args), copy.deepcopy(kwargs), sig))


@contextmanager
def instrument(codec: Codec, clock: StageClock, recorder: _Recorder | None = None) -> Iterator[None]:
    """Wrap ``codec``'s stages so that calls inside the block are billed to ``clock``.

    Everything is restored on exit, also after an exception: the model is left exactly as
    it was (instance attributes removed, module globals put back).
    """
    model = codec.model
    family = codec.spec.family
    modules = dict(model.named_modules())
    with ExitStack() as stack:
        for probe in PROBES[family]:
            for path, mod, meth in _resolve(model, probe.target):
                pmods = [modules[p] for p in probe.params_of] if probe.params_of else [mod]
                attr = meth or "forward"
                orig = getattr(mod, attr)
                stack.callback(_restore_attr, mod, attr, attr in vars(mod), vars(mod).get(attr))
                setattr(mod, attr, _timed(clock, probe.stage, orig, recorder, probe.count, pmods))
        if family == "autoregressive":
            stack.enter_context(_ar_globals(clock, recorder, model))
        yield


def _restore_attr(obj, attr, had, old):
    if had:
        setattr(obj, attr, old)
    else:
        try:
            delattr(obj, attr)
        except AttributeError:
            pass


def _timed(clock: StageClock, stage: str, fn: Callable, recorder, countable, pmods) -> Callable:
    if recorder is None:
        return clock.wrap(stage, fn)

    def timed(*args, **kwargs):
        parent = clock.current
        key = f"{parent}/{stage}" if parent else stage
        recorder.record(key, fn, args, kwargs, countable, pmods)
        with clock.stage(stage):
            return fn(*args, **kwargs)

    return timed


class _FunctionalProxy:
    """Stands in for ``torch.nn.functional`` inside ``compressai.models.google`` during a
    measurement, so that the context model's ``F.conv2d`` in the AR loop is billed to
    ``context``. Calls outside the AR loop (``F.pad``) pass straight through."""

    def __init__(self, clock: StageClock, recorder, model):
        self._clock = clock
        self._recorder = recorder
        self._ctx = [model.context_prediction]

    def __getattr__(self, name):
        return getattr(F, name)

    def conv2d(self, *args, **kwargs):
        cur = self._clock.current
        if cur in ("AEy", "ADy"):
            if self._recorder is not None:
                self._recorder.record(f"{cur}/context", F.conv2d, args, kwargs, True, self._ctx)
            with self._clock.stage("context"):
                return F.conv2d(*args, **kwargs)
        return F.conv2d(*args, **kwargs)


class _TimedCoder:
    """Wraps a CompressAI rANS coder object; its coding calls are billed to ``rans``."""

    _TIMED = ("encode_with_indexes", "flush", "decode_stream", "set_stream")

    def __init__(self, inner, clock: StageClock):
        self._inner = inner
        self._clock = clock

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name in self._TIMED:
            return self._clock.wrap("rans", attr)
        return attr


@contextmanager
def _ar_globals(clock: StageClock, recorder, model):
    import compressai.models.google as google

    saved = {k: getattr(google, k) for k in ("F", "BufferedRansEncoder", "RansDecoder")}
    enc_cls, dec_cls = saved["BufferedRansEncoder"], saved["RansDecoder"]
    google.F = _FunctionalProxy(clock, recorder, model)
    google.BufferedRansEncoder = lambda *a, **k: _TimedCoder(enc_cls(*a, **k), clock)
    google.RansDecoder = lambda *a, **k: _TimedCoder(dec_cls(*a, **k), clock)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(google, k, v)


# --- one encode, one decode ------------------------------------------------------------

@dataclass
class CodingResult:
    """One instrumented encode + decode of one (padded) image."""

    strings: Any
    shape: Any
    x_hat: torch.Tensor
    encode: dict[str, float]  # stage key -> seconds, incl. "total", "misc" and sub-stages
    decode: dict[str, float]
    network: dict[str, float]  # direction -> seconds of the transform stages only

    @property
    def nbytes(self) -> int:
        return sum(len(s) for s in _flatten(self.strings))


def _flatten(strings) -> list[bytes]:
    out: list[bytes] = []
    for s in strings:
        if isinstance(s, (bytes, bytearray)):
            out.append(bytes(s))
        else:
            out.extend(_flatten(s))
    return out


def _finish(totals: dict[str, float], total: float, top: tuple[str, ...]) -> dict[str, float]:
    out = {k: totals.get(k, 0.0) for k in top}
    out.update({k: v for k, v in totals.items() if "/" in k})
    for parent in ("AEy", "ADy"):
        subs = [v for k, v in totals.items() if k.startswith(parent + "/") and k.count("/") == 1]
        if subs:
            out[f"{parent}/other"] = max(totals.get(parent, 0.0) - sum(subs), 0.0)
    out["misc"] = total - sum(out[k] for k in top)
    out["total"] = total
    return out


def top_stages(codec: Codec, direction: str) -> tuple[str, ...]:
    if codec.spec.family == "factorized":
        return ("g_a", "AEy") if direction == "encode" else ("ADy", "g_s")
    return ENCODE_STAGES if direction == "encode" else DECODE_STAGES


def encode_decode(codec: Codec, x: torch.Tensor, clock: StageClock | None = None,
                  recorder: _Recorder | None = None) -> CodingResult:
    """Encode and decode ``x`` (already padded, on the codec's device) with stage timing.

    ``total`` is the wall time of the model's ``compress()`` (``decompress()``) call, from
    a synchronised device to a synchronised device; ``misc`` is what no stage claims.
    """
    clock = clock or StageClock(codec.device)
    sync = synchronizer(codec.device)
    model = codec.model
    with torch.inference_mode(), instrument(codec, clock, recorder):
        clock.reset()
        if recorder is not None:
            recorder.direction = "encode"
        sync()
        t0 = time.perf_counter()
        enc = model.compress(x)
        sync()
        enc_total = time.perf_counter() - t0
        enc_stages = _finish(clock.totals, enc_total, top_stages(codec, "encode"))

        clock.reset()
        if recorder is not None:
            recorder.direction = "decode"
        sync()
        t0 = time.perf_counter()
        dec = model.decompress(enc["strings"], enc["shape"])
        sync()
        dec_total = time.perf_counter() - t0
        dec_stages = _finish(clock.totals, dec_total, top_stages(codec, "decode"))
    network = {d: sum(s.get(k, 0.0) for k in NETWORK_STAGES[d])
               for d, s in (("encode", enc_stages), ("decode", dec_stages))}
    return CodingResult(enc["strings"], enc["shape"], dec["x_hat"], enc_stages, dec_stages, network)


def plain_encode_decode(codec: Codec, x: torch.Tensor) -> tuple[float, float, Any, torch.Tensor]:
    """The model's ``compress()``/``decompress()`` with no instrumentation (the reference)."""
    sync = synchronizer(codec.device)
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        enc = codec.model.compress(x)
        sync()
        t1 = time.perf_counter()
        dec = codec.model.decompress(enc["strings"], enc["shape"])
        sync()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, enc, dec["x_hat"]
