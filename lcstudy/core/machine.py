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

from .clocks import threads as _threads


@functools.lru_cache(maxsize=None)
def _peak(device: str, threads: int, n: int, repeats: int) -> float:
    import torch

    dev = torch.device(device)
    with _threads(threads):
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


def peak_matmul(device="cpu", threads: int | None = None) -> dict:
    """Best float32 ``n×n @ n×n`` rate in GFLOP/s: best of 10 at n = 2048 and of 2 at 4096 on a
    CPU (8192 on CUDA, best of 5).

    The best, not the median: the ceiling is what the hardware can do, and a 2-core VM's noise
    only ever makes a product slower (on this VM one 2048² product ranged from 184 to 282 GFLOP/s
    between moments).
    """
    import torch

    dev = torch.device(device)
    threads = int(threads or torch.get_num_threads())
    if dev.type == "cuda":
        best = {8192: _peak(str(dev), threads, 8192, 5)}
    else:
        best = {2048: _peak(str(dev), threads, 2048, 10), 4096: _peak(str(dev), threads, 4096, 2)}
    n = max(best, key=best.get)
    return {"peak_matmul_gflops": round(best[n], 2), "peak_matmul_n": n, "peak_matmul_threads": threads}
