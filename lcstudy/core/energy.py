"""Energy per timed call, where the platform exposes a counter: NVML on a CUDA GPU, RAPL on a CPU.

Both are **cumulative hardware counters read around each timed call** (by the same
:class:`~lcstudy.core.contention.Monitor` that reads contention and memory), so a call's energy is
the difference of two reads — never a power reading integrated by hand:

- **CUDA**: NVML's ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded; Volta
  and later). It is the whole board's energy: idle power included, and another process on the GPU
  counts too — which is why the contention rule applies to energy as it does to time. The driver
  refreshes the counter every few tens of milliseconds, so a single call shorter than that reads
  coarsely; the tables report the median over the repeats, like the times.
- **CPU**: RAPL through ``/sys/class/powercap`` (the ``intel-rapl`` powercap zones, which the kernel
  also uses for AMD's RAPL): the package zones (``intel-rapl:N``, named ``package-N``), summed over
  sockets. Sub-zones (core, uncore, dram) are inside a package or beside it and would be counted twice;
  ``psys`` overlaps the packages. Each zone's ``energy_uj`` wraps at ``max_energy_range_uj``: one wrap
  per call is undone (a counter of 2^32 µJ wraps after minutes even at full power; a timed call is
  seconds). On most VMs the zones are absent, or readable by root only: then "not exposed on this
  platform", with the reason, in the run's provenance.

``LCSTUDY_POWERCAP`` points the RAPL reader at another tree (the tests use a fake one).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

NOT_EXPOSED = "not exposed on this platform"


class RaplMeter:
    """The package zones of a powercap tree; :meth:`read` returns raw µJ per zone."""

    source = "rapl"

    def __init__(self, root: str | os.PathLike | None = None):
        root = Path(root or os.environ.get("LCSTUDY_POWERCAP") or "/sys/class/powercap")
        zones = []
        for z in sorted(root.glob("intel-rapl:*")):
            if z.name.count(":") != 1:  # a sub-zone: inside its package
                continue
            try:
                name = (z / "name").read_text().strip()
                rng = int((z / "max_energy_range_uj").read_text())
                int((z / "energy_uj").read_text())
            except (OSError, ValueError) as e:
                raise LookupError(f"RAPL zone {z} not readable ({getattr(e, 'strerror', None) or e})") from e
            if name.startswith("package"):
                zones.append((z / "energy_uj", rng))
        if not zones:
            raise LookupError(f"no RAPL package zone under {root}")
        self.zones = zones

    def read(self) -> tuple[int, ...]:
        return tuple(int(p.read_text()) for p, _ in self.zones)

    def joules(self, a: tuple[int, ...], b: tuple[int, ...]) -> float:
        total = 0
        for (_, rng), x, y in zip(self.zones, a, b):
            total += y - x if y >= x else y + rng - x  # the counter wrapped once
        return total / 1e6


class NvmlMeter:
    """The board's total-energy counter of the GPU that ``device`` names."""

    source = "nvml"

    def __init__(self, device):
        from .nvml import nvml_handle

        nvml, handle = nvml_handle(device)
        if handle is None:
            raise LookupError("NVML not available (no driver or no nvidia-ml-py)")
        self._nvml, self._h = nvml, handle
        try:
            self.read()
        except Exception as e:  # noqa: BLE001 - pre-Volta boards, or a driver that refuses
            raise LookupError(f"NVML has no energy counter for this GPU ({e})") from e

    def read(self) -> int:
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._h))

    def joules(self, a: int, b: int) -> float:
        return (b - a) / 1e3


@lru_cache(maxsize=None)
def meter_for(device: str):
    """(meter, "") for the device's counter, or (None, why not): read once per process and device."""
    try:
        return (NvmlMeter(device) if str(device).startswith("cuda") else RaplMeter()), ""
    except LookupError as e:
        return None, f"{NOT_EXPOSED} ({e})"


def describe(device: str) -> str:
    """For the run's provenance: where its energy figures come from, or why there are none."""
    meter, why = meter_for(str(device))
    if meter is None:
        return why
    return {"nvml": "NVML board energy counter (whole GPU board)",
            "rapl": "RAPL package energy (/sys/class/powercap, all CPU packages)"}[meter.source]


class EnergyProbe:
    """``begin()`` / ``end()`` around a timed call: ``{"energy_j", "energy_source"}``, or {} where the
    platform exposes no counter."""

    def __init__(self, device):
        self.meter, _ = meter_for(str(device))
        self._a = None

    def begin(self) -> None:
        if self.meter is not None:
            self._a = self.meter.read()

    def end(self) -> dict:
        if self.meter is None or self._a is None:
            return {}
        return {"energy_j": self.meter.joules(self._a, self.meter.read()), "energy_source": self.meter.source}
