"""Loading a codec: its model built (or read) with the weights asked for, on the device asked for.

:func:`load_codec` looks the codec up (:func:`~lcstudy.core.codec_sources.get_spec`), lets
:mod:`~lcstudy.core.weights` decide and make its weights, and times only the load itself, the paper's
"Model Loading" (imports, the CUDA context, downloads and hashing are not part of it).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeviceError, InputError, WeightsError
from . import weights as W
from .codec_sources import get_spec
from .codec_table import CodecSpec, check_quality
from .instrument import Family, detect_family


def check_device(device) -> str:
    """``'cpu'``, ``'cuda'`` or ``'cuda:N'``, present on this machine. Imports torch only for CUDA."""
    d = str(device).strip().lower()
    if d == "cpu":
        return d
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} was requested but torch.cuda.is_available() is False on this machine "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); use DEVICE=cpu, "
                "or run on a machine with an NVIDIA GPU and a CUDA build of torch")
        if ":" in d and int(d[5:]) >= torch.cuda.device_count():
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
    import torch

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
    family = spec.family if spec.family != Family.AUTO else detect_family(model)
    if spec.family == Family.AUTO:
        notes.append(f"{spec.label}: stage split detected from the model: {family}"
                     + (" (coarse: each top-level module timed as a whole)" if family == Family.GENERIC else ""))
    return Codec(spec, quality, model, dev, used, seed if used == W.Weights.RANDOM else None, load_s, source, notes,
                 family, channels, wh)
