"""The codec registry: one table of what the study measures, and loading a codec from it.

One registry, not parallel dicts: every fact about a codec (paper label, CompressAI name,
qualities, channel configuration, which stages it has) sits in one :class:`CodecSpec`.
CompressAI's own zoo keeps four dicts that drift apart (its ``bmshj2018-factorized-relu``
entry builds the GDN model); here a codec is built from its spec's class and its
(N, M) for the quality, and the test suite checks that this is the architecture the
zoo's pretrained state dict would load into.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import socket
import time
import urllib.error
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from .errors import DeviceError, InputError, WeightsError

Weights = Literal["pretrained", "random", "auto"]
#: Seconds to wait for the first byte of a download (weights, data) before giving up.
DOWNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CodecSpec:
    """What one codec is. ``family`` selects how its encode/decode are split into stages."""

    label: str  # short label, as in the ICASSP 2023 paper
    name: str  # CompressAI zoo/registry name
    cls: str  # "module:Class" of the CompressAI model
    family: Literal["factorized", "hyperprior", "autoregressive", "latent_codec"]
    channels: dict[int, tuple[int, ...]]  # quality -> constructor args (N, M) / (N,)
    pretrained: bool  # whether CompressAI's zoo publishes weights
    title: str
    citation: str
    notes: str = ""

    @property
    def qualities(self) -> tuple[int, ...]:
        return tuple(sorted(self.channels))

    def model_class(self):
        mod, _, attr = self.cls.partition(":")
        return getattr(importlib.import_module(mod), attr)

    def config_group(self, quality: int) -> tuple[int, ...]:
        """The channel configuration of ``quality``: complexity depends on quality only through it."""
        return self.channels[quality]

    def lowest_quality_per_config(self) -> tuple[int, ...]:
        seen: dict[tuple[int, ...], int] = {}
        for q in self.qualities:
            seen.setdefault(self.channels[q], q)
        return tuple(sorted(seen.values()))


def _q(ranges: dict[tuple[int, int], tuple[int, ...]]) -> dict[int, tuple[int, ...]]:
    return {q: nm for (lo, hi), nm in ranges.items() for q in range(lo, hi + 1)}


_G = "compressai.models.google"
_W = "compressai.models.waseda"
_S = "compressai.models.sensetime"

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
              _q({(1, 3): (128,), (4, 6): (192,)}), True,
              "Cheng 2020 anchor", "Cheng et al., Learned image compression with discretized Gaussian mixture "
              "likelihoods and attention modules, CVPR 2020",
              notes="CompressAI's cheng2020 uses a single Gaussian, not the paper's mixture (CompressAI issue #79)."),
    CodecSpec("DGM-ATT", "cheng2020-attn", f"{_W}:Cheng2020Attention", "autoregressive",
              _q({(1, 3): (128,), (4, 6): (192,)}), True,
              "Cheng 2020 with attention", "Cheng et al., Learned image compression with discretized Gaussian "
              "mixture likelihoods and attention modules, CVPR 2020",
              notes="CompressAI's cheng2020 uses a single Gaussian, not the paper's mixture (CompressAI issue #79)."),
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

_BY_KEY: dict[str, CodecSpec] = {}
for _s in CODECS:
    _BY_KEY[_s.label.lower()] = _s
    _BY_KEY[_s.name.lower()] = _s


def codec_names() -> list[str]:
    return [s.label for s in CODECS]


def get_spec(name: str) -> CodecSpec:
    """Look a codec up by its paper label (``"ARC"``) or CompressAI name (``"mbt2018"``)."""
    spec = _BY_KEY.get(str(name).strip().lower())
    if spec is None:
        valid = ", ".join(f"{s.label} ({s.name})" for s in CODECS)
        raise InputError(f"unknown codec {name!r}; valid codecs: {valid}")
    return spec


def check_quality(spec: CodecSpec, quality) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int):
        try:
            if isinstance(quality, str) and quality.strip().isdigit():
                quality = int(quality)
            else:
                raise TypeError
        except TypeError:
            raise InputError(f"quality must be an integer, got {quality!r}") from None
    if quality not in spec.channels:
        qs = spec.qualities
        rng = f"{qs[0]}–{qs[-1]}" if len(qs) > 1 else f"{qs[0]} only"
        raise InputError(f"quality {quality} is out of range for {spec.label}: valid qualities are {rng}")
    return quality


def check_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use 'cpu' or 'cuda' (or 'cuda:N')") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} was requested but torch.cuda.is_available() is False on this machine "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); run with device='cpu' "
                "or on a machine with an NVIDIA GPU and a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {device!r}; use 'cpu' or 'cuda'")
    return dev


# --- weights ---------------------------------------------------------------------------

def weights_url(spec: CodecSpec, quality: int, metric: str = "mse") -> str:
    """The URL CompressAI's zoo downloads ``spec``'s pretrained weights from.

    ``LCSTUDY_WEIGHTS_URL`` replaces the zoo's root URL (a mirror, or a loopback server in tests).
    """
    if not spec.pretrained:
        raise WeightsError(f"CompressAI publishes no pretrained weights for {spec.label}; use weights='random'")
    from compressai.zoo import image as zoo_image

    url = zoo_image.model_urls[spec.name][metric][quality]
    root = os.environ.get("LCSTUDY_WEIGHTS_URL")
    if root:
        url = root.rstrip("/") + "/" + url.rsplit("/", 1)[1]
    return url


def hub_checkpoint_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urllib.parse.urlparse(url).path)


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _download_state_dict(url: str, device: torch.device) -> dict:
    """torch.hub's own download and cache (the path CompressAI's zoo takes), with a timeout.

    ``check_hash=False`` as in CompressAI's zoo; the file is verified by loading it into the
    architecture (a wrong or truncated file fails ``load_state_dict``). A failed download
    leaves no file in the cache (torch.hub writes to a temporary file and renames it).
    """
    last: Exception | None = None
    for attempt in range(3):
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                return torch.hub.load_state_dict_from_url(
                    url, map_location=device, progress=False, check_hash=False, weights_only=True)
        except (urllib.error.HTTPError,) as e:  # a definite answer: do not retry
            last = e
            break
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            last = e
            if attempt < 2 and not isinstance(getattr(e, "reason", None), socket.gaierror):
                time.sleep(0.2 * (attempt + 1))
                continue
            break
        except RuntimeError as e:  # hash mismatch, corrupt archive
            last = e
            break
    cache = hub_checkpoint_path(url)
    raise WeightsError(
        f"could not download pretrained weights from {url}: {last}. Without network access, place the "
        f"file at {cache} (torch hub cache; set TORCH_HOME to move it) or use weights='random'") from last


@dataclass
class Codec:
    """A loaded codec: the CompressAI model plus what the study needs to know about it."""

    spec: CodecSpec
    quality: int
    model: torch.nn.Module
    device: torch.device
    weights: Literal["pretrained", "random"]
    seed: int | None
    load_seconds: float
    weights_source: str
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.spec.label

    def __repr__(self) -> str:
        return (f"Codec({self.spec.label} q{self.quality}, {self.weights} weights, device={self.device}, "
                f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M params)")


def build_model(spec: CodecSpec, quality: int, seed: int = 0) -> torch.nn.Module:
    """Build ``spec`` at ``quality`` with seeded random weights.

    ``torch.manual_seed(seed)`` immediately before construction, then ``update(force=True)``
    (CompressAI refuses to compress with uninitialised CDFs). The same seed gives the
    same model whether built here or through CompressAI's zoo factory.
    """
    cls = spec.model_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation inside CompressAI
        torch.manual_seed(seed)
        model = cls(*spec.channels[quality])
    model.update(force=True)
    return model


def load_codec(name: str, quality: int = 1, weights: Weights = "random", device="cpu", seed: int = 0,
               metric: str = "mse") -> Codec:
    """Load a codec of the registry, ready to encode (eval mode, CDFs updated, on ``device``).

    ``weights``: ``"pretrained"`` (CompressAI's zoo weights through torch.hub; fails within
    ~10 s without network, naming the URL and cache path), ``"random"`` (seeded), or
    ``"auto"`` (pretrained when cached or downloadable, else random with a warning).
    The wall time of loading is reported as the paper's "Model Loading".
    """
    spec = get_spec(name)
    quality = check_quality(spec, quality)
    dev = check_device(device)
    if weights not in ("pretrained", "random", "auto"):
        raise InputError(f"weights must be 'pretrained', 'random' or 'auto', got {weights!r}")
    notes: list[str] = []
    spec.model_class()  # import CompressAI's module first: import time is not model loading
    t0 = time.perf_counter()
    used: str
    if weights in ("pretrained", "auto") and spec.pretrained:
        url = weights_url(spec, quality, metric)
        try:
            state_dict = _download_state_dict(url, torch.device("cpu"))
        except WeightsError as e:
            if weights == "pretrained":
                raise
            msg = f"{spec.label} q{quality}: pretrained weights unavailable ({e}); using random weights (seed {seed})"
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
            model = build_model(spec, quality, seed)
            used, source = "random", f"seed {seed}"
        else:
            from compressai.zoo.pretrained import load_pretrained

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = spec.model_class().from_state_dict(load_pretrained(state_dict))
            model.update(force=False)
            used, source = "pretrained", url
    elif weights == "pretrained":
        raise WeightsError(f"CompressAI publishes no pretrained weights for {spec.label}; use weights='random'")
    else:
        if weights == "auto":
            notes.append(f"{spec.label}: no pretrained weights exist; using random weights (seed {seed})")
        model = build_model(spec, quality, seed)
        used, source = "random", f"seed {seed}"
    model = model.eval().to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    load_s = time.perf_counter() - t0
    return Codec(spec, quality, model, dev, used, seed if used == "random" else None, load_s, source, notes)
