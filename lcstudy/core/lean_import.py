"""Import CompressAI without its point-cloud stack: ~3 s of every run notebook's fixed cost.

``import compressai`` (1.2.8) imports all of its sub-packages, and three of them reach for
``torch_geometric``: ``compressai.registry.transforms`` merges torch_geometric's transforms into
its ``TRANSFORMS`` registry, ``compressai.transforms.point`` subclasses ``BaseTransform`` and
decorates with ``functional_transform``, and the point-cloud datasets import both. Importing
torch_geometric imports ``torch._dynamo`` and its LLM helpers: measured on the 2-core VM with
``python -X importtime -c "import compressai.zoo"``, 3.3 s of CompressAI's 8.6 s, paid by every
run notebook, every chapter notebook and many tests. The study uses no point cloud.

So, while — and only while — CompressAI's own package initialises, ``torch_geometric`` and its
sub-modules are served by **placeholders**: modules whose every attribute is a placeholder class
that can be subclassed, instantiated and used as a decorator (what those import-time uses need),
and whose ``__dict__`` holds no transform (so ``TRANSFORMS`` holds torchvision's alone). When
CompressAI's initialisation ends, the placeholders leave ``sys.modules``: a later
``import torch_geometric`` (a user's script, a point-cloud model) loads the real package.
CompressAI's installed files are not touched.

Contained by construction:

- It acts on the first ``import compressai`` of a process after ``lcstudy`` is imported, never
  when CompressAI was imported already, nor when the real ``torch_geometric`` is already loaded
  (then there is nothing to save). ``LCSTUDY_LEAN_IMPORT=0`` turns it off.
- Every placeholder attribute asked for is recorded (:data:`TOUCHED`); the tests compare it with
  :data:`EXPECTED` and build every codec of the registry through the zoo and the classes, so a
  CompressAI release that uses torch_geometric differently fails the tests, not a run.
- If CompressAI fails to import under the placeholders, the error says so and names the switch.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types

#: the torch_geometric names CompressAI 1.2.8 touches while it initialises (checked by the tests)
EXPECTED = frozenset({"transforms", "data", "data.datapipes", "transforms.BaseTransform", "transforms.Center",
                      "data.Data", "data.datapipes.functional_transform"})
#: what the placeholders were asked for in this process (module paths and attributes)
TOUCHED: set[str] = set()
#: True once CompressAI was imported under the placeholders in this process
ACTIVE = {"used": False}
_ROOT = "torch_geometric"


class Placeholder:
    """Stands for any torch_geometric class or function at import time: subclassable, callable,
    and, called with one object (a decorator's use), hands it back."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, obj=None, *args, **kwargs):
        return obj


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        path = self.__name__[len(_ROOT) + 1:]
        TOUCHED.add(f"{path}.{name}" if path else name)
        value = type(name, (Placeholder,), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == _ROOT or fullname.startswith(_ROOT + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _PlaceholderModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        if module.__name__ != _ROOT:
            TOUCHED.add(module.__name__[len(_ROOT) + 1:])


class _CompressaiFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``compressai`` package (its whole initialisation)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "compressai" or _ROOT in sys.modules:
            return None
        sys.meta_path.remove(self)  # one use: the real spec, from the finders after us
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Wrapped(spec.loader)
        return spec


class _Wrapped(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        finder = _PlaceholderFinder()
        sys.meta_path.insert(0, finder)
        try:
            self.inner.exec_module(module)
        except ModuleNotFoundError as e:
            if e.name and not e.name.startswith(_ROOT):  # a dependency missing: not ours to explain
                raise
            raise ImportError(f"CompressAI could not be imported with torch_geometric left out ({e}); set "
                              "LCSTUDY_LEAN_IMPORT=0 to import it whole, and report it (lcstudy.core.lean_import)") from e
        except Exception as e:
            raise ImportError(f"CompressAI could not be imported with torch_geometric left out ({type(e).__name__}: "
                              f"{e}); CompressAI's layout changed: set LCSTUDY_LEAN_IMPORT=0 to import it whole, and "
                              "report it (lcstudy.core.lean_import)") from e
        finally:
            sys.meta_path.remove(finder)
            for name in [n for n in sys.modules if n == _ROOT or n.startswith(_ROOT + ".")]:
                if isinstance(sys.modules[name], _PlaceholderModule):
                    del sys.modules[name]
        ACTIVE["used"] = True

    def is_package(self, fullname):
        return True

    # the import system asks the loader for these through the spec; delegate the rest
    def __getattr__(self, name):
        return getattr(self.inner, name)


def install() -> None:
    """Called by ``import lcstudy``: the next first ``import compressai`` leaves torch_geometric out."""
    if os.environ.get("LCSTUDY_LEAN_IMPORT", "1") == "0" or "compressai" in sys.modules:
        return
    if not any(isinstance(f, _CompressaiFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CompressaiFinder())
