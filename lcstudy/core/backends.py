"""Deployment backends: a codec's transforms run the way a product would run them.

Every other number of the study is eager PyTorch in fp32 on contiguous tensors, the one way
nobody ships a codec. A backend replaces each *transform* of a codec — the modules the
stage split (:mod:`lcstudy.core.instrument`) bills to ``g_a``, ``h_a``, ``h_s`` and ``g_s`` —
by a :class:`Deployed` module that runs it through one of torch's (or ONNX Runtime's) own
deployment paths; CompressAI's entropy coders, its entropy models and the code between
the stages stay as they are, so the bitstream can be compared byte for byte with eager's.
Nothing here is a hand-written quantizer, exporter or graph rewriter: each backend is a
call into the tool that does the work (:data:`BACKENDS`).

Because a :class:`Deployed` module sits at the same path as the module it replaces, the
instrumented stage clock wraps it like any other module: stage timings land where they did.
The context model and entropy-parameter networks of the context codecs stay eager (the
autoregressive loop reads the context convolution's weights directly, so it cannot be
replaced without rewriting CompressAI's loop); :attr:`Deployment.eager_modules` names them.

One-off costs are kept apart from every timing: :func:`deploy` measures the export,
calibration and conversion of each module (``setup_seconds``); the first call of a module on a
new input shape (``torch.compile``'s compilation, ONNX Runtime's first-run allocation) is
timed by the module itself (:attr:`Deployed.first_call_seconds`), and the run primes every new
shape with an untimed coding before its repeats (:class:`lcstudy.runs.learned.BackendSubject`),
so no one-off cost can enter a median, whatever the warm-up rule says.

A module that cannot be deployed (an export that fails, an output that disagrees with eager's
beyond the backend's tolerance) is an :class:`~lcstudy.errors.InputError` naming the module and
the fix, raised by :func:`deploy` before any timing, with nothing written.
"""
from __future__ import annotations

import copy
import io
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import InputError

#: The transform stages a backend replaces (the context and entropy-parameter networks stay eager).
TRANSFORM_STAGES = ("g_a", "h_a", "h_s", "g_s")
#: the transforms a decoder calls (decompress: the hyper-synthesis, then the synthesis)
DECODER_STAGES = ("h_s", "g_s")
#: The calibration set of ``int8`` (and the inputs every deployed module is checked on): the first
#: ``CALIBRATION_IMAGES`` images of the image folder that the run does not measure, as centred
#: ``CALIBRATION_CROP``² crops (the exported graphs take any size, so a small crop calibrates them).
CALIBRATION_IMAGES = 2
CALIBRATION_CROP = 256


@dataclass(frozen=True)
class Backend:
    """One way to run the transforms. ``make(module, example, threads)`` returns the callable that
    replaces ``module.forward`` (``example``: calibration inputs of that module, the first one the
    export example); ``tolerance``: the largest max-abs difference from eager, relative to the
    largest eager output value, that still counts as the same function (None: not checked — a
    precision change is measured as a rate-distortion price instead)."""

    name: str
    summary: str
    precision: str
    make: Callable | None
    tolerance: float | None
    devices: tuple[str, ...] = ("cpu", "cuda")
    one_off: str = ""  # what its one-off cost is
    #: first guesses for ``make cost`` before this platform has measured the run: the transforms' time over
    #: eager's, and the one-off seconds per deployed transform (export, calibration, conversion, and a
    #: compiling backend's compilation at each input shape). Measured: the standard profile's 40 deployment
    #: runs (8 codecs, 4 images, 256² crops, 2 threads) on a 2-core Intel Xeon VM with AVX-512 and VNNI but no
    #: AVX512-BF16, 6 Dec 2026 — the median over codecs and directions of the network time over eager's timed
    #: beside it, and the median over codecs of ``setup_seconds`` per deployed module. Neither VM has native
    #: bf16; on the AMD EPYC AVX2 VM one check (HP's ``g_s``, shared/notes/deployment-facts.md) found bf16 ~10×
    #: eager's time, not ~3.7×.
    guess_ratio: float = 1.0
    guess_one_off_s: float = 0.0
    #: its one-off cost recurs at every new input shape (a compiling backend, ``dynamic=False``); the
    #: calibration shape is compiled during setup
    per_shape: bool = False
    #: its transforms run outside torch (another runtime's operators): torch's profiler does not see them, so
    #: its operator profiles put the transforms' time in "outside torch ops" — a finding or caption about
    #: operators must say so rather than name the eager context model's aten operator
    outside_torch: bool = False

    @property
    def identity(self) -> bool:
        return self.make is None


def _channels_last(module, examples, threads):
    import torch

    inner = copy.deepcopy(module).to(memory_format=torch.channels_last)

    def run(x):
        return inner(x.contiguous(memory_format=torch.channels_last)).contiguous()
    return run, inner


#: Graphs torch.compile may cache per code object before it stops compiling it. Every module compiled in a process
#: shares one such code object (dynamo's wrapper around a module's call), and at the default limit (8) the ninth
#: (module, input shape) pair is not compiled but run eager, with one warning, under the backend's name. A run's
#: four transforms at the calibration crop and two image orientations are 12; the decodability phase deploys
#: every codec in one process, and the standard book's phase hit the limit two minutes in (7 Dec 2026): its
#: ``compile`` and ``int8`` decoders ran eager for the later codecs. Raised to what a study process compiles,
#: and reaching it is an error (:func:`_dynamo_limits`), never a silent fallback.
DYNAMO_RECOMPILE_LIMIT = 256


def _dynamo_limits() -> None:
    """Before a compiling backend compiles: the cache limit above, and a hard error at it."""
    import torch._dynamo

    cfg = torch._dynamo.config
    cfg.recompile_limit = max(cfg.recompile_limit, DYNAMO_RECOMPILE_LIMIT)
    cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, DYNAMO_RECOMPILE_LIMIT)
    cfg.fail_on_recompile_limit_hit = True


def _compile(module, examples, threads):
    import torch

    _dynamo_limits()
    inner = copy.deepcopy(module)
    return torch.compile(inner, backend="inductor", dynamic=False), inner


def _autocast(dtype_name):
    def make(module, examples, threads):
        import torch

        dtype = getattr(torch, dtype_name)
        inner = copy.deepcopy(module)

        def run(x):
            with torch.autocast(x.device.type, dtype=dtype):
                out = inner(x)
            return out.float()
        return run, inner
    return make


def _int8(module, examples, threads):
    """PT2E static quantization with the x86 inductor quantizer (torchao, where torch keeps it now),
    calibrated on ``examples``, then lowered by ``torch.compile`` (the int8 kernels come from inductor)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    q = X86InductorQuantizer()
    q.set_global(get_default_x86_inductor_quantization_config())
    dyn = torch.export.Dim.DYNAMIC
    gm = torch.export.export(copy.deepcopy(module), (examples[0],), dynamic_shapes=({2: dyn, 3: dyn},)).module()
    prepared = prepare_pt2e(gm, q)
    with torch.no_grad():
        for x in examples:
            prepared(x)
    converted = convert_pt2e(prepared)
    _dynamo_limits()
    return torch.compile(converted, backend="inductor", dynamic=False), converted


class _OrtModule:
    """An ONNX Runtime session standing in for a module (``bytes``: the exported model's size)."""

    def __init__(self, onnx_bytes: bytes, threads: int, device: str):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        # no spinning after a call: ONNX Runtime's idle threads would otherwise burn the cores the entropy
        # coder (the next stage, in torch and C++) needs; a deployed codec interleaves both the same way
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        self.nbytes = len(onnx_bytes)

    def __call__(self, x):
        import torch

        out = self.session.run(None, {"x": x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out).to(x.device)


def _onnxruntime(module, examples, threads):
    import torch
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (examples[0],), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}})
    ort_module = _OrtModule(buf.getvalue(), threads, str(examples[0].device))
    return ort_module, ort_module


#: The backends, in the order of every table; ``eager`` is today's path and the reference.
BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("eager", "PyTorch eager, fp32, contiguous tensors (the reference)", "fp32", None, 0.0),
    Backend("channels_last", "model and activations in channels-last memory format", "fp32", _channels_last, 1e-4,
            guess_ratio=0.84, guess_one_off_s=0.25),
    Backend("compile", "torch.compile (inductor), one graph per input shape", "fp32", _compile, 1e-3,
            one_off="compilation at the first call of each input shape", guess_ratio=0.81, guess_one_off_s=5.3,
            per_shape=True),
    Backend("bf16", "the transforms under bf16 autocast (weights stay fp32)", "bf16 compute", _autocast("bfloat16"),
            None, guess_ratio=3.7, guess_one_off_s=0.5),
    Backend("fp16", "the transforms under fp16 autocast (weights stay fp32)", "fp16 compute", _autocast("float16"),
            None, devices=("cuda",), guess_ratio=0.5),  # CUDA only, never measured here: an assumption
    Backend("int8", "PT2E static quantization (x86 inductor quantizer), lowered by torch.compile",
            "int8 weights and activations", _int8, None,
            one_off="export, calibration and conversion; compilation at the first call of each input shape",
            guess_ratio=0.9, guess_one_off_s=6.1, per_shape=True),
    Backend("onnxruntime", "each transform exported by torch.onnx and run by ONNX Runtime", "fp32", _onnxruntime,
            # CPU only: the pinned onnxruntime is the CPU build (the CUDA provider needs onnxruntime-gpu)
            1e-4, devices=("cpu",), one_off="export (TorchScript exporter) and session creation", guess_ratio=0.94,
            guess_one_off_s=0.44, outside_torch=True),
)}


def check(name, device: str = "cpu") -> str:
    """The backend named ``name`` on ``device``, or an InputError on one line naming the valid values."""
    n = "eager" if name is None else str(name).strip()
    if n not in BACKENDS:
        raise InputError(f"BACKEND={name!r}: must be one of {', '.join(BACKENDS)}")
    b = BACKENDS[n]
    kind = str(device).split(":")[0]
    if kind not in b.devices:
        raise InputError(f"BACKEND={n} runs on {' and '.join(b.devices)} only, not DEVICE={device}; valid on {kind}: "
                         f"{', '.join(k for k, v in BACKENDS.items() if kind in v.devices)}")
    return n


def _deployed_class():
    import torch

    class DeployedModule(torch.nn.Module):
        """A transform run by a backend, at the path of the module it replaces. Times its first call on
        each input shape (a one-off cost: compilation, first-run allocation) apart from everything else."""

        def __init__(self, name: str, backend: str, fn, held):
            super().__init__()
            self.stage_path = name
            self.backend = backend
            self.fn = fn
            # the backend's own object (a module copy, a converted graph, an ONNX Runtime session): held
            # outside the module tree, so that no probe pattern and no parameter count sees it twice
            object.__setattr__(self, "held", held)
            self.first_call_seconds: dict[tuple, float] = {}

        def forward(self, x):
            shape = tuple(x.shape)
            if shape in self.first_call_seconds:
                return self.fn(x)
            t0 = time.perf_counter()
            out = self.fn(x)
            self.first_call_seconds[shape] = time.perf_counter() - t0
            return out

    return DeployedModule


@dataclass
class Deployment:
    """A codec with its transforms deployed, and what it cost to get there."""

    backend: str
    codec: Any  # a copy of the Codec whose ``model`` has the Deployed modules
    modules: tuple[str, ...]  # module paths deployed
    eager_modules: tuple[str, ...]  # networks left eager (context model, entropy parameters)
    setup_seconds: dict[str, float] = field(default_factory=dict)  # module -> export/calibration/convert
    model_bytes: int = 0  # the whole model at its deployed precision
    eager_model_bytes: int = 0
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # module -> vs eager on the calibration inputs
    kept_fp32: tuple[str, ...] = ()  # int8: layers the quantizer left in fp32
    calibration: tuple[str, ...] = ()  # image names the modules were calibrated / checked on

    def first_call_seconds(self) -> dict[str, float]:
        """Seconds of every module's first calls (one per input shape): one-off costs."""
        return {p: sum(m.first_call_seconds.values()) for p, m in self._deployed()}

    def _deployed(self):
        mods = dict(self.codec.model.named_modules())
        return [(p, mods[p]) for p in self.modules]

    def as_dict(self) -> dict:
        return {"backend": self.backend, "modules": list(self.modules), "eager_modules": list(self.eager_modules),
                "setup_seconds": self.setup_seconds, "model_bytes": self.model_bytes,
                "eager_model_bytes": self.eager_model_bytes, "max_abs_diff": self.max_abs_diff,
                "kept_fp32": list(self.kept_fp32), "calibration": list(self.calibration),
                "precision": BACKENDS[self.backend].precision}


def transform_paths(model, family: str, stages: tuple[str, ...] = TRANSFORM_STAGES
                    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(module paths of the transforms of ``stages``, paths of the networks left eager), by the stage split's
    probes."""
    from .instrument import _resolve, probes_for

    deploy, keep = [], []
    for probe in probes_for(family, model):
        for path, _, meth in _resolve(model, probe.target):
            if meth is None and path:
                (deploy if probe.stage in stages else keep).append(path)
    ctx = [n for n in ("context_prediction",) if hasattr(model, n)]
    return tuple(dict.fromkeys(deploy)), tuple(dict.fromkeys(keep + ctx))


def tensor_bytes(obj) -> int:
    """Bytes of the distinct tensors a module holds (parameters, buffers, and — for a converted graph —
    its constants), each counted once; an ONNX Runtime session: the exported model's size."""
    import torch

    if hasattr(obj, "nbytes") and not isinstance(obj, torch.Tensor):
        return int(obj.nbytes)
    seen, total = set(), 0
    # a converted graph keeps the fp32 originals of the weights it quantized as unused attributes: count what
    # its graph reads (get_attr), not its state_dict
    graph = isinstance(obj, torch.fx.GraphModule)
    tensors = [] if graph else list(obj.state_dict(keep_vars=True).values())
    if graph:
        for node in obj.graph.nodes:
            if node.op == "get_attr":
                t = obj
                for part in node.target.split("."):
                    t = getattr(t, part, None)
                if isinstance(t, torch.Tensor):
                    tensors.append(t)
    for t in tensors:
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def calibration_inputs(codec, images: list, paths: tuple[str, ...]) -> dict[str, list]:
    """Each transform's inputs during an eager coding of each calibration image (forward hooks)."""
    import torch

    from . import images as _images

    mods = dict(codec.model.named_modules())
    seen: dict[str, list] = {p: [] for p in paths}
    hooks = [mods[p].register_forward_hook(lambda m, a, out, p=p: seen[p].append(a[0].detach().clone()))
             for p in paths]
    try:
        with torch.inference_mode():
            for im in images:
                xp, _ = _images.pad(im.x)
                enc = codec.model.compress(xp.to(codec.device))
                codec.model.decompress(enc["strings"], enc["shape"])
    finally:
        for h in hooks:
            h.remove()
    # inference tensors cannot be saved for export/calibration: plain copies
    return {p: [t.clone() for t in v] for p, v in seen.items()}


def deploy(codec, backend: str, calibration: list, threads: int, log=print, shared: dict | None = None,
           stages: tuple[str, ...] = TRANSFORM_STAGES, verify: bool = True) -> Deployment:
    """``codec`` with its transforms run by ``backend``: a copy (the eager codec is left untouched, for the
    side-by-side reference). ``calibration``: images (:class:`~lcstudy.core.images.Image`) the modules are
    calibrated (int8) and checked on. Raises InputError naming the module before any timing.

    ``shared``: a dict kept by a caller that deploys one codec under several backends on the same calibration
    images (the decodability phase): the transforms' calibration inputs (:func:`calibration_inputs`, an eager
    coding of every calibration image) are computed by the first deployment and read by the next. Why: that
    coding was half of the phase's deployment time (26 s of 51 s in a quick book on the 2-core VM, autoregressive
    decodes above all), and its result depends only on the codec's weights, the images and the module paths
    (to the last ulp, on the device and thread count too), which the key holds; every backend only reads the
    tensors.

    ``stages`` and ``verify``: what a caller that only decodes needs (the decodability phase: ``DECODER_STAGES``,
    no check). A decoder never calls ``g_a`` or ``h_a``; and the check against eager on the calibration inputs is
    where a compiling backend (``compile``, ``int8``) compiles every module up front at the calibration shape —
    unchecked, it compiles the decoder's two at their first decode of each shape instead (the full-size streams',
    and the backend runs' 256² ones), and ``dynamic=False`` gives each shape its own graph, so no decoded output
    changes. A run deploys every transform and checks them: its speed-up, setup and model size are of
    the whole codec, and a backend that is not the same function is an error before any timing."""
    import torch

    b = BACKENDS[check(backend, str(codec.device))]
    family = codec.family or codec.spec.family
    paths, eager = transform_paths(codec.model, family, stages)
    eager_bytes = tensor_bytes(codec.model)
    names = tuple(im.name for im in calibration)
    if b.identity:
        return Deployment(b.name, codec, (), (), model_bytes=eager_bytes, eager_model_bytes=eager_bytes,
                          calibration=names)
    if not paths:
        raise InputError(f"{codec.label}: no transform module ({', '.join(stages)}) to deploy with "
                         f"BACKEND={b.name}; run it with BACKEND=eager")
    from .decoding import weights_digest

    key = (weights_digest(codec.model), str(codec.device), torch.get_num_threads(),
           tuple((im.name, im.sha256, tuple(im.x.shape)) for im in calibration), tuple(paths)) \
        if shared is not None else None
    if shared is not None and shared.get("key") == key:
        examples = shared["inputs"]
    else:
        examples = calibration_inputs(codec, calibration, paths)
        if shared is not None:
            shared.update(key=key, inputs=examples)
    model = copy.deepcopy(codec.model)
    mods = dict(model.named_modules())
    cls = _deployed_class()
    setup, diffs, kept, replaced = {}, {}, [], {}
    for p in paths:
        ex = examples[p]
        if not ex:
            raise InputError(f"{codec.label}: module {p} was not called while coding the calibration images, so "
                             f"BACKEND={b.name} cannot deploy it; run it with BACKEND=eager")
        t0 = time.perf_counter()
        try:
            fn, held = b.make(mods[p], ex, threads)
        except Exception as e:  # noqa: BLE001 - any failure of the tool is the user's clear error
            raise InputError(f"{codec.label}: BACKEND={b.name} cannot deploy module {p} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); run this codec with another backend "
                             "(BACKEND=eager measures it as is)") from None
        setup[p] = time.perf_counter() - t0
        replaced[p] = cls(p, b.name, fn, held)
        if b.name == "int8":
            kept.extend(f"{p}.{n}" for n in unquantized_layers(held))
    for p, dm in replaced.items():
        parent, _, leaf = p.rpartition(".")
        setattr(mods[parent] if parent else model, leaf, dm)
    with torch.inference_mode():
        for p, dm in replaced.items() if verify else ():
            ref_mod = dict(codec.model.named_modules())[p]
            t0 = time.perf_counter()  # the check's first calls (a compilation) are setup too
            worst = 0.0
            for x in examples[p]:
                ref = ref_mod(x)
                try:
                    got = dm.fn(x)
                except Exception as e:  # noqa: BLE001
                    raise InputError(f"{codec.label}: module {p} under BACKEND={b.name} fails on a calibration input "
                                     f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); run this "
                                     "codec with another backend") from None
                scale = max(float(ref.abs().max()), 1e-12)
                worst = max(worst, float((got.float() - ref).abs().max()) / scale)
            diffs[p] = worst
            setup[p] += time.perf_counter() - t0
            if b.tolerance is not None and worst > b.tolerance:
                raise InputError(f"{codec.label}: module {p} under BACKEND={b.name} differs from eager by "
                                 f"{worst:.2e} (relative max-abs) > {b.tolerance:g}; the backend would not be "
                                 "the same function: run this codec with another backend")
    for dm in replaced.values():
        dm.first_call_seconds.clear()  # the check above is part of setup, not a measured first call
    dep_codec = copy.copy(codec)
    dep_codec.model = model
    dep_codec.notes = list(codec.notes)
    deployed_bytes = sum(tensor_bytes(dm.held) for dm in replaced.values())
    kept_bytes = sum(tensor_bytes(dict(codec.model.named_modules())[p]) for p in paths)
    return Deployment(b.name, dep_codec, tuple(paths), eager, setup, eager_bytes - kept_bytes + deployed_bytes,
                      eager_bytes, diffs, tuple(kept), names)


def unquantized_layers(gm) -> list[str]:
    """Convolutions of a PT2E-converted graph whose weight does not come from a dequantize node (the
    quantizer left them fp32: GDN's and IGDN's inner convolutions, for instance), by module path."""
    out = []
    for node in getattr(getattr(gm, "graph", None), "nodes", []):
        if node.op != "call_function" or "conv" not in str(node.target) or len(node.args) < 2:
            continue
        w = node.args[1]
        if getattr(w, "op", "") == "call_function" and "dequantize" in str(w.target):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else node.name
        out.append(str(path))
    return sorted(set(out))
