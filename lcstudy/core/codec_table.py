"""The codec table: what the study measures, every fact about a codec in one :class:`CodecSpec`.

One registry, not parallel dicts: paper label, CompressAI name, qualities and their constructor arguments,
how its coding splits into stages, checkpoints, citation, its first-guess speed and its paper's RD points sit
in one spec. CompressAI's own zoo keeps four dicts that drift apart (its ``bmshj2018-factorized-relu`` entry
builds the GDN model); here a codec is built from its spec's class and the arguments for the quality, and the
tests check that this is the architecture the zoo's pretrained state dict would load into.

This module is the bottom of the codec layer: :mod:`~lcstudy.core.codec_sources` (where codecs come from:
these built-in ones, a codecs file, entry points, import paths) and :mod:`~lcstudy.core.codec_loading` (a
model on a device, with its weights) build on it; nothing here imports either, torch or CompressAI, so the
parameter checks that use it answer in well under a second.
"""
from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
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


def check_quality(spec: CodecSpec, quality) -> int:
    """``quality`` as an integer the codec has (``"3"`` is accepted), or a one-line error that lists the valid
    ones: checked when a request is resolved, before any work."""
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
