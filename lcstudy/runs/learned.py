"""A learned codec in the run protocol: what one coding is, what to record, and its side
measurements (operator profile, MAC count). :func:`run` is what the ``profile_codec`` notebook calls.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..core import images as _images
from ..core import metrics
from ..core.clocks import StageClock, threads as _threads
from ..core.contention import Monitor
from ..core.instrument import encode_decode
from . import layout
from .params import REQUEST_PARAM, LearnedRequest, check_unchanged, platform_fingerprint, request_of, run_id
from .protocol import Item, execute


class LearnedSubject:
    kind = "learned"

    def __init__(self, req: LearnedRequest, codec, imgs: list, results_dir: str, log=print):
        """``imgs``: (item key, image) pairs (:func:`load_images`), or images keyed by their names."""
        self.req = req
        self.codec = codec
        self.imgs = dict(p if isinstance(p, tuple) else (p.name, p) for p in imgs)
        self.clock = StageClock(codec.device)
        self.results_dir = results_dir
        self.log = log
        self._inputs: dict[str, Any] = {}

    def items(self) -> list[Item]:
        out = []
        for name, im in self.imgs.items():
            hp, wp = _images.padded_size(im.height, im.width)
            out.append(Item(name, (hp, wp), im.height * im.width, im))
        return out

    def _input(self, it: Item):
        x = self._inputs.get(it.key)
        if x is None:
            xp, unpad = _images.pad(it.payload.x)
            x = self._inputs[it.key] = (xp.to(self.codec.device), unpad)
        return x

    def warm(self, it: Item) -> None:
        encode_decode(self.codec, self._input(it)[0], self.clock)

    def make_monitor(self):
        return Monitor(self.codec.device)

    def first_guess(self, it: Item):
        from .profiles import reference_seconds

        threads = self.req.threads
        return it.pixels, reference_seconds(self.codec.spec.label, self.req.quality, it.pixels, self.req.device,
                                            threads if threads is not None else 2)

    def code(self, it: Item, monitor):
        x, _ = self._input(it)
        c = encode_decode(self.codec, x, self.clock, probe=monitor)
        return c.rows(), c

    def same_output(self, first, other) -> bool:
        return first.strings == other.strings

    def record(self, it: Item, first) -> dict:
        im = it.payload
        x, unpad = self._input(it)
        self._inputs.pop(it.key, None)  # free the padded copy
        q = metrics.quality(im.x, _images.unpad(first.x_hat, unpad))
        from .params import item_args

        made = item_args(self.req, _images.ItemKey.parse(it.key).size if self.req.sizes else None)
        return {"image": im.name, **made, "sha256": im.sha256, "path": str(im.path), "height": im.height,
                "width": im.width, "notes": im.notes, "nbytes": first.nbytes,
                "bpp": metrics.bpp(first.nbytes, im.height, im.width), "psnr": q["psnr"], "ms_ssim": q["ms_ssim"],
                "bitstream": self._keep(it, first)}

    def _keep(self, it: Item, coding) -> dict:
        """The item's bitstream, with the encoder's fingerprint of it (:func:`lcstudy.runs.decodability.keep`:
        one untimed decode, after the item's repeats) for the first :attr:`LearnedRequest.fingerprints` items:
        what the decodability phase decodes elsewhere."""
        from ..core.decoding import weights_digest
        from .decodability import keep

        if not hasattr(self, "_weights"):
            self._weights = weights_digest(self.codec.model)
        n = self.req.fingerprints
        if n is not None and not hasattr(self, "_rank"):
            self._rank = {k: i for i, k in enumerate(self.imgs)}  # the run's order: its meta's ``items``
        return keep(self._encoder_model(), coding.strings, coding.shape, self._weights,
                    fingerprint=n is None or self._rank[it.key] < n)

    def _encoder_model(self):
        return self.codec.model

    def phases(self):
        out = []
        if self.req.kernels:
            out.append(("kernels", self._kernels))
        if self.req.macs:
            out.append(("macs", self._macs))
        return out

    def _first(self):
        return next(iter(self.imgs.values()))

    def _kernels(self, save) -> None:
        from ..core.kernels import profile_ops

        im = self._first()
        x = im.x
        crop = self.req.kernels_crop
        if crop and min(im.height, im.width) > crop:
            x = _images.centre_crop(x, crop)
        xp, _ = _images.pad(x)
        k = profile_ops(self.codec, xp.to(self.codec.device), self.clock)
        k.insert(0, "image", im.name)
        k.insert(1, "height", int(x.shape[-2]))
        k.insert(2, "width", int(x.shape[-1]))
        save("kernels", k)

    def _count_cached(self, count):
        """The MAC table of the first image's configuration and size: from the cache, or ``count()`` (cached)."""
        im = self._first()
        cache = layout.mac_cache(self.results_dir, mac_key(self.codec, im.height, im.width))
        if cache.exists():
            import pandas as pd

            self.log(f"note: MACs from the cache ({cache.name}): counted before for this configuration and size")
            return pd.read_csv(cache, keep_default_na=False, na_values=[""])
        cx = count()
        from . import store

        store.atomic_write_csv(cache, cx)
        return cx

    def _macs(self, save) -> None:
        """After the items, never in a warm-up: counting imports torch._dynamo (protocol, 3.), which would sit
        in every later memory reading of the run. One capture coding of the first image, unless cached."""
        from ..core import complexity

        im = self._first()
        xp, _ = _images.pad(im.x)

        def count():
            rec, watch, _ = complexity.capture(self.codec, xp.to(self.codec.device), self.clock)
            return complexity.count(self.codec, rec, watch, im.height, im.width)

        save("complexity", self._count_cached(count))


class _Tagged:
    """A monitor whose reads of one coding are keyed ``<tag><direction>`` (eager's, timed beside a backend)."""

    def __init__(self, monitor, tag: str):
        self.monitor, self.tag = monitor, tag

    def begin(self, direction: str) -> None:
        self.monitor.begin(self.tag + direction)

    def end(self, direction: str) -> None:
        self.monitor.end(self.tag + direction)


class BackendSubject(LearnedSubject):
    """A backend run: each repeat codes the item with the deployed transforms *and* with eager, in one
    process, alternating which goes first, so that the speed-up is measured side by side (two separate
    runs of the same thing drift apart by up to 18 % on the 2-core machine, more than several speed-ups).

    Every new input shape is primed with one untimed coding of the deployed codec before its first
    timed repeat — whatever the warm-up rule decided — so a one-off cost (compilation, first-run
    allocation) can never enter a median; its seconds are recorded apart (``prime_seconds``).
    """

    def __init__(self, req: LearnedRequest, codec, deployment, imgs: list, results_dir: str, log=print):
        super().__init__(req, codec, imgs, results_dir, log)
        self.dep = deployment
        self._turn = 0
        self._primed: dict = {}  # item group (padded shape) -> seconds of its priming coding

    def _prime(self, it: Item) -> None:
        if it.group in self._primed:
            return
        import time

        x, _ = self._input(it)
        t0 = time.perf_counter()
        encode_decode(self.dep.codec, x, self.clock)
        self._primed[it.group] = time.perf_counter() - t0

    def warm(self, it: Item) -> None:
        super().warm(it)  # eager
        if it.group in self._primed:
            encode_decode(self.dep.codec, self._input(it)[0], self.clock)
        else:
            self._prime(it)

    def code(self, it: Item, monitor):
        self._prime(it)
        x, _ = self._input(it)
        b = self.req.backend
        order = (b, "eager") if self._turn % 2 == 0 else ("eager", b)
        self._turn += 1
        out = {}
        for name in order:
            out[name] = encode_decode(self.dep.codec if name == b else self.codec, x, self.clock,
                                      probe=monitor if name == b else _Tagged(monitor, "eager:"))
        rows = [(*r, b) for r in out[b].rows()] + [(*r, "eager") for r in out["eager"].rows()]
        return rows, (out[b], out["eager"])

    def same_output(self, first, other) -> bool:
        return all(a.strings == o.strings for a, o in zip(first, other))

    def record(self, it: Item, first) -> dict:
        import torch

        dep, eager = first
        _, unpad = self._input(it)
        rec = super().record(it, dep)
        q = metrics.quality(it.payload.x, _images.unpad(eager.x_hat, unpad))
        by = {self.req.backend: {k: rec[k] for k in ("nbytes", "bpp", "psnr", "ms_ssim")},
              "eager": {"nbytes": eager.nbytes, "bpp": metrics.bpp(eager.nbytes, rec["height"], rec["width"]),
                        "psnr": q["psnr"], "ms_ssim": q["ms_ssim"]}}
        return {**rec, "by_backend": by, "identical_bitstream": dep.strings == eager.strings,
                "identical_reconstruction": bool(torch.equal(dep.x_hat, eager.x_hat)),
                "prime_seconds": self._primed.get(it.group), "first_call_seconds": self.dep.first_call_seconds()}

    def _encoder_model(self):
        return self.dep.codec.model  # the deployed encoder made the stored bitstream

    def _kernels(self, save) -> None:
        eager, self.codec = self.codec, self.dep.codec  # the operators of the deployed codec
        try:
            super()._kernels(save)
        finally:
            self.codec = eager


def calibration_images(req: LearnedRequest, log=print) -> list:
    """The fixed calibration set of a backend run (:data:`lcstudy.core.backends.CALIBRATION_IMAGES` images
    of the measured images' folder that the run does not measure, centre-cropped to the run's crop — one shape
    fewer to compile — else :data:`~lcstudy.core.backends.CALIBRATION_CROP`); the measured ones, with a note,
    where none is left."""
    from pathlib import Path

    from ..core.backends import CALIBRATION_CROP, CALIBRATION_IMAGES
    from ..errors import InputError

    measured = {r.sha256 for r in req.images}
    folder = Path(req.images[0].path).parent
    spare = [f for f in _images.list_images(folder, None) if _images.file_hash(f) not in measured]
    picked = spare[:CALIBRATION_IMAGES]
    if not picked:
        picked = [Path(r.path) for r in req.images[:CALIBRATION_IMAGES]]
        log(f"note: BACKEND={req.backend}: every image of {folder} is measured; the backend is calibrated and "
            f"checked on the measured {', '.join(p.stem for p in picked)}")
    out = []
    for f in picked:
        try:
            out.append(_images.load_image(f, crop=req.crop or CALIBRATION_CROP))
        except InputError:  # an image smaller than the crop: whole
            out.append(_images.load_image(f))
    return out


def mac_key(codec, height: int, width: int) -> str:
    """What MAC counts depend on: the architecture and its constructor arguments (the channel
    configuration), the stage split, the size, and the counting software — not the weights, the
    quality within a configuration, the threads or the machine."""
    import importlib.metadata

    import compressai
    import torch

    from .. import __version__

    shapes = sorted((k, tuple(v.shape)) for k, v in codec.model.state_dict().items()
                    if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table")))
    key = {"cls": codec.spec.cls, "family": codec.family, "shapes": shapes, "size": [height, width],
           "torch": torch.__version__, "compressai": compressai.__version__,
           # ptflops's installed version, read without importing it: its import loads torchvision and torch._dynamo
           # (1.5 s), which a run whose MACs are cached never needs. (ptflops 0.7.5 has no __version__; this key
           # read "0.7.5" for it before, so the caches made then stay valid.)
           "ptflops": importlib.metadata.version("ptflops"), "lcstudy": __version__, "ar": "parallel"}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{layout.safe_name(codec.spec.label)}-{width}x{height}-{digest}"


@dataclass
class RunResult:
    """What the run page shows: the run's folder and its tidy tables."""

    run: layout.Run
    request: LearnedRequest
    codec_notes: list[str] = field(default_factory=list)
    tables: dict = field(default_factory=dict)

    def __getattr__(self, name):
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)


def load_images(req: LearnedRequest) -> list[tuple[str, object]]:
    """(item key, image) of every item: each image at the run's crop/resize, keyed by its name — or, with
    ``sizes``, each image at each size in order, keyed ``<name>@<size>`` (``kodim01@1920x1080``)."""
    from .params import item_args

    sizes = list(req.sizes) or [None]
    return [(str(_images.ItemKey(r.name, s)), _images.load_image(r.path, **item_args(req, s)))
            for r in req.images for s in sizes]


def run(log=print, progress: bool = True, **params) -> RunResult:
    """Check the parameters, hold the machine, load the codec, measure, write; return the run.

    ``request``: the pipeline's resolved request (JSON, :func:`lcstudy.runs.params.request_of`), checked and not
    resolved again; without it, the parameters get the pipeline's checks (:func:`lcstudy.runs.params.resolve`).
    The lock is the pipeline's when it started this notebook, else taken here, before anything is loaded.
    """
    req = request_of(params, "profile_codec")
    if params.get(REQUEST_PARAM) is None:  # the pipeline said its request's notes before the kernel started
        for n in req.notes:
            log(f"note: {n}")
    return run_request(req, log, progress)


def run_request(req: LearnedRequest, log=print, progress: bool = True) -> RunResult:
    """:func:`run` of a request already resolved (``make reproducibility`` reruns a stored one, on fewer images)."""
    import os

    from ..core.environ import environ
    from ..core.instrument import verify_split
    from ..core.codec_loading import load_codec
    from .lock import timing_lock
    from .tidy import run_tables

    wait = not os.environ.get("LCSTUDY_NOWAIT")
    with timing_lock(f"{req.label} on {req.device}", wait=wait, log=log), _threads(req.threads) as n:
        weights = req.weights_path if req.weights == "checkpoint" else req.weights
        codec = load_codec(req.codec, req.quality, weights=weights, device=req.device, seed=req.seed,
                           kwargs=req.codec_args)
        for note in codec.notes:
            log(f"note: {note}")
        if req.weights == "checkpoint" and codec.weights_hash != req.weights_hash:
            from ..errors import InputError

            raise InputError(f"{req.weights_path} changed since the run was resolved (sha256 {req.weights_hash} "
                             f"then, {codec.weights_hash} now); run again")
        imgs = load_images(req)
        for (_, im), ref in zip(imgs, [r for r in req.images for _ in (req.sizes or (None,))]):
            check_unchanged(im, ref)
            for note in im.notes:
                log(f"note: {note}")
        if not codec.spec.builtin:
            xp, _ = _images.pad(imgs[0][1].x)
            verify_split(codec, xp.to(codec.device))
            log(f"note: {codec.label}: the instrumented coding reproduces its own compress()/decompress() "
                f"bit for bit on {imgs[0][0]}")
        env = environ(codec.device, n)
        env.update(codec_family=codec.family, codec_channels=codec.channels, weights_label=codec.weights_label,
                   load_seconds=codec.load_seconds, weights_source=codec.weights_source)
        rid = run_id(req, platform_fingerprint(req, n))
        if req.backend == "eager":
            subject = LearnedSubject(req, codec, imgs, req.results_dir, log)
        else:  # deployed before any timing: a module that cannot be is an error here, nothing written
            from ..core.backends import deploy

            dep = deploy(codec, req.backend, calibration_images(req, log), n, log)
            log(f"note: BACKEND={req.backend}: {', '.join(dep.modules)} deployed in "
                f"{sum(dep.setup_seconds.values()):.1f} s (one-off, not timed)"
                + (f"; left fp32 by the quantizer: {', '.join(dep.kept_fp32)}" if dep.kept_fp32 else ""))
            env.update(deployment=dep.as_dict())
            subject = BackendSubject(req, codec, dep, imgs, req.results_dir, log)
        r = execute(subject, req, env, rid, log=log, progress=progress)
    return RunResult(r, req, codec.notes, run_tables(r))


def profile(codec, images, repeats: int | None = None, warmup: int = 1, crop: int | None = None,
            threads: int | None = None, results_dir=None, resize: str | None = None, kernels: bool = False,
            macs: bool = False, rule=None, progress: bool = False, log=print):
    """Measure an already loaded ``codec`` on ``images`` (a folder, a list of paths or one path) with
    the run protocol; return the tidy timings table (``df.attrs`` holds the run's ``samples``,
    ``memory``, ``kernels``, ``complexity`` tables and its ``run_dir``).

    ``repeats=N`` fixes the repeats; otherwise ``rule`` (a :class:`~lcstudy.core.stats.StopRule`,
    default: the standard profile's). Without ``results_dir`` the files go to a temporary folder
    that is removed afterwards. The machine lock is held throughout, as for any run.
    """
    import os
    import tempfile
    from dataclasses import replace

    from ..core.environ import environ
    from ..core.stats import fixed
    from .lock import timing_lock
    from .params import ImageRef, check_images
    from .profiles import get_profile
    from .tidy import run_tables

    from ..errors import InputError

    for name, v, lo in (("repeats", repeats, 1), ("warmup", warmup, 0), ("crop", crop, 16), ("threads", threads, 1)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise InputError(f"{name} must be an integer ≥ {lo}, got {v!r}")
    if repeats is not None:
        r = fixed(repeats, warmup)
    else:
        r = replace(rule or get_profile("standard").rule, warmup=warmup)
    refs = check_images(images if isinstance(images, (list, tuple)) else images, None)
    tmp = tempfile.TemporaryDirectory(prefix="lcstudy-") if results_dir is None else None
    try:
        with timing_lock(f"{codec.label} q{codec.quality} (lcstudy.profile)", wait=not os.environ.get(
                "LCSTUDY_NOWAIT"), log=log), _threads(threads) as n:
            imgs = [_images.load_image(x.path, crop=crop, resize=resize) for x in refs]
            for im in imgs:
                for note in im.notes:
                    log(f"note: {note}")
            by_path = codec.spec.source == "import path"
            group = f"{codec.label}-q{codec.quality}"
            req = LearnedRequest(profile="api", label=group, group=group, device=str(codec.device),
                                 threads=threads, images=tuple(ImageRef(i.name, str(i.path), i.sha256) for i in imgs),
                                 crop=crop, resize=resize, rule=r, results_dir=str(tmp.name if tmp else results_dir),
                                 codec=codec.spec.cls if by_path else codec.spec.label, quality=codec.quality,
                                 weights=codec.weights, weights_hash=codec.weights_hash, seed=codec.seed or 0,
                                 weights_path=codec.weights_source if codec.weights == "checkpoint" else "",
                                 kernels=kernels, macs=macs,
                                 codec_args=codec.spec.args[codec.quality] if by_path else None)
            if not codec.spec.builtin:
                from ..core.instrument import verify_split

                xp, _ = _images.pad(imgs[0].x)
                verify_split(codec, xp.to(codec.device))
            env = environ(codec.device, n)
            env.update(codec_family=codec.family, codec_channels=codec.channels, weights_label=codec.weights_label,
                       load_seconds=codec.load_seconds, weights_source=codec.weights_source)
            run = execute(LearnedSubject(req, codec, imgs, req.results_dir, log), req, env,
                          run_id(req, platform_fingerprint(req, n)), log=log, progress=progress)
        t = dict(run_tables(run))  # every table, made now: a temporary folder goes at the end of this block
    finally:
        if tmp is not None:
            tmp.cleanup()
    df = t["timings"]
    df.attrs.update({k: v for k, v in t.items() if k != "timings"})
    df.attrs["run_dir"] = None if tmp is not None else str(run.path)
    return df
