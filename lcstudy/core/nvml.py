"""The NVML handle of a torch CUDA device: what both the GPU contention check
(:class:`lcstudy.core.contention.GpuContention`, other processes on our GPU) and the GPU energy counter
(:class:`lcstudy.core.energy.NvmlMeter`) read. A module of its own so that neither of those two imports the
other for it (the contention monitor brackets every call with an energy probe, so contention imports energy).
"""
from __future__ import annotations


def nvml_handle(device):
    """(pynvml, the NVML handle of the GPU that the torch ``device`` names), or (None, None) without NVML.

    Found by the device's UUID: NVML's and CUDA's orders differ, and ``CUDA_VISIBLE_DEVICES`` renumbers."""
    import torch

    device = torch.device(device)
    try:
        import pynvml

        pynvml.nvmlInit()
        idx = device.index if device.index is not None else torch.cuda.current_device()
        uuid = str(torch.cuda.get_device_properties(idx).uuid)
        try:
            return pynvml, pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except Exception:  # noqa: BLE001 - an NVML without UUID lookups: the index, as CUDA numbers it
            return pynvml, pynvml.nvmlDeviceGetHandleByIndex(idx)
    except Exception:  # noqa: BLE001 - no NVML, no driver: nothing to read
        return None, None
