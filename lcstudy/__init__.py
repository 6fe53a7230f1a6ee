"""lcstudy: what learned image codecs (CompressAI) cost to run on CPU and GPU.

The public API (the notebooks and any script use only this)::

    codec = lcstudy.load_codec("ARC", quality=1, weights="random", device="cpu", seed=0)
    df = lcstudy.profile(codec, images=[...], repeats=3, warmup=1, crop=None, threads=None)
    cx = lcstudy.count_complexity(codec, height=512, width=768)
    lcstudy.write_reports(df, out_dir)
    df = lcstudy.load_results(results_dir)
"""
from .codecs import CODECS, Codec, CodecSpec, codec_names, get_spec, load_codec
from .complexity import count_complexity
from .profile import RunSpec, profile
from .results import load_results, read_paper_reference, read_paper_xlsx, write_reports

__version__ = "0.1.0"
__all__ = ["CODECS", "Codec", "CodecSpec", "RunSpec", "codec_names", "count_complexity", "get_spec", "load_codec",
           "load_results", "profile", "read_paper_reference", "read_paper_xlsx", "write_reports", "__version__"]
