"""Decodability: does a stored bitstream decode to what its encoder saw, under another decoder?

A learned codec's entropy model is computed in floating point on both sides. If the decoder's
hyper-synthesis (``h_s``) or context model gives a scale that differs from the encoder's by one unit in
the last place near a boundary of the scale table, the range decoder reads with another distribution,
desynchronises, and every symbol after that point is garbage (Ballé et al., ICLR 2019, "Integer
networks for data compression with latent-variable models"; CompressAI's users decoding on another GPU,
a Jetson or Windows). This module decodes one bitstream under one decoder configuration and says what
came out, against a fingerprint the encoder took of its own decode right after encoding:

=============  ====================================================================================
outcome        meaning
=============  ====================================================================================
``identical``  the reconstruction is bit-exact the encoder's
``close``      the decoded symbols are the encoder's (the entropy decoding stayed in step); only the
               synthesis differs, and the reconstruction's PSNR is within :data:`CLOSE_DB` of the
               encoder's (or, the image not being here, its 8-bit rounding is the encoder's)
``corrupt``    the decoded symbols differ: the entropy decoding desynchronised; ``first_diff`` says
               where, as the share of the symbols (in decoding order) decoded correctly before it
``error``      the decoder raised (the exception is named), or the symbols are the encoder's but the
               reconstruction is further off than :data:`CLOSE_DB` (a broken synthesis)
=============  ====================================================================================

**What is compared.** Not ``y_hat``: in a mean-scale model ``y_hat`` is the symbols plus predicted
means, so a one-ulp difference in a mean changes it without any desynchronisation. The decoded
*symbols* are what a desynchronisation changes: every call of an entropy model's ``dequantize`` (the
one place where CompressAI turns decoded integers back into latents — the factorized, the Gaussian
conditional, the autoregressive loop and the checkerboard codecs all go through it) is observed, its
integer input appended to one stream, and the stream digested in chunks of :data:`CHUNK` symbols.

**Whether the answer means anything.** At seeded random weights the entropy model is degenerate: every
predicted scale sits at the bottom of the scale table (HP q1 on kodim01: 100 % at index 0), so any
decoder decodes every image identically and the matrix is uninformative. The fingerprint therefore
records how spread the scale indexes are (:func:`scale_stats`) and how close the scales came to a
table boundary, in ulps: the *margin*. A decoder whose entropy parameters differ from the encoder's
by more than the margin can desynchronise. :func:`degenerate` says when the matrix cannot tell.

**Simulating another platform here.** :class:`DecoderConfig` ``ulps`` nudges ``h_s``'s output by that
many units in the last place, the size of difference a different GPU, BLAS or thread count makes.
**Mitigation** (``entropy_dtype="float64"``): ``h_s`` computed in float64 on both sides and rounded to
float32 before indexing, so that a float64 ulp of difference flips an index only when the value lies
within it of a float32 rounding boundary (:func:`encode`, :func:`decode`).
"""
from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, asdict
from typing import Any

#: symbols per digest chunk: the first differing chunk locates a desynchronisation (a 768×512 Kodak image
#: at M=192 has ~295 k y symbols: ~70 chunks, ~1 kB of digests)
CHUNK = 4096
#: a reconstruction with the encoder's symbols whose PSNR is within this of the encoder's is ``close``
CLOSE_DB = 0.05
#: one scale-table entry holding at least this share of the indexes: the entropy model is degenerate
DEGENERATE_SHARE = 0.95
#: scales within this many ulps of a table boundary are "at risk": ONNX Runtime's transforms differ from
#: eager by up to 8e-7 (about 7 ulps at the scales' magnitude, deployment-facts.md)
RISK_ULPS = 8
OUTCOMES = ("identical", "close", "corrupt", "error")


def digest(t) -> str:
    """Short sha256 of a tensor's bytes (on the CPU, contiguous)."""
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


def weights_digest(model) -> str:
    """What a decoder must hold to decode: the model's parameters and buffers, bit for bit (the CDF tables
    are buffers, so ``update()``'s result is part of it). A masked convolution's weight is taken with its mask
    applied: CompressAI's ``MaskedConv2d`` masks its weight in place on its first call, so the same weights
    read before and after a coding (a freshly loaded decoder, a run's encoder) would otherwise differ."""
    h = hashlib.sha256()
    sd = dict(model.state_dict())
    for name, m in model.named_modules():
        mask = getattr(m, "mask", None)
        if hasattr(mask, "shape") and f"{name}.weight" in sd and mask.shape == m.weight.shape:
            sd[f"{name}.weight"] = m.weight.detach() * m.mask
    for k, v in sorted(sd.items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class DecoderConfig:
    """One way to decode (or encode): device, threads (None: the machine's default), backend of the
    transforms (:mod:`lcstudy.core.backends`), ``h_s``'s output nudged by ``ulps`` (a simulated other
    platform) and the precision ``h_s`` is computed in (``float64``: the mitigation)."""

    device: str = "cpu"
    threads: int | None = None
    backend: str = "eager"
    ulps: int = 0
    entropy_dtype: str = "float32"

    @property
    def name(self) -> str:
        parts = [self.backend, self.device, f"{self.threads}thr" if self.threads else "default-thr"]
        if self.ulps:
            parts.append(f"h_s+{self.ulps}ulp")
        if self.entropy_dtype != "float32":
            parts.append(f"h_s-{self.entropy_dtype}")
        return " · ".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)


def _nudge(t, ulps: int):
    import torch

    step = torch.nextafter(t, torch.full_like(t, math.inf)) - t  # one ulp at each value
    return t + ulps * step


class Watch:
    """Observes one encode or decode of ``model``: the symbols every entropy model dequantizes (in call
    order), the scales the Gaussian conditional builds its indexes from, and the indexes; applies the
    configuration's nudge and precision to ``h_s``. Instance attributes only, removed on exit, so the
    shared model is unchanged afterwards."""

    def __init__(self, model, cfg: DecoderConfig | None = None, wide_from=None):
        """``wide_from``: the module whose float64 copy computes h_s under ``entropy_dtype="float64"`` (default:
        the model's own h_s; a deployed decoder passes the eager one — an ONNX Runtime session has no float64)."""
        self.model, self.cfg, self.wide_from = model, cfg or DecoderConfig(), wide_from
        self.symbols: list = []
        self.scales: list = []
        self.indexes: list = []
        self._undo: list = []

    def _patch(self, obj, name, fn) -> None:
        had = name in obj.__dict__
        old = obj.__dict__.get(name)
        setattr(obj, name, fn)
        self._undo.append((obj, name, had, old))

    def __enter__(self):
        import torch

        m = self.model
        for em in [x for x in m.modules() if hasattr(x, "dequantize") and hasattr(x, "_quantized_cdf")]:
            orig = em.dequantize

            def deq(inputs, means=None, dtype=torch.float, _orig=orig):
                self.symbols.append(inputs.detach().reshape(-1).to(torch.int64).cpu())
                return _orig(inputs, means, dtype)

            self._patch(em, "dequantize", deq)
        gc = getattr(m, "gaussian_conditional", None)
        if gc is not None and hasattr(gc, "build_indexes"):
            orig_bi = gc.build_indexes

            def bi(scales, _orig=orig_bi):
                idx = _orig(scales)
                self.scales.append(scales.detach().reshape(-1).float().cpu())
                self.indexes.append(idx.detach().reshape(-1).cpu())
                return idx

            self._patch(gc, "build_indexes", bi)
        hs = getattr(m, "h_s", None)
        cfg = self.cfg
        if hs is not None and (cfg.ulps or cfg.entropy_dtype != "float32"):
            if cfg.entropy_dtype == "float64":
                wide = copy.deepcopy(self.wide_from if self.wide_from is not None else hs).double()

                def fwd(z, _wide=wide):
                    out = _wide(z.double())
                    return (_nudge(out, cfg.ulps) if cfg.ulps else out).to(z.dtype)
            else:
                orig_f = hs.forward

                def fwd(z, _orig=orig_f):
                    return _nudge(_orig(z), cfg.ulps)

            self._patch(hs, "forward", fwd)
        return self

    def __exit__(self, *exc) -> None:
        from .instrument import _restore_attr  # the stage clock's rule: put back, or remove what was not there

        for obj, name, had, old in reversed(self._undo):
            _restore_attr(obj, name, had, old)
        self._undo.clear()

    def symbol_chunks(self) -> tuple[int, list[str]]:
        """(number of symbols, digests of each :data:`CHUNK` of them) in decoding order."""
        import torch

        if not self.symbols:
            return 0, []
        s = torch.cat(self.symbols).to(torch.int32)
        return int(s.numel()), [digest(s[i:i + CHUNK]) for i in range(0, s.numel(), CHUNK)]


def scale_stats(watch: Watch, model) -> dict:
    """How spread the scale indexes are, and how close the scales came to a boundary of the table.

    ``indexes_used``: table entries used; ``top_share``: the share of the indexes at the most used entry;
    ``margin_ulps``: the smallest distance, in ulps of float32, of a scale from a table value (before the
    lower bound: a scale just above the lowest entry is as much at risk as any); ``at_risk``: scales within
    :data:`RISK_ULPS`; ``scales``: how many. Empty for a codec without a Gaussian conditional (FP)."""
    import torch

    gc = getattr(model, "gaussian_conditional", None)
    if gc is None or not watch.indexes:
        return {}
    table = gc.scale_table.detach().float().cpu()
    idx = torch.cat(watch.indexes).to(torch.int64)
    counts = torch.bincount(idx.clamp(min=0), minlength=len(table))
    s = torch.cat(watch.scales)
    pos = torch.searchsorted(table, s).clamp(1, len(table) - 1)
    near = torch.minimum((s - table[pos - 1]).abs(), (table[pos] - s).abs())
    nearest = torch.where((s - table[pos - 1]).abs() <= (table[pos] - s).abs(), table[pos - 1], table[pos])
    ulp = torch.nextafter(nearest, torch.full_like(nearest, math.inf)) - nearest
    ulps = near / ulp
    return {"scales": int(s.numel()), "indexes_used": int((counts > 0).sum()), "table_size": int(len(table)),
            "top_share": float(counts.max() / counts.sum()), "margin_ulps": float(ulps.min()),
            "at_risk": int((ulps <= RISK_ULPS).sum())}


def degenerate(stats: dict) -> bool | None:
    """Whether an entropy model's scales are too concentrated for a decodability result to mean anything
    (None: no Gaussian conditional to tell by — the factorized prior has no predicted scales at all)."""
    if not stats:
        return None
    return stats["top_share"] >= DEGENERATE_SHARE


def encode(model, x, cfg: DecoderConfig | None = None, wide_from=None) -> dict:
    """``model.compress(x)`` under ``cfg``'s ``h_s`` precision and nudge (the mitigation encodes too)."""
    import torch

    with torch.inference_mode(), Watch(model, cfg, wide_from):
        return model.compress(x)


def fingerprint(model, strings, shape, cfg: DecoderConfig | None = None, wide_from=None) -> dict:
    """Decode ``strings`` under ``cfg`` and describe what came out: the reconstruction's digest (and of its
    8-bit rounding), the decoded symbols in chunks, the scale statistics and the decode's seconds; the
    reconstruction itself under ``_x_hat``, for the caller's PSNR (``wide_from``: see :class:`Watch`)."""
    import torch

    with torch.inference_mode(), Watch(model, cfg, wide_from) as w:
        t0 = time.perf_counter()
        out = model.decompress(strings, shape)
        if str(getattr(out["x_hat"], "device", "cpu")).startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    x_hat = out["x_hat"]
    n, chunks = w.symbol_chunks()
    fp = {"x_hat": digest(x_hat), "x_hat_u8": digest((x_hat.clamp(0, 1) * 255).round().to(torch.uint8)),
          "symbols": n, "chunks": chunks, "scale": scale_stats(w, model), "seconds": seconds}
    return {**fp, "_x_hat": x_hat}


def psnr(x, x_hat) -> float:
    """PSNR as the study's rows give it (both sides at 8 bits, :func:`lcstudy.core.metrics.psnr`)."""
    from .metrics import psnr as _psnr

    return _psnr(x, x_hat)


def classify(ref: dict, got: dict | None, error: str | None = None, delta_db: float | None = None) -> dict:
    """The outcome of one decode (see the module docstring): ``ref`` the encoder's fingerprint, ``got`` the
    decoder's (None when it raised ``error``), ``delta_db`` the decoder's PSNR minus the encoder's when the
    original image is here."""
    if got is None:
        return {"outcome": "error", "reason": error or "the decoder raised", "first_diff": None}
    if got["x_hat"] == ref["x_hat"] and got["chunks"] == ref["chunks"]:
        return {"outcome": "identical", "reason": "", "first_diff": None}
    if got["chunks"] != ref["chunks"] or got["symbols"] != ref["symbols"]:
        k = next((i for i, (a, b) in enumerate(zip(got["chunks"], ref["chunks"])) if a != b),
                 min(len(got["chunks"]), len(ref["chunks"])))
        share = min(1.0, k * CHUNK / ref["symbols"]) if ref["symbols"] else 0.0
        why = (f"decoded symbols differ from symbol {k * CHUNK} on ({100 * share:.0f} % decoded in step)"
               if got["symbols"] == ref["symbols"] else
               f"{got['symbols']} symbols decoded, the encoder's decode had {ref['symbols']}")
        if not ref["symbols"]:  # no entropy model observed: the reconstruction is all there is to compare
            return {"outcome": "corrupt", "reason": "the reconstruction differs (no symbols observed)",
                    "first_diff": None}
        return {"outcome": "corrupt", "reason": why, "first_diff": share}
    if delta_db is not None and not math.isnan(delta_db):
        if abs(delta_db) <= CLOSE_DB:
            return {"outcome": "close", "reason": f"same symbols; PSNR {delta_db:+.4f} dB", "first_diff": None}
        return {"outcome": "error", "reason": f"same symbols, but the synthesis is {delta_db:+.2f} dB off",
                "first_diff": None}
    if got["x_hat_u8"] == ref["x_hat_u8"]:
        return {"outcome": "close", "reason": "same symbols; the same 8-bit image", "first_diff": None}
    return {"outcome": "close", "reason": "same symbols; the reconstruction differs below 8 bits or the image "
            "is not here to measure by how much", "first_diff": None}
