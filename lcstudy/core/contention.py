"""Contention: how much of the machine the rest of the world used while we were timing.

A timing is only honest if nothing else ran beside it. The timing lock keeps two study runs
apart, but a shared workstation, a build, a browser or a cluster node without ``--exclusive``
load the machine too, and nothing in the numbers would say so. So every timed call is
bracketed by two reads of the CPU time of the whole machine (``/proc/stat`` through psutil:
user, nice, system, irq and softirq) and of this process (all its threads): the difference is the
CPU time the *rest* of the machine used during the call.

*Steal* (the hypervisor running other guests on our virtual CPUs) is recorded apart (``steal_s``),
not counted as other processes: traced on the 2-core VM (``LCSTUDY_CONTENTION_TRACE=1``, issue 26
point 7), every "phantom" flag of an idle machine was steal that rose exactly while a codec's own
threads used both virtual CPUs (x265's pool: 0.04–0.07 s of steal in 0.06–0.13 s calls, no other
process running) — a property of the platform under multi-threaded load, present in every run on
it, not a transient neighbour; counting it flagged multi-threaded standard codecs systematically.

A sample is **contended** when the rest of the machine used more than
:data:`OTHER_CORES` of a core on average during the call and at least :data:`MIN_OTHER_S`
seconds in all (the kernel counts CPU time in 10 ms ticks, so a shorter call cannot be
judged finer than that). Contended samples are kept, flagged, left out of the medians and
measured again (a bounded number of times, :class:`lcstudy.core.stats.StopRule.max_redo`).

On CUDA, the compute processes on the same GPU other than this one (NVML, through
``pynvml``) are counted too: any other process with GPU memory while a call ran contends.
"""
from __future__ import annotations

import os

from .nvml import nvml_handle

#: Average number of cores the rest of the machine may use during a timed call before it is contended.
OTHER_CORES = 0.25
#: ...and at least this many CPU seconds in all (three 10 ms ticks of /proc/stat).
MIN_OTHER_S = 0.03


def _busy(t) -> float:
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


#: ``LCSTUDY_CONTENTION_TRACE=1``: every timed call also names where the others' CPU time went (see
#: :class:`CpuContention`); costs a walk of the process table around each call, outside the clock
TRACE_ENV = "LCSTUDY_CONTENTION_TRACE"
_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


def _procs(psutil, me: int) -> dict[int, tuple[str, float]]:
    """pid → (name, CPU seconds) of every other process (kernel threads included)."""
    out = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        t = p.info.get("cpu_times")
        if p.pid != me and t is not None:
            out[p.pid] = (p.info.get("name") or "?", t.user + t.system)
    return out


class CpuContention:
    """``begin()`` before a timed call, ``end()`` after it: the other processes' CPU seconds.

    With ``LCSTUDY_CONTENTION_TRACE=1`` the read also says where that time went — the machine's
    counters by field (user, system, irq, softirq, steal: interrupt and hypervisor time belong to no
    process) and the processes that used the most (``top``: name, pid, CPU s) — so that a flag with no
    visible culprit can be traced to a daemon, a kernel thread or the accounting itself."""

    def __init__(self, trace: bool | None = None):
        import psutil

        self._psutil = psutil
        self._me = psutil.Process(os.getpid())
        self._t0 = None
        self.trace = os.environ.get(TRACE_ENV, "") not in ("", "0") if trace is None else trace

    def begin(self) -> None:
        import time

        ps = self._psutil
        self._procs0 = _procs(ps, self._me.pid) if self.trace else None
        self._sys0 = ps.cpu_times()
        mine = self._me.cpu_times()
        self._t0 = (time.perf_counter(), _busy(self._sys0), mine.user + mine.system)

    def end(self) -> dict:
        import time

        wall0, sys0, me0 = self._t0
        mine = self._me.cpu_times()
        wall = time.perf_counter() - wall0
        sys1 = self._psutil.cpu_times()
        other = max(_busy(sys1) - sys0 - (mine.user + mine.system - me0), 0.0)
        out = {"other_cpu_s": other, "window_s": wall, "contended": is_contended(other, wall),
               "steal_s": max(getattr(sys1, "steal", 0.0) - getattr(self._sys0, "steal", 0.0), 0.0)}
        if self.trace:
            out["own_cpu_s"] = mine.user + mine.system - me0
            out["fields_s"] = {f: round(getattr(sys1, f, 0.0) - getattr(self._sys0, f, 0.0), 4) for f in _FIELDS}
            after = _procs(self._psutil, self._me.pid)
            used = sorted(((after[p][1] - b, n, p) for p, (n, b) in self._procs0.items() if p in after),
                          reverse=True)
            out["top"] = [[n, p, round(d, 4)] for d, n, p in used[:5] if d > 0]
        return out


def is_contended(other_cpu_s: float, wall_s: float) -> bool:
    # /proc/stat counts each CPU in 10 ms ticks: the difference of two reads can be off by about a tick per
    # busy CPU, so the floor grows with the machine (30 ms on 2 CPUs, 160 ms on 16)
    floor = max(MIN_OTHER_S, 0.01 * (os.cpu_count() or 1))
    return bool(other_cpu_s >= floor and other_cpu_s > OTHER_CORES * wall_s)


_GPU_BASELINE: dict[str, set[int]] = {}


class GpuContention:
    """Other compute processes on our GPU (NVML); a no-op where NVML is missing.

    The NVML device is found by the torch device's UUID (:func:`lcstudy.core.nvml.nvml_handle`). NVML reports
    host process ids, which inside a container are not ours: so the processes on the GPU when the run first
    looks (after its model is on the GPU) are the baseline — the run's own, and any that already shared the GPU, recorded in the run (``gpu_processes``)
    — and a process that appears beside them during a timed call contends.
    """

    def __init__(self, device):
        import torch

        self.device = torch.device(device)
        self._nvml, self.handle = nvml_handle(self.device)
        key = str(self.device)
        if key not in _GPU_BASELINE:
            _GPU_BASELINE[key] = self._pids()
        self.baseline = _GPU_BASELINE[key]
        self._seen: set[int] = set()

    def _pids(self) -> set[int]:
        if self.handle is None:
            return set()
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        except Exception:  # noqa: BLE001
            return set()
        return {p.pid for p in procs}

    def begin(self) -> None:
        self._seen = self._pids()

    def end(self) -> dict:
        new = (self._seen | self._pids()) - self.baseline - {os.getpid()}
        return {"other_gpu_processes": len(new), "gpu_processes_at_start": len(self.baseline),
                "contended": bool(new)}


class Monitor:
    """What the protocol brackets every timed call with: contention (CPU, and GPU on CUDA), energy
    (:mod:`lcstudy.core.energy`, where exposed) and peak memory. ``begin(direction)`` /
    ``end(direction)`` (called by :func:`lcstudy.core.instrument.encode_decode`); ``take()`` returns
    and clears what was read."""

    def __init__(self, device, memory: bool = True):
        from .energy import EnergyProbe
        from .memory import PeakMemory

        self.cpu = CpuContention()
        self.gpu = GpuContention(device) if str(device).startswith("cuda") else None
        self.energy = EnergyProbe(device)
        self.mem = PeakMemory(device) if memory else None
        self.reads: dict[str, dict] = {}

    def begin(self, direction: str) -> None:
        if self.mem is not None:
            self.mem.begin()
        if self.gpu is not None:
            self.gpu.begin()
        self.energy.begin()
        self.cpu.begin()  # last before the clock starts, first after it stops

    def end(self, direction: str) -> None:
        c = self.cpu.end()
        c.update(self.energy.end())
        if self.gpu is not None:
            g = self.gpu.end()
            c = {**c, **g, "contended": c["contended"] or g["contended"]}
        c["memory"] = self.mem.end() if self.mem is not None else []
        self.reads[direction] = c

    def take(self) -> dict[str, dict]:
        out, self.reads = self.reads, {}
        return out
