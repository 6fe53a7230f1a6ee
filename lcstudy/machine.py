"""The machine's arithmetic ceiling: the roofline's flat line.

A large float32 matrix product is the best case for a CPU or GPU (dense, cache-blocked,
vectorised by oneDNN/MKL or cuBLAS); its rate is the practical peak that a codec stage's
achieved MAC rate is compared with. Measured in the run's own process, under the timing
lock and with the run's thread count, and recorded in the run's provenance
(``peak_matmul_gflops``), because it differs between machines, thread counts and even VMs
of one type.
"""
from __future__ import annotations

import functools
import time

import torch


@functools.lru_cache(maxsize=None)
def _peak(device: str, threads: int, n: int, repeats: int) -> float:
    dev = torch.device(device)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator(device="cpu").manual_seed(0)
        a = torch.rand(n, n, generator=g).to(dev)
        b = torch.rand(n, n, generator=g).to(dev)
        best = float("inf")
        with torch.inference_mode():
            torch.mm(a, b)  # warm-up: the first call picks kernels and allocates
            for _ in range(repeats):
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
                torch.mm(a, b)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                best = min(best, time.perf_counter() - t0)
        return 2 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(prev)


def peak_matmul(device="cpu", threads: int | None = None) -> dict:
    """Best of 5 float32 ``n×n @ n×n`` products (n = 2048 on CPU, 8192 on CUDA), in GFLOP/s.

    The best, not the median: the ceiling is what the hardware can do, and a 2-core VM's
    noise only ever makes a product slower.
    """
    dev = torch.device(device)
    n = 8192 if dev.type == "cuda" else 2048
    threads = int(threads or torch.get_num_threads())
    gflops = _peak(str(dev), threads, n, 5)
    return {"peak_matmul_gflops": round(gflops, 2), "peak_matmul_n": n, "peak_matmul_threads": threads}
