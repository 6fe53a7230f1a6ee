"""Instrumented encode and decode: a codec's own ``compress()``/``decompress()``, with every
second billed to the stage that did the work.

Why instrument instead of re-implementing: the bitstream must be byte-identical to
``model.compress()``. So this module runs the model's own ``compress``/``decompress`` and,
for the duration of the call only, wraps the sub-modules and entropy-coder calls that make
up each stage with a :class:`~lcstudy.core.clocks.StageClock`. Nothing is copied from
CompressAI, so nothing can drift from it; :func:`verify_split` checks it before any timing.

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
(``entropy_bottleneck.compress``) and ``ADy``, ``g_s``. Inside ``AEy``/``ADy`` of the context
codecs, sub-stages are ``context`` (masked/checkerboard context convolution; ELIC's channel
context too), ``entropy_parameters``, ``rans`` (the rANS coder calls; for CKBD/ELIC the whole
``gaussian_conditional.compress``/``decompress``) and ``other`` (the rest of the loop).

A model the study has never seen is split by :func:`detect_family`: by CompressAI's
conventions where it follows them, else ``generic`` — each top-level child module timed as a
stage of its own, a coarser split that the run page says is coarser.

Each row of a coding has a **kind**: ``partition`` (the top-level stages and ``misc``, which add
up to the total), ``sub`` (sub-stages of ``AEy``/``ADy``, which add up to their parent), or
``aggregate`` (``total``, and ``network``: the transforms alone, l3ic's E/D); and ``measured``
says whether a clock read it or it was derived by subtraction or sum (``misc``, ``*/other``,
``network``).
"""
from __future__ import annotations

import copy
import fnmatch
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, Iterator

from .clocks import StageClock

ENCODE_STAGES = ("g_a", "h_a", "AEz", "ADz", "h_s", "AEy")
DECODE_STAGES = ("ADz", "h_s", "ADy", "g_s")
#: Stage order in every table and figure.
STAGE_ORDER = ("g_a", "h_a", "AEz", "ADz", "h_s", "AEy", "ADy", "g_s", "misc")
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
        # the AR loop: not replayed for MACs (count=False); complexity counts its context model and
        # entropy parameters in their parallel form, equal to the executed loop (tested)
        Probe("._compress_ar", "AEy", ("context_prediction", "entropy_parameters", "gaussian_conditional"), False),
        Probe("._decompress_ar", "ADy", ("context_prediction", "entropy_parameters", "gaussian_conditional"), False),
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


class Family(StrEnum):
    """Which stage split a model gets (:data:`PROBES`, :func:`top_stages`): a closed set, so a codecs file's
    typo fails when it is read, not as a stage table that silently has no ``AEy``. ``AUTO`` is a request, not a
    split: :func:`detect_family` replaces it when the model is loaded."""

    FACTORIZED = "factorized"
    HYPERPRIOR = "hyperprior"
    AUTOREGRESSIVE = "autoregressive"
    LATENT_CODEC = "latent_codec"
    GENERIC = "generic"
    AUTO = "auto"


class StageKind(StrEnum):
    """What a stage row adds up to (the module docstring): the rows of one kind are what may be summed."""

    PARTITION = "partition"  # top-level stages and misc: they add up to the total
    SUB = "sub"  # sub-stages of AEy/ADy: they add up to their parent
    AGGREGATE = "aggregate"  # total, network: sums of the others


def detect_family(model) -> Family:
    """Which stage split applies to a model, by CompressAI's conventions (names of sub-modules)."""
    names = {n for n, _ in model.named_children()}
    has = lambda *a: all(x in names for x in a)  # noqa: E731
    if has("g_a", "g_s", "latent_codec") and hasattr(getattr(model, "latent_codec", None), "__getitem__"):
        lc = model.latent_codec
        try:
            if "hyper" in lc and "y" in lc:
                return Family.LATENT_CODEC
        except TypeError:
            pass
    if has("g_a", "g_s", "h_a", "h_s", "entropy_bottleneck", "gaussian_conditional", "context_prediction",
           "entropy_parameters") and callable(getattr(model, "_compress_ar", None)):
        return Family.AUTOREGRESSIVE
    if has("g_a", "g_s", "h_a", "h_s", "entropy_bottleneck", "gaussian_conditional"):
        return Family.HYPERPRIOR
    if has("g_a", "g_s", "entropy_bottleneck") and not has("h_a"):
        return Family.FACTORIZED
    return Family.GENERIC


def probes_for(family: str, model) -> tuple[Probe, ...]:
    if family == "generic":
        return tuple(Probe(n, n) for n, m in model.named_children() if not _is_identity(m))
    return PROBES[family]


def _is_identity(m) -> bool:
    import torch

    return isinstance(m, torch.nn.Identity)


def top_stages(family: str, direction: str) -> tuple[str, ...] | None:
    """The declared top-level stages of a family (``None`` for ``generic``: whatever ran)."""
    if family == "generic":
        return None
    if family == "factorized":
        return ("g_a", "AEy") if direction == "encode" else ("ADy", "g_s")
    return ENCODE_STAGES if direction == "encode" else DECODE_STAGES


def _resolve(model, target: str) -> list[tuple[str, Any, str | None]]:
    """``target`` → [(module path, module, method name or None)]. ``.meth`` is a method of the root."""
    modules = dict(model.named_modules())
    if target.startswith("."):
        return [("", model, target[1:])]
    hits = [(n, m, None) for n, m in modules.items()
            if n and fnmatch.fnmatchcase(n, target) and not _is_identity(m)]
    if hits:
        return hits
    path, _, meth = target.rpartition(".")
    return [(n, m, meth) for n, m in modules.items() if n and fnmatch.fnmatchcase(n, path) and hasattr(m, meth)]


class CallRecorder:
    """What a capture pass saw: each stage's calls (replayable copies) and its parameters.

    Keyed by (direction, stage): a stage that runs in both directions (h_s, the hyper-latent
    decoder, runs in compress() and in decompress()) is counted once in each, not twice in both.
    """

    def __init__(self, ar_loop: bool = False):
        self.direction = "encode"
        #: record the autoregressive loop's per-position context convolutions (count the loop as run)
        self.ar_loop = ar_loop
        self.calls: dict[tuple[str, str], list[tuple[Callable, tuple, dict, str]]] = {}
        self.counts: dict[tuple[tuple[str, str], str], int] = {}
        self.params: dict[str, set[int]] = {}
        self.param_numel: dict[int, int] = {}
        self.countable: dict[tuple[str, str], bool] = {}

    @staticmethod
    def signature(args, kwargs) -> str:
        import torch

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
        if not countable:
            return
        sig = self.signature(args, kwargs)
        n = self.counts.get((dk, sig), 0)
        self.counts[(dk, sig)] = n + 1
        if n == 0:
            self.calls.setdefault(dk, []).append((fn, copy.deepcopy(args), copy.deepcopy(kwargs), sig))


@contextmanager
def instrument(model, family: str, clock: StageClock, recorder: CallRecorder | None = None,
               wrapper: Callable | None = None, ar_loop: bool | None = None) -> Iterator[None]:
    """Wrap ``model``'s stages so that calls inside the block are billed to ``clock``.

    Everything is restored on exit, also after an exception: the model is left exactly as
    it was (instance attributes removed, module globals put back). ``wrapper(stage, fn)``
    replaces the timing wrapper (:func:`verify_split` records outputs with it); ``ar_loop``
    (default: when timing) also bills the inside of the autoregressive loop.
    """
    modules = dict(model.named_modules())
    with ExitStack() as stack:
        for probe in probes_for(family, model):
            for path, mod, meth in _resolve(model, probe.target):
                pmods = [modules[p] for p in probe.params_of] if probe.params_of else [mod]
                attr = meth or "forward"
                orig = getattr(mod, attr)
                stack.callback(_restore_attr, mod, attr, attr in vars(mod), vars(mod).get(attr))
                fn = wrapper(probe.stage, orig) if wrapper else _timed(clock, probe.stage, orig, recorder,
                                                                          probe.count, pmods)
                setattr(mod, attr, fn)
        if family == "autoregressive" and (wrapper is None if ar_loop is None else ar_loop):
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

    def __init__(self, clock: StageClock, recorder, model, functional):
        self._clock = clock
        self._recorder = recorder
        self._ctx = [model.context_prediction]
        self._F = functional

    def __getattr__(self, name):
        return getattr(self._F, name)

    def conv2d(self, *args, **kwargs):
        cur = self._clock.current
        if cur in ("AEy", "ADy"):
            if self._recorder is not None:
                # normally counted in its parallel form (lcstudy.core.complexity), not per position
                self._recorder.record(f"{cur}/context", self._F.conv2d, args, kwargs, self._recorder.ar_loop,
                                      self._ctx)
            with self._clock.stage("context"):
                return self._F.conv2d(*args, **kwargs)
        return self._F.conv2d(*args, **kwargs)


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
    google.F = _FunctionalProxy(clock, recorder, model, saved["F"])
    google.BufferedRansEncoder = lambda *a, **k: _TimedCoder(enc_cls(*a, **k), clock)
    google.RansDecoder = lambda *a, **k: _TimedCoder(dec_cls(*a, **k), clock)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(google, k, v)


# --- one encode, one decode ------------------------------------------------------------

@dataclass
class Coding:
    """One instrumented encode + decode of one (padded) image."""

    strings: Any
    shape: Any
    x_hat: Any
    encode: dict[str, float]  # stage key -> seconds, incl. "total", "misc" and sub-stages
    decode: dict[str, float]
    network: dict[str, float]  # direction -> seconds of the transform stages only

    @property
    def nbytes(self) -> int:
        return sum(len(s) for s in flatten(self.strings))

    def rows(self) -> list[tuple[str, str, str, bool, float]]:
        """(direction, stage, kind, measured, seconds) for every stage of both directions."""
        out = []
        for direction, st in (("encode", self.encode), ("decode", self.decode)):
            for stage, sec in st.items():
                out.append((direction, stage, *stage_kind(stage), sec))
            out.append((direction, "network", StageKind.AGGREGATE, False, self.network[direction]))
        return out


def stage_kind(stage: str) -> tuple[StageKind, bool]:
    """(kind, measured) of a stage key."""
    if stage == "total":
        return StageKind.AGGREGATE, True
    if stage == "network":
        return StageKind.AGGREGATE, False
    if "/" in stage:
        return StageKind.SUB, not stage.endswith("/other")
    return StageKind.PARTITION, stage != "misc"


def flatten(strings) -> list[bytes]:
    out: list[bytes] = []
    for s in strings:
        if isinstance(s, (bytes, bytearray)):
            out.append(bytes(s))
        else:
            out.extend(flatten(s))
    return out


def _finish(totals: dict[str, float], total: float, top: tuple[str, ...] | None) -> dict[str, float]:
    if top is None:
        top = tuple(k for k in totals if "/" not in k)
    out = {k: totals.get(k, 0.0) for k in top}
    out.update({k: v for k, v in totals.items() if "/" in k})
    for parent in ("AEy", "ADy"):
        subs = [v for k, v in totals.items() if k.startswith(parent + "/") and k.count("/") == 1]
        if subs:
            out[f"{parent}/other"] = max(totals.get(parent, 0.0) - sum(subs), 0.0)
    out["misc"] = total - sum(out[k] for k in top)
    out["total"] = total
    return out


def encode_decode(codec, x, clock: StageClock | None = None, recorder: CallRecorder | None = None,
                  probe=None) -> Coding:
    """Encode and decode ``x`` (already padded, on the codec's device) with stage timing.

    ``total`` is the wall time of the model's ``compress()`` (``decompress()``) call, from
    a synchronised device to a synchronised device (the clock's own synchroniser); ``misc``
    is what no stage claims. ``probe`` (optional) gets ``begin(direction)`` just before and
    ``end(direction)`` just after each timed call, outside the clock reads (memory and
    contention are read there).
    """
    import time

    import torch

    clock = clock or StageClock(codec.device)
    sync = clock.sync
    model = codec.model
    family = codec.family or codec.spec.family
    def timed(direction, fn, *args):
        clock.reset()
        if recorder is not None:
            recorder.direction = direction
        sync()
        if probe is not None:
            probe.begin(direction)
        t0 = time.perf_counter()
        out = fn(*args)
        sync()
        t1 = time.perf_counter()
        if probe is not None:
            probe.end(direction)
        return out, _finish(clock.totals, t1 - t0, top_stages(family, direction))

    with torch.inference_mode(), instrument(model, family, clock, recorder):
        enc, enc_stages = timed("encode", model.compress, x)
        dec, dec_stages = timed("decode", model.decompress, enc["strings"], enc["shape"])
    network = {d: sum(s.get(k, 0.0) for k in NETWORK_STAGES[d]) for d, s in (("encode", enc_stages),
                                                                            ("decode", dec_stages))}
    return Coding(enc["strings"], enc["shape"], dec["x_hat"], enc_stages, dec_stages, network)


def plain_encode_decode(codec, x) -> tuple[float, float, Any, Any]:
    """The model's ``compress()``/``decompress()`` with no instrumentation (the reference)."""
    import torch

    clock = StageClock(codec.device)
    with torch.inference_mode():
        enc, te = clock.elapsed(codec.model.compress, x)
        dec, td = clock.elapsed(codec.model.decompress, enc["strings"], enc["shape"])
    return te, td, enc, dec["x_hat"]


def verify_split(codec, x) -> None:
    """Check on one input that the instrumented encode/decode gives the model's own bitstream
    and reconstruction; raise :class:`~lcstudy.errors.InputError` naming the first stage whose
    output differs (or ``misc``: the code between stages) when it does not."""
    import torch

    from ..errors import InputError

    _, _, ref, ref_x = plain_encode_decode(codec, x)
    got = encode_decode(codec, x)
    if got.strings == ref["strings"] and torch.equal(got.x_hat, ref_x):
        return
    family = codec.family or codec.spec.family
    plain_calls = _stage_outputs(codec, x, family, timed=False)
    timed_calls = _stage_outputs(codec, x, family, timed=True)
    stage = "misc (code between the stages)"
    for (sa, a), (sb, b) in zip(plain_calls, timed_calls):
        if sa != sb or not _same(a, b):
            stage = sa
            break
    raise InputError(f"{codec.label}: the instrumented coding does not reproduce the model's own compress()/"
                     f"decompress() (first difference in stage {stage}); refusing to time a wrong split. "
                     "If the model wraps or inspects its sub-modules, give it family=\"generic\" in the codecs "
                     "file")


def _stage_outputs(codec, x, family: str, timed: bool) -> list[tuple[str, Any]]:
    """(stage, output) of every stage call, in order, of one encode + decode: with the timing
    wrappers (``timed``) or with pass-through recorders only."""
    import torch

    seen: list[tuple[str, Any]] = []
    clock = StageClock(codec.device)

    def recording(stage, fn, inner=None):
        call = inner or fn

        def rec(*a, **k):
            out = call(*a, **k)
            seen.append((stage, _detach(out)))
            return out
        return rec

    if timed:
        def wrapper(stage, fn):
            return recording(stage, fn, _timed(clock, stage, fn, None, False, []))
    else:
        wrapper = recording
    with torch.inference_mode(), instrument(codec.model, family, clock, wrapper=wrapper, ar_loop=timed):
        enc = codec.model.compress(x)
        codec.model.decompress(enc["strings"], enc["shape"])
    return seen


def _detach(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out.detach().clone()
    if isinstance(out, dict):
        return {k: _detach(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_detach(v) for v in out) if not hasattr(out, "_fields") else out
    return out


def _same(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return False
