"""Study profiles: what ``make book`` measures. One typed config, not spread over the Makefile.

* ``quick``: 2 images, 256×256 centre crop, 1 repeat, the lowest quality of each codec —
  minutes on 2 cores; the tests build the book with it.
* ``standard`` (default of ``make book``): 24 Kodak images at full size, 3 repeats, the
  lowest quality of each channel configuration (complexity depends on quality only
  through (N, M)): FP/HP q1, q6; MS-HP/ARC q1, q5; DGM/DGM-ATT q1, q4; CKBD, ELIC q1.
* ``paper``: every quality the ICASSP 2023 paper measured (FP–ARC q1–8, DGM q1–6), plus
  CKBD and ELIC.
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

    def qualities_of(self, spec: CodecSpec) -> tuple[int, ...]:
        if self.qualities == "lowest":
            return spec.qualities[:1]
        if self.qualities == "per-config":
            return spec.lowest_quality_per_config()
        return spec.qualities


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("quick", 2, 256, 1, 1, "lowest", "2 images, 256×256 centre crop, 1 repeat, lowest quality"),
    Profile("standard", None, None, 3, 1, "per-config",
            "24 Kodak images, full size, 3 repeats, lowest quality of each channel configuration"),
    Profile("paper", None, None, 3, 1, "all", "24 Kodak images, full size, 3 repeats, every quality"),
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

    @property
    def stem(self) -> str:
        return f"{self.codec}-q{self.quality}"


def plan(profile: Profile, devices: list[str], codecs: list[str] | None = None) -> list[PlannedRun]:
    from .codecs import get_spec

    specs = [get_spec(c) for c in codecs] if codecs else list(CODECS)
    return [PlannedRun(s.label, q, d) for d in devices for s in specs for q in profile.qualities_of(s)]


def default_devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
