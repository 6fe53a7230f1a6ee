"""Standard image codecs in the same harness: JPEG, JPEG 2000, WebP, AVIF, HEVC intra (x265,
BPG's core) and JPEG XL, through Pillow and its plugins.

The protocol is the learned codecs' one: every image is read once; per codec and quality,
``warmup`` encode+decode of the first image, then ``repeats`` timed encodes and decodes of
each image, in memory (``BytesIO``: no disk in the clock); raw samples kept, median and IQR
reported, ``noisy`` where IQR/median > 10 %. Encoding is timed from the 8-bit RGB
``PIL.Image`` to the bytes, decoding from the bytes to a loaded RGB image. Bitrate is the
file size (container included, as CompressAI's ``bpg`` and ``jpeg`` baselines count it), PSNR
and MS-SSIM on RGB, like the learned codecs.

Threads: AVIF (libavif ``max_threads``) and JPEG XL (``num_threads``) are given the run's
thread count; x265 sizes its own pool to the machine; libjpeg-turbo, libwebp and OpenJPEG
(as Pillow drives them) are single-threaded. Each row says which in ``threading``.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from . import images as _images
from . import metrics, store
from .environ import FINGERPRINT_KEYS, SCHEMA_VERSION, environ
from .errors import InputError
from .timing import Measurement


@dataclass(frozen=True)
class StandardCodec:
    name: str
    fmt: str  # Pillow format name
    knob: str  # what the sweep sets: "quality" or "ratio" (JPEG 2000 compression ratio)
    sweep: tuple[int, ...]  # chosen to span ~0.1–2 bpp on Kodak
    threading: str
    fixed: tuple[tuple[str, object], ...] = ()  # other save options (stated in the book)

    def save_kwargs(self, value: int, threads: int) -> dict:
        kw = dict(self.fixed)
        if self.knob == "ratio":
            kw.update(quality_mode="rates", quality_layers=[value])
        else:
            kw["quality"] = value
        if self.fmt == "AVIF":
            kw["max_threads"] = threads
        if self.fmt == "JXL":
            kw["num_threads"] = threads
        return kw

    def short_sweep(self) -> tuple[int, ...]:
        s = self.sweep
        return (s[0], s[len(s) // 2], s[-1])


STANDARD: tuple[StandardCodec, ...] = (
    StandardCodec("JPEG", "JPEG", "quality", (5, 10, 20, 35, 50, 75, 90), "single-threaded (libjpeg-turbo)",
                  (("subsampling", "4:2:0"),)),
    StandardCodec("JPEG 2000", "JPEG2000", "ratio", (192, 96, 48, 24, 12), "single-threaded (OpenJPEG via Pillow)",
                  (("irreversible", True), ("mct", 1))),
    StandardCodec("WebP", "WEBP", "quality", (5, 20, 40, 60, 80, 90), "single-threaded (libwebp, method 4)"),
    StandardCodec("AVIF", "AVIF", "quality", (10, 25, 40, 55, 70, 85), "libavif max_threads = run threads",
                  (("speed", 6),)),
    StandardCodec("HEVC (x265)", "HEIF", "quality", (10, 20, 30, 40, 50, 60),
                  "x265 thread pool (library default: all cores); libde265 decode", (("chroma", 444),)),
    StandardCodec("JPEG XL", "JXL", "quality", (10, 30, 50, 70, 80, 90), "libjxl num_threads = run threads",
                  (("effort", 7),)),
)
NAMES = [c.name for c in STANDARD]


def get_codec(name: str) -> StandardCodec:
    for c in STANDARD:
        if c.name.lower() == str(name).strip().lower() or c.fmt.lower() == str(name).strip().lower():
            return c
    raise InputError(f"unknown standard codec {name!r}; valid: {', '.join(NAMES)}")


def _register() -> dict[str, str]:
    """Register the plugins; return the library versions (provenance)."""
    import PIL
    import pillow_heif
    import pillow_jxl  # noqa: F401  (registers JXL)
    from PIL import features

    pillow_heif.register_heif_opener()
    info = pillow_heif.libheif_info()
    from importlib.metadata import version

    return {"pillow": PIL.__version__, "libjpeg_turbo": str(features.version("libjpeg_turbo")),
            "openjpeg": str(features.version("jpg_2000")), "libwebp": str(features.version("webp")),
            "libavif": str(features.version("avif")), "pillow_heif": pillow_heif.__version__,
            "x265": info.get("encoders", {}).get("x265", ""), "libde265": info.get("decoders", {}).get("libde265", ""),
            "pillow_jxl_plugin": version("pillow-jxl-plugin")}


def _encode(c: StandardCodec, im: Image.Image, kw: dict) -> tuple[bytes, float]:
    buf = io.BytesIO()
    t0 = time.perf_counter()
    im.save(buf, c.fmt, **kw)
    t = time.perf_counter() - t0
    return buf.getvalue(), t


def _decode(data: bytes) -> tuple[Image.Image, float]:
    t0 = time.perf_counter()
    with Image.open(io.BytesIO(data)) as r:
        r.load()
        out = r.convert("RGB") if r.mode != "RGB" else r.copy()
    return out, time.perf_counter() - t0


def run_id(spec: dict, env: dict, libs: dict) -> str:
    key = {**spec, **{k: env[k] for k in FINGERPRINT_KEYS}, "libs": libs}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def measure(images, codecs=None, sweep: str = "full", repeats: int = 3, warmup: int = 1, crop=None,
            threads: int | None = None, results_dir=None, progress: bool = True, log=print) -> pd.DataFrame:
    """Encode/decode every image at every sweep value of every codec; return the tidy table.

    With ``results_dir``, each (codec, value, image) is written atomically when done, under
    ``<results>/<host>/cpu/standard/<codec>/<run_id>/``, and a rerun skips what is there.
    """
    from .profile import _check_int

    repeats = _check_int("repeats", repeats, 1)
    warmup = _check_int("warmup", warmup, 0)
    if sweep not in ("full", "short"):
        raise InputError(f"sweep must be 'full' or 'short', got {sweep!r}")
    if threads is not None:
        torch.set_num_threads(_check_int("threads", threads, 1))
    threads = torch.get_num_threads()
    chosen = [get_codec(c) for c in codecs] if codecs else list(STANDARD)
    libs = _register()
    imgs = [_images.load_image(p, crop=crop) for p in _images.list_images(images)]
    env = environ("cpu", threads)
    rows = []
    total = sum(len(c.sweep if sweep == "full" else c.short_sweep()) for c in chosen) * len(imgs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="standard codecs", unit="img")
    for c in chosen:
        spec = {"codec": c.name, "repeats": repeats, "warmup": warmup, "crop": crop, "threads": threads,
                "fixed": dict(c.fixed), "threading": c.threading}
        rid = run_id(spec, env, libs)
        rdir = None
        if results_dir is not None:
            rdir = (Path(results_dir) / store.safe_name(env["host"]) / "cpu" / "standard" / store.safe_name(c.name)
                    / rid)
            store.atomic_write_json(rdir / "run.json", {"spec": spec, "environ": env, "libs": libs, "run_id": rid,
                                                        "schema_version": SCHEMA_VERSION})
        for value in (c.sweep if sweep == "full" else c.short_sweep()):
            kw = c.save_kwargs(value, threads)
            warmed = False
            for im in imgs:
                f = rdir / "images" / f"{store.safe_name(im.name)}-{c.knob}{value}.json" if rdir else None
                rec = None
                if f is not None and f.exists():
                    rec = json.loads(f.read_text())
                    if rec.get("schema_version") != SCHEMA_VERSION:
                        rec = None
                if rec is None:
                    from .lock import wait_if_paused

                    if wait_if_paused(log):
                        warmed = False  # caches went cold while paused
                    t_image = time.perf_counter()  # after any pause (see lcstudy.results.run_costs)
                    pil = Image.fromarray((im.x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), "RGB")
                    if not warmed:
                        for _ in range(warmup):
                            d, _t = _encode(c, pil, kw)
                            _decode(d)
                        warmed = True
                    rec = _measure_one(c, value, kw, im, pil, repeats)
                    rec["wall_seconds"] = time.perf_counter() - t_image
                    if f is not None:
                        store.atomic_write_json(f, rec)
                rows += _rows(rec, c, env, rid, spec)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return pd.DataFrame(rows)


def _measure_one(c: StandardCodec, value: int, kw: dict, im, pil: Image.Image, repeats: int) -> dict:
    enc, dec = Measurement(), Measurement()
    data = None
    rec_img = None
    for _ in range(repeats):
        d, te = _encode(c, pil, kw)
        if data is None:
            data = d
        elif len(d) != len(data):
            raise RuntimeError(f"{c.name} {c.knob}={value}: the size of {im.name}'s file changed between repeats")
        r, td = _decode(d)
        rec_img = rec_img or r
        enc.add(te)
        dec.add(td)
    if rec_img.size != pil.size:
        raise RuntimeError(f"{c.name} decoded {im.name} at {rec_img.size}, expected {pil.size}")
    q = metrics.quality(im.x, _images.to_tensor(rec_img))
    return {"schema_version": SCHEMA_VERSION, "image": im.name, "height": im.height, "width": im.width,
            "value": value, "nbytes": len(data), "bpp": metrics.bpp(len(data), im.height, im.width),
            "psnr": q["psnr"], "ms_ssim": q["ms_ssim"], "save_kwargs": {k: v for k, v in kw.items()},
            "samples": {"encode": enc.samples, "decode": dec.samples}}


def _rows(rec: dict, c: StandardCodec, env: dict, rid: str, spec: dict) -> list[dict]:
    out = []
    for direction in ("encode", "decode"):
        m = Measurement(list(rec["samples"][direction]))
        out.append({**env, "codec": c.name, "knob": c.knob, "value": rec["value"], "image": rec["image"],
                    "height": rec["height"], "width": rec["width"], "direction": direction, "seconds": m.median,
                    "iqr_seconds": m.iqr, "n_samples": len(m.samples), "noisy": m.noisy, "bpp": rec["bpp"],
                    "psnr": rec["psnr"], "ms_ssim": rec["ms_ssim"], "nbytes": rec["nbytes"],
                    "repeats": spec["repeats"], "warmup": spec["warmup"], "crop": spec["crop"],
                    "threading": c.threading, "options": json.dumps(rec["save_kwargs"]), "device": "cpu",
                    "run_id": rid})
    return out


def load_standard(results_dir) -> pd.DataFrame:
    """Every standard-codec measurement under ``results_dir`` (all hosts) as one tidy table."""
    rows = []
    for rj in sorted(Path(results_dir).glob("*/cpu/standard/*/*/run.json")):
        meta = json.loads(rj.read_text())
        if meta.get("schema_version") != SCHEMA_VERSION:
            continue
        c = get_codec(meta["spec"]["codec"])
        for f in sorted((rj.parent / "images").glob("*.json")):
            rows += _rows(json.loads(f.read_text()), c, meta["environ"], meta["run_id"], meta["spec"])
    return pd.DataFrame(rows)


def run(images="data/kodak", limit=None, crop=None, repeats: int = 3, warmup: int = 1, threads=None,
        sweep: str = "full", codecs=None, results_dir="results", wait: bool | None = None) -> pd.DataFrame:
    """What the ``profile_standard`` notebook calls: measure under the machine-wide timing lock."""
    import os

    from .lock import timing_lock

    none = (None, "", "None", "none")
    limit, crop, threads = (None if v in none else v for v in (limit, crop, threads))
    if isinstance(codecs, str):
        codecs = [c.strip() for c in codecs.split(",") if c.strip()]
    paths = _images.list_images(images, limit)
    if wait is None:
        wait = not os.environ.get("LCSTUDY_NOWAIT")
    with timing_lock("standard codecs on cpu", wait=wait):
        return measure(paths, codecs=codecs, sweep=sweep, repeats=repeats, warmup=warmup, crop=crop,
                       threads=threads, results_dir=results_dir)


def options_table() -> pd.DataFrame:
    """Which library, which knob, which sweep and which fixed options each codec ran with."""
    return pd.DataFrame([{"codec": c.name, "Pillow format": c.fmt, "knob": c.knob,
                          "sweep": ", ".join(map(str, c.sweep)),
                          "fixed options": ", ".join(f"{k}={v}" for k, v in c.fixed) or "defaults",
                          "threading": c.threading} for c in STANDARD])


def header_markdown(std: pd.DataFrame) -> str:
    r = std.iloc[0]
    libs = _register()
    size = f"{int(r.crop)}×{int(r.crop)} centre crops" if pd.notna(r.crop) else "full-size images"
    return (f"Host `{r.host}` ({r.cpu_model}), {r.threads} threads, {std.image.nunique()} images ({size}), "
            f"{r.repeats} repeats after {r.warmup} warm-up per codec and quality; Pillow "
            f"{libs['pillow']}, pillow-heif {libs['pillow_heif']}.")


def fig_rd_time(summary: pd.DataFrame, std: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for c, g in summary.groupby("codec"):
        e = g[g.direction == "encode"].sort_values("bpp")
        d = g[g.direction == "decode"].sort_values("bpp")
        axes[0].plot(e.bpp, e.psnr, marker="o", ms=3, label=c)
        axes[1].plot(e.bpp, e.seconds, marker="o", ms=3, label=c)
        axes[2].plot(d.bpp, d.seconds, marker="o", ms=3, label=c)
    axes[0].set(xlabel="bpp", ylabel="PSNR RGB (dB)", title="rate-distortion")
    axes[1].set(xlabel="bpp", ylabel="seconds per image", yscale="log", title="encode time")
    axes[2].set(xlabel="bpp", ylabel="seconds per image", yscale="log", title="decode time")
    for ax in axes:
        ax.legend(fontsize=7)
    r = std.iloc[0]
    fig.suptitle(f"Standard codecs — host {r.host}, cpu, {r.threads} threads, {std.image.nunique()} images",
                 fontsize=10)
    fig.tight_layout()
    return fig
