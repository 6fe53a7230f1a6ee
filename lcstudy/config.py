"""Study profiles: what ``make book`` measures. One typed config, not spread over the Makefile.

* ``quick``: 2 images, 256×256 centre crop, 1 repeat, the lowest quality of each codec —
  minutes on 2 cores; the tests build the book with it.
* ``standard`` (default of ``make book``): 24 Kodak images at full size, 3 repeats, the
  lowest quality of each channel configuration (complexity depends on quality only
  through (N, M)): FP/HP q1, q6; MS-HP/ARC q1, q5; DGM/DGM-ATT q1, q4; CKBD, ELIC q1.
* ``paper``: every quality the ICASSP 2023 paper measured (FP–ARC q1–8, DGM q1–6), plus
  CKBD and ELIC.

Beyond the paper, ``standard`` and ``paper`` add (at each codec's lowest quality, on CPU):
a 1-thread pass over 4 images (FLOPs versus runtime: a second CPU platform), the
resolution-scaling runs (kodim01 as a 512×512 centre crop and upscaled to 1920×1080 and
3840×2160; its native size comes from the main run), and the standard codecs' quality
sweep. ``quick`` runs the standard codecs on its 2 cropped images with a short sweep, and
its resolution chapter has only its one (smallest) size.
"""
from __future__ import annotations

from dataclasses import dataclass

from .codecs import CODECS, CodecSpec
from .errors import InputError


@dataclass(frozen=True)
class Profile:
    name: str
    limit: int | None  # number of images (None = all 24)
    crop: int | None
    repeats: int
    warmup: int
    qualities: str  # "lowest" | "per-config" | "all"
    description: str
    #: (threads, images) of the extra CPU pass for FLOPs vs runtime, or None
    thread_pass: tuple[int, int] | None = None
    #: resolution-scaling sizes beyond the main runs: "crop512" or "WxH" (synthetic), kodim01 only
    scaling: tuple[str, ...] = ()
    scaling_repeats: int = 3
    #: standard codecs: "full" or "short" quality sweep
    standard_sweep: str = "full"

    def qualities_of(self, spec: CodecSpec) -> tuple[int, ...]:
        if self.qualities == "lowest":
            return spec.qualities[:1]
        if self.qualities == "per-config":
            return spec.lowest_quality_per_config()
        return spec.qualities


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("quick", 2, 256, 1, 1, "lowest", "2 images, 256×256 centre crop, 1 repeat, lowest quality",
            standard_sweep="short"),
    Profile("standard", None, None, 3, 1, "per-config",
            "24 Kodak images, full size, 3 repeats, lowest quality of each channel configuration",
            thread_pass=(1, 4), scaling=("crop512", "1920x1080", "3840x2160")),
    Profile("paper", None, None, 3, 1, "all", "24 Kodak images, full size, 3 repeats, every quality",
            thread_pass=(1, 4), scaling=("crop512", "1920x1080", "3840x2160")),
)}


def get_profile(name: str) -> Profile:
    p = PROFILES.get(str(name).strip().lower())
    if p is None:
        raise InputError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return p


@dataclass(frozen=True)
class PlannedRun:
    codec: str
    quality: int
    device: str
    #: notebook parameters beyond the profile's (e.g. threads=1, limit=4), as (name, value) pairs
    params: tuple[tuple[str, object], ...] = ()
    #: file-name suffix of the run notebook ("" for the main runs)
    suffix: str = ""
    notebook: str = "profile_codec"

    @property
    def stem(self) -> str:
        if self.notebook == "profile_standard":
            return f"standard-codecs{self.suffix}"
        return f"{self.codec}-q{self.quality}{self.suffix}"


def scaling_params(size: str, repeats: int) -> tuple[tuple[str, object], ...]:
    """One resolution-scaling run: kodim01 only, no profiler pass and no MAC count (MACs per
    pixel are those of the main run). Warm-up only at the crop: at 2–8 Mpx the first call's
    extra cost (kernel selection, first-touch allocation) is far below the repeat spread, and an
    autoregressive codec's extra coding at 4K costs ~5 minutes here."""
    base: tuple[tuple[str, object], ...] = (("limit", 1), ("repeats", repeats), ("kernels", False), ("macs", False))
    if size.startswith("crop"):
        return base + (("crop", int(size[4:])), ("warmup", 1))
    return base + (("resize", size), ("warmup", 0))


def plan(profile: Profile, devices: list[str], codecs: list[str] | None = None) -> list[PlannedRun]:
    from .codecs import get_spec

    specs = [get_spec(c) for c in codecs] if codecs else list(CODECS)
    runs = [PlannedRun(s.label, q, d) for d in devices for s in specs for q in profile.qualities_of(s)]
    if profile.thread_pass and "cpu" in devices:
        t, n = profile.thread_pass
        # timings only: the operator profile and the MAC count are the main run's (MACs do not depend
        # on threads; an AR codec's profiler pass alone costs ~7 minutes here)
        runs += [PlannedRun(s.label, s.qualities[0], "cpu",
                            (("threads", t), ("limit", n), ("kernels", False), ("macs", False)), f"-{t}thread")
                 for s in specs]
    if "cpu" in devices:
        runs.append(PlannedRun("standard", 0, "cpu", (("sweep", profile.standard_sweep),),
                               notebook="profile_standard"))
        # smallest sizes first: the 4K runs of the autoregressive codecs take the longest
        for size in profile.scaling:
            runs += [PlannedRun(s.label, s.qualities[0], "cpu", scaling_params(size, profile.scaling_repeats),
                                f"-scale-{size}") for s in specs]
    return runs


def default_devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
