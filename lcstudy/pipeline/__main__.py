"""``python -m lcstudy.pipeline``: what the Makefile calls.

``run [--notebook N] name=value …``   one run notebook (``make run``)
``runs --profile P [--executor local|slurm] name=value …``   every missing run of a profile (``make runs``)
``missing --profile P``                 exit 1 and name them if planned runs have no results
``chapters --results-dir R``            execute the chapter notebooks over the results
``book --results-dir R``                the table of contents, run pages, downloads and machines pages
``cost --profile P --nodes 1,4,16``     what the runs cost, measured and predicted
``weights --profile P``                 fetch every pretrained checkpoint the profile needs
``clean-stale --results-dir R``         move run folders of other result schemas out of the way
``ipynb NAME DEST``                     a notebook as .ipynb, for plain papermill
``params [learned|standard]``          a run kind's notebook parameters, one per line (the one list)
"""
from __future__ import annotations

import argparse
import sys

from ..errors import InputError, LcstudyError


def _kv(items: list[str]) -> dict:
    out = {}
    for kv in items:
        if "=" not in kv:
            raise LcstudyError(f"expected name=value, got {kv!r}")
        k, v = kv.split("=", 1)
        out[k.strip().lower()] = v
    return out


def _profile(a):
    """The profile, with its deployment backends replaced where ``--backends`` (make ``BACKENDS``) says so:
    ``none`` plans no backend run (a book without the Deployment chapter's runs), ``'onnxruntime compile'``
    plans those."""
    import dataclasses

    from ..core.backends import BACKENDS
    from ..runs.profiles import get_profile

    prof = get_profile(a.profile)
    given = getattr(a, "backends", None)
    if given is None:
        return prof
    names = () if given.strip().lower() in ("none", "") else tuple(given.split())
    bad = [n for n in names if n not in BACKENDS or n == "eager"]
    if bad:
        raise InputError(f"BACKENDS={given!r}: {', '.join(bad)} is not a deployment backend; valid: none or any of "
                         f"{', '.join(b for b in BACKENDS if b != 'eager')}")
    return dataclasses.replace(prof, backends=names)


def _devices(a) -> list[str]:
    from .plan import default_devices

    return a.devices.split() if a.devices else default_devices()


def _resolved(a, any_platform: bool = False):
    from ..runs.params import parse_value
    from .cost import predict
    from .plan import plan, resolve_plan

    prof = _profile(a)
    overrides = {k: parse_value(v) for k, v in _kv(a.params).items()}
    planned = plan(prof, _devices(a), a.codecs.split() if a.codecs else None)
    resolved = resolve_plan(planned, prof, a.results_dir, overrides, any_platform=any_platform)
    predict(resolved, a.results_dir)
    return resolved


def cmd_run(a) -> int:
    import os

    from .runner import run_notebook

    params = _kv(a.params)
    params.setdefault("results_dir", a.results_dir)
    return run_notebook(a.notebook, params, wait=not os.environ.get("LCSTUDY_NOWAIT"), force=a.force)


def cmd_runs(a) -> int:
    import os

    from ..runs.layout import record_plan

    if a.executor not in ("local", "slurm"):
        raise LcstudyError(f"EXECUTOR={a.executor!r}: must be local or slurm")
    if a.executor == "slurm":
        from . import slurm

        slurm.check_available()
        slurm.settle(a.results_dir)  # tasks still ending (a cancelled run stopping) first: then judge the runs
    resolved = _resolved(a, any_platform=a.executor == "slurm")
    record_plan(a.results_dir, a.profile, [r.request.request_id for r in resolved])  # what the chapters compare
    if a.executor == "slurm":
        return slurm.execute(resolved, a)
    from . import local

    return local.execute(resolved, wait=not os.environ.get("LCSTUDY_NOWAIT"))


def _contended_ok(rc: int, a) -> int:
    from ..runs.protocol import EXIT_CONTENDED

    return 0 if rc == EXIT_CONTENDED and getattr(a, "contended_ok", False) else rc


def cmd_task(a) -> int:
    from .slurm import run_task

    return run_task(a.tasks_file, a.index)


def cmd_missing(a) -> int:
    """Exit 1 naming the planned runs with no results. A run that ended *incomplete: contended* is not
    missing: the book is built with its missing items named; ``--status`` then exits 3 and says it again
    (the last word of ``make book``)."""
    from ..runs import layout
    from ..runs.protocol import EXIT_CONTENDED, contended_statement

    resolved = _resolved(a, any_platform=True)
    absent = [r for r in resolved if r.done is None]
    partial = {r.planned.describe(): layout.find_contended(a.results_dir, r.request.request_id, r.request.device)
               for r in absent}
    partial = {k: v for k, v in partial.items() if v is not None}
    missing = [r for r in absent if r.planned.describe() not in partial]
    if missing:
        print(f"error: {len(missing)} of {len(resolved)} planned runs have no results in {a.results_dir}: "
              + "; ".join(r.planned.describe() for r in missing)
              + ". Run them (`make runs`, or resubmit with EXECUTOR=slurm) before building the book, or build "
                "what there is with `make chapters html`", file=sys.stderr)
        return 1
    if partial and (a.status or not a.quiet):
        from .local import incomplete_summary

        for run in partial.values():
            print(contended_statement(run.meta), file=sys.stderr)
        print(incomplete_summary(list(partial)) + (". The book names the missing items on the run pages."
                                                     if a.status else ""), file=sys.stderr)
    return EXIT_CONTENDED if partial and a.status else 0


def cmd_decodability(a) -> int:
    from ..runs.decodability import execute

    from ..errors import InputError

    from ..runs.profiles import get_profile

    profile = get_profile(a.profile)  # an unknown one is refused even where DECODE_LIMIT is given
    if a.limit is None or a.limit == "":  # the profile's (make book PROFILE=quick: 1 image a run)
        a.limit = str(profile.decode_limit)
    if a.limit != "all" and not (a.limit.isdigit() and int(a.limit) > 0):
        raise InputError(f"DECODE_LIMIT={a.limit!r}: give a number of images per run (≥ 1) or all")
    return execute(a.results_dir, a.backends.split() if a.backends is not None else None,
                   limit=None if a.limit == "all" else int(a.limit), qualities=a.qualities)


def cmd_chapters(a) -> int:
    from .book import execute_chapters

    return execute_chapters(a.results_dir, a.reference, a.only.split(",") if a.only else None)


def cmd_book(a) -> int:
    from .book import write_book

    write_book(a.results_dir)
    return 0


def cmd_cost(a) -> int:
    from .cost import report

    nodes = [int(n) for n in a.nodes.split(",")] if a.nodes else [1]
    print(report(_resolved(a, any_platform=True), a.results_dir, nodes))
    return 0


def cmd_weights(a) -> int:
    from .checkpoints import fetch_all

    return fetch_all(_profile(a), a.codecs.split() if a.codecs else None)


def cmd_clean_stale(a) -> int:
    import shutil
    from pathlib import Path

    from ..runs.layout import stale_runs

    moved = 0
    for p in stale_runs(a.results_dir):
        dest = Path(a.results_dir) / "_stale" / p.relative_to(a.results_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(p), str(dest))
        moved += 1
    print(f"moved {moved} run folder(s) of other result schemas to {Path(a.results_dir) / '_stale'}")
    return 0


def cmd_ipynb(a) -> int:
    from .notebooks import ipynb

    print(ipynb(a.name, a.dest))
    return 0


def cmd_params(a) -> int:
    """The one list of a run kind's notebook parameters (:data:`lcstudy.runs.params.RUN_NOTEBOOKS`): the
    Makefile's ``NB_PARAMS``, the notebooks and the README are tested against it."""
    from ..runs.params import RUN_NOTEBOOKS

    if a.kind not in RUN_NOTEBOOKS:
        raise InputError(f"params {a.kind!r}: not a run kind; valid: {', '.join(RUN_NOTEBOOKS)}")
    print("\n".join(RUN_NOTEBOOKS[a.kind][1]))
    return 0


def main(argv=None) -> int:
    import warnings

    warnings.simplefilter("ignore", FutureWarning)
    ap = argparse.ArgumentParser(prog="python -m lcstudy.pipeline")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def planned(name, **kw):
        p = sub.add_parser(name, **kw)
        p.add_argument("--profile", default="standard")
        p.add_argument("--devices", default="")
        p.add_argument("--codecs", default="")
        p.add_argument("--backends", default=None, help="the deployment backends to plan (none: no backend run)")
        p.add_argument("--results-dir", default="results")
        p.add_argument("params", nargs="*", help="name=value parameters for every run (WEIGHTS=random …)")
        return p

    r = sub.add_parser("run")
    r.add_argument("params", nargs="*", help="name=value notebook parameters (and profile=NAME)")
    r.add_argument("--notebook", default="profile_codec", help="profile_codec (default) or profile_standard")
    r.add_argument("--results-dir", default="results")
    r.add_argument("--force", action="store_true", help="execute even if the run is complete")
    rs = planned("runs")
    rs.add_argument("--executor", default="local")
    rs.add_argument("--wait", default="1", help="slurm: wait for the jobs (1) or return after submitting (0)")
    rs.add_argument("--contended-ok", action="store_true", help="exit 0, not 3, when runs ended incomplete: "
                    "contended (make book goes on to build, then says so)")
    ms = planned("missing")
    ms.add_argument("--status", action="store_true", help="exit 3 if runs ended incomplete: contended")
    ms.add_argument("--quiet", action="store_true", help="say nothing of runs incomplete: contended")
    c = planned("cost")
    c.add_argument("--nodes", default="1")
    planned("weights")
    dc = sub.add_parser("decodability", help="decode the stored, fingerprinted bitstreams under each decoder configuration here")
    dc.add_argument("--results-dir", default="results")
    dc.add_argument("--limit", default=None, help="images per run whose streams are decoded (all: every one "
                    "the run fingerprinted, see FINGERPRINTS; default: the profile's)")
    dc.add_argument("--profile", default="standard", help="whose decode limit applies when --limit is not given")
    dc.add_argument("--qualities", default="lowest", help="lowest (each codec's lowest quality) or all")
    dc.add_argument("--backends", default=None, help="the backends to decode with (default: those the folder "
                    "holds runs of; '' for none)")
    ch = sub.add_parser("chapters")
    ch.add_argument("--results-dir", default="results")
    ch.add_argument("--reference", default="data/reference")
    ch.add_argument("--only", default="")
    b = sub.add_parser("book")
    b.add_argument("--results-dir", default="results")
    cs = sub.add_parser("clean-stale")
    cs.add_argument("--results-dir", default="results")
    tk = sub.add_parser("task", help="what a SLURM array task runs: one line of its tasks file")
    tk.add_argument("tasks_file")
    tk.add_argument("index", type=int)
    nb = sub.add_parser("ipynb")
    nb.add_argument("name")
    nb.add_argument("dest")
    pa = sub.add_parser("params", help="a run notebook's parameters, one per line")
    pa.add_argument("kind", nargs="?", default="learned", help="learned (default) or standard")
    a = ap.parse_args(argv)
    from .signals import install

    install()  # SIGTERM and SIGHUP (to this process or to the make above it) stop it as Ctrl-C does
    try:
        fn = {"run": cmd_run, "runs": cmd_runs, "missing": cmd_missing, "chapters": cmd_chapters,
              "book": cmd_book, "cost": cmd_cost, "weights": cmd_weights, "clean-stale": cmd_clean_stale,
              "ipynb": cmd_ipynb, "task": cmd_task, "params": cmd_params, "decodability": cmd_decodability}[a.cmd]
        return _contended_ok(fn(a), a)
    except LcstudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to go on where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
