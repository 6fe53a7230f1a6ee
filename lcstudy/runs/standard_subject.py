"""The standard codecs in the run protocol: one item per codec × quality × image; one coding is
an in-memory Pillow encode and decode (:mod:`lcstudy.core.pillow_codecs`). :func:`run` is what the
``profile_standard`` notebook calls."""
from __future__ import annotations

from ..core import images as _images
from ..core import metrics
from ..core import pillow_codecs as S
from ..core.clocks import threads as _threads
from ..core.contention import Monitor
from ..core.instrument import StageKind
from .params import StandardRequest, check_unchanged, platform_fingerprint, request_of, run_id
from .protocol import Item, execute


class StandardSubject:
    kind = "standard"

    def __init__(self, req: StandardRequest, imgs: list, threads: int):
        self.req = req
        self.imgs = imgs
        self.threads = threads
        self.points = S.sweep_points(req.codecs, req.sweep)
        self._pil: dict[str, object] = {}

    def items(self) -> list[Item]:
        out = []
        for c, value in self.points:
            for im in self.imgs:
                out.append(Item(f"{c.fmt}-{c.knob}{value}-{im.name}", (c.name, value, im.height, im.width),
                                im.height * im.width, (c, value, im)))
        return out

    def _pil_of(self, im):
        p = self._pil.get(im.name)
        if p is None:
            p = self._pil[im.name] = _images.to_pil(im.x)
        return p

    def _kw(self, it: Item):
        c, value, _ = it.payload
        return c.save_kwargs(value, self.threads)

    def warm(self, it: Item) -> None:
        c, _, im = it.payload
        data, _ = S.encode(c, self._pil_of(im), self._kw(it))
        S.decode(data)

    def make_monitor(self):
        return Monitor("cpu")

    def first_guess(self, it: Item):
        return None  # standard codings take well under a second: always warmed up

    def code(self, it: Item, monitor):
        c, _, im = it.payload
        pil = self._pil_of(im)
        monitor.begin("encode")
        data, te = S.encode(c, pil, self._kw(it))
        monitor.end("encode")
        monitor.begin("decode")
        out, td = S.decode(data)
        monitor.end("decode")
        rows = [("encode", "total", StageKind.AGGREGATE, True, te),
                ("decode", "total", StageKind.AGGREGATE, True, td)]
        return rows, (data, out)

    def same_output(self, first, other) -> bool:
        return len(first[0]) == len(other[0])

    def record(self, it: Item, first) -> dict:
        c, value, im = it.payload
        data, out = first
        if out.size != (im.width, im.height):
            raise RuntimeError(f"{c.name} decoded {im.name} at {out.size}, expected {(im.width, im.height)}")
        q = metrics.quality(im.x, _images.to_tensor(out))
        return {"image": im.name, "sha256": im.sha256, "height": im.height, "width": im.width, "notes": im.notes,
                "codec": c.name, "knob": c.knob, "value": value, "nbytes": len(data),
                "bpp": metrics.bpp(len(data), im.height, im.width), "psnr": q["psnr"], "ms_ssim": q["ms_ssim"],
                "options": {k: v for k, v in self._kw(it).items()}, "threading": c.threading}

    def phases(self):
        return []


def run(log=print, progress: bool = True, **params):
    """Check the parameters (or the pipeline's ``request``: :func:`lcstudy.runs.params.request_of`), hold the
    machine, measure every codec × quality × image; return the run."""
    import os

    from ..core.environ import environ
    from .lock import timing_lock
    from .tidy import run_tables

    req = request_of(params, "profile_standard")
    wait = not os.environ.get("LCSTUDY_NOWAIT")
    with timing_lock(f"{req.label} on cpu", wait=wait, log=log), _threads(req.threads) as n:
        libs = S.libraries()
        imgs = [_images.load_image(r.path, crop=req.crop) for r in req.images]
        for im, ref in zip(imgs, req.images):
            check_unchanged(im, ref)
        env = environ("cpu", n)
        env["libraries"] = libs
        rid = run_id(req, platform_fingerprint(req, n))
        r = execute(StandardSubject(req, imgs, n), req, env, rid, log=log, progress=progress)
    from .learned import RunResult

    return RunResult(r, req, [], run_tables(r))
