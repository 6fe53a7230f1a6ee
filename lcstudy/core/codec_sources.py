"""Where codecs come from, in this order (a later source may not reuse an earlier label):

1. the eight built-in codecs of the ICASSP 2023 paper and beyond (:data:`~lcstudy.core.codec_table.CODECS`);
2. codecs a user keeps in the study: a TOML codecs file (``LCSTUDY_CODECS=<file>``,
   ``make … CODECS_FILE=<file>``; :func:`read_codecs_file`) and the entry-point group
   ``lcstudy.codecs`` of installed packages (each entry point a :class:`~lcstudy.core.codec_table.CodecSpec`
   or a callable returning a list of them);
3. any CompressAI-style model by import path, ``"package.module:Class"`` (ad hoc, for one run).

:func:`get_spec` is the one lookup of a codec by name. Nothing here imports torch or CompressAI.
"""
from __future__ import annotations

import functools
import os
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from .codec_table import BUILTIN_LABELS, CODECS, FAMILIES, CodecSpec
from .instrument import Family

ENTRY_POINT_GROUP = "lcstudy.codecs"


def read_codecs_file(path) -> list[CodecSpec]:
    """Codecs from a TOML file, with the built-in codecs' fields::

        [[codec]]
        label = "TINY"                              # unique, not a built-in label
        class = "tiny_codec:TinyHyperprior"         # module:Class
        python_path = ["."]                         # optional, relative to this file
        title = "Tiny hyperprior (example)"
        citation = "…"
        family = "auto"                             # optional: auto-detected from the model
        [codec.qualities]                           # quality → constructor keyword arguments
        1 = { N = 32, M = 48 }
        [codec.checkpoints]                         # optional: quality → checkpoint path or URL
        1 = "checkpoints/tiny-q1.pth.tar"
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"codecs file not found: {path} (LCSTUDY_CODECS / CODECS_FILE)")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"codecs file {path} is not valid TOML: {e}") from None
    out = []
    for i, c in enumerate(data.get("codec", [])):
        where = f"{path} (codec #{i + 1})"
        for k in ("label", "class", "qualities"):
            if k not in c:
                raise InputError(f"{where}: missing field {k!r}; see `lcstudy.core.codec_sources.read_codecs_file`")
        try:
            quals = {int(q): dict(a) for q, a in c["qualities"].items()}
            ckpts = {int(q): _resolve_rel(path, v) for q, v in c.get("checkpoints", {}).items()}
        except (TypeError, ValueError):
            raise InputError(f"{where}: qualities must be integers mapping to tables of constructor arguments") \
                from None
        if not quals:
            raise InputError(f"{where}: give at least one quality")
        family = c.get("family", "auto")
        if family not in FAMILIES:
            raise InputError(f"{where}: family must be one of {', '.join(FAMILIES)}, got {family!r}")
        out.append(CodecSpec(label=str(c["label"]), name=str(c["class"]), cls=str(c["class"]), family=family,
                             args=quals, pretrained=False, title=str(c.get("title", c["label"])),
                             citation=str(c.get("citation", "")), notes=str(c.get("notes", "")), checkpoints=ckpts,
                             source=f"codecs file {path}",
                             python_path=tuple(str((path.parent / p).resolve()) for p in c.get("python_path", []))))
    return out


def _resolve_rel(base: Path, v: str) -> str:
    if "://" in str(v):
        return str(v)
    p = Path(v)
    return str(p if p.is_absolute() else (base.parent / p).resolve())


def _entry_point_specs() -> list[CodecSpec]:
    import sys

    def mtime(p: str) -> int:
        try:
            return os.stat(p or ".").st_mtime_ns
        except OSError:
            return 0

    return list(_entry_point_specs_on(tuple((p, mtime(p)) for p in sys.path)))


@functools.lru_cache(maxsize=8)
def _entry_point_specs_on(path: tuple[tuple[str, int], ...]) -> tuple[CodecSpec, ...]:
    """The entry points' codecs, found once per ``sys.path`` and its folders' modification times (a package
    installed into a folder already on the path, ``%pip install`` in a kernel, changes its folder's: looked up
    again, as ``importlib.metadata`` itself does). Why: ``importlib.metadata.entry_points`` reads every
    installed distribution's metadata (~19 ms here), and :func:`registered` is asked for each codec name the
    chapters order or colour: 276 times in the quick book's chapters, 5 s of them on the 2-core VM. A failing
    entry point raises each time (lru_cache keeps no exception)."""
    from importlib.metadata import entry_points

    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001
            raise InputError(f"entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}) does not load: "
                             f"{type(e).__name__}: {e}") from None
        items = obj() if callable(obj) and not isinstance(obj, CodecSpec) else obj
        items = [items] if isinstance(items, CodecSpec) else list(items)
        for s in items:
            if not isinstance(s, CodecSpec):
                raise InputError(f"entry point {ep.name} ({ENTRY_POINT_GROUP}) must give CodecSpec objects, "
                                 f"got {type(s).__name__}")
            out.append(replace(s, source=f"entry point {ep.name}"))
    return tuple(out)


def registered() -> tuple[CodecSpec, ...]:
    """Built-in codecs, then the codecs file's, then the entry points' (labels unique)."""
    specs = list(CODECS)
    extra: list[CodecSpec] = []
    f = os.environ.get("LCSTUDY_CODECS")
    if f:
        extra += read_codecs_file(f)
    extra += _entry_point_specs()
    seen = {s.label.lower(): s for s in specs} | {s.name.lower(): s for s in specs}
    for s in extra:
        clash = seen.get(s.label.lower())
        if clash is not None:
            what = "a built-in codec" if clash.builtin else f"a codec from {clash.source}"
            raise InputError(f"codec label {s.label!r} ({s.source}) clashes with {what}; choose another label")
        seen[s.label.lower()] = s
        specs.append(s)
    return tuple(specs)


def codec_names() -> list[str]:
    return [s.label for s in registered()]


def codec_order() -> list[str]:
    """The study's order of codecs: the built-in ones as in the paper, then the user's."""
    return codec_names()


def is_import_path(name: str) -> bool:
    mod, sep, attr = str(name).partition(":")
    return bool(sep and mod and attr and all(p.isidentifier() for p in mod.split(".")) and attr.isidentifier())


def get_spec(name: str, kwargs: dict | None = None) -> CodecSpec:
    """Look a codec up by its label (``"ARC"``), CompressAI name (``"mbt2018"``), a registered
    user label, or an import path ``"package.module:Class"`` (constructor ``kwargs`` for it)."""
    key = str(name).strip()
    for s in registered():
        if key.lower() in (s.label.lower(), s.name.lower()):
            return s
    if is_import_path(key):
        label = key.rsplit(":", 1)[1]
        if label.lower() in {b.lower() for b in BUILTIN_LABELS}:
            raise InputError(f"the class name {label!r} of {key} clashes with a built-in codec label; "
                             "register it under another label in a codecs file")
        return CodecSpec(label=label, name=key, cls=key, family=Family.AUTO, args={1: dict(kwargs or {})},
                         pretrained=False, title=label, citation="", notes="a codec given by import path",
                         source="import path")
    valid = ", ".join(f"{s.label} ({s.name})" if s.builtin else s.label for s in registered())
    raise InputError(f"unknown codec {name!r}; valid codecs: {valid}; or an import path package.module:Class")
