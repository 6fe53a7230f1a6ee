"""Peak memory of one encode and one decode, read around the timed codings themselves.

CPU: the kernel's peak-RSS counter of this process (``VmHWM`` in ``/proc/self/status``) is reset
through ``/proc/self/clear_refs`` (Linux ≥ 4.0) just before a timed call and read just after it,
outside the clock reads; ``baseline_mb`` is the RSS just before the call (interpreter, torch,
model, images), ``peak_mb`` the high-water mark during it, and the working set is their
difference. Where ``clear_refs`` cannot be written, the process's lifetime peak (``ru_maxrss``)
is reported instead and ``method`` says so.

CUDA: ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` after
``reset_peak_memory_stats``, read after the call's synchronisation.

Why in the run's own process, and not in a fresh one as before: a run notebook's kernel is
a fresh process holding one codec, so nothing another codec allocated colours it, and a
second import of torch plus two more codings (five minutes for an autoregressive codec at
4K) bought nothing.
"""
from __future__ import annotations

import re
import resource
from pathlib import Path

METHOD_HWM = "VmHWM reset via clear_refs"
METHOD_MAXRSS = "ru_maxrss (lifetime peak)"


def _status_kb(field: str) -> int:
    m = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(m.group(1)) if m else 0


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_free_heap() -> bool:
    """Give the allocator's free memory back to the system (glibc ``malloc_trim(0)``); False where there is
    no glibc. Called before each item, outside every timed call: what earlier items freed but the heap
    kept would otherwise sit in the next item's RSS baseline and be reused without raising the peak, so
    an item's working set would depend on what was measured before it in the same process (a 512² crop
    read 25 % less after larger images had been loaded; the same item from a clean heap reads alike)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


class PeakMemory:
    """``begin()`` just before a call, ``end()`` just after: the call's peak memory (MB)."""

    def __init__(self, device="cpu"):
        import torch

        self.device = torch.device(device)
        self._base = 0
        self._ok = False
        self._cuda_base = 0
        self._cuda_reserved = 0

    def begin(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._cuda_base = torch.cuda.memory_allocated(self.device)
            self._cuda_reserved = torch.cuda.memory_reserved(self.device)
        self._base = _status_kb("VmRSS")
        self._ok = _reset_hwm()

    def end(self) -> list[dict]:
        import torch

        peak = _status_kb("VmHWM") if self._ok else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows = [{"memory": "cpu_rss", "baseline_mb": self._base / 1024, "peak_mb": peak / 1024,
                 "method": METHOD_HWM if self._ok else METHOD_MAXRSS}]
        if self.device.type == "cuda":
            rows.append({"memory": "cuda_allocated", "baseline_mb": self._cuda_base / 2**20,
                         "peak_mb": torch.cuda.max_memory_allocated(self.device) / 2**20,
                         "method": "torch.cuda.max_memory_allocated"})
            rows.append({"memory": "cuda_reserved", "baseline_mb": self._cuda_reserved / 2**20,
                         "peak_mb": torch.cuda.max_memory_reserved(self.device) / 2**20,
                         "method": "torch.cuda.max_memory_reserved"})
        return rows
