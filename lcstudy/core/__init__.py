"""The measurement core: what one coding of one image costs, and nothing about files or runs.

``codec_table`` (every fact about a codec), ``codec_sources`` (where codecs come from: built-in, a codecs
file, entry points, import paths), ``codec_loading`` (a codec loaded, with ``weights``), ``instrument`` (the
stage split of a codec's own compress/decompress), ``clocks`` and ``stats`` (honest seconds and what to make
of them), ``contention``, ``energy`` and ``memory`` (read around every timed call; ``nvml`` the GPU handle two
of them read), ``complexity`` (MACs), ``kernels`` (operator profile), ``machine`` (matmul peak), ``images``,
``metrics``, ``environ`` (provenance, platform) and ``pillow_codecs`` (the standard codecs' one coding,
through Pillow and its plugins).
"""
