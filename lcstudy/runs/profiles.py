"""Study profiles: what ``make book`` measures and how hard. One typed config, not spread over
the Makefile; every run records the profile it was made with.

* ``quick``: 2 images, 256×256 centre crop, lowest quality of each codec, standard codecs on a
  short sweep, autoregressive operator profiles on a 128² crop — minutes on 2 cores; the tests build
  the book with it.
* ``standard`` (default of ``make book``): 24 Kodak images at full size, the lowest quality of each
  channel configuration (complexity depends on quality only through (N, M)): FP/HP q1, q6;
  MS-HP/ARC q1, q5; DGM/DGM-ATT q1, q4; CKBD, ELIC q1.
* ``paper``: every quality the ICASSP 2023 paper measured (FP–ARC q1–8, DGM q1–6), plus CKBD and ELIC.

Beyond the paper, ``standard`` and ``paper`` add (at each codec's lowest quality, on CPU): a
1-thread pass over 4 images (FLOPs versus runtime: a second CPU platform), the
resolution-scaling runs (kodim01 as a 512×512 centre crop and upscaled to 1920×1080 and
3840×2160; its native size comes from the main run), and the standard codecs' quality sweep.
``quick``'s resolution chapter has only its one (smallest) size.

Repeats follow each profile's :class:`~lcstudy.core.stats.StopRule` (floor, ceiling, precision
target, time budget per item, warm-up rule); ``make run REPEATS=N`` fixes them instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.backends import BACKENDS
from ..core.stats import StopRule
from ..errors import InputError


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    limit: int | None  # number of images (None = all)
    crop: int | None
    qualities: str  # "lowest" | "per-config" | "all"
    rule: StopRule = field(default_factory=StopRule)
    #: (threads, images) of the extra CPU pass for FLOPs vs runtime, or None
    thread_pass: tuple[int, int] | None = None
    #: resolution-scaling sizes beyond the main runs: "cropN" or "WxH" (synthetic), kodim01 only
    scaling: tuple[str, ...] = ()
    #: standard codecs: "full" or "short" quality sweep, and their repeats rule
    standard_sweep: str = "full"
    standard_rule: StopRule = field(default_factory=StopRule)
    #: autoregressive codecs' operator profile on a centre crop of this size (None: the measured size).
    #: Only the quick preview uses one: a 128² crop moved category shares by up to 6.3 points on ARC and
    #: DGM (see the methodology), too much for the standard and paper profiles; it saves ~45 s of ~4 min.
    ar_kernels_crop: int | None = None
    #: deployment runs (the Deployment chapter): these backends beside eager, for each codec at its lowest
    #: quality, on ``backend_limit`` images (None: the profile's), on every device that runs the backend
    backends: tuple[str, ...] = ()
    backend_limit: int | None = None
    #: ...as centred crops of this size (None: the profile's crop): one input shape, so a compiling backend
    #: compiles each transform once (Kodak has landscape and portrait images), and calibrates at that size
    backend_crop: int | None = None
    #: where its results go when no folder is given (the Makefile's RESULTS_DIR default, and a notebook run
    #: by plain papermill with ``-p profile quick``): a preview never mixes into the standard results
    results_dir: str = "results"
    #: the decodability phase of ``make book`` (``DECODE_LIMIT`` overrides): the stored streams of this many images
    #: per run are decoded under every decoder configuration (see :data:`lcstudy.runs.decodability.DEFAULT_LIMIT`)
    decode_limit: int = 2

    def qualities_of(self, spec) -> tuple[int, ...]:
        if self.qualities == "lowest":
            return spec.qualities[:1]
        if self.qualities == "per-config":
            return spec.lowest_quality_per_config()
        return spec.qualities


#: every deployment backend (the registry's order; eager is the reference every backend run times anyway)
_ALL_BACKENDS = tuple(b for b in BACKENDS if b != "eager")
_MAIN = StopRule(min_repeats=1, max_repeats=10, budget_s=3.0, warmup=1, warmup_skip_s=10.0)
_STD = StopRule(min_repeats=2, max_repeats=10, budget_s=0.5, warmup=1, warmup_skip_s=10.0)

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("quick", "2 images, 256×256 centre crop, lowest quality", 2, 256, "lowest",
            rule=StopRule(min_repeats=1, max_repeats=6, budget_s=0.5, warmup=1, warmup_skip_s=10.0),
            standard_sweep="short", standard_rule=StopRule(min_repeats=1, max_repeats=6, budget_s=0.2),
            ar_kernels_crop=128, results_dir="results-quick",
            # one image a run, not two: the preview's phase decoded 128 streams in 146 s on the 2-core VM (a
            # quarter of its book), 54 of them serial autoregressive decodes of ~1.3 s; every decoder
            # configuration and every codec keep their rows (a quick run fingerprints 1 item: FINGERPRINTS=2 and
            # DECODE_LIMIT=2 give the standard book's)
            decode_limit=1,
            # the two cheapest and most telling here: ONNX Runtime (export ~1 s, the largest gain measured on
            # the 2-core VM) and channels-last (no one-off cost; does the memory format alone help?);
            # compile and int8 cost tens of seconds of compilation per module and shape on 2 cores
            backends=("onnxruntime", "channels_last")),
    Profile("standard", "24 Kodak images, full size, lowest quality of each channel configuration", None, None,
            "per-config", rule=_MAIN, thread_pass=(1, 4), scaling=("crop512", "1920x1080", "3840x2160"),
            standard_rule=_STD, backends=_ALL_BACKENDS, backend_limit=4, backend_crop=256),
    Profile("paper", "24 Kodak images, full size, every quality the paper measured", None, None, "all",
            rule=_MAIN, thread_pass=(1, 4), scaling=("crop512", "1920x1080", "3840x2160"), standard_rule=_STD,
            backends=_ALL_BACKENDS, backend_limit=4, backend_crop=512),
)}


#: an unknown codec: as a hyperprior codec
DEFAULT_S_PER_MPX = 5.0
#: A CUDA device's first guess: the reference CPU rate divided by this. An assumption, not a measurement (it
#: came with the cost model, commit 7e949ad, as "a GPU is assumed an order of magnitude faster"); no GPU rate
#: is in a codec's ``ref_s_per_mpx``. Used only until the platform has measured rates (:mod:`lcstudy.pipeline.cost`)
#: and for the warm-up rule's prediction of a run's first coding (:func:`reference_seconds`).
GPU_SPEEDUP_GUESS = 10.0
#: THREADS=1's first guess: the reference rate (two threads) times this — one thread slower than two, but not
#: twice as slow, since not every stage runs in parallel. Its origin is undocumented (it came, uncommented, with
#: the cost model, commit 7e949ad); used as :data:`GPU_SPEEDUP_GUESS` is, and replaced the same way.
ONE_THREAD_SLOWDOWN_GUESS = 1.4


def reference_seconds(codec: str, quality: int, pixels: int, device: str = "cpu", threads: int | None = 2) -> float:
    """A first guess of one encode+decode's seconds (the reference VM's rate), before anything is measured:
    what the warm-up rule and the cost model start from."""
    from ..core.codec_sources import get_spec

    try:
        spec = get_spec(codec)
    except InputError:
        spec = None
    return reference_rate(spec, quality, device, threads) * pixels / 1e6


def reference_rate(spec, quality: int, device: str = "cpu", threads: int | None = 2) -> float:
    """Seconds per megapixel of one encode+decode before anything is measured: the reference VM's rate of
    ``spec`` (:attr:`~lcstudy.core.codec_table.CodecSpec.ref_s_per_mpx`; None or a codec not measured there: as a
    hyperprior codec), scaled by the two guesses for a GPU and for one thread."""
    try:
        rate = spec.ref_s_per_mpx[spec.config_index(quality)]
    except (AttributeError, IndexError, KeyError, ValueError):  # no spec, not measured, or a quality it lacks
        rate = DEFAULT_S_PER_MPX
    if str(device).startswith("cuda"):
        rate /= GPU_SPEEDUP_GUESS
    elif threads == 1:
        rate *= ONE_THREAD_SLOWDOWN_GUESS
    return rate


def get_profile(name) -> Profile:
    p = PROFILES.get(str(name).strip().lower())
    if p is None:
        raise InputError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)} (PROFILE=…)")
    return p
