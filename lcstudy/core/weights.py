"""Weights: CompressAI's pretrained zoo weights (through torch.hub, as CompressAI loads them),
a user's own checkpoints, and whether the network can be reached at all.

* Pretrained: ``torch.hub.load_state_dict_from_url`` into ``$TORCH_HOME/hub/checkpoints`` —
  the exact download and cache of CompressAI's zoo — with a timeout, so that a machine
  without network fails within seconds, naming the URL and the cache path.
* ``weights="auto"``: pretrained where the checkpoint is cached or downloadable, seeded random
  otherwise. Whether the network answers is asked **once** per process (:func:`online`), so
  an offline ``make book`` pays a few seconds in all, not per run.
* A checkpoint file: what CompressAI's ``examples/train.py`` writes (``{"state_dict": …,
  "epoch": …, "optimizer": …}``, keys prefixed ``module.`` under DataParallel), with or
  without ``compressai.utils.update_model`` applied, or a plain state dict. Always loaded with
  ``torch.load(weights_only=True)``: the study never runs code from a checkpoint.
* Seeded random weights (:func:`build_model`), and what every model is checked by (:func:`construct`,
  :func:`check_model`, :func:`update_cdfs`), whichever weights it gets. They live here, not in
  :mod:`lcstudy.core.codec_loading`: that module loads a codec through this one, and this one takes only
  the :class:`~lcstudy.core.codec_table.CodecSpec` it is given, so the two never import each other.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..errors import InputError, WeightsError

#: Seconds to wait for the first byte of a download (weights, data) before giving up.
DOWNLOAD_TIMEOUT_S = 10.0
#: Seconds the one reachability probe of ``auto`` may take.
PROBE_TIMEOUT_S = 3.0
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin")
_CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def is_checkpoint(weights) -> bool:
    """Whether a ``weights`` value names a file (anything but the three keywords)."""
    return isinstance(weights, (str, os.PathLike)) and str(weights) not in ("random", "pretrained", "auto", "")


def weights_url(spec, quality: int, metric: str = "mse") -> str:
    """The URL CompressAI's zoo downloads ``spec``'s pretrained weights from.

    ``LCSTUDY_WEIGHTS_URL`` replaces the zoo's root URL (a mirror, or a loopback server in tests).
    """
    if not spec.pretrained:
        raise WeightsError(f"CompressAI publishes no pretrained weights for {spec.label}; use weights='random'")
    url = zoo_urls()[spec.name][metric][quality]
    root = os.environ.get("LCSTUDY_WEIGHTS_URL")
    if root:
        url = root.rstrip("/") + "/" + url.rsplit("/", 1)[1]
    return url


def _zoo_key() -> str | None:
    """What CompressAI's zoo table depends on, found without importing CompressAI (a top-level package's spec
    is looked up, not executed): its version and the table's file (path, size, mtime). None when that file is
    not where CompressAI 1.2 keeps it."""
    import hashlib
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        return None
    f = Path(list(spec.submodule_search_locations)[0]) / "zoo" / "image.py"
    try:
        st = f.stat()
        version = importlib.metadata.version("compressai")
    except (OSError, importlib.metadata.PackageNotFoundError):
        return None
    return hashlib.sha1(f"{version}|{f}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def zoo_cache_dir() -> Path:
    """Where the study keeps what it computed once per installation: ``$LCSTUDY_CACHE``, else the user's cache
    (``$XDG_CACHE_HOME/lcstudy``, ``~/.cache/lcstudy``)."""
    d = os.environ.get("LCSTUDY_CACHE")
    if d:
        return Path(d).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "lcstudy"


def zoo_urls() -> dict:
    """CompressAI's zoo URL table, ``compressai.zoo.image.model_urls`` (architecture → metric → quality → URL).

    Why a cache: the runner resolves ``weights="auto"`` (is the zoo's file in the torch hub cache?) before it
    starts any notebook, and importing ``compressai.zoo`` for that one table cost every ``make run`` and every
    SLURM task ~4 s on the 2-core VM (CompressAI, its entropy models' SciPy, its datasets), a quarter of a
    rerun's wall. The table is CompressAI's own: taken from the imported module where CompressAI is imported
    already, else from a JSON copy written the first time it was imported, keyed by CompressAI's version and
    the table's file (:func:`_zoo_key`), so an upgrade, an edit or another environment reads it afresh. An
    unreadable or unwritable cache only costs the import."""
    import json
    import sys

    mod = sys.modules.get("compressai.zoo.image")
    key = None if mod is not None else _zoo_key()
    path = zoo_cache_dir() / f"zoo-urls-{key}.json" if key else None
    if path is not None:
        try:
            raw = json.loads(path.read_text())
            return {a: {m: {int(q): u for q, u in qs.items()} for m, qs in ms.items()} for a, ms in raw.items()}
        except (OSError, ValueError, AttributeError):
            pass  # absent or damaged: import and rewrite it
    if mod is None:
        from compressai.zoo import image as mod
    table = mod.model_urls
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(table))
            os.replace(tmp, path)
        except OSError:
            pass
    return table


def hub_checkpoint_path(url: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urllib.parse.urlparse(url).path)


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


_ONLINE: dict[str, bool] = {}


def online(url: str) -> bool:
    """Whether ``url``'s host answers at all (one HEAD request, :data:`PROBE_TIMEOUT_S`); asked
    once per host and process."""
    host = urllib.parse.urlparse(url).netloc
    if host not in _ONLINE:
        try:
            req = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S):
                pass
            _ONLINE[host] = True
        except urllib.error.HTTPError:
            _ONLINE[host] = True  # the server answered (404 and friends): it is reachable
        except (urllib.error.URLError, OSError, TimeoutError):
            _ONLINE[host] = False
    return _ONLINE[host]


def available(spec, quality: int, metric: str = "mse") -> bool:
    """Whether ``auto`` would find pretrained weights: cached, or the zoo reachable."""
    if not spec.pretrained:
        return False
    url = weights_url(spec, quality, metric)
    return hub_checkpoint_path(url).exists() or online(url)


def download(url: str) -> Path:
    """torch.hub's own download into its cache (the path CompressAI's zoo takes), with a timeout
    and retries for transient errors; a failed download leaves no file in the cache."""
    import torch

    cache = hub_checkpoint_path(url)
    if cache.exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for attempt in range(3):
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                # what torch.hub.load_state_dict_from_url does: a temporary file, renamed when complete
                torch.hub.download_url_to_file(url, str(cache), progress=False)
            return cache
        except urllib.error.HTTPError as e:  # a definite answer: do not retry
            last = e
            break
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            last = e
            reason = getattr(e, "reason", None)
            if attempt < 2 and not isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
                time.sleep(0.2 * (attempt + 1))
                continue
            break
    _ONLINE[urllib.parse.urlparse(url).netloc] = False
    raise WeightsError(
        f"could not download pretrained weights from {url}: {last}. Without network access, run `make weights` on "
        f"a machine with network and copy the files to {cache.parent} (torch hub cache; set TORCH_HOME to move "
        "it), or use WEIGHTS=random") from last


def load_pretrained(spec, quality: int, metric: str = "mse"):
    """The zoo's model for ``spec`` at ``quality`` (CDFs as shipped)."""
    import torch
    from compressai.zoo.pretrained import load_pretrained as remap

    path = download(weights_url(spec, quality, metric))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = spec.model_class().from_state_dict(remap(sd))
    model.update(force=False)
    return model


def fetch_registered(spec, quality: int) -> str:
    """A registered codec's checkpoint for ``quality``: the path, or the cached download of its URL."""
    ck = spec.checkpoints[quality]
    if "://" in ck:
        return str(download(ck))
    return ck


class Weights(StrEnum):
    """The weights a request may ask (``WEIGHTS=``); :func:`choose` turns ``auto`` into one of the other three.
    A ``StrEnum``: it compares equal to, and serialises as, its plain string, so run ids are unchanged."""

    RANDOM = "random"  #: seeded random weights (``SEED``): network time and MACs are a trained model's, entropy coding is not
    PRETRAINED = "pretrained"  #: CompressAI's zoo file (from the torch hub cache, or downloaded by ``make weights``)
    CHECKPOINT = "checkpoint"  #: a file torch.save wrote (``WEIGHTS=<path>``, or a codecs file's registered checkpoint)
    AUTO = "auto"  #: pretrained where the zoo's file is at hand, else random with a note saying why


@dataclass(frozen=True)
class Choice:
    """Which weights a codec gets — decided once, by :func:`choose`, for a run request
    (:func:`lcstudy.runs.params.check_weights`) and for :func:`lcstudy.load_codec` alike."""

    kind: Weights  # PRETRAINED, RANDOM or CHECKPOINT, never AUTO
    path: str = ""  # the checkpoint file (kind "checkpoint")
    notes: tuple[str, ...] = ()
    #: asked as ``auto``: should the zoo's file fail to load after all, seeded random weights, with a note
    fallback: bool = False


def choose(spec, quality: int, weights) -> Choice:
    """The one decision of which weights ``spec`` at ``quality`` gets, for ``weights`` = ``"random"``,
    ``"pretrained"``, ``"auto"`` (or None) or a checkpoint's path. A registered checkpoint (a codecs file's)
    is the codec's pretrained weights. ``auto``: pretrained where the zoo's file is cached or the zoo
    answers (one probe per process, :func:`online`), else seeded random weights with a note that says why.
    Asking pretrained weights of a codec that has none is refused here, before any work."""
    w = "auto" if weights is None or weights == "" else weights
    if is_checkpoint(w):
        return Choice(Weights.CHECKPOINT, str(w))
    if w in ("auto", "pretrained") and spec.checkpoints.get(quality):
        return Choice(Weights.CHECKPOINT, fetch_registered(spec, quality))  # a URL: downloaded once into the hub cache
    if w == "random":
        return Choice(Weights.RANDOM)
    if w == "pretrained":
        if not spec.pretrained:
            raise WeightsError(f"no pretrained weights for {spec.label} (CompressAI's zoo has none, and no "
                               "checkpoint is registered); use WEIGHTS=random or WEIGHTS=<checkpoint file>")
        return Choice(Weights.PRETRAINED)
    if w == "auto":
        if not spec.pretrained:
            return Choice(Weights.RANDOM, notes=(f"WEIGHTS=auto: {spec.label} has no pretrained weights; seeded random "
                                           "weights",))
        if available(spec, quality):
            return Choice(Weights.PRETRAINED, fallback=True)
        return Choice(Weights.RANDOM, notes=(f"WEIGHTS=auto: CompressAI's zoo is not reachable and its file for "
                                       f"{spec.label} q{quality} is not in the torch hub cache; seeded random weights "
                                       "(`make weights` on a machine with network fills the cache)",))
    raise InputError(f"weights must be random, pretrained, auto or the path of a checkpoint file, got {weights!r}")


def check_file(path) -> Path:
    """That ``path`` is a file torch.save wrote (its first bytes only: fast); the error names the fix."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"checkpoint not found: {p}; give the path of a file written by torch.save "
                         "(e.g. CompressAI's examples/train.py checkpoint.pth.tar)")
    if p.is_dir():
        raise InputError(f"checkpoint {p} is a folder; give the file")
    with open(p, "rb") as f:
        head = f.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive (or, long ago, a pickle)
        raise InputError(f"checkpoint {p} is not a torch file (neither a zip archive nor a pickle); give a file "
                         "written by torch.save")
    return p


def read_checkpoint(path) -> tuple[dict, list[str]]:
    """The state dict in a checkpoint file, and notes on what was done to read it."""
    import pickle
    import zipfile

    import torch

    p = check_file(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise InputError(
                f"checkpoint {p} holds Python objects that torch.load(weights_only=True) refuses ({first[:160]}). "
                "The study never unpickles code from a checkpoint: save tensors only, e.g. "
                "torch.save({'state_dict': model.state_dict()}, path)") from None
        raise InputError(f"checkpoint {p} is not a torch file ({first[:160]})") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise InputError(f"checkpoint {p} is not a torch file ({type(e).__name__}: {str(e)[:160]}); give a file "
                         "written by torch.save") from None
    notes = []
    sd = obj
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        sd = obj["state_dict"]
        extra = f" (epoch {obj['epoch']})" if "epoch" in obj else ""
        notes.append(f"{p.name}: read the model from the training checkpoint's 'state_dict'{extra}")
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"checkpoint {p} holds no state dict of tensors (expected a state dict or "
                         "{'state_dict': …} as CompressAI's train.py saves)")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
        notes.append(f"{p.name}: removed the DataParallel prefix 'module.'")
    return sd, notes


def _cdfs_missing(sd: dict) -> bool:
    cdf = [v for k, v in sd.items() if k.endswith("._quantized_cdf")]
    return not cdf or any(v.numel() == 0 for v in cdf)


def _with_empty_cdf_buffers(sd: dict, template) -> dict:
    """The state dict with the entropy models' CDF buffers it lacks added, empty (CompressAI's
    load_state_dict looks them up by name; ``update()`` fills them afterwards)."""
    import torch

    out = dict(sd)
    for k, v in template.state_dict().items():
        if k.rsplit(".", 1)[-1] in _CDF_BUFFERS + ("scale_table",) and k not in out:
            out[k] = torch.zeros(0, dtype=v.dtype)
    return out


def _first_mismatch(model, sd: dict) -> str | None:
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in sd.items()}
    is_cdf = lambda k: k.rsplit(".", 1)[-1] in _CDF_BUFFERS + ("scale_table",)  # noqa: E731 (resized on load)
    for k, s in own.items():
        if is_cdf(k):
            continue
        if k not in theirs:
            return f"key {k} (shape {list(s)}) is missing from the checkpoint"
        if theirs[k] != s:
            return f"{k} has shape {list(theirs[k])} in the checkpoint and {list(s)} in the model"
    for k in theirs:
        if k not in own and not is_cdf(k):
            return f"the checkpoint has key {k} (shape {list(theirs[k])}), which the model does not"
    return None


def construct(spec, quality: int):
    cls = spec.model_class()
    args = spec.args[quality]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation inside CompressAI
        try:
            return cls(**args) if isinstance(args, dict) else cls(*args)
        except TypeError as e:
            where = ("its [codec.qualities] table in the codecs file" if spec.source.startswith("codecs file")
                     else "CODEC_ARGS as a JSON object (CODEC_ARGS='{\"N\": 64}')")
            raise InputError(f"codec {spec.label}: {spec.cls}({_args_text(args)}) failed: {e}; give the "
                             f"constructor arguments in {where}") from None


def _args_text(args) -> str:
    if isinstance(args, dict):
        return ", ".join(f"{k}={v!r}" for k, v in args.items())
    return ", ".join(map(repr, args))


def check_class(spec, cls=None) -> None:
    """The one check of what a codec must be — a ``torch.nn.Module`` subclass with ``compress`` and
    ``decompress`` (the study times a codec's own) — made on its class before any work (a run request's
    check) and on each model built or loaded (:func:`check_model`)."""
    import inspect

    import torch

    cls = spec.model_class() if cls is None else cls
    if not inspect.isclass(cls) or not issubclass(cls, torch.nn.Module):
        raise InputError(f"codec {spec.label}: {spec.cls} is not a torch.nn.Module subclass (got "
                         f"{getattr(cls, '__name__', type(cls).__name__)})")
    missing = [m for m in ("compress", "decompress") if not callable(getattr(cls, m, None))]
    if missing:
        raise InputError(f"codec {spec.label}: {spec.cls} has no {' or '.join(missing)} method; the study times a "
                         "codec's own compress()/decompress() (CompressAI's CompressionModel has both)")


def check_model(spec, model) -> None:
    """:func:`check_class` on a built model (a factory may hand back anything)."""
    check_class(spec, type(model))


def build_model(spec, quality: int, seed: int = 0):
    """Build ``spec`` at ``quality`` with seeded random weights.

    ``torch.manual_seed(seed)`` immediately before construction, then ``update(force=True)``
    (CompressAI refuses to compress with uninitialised CDFs). The same seed gives the
    same model whether built here or through CompressAI's zoo factory.
    """
    import torch

    spec.model_class()  # import first: the import is not part of the seeded construction
    torch.manual_seed(seed)
    model = construct(spec, quality)
    check_model(spec, model)
    update_cdfs(spec, model, force=True)
    return model


def update_cdfs(spec, model, force: bool) -> None:
    upd = getattr(model, "update", None)
    if not callable(upd):
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            upd(force=force)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"codec {spec.label}: update() failed ({type(e).__name__}: {e}); without CDF tables "
                         "the entropy coder cannot run. Fix the model's update() or save the checkpoint after "
                         "compressai.utils.update_model") from None


def load_checkpoint(spec, quality: int, path):
    """Build ``spec``'s model from a checkpoint: ``from_state_dict`` (N and M inferred from the
    shapes, as CompressAI does) where the class has one, else the registered constructor
    arguments; ``update()`` when the CDF tables are missing. Returns (model, notes)."""
    sd, notes = read_checkpoint(path)
    cls = spec.model_class()
    cdfs_missing = _cdfs_missing(sd)
    if cdfs_missing:
        sd = _with_empty_cdf_buffers(sd, construct(spec, quality))
    model = None
    if spec.builtin and hasattr(cls, "from_state_dict"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = cls.from_state_dict(sd)
        except (KeyError, RuntimeError, IndexError, TypeError):
            model = None  # say which key does not fit, below
    if model is None:
        template = construct(spec, quality)
        check_model(spec, template)
        bad = _first_mismatch(template, sd)
        if bad:
            raise InputError(f"checkpoint {Path(path).name} does not fit {spec.label} ({spec.cls}"
                             f"{'' if spec.builtin else ', arguments ' + spec.describe_channels(quality)}): {bad}")
        try:
            template.load_state_dict(sd)
        except RuntimeError as e:
            raise InputError(f"checkpoint {Path(path).name} does not load into {spec.label}: "
                             f"{str(e).splitlines()[0][:300]}") from None
        model = template
    check_model(spec, model)
    if cdfs_missing:
        update_cdfs(spec, model, force=True)
        notes.append(f"{Path(path).name}: the entropy models' CDF tables were not in the checkpoint; computed "
                     "them with update() (as compressai.utils.update_model does)")
    return model, notes


def channels_text(model) -> str:
    """The channel counts a model was built with, from its first and last analysis layers."""
    import torch

    convs = [m for m in getattr(model, "g_a", model).modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        return "channels not inferable"
    n, m = convs[0].out_channels, convs[-1].out_channels
    return f"N={n}, M={m}" if n != m else f"N={n}"
