"""Peak memory of one encode and one decode.

CPU: measured in a fresh Python process (``python -m lcstudy.memory``) per codec, so that what one codec (or
the MAC counting, or the profiler) allocated never colours the next. Inside it, after
loading and a warm-up, the kernel's peak-RSS counter (VmHWM) is reset through
``/proc/self/clear_refs`` (Linux ≥ 4.0) before the encode and again before the decode; the
reported peak is VmHWM after the call, and ``baseline_mb`` the RSS just before it
(model, image and interpreter). Where that file cannot be written, the process's lifetime
peak (``ru_maxrss``) is reported instead and ``method`` says so.

CUDA: ``torch.cuda.max_memory_allocated``/``max_memory_reserved`` after
``reset_peak_memory_stats``, in the measuring process.
"""
from __future__ import annotations

import re
import resource
from pathlib import Path

import torch


def _status_kb(field: str) -> int:
    m = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(m.group(1)) if m else 0


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_cpu(fn) -> dict:
    base = _status_kb("VmRSS")
    ok = _reset_hwm()
    out = fn()
    peak = _status_kb("VmHWM") if ok else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"baseline_mb": base / 1024, "peak_mb": peak / 1024,
            "method": "VmHWM reset via clear_refs" if ok else "ru_maxrss (lifetime peak)"}, out


def measure_in_process(codec, x) -> list[dict]:
    """Peak memory of one encode and one decode of padded ``x`` in this process."""
    dev = codec.device
    model = codec.model
    rows = []
    with torch.inference_mode():
        enc = model.compress(x)  # warm-up: first-call allocations are not the steady state
        model.decompress(enc["strings"], enc["shape"])
        if dev.type == "cuda":
            for direction in ("encode", "decode"):
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                base = torch.cuda.memory_allocated(dev)
                if direction == "encode":
                    enc = model.compress(x)
                else:
                    model.decompress(enc["strings"], enc["shape"])
                torch.cuda.synchronize(dev)
                rows.append({"direction": direction, "memory": "cuda_allocated",
                             "baseline_mb": base / 2**20, "peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20,
                             "method": "torch.cuda.max_memory_allocated"})
                rows.append({"direction": direction, "memory": "cuda_reserved",
                             "baseline_mb": torch.cuda.memory_reserved(dev) / 2**20,
                             "peak_mb": torch.cuda.max_memory_reserved(dev) / 2**20,
                             "method": "torch.cuda.max_memory_reserved"})
        r, enc = _peak_cpu(lambda: model.compress(x))
        rows.append({"direction": "encode", "memory": "cpu_rss", **r})
        r, _ = _peak_cpu(lambda: model.decompress(enc["strings"], enc["shape"]))
        rows.append({"direction": "decode", "memory": "cpu_rss", **r})
    return rows


def _child_main() -> None:
    """``python -m lcstudy.memory``: read the arguments as JSON on stdin, print rows as JSON."""
    import json
    import sys
    import warnings

    warnings.simplefilter("ignore")
    from .codecs import load_codec
    from .images import load_image, pad

    args = json.loads(sys.stdin.read())
    torch.set_num_threads(args["threads"])
    codec = load_codec(args["codec"], args["quality"], weights=args["weights"], device=args["device"],
                       seed=args["seed"])
    img = load_image(args["image"], crop=args["crop"], resize=args.get("resize"))
    x, _ = pad(img.x)
    rows = measure_in_process(codec, x.to(codec.device))
    sys.stdout.write("\n@@LCSTUDY@@" + json.dumps(rows))


def measure_isolated(codec, image_path, crop, threads, timeout_s: float = 3600, resize=None) -> list[dict]:
    """Peak memory measured in a fresh Python process (see module docstring)."""
    import json
    import subprocess
    import sys

    args = {"codec": codec.spec.label, "quality": codec.quality,
            "weights": codec.weights, "seed": codec.seed if codec.seed is not None else 0,
            "device": str(codec.device), "image": str(image_path), "crop": crop, "threads": threads, "resize": resize}
    try:
        out = subprocess.run([sys.executable, "-m", "lcstudy.memory"], input=json.dumps(args), text=True,
                             capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"memory measurement of {codec.spec.label} did not finish in {timeout_s:.0f} s") from None
    if out.returncode != 0 or "@@LCSTUDY@@" not in out.stdout:
        raise RuntimeError(f"memory measurement failed in its subprocess (exit {out.returncode}): "
                           f"{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.rsplit("@@LCSTUDY@@", 1)[1])


if __name__ == "__main__":
    _child_main()
