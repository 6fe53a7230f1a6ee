"""Benchmarks that print a table (targets live here, not in timed unit tests).

``python -m lcstudy.pipeline.bench overhead``: per codec, the median ratio of the instrumented
encode+decode time to the plain ``compress()``+``decompress()`` time on one Kodak image,
interleaved (plain, instrumented, plain, …) so that drift on a noisy machine hits both.
Target: ≤ 1.01.

``python -m lcstudy.pipeline.bench startup``: the fixed cost of a run notebook outside its measurement, in its
parts, each in fresh processes (a notebook's kernel is one), interleaved so drift hits every part alike:
the interpreter, the kernel's start (jupyter_client, as papermill starts it), the study's imports with
CompressAI imported whole and without torch_geometric and torchvision (:mod:`lcstudy.core.lean_import`), loading a
codec, building the run page of a tiny run, and the kernel's exit (papermill's graceful shutdown, and the stop at
once that :mod:`lcstudy.pipeline.notebooks` gives a finished notebook). Medians over the repeats. Beside them, what
the runner pays once before any notebook: the zoo's URL table for ``WEIGHTS=auto``, imported or kept
(:func:`lcstudy.core.weights.zoo_urls`).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import warnings
from pathlib import Path

import torch


def overhead(images: Path, image: str, repeats: int, codecs: list[str], crop: int | None, device: str = "cpu") -> int:
    from ..core.clocks import StageClock
    from ..core.images import load_image, pad
    from ..core.instrument import encode_decode, plain_encode_decode
    from ..core.codec_loading import load_codec
    from ..core.codec_sources import get_spec
    from ..core.codec_table import CODECS

    path = Path(images) / f"{image}.png"
    im = load_image(path, crop=crop)
    x, _ = pad(im.x)
    x = x.to(device)
    names = codecs or [s.label for s in CODECS]
    print(f"instrumentation overhead on {path.name} ({im.width}x{im.height}), {repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads, random weights (seed 0); target ratio <= 1.01")
    print(f"{'codec':8} {'plain s':>9} {'instr. s':>9} {'ratio':>7} {'IQR/med':>8}  verdict")
    worst = 0.0
    for name in names:
        codec = load_codec(name, get_spec(name).qualities[0], weights="random", device=device)
        clock = StageClock(codec.device)
        plain_encode_decode(codec, x)  # warm-up both paths
        encode_decode(codec, x, clock)
        ratios, plain, instr = [], [], []
        for _ in range(repeats):
            te, td, _, _ = plain_encode_decode(codec, x)
            r = encode_decode(codec, x, clock)
            p, i = te + td, r.encode["total"] + r.decode["total"]
            plain.append(p)
            instr.append(i)
            ratios.append(i / p)
        med = statistics.median(ratios)
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [med, med, med]
        spread = (q[2] - q[0]) / med
        worst = max(worst, med)
        verdict = "ok" if med <= 1.01 else ("within noise" if med - 1 <= (q[2] - q[0]) else "over target")
        print(f"{codec.label:8} {statistics.median(plain):9.3f} {statistics.median(instr):9.3f} {med:7.3f} "
              f"{spread:8.1%}  {verdict}", flush=True)
    return 0


_STARTUP_CHILD = r"""
import json, os, sys, tempfile, time
t0 = time.perf_counter()
import lcstudy.runs.learned, lcstudy.chapters.run_page, compressai.zoo
t1 = time.perf_counter()
from lcstudy.core.codec_loading import load_codec
load_codec("HP", 1, weights="random")
t2 = time.perf_counter()
from lcstudy.runs import learned
from lcstudy.chapters import run_page
with tempfile.TemporaryDirectory() as d:
    run = learned.run(codec="HP", images=[sys.argv[1]], crop=64, repeats=1, warmup=0, kernels=False, macs=False,
                      results_dir=d, profile="quick", log=lambda *a: None, progress=False)
    t3 = time.perf_counter()
    run_page.build(run)
    t4 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "codec load": t2 - t1, "run page": t4 - t3}))
"""


@contextlib.contextmanager
def _new_kernel():
    """A kernel as jupyter_client starts it (its ``start_new_kernel``), over Unix sockets in a folder of its own
    like the pipeline's kernels (:class:`lcstudy.pipeline.notebooks.IPCKernelManager`): over TCP, ipykernel warns
    on every start that it runs without encryption, a dozen lines of noise in the table's output. Stopped at once
    and its folder removed on the way out, unless the caller stopped it."""
    import os
    import shutil
    import tempfile

    from jupyter_client.manager import KernelManager

    folder = tempfile.mkdtemp(prefix="lcstudy-bench-")
    km, kc = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(folder, "ipc")), None
    try:
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        yield km, kc
    finally:
        if kc is not None:
            kc.stop_channels()
        if km.has_kernel and km.is_alive():
            km.shutdown_kernel(now=True)
        shutil.rmtree(folder, ignore_errors=True)


def _kernel_start() -> float:
    """Seconds from asking for a kernel to its answering (what papermill waits for), then shut down."""
    import time

    t0 = time.perf_counter()
    with _new_kernel():
        t = time.perf_counter() - t0
    return t


def _kernel_exit(graceful: bool) -> float:
    """Seconds to shut down a kernel that holds the study's imports: papermill's graceful shutdown (ask, then
    wait for the process to tear down) or at once, as :class:`lcstudy.pipeline.notebooks.IPCKernelManager` does
    for a notebook that has finished."""
    import time

    with _new_kernel() as (km, kc):
        reply = kc.execute_interactive("import lcstudy.runs.learned, lcstudy.chapters.run_page", timeout=120,
                                       output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise SystemExit(f"error: the kernel could not import the study: {reply['content'].get('evalue')}")
        kc.stop_channels()
        t0 = time.perf_counter()
        km.shutdown_kernel(now=not graceful)
        return time.perf_counter() - t0


def _kernel_ready(warm: bool) -> float:
    """Seconds from asking for a kernel to its having imported the study (what a run notebook's first cells wait
    for), started as :class:`lcstudy.pipeline.notebooks.IPCKernelManager` starts it: cold (a new interpreter that
    imports everything) or warm (forked by the zygote, :mod:`lcstudy.pipeline.zygote`, which must be running)."""
    import os
    import shutil
    import time

    from . import zygote
    from .notebooks import IPCKernelManager, _LIVE

    before = os.environ.get("LCSTUDY_WARM_KERNEL")
    os.environ["LCSTUDY_WARM_KERNEL"] = "1" if warm else "0"
    served = zygote._ZYGOTE._next if zygote._ZYGOTE else 0
    try:
        t0 = time.perf_counter()
        km = IPCKernelManager(kernel_name="python3")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive("import lcstudy.runs.learned, lcstudy.chapters.run_page, compressai.zoo",
                                       timeout=120, output_hook=lambda msg: None)
        t = time.perf_counter() - t0
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        _LIVE.remove(km)
        shutil.rmtree(os.path.dirname(km.ip), ignore_errors=True)
    finally:
        if before is None:
            os.environ.pop("LCSTUDY_WARM_KERNEL", None)
        else:
            os.environ["LCSTUDY_WARM_KERNEL"] = before
    if warm and (zygote._ZYGOTE._next if zygote._ZYGOTE else 0) == served:
        raise SystemExit("error: the warm kernel was started cold (the zygote refused: see the note above)")
    if reply["content"]["status"] != "ok":
        raise SystemExit(f"error: the kernel could not import the study: {reply['content'].get('evalue')}")
    return t


def _runner_zoo_table(cached: bool) -> float:
    """Seconds a fresh process takes to find a zoo checkpoint's URL, as the runner does to resolve
    ``WEIGHTS=auto`` before any notebook starts: importing CompressAI for its table (an empty cache), or reading
    the table kept by :func:`lcstudy.core.weights.zoo_urls` (a filled one). Paid once per ``make run``, ``make
    runs`` or SLURM task, not per notebook."""
    import os
    import subprocess
    import tempfile

    code = ("import sys, time; t = time.perf_counter(); from lcstudy.core.codec_sources import get_spec; "
            "from lcstudy.core.weights import weights_url; weights_url(get_spec('FP'), 1); "
            "print(time.perf_counter() - t, 'compressai' in sys.modules)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "LCSTUDY_CACHE": cache}
        for _ in range(2 if cached else 1):  # cached: the first fills the cache, the second is timed
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            if r.returncode:
                raise SystemExit(f"error: the zoo-table probe failed:\n{r.stderr[-2000:]}")
    seconds, imported = r.stdout.split()
    if (imported == "True") == cached:
        raise SystemExit(f"error: the zoo-table probe {'imported' if cached else 'did not import'} CompressAI")
    return float(seconds)


def startup(image: Path, repeats: int) -> int:
    import json
    import os
    import subprocess
    import time

    import tempfile

    from ..runs.lock import timing_lock

    parts: dict[str, list[float]] = {}
    private = tempfile.mkdtemp()

    def child(lean: str) -> dict:
        # the benchmark holds the machine lock; the tiny runs of its children take a private one
        env = {**os.environ, "LCSTUDY_LEAN_IMPORT": lean, "LCSTUDY_NOWAIT": "1",
               "LCSTUDY_LOCK": os.path.join(private, "lock")}
        r = subprocess.run([sys.executable, "-c", _STARTUP_CHILD, str(image)], capture_output=True, text=True,
                           env=env)
        if r.returncode:
            raise SystemExit(f"error: the startup probe failed:\n{r.stderr[-2000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    from . import zygote

    with timing_lock(f"bench startup (pid {os.getpid()})", wait=True, log=print):
        zygote.stop()
        z = zygote.zygote_for(dict(os.environ, LCSTUDY_WARM_KERNEL="1"))
        t0 = time.perf_counter()
        ready = z.ready()
        parts["zygote start (once)"] = [time.perf_counter() - t0]
        try:
            for _ in range(repeats):
                _startup_once(parts, child)
                for warm, tag in ((False, "cold"), (True, "warm")):
                    parts.setdefault(f"kernel ready ({tag})", []).append(_kernel_ready(warm))
        finally:
            zygote.stop()
    print(f"zygote: imported {', '.join(zygote.PRELOAD)} in {ready['import_s']:.2f} s; "
          f"{ready['resident_file_mb']:.0f} MB of library pages mapped again in each kernel")
    _startup_table(parts, repeats)
    return 0


def _startup_once(parts: dict, child) -> None:
    import subprocess
    import time

    if True:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        parts.setdefault("interpreter", []).append(time.perf_counter() - t0)
        parts.setdefault("kernel start", []).append(_kernel_start())
        for lean, tag in (("0", "before"), ("1", "after")):
            for k, v in child(lean).items():
                parts.setdefault(f"{k} ({tag})", []).append(v)
            parts.setdefault(f"kernel exit ({tag})", []).append(_kernel_exit(graceful=tag == "before"))
        for tag in ("before", "after"):
            parts.setdefault(f"runner zoo table ({tag})", []).append(_runner_zoo_table(cached=tag == "after"))


def _startup_table(parts: dict, repeats: int) -> None:
    import os

    med = {k: statistics.median(v) for k, v in parts.items()}
    print(f"fixed cost of a run notebook outside its measurement: medians of {repeats} interleaved repeats, fresh "
          f"processes, {os.cpu_count()} CPUs; 'before' imports CompressAI whole and shuts the kernel down "
          "gracefully (papermill's way), 'after' imports it without torch_geometric and torchvision and stops a "
          "finished notebook's kernel at once")
    print(f"{'part':28} {'median s':>9} {'min s':>7} {'max s':>7}")
    for k, v in parts.items():
        print(f"{k:28} {med[k]:9.2f} {min(v):7.2f} {max(v):7.2f}")
    for tag in ("before", "after"):
        total = med["kernel start"] + sum(med[f"{k} ({tag})"] for k in ("imports", "codec load", "run page",
                                                                          "kernel exit"))
        print(f"{'total ' + tag:28} {total:9.2f}   (kernel start + imports + codec load + run page + kernel exit)")
    cold, warm = med["kernel ready (cold)"], med["kernel ready (warm)"]
    warm_total = total - med["kernel start"] - med["imports (after)"] + warm
    print(f"{'total warm':28} {warm_total:9.2f}   (total after, its kernel start and imports replaced by the warm "
          f"kernel's ready time; cold, that ready time is {cold:.2f} s)")
    print("kernel ready: from asking for a kernel to its having imported the study, cold (a new interpreter) or warm "
          "(forked by the zygote, which imports once per make run / make runs / make book: 'zygote start (once)')")
    print("runner zoo table: once per make run / make runs / SLURM task, not per notebook; 'before' imports "
          "CompressAI for its URL table to resolve WEIGHTS=auto, 'after' reads the table kept per CompressAI version")


def main(argv=None) -> int:
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(prog="python -m lcstudy.pipeline.bench")
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead", help="instrumented / plain time per codec")
    o.add_argument("--images", default="data/kodak")
    o.add_argument("--image", default="kodim01")
    o.add_argument("--repeats", type=int, default=5)
    o.add_argument("--crop", type=int, default=None)
    o.add_argument("--codecs", nargs="*", default=[])
    o.add_argument("--device", default="cpu", help="cpu or cuda: on a GPU the stage synchronisations cost more")
    st = sub.add_parser("startup", help="a run notebook's fixed cost in parts, before and after the lean import")
    st.add_argument("--images", default="data/kodak")
    st.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    if a.cmd == "startup":
        return startup(Path(a.images) / "kodim01.png", a.repeats)
    if a.cmd == "overhead":
        return overhead(Path(a.images), a.image, a.repeats, a.codecs, a.crop, a.device)
    return 2


if __name__ == "__main__":
    sys.exit(main())
