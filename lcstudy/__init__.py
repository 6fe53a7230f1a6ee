"""lcstudy: what learned image codecs (CompressAI) cost to run on CPU and GPU.

The public API (the notebooks and any script use only this)::

    codec = lcstudy.load_codec("ARC", quality=1, weights="random", device="cpu", seed=0)
    df = lcstudy.profile(codec, images=[...], repeats=3, warmup=1, crop=None, threads=None)
    cx = lcstudy.count_complexity(codec, height=512, width=768)
    lcstudy.write_reports(df, out_dir)
    df = lcstudy.load_results(results_dir)

The package mirrors the study: ``core`` (the measurement core), ``runs`` (the run protocol and
the results on disk), ``pipeline`` (planning and executing the run notebooks, locally or on
SLURM, and laying out the book) and ``chapters`` (one module per chapter of the book).
"""
__version__ = "0.2.0"

import warnings as _warnings

# CompressAI scripts modules with torch.jit at import; torch deprecates that. Noise, not a finding.
_warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
# tqdm.auto in a notebook without ipywidgets (imported by a dependency): we use plain tqdm
_warnings.filterwarnings("ignore", message="IProgress not found")

# CompressAI's first import in this process leaves torch_geometric and torchvision out: ~3.5 s saved
from .core import lean_import as _lean_import  # noqa: E402

_lean_import.install()

_API = {"load_codec": ("core.codec_loading", "load_codec"), "CODECS": ("core.codec_table", "CODECS"),
        "CodecSpec": ("core.codec_table", "CodecSpec"), "Codec": ("core.codec_loading", "Codec"),
        "get_spec": ("core.codec_sources", "get_spec"), "codec_names": ("core.codec_sources", "codec_names"),
        "count_complexity": ("core.complexity", "count_complexity"), "profile": ("runs.learned", "profile"),
        "load_results": ("runs.tidy", "load_results"), "write_reports": ("chapters.workbooks", "write_reports"),
        "read_paper_xlsx": ("chapters.workbooks", "read_paper_xlsx"),
        "read_paper_reference": ("chapters.workbooks", "read_paper_reference"), "StopRule": ("core.stats", "StopRule")}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    # lazy: `python -m lcstudy.pipeline` checks parameters without importing torch
    if name in _API:
        import importlib

        mod, attr = _API[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'lcstudy' has no attribute {name!r}")
