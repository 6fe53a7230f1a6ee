"""The timing protocol: load once, warm up per input shape, R repeats per image.

Follows ``torch.utils.benchmark``: a frozen :class:`RunSpec` says what was measured;
every stage keeps its raw samples (``samples`` table) and the tidy table carries the
median and IQR, with ``noisy`` set where IQR/median > 10 %. Medians, because one
encode in ten on a shared 2-core machine can take several times the others.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from datetime import datetime, timezone
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from . import images as _images
from . import metrics, store
from .codecs import Codec
from .environ import FINGERPRINT_KEYS, SCHEMA_VERSION, environ
from .errors import InputError
from .stages import encode_decode, top_stages
from .timing import Measurement, StageClock

#: Columns every tidy row has, in this order (provenance columns follow).
COLUMNS = ["codec", "quality", "device", "threads", "weights", "seed", "image", "height", "width", "direction",
           "stage", "level", "seconds", "iqr_seconds", "n_samples", "noisy", "bpp", "psnr", "ms_ssim",
           "nbytes", "repeats", "warmup", "crop", "resize", "run_id"]


@dataclass(frozen=True)
class RunSpec:
    """What one run measures. Any change here is a different measurement (a new run_id)."""

    codec: str
    quality: int
    device: str
    weights: str
    seed: int | None
    threads: int
    repeats: int
    warmup: int
    crop: int | None
    weights_source: str
    resize: str | None = None  # "WxH": synthetic size made from each image (images.RESIZE_FILTER)

    def run_id(self, env: dict) -> str:
        key = {**asdict(self), **{k: env[k] for k in FINGERPRINT_KEYS}}
        if self.resize is None:  # fields added later enter the hash only when set: earlier runs keep their ids
            key.pop("resize")
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _check_int(name, value, minimum) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer ≥ {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise InputError(f"{name} must be ≥ {minimum}, got {value}")
    return value


def run_dir(results_dir, env: dict, spec: RunSpec) -> Path:
    return (Path(results_dir) / store.safe_name(env["host"]) / store.safe_name(spec.device)
            / f"{store.safe_name(spec.codec)}-q{spec.quality}" / spec.run_id(env))


def profile(codec: Codec, images, repeats: int = 3, warmup: int = 1, crop: int | None = None,
            threads: int | None = None, results_dir=None, memory: bool = True, kernels: bool = True,
            progress: bool = True, log=print, resize: str | None = None, peak: bool = True) -> pd.DataFrame:
    """Measure ``codec`` on ``images``; return the tidy table (one row per image × direction × stage).

    With ``results_dir``, every finished image is written at once (atomically) and a rerun
    with the same settings skips the images already there. ``df.attrs`` holds the raw
    ``samples`` and, when asked for, the ``memory`` and ``kernels`` tables.
    """
    repeats = _check_int("repeats", repeats, 1)
    warmup = _check_int("warmup", warmup, 0)
    if crop is not None:
        crop = _check_int("crop", crop, 16)
    if threads is not None:
        torch.set_num_threads(_check_int("threads", threads, 1))
    threads = torch.get_num_threads()
    size = _images.parse_size(resize)
    resize = f"{size[0]}x{size[1]}" if size else None
    paths = _images.list_images(images)
    # read and validate every image before measuring anything: a bad file fails the run
    # up front, naming the file, with nothing written
    imgs = [_images.load_image(p, crop=crop, resize=resize) for p in paths]
    names = [im.name for im in imgs]
    if len(set(names)) != len(names):
        raise InputError(f"two images share a name: {sorted(n for n in names if names.count(n) > 1)}")
    for im in imgs:
        for note in im.notes:
            log(f"note: {note}")

    env = environ(codec.device, threads)
    spec = RunSpec(codec.spec.label, codec.quality, str(codec.device), codec.weights, codec.seed, threads, repeats,
                   warmup, crop, codec.weights_source, resize)
    rid = spec.run_id(env)
    rdir = run_dir(results_dir, env, spec) if results_dir is not None else None
    done: dict[str, dict] = {}
    if rdir is not None:
        done = _existing(rdir, names)
        if done:
            log(f"resuming run {rid}: {len(done)} of {len(imgs)} images already measured in {rdir}")
        else:
            older = [p.name for p in rdir.parent.glob("*") if p.is_dir() and p.name != rid] if rdir.parent.exists() \
                else []
            if older:
                log(f"settings differ from earlier run(s) {', '.join(sorted(older))} of {spec.codec} q{spec.quality}: "
                    f"starting a fresh run {rid} (the old ones are kept, not mixed)")
        store.atomic_write_json(rdir / "run.json", {"spec": asdict(spec), "environ": env, "run_id": rid,
                                                    "images": names, "schema_version": SCHEMA_VERSION,
                                                    "load_seconds": codec.load_seconds})

    dev = codec.device
    clock = StageClock(dev)
    todo = [im for im in imgs if im.name not in done]
    # warm-up: `warmup` encode+decode per padded input shape (the first call allocates,
    # picks kernels, fills caches)
    shapes_warm: set[tuple[int, int]] = set()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo) * repeats, desc=f"{spec.codec} q{spec.quality} {dev}", unit="rep")
    per_image: dict[str, dict] = dict(done)
    from .lock import wait_if_paused

    for im in todo:
        if wait_if_paused(log):
            shapes_warm.clear()  # warm up again: caches went cold during the pause
        t_image = time.perf_counter()  # after any pause: an image's wall time never contains one
        x, _unpad = _images.pad(im.x)
        x = x.to(dev)
        if tuple(x.shape[-2:]) not in shapes_warm:
            for _ in range(warmup):
                encode_decode(codec, x, clock)
            shapes_warm.add(tuple(x.shape[-2:]))
        rec = _measure_image(codec, im, x, _unpad, repeats, clock, bar)
        # what this image cost in wall time (its warm-up if it had one, the repeats, the metrics):
        # with the samples, the share of a run spent in codec work (`lcstudy.results.run_costs`)
        rec["wall_seconds"] = time.perf_counter() - t_image
        rec["measured_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        per_image[im.name] = rec
        if rdir is not None:
            store.atomic_write_json(rdir / "images" / f"{store.safe_name(im.name)}.json", rec)
    if bar is not None:
        bar.close()

    phases: dict[str, float] = {}
    if peak:
        # the machine's arithmetic ceiling, measured under the same lock and thread count (roofline)
        from .machine import peak_matmul

        with _phase("peak_matmul", phases, log):
            env = {**env, **peak_matmul(dev, threads)}
    base = {**env, "codec": spec.codec, "quality": spec.quality, "device": spec.device, "weights": spec.weights,
            "seed": spec.seed, "repeats": repeats, "warmup": warmup, "crop": crop, "resize": resize, "run_id": rid,
            "load_seconds": codec.load_seconds, "weights_source": codec.weights_source}
    df, samples = _tables(per_image, names, base)
    extra: dict[str, pd.DataFrame] = {}
    first = imgs[0]
    if memory:
        from .memory import measure_isolated

        with _phase("memory", phases, log):
            mem = pd.DataFrame(measure_isolated(codec, first.path, crop, threads, resize=resize))
            extra["memory"] = _with(mem, base, first)
    if kernels:
        from .kernels import profile_ops

        with _phase("kernels", phases, log):
            x, _ = _images.pad(first.x)
            extra["kernels"] = _with(profile_ops(codec, x.to(dev)), base, first)
    if rdir is not None and phases:
        meta = json.loads((rdir / "run.json").read_text())
        meta["environ"].update({k: v for k, v in env.items() if k.startswith("peak_")})
        # wall seconds of the run's phases after the images, in this execution (the last one wins)
        meta["phase_seconds"] = {**meta.get("phase_seconds", {}), **phases}
        store.atomic_write_json(rdir / "run.json", meta)
    if rdir is not None:
        store.atomic_write_csv(rdir / "samples.csv", samples)
        for k, t in extra.items():
            store.atomic_write_csv(rdir / f"{k}.csv", t)
    df.attrs["samples"] = samples
    df.attrs.update(extra)
    df.attrs["run_dir"] = str(rdir) if rdir else None
    return df


@contextlib.contextmanager
def _phase(name: str, phases: dict, log):
    """One measured phase after the images (peak matmul, memory, operator profile): it waits for a
    pause like an image does — it is a measurement too, never to run beside other work — and its
    wall time goes into ``phases``."""
    from .lock import wait_if_paused

    wait_if_paused(log)
    t0 = time.perf_counter()
    yield
    phases[name] = time.perf_counter() - t0


def _with(t: pd.DataFrame, base: dict, im) -> pd.DataFrame:
    t = t.copy()
    for k, v in reversed(list(base.items())):
        t.insert(0, k, v)
    t["image"] = im.name
    t["height"], t["width"] = im.height, im.width
    return t


def _existing(rdir: Path, names: list[str]) -> dict[str, dict]:
    out = {}
    for n in names:
        p = rdir / "images" / f"{store.safe_name(n)}.json"
        if p.exists():
            try:
                rec = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # cannot happen with atomic writes; remeasure rather than trust it
            if rec.get("schema_version") == SCHEMA_VERSION and rec.get("image") == n:
                out[n] = rec
    return out


def _measure_image(codec: Codec, im, x, unpad_, repeats: int, clock: StageClock, bar) -> dict:
    meas: dict[tuple[str, str], Measurement] = {}
    first = None
    for r in range(repeats):
        res = encode_decode(codec, x, clock)
        if first is None:
            first = res
        elif res.strings != first.strings:
            raise RuntimeError(f"{codec.spec.label}: the bitstream of {im.name} changed between repeats "
                               "(non-deterministic encode); results would not be comparable")
        for direction, stages in (("encode", res.encode), ("decode", res.decode)):
            for stage, sec in stages.items():
                meas.setdefault((direction, stage), Measurement()).add(sec)
            meas.setdefault((direction, "network"), Measurement()).add(res.network[direction])
        if bar is not None:
            bar.update(1)
    x_hat = _images.unpad(first.x_hat, unpad_)
    q = metrics.quality(im.x, x_hat)
    return {
        "schema_version": SCHEMA_VERSION, "image": im.name, "path": str(im.path), "height": im.height,
        "width": im.width, "notes": im.notes, "nbytes": first.nbytes,
        "bpp": metrics.bpp(first.nbytes, im.height, im.width), "psnr": q["psnr"], "ms_ssim": q["ms_ssim"],
        "top_stages": {d: list(top_stages(codec, d)) for d in ("encode", "decode")},
        "samples": {f"{d}|{s}": m.samples for (d, s), m in meas.items()},
    }


def _tables(per_image: dict[str, dict], order: list[str], base: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, srows = [], []
    for name in order:
        rec = per_image[name]
        for key, samples in rec["samples"].items():
            direction, stage = key.split("|", 1)
            m = Measurement(list(samples))
            level = 1 if "/" in stage else (2 if stage in ("misc", "total", "network") else 0)
            rows.append({**base, "image": name, "height": rec["height"], "width": rec["width"],
                         "direction": direction, "stage": stage, "level": level, "seconds": m.median,
                         "iqr_seconds": m.iqr, "n_samples": len(samples), "noisy": m.noisy, "bpp": rec["bpp"],
                         "psnr": rec["psnr"], "ms_ssim": rec["ms_ssim"], "nbytes": rec["nbytes"]})
            for i, s in enumerate(samples):
                srows.append({"run_id": base["run_id"], "host": base["host"], "device": base["device"],
                              "codec": base["codec"], "quality": base["quality"], "image": name,
                              "direction": direction, "stage": stage, "repeat": i, "seconds": s})
    df = pd.DataFrame(rows)
    lead = [c for c in COLUMNS if c in df.columns]
    df = df[lead + [c for c in df.columns if c not in lead]]
    return df, pd.DataFrame(srows)
