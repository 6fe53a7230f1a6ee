"""Encode here, decode there: the cross-decoding phase (``make decodability``, a phase of ``make book``).

**Every learned run keeps its bitstreams.** Each item's record (``items/<item>.json``) holds, under
``bitstream``, the strings and shape of its first timed coding, the digest of the weights that made them
(:func:`lcstudy.core.decoding.weights_digest`) and, for the first items of a run (as many as its profile's
phase decodes, or ``FINGERPRINTS``: :attr:`lcstudy.runs.params.LearnedRequest.fingerprints`; none of a
resolution-scaling run), the
encoder's own fingerprint of them: one extra, untimed decode right after the item's repeats, observed by
:class:`lcstudy.core.decoding.Watch` (the reconstruction's digest, the decoded symbols in chunks, how spread the
scale indexes are and how close the scales came to a table boundary). A few kB an image; written with the item,
so never half. A stream without the fingerprint is not decoded by the phase (nothing to classify it against).

**The phase** (:func:`execute`) decodes the fingerprinted bitstreams of the results folder it selects
(:data:`DEFAULT_LIMIT`) — those of every
host and device copied into it too — whose weights this machine can load bit for bit (the codec loaded
from the run's request must have the same weights digest; others are skipped with one note each), under
each decoder configuration available here (:func:`decoder_configs`; a variant encoder's streams — a backend
run's, a thread pass's — under the reference decoder only, :func:`_pairs`):

* the machine's default thread count and 1 thread (eager);
* every backend the folder holds runs of (``onnxruntime``, ``channels_last``, …: the deployment runs);
* ``h_s`` nudged by one ulp, and by :data:`TF32_ULPS`: simulated other platforms — the smallest difference
  another BLAS or thread split can make, and the size of a GPU's default TF32 convolutions' rounding
  (10 explicit mantissa bits against float32's 23: ~2¹³ ulps);
* CUDA, when this machine has it.

Each decode is classified (:func:`lcstudy.core.decoding.classify`: identical / close / corrupt / error)
and written atomically to ``<results>/_decodability/<decoder host>/<encoder host>/<run id>/<item>/<config>.json``
(:func:`lcstudy.runs.layout.decode_file`): the phase is resumable, a decode already written is not done
again, a stored bitstream that fails to decode is an ``error`` row, never a stop. It runs under the
machine lock, like a run: its decodes and the mitigation's times must not contend with a timing run.

**Mitigation measured.** Where a decoder configuration (a backend, a thread count, a simulated platform)
corrupts an eager encoder's image, the image is encoded again and decoded under that configuration with
``h_s`` computed in float64 on both sides (:func:`_mitigate`) — whether that restores decoding, and what it
costs in decode time (median of :data:`MITIGATION_REPEATS` decodes each way).
"""
from __future__ import annotations

import base64
import math
import statistics
import sys
import time

from ..core import decoding
from . import layout

#: decodes of each kind behind a mitigation's cost (median each)
MITIGATION_REPEATS = 3
#: the nudges of the simulated platforms, in ulps of h_s's output: one (another BLAS, another thread split) and
#: TF32's rounding (cuDNN's default for convolutions on Ampere and later GPUs: 2**(23 - 10) float32 ulps)
SIMULATED_ULPS = (1, 2 ** 13)
TF32_ULPS = SIMULATED_ULPS[1]


# --- what a run keeps -------------------------------------------------------------------------------

def _pack(obj):
    """Bitstreams as JSON: bytes as base64, sizes and tuples as lists (CompressAI's strings are lists of
    lists of bytes; its shapes torch.Size or nested lists of them)."""
    if isinstance(obj, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(obj)).decode()}
    if isinstance(obj, dict):
        return {str(k): _pack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_pack(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def _unpack(obj):
    if isinstance(obj, dict):
        if set(obj) == {"b64"}:
            return base64.b64decode(obj["b64"])
        return {k: _unpack(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v) for v in obj]
    return obj


def keep(model, strings, shape, weights: str, fingerprint: bool = True) -> dict:
    """What an item stores of its bitstream: strings, shape, the weights' digest and the encoder's own
    fingerprint of the stream (an untimed decode; None when not ``fingerprint``: the phase skips the stream)."""
    fp = None
    if fingerprint:
        fp = decoding.fingerprint(model, strings, shape)
        fp.pop("_x_hat")
    return {"strings": _pack(strings), "shape": _pack(shape), "weights_digest": weights, "fingerprint": fp}


# --- the phase --------------------------------------------------------------------------------------

def decoder_configs(results_dir, threads: int, backends: list[str] | None = None) -> list[decoding.DecoderConfig]:
    """The decoder configurations this machine can run: default threads, 1 thread, each backend the folder
    holds runs of (or ``backends``), the simulated platforms (:data:`SIMULATED_ULPS`), and CUDA when present."""
    import torch

    D = decoding.DecoderConfig
    out = [D(threads=threads)] + ([D(threads=1)] if threads != 1 else [])
    if backends is None:
        backends = sorted({r.meta["request"].get("backend") or "eager" for r in layout.runs(results_dir, "learned",
                                                                                              warn=False)} - {"eager"})
    out += [D(threads=threads, backend=b) for b in backends]
    out += [D(threads=threads, ulps=u) for u in SIMULATED_ULPS]
    if torch.cuda.is_available():
        out.append(D(device="cuda", threads=threads))
    return out


#: by default, per run, the streams of this many images (in the run's order), of each codec's lowest quality, and
#: no resolution-scaling run: the standard book keeps thousands of streams (24 images × every quality × 9 codecs,
#: up to 3840×2160), and decoding each under ~8 configurations would take hours of the 2-core VM
#: (`make decodability DECODE_LIMIT=all DECODE_QUALITIES=all` decodes every fingerprinted one: a run fingerprints
#: as many items as its profile's phase decodes unless `FINGERPRINTS=N|all` said otherwise, so a limit above the
#: profile's adds only the streams of runs measured with more, and of runs from before the field)
DEFAULT_LIMIT = 2


def _streams(results_dir, limit: int | None = DEFAULT_LIMIT, qualities: str = "lowest"
             ) -> list[tuple[layout.Run, dict]]:
    """The stored streams the phase decodes: those :func:`_selected` that the encoder fingerprinted."""
    return _fingerprinted(_selected(results_dir, limit, qualities))


def _fingerprinted(selected: list[tuple[layout.Run, dict]]) -> list[tuple[layout.Run, dict]]:
    return [(run, rec) for run, rec in selected if rec["bitstream"].get("fingerprint")]


def _selected(results_dir, limit: int | None = DEFAULT_LIMIT, qualities: str = "lowest"
              ) -> list[tuple[layout.Run, dict]]:
    """The stored streams the limit and qualities select (see :data:`DEFAULT_LIMIT`); ``limit=None`` and
    ``qualities="all"``: every stream of every run but the resolution-scaling ones, each run's in its order. A run
    fingerprints only its first :attr:`~lcstudy.runs.params.LearnedRequest.fingerprints` items (by default its
    profile's limit; ``FINGERPRINTS``), so a larger limit selects streams the phase cannot check: :func:`execute`
    says how many."""
    runs = [r for r in layout.runs(results_dir, "learned", warn=False) if not r.meta["request"].get("sizes")]
    lowest: dict = {}
    for r in runs:
        q = r.meta["request"]
        lowest[q.get("codec")] = min(lowest.get(q.get("codec"), q.get("quality")), q.get("quality"))
    out = []
    for run in runs:
        q = run.meta["request"]
        if qualities == "lowest" and q.get("quality") != lowest[q.get("codec")]:
            continue
        # in the run's order (its request's images, as the run fingerprinted them), not its files' name order
        order = {k: i for i, k in enumerate(run.meta.get("items") or ())}
        kept = sorted((rec for rec in run.items() if rec.get("bitstream")),
                      key=lambda rec: order.get(rec.get("item"), len(order)))
        out += [(run, rec) for rec in (kept if limit is None else kept[:limit])]
    return out


def _identity(run: layout.Run, rec: dict) -> tuple:
    q = run.meta["request"]
    return (q.get("codec"), q.get("quality"), q.get("weights"), q.get("weights_path") or "", q.get("seed"),
            repr(q.get("codec_args")), rec["bitstream"]["weights_digest"])


def _image(rec: dict):
    """The item's image as the encoder saw it (unpadded), or None when it is not on this machine."""
    from pathlib import Path

    from ..core import images

    p = Path(rec.get("path") or "")
    if not p.is_file() or images.file_hash(p) != rec.get("sha256"):
        return None
    return images.load_image(p, crop=rec.get("crop"), resize=rec.get("resize"))


def _decode_row(codec_model, run, rec, cfg, unpad_of, host: str) -> dict:
    from ..core import images

    bs = rec["bitstream"]
    ref = bs["fingerprint"]
    got, err, delta = None, None, None
    try:
        got = decoding.fingerprint(codec_model, _unpack(bs["strings"]), _unpack(bs["shape"]), cfg)
    except Exception as e:  # noqa: BLE001 — a broken stream is an outcome, never a stop
        err = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}".rstrip(": ")
    if got is not None:
        im = unpad_of(rec)
        if im is not None:
            x, un = im
            delta = decoding.psnr(x, images.unpad(got["_x_hat"].cpu(), un)) - float(rec["psnr"])
    c = decoding.classify(ref, got, err, delta)
    return {**_columns(run, rec, cfg, host), **c, "delta_psnr_db": delta,
            "decode_seconds": got["seconds"] if got else None, "kind": "decode"}


def _columns(run, rec, cfg, host: str) -> dict:
    """The encoder's side (its run), the decoder's configuration, and the encoder's scale statistics."""
    env, q, sc = run.meta["environ"], run.meta["request"], rec["bitstream"]["fingerprint"]["scale"]
    return {"schema_version": layout.SCHEMA_VERSION,
            "enc_host": run.host, "enc_platform": env.get("platform", ""), "enc_device": run.device,
            "enc_threads": env.get("threads"), "enc_backend": q.get("backend") or "eager",
            "enc_run_id": run.run_id, "enc_label": run.label, "codec": q.get("codec"), "quality": q.get("quality"),
            "weights": q.get("weights"), "weights_label": env.get("weights_label", ""), "image": rec.get("image"),
            "item": rec.get("item"), "dec_host": host, "decoder": cfg.name,
            **{f"dec_{k}": v for k, v in cfg.as_dict().items()},
            "scale_top_share": sc.get("top_share"), "scale_indexes_used": sc.get("indexes_used"),
            "margin_ulps": sc.get("margin_ulps"), "at_risk": sc.get("at_risk"),
            "degenerate": decoding.degenerate(sc)}


def _deployed(codec, cfg, streams, threads, log, shared=None):
    """The codec to decode ``cfg`` with: eager (moved to ``cfg.device``), or its transforms deployed."""
    if cfg.backend == "eager":
        return codec
    from ..core import images
    from ..core.backends import CALIBRATION_CROP, DECODER_STAGES, deploy

    calib, seen, runs = [], set(), []
    for run, _ in streams:
        if run.path not in (r.path for r in runs):
            runs.append(run)
    # the first two distinct images of the codec's runs that kept a bitstream — of every item, not only the
    # DECODE_LIMIT decoded (a backend run's images are the eager run's): the calibration does not depend on the limit
    for rec in (rec for run in runs for rec in run.items() if rec.get("bitstream")):
        if len(calib) == 2:
            break
        if (rec.get("path"), rec.get("sha256")) in seen:
            continue
        seen.add((rec.get("path"), rec.get("sha256")))
        im = _image(rec)
        if im is not None:
            calib.append(images.load_image(rec["path"], crop=CALIBRATION_CROP) if min(im.height, im.width)
                         >= CALIBRATION_CROP else im)
    if not calib:
        raise RuntimeError("no calibration image on this machine")
    # only what a decoder calls (DECODER_STAGES), compiled at its first decode of each shape, not up front for all
    # four transforms at the calibration crop's. The standard book's 160 decodes under the five backends (AMD EPYC
    # AVX-512 VM, 7 Dec): every row the same but its decode time, 368 → 318 s — deploying them 73 → 26 s
    return deploy(codec, cfg.backend, calib, threads, log, shared=shared, stages=DECODER_STAGES, verify=False).codec


def execute(results_dir, backends: list[str] | None = None, log=print,
            limit: int | None = DEFAULT_LIMIT, qualities: str = "lowest") -> int:
    """Decode the selected stored bitstreams that have an encoder fingerprint (:func:`_streams`) under every
    decoder configuration here (see the module docstring); returns 0 (also when there is nothing to decode: a
    note says why)."""
    import os

    import torch

    from ..core.clocks import threads as _threads
    from ..core.environ import host_name
    from ..core.codec_loading import load_codec
    from ..core import images
    from .lock import timing_lock
    from . import store

    if qualities not in ("lowest", "all"):
        from ..errors import InputError

        raise InputError(f"DECODE_QUALITIES={qualities!r}: give lowest or all")
    selected = _selected(results_dir, limit, qualities)
    streams = _fingerprinted(selected)
    why = ("a run fingerprints, while it is measured, as many items as its profile's phase decodes (quick 1, "
           "standard and paper 2) unless FINGERPRINTS said otherwise; a run measured without them has to be removed "
           "and measured again with FINGERPRINTS=all to be checked")
    if not selected:
        log(f"note: no run under {results_dir} kept its bitstreams (runs from before lcstudy kept them): "
            "nothing to cross-decode; `make runs` measures runs that keep them")
        return 0
    if not streams:
        log(f"note: none of the {len(selected)} stored bitstreams selected under {results_dir} has an encoder "
            f"fingerprint to decode against: nothing to cross-decode ({why})")
        return 0
    if len(streams) < len(selected):
        log(f"note: {len(selected) - len(streams)} of the {len(selected)} stored bitstreams selected have no encoder "
            f"fingerprint to decode against and are not decoded ({why})")
    host = host_name()
    groups: dict[tuple, list] = {}
    for run, rec in streams:
        groups.setdefault(_identity(run, rec), []).append((run, rec))
    wait = not os.environ.get("LCSTUDY_NOWAIT")
    written = 0
    t0 = time.monotonic()
    with timing_lock("decodability", wait=wait, log=log):
        n = torch.get_num_threads()
        configs = decoder_configs(results_dir, n, backends)
        log(f"decodability: {len(streams)} bitstreams of {len(groups)} codec configurations × {len(configs)} "
            f"decoders ({'; '.join(c.name for c in configs)})")
        cache: dict = {}

        def unpad_of(rec):
            k = (rec.get("path"), rec.get("crop"), rec.get("resize"))
            if k not in cache:
                im = _image(rec)
                cache[k] = None if im is None else (im.x, images.pad(im.x)[1])
            return cache[k]

        for ident, members in groups.items():
            codec_name, quality, weights, path, seed, args, wdigest = ident
            q = members[0][0].meta["request"]
            try:
                codec = load_codec(codec_name, quality, weights=path if weights == "checkpoint" else weights,
                                   device="cpu", seed=seed or 0, kwargs=q.get("codec_args"))
            except Exception as e:  # noqa: BLE001
                log(f"note: {codec_name} q{quality} ({weights}): cannot load it here ({e}); its "
                    f"{len(members)} bitstreams are not decoded")
                continue
            if decoding.weights_digest(codec.model) != wdigest:
                log(f"note: {codec_name} q{quality} ({weights}): the weights loadable here are not those that "
                    f"encoded its {len(members)} bitstreams; not decoded")
                continue
            shared: dict = {}  # this codec's calibration inputs, computed by its first deployment
            for cfg in configs:
                todo = [(r, rec) for r, rec in members if _pairs(r, cfg, configs[0], members)
                        and not layout.decode_file(results_dir, host, r, rec["item"], cfg.name).exists()]
                if not todo:
                    continue
                with _threads(cfg.threads):
                    try:
                        dec = _deployed(codec, cfg, members, cfg.threads or n, log, shared)
                        model = dec.model if cfg.device == "cpu" else _on(dec.model, cfg.device)
                        fail = None
                    except Exception as e:  # noqa: BLE001
                        model, fail = None, f"{type(e).__name__}: {e}"
                    for run, rec in todo:
                        if model is None:
                            row = _decode_row(_Raising(fail), run, rec, cfg, unpad_of, host)
                        else:
                            row = _decode_row(model, run, rec, cfg, unpad_of, host)
                        store.atomic_write_json(layout.decode_file(results_dir, host, run, rec["item"], cfg.name), row)
                        written += 1
                    if model is not None and cfg != configs[0]:
                        written += _mitigate(codec, model, cfg, members, results_dir, host, n, unpad_of, log)
            # this codec's compiled graphs (compile, int8) are not called again: free them, and leave the next
            # codec torch.compile's whole cache (core.backends.DYNAMO_RECOMPILE_LIMIT); nothing compiled if
            # dynamo was never imported
            if "torch._dynamo" in sys.modules:
                sys.modules["torch._dynamo"].reset()
    log(f"decodability: {written} decodes written in {time.monotonic() - t0:.0f} s (the rest were there)")
    return 0


def _threads_of(run: layout.Run) -> int:
    """The threads a run encoded with (its environment's; its request's where an old run lacks it)."""
    return int((run.meta.get("environ") or {}).get("threads") or run.meta["request"].get("threads") or 0)


def _primary(run: layout.Run, members: list) -> bool:
    """Whether ``run`` encoded as its platform's reference among ``members`` (the streams of one codec, quality
    and weights): eager, with the most threads of that codec configuration's eager runs on its host and device —
    the main runs, as the chapters take them, whatever ``THREADS`` made them. A backend run and a thread pass
    (the standard and paper profiles' 1-thread pass) are its variants; an eager run with no main run beside it
    (a user's ``THREADS=1`` runs alone) is the reference itself."""
    q = run.meta["request"]
    if (q.get("backend") or "eager") != "eager":
        return False
    peers = [_threads_of(r) for r, _ in members if (r.meta["request"].get("backend") or "eager") == "eager"
             and (r.host, r.device) == (run.host, run.device)]
    return _threads_of(run) >= max(peers, default=0)


def _pairs(run: layout.Run, cfg: decoding.DecoderConfig, reference: decoding.DecoderConfig, members: list) -> bool:
    """Whether a stream of ``run`` is decoded under ``cfg``: a reference encoder's (:func:`_primary`) under every
    configuration; a variant encoder's — a backend run, a thread pass — under the reference decoder only (eager at
    the default threads, the decoder a product would pair with it). Why: under a backend or a simulated platform a
    variant's stream makes the same kind of pair as the reference encoder's streams (another encoder's rounding
    against the same decoder) at the cost of a full decode each. Every configuration for every backend's streams
    would multiply the phase by the number of backends (the quick book: 324 decodes, ~15 min on the 2-core VM,
    instead of 144); for the thread pass's streams it cost the standard book 128 decodes, 263 s of its 608 s of
    decoding on the AMD EPYC AVX-512 VM (7 Dec). Decodes an earlier phase wrote are kept: a resumed results folder
    may hold more pairs than a fresh one."""
    return cfg == reference or _primary(run, members)


class _Raising:
    """A model that cannot decode (its backend failed to deploy here): every decode is an ``error`` row."""

    def __init__(self, why: str):
        self.why = why

    def decompress(self, *a, **k):
        raise RuntimeError(self.why)

    def modules(self):
        return []


def _on(model, device: str):
    import copy

    return copy.deepcopy(model).to(device)


def _mitigate(codec, model, cfg, members, results_dir, host, threads, unpad_of, log) -> int:
    """Where decoder ``cfg`` (``model``) corrupted an eager encoder's image: encode it again with h_s in float64
    and decode it under ``cfg`` with h_s in float64 too (eager's h_s, in float64, in place of a deployed one; a
    simulated platform's nudge in float64's ulps). Whether that decodes, and its decode time against float32's
    under the same decoder (median of :data:`MITIGATION_REPEATS` each)."""
    import dataclasses
    import json

    from ..core import images
    from ..core.instrument import flatten
    from . import store

    wide = dataclasses.replace(cfg, entropy_dtype="float64")
    wide_enc = decoding.DecoderConfig(threads=threads, entropy_dtype="float64")
    eager_hs = getattr(codec.model, "h_s", None)
    written = 0
    for run, rec in members:
        if (run.meta["request"].get("backend") or "eager") != "eager":
            continue
        f = layout.decode_file(results_dir, host, run, rec["item"], wide.name)
        g = layout.decode_file(results_dir, host, run, rec["item"], cfg.name)
        if f.exists() or not g.exists() or json.loads(g.read_text()).get("outcome") != "corrupt":
            continue
        im = unpad_of(rec)
        if im is None or eager_hs is None:
            log(f"note: {rec['item']}: {'the image is not here' if im is None else 'no h_s'}; its mitigation is "
                "not measured")
            continue
        x, un = im
        xp = images.pad(x)[0]
        enc64 = decoding.encode(codec.model, xp, wide_enc)
        ref = decoding.fingerprint(codec.model, enc64["strings"], enc64["shape"], wide_enc)
        got = decoding.fingerprint(model, enc64["strings"], enc64["shape"], wide, wide_from=eager_hs)
        delta = (decoding.psnr(x, images.unpad(got["_x_hat"], un))
                 - decoding.psnr(x, images.unpad(ref["_x_hat"], un)))
        c = decoding.classify(ref, got, None, delta)
        enc32 = decoding.encode(codec.model, xp)
        t32 = statistics.median(decoding.fingerprint(model, enc32["strings"], enc32["shape"], cfg)["seconds"]
                                for _ in range(MITIGATION_REPEATS))
        t64 = statistics.median(decoding.fingerprint(model, enc64["strings"], enc64["shape"], wide,
                                                     wide_from=eager_hs)["seconds"] for _ in range(MITIGATION_REPEATS))
        row = {**_columns(run, rec, wide, host), **c, "kind": "mitigation", "mitigated": cfg.name,
               "mitigation": "h_s in float64 on both sides", "delta_psnr_db": delta, "decode_seconds": t64,
               "fp32_decode_seconds": t32, "mitigation_cost": t64 / t32 if t32 > 0 else math.nan,
               "bytes_fp32": sum(len(s) for s in flatten(enc32["strings"])),
               "bytes_fp64": sum(len(s) for s in flatten(enc64["strings"]))}
        store.atomic_write_json(f, row)
        written += 1
    return written


def table(results_dir):
    """Every decode written under ``results_dir`` as one tidy table (the ``decodability`` table of
    :func:`lcstudy.runs.tidy.load_results`). A stored decode's ``kind`` (``decode``, or ``mitigation``: the
    same decode under a mitigation) is the table's ``row_type``: one name per concept (:mod:`lcstudy.runs.tidy`)."""
    import pandas as pd

    rows = layout.read_decodes(results_dir)
    return pd.DataFrame(rows).rename(columns={"kind": "row_type"})
