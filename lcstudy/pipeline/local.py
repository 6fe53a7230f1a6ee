"""The local executor: the missing runs of a plan, one after another on this machine.

Shortest predicted run first (:mod:`lcstudy.pipeline.cost`): a long run never holds back a
short one, so the standard-codec run and the fast codecs are in (and their chapters could be
built) long before the autoregressive codecs at 4K finish. A failed run is reported and the
others go on; the exit status says whether all succeeded: 1 if one failed, else 3 if a run ended
incomplete because some of its items were contended throughout (named again at the end), else 0.
"""
from __future__ import annotations

import sys


def execute(resolved: list, wait: bool = True) -> int:
    from ..runs.protocol import EXIT_CONTENDED
    from .cost import fmt_seconds
    from .runner import run_notebook

    todo = sorted((r for r in resolved if r.done is None), key=lambda r: r.predicted_s)
    done = len(resolved) - len(todo)
    total = sum(r.predicted_s for r in todo)
    print(f"plan: {len(resolved)} runs, {done} already measured, {len(todo)} to run"
          + (f" (predicted {fmt_seconds(total)})" if todo else ""), flush=True)
    for r in resolved:
        for note in r.notes:
            print(f"note: {note}", flush=True)
    failed, contended = [], []
    eta = PlanClock(total)
    for i, r in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {r.planned.describe()} — predicted {fmt_seconds(r.predicted_s)}; "
              f"{eta.line()}", flush=True)
        params = {**r.request_params}
        rc = run_notebook(r.planned.notebook, params, wait=wait)
        eta.finished(r.predicted_s)
        if rc == 130:
            return 130
        if rc == EXIT_CONTENDED:
            contended.append(r.planned.describe())
        elif rc != 0:
            failed.append(r.planned.describe())
    if failed:
        print(f"error: {len(failed)} run(s) failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    if contended:
        print(incomplete_summary(contended), file=sys.stderr)
        return EXIT_CONTENDED
    print(f"runs done: {len(resolved)} runs ({eta.line()})", flush=True)
    return 0


def incomplete_summary(described: list[str]) -> str:
    """The closing line of ``make runs`` (local or SLURM) when runs ended incomplete: contended."""
    return (f"incomplete: {len(described)} run(s) have items whose every repeat was contended by other processes: "
            f"{'; '.join(described)} (each named its items above). What was measured is written; run the same "
            "command again when the machine is quiet to measure only those items (exit status 3)")


class PlanClock:
    """The plan's elapsed and remaining time: the cost model's prediction of the runs left, scaled by how
    the finished runs compared with theirs (a slower or busier machine than the reference VM, a cold
    weights cache), so the estimate corrects itself as runs finish."""

    def __init__(self, predicted_total: float):
        import time

        self.t0 = time.monotonic()
        self.left = predicted_total  # predicted seconds of the runs not finished
        self.done_predicted = 0.0

    def finished(self, predicted_s: float) -> None:
        self.left -= predicted_s
        self.done_predicted += predicted_s

    def line(self) -> str:
        import time

        from .cost import fmt_seconds

        elapsed = time.monotonic() - self.t0
        scale = elapsed / self.done_predicted if self.done_predicted > 0 else 1.0
        remaining = max(self.left, 0.0) * scale
        return (f"plan: {fmt_seconds(elapsed)} elapsed, ~{fmt_seconds(remaining)} left"
                + (f" (runs so far took {scale:.1f}× their prediction)" if self.done_predicted > 0 else ""))
