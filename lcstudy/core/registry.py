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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputError, WeightsError
from .instrument import Family

#: Families of stage split (:class:`~lcstudy.core.instrument.Family`); ``"auto"``: detected from the model.
FAMILIES = tuple(f.value for f in Family)


@dataclass(frozen=True, kw_only=True)
class CodecSpec:
    """What one codec is, every fact about it in one place (built by keyword). ``family`` selects how its
    encode/decode are split into stages; ``args`` are its constructor arguments per quality (what
    ``channels`` elsewhere describes in words, :meth:`describe_channels`)."""

    label: str  # short label, as in the ICASSP 2023 paper
    name: str  # CompressAI zoo/registry name (or the import path of a user codec)
    cls: str  # "module:Class" of the model
    family: Family  # a string is accepted and checked (:meth:`__post_init__`)
    #: quality → constructor arguments: a tuple of positional ones, or a dict of keyword ones
    args: dict[int, Any]
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
    #: encode + decode seconds per megapixel of each channel configuration (in :meth:`config_index` order) at 2
    #: threads on the reference 2-core VM (AMD EPYC, AVX-512), lowest quality of the configuration, seeded random
    #: weights (measured Nov 2026): a run's first guess before anything is measured
    #: (:func:`lcstudy.runs.profiles.reference_rate`); empty: as a hyperprior codec
    ref_s_per_mpx: tuple[float, ...] = ()
    #: the file of ``compressai-results`` (``make data``) holding the RD points CompressAI quotes from the codec's
    #: paper, for a codec without zoo weights (the RD frontier and the paper comparison plot them)
    paper_rd: str = ""

    def __post_init__(self):
        try:
            object.__setattr__(self, "family", Family(self.family))
        except ValueError:
            raise InputError(f"codec {self.label}: family must be one of {', '.join(FAMILIES)}, got "
                             f"{self.family!r}") from None

    @property
    def qualities(self) -> tuple[int, ...]:
        return tuple(sorted(self.args))

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

    def config_index(self, quality: int) -> int:
        """Which channel configuration ``quality`` uses: 0 for the lowest qualities' constructor arguments, 1 for
        the next (complexity and speed depend on quality only through them)."""
        configs = []
        for q in self.qualities:
            if self.args[q] not in configs:
                configs.append(self.args[q])
        return configs.index(self.args[quality])

    def lowest_quality_per_config(self) -> tuple[int, ...]:
        seen: dict[str, int] = {}
        for q in self.qualities:
            seen.setdefault(json.dumps(self.args[q], sort_keys=True, default=str), q)
        return tuple(sorted(seen.values()))

    def describe_channels(self, quality: int) -> str:
        a = self.args[quality]
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
    CodecSpec(label="FP", name="bmshj2018-factorized", cls=f"{_G}:FactorizedPrior", family=Family.FACTORIZED,
              args=_q({(1, 5): (128, 192), (6, 8): (192, 320)}), pretrained=True, title="Factorized prior",
              citation="Ballé et al., Variational image compression with a scale hyperprior, ICLR 2018",
              ref_s_per_mpx=(2.5, 4.6)),
    CodecSpec(label="HP", name="bmshj2018-hyperprior", cls=f"{_G}:ScaleHyperprior", family=Family.HYPERPRIOR,
              args=_q({(1, 5): (128, 192), (6, 8): (192, 320)}), pretrained=True, title="Scale hyperprior",
              citation="Ballé et al., Variational image compression with a scale hyperprior, ICLR 2018",
              ref_s_per_mpx=(2.9, 5.7)),
    CodecSpec(label="MS-HP", name="mbt2018-mean", cls=f"{_G}:MeanScaleHyperprior", family=Family.HYPERPRIOR,
              args=_q({(1, 4): (128, 192), (5, 8): (192, 320)}), pretrained=True, title="Mean-scale hyperprior",
              citation="Minnen et al., Joint autoregressive and hierarchical priors, NeurIPS 2018",
              ref_s_per_mpx=(3.2, 5.4)),
    CodecSpec(label="ARC", name="mbt2018", cls=f"{_G}:JointAutoregressiveHierarchicalPriors",
              family=Family.AUTOREGRESSIVE, args=_q({(1, 4): (192, 192), (5, 8): (192, 320)}), pretrained=True,
              title="Autoregressive context + hyperprior",
              citation="Minnen et al., Joint autoregressive and hierarchical priors, NeurIPS 2018",
              ref_s_per_mpx=(38.4, 56.0)),
    CodecSpec(label="DGM", name="cheng2020-anchor", cls=f"{_W}:Cheng2020Anchor", family=Family.AUTOREGRESSIVE,
              args=_q({(1, 3): (128,), (4, 6): (192,)}), pretrained=True, title="Cheng 2020 anchor",
              citation=_CHENG, notes=_MIXTURE, ref_s_per_mpx=(35.4, 49.0)),
    CodecSpec(label="DGM-ATT", name="cheng2020-attn", cls=f"{_W}:Cheng2020Attention", family=Family.AUTOREGRESSIVE,
              args=_q({(1, 3): (128,), (4, 6): (192,)}), pretrained=True, title="Cheng 2020 with attention",
              citation=_CHENG, notes=_MIXTURE, ref_s_per_mpx=(40.0, 49.6)),
    CodecSpec(label="CKBD", name="cheng2020-anchor-checkerboard", cls=f"{_S}:Cheng2020AnchorCheckerboard",
              family=Family.LATENT_CODEC, args={1: ()}, pretrained=False, title="Checkerboard context",
              citation="He et al., Checkerboard context model for efficient learned image compression, CVPR 2021",
              notes="No pretrained weights in CompressAI 1.2.8; quality 1 means the class defaults (N=192).",
              ref_s_per_mpx=(15.6,), paper_rd="paper-cheng2020-checkerboard-6M_mse.json"),
    CodecSpec(label="ELIC", name="elic2022-official", cls=f"{_S}:Elic2022Official", family=Family.LATENT_CODEC,
              args={1: ()}, pretrained=False, title="ELIC",
              citation="He et al., ELIC: efficient learned image compression with unevenly grouped "
              "space-channel contextual adaptive coding, CVPR 2022",
              notes="No pretrained weights in CompressAI 1.2.8; quality 1 means the class defaults (N=192, M=320).",
              ref_s_per_mpx=(13.2,), paper_rd="paper-elic2022_mse.json"),
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
        out.append(CodecSpec(label=str(c["label"]), name=str(c["class"]), cls=str(c["class"]), family=family,
                             args=quals, pretrained=False, title=str(c.get("title", c["label"])),
                             citation=str(c.get("citation", "")), notes=str(c.get("notes", "")), checkpoints=ckpts,
                             source=f"codecs file {path}",
                             python_path=tuple(str((path.parent / p).resolve()) for p in c.get("python_path", []))))
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
        return CodecSpec(label=label, name=key, cls=key, family=Family.AUTO, args={1: dict(kwargs or {})},
                         pretrained=False, title=label, citation="", notes="a codec given by import path",
                         source="import path")
    valid = ", ".join(f"{s.label} ({s.name})" if s.builtin else s.label for s in registered())
    raise InputError(f"unknown codec {name!r}; valid codecs: {valid}; or an import path package.module:Class")


def check_quality(spec: CodecSpec, quality) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int):
        if isinstance(quality, str) and quality.strip().isdigit():
            quality = int(quality)
        else:
            raise InputError(f"quality must be an integer, got {quality!r}")
    if quality not in spec.args:
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
    weights: str  # a :class:`lcstudy.core.weights.Weights`: PRETRAINED, RANDOM or CHECKPOINT
    seed: int | None
    load_seconds: float
    weights_source: str  # URL, "seed N" or the checkpoint's path
    notes: list[str] = field(default_factory=list)
    family: Family | str = ""  # the stage split in use (detected for "auto")
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
    choice = W.choose(spec, quality, weights)
    notes += choice.notes
    if choice.kind == W.Weights.PRETRAINED:
        try:
            W.download(W.weights_url(spec, quality, metric))
        except Exception:  # noqa: BLE001 - decided below: pretrained fails, auto falls back
            pass
    ck = choice.path if choice.kind == W.Weights.CHECKPOINT else None
    wh = file_sha256(ck) if ck is not None and Path(ck).exists() else ""
    t0 = time.perf_counter()
    if ck is not None:
        model, info = W.load_checkpoint(spec, quality, ck)
        notes += info
        used, source = W.Weights.CHECKPOINT, str(ck)
        channels = f"read from the checkpoint ({W.channels_text(model)})"
    elif choice.kind == W.Weights.PRETRAINED:
        try:
            model = W.load_pretrained(spec, quality, metric)
            used, source = W.Weights.PRETRAINED, W.weights_url(spec, quality, metric)
        except WeightsError as e:
            if not choice.fallback:
                raise
            notes.append(f"{spec.label} q{quality}: pretrained weights unavailable ({e}); using random weights "
                         f"(seed {seed})")
            model = W.build_model(spec, quality, seed)
            used, source = W.Weights.RANDOM, f"seed {seed}"
        channels = spec.describe_channels(quality)
    else:
        model = W.build_model(spec, quality, seed)
        used, source = W.Weights.RANDOM, f"seed {seed}"
        channels = spec.describe_channels(quality)
    model = model.eval().to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    load_s = time.perf_counter() - t0
    from .instrument import detect_family

    family = spec.family if spec.family != Family.AUTO else detect_family(model)
    if spec.family == Family.AUTO:
        notes.append(f"{spec.label}: stage split detected from the model: {family}"
                     + (" (coarse: each top-level module timed as a whole)" if family == Family.GENERIC else ""))
    return Codec(spec, quality, model, dev, used, seed if used == W.Weights.RANDOM else None, load_s, source, notes,
                 family, channels, wh)
