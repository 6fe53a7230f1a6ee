"""Fetching the public data the study needs, from its public sources or a local mirror.

Nothing here is committed to the repository; ``make data`` fetches into ``data/``:

* ``data/kodak/kodimNN.png`` — the 24 Kodak images (r0k.us);
* ``data/reference/lc-assessment/…`` — the ICASSP 2023 paper's raw xlsx (GitHub
  ``farhad02/LC_Assessment`` at a pinned commit; CC-BY-4.0);
* ``data/reference/compressai-results/…`` — CompressAI's published Kodak results (GitHub
  ``InterDigitalInc/CompressAI`` at a pinned commit; BSD 3-Clause Clear).

A mirror folder laid out like ``data/`` (``kodak/`` may sit under ``data/``, as in the
project's ``shared/`` folder) is copied from instead when ``LCSTUDY_MIRROR`` is set.
Every file is verified (PNG size and mode, xlsx opens, JSON parses) and written
atomically; a failed download leaves no partial file.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..runs.store import atomic_write_bytes

TIMEOUT_S = 10.0  # to first byte
RETRIES = 3

LC_COMMIT = "e24f26dd8a7e7ace1a401cccf562f97a2447c918"
CAI_COMMIT = "869a9f5d4126d015b7de8f203fe60ee9e1608193"
KODAK_URL = "http://r0k.us/graphics/kodak/kodak/"
LC_URL = f"https://raw.githubusercontent.com/farhad02/LC_Assessment/{LC_COMMIT}/"
CAI_URL = f"https://raw.githubusercontent.com/InterDigitalInc/CompressAI/{CAI_COMMIT}/results/image/kodak/"

LC_FILES = [f"FALCON_ICASSP2023_WP1_V1.0/Timing/{n}" for n in (
    "All_enc_report_CPU.xlsx", "All_dec_report_CPU.xlsx", "All_enc_report_Cuda.xlsx", "All_dec_report_Cuda.xlsx",
    "AVG_Module_Times_EncDec_CPU_CUDA.xlsx")] + [
    f"FALCON_ICASSP2023_WP1_V1.0/NSightSystems_Kernels_Memory/{n}" for n in ("Encode.xlsx", "Decode.xlsx")]
_ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018", "cheng2020-anchor",
          "cheng2020-attn")
CAI_FILES = [f"compressai-{a}_{m}_{d}.json" for a in _ARCHS for m in ("mse", "ms-ssim") for d in ("cpu", "cuda")] + [
    "bpg_444_x265_ycbcr.json", "jpeg.json", "jpeg2000.json", "webp.json", "av1.json", "hm.json", "vtm.json",
    "paper-elic2022_mse.json", "paper-cheng2020-checkerboard-6M_mse.json", "paper-cheng2020-parallel_mse.json",
    "paper-minnen2018-checkerboard_mse.json"]


@dataclass(frozen=True)
class Item:
    url: str
    dest: str  # relative to the data folder
    mirror: str  # relative to the mirror folder
    kind: str  # "kodak" | "xlsx" | "json"


def items(urls: dict[str, str] | None = None) -> list[Item]:
    u = {"kodak": KODAK_URL, "lc": LC_URL, "cai": CAI_URL, **(urls or {})}
    out = [Item(f"{u['kodak']}kodim{i:02d}.png", f"kodak/kodim{i:02d}.png", f"data/kodak/kodim{i:02d}.png", "kodak")
           for i in range(1, 25)]
    out += [Item(u["lc"] + f, f"reference/lc-assessment/{f}", f"reference/lc-assessment/{f}", "xlsx") for f in LC_FILES]
    out += [Item(u["cai"] + f, f"reference/compressai-results/{f}", f"reference/compressai-results/{f}", "json")
            for f in CAI_FILES]
    return out


def verify(data: bytes, kind: str, name: str) -> None:
    import io

    if not data:
        raise DataError(f"{name}: empty file")
    try:
        if kind == "kodak":
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im.load()
                if im.mode != "RGB" or im.size not in ((768, 512), (512, 768)):
                    raise DataError(f"{name}: expected 768×512 or 512×768 8-bit RGB, got {im.size} {im.mode}")
        elif kind == "xlsx":
            import openpyxl

            openpyxl.load_workbook(io.BytesIO(data), read_only=True).close()
        elif kind == "json":
            json.loads(data)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{name}: not a valid {kind} file ({type(e).__name__}: {e})") from None


def _download(url: str) -> bytes:
    last: Exception | None = None
    for attempt in range(RETRIES):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            last = e
            if e.code < 500:
                break  # 404 and friends: a definite answer
        except urllib.error.URLError as e:
            last = e
            if isinstance(e.reason, (socket.gaierror, ConnectionRefusedError, socket.timeout, TimeoutError)):
                break  # no network / no host / nothing answering within the timeout: retrying will not help
        except (TimeoutError, socket.timeout) as e:
            last = e
            break
        except (ConnectionError, OSError) as e:  # reset mid-transfer, incomplete read: transient
            last = e
        time.sleep(0.5 * (attempt + 1))
    raise DataError(f"could not download {url}: {last}")


def fetch(data_dir="data", mirror=None, urls: dict[str, str] | None = None, force: bool = False,
          log=print) -> list[Path]:
    """Fetch every file into ``data_dir`` (skipping verified files already there)."""
    data_dir = Path(data_dir)
    mirror = mirror if mirror is not None else (os.environ.get("LCSTUDY_MIRROR") or None)
    got = []
    for it in items(urls):
        dest = data_dir / it.dest
        if dest.exists() and not force:
            try:
                verify(dest.read_bytes(), it.kind, str(dest))
                got.append(dest)
                continue
            except DataError as e:
                log(f"re-fetching {dest}: {e}")
        if mirror:
            src = Path(mirror) / it.mirror
            if not src.exists():
                alt = Path(mirror) / it.dest
                src = alt if alt.exists() else src
            if not src.exists():
                raise DataError(f"{src} not found in mirror {mirror}; the mirror must be laid out like "
                                "shared/ (data/kodak/…, reference/lc-assessment/…, reference/compressai-results/…)")
            data = src.read_bytes()
        else:
            try:
                data = _download(it.url)
            except DataError as e:
                raise DataError(
                    f"{e}.\nNo network? Get the files another way and either set LCSTUDY_MIRROR=<folder> "
                    f"(laid out like data/: kodak/kodimNN.png, reference/…) or place them in {data_dir.resolve()}/. "
                    f"Sources: Kodak {KODAK_URL}; paper data GitHub farhad02/LC_Assessment@{LC_COMMIT[:8]} "
                    f"(mirror: Zenodo record 11080556); CompressAI results GitHub "
                    f"InterDigitalInc/CompressAI@{CAI_COMMIT[:8]} results/image/kodak/") from None
        verify(data, it.kind, it.url if not mirror else str(it.mirror))
        atomic_write_bytes(dest, data)
        got.append(dest)
    kodak = sorted((data_dir / "kodak").glob("kodim*.png"))
    if len(kodak) != 24:
        raise DataError(f"expected 24 Kodak images in {data_dir / 'kodak'}, found {len(kodak)}")
    for lic, dest in ((Path(mirror) / "reference/lc-assessment/LICENCE.txt" if mirror else None,
                       "reference/lc-assessment/LICENCE.txt"),
                      (Path(mirror) / "reference/compressai-results/LICENSE" if mirror else None,
                       "reference/compressai-results/LICENSE")):
        if lic is not None and lic.exists():
            shutil.copyfile(lic, data_dir / dest)
    log(f"data ready in {data_dir}: {len(kodak)} Kodak images, {len(LC_FILES)} paper workbooks, "
        f"{len(CAI_FILES)} CompressAI result files")
    return got


def main(argv=None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m lcstudy.data", description="fetch the study's public data")
    ap.add_argument("--dest", default="data")
    ap.add_argument("--mirror", default=None, help="local folder laid out like shared/ (default: $LCSTUDY_MIRROR)")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    try:
        fetch(a.dest, a.mirror, force=a.force)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
