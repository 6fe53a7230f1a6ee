"""Reading test images the way CompressAI's ``eval_model`` does, with clear errors.

8-bit RGB in [0, 1]; grayscale, palette, RGBA and 16-bit images are converted to 8-bit
RGB with a note (alpha dropped, 16-bit scaled by 1/257). Padding to a multiple of 64
is centred, with zeros (``compressai.ops.compute_padding``), and undone after decoding.
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
PAD_MULTIPLE = 64


@dataclass
class TestImage:
    name: str  # file stem, e.g. "kodim01"
    path: Path
    x: object  # torch.Tensor 1×3×H×W float32 in [0, 1], 8-bit values
    notes: list[str] = field(default_factory=list)
    sha256: str = ""  # of the file's bytes: part of a run's identity

    @property
    def height(self) -> int:
        return int(self.x.shape[-2])

    @property
    def width(self) -> int:
        return int(self.x.shape[-1])


def list_images(images, limit=None) -> list[Path]:
    """A folder, a glob-free list of paths, or one path → sorted list of image files (the first
    ``limit`` of them, if given)."""
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InputError(f"limit must be a positive integer (number of images), got {limit!r}")
        return list_images(images)[:limit]
    if isinstance(images, (str, Path)):
        p = Path(images)
        if not p.exists():
            raise InputError(f"images not found: {p}; run `make data` (Kodak goes to data/kodak) or give "
                             "IMAGES=<folder>")
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {p}; run `make data` "
                                 "or point IMAGES at a folder of PNGs")
            return files
        images = [p]
    files = [Path(f) for f in images]
    if not files:
        raise InputError("the list of images is empty; give image paths or a folder (e.g. data/kodak)")
    return files


@dataclass(frozen=True)
class ItemSize:
    """One size an image is measured at in a run of several sizes: a centred ``crop`` (N×N) or a synthetic
    ``resize`` to (width, height), exactly one of them. Its text — ``crop512``, ``1920x1080`` — is what
    ``SIZES`` takes and what a run's request and item keys store; nothing else parses that text."""

    crop: int | None = None
    resize: tuple[int, int] | None = None

    def __post_init__(self):
        if (self.crop is None) == (self.resize is None):
            raise ValueError("an ItemSize is a crop or a resize, exactly one")

    @classmethod
    def parse(cls, text) -> "ItemSize":
        """``cropN`` (N ≥ 16) or ``WIDTHxHEIGHT`` (each ≥ 16); the error names both forms."""
        t = str(text).strip()
        m = re.fullmatch(r"(?i)crop\s*(\d+)", t)
        if m:
            if int(m.group(1)) < 16:
                raise InputError(f"{text!r}: N of cropN must be an integer ≥ 16 (e.g. crop512)")
            return cls(crop=int(m.group(1)))
        try:
            return cls(resize=parse_size(t))
        except InputError:
            raise InputError(f"{text!r} is neither cropN nor WIDTHxHEIGHT (N, WIDTH, HEIGHT ≥ 16; e.g. crop512, "
                             "1920x1080)") from None

    def __str__(self) -> str:
        return f"crop{self.crop}" if self.crop is not None else f"{self.resize[0]}x{self.resize[1]}"

    def load_args(self) -> dict:
        """:func:`load_image`'s ``crop``/``resize`` arguments."""
        return {"crop": self.crop, "resize": None if self.resize is None else f"{self.resize[0]}x{self.resize[1]}"}

    @property
    def megapixels(self) -> float:
        return (self.crop ** 2 if self.crop is not None else self.resize[0] * self.resize[1]) / 1e6


@dataclass(frozen=True)
class ItemKey:
    """What one item of a run is: an image, at one size in a run of several sizes. Its text — ``kodim01``, or
    ``kodim01@1920x1080`` — keys the item's file and the run's list of items."""

    image: str
    size: ItemSize | None = None

    @classmethod
    def parse(cls, text: str) -> "ItemKey":
        """The text back: the part after the last ``@`` is a size only if it reads as one (an image's own name
        may hold an ``@``)."""
        name, at, tail = str(text).rpartition("@")
        if at:
            try:
                return cls(name, ItemSize.parse(tail))
            except InputError:
                pass
        return cls(str(text))

    def __str__(self) -> str:
        return f"{self.image}@{self.size}" if self.size is not None else self.image


#: How synthetic sizes are made from the Kodak images (stated in every table that uses them)
RESIZE_FILTER = "Lanczos (Pillow), scaled to cover the target, then centre-cropped"


def parse_size(resize) -> tuple[int, int] | None:
    """``"1920x1080"`` → (1920, 1080) (width, height); None stays None."""
    if resize is None or (isinstance(resize, str) and resize.strip().lower() in ("", "none")):
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", str(resize))
    if not m or int(m.group(1)) < 16 or int(m.group(2)) < 16:
        raise InputError(f"resize must be WIDTHxHEIGHT in pixels, each ≥ 16 (e.g. 1920x1080), got {resize!r}")
    return int(m.group(1)), int(m.group(2))


def file_hash(path) -> str:
    """sha256 of a file's bytes (16 hex digits): two images with one name are told apart by it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def check_image(path, decode: bool = False) -> Path:
    """That ``path`` is an image Pillow can identify (header only: fast); the error names the fix.
    ``decode``: also decode it once (a truncated file has a good header and fails only here), cached
    per file version so that planning many runs over one folder decodes each image once."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give image files or one folder of images as IMAGES")
    st = path.stat()
    if st.st_size == 0:
        raise InputError(f"image file is empty: {path}; delete it and run `make data` again")
    try:
        _read(str(path), st.st_mtime_ns, st.st_size, decode)
    except UnidentifiedImageError:
        raise InputError(f"not an image (or an unsupported format): {path}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"cannot read image {path}: {e} (truncated or corrupt file? fetch it again)") from None
    return path


@functools.lru_cache(maxsize=4096)
def _read(path: str, mtime_ns: int, size: int, decode: bool) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        if decode:
            im.load()
        return im.size


def image_size(path) -> tuple[int, int]:
    """(width, height) from the header (checked by :func:`check_image`)."""
    path = check_image(path)
    st = path.stat()
    return _read(str(path), st.st_mtime_ns, st.st_size, False)


def load_image(path, crop: int | None = None, resize=None) -> TestImage:
    """Read ``path`` as 8-bit RGB; ``crop=N`` keeps the centred N×N square; ``resize="WxH"`` makes a
    synthetic W×H image (:data:`RESIZE_FILTER`), in 8-bit like the original."""
    from PIL import Image, UnidentifiedImageError

    path = check_image(path)
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            deep = _sixteen_bit_rgb(im)
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
                im8 = Image.fromarray(arr, mode="L").convert("RGB")
                notes.append(f"{path.name}: 16-bit {mode} converted to 8-bit RGB")
            elif deep:
                im8 = im.convert("RGB")
                notes.append(f"{path.name}: 48-bit RGB ({deep}) converted to 8-bit RGB (Pillow keeps each "
                             "sample's high byte)")
            elif mode == "RGB":
                im8 = im.copy()
            else:
                im8 = im.convert("RGB")
                notes.append(f"{path.name}: mode {mode} converted to RGB" + (" (alpha dropped)" if "A" in mode else ""))
    except UnidentifiedImageError:
        raise InputError(f"not an image (or an unsupported format): {path}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"cannot read image {path}: {e} (truncated or corrupt file? fetch it again)") from None
    size = parse_size(resize)
    if size is not None:
        if crop is not None:
            raise InputError("give either crop or resize, not both")
        im8 = _cover(im8, *size)
        notes.append(f"{path.name}: synthetic {size[0]}×{size[1]} ({RESIZE_FILTER})")
    arr = np.asarray(im8, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and \
            np.array_equal(arr[..., 1], arr[..., 2]) and mode in ("L", "LA", "I;16", "I"):
        notes.append(f"{path.name}: grayscale replicated to 3 channels")
    x = to_tensor(arr)
    if crop is not None:
        x = centre_crop(x, int(crop), path)
    return TestImage(path.stem, path, x.contiguous(), notes, file_hash(path))


def _sixteen_bit_rgb(im) -> str:
    """The raw mode of a 16-bit-per-sample colour image that Pillow opens as 8-bit RGB(A)
    (a 48-bit PNG's tiles decode ``RGB;16B``), or "" (read before ``load()``: it clears the tiles)."""
    for t in getattr(im, "tile", None) or []:
        raw = t.args if isinstance(t.args, str) else (t.args[0] if t.args else "")
        if isinstance(raw, str) and raw.startswith(("RGB;16", "RGBA;16", "RGBX;16")):
            return raw
    return ""


def to_tensor(img):
    """8-bit RGB (PIL image or H×W×3 uint8 array) → 1×3×H×W float32 in [0, 1]."""
    import torch

    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_pil(x):
    """1×3×H×W float in [0, 1] (8-bit values) → PIL RGB image."""
    from PIL import Image

    return Image.fromarray((x[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8), "RGB")


def _cover(im, w: int, h: int):
    from PIL import Image

    s = max(w / im.width, h / im.height)
    big = im.resize((max(w, math.ceil(im.width * s)), max(h, math.ceil(im.height * s))), Image.Resampling.LANCZOS)
    left, top = (big.width - w) // 2, (big.height - h) // 2
    return big.crop((left, top, left + w, top + h))


def centre_crop(x, size: int, path=None):
    h, w = x.shape[-2:]
    if size <= 0:
        raise InputError(f"crop must be a positive number of pixels, got {size}")
    if size > min(h, w):
        raise InputError(f"crop {size} is larger than image {path or ''} ({w}×{h}); use crop ≤ {min(h, w)} or none")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def pad(x, multiple: int = PAD_MULTIPLE):
    """Centre-pad with zeros to a multiple of ``multiple`` (``compressai.ops.compute_padding``, as
    ``eval_model`` does); returns (padded, unpad)."""
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    p, unpad_ = compute_padding(x.shape[-2], x.shape[-1], min_div=multiple)
    return F.pad(x, p, mode="constant", value=0), unpad_


def unpad(x, unpad_):
    import torch.nn.functional as F

    return F.pad(x, unpad_)


def padded_size(height: int, width: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple
