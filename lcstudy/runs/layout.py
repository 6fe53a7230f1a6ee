"""The results layout: the one place that knows where a run's files are.

Everything the study measures is plain files under one results folder, keyed by host and
device, so that results made on several machines merge by copying folders::

    <results>/<host>/<device>/<group>/<run_id>/      one run (group: "ARC-q1", "standard-codecs")
        run.json            the request, the environ block, phases done, whether complete
        items/<item>.json   one file per finished item (an image; for standard codecs an
                            image at one codec and quality): raw samples, metrics, node
        kernels.csv         the operator profile (learned codecs)
        complexity.csv      MACs and parameters per stage (learned codecs)
        notebook.ipynb      the executed run notebook (written by the pipeline, last)
    <results>/_cache/macs/<key>.csv   MAC counts, shared by every run of a configuration and size
    <results>/_decodability/<decoder host>/<encoder host>/<encoder run id>/<item>/<decoder>.json
                            one cross-decode of a stored bitstream (:mod:`lcstudy.runs.decodability`)

``run_id`` hashes the request (everything that changes the numbers: codec, quality, weights and
their file hash, image contents, crop, resize, repeats rule, threads, …) with the platform
fingerprint (CPU model and cores, GPU, torch and CompressAI versions, schema). Not the host:
a run interrupted on one node of a cluster resumes on another node of the same platform, in
its original folder (:func:`find_run`), and each item records the node that measured it.

**Old schemas.** A run folder written by another result schema (``schema_version`` in its
run.json) is never read and never written into: every reader skips it with one warning that
names the folder and the fix (``make clean-stale`` moves such folders out of the way), and the
protocol measures afresh under a new run id (the schema is part of it). So an old ``results/``
gets remeasured, never mixed.

Nothing outside this module globs the results tree.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..core.environ import SCHEMA_VERSION
from ..errors import InputError, SchemaError
from . import store

RUN_META = "run.json"
ITEMS = "items"
NOTEBOOK = "notebook.ipynb"
CACHE = "_cache"
#: `make reproducibility`'s checks: one folder per check (``<UTC time>``), each laid out like a results folder;
#: :func:`runs` does not reach them (they are not the study's runs), :func:`checks` does
CHECKS = ".reproducibility"


class RunKind(StrEnum):
    """What a run measures — a closed set, so one value, checked where a request is built or a folder read.

    A ``StrEnum``: it compares equal to, and serialises (JSON, CSV) as, its plain string, so the run
    ids and files written before it are unchanged."""

    LEARNED = "learned"  #: one learned codec at one quality (the ``profile_codec`` notebook)
    STANDARD = "standard"  #: the standard (Pillow) codecs' sweep (the ``profile_standard`` notebook)


def safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in str(s))


@dataclass(frozen=True)
class Run:
    """One run folder and its metadata."""

    path: Path
    meta: dict

    @property
    def host(self) -> str:
        return self.path.parent.parent.parent.name

    @property
    def device(self) -> str:
        """The device as requested ("cpu", "cuda", "cuda:1"); the folder holds a file-safe form of it."""
        return self.meta.get("request", {}).get("device") or self.path.parent.parent.name

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    @property
    def kind(self) -> RunKind:
        return RunKind(self.meta.get("kind", RunKind.LEARNED))

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    @property
    def notebook(self) -> Path:
        return self.path / NOTEBOOK

    @property
    def label(self) -> str:
        return self.meta.get("label", self.path.parent.name)

    def items(self) -> list[dict]:
        return read_items(self.path)


def run_dir(results, host: str, device: str, group: str, run_id: str) -> Path:
    return Path(results) / safe_name(host) / safe_name(device) / safe_name(group) / run_id


def find_run(results, device: str, group: str, run_id: str) -> Path | None:
    """An existing folder of ``run_id`` under any host (a run resumed on another node of its platform)."""
    base = Path(results)
    if not base.is_dir():
        return None
    for host in sorted(p for p in base.iterdir() if p.is_dir() and p.name != CACHE):
        p = host / safe_name(device) / safe_name(group) / run_id
        if (p / RUN_META).exists():
            return p
    return None


def read_meta(path: Path) -> dict:
    try:
        return json.loads((Path(path) / RUN_META).read_text())
    except json.JSONDecodeError as e:
        raise SchemaError(f"{Path(path) / RUN_META} is not valid JSON ({e}); delete that run folder") from None


def write_meta(path: Path, meta: dict) -> None:
    store.atomic_write_json(Path(path) / RUN_META, meta)


def item_file(path: Path, key: str) -> Path:
    return Path(path) / ITEMS / f"{safe_name(key)}.json"


def read_item(path: Path, key: str) -> dict | None:
    f = item_file(path, key)
    if not f.exists():
        return None
    try:
        rec = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # cannot happen with atomic writes; measure again rather than trust it
    return rec if rec.get("schema_version") == SCHEMA_VERSION and rec.get("item") == key else None


def write_item(path: Path, key: str, rec: dict) -> None:
    store.atomic_write_json(item_file(path, key), rec)


def read_items(path: Path) -> list[dict]:
    out = []
    for f in sorted((Path(path) / ITEMS).glob("*.json")):
        rec = json.loads(f.read_text())
        if rec.get("schema_version") == SCHEMA_VERSION:
            out.append(rec)
    return out


#: the cross-decodes of the stored bitstreams (:mod:`lcstudy.runs.decodability`), apart from the runs
DECODES = "_decodability"


def decode_file(results, host: str, run: Run, item: str, decoder: str) -> Path:
    """Where one decode of a stored bitstream (``run``'s ``item``) by ``decoder`` on ``host`` is kept (a run
    copied from another machine keeps its id: its host tells the two apart)."""
    return (Path(results) / DECODES / safe_name(host) / safe_name(run.host) / run.run_id / safe_name(item)
            / f"{safe_name(decoder)}.json")


def read_decodes(results) -> list[dict]:
    """Every cross-decode under ``results`` of this schema (decoders of every host copied into it)."""
    out = []
    for f in sorted((Path(results) / DECODES).glob("*/*/*/*/*.json")):
        try:
            rec = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # cannot happen with atomic writes; the phase writes it again
        if rec.get("schema_version") == SCHEMA_VERSION:
            out.append(rec)
    return out


def table_file(path: Path, name: str) -> Path:
    return Path(path) / f"{name}.csv"


def runs(results, kind: RunKind | str | None = None, warn: bool = True) -> list[Run]:
    """Every run folder under ``results`` of this schema (all hosts and devices), in a stable
    order; folders of other schemas are skipped with one warning (see the module docstring)."""
    base = Path(results)
    if not base.exists():
        raise InputError(f"results folder {base} does not exist; run `make runs` (or `make run CODEC=…`) first")
    found, stale = [], []
    for meta_file in sorted(base.glob(f"*/*/*/*/{RUN_META}")):
        if meta_file.parts[-5] == CACHE:
            continue
        path = meta_file.parent
        meta = read_meta(path)
        if meta.get("schema_version") != SCHEMA_VERSION:
            stale.append(path)
            continue
        if kind is None or meta.get("kind", RunKind.LEARNED) == RunKind(kind):
            found.append(Run(path, meta))
    if stale and warn:
        warnings.warn(f"{len(stale)} run folder(s) under {base} were written with another result schema and are "
                      f"ignored (e.g. {stale[0]}); this lcstudy measures them afresh. `make clean-stale` moves them "
                      "to <results>/_stale/", stacklevel=2)
    return found


def checks(results, before: str | None = None) -> list[Run]:
    """The runs of the reproducibility checks of ``results`` (those made before the check folder named
    ``before``, when given): moments of the machine that widen the intervals across runs, never rows of
    the study's tables."""
    return [r for d in check_dirs(results, before) for r in runs(d, warn=False)]


def check_dirs(results, before: str | None = None) -> list[Path]:
    """The folders of the reproducibility checks of ``results``, oldest first (those made before the check
    folder named ``before``, when given)."""
    base = Path(results) / CHECKS
    return [d for d in sorted(p for p in base.glob("*") if p.is_dir()) if before is None or d.name < before] \
        if base.is_dir() else []


def stale_runs(results) -> list[Path]:
    base = Path(results)
    return [p.parent for p in sorted(base.glob(f"*/*/*/*/{RUN_META}"))
            if p.parts[-5] != CACHE and read_meta(p.parent).get("schema_version") != SCHEMA_VERSION]


def find_complete(results, request_id: str, device: str, run_id: str | None = None,
                  phases: tuple[str, ...] = ()) -> Run | None:
    """A complete run (results and notebook written, every one of ``phases`` done) of ``request_id`` on
    ``device`` — of this exact ``run_id`` (this platform) when given, else on any platform (the cluster's
    submit host does not know on which node a run will land). The one answer to "is this run done?": the
    plan and the runner both ask it."""
    if not Path(results).exists():
        return None
    for r in runs(results, warn=False):
        if r.meta.get("request_id") == request_id and r.device == device and r.complete and r.notebook.exists() \
                and (run_id is None or r.run_id == run_id) and set(phases) <= set(r.meta.get("phases_done", [])):
            return r
    return None


def find_contended(results, request_id: str, device: str | None = None) -> Run | None:
    """A run of ``request_id`` on ``device`` that ended *incomplete: contended* (its notebook written, its
    phases done, only items whose every repeat was contended missing): not a failure, and not complete —
    ``make runs`` measures its missing items again, ``make book`` builds with them named."""
    if not Path(results).exists():
        return None
    for r in runs(results, warn=False):
        if r.meta.get("request_id") == request_id and device in (None, r.device) and not r.complete \
                and r.meta.get("contended_items") and r.notebook.exists():
            return r
    return None


#: the runs that ``make runs``/``make book`` planned into a results folder (their request ids)
PLAN = "plan.json"


def record_plan(results, profile: str, request_ids) -> None:
    """Add the request ids of a plan to the folder's record (a union: ``make runs CODECS=FP`` then
    ``CODECS=HP`` plan both). The chapters compare these runs only; a ``make run`` trial with other
    parameters (1 thread, 64 threads, ARC q5) gets its run page and is listed as another run."""
    f = Path(results) / PLAN
    old = planned_ids(results) or set()
    store.atomic_write_json(f, {"profile": profile, "request_ids": sorted(old | set(request_ids))})


def planned_ids(results) -> set[str] | None:
    """The request ids planned into ``results`` (:func:`record_plan`); None when nothing was planned there
    (only ``make run`` trials: every run is compared)."""
    f = Path(results) / PLAN
    try:
        return set(json.loads(f.read_text())["request_ids"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mac_cache(results, key: str) -> Path:
    return Path(results) / CACHE / "macs" / f"{key}.csv"


def peak_cache(results, key: str) -> Path:
    return Path(results) / CACHE / "peak" / f"{key}.json"


def check_writable(results) -> None:
    """That ``results`` is (or can become) a writable folder: a temporary file is made and removed in
    it, or in its nearest existing parent; no folder is created."""
    import tempfile

    p = Path(results)
    if p.exists() and not p.is_dir():
        raise InputError(f"RESULTS_DIR {p} is a file, not a folder; give a folder (it is created if missing)")
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"RESULTS_DIR {p}: {probe} is a file, not a folder; give another RESULTS_DIR")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        what = "is not writable" if probe == p else f"cannot be created in {probe}"
        raise InputError(f"RESULTS_DIR {p} {what} ({e.strerror}); give a folder you can write to") from None
