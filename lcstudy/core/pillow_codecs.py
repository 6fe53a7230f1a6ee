"""Standard image codecs measured in the same harness: JPEG, JPEG 2000, WebP, AVIF, HEVC intra
(x265, BPG's core) and JPEG XL, through Pillow and its plugins.

One coding is timed from the 8-bit RGB ``PIL.Image`` to the bytes (encode) and from the bytes to
a loaded RGB image (decode), in memory (``BytesIO``: no disk in the clock). Bitrate is the file
size (container included, as CompressAI's ``bpg`` and ``jpeg`` baselines count it); PSNR and
MS-SSIM on RGB, like the learned codecs.

Threads: AVIF (libavif ``max_threads``) and JPEG XL (``num_threads``) are given the run's thread
count; x265 sizes its own pool to the machine; libjpeg-turbo, libwebp and OpenJPEG (as Pillow
drives them) are single-threaded. Each row says which in ``threading``.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass

from ..errors import InputError


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


def sweep_points(codecs=(), sweep: str = "short") -> list[tuple[StandardCodec, int]]:
    """The (codec, setting) pairs a standard-codec run measures, in order: the named ``codecs`` (every one when
    none are named), each over its ``"full"`` sweep or its short one (lowest, middle, highest). The one place
    a sweep is chosen: the run's items, its item count on resume and its cost all ask here."""
    chosen = [get_codec(c) for c in codecs] if codecs else list(STANDARD)
    return [(c, v) for c in chosen for v in (c.sweep if sweep == "full" else c.short_sweep())]


def libraries() -> dict[str, str]:
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


def encode(c: StandardCodec, im, kw: dict) -> tuple[bytes, float]:
    buf = io.BytesIO()
    t0 = time.perf_counter()
    im.save(buf, c.fmt, **kw)
    t = time.perf_counter() - t0
    return buf.getvalue(), t


def decode(data: bytes):
    """(decoded RGB image, seconds)."""
    from PIL import Image

    t0 = time.perf_counter()
    with Image.open(io.BytesIO(data)) as r:
        r.load()
        out = r.convert("RGB") if r.mode != "RGB" else r.copy()
    return out, time.perf_counter() - t0


def options_table():
    """Which library, which knob, which sweep and which fixed options each codec ran with."""
    import pandas as pd

    return pd.DataFrame([{"codec": c.name, "Pillow format": c.fmt, "knob": c.knob,
                          "sweep": ", ".join(map(str, c.sweep)),
                          "fixed options": ", ".join(f"{k}={v}" for k, v in c.fixed) or "defaults",
                          "threading": c.threading} for c in STANDARD])


