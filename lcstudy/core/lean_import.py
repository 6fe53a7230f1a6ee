"""Import CompressAI without its point-cloud and training-transform stacks: ~3.5 s of every run notebook's fixed cost.

``import compressai`` (1.2.8) imports all of its sub-packages, and two packages the study never
uses are reached that way:

- ``torch_geometric``: ``compressai.registry.transforms`` merges torch_geometric's transforms into
  its ``TRANSFORMS`` registry, ``compressai.transforms.point`` subclasses ``BaseTransform`` and
  decorates with ``functional_transform``, and the point-cloud datasets import both. Measured on
  the 2-core VM with ``python -X importtime -c "import compressai.zoo"``: 3.3 s of CompressAI's 8.6 s.
- ``torchvision``: ``compressai.registry.transforms`` does ``import torchvision.transforms`` for the
  same training registry, and torchvision's package import pulls in its models and ops, whose
  ``roi_align`` imports ``torch._dynamo``: 1.5 s of the 2.7 s CompressAI still took without
  torch_geometric (cProfile of an eager quick run, 2-core VM). No CompressAI model, layer, entropy
  model or zoo function uses torchvision; only the training-transform registry and ``eval_model``'s
  script do.

The study uses neither (no point cloud, no training transform), and these imports were paid by
every run notebook, every chapter notebook and many tests. So, while — and only while — CompressAI's
own package initialises, both packages and their sub-modules are served by **placeholders**: modules
whose every attribute is a placeholder class that can be subclassed, instantiated and used as a
decorator (what those import-time uses need), and whose ``__dict__`` holds no transform (so
CompressAI's ``TRANSFORMS`` registry holds only the transforms CompressAI registers itself). When
CompressAI's initialisation ends, the placeholders leave ``sys.modules``: a later ``import
torchvision`` or ``import torch_geometric`` (ptflops counting MACs, ``torch.compile``, a user's
script) loads the real package. CompressAI's installed files are not touched.

Contained by construction:

- It acts on the first ``import compressai`` of a process after ``lcstudy`` is imported, never
  when CompressAI was imported already; a package that is already loaded is used as it is (then
  there is nothing to save). ``LCSTUDY_LEAN_IMPORT=0`` turns it off.
- Every placeholder attribute asked for is recorded (:data:`TOUCHED`); the tests compare it with
  :data:`EXPECTED` and build every codec of the registry through the zoo and the classes, so a
  CompressAI release that uses these packages differently fails the tests, not a run.
- If CompressAI fails to import under the placeholders, the error says so and names the switch.
- What it gives up: ``compressai.registry.TRANSFORMS`` lacks torchvision's transforms in a process
  that imported ``lcstudy`` first. A training script that needs them sets ``LCSTUDY_LEAN_IMPORT=0``
  or imports CompressAI before ``lcstudy``.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types

#: the packages left out while CompressAI initialises
ROOTS = ("torch_geometric", "torchvision")
#: the names of those packages CompressAI 1.2.8 touches while it initialises (checked by the tests)
EXPECTED = frozenset({"torch_geometric.transforms", "torch_geometric.data", "torch_geometric.data.datapipes",
                      "torch_geometric.transforms.BaseTransform", "torch_geometric.transforms.Center",
                      "torch_geometric.data.Data", "torch_geometric.data.datapipes.functional_transform",
                      "torchvision.transforms"})
#: what the placeholders were asked for in this process (module paths and attributes, with their package)
TOUCHED: set[str] = set()
#: True once CompressAI was imported under the placeholders in this process; "roots": the packages left out
ACTIVE: dict = {"used": False, "roots": ()}


def _root(fullname: str, roots) -> str | None:
    return next((r for r in roots if fullname == r or fullname.startswith(r + ".")), None)


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
        TOUCHED.add(f"{self.__name__}.{name}")
        value = type(name, (Placeholder,), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = roots

    def find_spec(self, fullname, path=None, target=None):
        if _root(fullname, self.roots):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _PlaceholderModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        if module.__name__ not in self.roots:
            TOUCHED.add(module.__name__)


class _CompressaiFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``compressai`` package (its whole initialisation)."""

    def find_spec(self, fullname, path=None, target=None):
        roots = tuple(r for r in ROOTS if r not in sys.modules)
        if fullname != "compressai" or not roots:
            return None
        sys.meta_path.remove(self)  # one use: the real spec, from the finders after us
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Wrapped(spec.loader, roots)
        return spec


class _Wrapped(importlib.abc.Loader):
    def __init__(self, inner, roots):
        self.inner = inner
        self.roots = roots

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        finder = _PlaceholderFinder(self.roots)
        sys.meta_path.insert(0, finder)
        out = " and ".join(self.roots)
        try:
            self.inner.exec_module(module)
        except ModuleNotFoundError as e:
            if e.name and not _root(e.name, self.roots):  # a dependency missing: not ours to explain
                raise
            raise ImportError(f"CompressAI could not be imported with {out} left out ({e}); set LCSTUDY_LEAN_IMPORT=0 "
                              "to import it whole, and report it (lcstudy.core.lean_import)") from e
        except Exception as e:
            raise ImportError(f"CompressAI could not be imported with {out} left out ({type(e).__name__}: "
                              f"{e}); CompressAI's layout changed: set LCSTUDY_LEAN_IMPORT=0 to import it whole, and "
                              "report it (lcstudy.core.lean_import)") from e
        finally:
            sys.meta_path.remove(finder)
            for name in [n for n in sys.modules if _root(n, self.roots)]:
                if isinstance(sys.modules[name], _PlaceholderModule):
                    del sys.modules[name]
        ACTIVE["used"] = True
        ACTIVE["roots"] = self.roots

    def is_package(self, fullname):
        return True

    # the import system asks the loader for these through the spec; delegate the rest
    def __getattr__(self, name):
        return getattr(self.inner, name)


def install() -> None:
    """Called by ``import lcstudy``: the next first ``import compressai`` leaves :data:`ROOTS` out."""
    if os.environ.get("LCSTUDY_LEAN_IMPORT", "1") == "0" or "compressai" in sys.modules:
        return
    if not any(isinstance(f, _CompressaiFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CompressaiFinder())
