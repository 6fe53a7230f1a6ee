"""Benchmarks that print a table (targets live here, not in timed unit tests).

``python -m lcstudy.core.bench overhead``: per codec, the median ratio of the instrumented
encode+decode time to the plain ``compress()``+``decompress()`` time on one Kodak image,
interleaved (plain, instrumented, plain, …) so that drift on a noisy machine hits both.
Target: ≤ 1.01.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

import torch


def overhead(images: Path, image: str, repeats: int, codecs: list[str], crop: int | None, device: str = "cpu") -> int:
    from .clocks import StageClock
    from .images import load_image, pad
    from .instrument import encode_decode, plain_encode_decode
    from .registry import CODECS, get_spec, load_codec

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


def main(argv=None) -> int:
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(prog="python -m lcstudy.core.bench")
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead", help="instrumented / plain time per codec")
    o.add_argument("--images", default="data/kodak")
    o.add_argument("--image", default="kodim01")
    o.add_argument("--repeats", type=int, default=5)
    o.add_argument("--crop", type=int, default=None)
    o.add_argument("--codecs", nargs="*", default=[])
    o.add_argument("--device", default="cpu", help="cpu or cuda: on a GPU the stage synchronisations cost more")
    a = ap.parse_args(argv)
    if a.cmd == "overhead":
        return overhead(Path(a.images), a.image, a.repeats, a.codecs, a.crop, a.device)
    return 2


if __name__ == "__main__":
    sys.exit(main())
