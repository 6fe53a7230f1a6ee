"""The codec registry: one table of what the study measures, and loading a codec from it.

One registry, not parallel dicts: every fact about a codec (paper label, CompressAI name,
qualities and their constructor arguments, how its coding splits into stages, checkpoints,
citation) sits in one :class:`CodecSpec`. CompressAI's own zoo keeps four dicts that drift
apart (its ``bmshj2018-factorized-relu`` entry builds the GDN model); here a codec is built
from its spec's class and the arguments for the quality, and the tests check that this is
the architecture the zoo's pretrained state dict would load into.

Three sources of codecs, in this order (a later one may not reuse an earlier label):

1. the eight built-in codecs of the ICASSP 2023 paper and beyond (:data:`CODECS`);
2. codecs a user keeps in the study: a TOML codecs file (``LCSTUDY_CODECS=<file>``,
   ``make … CODECS_FILE=<file>``; :func:`read_codecs_file`) and the entry-point group
   ``lcstudy.codecs`` of installed packages (each entry point a :class:`CodecSpec` or a
   callable returning a list of them);
3. any CompressAI-style model by import path, ``"package.module:Class"`` (ad hoc, for one run).

Nothing here imports torch or CompressAI at module import: the parameter checks that use
the registry must answer in well under a second.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputError

#: Families of stage split (see :mod:`lcstudy.core.instrument`); ``"auto"``: detected from the model.
FAMILIES = ("factorized", "hyperprior", "autoregressive", "latent_codec", "generic", "auto")


@dataclass(frozen=True)
class CodecSpec:
    """What one codec is. ``family`` selects how its encode/decode are split into stages."""

    label: str  # short label, as in the ICASSP 2023 paper
    name: str  # CompressAI zoo/registry name (or the import path of a user codec)
    cls: str  # "module:Class" of the model
    family: str
    #: quality → constructor arguments: a tuple of positional ones, or a dict of keyword ones
    channels: dict[int, Any]
    pretrained: bool  # whether CompressAI's zoo publishes weights for it
    title: str
    citation: str
    notes: str = ""
    #: quality → checkpoint (path or URL) for codecs registered by a user
    checkpoints: dict[int, str] = field(default_factory=dict)
    #: where the spec comes from: "built-in", "codecs file <path>", "entry point <name>", "import path"
    source: str = "built-in"
    #: folders to put on sys.path before importing ``cls`` (codecs files: relative to the file)
    python_path: tuple[str, ...] = ()

    @property
    def qualities(self) -> tuple[int, ...]:
        return tuple(sorted(self.channels))

    @property
    def builtin(self) -> bool:
        return self.source == "built-in"

    def model_class(self):
        for p in self.python_path:
            if p not in sys.path:
                sys.path.insert(0, p)
        mod, _, attr = self.cls.partition(":")
        try:
            module = importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - any import failure of user code is the user's to fix
            raise InputError(f"codec {self.label}: cannot import module {mod!r} ({type(e).__name__}: {e}); "
                             "is it on PYTHONPATH (or python_path in the codecs file) and installed?") from None
        obj = getattr(module, attr, None)
        if obj is None:
            raise InputError(f"codec {self.label}: module {mod!r} has no attribute {attr!r}")
        return obj

    def config_group(self, quality: int):
        """The constructor arguments of ``quality``: complexity depends on quality only through them."""
        return self.channels[quality]

    def lowest_quality_per_config(self) -> tuple[int, ...]:
        seen: dict[str, int] = {}
        for q in self.qualities:
            seen.setdefault(json.dumps(self.channels[q], sort_keys=True, default=str), q)
        return tuple(sorted(seen.values()))

    def describe_channels(self, quality: int) -> str:
        a = self.channels[quality]
        if isinstance(a, dict):
            return ", ".join(f"{k}={v}" for k, v in a.items()) or "class defaults"
        names = ("N", "M")
        return ", ".join(f"{n}={v}" for n, v in zip(names, a)) or "class defaults"


def _q(ranges: dict[tuple[int, int], tuple[int, ...]]) -> dict[int, tuple[int, ...]]:
    return {q: nm for (lo, hi), nm in ranges.items() for q in range(lo, hi + 1)}


_G = "compressai.models.google"
_W = "compressai.models.waseda"
_S = "compressai.models.sensetime"
_CHENG = ("Cheng et al., Learned image compression with discretized Gaussian mixture likelihoods and attention "
          "modules, CVPR 2020")
_MIXTURE = "CompressAI's cheng2020 uses a single Gaussian, not the paper's mixture (CompressAI issue #79)."

CODECS: tuple[CodecSpec, ...] = (
    CodecSpec("FP", "bmshj2018-factorized", f"{_G}:FactorizedPrior", "factorized",
              _q({(1, 5): (128, 192), (6, 8): (192, 320)}), True,
              "Factorized prior", "Ballé et al., Variational image compression with a scale hyperprior, ICLR 2018"),
    CodecSpec("HP", "bmshj2018-hyperprior", f"{_G}:ScaleHyperprior", "hyperprior",
              _q({(1, 5): (128, 192), (6, 8): (192, 320)}), True,
              "Scale hyperprior", "Ballé et al., Variational image compression with a scale hyperprior, ICLR 2018"),
    CodecSpec("MS-HP", "mbt2018-mean", f"{_G}:MeanScaleHyperprior", "hyperprior",
              _q({(1, 4): (128, 192), (5, 8): (192, 320)}), True,
              "Mean-scale hyperprior", "Minnen et al., Joint autoregressive and hierarchical priors, NeurIPS 2018"),
    CodecSpec("ARC", "mbt2018", f"{_G}:JointAutoregressiveHierarchicalPriors", "autoregressive",
              _q({(1, 4): (192, 192), (5, 8): (192, 320)}), True,
              "Autoregressive context + hyperprior",
              "Minnen et al., Joint autoregressive and hierarchical priors, NeurIPS 2018"),
    CodecSpec("DGM", "cheng2020-anchor", f"{_W}:Cheng2020Anchor", "autoregressive",
              _q({(1, 3): (128,), (4, 6): (192,)}), True, "Cheng 2020 anchor", _CHENG, notes=_MIXTURE),
    CodecSpec("DGM-ATT", "cheng2020-attn", f"{_W}:Cheng2020Attention", "autoregressive",
              _q({(1, 3): (128,), (4, 6): (192,)}), True, "Cheng 2020 with attention", _CHENG, notes=_MIXTURE),
    CodecSpec("CKBD", "cheng2020-anchor-checkerboard", f"{_S}:Cheng2020AnchorCheckerboard", "latent_codec",
              {1: ()}, False,
              "Checkerboard context", "He et al., Checkerboard context model for efficient learned image "
              "compression, CVPR 2021",
              notes="No pretrained weights in CompressAI 1.2.8; quality 1 means the class defaults (N=192)."),
    CodecSpec("ELIC", "elic2022-official", f"{_S}:Elic2022Official", "latent_codec",
              {1: ()}, False,
              "ELIC", "He et al., ELIC: efficient learned image compression with unevenly grouped "
              "space-channel contextual adaptive coding, CVPR 2022",
              notes="No pretrained weights in CompressAI 1.2.8; quality 1 means the class defaults (N=192, M=320)."),
)

BUILTIN_LABELS = tuple(s.label for s in CODECS)
ENTRY_POINT_GROUP = "lcstudy.codecs"


# --- codecs a user keeps in the study ---------------------------------------------------

def read_codecs_file(path) -> list[CodecSpec]:
    """Codecs from a TOML file, with the built-in registry's fields::

        [[codec]]
        label = "TINY"                              # unique, not a built-in label
        class = "tiny_codec:TinyHyperprior"         # module:Class
        python_path = ["."]                         # optional, relative to this file
        title = "Tiny hyperprior (example)"
        citation = "…"
        family = "auto"                             # optional: auto-detected from the model
        [codec.qualities]                           # quality → constructor keyword arguments
        1 = { N = 32, M = 48 }
        [codec.checkpoints]                         # optional: quality → checkpoint path or URL
        1 = "checkpoints/tiny-q1.pth.tar"
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"codecs file not found: {path} (LCSTUDY_CODECS / CODECS_FILE)")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"codecs file {path} is not valid TOML: {e}") from None
    out = []
    for i, c in enumerate(data.get("codec", [])):
        where = f"{path} (codec #{i + 1})"
        for k in ("label", "class", "qualities"):
            if k not in c:
                raise InputError(f"{where}: missing field {k!r}; see `lcstudy.core.registry.read_codecs_file`")
        try:
            quals = {int(q): dict(a) for q, a in c["qualities"].items()}
            ckpts = {int(q): _resolve_rel(path, v) for q, v in c.get("checkpoints", {}).items()}
        except (TypeError, ValueError):
            raise InputError(f"{where}: qualities must be integers mapping to tables of constructor arguments") \
                from None
        if not quals:
            raise InputError(f"{where}: give at least one quality")
        family = c.get("family", "auto")
        if family not in FAMILIES:
            raise InputError(f"{where}: family must be one of {', '.join(FAMILIES)}, got {family!r}")
        out.append(CodecSpec(str(c["label"]), str(c["class"]), str(c["class"]), family, quals,
                             False, str(c.get("title", c["label"])), str(c.get("citation", "")),
                             str(c.get("notes", "")), ckpts, f"codecs file {path}",
                             tuple(str((path.parent / p).resolve()) for p in c.get("python_path", []))))
    return out


def _resolve_rel(base: Path, v: str) -> str:
    if "://" in str(v):
        return str(v)
    p = Path(v)
    return str(p if p.is_absolute() else (base.parent / p).resolve())


def _entry_point_specs() -> list[CodecSpec]:
    from importlib.metadata import entry_points

    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001
            raise InputError(f"entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}) does not load: "
                             f"{type(e).__name__}: {e}") from None
        items = obj() if callable(obj) and not isinstance(obj, CodecSpec) else obj
        items = [items] if isinstance(items, CodecSpec) else list(items)
        for s in items:
            if not isinstance(s, CodecSpec):
                raise InputError(f"entry point {ep.name} ({ENTRY_POINT_GROUP}) must give CodecSpec objects, "
                                 f"got {type(s).__name__}")
            out.append(replace(s, source=f"entry point {ep.name}"))
    return out


def registered() -> tuple[CodecSpec, ...]:
    """Built-in codecs, then the codecs file's, then the entry points' (labels unique)."""
    specs = list(CODECS)
    extra: list[CodecSpec] = []
    f = os.environ.get("LCSTUDY_CODECS")
    if f:
        extra += read_codecs_file(f)
    extra += _entry_point_specs()
    seen = {s.label.lower(): s for s in specs} | {s.name.lower(): s for s in specs}
    for s in extra:
        clash = seen.get(s.label.lower())
        if clash is not None:
            what = "a built-in codec" if clash.builtin else f"a codec from {clash.source}"
            raise InputError(f"codec label {s.label!r} ({s.source}) clashes with {what}; choose another label")
        seen[s.label.lower()] = s
        specs.append(s)
    return tuple(specs)


def codec_names() -> list[str]:
    return [s.label for s in registered()]


def codec_order() -> list[str]:
    """The study's order of codecs: the built-in ones as in the paper, then the user's."""
    return codec_names()


def is_import_path(name: str) -> bool:
    mod, sep, attr = str(name).partition(":")
    return bool(sep and mod and attr and all(p.isidentifier() for p in mod.split(".")) and attr.isidentifier())


def get_spec(name: str, kwargs: dict | None = None) -> CodecSpec:
    """Look a codec up by its label (``"ARC"``), CompressAI name (``"mbt2018"``), a registered
    user label, or an import path ``"package.module:Class"`` (constructor ``kwargs`` for it)."""
    key = str(name).strip()
    for s in registered():
        if key.lower() in (s.label.lower(), s.name.lower()):
            return s
    if is_import_path(key):
        label = key.rsplit(":", 1)[1]
        if label.lower() in {b.lower() for b in BUILTIN_LABELS}:
            raise InputError(f"the class name {label!r} of {key} clashes with a built-in codec label; "
                             "register it under another label in a codecs file")
        return CodecSpec(label, key, key, "auto", {1: dict(kwargs or {})}, False, label,
                         "", "a codec given by import path", source="import path")
    valid = ", ".join(f"{s.label} ({s.name})" if s.builtin else s.label for s in registered())
    raise InputError(f"unknown codec {name!r}; valid codecs: {valid}; or an import path package.module:Class")


def check_quality(spec: CodecSpec, quality) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int):
        if isinstance(quality, str) and quality.strip().isdigit():
            quality = int(quality)
        else:
            raise InputError(f"quality must be an integer, got {quality!r}")
    if quality not in spec.channels:
        qs = spec.qualities
        rng = f"{qs[0]}–{qs[-1]}" if len(qs) > 1 and list(qs) == list(range(qs[0], qs[-1] + 1)) \
            else (", ".join(map(str, qs)) if len(qs) > 1 else f"{qs[0]} only")
        raise InputError(f"quality {quality} is out of range for {spec.label}: valid qualities are {rng}")
    return quality


def check_device(device) -> str:
    """``'cpu'``, ``'cuda'`` or ``'cuda:N'``, present on this machine. Imports torch only for CUDA."""
    d = str(device).strip().lower()
    if d == "cpu":
        return d
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        import torch

        if not torch.cuda.is_available():
            from ..errors import DeviceError

            raise DeviceError(
                f"device {device!r} was requested but torch.cuda.is_available() is False on this machine "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); use DEVICE=cpu, "
                "or run on a machine with an NVIDIA GPU and a CUDA build of torch")
        if ":" in d and int(d[5:]) >= torch.cuda.device_count():
            from ..errors import DeviceError

            n = torch.cuda.device_count()
            raise DeviceError(f"{device!r}: this machine has {n} CUDA device(s); use cuda:0 … cuda:{n - 1}")
        return d
    raise InputError(f"unknown device {device!r}; use cpu or cuda (or cuda:N)")


def file_sha256(path, n: int = 12) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


# --- a loaded codec -----------------------------------------------------------------------

@dataclass
class Codec:
    """A loaded codec: the model plus what the study needs to know about it."""

    spec: CodecSpec
    quality: int
    model: Any  # torch.nn.Module
    device: Any  # torch.device
    weights: str  # "pretrained" | "random" | "checkpoint"
    seed: int | None
    load_seconds: float
    weights_source: str  # URL, "seed N" or the checkpoint's path
    notes: list[str] = field(default_factory=list)
    family: str = ""  # the stage split in use (detected for "auto")
    channels: str = ""  # the constructor arguments in words ("N=128, M=192", "read from the checkpoint …")
    weights_hash: str = ""  # short sha256 of the checkpoint file, when one was read

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def weights_label(self) -> str:
        """How every table and figure names the weights."""
        if self.weights == "checkpoint":
            return f"checkpoint {Path(self.weights_source).name} (sha256 {self.weights_hash[:8]})"
        if self.weights == "random":
            return f"random (seed {self.seed})"
        return "pretrained (CompressAI zoo)"

    def __repr__(self) -> str:
        return (f"Codec({self.spec.label} q{self.quality}, {self.weights_label}, device={self.device}, "
                f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M params)")


def construct(spec: CodecSpec, quality: int):
    cls = spec.model_class()
    args = spec.channels[quality]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation inside CompressAI
        try:
            return cls(**args) if isinstance(args, dict) else cls(*args)
        except TypeError as e:
            where = ("its [codec.qualities] table in the codecs file" if spec.source.startswith("codecs file")
                     else "CODEC_ARGS as a JSON object (CODEC_ARGS='{\"N\": 64}')")
            raise InputError(f"codec {spec.label}: {spec.cls}({_args_text(args)}) failed: {e}; give the "
                             f"constructor arguments in {where}") from None


def _args_text(args) -> str:
    if isinstance(args, dict):
        return ", ".join(f"{k}={v!r}" for k, v in args.items())
    return ", ".join(map(repr, args))


def check_model(spec: CodecSpec, model) -> None:
    """A codec must be an ``nn.Module`` with ``compress`` and ``decompress``."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"codec {spec.label}: {spec.cls} is not a torch.nn.Module (got {type(model).__name__})")
    missing = [m for m in ("compress", "decompress") if not callable(getattr(model, m, None))]
    if missing:
        raise InputError(f"codec {spec.label}: {spec.cls} has no {' or '.join(missing)} method; the study times a "
                         "codec's own compress()/decompress() (CompressAI's CompressionModel has both)")


def build_model(spec: CodecSpec, quality: int, seed: int = 0):
    """Build ``spec`` at ``quality`` with seeded random weights.

    ``torch.manual_seed(seed)`` immediately before construction, then ``update(force=True)``
    (CompressAI refuses to compress with uninitialised CDFs). The same seed gives the
    same model whether built here or through CompressAI's zoo factory.
    """
    import torch

    spec.model_class()  # import first: the import is not part of the seeded construction
    torch.manual_seed(seed)
    model = construct(spec, quality)
    check_model(spec, model)
    update_cdfs(spec, model, force=True)
    return model


def update_cdfs(spec: CodecSpec, model, force: bool) -> None:
    upd = getattr(model, "update", None)
    if not callable(upd):
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            upd(force=force)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"codec {spec.label}: update() failed ({type(e).__name__}: {e}); without CDF tables "
                         "the entropy coder cannot run. Fix the model's update() or save the checkpoint after "
                         "compressai.utils.update_model") from None


def load_codec(name: str, quality: int = 1, weights: str = "random", device="cpu", seed: int = 0,
               metric: str = "mse", kwargs: dict | None = None) -> Codec:
    """Load a codec, ready to encode (eval mode, CDFs updated, on ``device``).

    ``weights``: ``"pretrained"`` (CompressAI's zoo weights through torch.hub; fails within
    ~10 s without network, naming the URL and cache path), ``"random"`` (seeded), ``"auto"``
    (pretrained when cached or downloadable, else random with a note), or the path of a
    checkpoint (CompressAI's ``examples/train.py`` format or a plain state dict; the quality
    then only picks constructor arguments for a codec that cannot infer them). The wall time
    of loading is reported as the paper's "Model Loading".
    """
    import time

    import torch

    from . import weights as W

    spec = get_spec(name, kwargs)
    quality = check_quality(spec, quality)
    dev = torch.device(check_device(device))
    notes: list[str] = []
    spec.model_class()  # import the model's module first: import time is not model loading
    if dev.type == "cuda":  # the CUDA context is made once per process: not part of loading a model
        torch.empty(0, device=dev)
        torch.cuda.synchronize(dev)
    # downloads and hashing are not model loading either (the paper's "Model Loading" is the load itself)
    ck = weights if W.is_checkpoint(weights) else (
        W.fetch_registered(spec, quality) if weights in ("pretrained", "auto") and spec.checkpoints.get(quality)
        else None)
    if ck is None and weights in ("pretrained", "auto") and spec.pretrained:
        try:
            W.download(W.weights_url(spec, quality, metric))
        except Exception:  # noqa: BLE001 - decided below: pretrained fails, auto falls back
            pass
    wh = file_sha256(ck) if ck is not None and Path(ck).exists() else ""
    t0 = time.perf_counter()
    if ck is not None:
        model, info = W.load_checkpoint(spec, quality, ck)
        notes += info
        used, source = "checkpoint", str(ck)
        channels = f"read from the checkpoint ({W.channels_text(model)})"
    elif weights in ("pretrained", "auto") and spec.pretrained:
        try:
            model = W.load_pretrained(spec, quality, metric)
            used, source = "pretrained", W.weights_url(spec, quality, metric)
        except Exception as e:
            from ..errors import WeightsError

            if weights == "pretrained" or not isinstance(e, WeightsError):
                raise
            notes.append(f"{spec.label} q{quality}: pretrained weights unavailable ({e}); using random weights "
                         f"(seed {seed})")
            model = build_model(spec, quality, seed)
            used, source = "random", f"seed {seed}"
        channels = spec.describe_channels(quality)
    elif weights == "pretrained":
        from ..errors import WeightsError

        raise WeightsError(f"no pretrained weights for {spec.label} (CompressAI's zoo has none, and no checkpoint "
                           "is registered); use WEIGHTS=random or WEIGHTS=<checkpoint file>")
    elif weights in ("random", "auto"):
        if weights == "auto":
            notes.append(f"{spec.label}: no pretrained weights exist; using random weights (seed {seed})")
        model = build_model(spec, quality, seed)
        used, source = "random", f"seed {seed}"
        channels = spec.describe_channels(quality)
    else:
        raise InputError(f"weights must be random, pretrained, auto or the path of a checkpoint file, got "
                         f"{weights!r}")
    model = model.eval().to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    load_s = time.perf_counter() - t0
    from .instrument import detect_family

    family = spec.family if spec.family != "auto" else detect_family(model)
    if spec.family == "auto":
        notes.append(f"{spec.label}: stage split detected from the model: {family}"
                     + (" (coarse: each top-level module timed as a whole)" if family == "generic" else ""))
    return Codec(spec, quality, model, dev, used, seed if used == "random" else None, load_s, source, notes,
                 family, channels, wh)
