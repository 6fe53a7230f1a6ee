"""Every parameter of a run, checked in one place, and the run's identity.

The pipeline (``make run``, ``make runs``, a SLURM job) calls :func:`resolve` before a notebook's
kernel starts — a bad value fails in the terminal within a second or two, on one line that names the
value, what is allowed and the fix, and nothing is written — and hands the kernel the resolved request
itself, serialised (the notebook's ``request`` parameter, :meth:`RunRequest.to_json`): the kernel checks
it (:meth:`RunRequest.from_json`: its fields, its id) and does not resolve it again, so one run is
resolved once (``WEIGHTS=auto``'s network probe, the images' decode checks and hashes, the codec's checks).
A notebook run by hand (plain papermill, no ``request``) resolves its parameters with the same :func:`resolve`.
Each run kind has its own request type (:class:`LearnedRequest`, :class:`StandardRequest`) holding only its own
fields, on one base (:class:`RunRequest`) that holds what every run has and reads a stored request back as the
type of its kind.
Nothing here imports torch or CompressAI unless a value needs them (``DEVICE=cuda``, a codec given by import path, ``WEIGHTS=auto`` for a codec
with zoo weights, which asks CompressAI's zoo for the file's URL).

A run's **identity** is everything that changes its numbers: the codec, its quality and
constructor arguments, the weights (a checkpoint's file hash), the image set by content
(sha256 of each file), crop, resize, the repeats rule, the requested threads, the seed, the
device. :meth:`RunRequest.request_id` hashes those; the run id adds the platform fingerprint
(:func:`run_id`). The same name with other content is another image set, so another run.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

from ..core import images as _images
from ..core import weights as W
from ..core.codec_loading import check_device, file_sha256
from ..core.codec_sources import get_spec
from ..core.codec_table import check_quality
from ..core.stats import StopRule
from ..errors import InputError, WeightsError
from .layout import RunKind
from .profiles import Profile, get_profile

ROOT = Path(__file__).resolve().parent.parent.parent
#: The parameters of each run kind's notebook, in the order ``make help`` lists them — written here and nowhere
#: else: ``python -m lcstudy.pipeline params learned|standard`` prints them, and tests/test_request.py fails when
#: the Makefile's ``NB_PARAMS``, a notebook's parameters cell or its call, or the README's list differ.
LEARNED_PARAMS = ("codec", "quality", "device", "threads", "images", "limit", "crop", "resize", "sizes", "repeats",
                  "min_repeats", "max_repeats", "budget", "target", "warmup", "weights", "seed", "kernels", "macs",
                  "codec_args", "backend", "fingerprints", "results_dir", "profile")
STANDARD_PARAMS = ("images", "limit", "crop", "repeats", "min_repeats", "max_repeats", "budget", "target", "warmup",
                   "threads", "sweep", "codecs", "results_dir", "profile")
#: run kind (``RunRequest.kind``) → (its notebook, that notebook's parameters)
RUN_NOTEBOOKS = {"learned": ("profile_codec", LEARNED_PARAMS), "standard": ("profile_standard", STANDARD_PARAMS)}
NOTEBOOK_PARAMS = dict(RUN_NOTEBOOKS.values())
#: the run notebooks' one parameter that is not the user's: the request the pipeline resolved, as JSON (last in
#: each parameters cell; when given, the parameters above it are not read)
REQUEST_PARAM = "request"
DEFAULT_IMAGES = "data/kodak"


@dataclass(frozen=True)
class ImageRef:
    name: str
    path: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """A checked, resolved run: what will be measured and how. One type per run kind (:class:`LearnedRequest`,
    :class:`StandardRequest`), each holding only its own kind's fields, on this base, which holds what every run
    has and reads a stored request back (:meth:`from_dict`). Keyword-only: with twenty-odd fields, a positional
    construction silently shifts every value after an inserted field."""

    #: the run kind: a fact of the type, not a field (a LearnedRequest cannot say it is a standard run)
    kind: ClassVar[RunKind]
    profile: str
    label: str  # the run's name in the book ("ARC-q1", "ARC-q1-threads1-limit4", "standard-codecs")
    group: str  # results sub-folder ("ARC-q1", "standard-codecs")
    device: str
    threads: int | None
    images: tuple[ImageRef, ...]
    crop: int | None
    resize: str | None
    rule: StopRule
    results_dir: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if type(self) is RunRequest:
            raise TypeError("RunRequest is the base of LearnedRequest and StandardRequest: build one of those")

    def to_json(self) -> str:
        """The request as the pipeline hands it to a notebook's kernel (:data:`REQUEST_PARAM`); with its id, which
        :meth:`from_json` checks."""
        return json.dumps(request_dict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RunRequest":
        """The request of :func:`request_dict` (a run.json's ``request``, a notebook's ``request`` parameter), as
        the type of its ``kind``. Requests stored before the split into one type per kind hold every field of
        both kinds; the other kind's fields are dropped where they hold that kind's defaults (they always did)."""
        d = {k: v for k, v in d.items() if k != "request_id"}
        kind = RunKind(d.pop("kind"))
        typ = REQUEST_TYPES[kind]
        if cls is not RunRequest and cls is not typ:
            raise InputError(f"a {kind} run's request where a {cls.kind} run's was expected; run it through `make run`")
        names = {f.name for f in fields(typ)}
        for k, v in STORED_BEFORE_SPLIT.items():
            if k not in names and k in d and d[k] == v:
                del d[k]
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"a {kind} run request with unknown fields {', '.join(unknown)} (made by another version "
                             "of lcstudy?): run it again through `make run`, or give the notebook its parameters "
                             "without `request`")
        d["images"] = tuple(ImageRef(**i) if isinstance(i, dict) else ImageRef(*i) for i in d["images"])
        d["rule"] = StopRule(**d["rule"])
        for k in ("sizes", "codecs", "notes"):
            if k in names:
                d[k] = tuple(d.get(k) or ())
        return typ(**d)

    @classmethod
    def from_json(cls, text: str) -> "RunRequest":
        """:meth:`to_json`'s request, checked: JSON of a request's fields whose recomputed id is the one it carries
        (an edited or stale request fails here, before the lock and the model load)."""
        try:
            d = json.loads(text)
            req = cls.from_dict(d)
            rid = req.request_id  # its codec and quality looked up: a quality the codec lacks fails here
        except InputError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise InputError(f"the notebook's `{REQUEST_PARAM}` is not a run request ({type(e).__name__}: {e}); "
                             f"leave it out and give the notebook its parameters, or run it through `make run`") \
                from None
        if d.get("request_id") != rid:
            raise InputError(f"the notebook's `{REQUEST_PARAM}` says it is request {d.get('request_id')!r} but its "
                             f"fields make {rid!r} (edited by hand?): leave `{REQUEST_PARAM}` out and "
                             "give the notebook its parameters, or run it through `make run`")
        return req

    @property
    def phases(self) -> tuple[str, ...]:
        """Side measurements after the items (they do not change the timings)."""
        return ()

    def identity(self) -> dict:
        return {"kind": self.kind, "device": self.device.split(":")[0], "threads": self.threads,
                "images": [(i.name, i.sha256) for i in self.images], "crop": self.crop, "resize": self.resize,
                "rule": self.rule.as_dict()}

    @property
    def request_id(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class LearnedRequest(RunRequest):
    """A learned codec's run (notebook ``profile_codec``)."""

    kind: ClassVar[RunKind] = RunKind.LEARNED
    codec: str
    quality: int
    weights: W.Weights = W.Weights.RANDOM  # AUTO only in a request made by :func:`lcstudy.load_codec` (resolved at load)
    weights_path: str = ""
    weights_hash: str = ""
    seed: int = 0
    kernels: bool = True
    macs: bool = True
    codec_args: dict | None = None
    kernels_crop: int | None = None
    #: several sizes of each image in one run: one item per image and size, in this order (the resolution-scaling
    #: runs); empty: every image at ``crop``/``resize``. Values, not text: a stored request's ``"crop512"``,
    #: ``"1920x1080"`` are read into :class:`~lcstudy.core.images.ItemSize` here, once, and written back as that text
    sizes: tuple[_images.ItemSize, ...] = ()
    #: how the transforms run (:mod:`lcstudy.core.backends`); not eager: eager is timed beside it
    backend: str = "eager"
    #: how many items, in the run's order, have their stored stream fingerprinted by the encoder (one untimed decode
    #: each after the item's repeats, :func:`lcstudy.runs.decodability.keep`): the references the decodability phase
    #: decodes against. None: every item — what every run stored before this field did, and ``FINGERPRINTS=all``.
    #: By default a new run fingerprints as many as its profile's phase decodes
    #: (:attr:`~lcstudy.runs.profiles.Profile.decode_limit`) and none of a resolution-scaling run (the phase never
    #: decodes those); every item still keeps its stream. Why: those untimed
    #: decodes were 1,595 s of a standard book's runs on the 2-core Intel VM (819 s of them in the scaling runs'
    #: 4K autoregressive decodes), for streams no default phase reads. Not in the request's id: it changes no timing
    #: (so a finished run is not measured again for another ``FINGERPRINTS``).
    fingerprints: int | None = None

    def __post_init__(self):
        # a closed set: a plain string (a request read back from run.json) becomes its member, a wrong one fails here
        object.__setattr__(self, "weights", W.Weights(self.weights))
        object.__setattr__(self, "sizes", tuple(s if isinstance(s, _images.ItemSize) else _images.ItemSize.parse(s)
                                                for s in self.sizes))

    @property
    def phases(self) -> tuple[str, ...]:
        return tuple(p for p, on in (("kernels", self.kernels), ("macs", self.macs)) if on)

    def identity(self) -> dict:
        d = super().identity()
        if self.sizes:
            d["sizes"] = [str(s) for s in self.sizes]  # the text the ids were made of before sizes were values
        spec = get_spec(self.codec, self.codec_args)
        d.update(codec=spec.label, cls=spec.cls, quality=self.quality, args=spec.args[self.quality],
                 weights=self.weights, weights_hash=self.weights_hash,
                 seed=self.seed if self.weights in (W.Weights.RANDOM, W.Weights.AUTO) else None)
        if self.backend != "eager":  # only then: every run made before the backend axis keeps its id
            d["backend"] = self.backend
        return d


@dataclass(frozen=True, kw_only=True)
class StandardRequest(RunRequest):
    """The standard codecs' run (notebook ``profile_standard``): a sweep of Pillow codecs, on the CPU."""

    kind: ClassVar[RunKind] = RunKind.STANDARD
    sweep: str = "full"
    codecs: tuple[str, ...] = ()

    def identity(self) -> dict:
        return {**super().identity(), "sweep": self.sweep, "codecs": list(self.codecs)}


#: run kind → its request type (:meth:`RunRequest.from_dict` reads a stored request as the type of its kind)
REQUEST_TYPES: dict[RunKind, type[RunRequest]] = {t.kind: t for t in (LearnedRequest, StandardRequest)}

#: What a stored request held for the other kind's fields before the split into one type per kind (one type then
#: held both kinds' fields, the other kind's at these values): :meth:`RunRequest.from_dict` drops them, and the
#: tables read a request with them filled in (:func:`lcstudy.runs.tidy.base_columns`), so a run stored before the
#: split and one stored after give the same rows.
STORED_BEFORE_SPLIT = {"codec": "", "quality": 0, "weights": "random", "weights_path": "", "weights_hash": "",
                       "seed": 0, "kernels": True, "macs": True, "codec_args": None, "kernels_crop": None,
                       "sizes": [], "backend": "eager", "sweep": "full", "codecs": []}

def run_id(request: RunRequest, fingerprint: dict) -> str:
    """The request on one platform (:func:`lcstudy.core.environ.fingerprint`)."""
    key = {"request": request.request_id, **fingerprint}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def platform_fingerprint(req: RunRequest, threads: int | None = None) -> dict:
    """The fingerprint the run id of ``req`` uses on this machine (the standard codecs add their
    libraries' versions)."""
    from ..core.environ import fingerprint

    fp = fingerprint(req.device, threads if threads is not None else default_threads(req))
    if req.kind == RunKind.STANDARD:
        from ..core.pillow_codecs import libraries

        fp["libraries"] = libraries()
    return fp


def default_threads(req: RunRequest) -> int:
    """The thread count a run will use: the requested one, else torch's default on this machine."""
    if req.threads is not None:
        return req.threads
    import torch

    return torch.get_num_threads()


# --- value checks ---------------------------------------------------------------------------

def parse_value(v):
    """Make/CLI strings to Python values: integers, floats, booleans, None, else the string."""
    if not isinstance(v, str):
        return v
    s = v.strip()
    if s.lower() in ("none", "null", ""):
        return None
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def _int(name: str, v, minimum: int, none: bool = True, fix: str = "") -> int | None:
    v = parse_value(v)
    if v is None and none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise InputError(f"{name.upper()}={v!r}: must be an integer ≥ {minimum}" + (f"; {fix}" if fix else ""))
    return v


def _float(name: str, v, lo: float, hi: float) -> float | None:
    v = parse_value(v)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v <= hi):
        raise InputError(f"{name.upper()}={v!r}: must be a number in ({lo}, {hi}]")
    return float(v)


def _bool(name: str, v) -> bool:
    v = parse_value(v)
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    raise InputError(f"{name.upper()}={v!r}: must be true or false")


def project_path(p) -> Path:
    """A path parameter: absolute as given; relative to the current folder if it exists there, else
    to the project root (so that defaults such as data/kodak work from any working directory)."""
    p = Path(os.path.expanduser(str(p)))
    if p.is_absolute() or p.exists():
        return p.resolve() if p.exists() else p.absolute()
    alt = ROOT / p
    return alt if alt.exists() or (ROOT / "pyproject.toml").exists() else p.absolute()


def check_images(images, limit) -> tuple[ImageRef, ...]:
    if images is None:
        images = DEFAULT_IMAGES
    if isinstance(images, str) and "," in images:
        images = [s.strip() for s in images.split(",") if s.strip()]
    paths = [project_path(p) for p in images] if isinstance(images, (list, tuple)) else project_path(images)
    files = _images.list_images(paths, limit)
    refs = []
    for f in files:
        _images.check_image(f, decode=True)  # a truncated file fails here, before the lock and the kernel
        refs.append(ImageRef(Path(f).stem, str(Path(f).resolve()), _images.file_hash(f)))
    names = [r.name for r in refs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"two images share a name: {', '.join(dup)}; give files with distinct names")
    return tuple(refs)


def check_unchanged(im, ref: ImageRef) -> None:
    """An image loaded for a run (:class:`~lcstudy.core.images.Image`) is the file its request hashed: a file
    replaced while the run waited for the lock is refused, not measured under the old request's id."""
    if im.sha256 != ref.sha256:
        raise InputError(f"{im.path} changed since the run was resolved; run again")


def check_fits(imgs, crop: int | None, sizes=()) -> None:
    """CROP (and each cropN of SIZES) no larger than every image's shorter side, from the headers: refused
    here, in a second, rather than in the kernel after the lock and the model load."""
    crops = [c for c in [crop] + [s.crop for s in sizes] if c is not None]
    if not crops:
        return
    for ref in imgs:
        w, h = _images.image_size(ref.path)
        if max(crops) > min(w, h):
            what = f"CROP={crop}" if crop == max(crops) else f"SIZES=crop{max(crops)}"
            raise InputError(f"{what} is larger than {ref.name} ({w}×{h}): give a crop ≤ {min(w, h)}, or CROP=0 "
                             "for the whole images")


def _rule(params: dict, base: StopRule) -> StopRule:
    fixed = _int("repeats", params.get("repeats"), 1)
    lo = _int("min_repeats", params.get("min_repeats"), 1)
    hi = _int("max_repeats", params.get("max_repeats"), 1)
    budget = _float("budget", params.get("budget"), 0.0, 1e6)
    target = _float("target", params.get("target"), 0.0, 0.99)
    warmup = _int("warmup", params.get("warmup"), 0)
    r = base
    if fixed is not None:
        r = replace(r, min_repeats=fixed, max_repeats=fixed)
    if lo is not None:
        r = replace(r, min_repeats=lo, max_repeats=max(r.max_repeats, lo))
    if hi is not None:
        r = replace(r, max_repeats=hi, min_repeats=min(r.min_repeats, hi))
    if budget is not None:
        r = replace(r, budget_s=budget)
    if target is not None:
        r = replace(r, target=target)
    if warmup is not None:
        r = replace(r, warmup=warmup, warmup_skip_s=r.warmup_skip_s if warmup else float("inf"))
    return r


def check_weights(spec, quality: int, weights) -> tuple[str, str, str, list[str]]:
    """(weights kind, checkpoint path, checkpoint hash, notes): :func:`lcstudy.core.weights.choose`'s decision
    (``auto`` resolved here, once: one network probe per process), with a checkpoint's file checked."""
    w = parse_value(weights)
    try:
        c = W.choose(spec, quality, w)
    except (InputError, WeightsError) as e:
        raise InputError(f"WEIGHTS={weights}: {e}") from None
    if c.kind == W.Weights.CHECKPOINT:
        return _checkpoint(c.path)
    return c.kind, "", "", list(c.notes)


def _checkpoint(path) -> tuple[str, str, str, list[str]]:
    from ..core.weights import check_file

    try:
        p = check_file(project_path(path))
    except InputError as e:
        raise InputError(f"WEIGHTS={path}: {e}") from None
    return W.Weights.CHECKPOINT, str(p), file_sha256(p), []


def check_sizes(sizes) -> tuple[_images.ItemSize, ...]:
    """SIZES: a comma-separated list (or a list) of ``cropN`` (centred N×N square) or ``WxH`` (synthetic
    upscale), normalised (``crop512``, ``1920x1080``); at least one, no repeats."""
    items = [s.strip() for s in sizes.split(",")] if isinstance(sizes, str) else [str(s).strip() for s in sizes]
    out = []
    for s in items:
        if s:
            try:
                out.append(_images.ItemSize.parse(s))
            except InputError as e:
                raise InputError(f"SIZES={sizes!r}: {e}") from None
    if not out:
        raise InputError(f"SIZES={sizes!r}: give at least one size, e.g. SIZES=crop512,1920x1080")
    dup = sorted({str(s) for s in out if out.count(s) > 1})
    if dup:
        raise InputError(f"SIZES={sizes!r}: {', '.join(dup)} given twice")
    return tuple(out)


def item_args(req, size) -> dict:
    """``load_image`` arguments of one item: its ``size`` (an :class:`~lcstudy.core.images.ItemSize`) in a run of
    several sizes, else the run's crop/resize."""
    return size.load_args() if size else {"crop": req.crop, "resize": req.resize}


def _fingerprints(value, profile: Profile, sizes) -> int | None:
    """FINGERPRINTS: how many items of the run get the encoder's fingerprint of their stream (``all``: every one;
    not given: as many as the profile's decodability phase decodes, none of a resolution-scaling run)."""
    if value is None:
        return 0 if sizes else profile.decode_limit
    n = None if value == "all" else _int("fingerprints", value, 0,
                                         fix="the number of items whose streams the encoder fingerprints, or all")
    if sizes and n != 0:
        raise InputError(f"FINGERPRINTS={value}: the decodability phase never decodes a resolution-scaling run's "
                         "streams (SIZES), so none of them is fingerprinted; leave FINGERPRINTS out or give SIZES "
                         "to another run")
    return n


def _label(base: str, params: dict, profile: Profile) -> str:
    """A run's name: the group plus what differs from the profile's defaults, in a fixed order."""
    parts = [base]
    p = {k: parse_value(v) for k, v in params.items()}
    if p.get("threads") is not None:
        parts.append(f"threads{p['threads']}")
    if p.get("limit") is not None and p["limit"] != profile.limit and (p["limit"], profile.limit) != ("all", None):
        parts.append(f"limit{p['limit']}")
    if p.get("crop") is not None and p["crop"] != profile.crop:
        parts.append(f"crop{p['crop']}")
    if p.get("resize") is not None:
        parts.append(str(p["resize"]).replace("×", "x"))
    if p.get("sizes"):
        parts.append("-".join(map(str, check_sizes(p["sizes"]))))
    if p.get("repeats") is not None:
        parts.append(f"repeats{p['repeats']}")
    w = p.get("weights")
    if w not in (None, "auto", "random", "pretrained"):
        parts.append("ckpt-" + Path(str(w)).name.split(".")[0])
    if p.get("seed") not in (None, 0):
        parts.append(f"seed{p['seed']}")
    if p.get("backend") not in (None, "eager"):
        parts.append(str(p["backend"]))
    return "-".join(parts)


#: set to 1 to allow THREADS above the logical CPUs this process may run on (oversubscribed on purpose)
OVERSUBSCRIBE_ENV = "LCSTUDY_OVERSUBSCRIBE"


def usable_cpus() -> int:
    """The logical CPUs this process may run on (its affinity: a container's or a SLURM job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_threads(threads: int | None) -> None:
    """More threads than logical CPUs time the scheduler sharing cores, not the codec: refused unless asked for."""
    n = usable_cpus()
    if threads is not None and threads > n and os.environ.get(OVERSUBSCRIBE_ENV) != "1":
        raise InputError(f"THREADS={threads}: more than the {n} logical CPUs this process may use; oversubscribed "
                         f"threads measure the scheduler, not the codec. Give THREADS ≤ {n}, or set "
                         f"{OVERSUBSCRIBE_ENV}=1 to measure oversubscription on purpose")


def request_of(params: dict, notebook: str) -> RunRequest:
    """What a run notebook measures: the pipeline's request when it handed one (``request``: checked, not resolved
    again; the notebook's other parameters are then not read), else its parameters resolved here."""
    params = dict(params)
    request = params.pop(REQUEST_PARAM, None)
    if request is None:
        return resolve(params, notebook)
    req = RunRequest.from_json(request)
    want = next(k for k, (nb, _) in RUN_NOTEBOOKS.items() if nb == notebook)
    if req.kind != want:
        raise InputError(f"the notebook {notebook} was handed a {req.kind} run's request; run it through `make run`")
    return req


def resolve(params: dict, notebook: str = "profile_codec", local: bool = True) -> RunRequest:
    """Check every parameter of a run notebook and resolve it into a :class:`RunRequest`. ``local``: the run
    executes here (False: planned for a cluster node, whose CPUs this host does not know)."""
    allowed = NOTEBOOK_PARAMS.get(notebook)
    if allowed is None:
        raise InputError(f"unknown run notebook {notebook!r}; valid: {', '.join(NOTEBOOK_PARAMS)}")
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise InputError(f"unknown parameter {unknown[0]!r} of notebook {notebook}; its parameters: "
                         f"{', '.join(allowed)}")
    # None means "not given": the profile's value applies (CROP=0: no crop; LIMIT=all: every image)
    params = {k: parse_value(v) for k, v in params.items() if parse_value(v) is not None}
    profile = get_profile(params.get("profile") or "standard")
    results_dir = project_path(params.get("results_dir") or profile.results_dir)
    from .layout import check_writable

    check_writable(results_dir)
    threads = _int("threads", params.get("threads"), 1)
    if local:
        _check_threads(threads)
    limit = params["limit"] if "limit" in params else profile.limit
    limit = None if limit == "all" else _int("limit", limit, 1, fix="the number of images to measure, or LIMIT=all")
    crop = params["crop"] if "crop" in params else profile.crop
    crop = None if crop == 0 else _int("crop", crop, 16, fix="pixels of a centred square (0: no crop)")
    resize = params.get("resize")
    if resize is not None:
        size = _images.parse_size(resize)
        resize = f"{size[0]}x{size[1]}"
        if crop is not None:
            if "crop" in params:
                raise InputError("give either CROP or RESIZE, not both")
            crop = None  # the profile's crop gives way to an explicit resize
    sizes = ()
    if params.get("sizes") is not None:
        if notebook == "profile_standard":
            raise InputError("SIZES applies to the learned codecs' notebook (profile_codec)")
        sizes = check_sizes(params["sizes"])
        if "crop" in params or resize is not None:
            raise InputError("give either SIZES or CROP/RESIZE, not both (SIZES sets each item's size)")
        crop = None  # the profile's crop gives way to explicit sizes
    if notebook == "profile_standard":
        rule = _rule(params, profile.standard_rule)
        sweep = params.get("sweep") or profile.standard_sweep
        if sweep not in ("full", "short"):
            raise InputError(f"SWEEP={sweep!r}: must be full or short")
        from ..core.pillow_codecs import get_codec

        codecs = params.get("codecs")
        names = tuple(get_codec(c).name for c in (codecs.split(",") if isinstance(codecs, str) else codecs or ())
                      if str(c).strip())
        imgs = check_images(params.get("images"), limit)
        check_fits(imgs, crop)
        return StandardRequest(profile=profile.name, label="standard-codecs", group="standard-codecs",
                               device="cpu", threads=threads, images=imgs, crop=crop, resize=None, rule=rule,
                               results_dir=str(results_dir), sweep=sweep, codecs=names)
    fingerprints = _fingerprints(params.get("fingerprints"), profile, sizes)  # before the weights and images
    if params.get("codec") is None:
        raise InputError("give the codec: CODEC=ARC (a label, a CompressAI name, or package.module:Class)")
    codec_args = params.get("codec_args")
    if isinstance(codec_args, str):
        try:
            codec_args = json.loads(codec_args)
        except json.JSONDecodeError as e:
            raise InputError(f"CODEC_ARGS={codec_args!r} is not JSON ({e}); give an object like '{{\"N\": 64}}'") \
                from None
        if not isinstance(codec_args, dict):
            raise InputError(f"CODEC_ARGS must be a JSON object of constructor keyword arguments, got {codec_args!r}")
    spec = get_spec(str(params["codec"]), codec_args)
    if codec_args is not None and spec.source != "import path":
        raise InputError(f"CODEC_ARGS applies to a codec given by import path; {spec.label}'s arguments come from "
                         "its registry entry (use QUALITY)")
    if not spec.builtin:
        W.check_class(spec)
    quality = check_quality(spec, params.get("quality") if params.get("quality") is not None
                                     else spec.qualities[0])
    device = check_device(params.get("device") or "cpu")
    from ..core.backends import check as check_backend

    backend = check_backend(params.get("backend"), device)
    seed = _int("seed", params.get("seed"), 0) or 0
    weights, wpath, whash, notes = check_weights(spec, quality, params.get("weights", "auto"))
    rule = _rule(params, profile.rule)
    imgs = check_images(params.get("images"), limit)
    check_fits(imgs, crop, sizes)
    kernels = _bool("kernels", params.get("kernels", True))
    macs = _bool("macs", params.get("macs", True))
    group = f"{spec.label}-q{quality}"
    label = _label(group, {k: v for k, v in params.items() if k != "weights" or v not in (None, "auto")}, profile)
    kcrop = profile.ar_kernels_crop
    if not (kcrop and spec.family == "autoregressive" and resize is None and not sizes
            and (crop is None or crop > kcrop)):
        kcrop = None
    return LearnedRequest(profile=profile.name, label=label, group=group, device=device, threads=threads,
                          images=imgs, crop=crop, resize=resize, rule=rule, results_dir=str(results_dir),
                          codec=spec.label if spec.source != "import path" else spec.cls, quality=quality,
                          weights=weights, weights_path=wpath, weights_hash=whash, seed=seed, kernels=kernels,
                          macs=macs, codec_args=codec_args, kernels_crop=kcrop, sizes=sizes, backend=backend,
                          fingerprints=fingerprints, notes=tuple(notes))


def request_dict(req: RunRequest) -> dict:
    d = {"kind": req.kind, **asdict(req)}
    d["rule"] = req.rule.as_dict()
    if "sizes" in d:
        d["sizes"] = [str(s) for s in req.sizes]  # their text (``crop512``): what run.json and the notebook read
    d["request_id"] = req.request_id
    return d
