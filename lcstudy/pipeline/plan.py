"""What a profile measures: the planned runs, each a run notebook with its parameters.

The plan is the same for every executor (local, SLURM); which runs are missing is decided from
the results (:func:`lcstudy.runs.layout.find_complete`), never from file dates, so ``make runs``
twice executes nothing the second time, and a resubmission redoes only what is missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..core.codec_sources import registered
from ..runs.profiles import Profile


class Role(StrEnum):
    """Why a run is in the plan: which chapters it feeds."""

    MAIN = "main"  #: each codec at each quality of the profile: the assessment and every comparison
    THREADS = "threads"  #: the thread pass (a few images at another thread count): the assessment's thread table
    DEPLOYMENT = "deployment"  #: a backend beside eager at each codec's lowest quality: the Deployment chapter
    STANDARD = "standard"  #: the standard codecs' sweep: the Standard codecs and RD-frontier chapters
    SCALING = "scaling"  #: kodim01 at the profile's sizes: the Resolution scaling chapter


@dataclass(frozen=True)
class PlannedRun:
    notebook: str  # "profile_codec" | "profile_standard"
    params: tuple[tuple[str, object], ...]  # notebook parameters (beyond profile and results_dir)
    role: Role

    def __post_init__(self):
        object.__setattr__(self, "role", Role(self.role))

    @property
    def param_dict(self) -> dict:
        return dict(self.params)

    @property
    def device(self) -> str:
        return str(self.param_dict.get("device", "cpu"))

    @property
    def codec(self) -> str:
        return str(self.param_dict.get("codec", "standard-codecs"))

    def describe(self) -> str:
        p = self.param_dict
        if self.notebook == "profile_standard":
            return "standard codecs"
        extra = " ".join(f"{k}={v}" for k, v in p.items() if k not in ("codec", "quality", "device"))
        return f"{p['codec']} q{p['quality']} on {p.get('device', 'cpu')}" + (f" ({extra})" if extra else "")


def scaling_params(sizes: tuple[str, ...]) -> tuple[tuple[str, object], ...]:
    """The resolution-scaling run of one codec: kodim01 at every size of the profile, smallest first, as the
    items of one run (one kernel start, import and model load instead of one per size); no operator profile
    and no MAC count (MACs per pixel are the main run's), no stream fingerprinted (the decodability phase never
    decodes a scaling run's: ``FINGERPRINTS`` given for every run does not reach it); repeats and warm-up follow
    the profile's rule."""
    return (("limit", 1), ("kernels", False), ("macs", False), ("sizes", ",".join(sizes)), ("fingerprints", 0))


def plan(profile: Profile, devices: list[str], codecs: list[str] | None = None) -> list[PlannedRun]:
    from ..core.codec_sources import get_spec

    specs = [get_spec(c) for c in codecs] if codecs else list(registered())
    runs = [PlannedRun("profile_codec", (("codec", s.label), ("quality", q), ("device", d)), Role.MAIN)
            for d in devices for s in specs for q in profile.qualities_of(s)]
    if profile.thread_pass and "cpu" in devices:
        t, n = profile.thread_pass
        # timings only: the operator profile and the MAC count are the main run's (MACs do not depend
        # on threads)
        runs += [PlannedRun("profile_codec", (("codec", s.label), ("quality", s.qualities[0]), ("device", "cpu"),
                                              ("threads", t), ("limit", n), ("kernels", False), ("macs", False)),
                            Role.THREADS) for s in specs]
    from ..core.backends import BACKENDS

    # deployment: each backend beside eager at each codec's lowest quality (MACs are the main run's)
    runs += [PlannedRun("profile_codec", (("codec", s.label), ("quality", s.qualities[0]), ("device", d),
                                          ("backend", b), ("macs", False))
                        + ((("limit", profile.backend_limit),) if profile.backend_limit else ())
                        + ((("crop", profile.backend_crop),) if profile.backend_crop else ()), Role.DEPLOYMENT)
             for d in devices for b in profile.backends if d.split(":")[0] in BACKENDS[b].devices for s in specs]
    if "cpu" in devices:
        runs.append(PlannedRun("profile_standard", (("sweep", profile.standard_sweep),), Role.STANDARD))
        if profile.scaling:
            runs += [PlannedRun("profile_codec", (("codec", s.label), ("quality", s.qualities[0]), ("device", "cpu"))
                                + scaling_params(profile.scaling), Role.SCALING) for s in specs]
    return runs


def default_devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@dataclass
class Resolved:
    """A planned run, checked (its request), and whether it is already done."""

    planned: PlannedRun
    request: object  # RunRequest
    request_params: dict = field(default_factory=dict)  # what the notebook is given
    done: object | None = None  # the complete layout.Run, if any
    predicted_s: float = float("nan")
    notes: list[str] = field(default_factory=list)


def resolve_plan(planned: list[PlannedRun], profile: Profile, results_dir: str, overrides: dict,
                 any_platform: bool = False) -> list[Resolved]:
    """Check every planned run (the notebook's own checks) and find the complete ones.

    ``overrides``: parameters given on the command line for every run (``WEIGHTS=random``…);
    the plan's own parameters of the extra passes win over them. ``any_platform``: a run done on
    any platform counts (the cluster: the submit host does not know the nodes).
    """
    from ..runs import layout
    from ..runs.params import platform_fingerprint, resolve, run_id

    out = []
    fps: dict = {}
    for p in planned:
        params = {**{k: v for k, v in overrides.items() if k in _allowed(p.notebook)}, **p.param_dict,
                  "profile": profile.name, "results_dir": results_dir}
        req = resolve(params, p.notebook, local=not any_platform)
        given = "fingerprints" in overrides and "fingerprints" not in p.param_dict
        rid = None  # any platform
        if not any_platform:
            key = (req.kind, req.device, req.threads)
            if key not in fps:
                fps[key] = platform_fingerprint(req)
            rid = run_id(req, fps[key])
        done = layout.find_complete(results_dir, req.request_id, req.device, rid, req.phases)
        note = fingerprints_not_applied(req, done, given)
        out.append(Resolved(p, req, params, done, notes=[note] if note else []))
    return out


def fingerprints_not_applied(req, done, given: bool) -> str | None:
    """A note when ``FINGERPRINTS`` was given (``given``) for a run already measured with another count: a run's
    fingerprints are made while it is measured and are not part of its identity, so it is not measured again."""
    if done is None or not given or not hasattr(req, "fingerprints"):
        return None
    had = done.meta.get("request", {}).get("fingerprints")
    if had == req.fingerprints:
        return None
    return (f"{req.label}: already measured with {'every item' if had is None else f'{had} item(s)'} fingerprinted; "
            f"FINGERPRINTS does not apply to a measured run (a run's fingerprints are made while it is measured): "
            f"remove {done.path} to measure it again with FINGERPRINTS="
            f"{'all' if req.fingerprints is None else req.fingerprints}")


def _allowed(notebook: str) -> tuple[str, ...]:
    from ..runs.params import NOTEBOOK_PARAMS

    return NOTEBOOK_PARAMS[notebook]
