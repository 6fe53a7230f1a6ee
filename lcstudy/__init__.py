"""lcstudy: what learned image codecs (CompressAI) cost to run on CPU and GPU."""
from .codecs import CODECS, Codec, CodecSpec, codec_names, get_spec, load_codec

__version__ = "0.1.0"
__all__ = ["CODECS", "Codec", "CodecSpec", "codec_names", "get_spec", "load_codec", "__version__"]
