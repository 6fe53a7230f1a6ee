"""A synthetic CompressAI-style codec whose modules do a known amount of work (a test fixture).

Its sub-modules carry CompressAI's names (``g_a``, ``h_a``, ``h_s``, ``g_s``, ``entropy_bottleneck``,
``gaussian_conditional``), so the study splits it like a hyperprior codec. Each does ``seconds`` of
work on a :class:`FakeDevice`: done at once (``deferred=False``, like a CPU), or only queued until
the device is synchronised (``deferred=True``, like a GPU: the work of a call completes when
someone waits for it) — so a clock that forgets to synchronise at a stage boundary bills one
stage's work to the next, and a test can see it.
"""
from __future__ import annotations

import time

import torch

ENCODE = {"g_a": 0.030, "h_a": 0.010, "AEz": 0.006, "ADz": 0.004, "h_s": 0.008, "AEy": 0.020}
DECODE = {"ADz": 0.004, "h_s": 0.008, "ADy": 0.016, "g_s": 0.025}


def _busy(seconds: float) -> None:
    """Wall-clock work that is not a sleep (a sleeping thread would let the clock drift less)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class FakeDevice:
    def __init__(self, deferred: bool = False):
        self.deferred = deferred
        self.queued = 0.0
        self.syncs = 0

    def launch(self, seconds: float) -> None:
        if self.deferred:
            self.queued += seconds
        else:
            _busy(seconds)

    def synchronize(self) -> None:
        self.syncs += 1
        if self.queued:
            q, self.queued = self.queued, 0.0
            _busy(q)


class Work(torch.nn.Module):
    def __init__(self, device: FakeDevice, seconds: float):
        super().__init__()
        self.dev = device
        self.seconds = seconds
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        self.dev.launch(self.seconds)
        return x * self.weight


class FakeCoder(torch.nn.Module):
    def __init__(self, device: FakeDevice, enc: float, dec: float, tag: bytes):
        super().__init__()
        self.dev, self.enc, self.dec, self.tag = device, enc, dec, tag

    def compress(self, x, *args):
        self.dev.launch(self.enc)
        return [self.tag + bytes(str(round(float(x.sum()), 3)), "ascii")]

    def decompress(self, strings, *args):
        self.dev.launch(self.dec)
        return torch.ones(1, 1, 2, 2)


class FakeHyperprior(torch.nn.Module):
    """compress: g_a, h_a, AEz, ADz, h_s, AEy; decompress: ADz, h_s, ADy, g_s — each ``seconds`` of work."""

    def __init__(self, extra: dict | None = None, deferred: bool = False, tail: float = 0.0, **times):
        super().__init__()
        self.tail = tail  # work after the last module, in no stage (like a final clamp on a GPU): misc
        t = {**{f"enc_{k}": v for k, v in ENCODE.items()}, **{f"dec_{k}": v for k, v in DECODE.items()}, **times}
        extra = extra or {}
        self.dev = FakeDevice(deferred)
        self.g_a = Work(self.dev, t["enc_g_a"] + extra.get("g_a", 0.0))
        self.h_a = Work(self.dev, t["enc_h_a"] + extra.get("h_a", 0.0))
        self.h_s = Work(self.dev, t["enc_h_s"] + extra.get("h_s", 0.0))
        self.g_s = Work(self.dev, t["dec_g_s"] + extra.get("g_s", 0.0))
        self.entropy_bottleneck = FakeCoder(self.dev, t["enc_AEz"], t["dec_ADz"], b"z")
        self.gaussian_conditional = FakeCoder(self.dev, t["enc_AEy"], t["dec_ADy"], b"y")

    def compress(self, x):
        y = self.g_a(x)
        z = self.h_a(y)
        zs = self.entropy_bottleneck.compress(z)
        zh = self.entropy_bottleneck.decompress(zs)
        s = self.h_s(zh)
        ys = self.gaussian_conditional.compress(y, s)
        if self.tail:
            self.dev.launch(self.tail)
        return {"strings": [ys, zs], "shape": tuple(z.shape[-2:])}

    def decompress(self, strings, shape):
        zh = self.entropy_bottleneck.decompress(strings[1])
        s = self.h_s(zh)
        yh = self.gaussian_conditional.decompress(strings[0], s)
        x_hat = torch.full((1, 3, 64, 64), 0.5) * self.g_s(yh).mean()
        if self.tail:
            self.dev.launch(self.tail)
        return {"x_hat": x_hat}


class DriftingDevice(FakeDevice):
    """A fake device whose work takes ``LCSTUDY_TEST_SPEED`` times longer (read at each call): a machine whose
    speed a test sets, in this process and its children (the reference workload's test hook reads the same)."""

    def launch(self, seconds: float) -> None:
        import os

        super().launch(seconds * float(os.environ.get("LCSTUDY_TEST_SPEED") or 1.0))


class Drifting(FakeHyperprior):
    """:class:`FakeHyperprior` on a :class:`DriftingDevice`, reconstructing any input shape (a run of two shapes)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.dev.__class__ = DriftingDevice
        self._shape = (64, 64)

    def compress(self, x):
        self._shape = tuple(x.shape[-2:])
        return super().compress(x)

    def decompress(self, strings, shape):
        out = super().decompress(strings, shape)
        return {"x_hat": torch.full((1, 3, *self._shape), float(out["x_hat"].mean()))}


class NotACodec:
    pass


class NoDecompress(torch.nn.Module):
    def compress(self, x):
        return {}


class Custom(torch.nn.Module):
    """A codec that follows none of CompressAI's names: the study times its top-level modules."""

    def __init__(self, seconds: float = 0.01):
        super().__init__()
        self.dev = FakeDevice(False)
        self.encoder = Work(self.dev, seconds)
        self.decoder = Work(self.dev, 2 * seconds)

    def compress(self, x):
        return {"strings": [[bytes(str(float(self.encoder(x).sum())), "ascii")]], "shape": (1,)}

    def decompress(self, strings, shape):
        return {"x_hat": self.decoder(torch.full((1, 3, 64, 64), 0.5))}


class Broken(FakeHyperprior):
    """Passes every check before a run (importable, an nn.Module with compress and decompress) and fails
    when the run builds it: a run that fails on its node."""

    def __init__(self, **kw):
        raise RuntimeError("this codec cannot be built (a test of failed runs)")
