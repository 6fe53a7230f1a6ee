"""Tables a reader can read, and the words for every column.

Every column of every table the book shows or offers for download is documented once, in
:data:`COLUMNS`: its header in words with its unit, how it is rounded, and what it means. The
book's tables are pandas Stylers built by :func:`present`: no index column, headers from
:data:`COLUMNS` (a column without an entry is an error, so a snake_case header cannot reach the
page), numbers rounded by significance (3 significant digits; a median with the half-width of its
95 % confidence interval to the interval's second digit where that says more), and a blank, not
``0.0``, where there is no spread to show.

:func:`summarise` turns per-image rows into per-codec rows: the median over images of each
image's median over repeats, with the distribution-free 95 % interval of that median over the
images (:func:`lcstudy.core.stats.median_ci`; blank below 6 images) and whether its half-width
meets the study's precision target (5 % of the median).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..core.drift import between_half
from ..core.stats import TARGET_REL, median_ci

# kind: how a value is written
#   s: seconds, 3 significant digits · pct: percent, 3 significant digits (1 decimal above 10 %) · x: ratio "×", 3 significant digits
#   sig3: 3 significant digits · int: integer · text · bpp: 3 decimals · db: 2 decimals · frac: 3 decimals
#   ci: "median ± half-width" (seconds) · flag: "✓"/"✗"/blank
COLUMNS: dict[str, tuple[str, str, str]] = {
    # who and what
    "codec": ("codec", "text", "the codec's label (the paper's for its six; CompressAI class for CKBD and ELIC)"),
    "quality": ("quality", "int", "CompressAI quality index (complexity depends on it only through the channels)"),
    "label": ("run", "text", "the run's name: codec, quality and what differs from the profile's settings"),
    "platform": ("platform", "text", "CPU model, cores and threads (CPU runs) or the GPU (CUDA runs)"),
    "host": ("host", "text", "the results folder's host (the machine or cluster node that started the run)"),
    "node": ("node", "text", "the machine that measured this item"),
    "nodes": ("nodes", "text", "the machines that measured the run's items"),
    "device": ("device", "text", "cpu or cuda"),
    "device_name": ("device name", "text", "the device as requested (cuda:1: the second GPU)"),
    "threads": ("threads", "int", "torch intra-op threads during the run"),
    "weights": ("weights", "text", "random (seeded), pretrained (CompressAI zoo) or checkpoint (a user's file)"),
    "weights_label": ("weights used", "text", "the weights in words: seed, zoo, or checkpoint file and its sha256"),
    "seed": ("seed", "int", "torch.manual_seed before building a random-weight model"),
    "image": ("image", "text", "the test image"),
    "images": ("images", "int", "how many images the value summarises"),
    "height": ("height (px)", "int", "image height in pixels (before padding to a multiple of 64)"),
    "width": ("width (px)", "int", "image width in pixels"),
    "size": ("image size", "text", "width × height, and how it was made (native, crop, synthetic upscale)"),
    "mpx": ("megapixels", "sig3", "width × height / 10⁶"),
    "direction": ("direction", "text", "encode or decode"),
    "stage": ("stage", "text", "CompressAI sub-module or coder call the time is billed to (see Methodology)"),
    "stage_kind": ("stage kind", "text", "partition (adds up to the total), sub (inside AEy/ADy) or aggregate"),
    "run_kind": ("run kind", "text", "learned (one learned codec's run) or standard (the standard codecs' run)"),
    "op_kind": ("operator kind", "text", "cpu_op (a CPU operator, self time) or cuda_kernel (a CUDA kernel, device "
                "time)"),
    "row_type": ("row", "text", "decode (one decoder's decode of a stored bitstream) or mitigation (the same under a "
                 "mitigation)"),
    "codec_type": ("codec type", "text", "learned or standard"),
    "measured": ("clocked", "text", "True: read by a clock; False: derived (misc, */other, network)"),
    "run_id": ("run id", "text", "hash of the request and the platform fingerprint"),
    "request_id": ("request id", "text", "hash of everything that changes a run's numbers"),
    "crop": ("crop (px)", "int", "side of the centred square crop, if any"),
    "resize": ("synthetic size", "text", "W×H of the synthetic (upscaled) image, if any"),
    "profile": ("profile", "text", "the study profile the run was made with"),
    "repeats": ("repeats", "int", "timed repeats"),
    "repeat": ("repeat", "int", "index of the timed repeat"),
    "warmup": ("warm-up", "int", "untimed codings per new input shape"),
    "value": ("setting", "int", "the standard codec's quality (or JPEG 2000 compression ratio)"),
    "knob": ("set by", "text", "what the sweep sets: quality, or ratio for JPEG 2000"),
    "options": ("save options", "text", "Pillow save options of the standard codec"),
    "threading": ("threading", "text", "how many threads the standard codec's library used"),
    "item": ("item", "text", "what one item of the run measured: the image, or image@size in a run of several sizes"),
    "item_codec": ("codec", "text", "the standard codec of a standard-codec sample"),
    "stop": ("stopped by", "text", "why the repeats of an item stopped: precision, time budget, ceiling, contended"),
    # timings
    "seconds": ("seconds", "s", "median over the uncontended repeats"),
    "iqr_seconds": ("IQR (s)", "s", "interquartile range of the repeats (blank with one repeat)"),
    "ci_low": ("95 % CI low (s)", "s", "lower end of the median's distribution-free 95 % interval"),
    "ci_high": ("95 % CI high (s)", "s", "upper end of that interval"),
    "ci_run_low": ("across runs low (s)", "s", "lower end of the 95 % interval across runs: the within-run interval "
                   "(the repeats' range below 6 repeats) widened by the platform's between-run component"),
    "ci_run_high": ("across runs high (s)", "s", "upper end of the 95 % interval across runs"),
    "drift_sd": ("between-run sd", "frac", "the between-run component of the intervals across runs (log scale): "
                 "measured on the rows a reproducibility check reran where there is one, else the standard "
                 "deviation of the log of the platform's reference workload over all its probes (drift_source)"),
    "drift_source": ("between-run sd from", "text", "where drift_sd comes from: 'reruns' (the codec rows of the results "
                     "folder's reproducibility checks) or 'reference' (the reference workload's probes)"),
    "ref_seconds": ("reference (s)", "s", "the reference workload's median over the run's probes"),
    "ref_drift": ("reference drift", "x", "slowest probe of the reference workload over its fastest, within the run"),
    "ref_probes": ("reference probes", "int", "uncontended probes of the reference workload in the run"),
    "ref_platform_seconds": ("platform reference (s)", "s", "median reference over the platform's runs"),
    "ref_ratio": ("reference ratio", "x", "the run's reference over its platform's median (>1: slower)"),
    "ref_flag": ("reference flag", "text", "why the run's reference is flagged (drifted within the run or off its "
                 "platform); empty when not"),
    "run_half_s": ("± across runs (s)", "s", "half-width of the 95 % interval across runs: the images' own "
                   "intervals across runs (repeats and the platform's between-run component), their median"),
    "run_half_pct": ("± across runs (%)", "pct", "that half-width over the median"),
    "ratio_uncertainty_pct": ("± ratio across runs (%)", "pct", "uncertainty of the ratio of two medians from "
                              "different runs: the quadratic mean of their across-runs half-widths"),
    "within_uncertainty": ("within uncertainty", "flag", "✓ when the ratio is within that uncertainty: the order "
                           "may not survive a rerun"),
    "n_samples": ("repeats", "int", "uncontended timed repeats"),
    "n_contended": ("contended repeats", "int", "repeats during which other processes used the machine"),
    "noisy": ("noisy", "text", "IQR over median > 10 %"),
    "contended": ("contended", "text", "whether other processes used the machine during the call"),
    "other_cpu_s": ("others' CPU (s)", "s", "CPU seconds the rest of the machine used during the call"),
    "median_s": ("median (s)", "ci", "median over images of each image's median, ± half the 95 % interval"),
    "encode_s": ("encode (s)", "ci", "encode time: median over images, ± half the 95 % interval over images"),
    "decode_s": ("decode (s)", "ci", "decode time: median over images, ± half the 95 % interval over images"),
    "ci_half_s": ("± CI (s)", "s", "half-width of the median's 95 % interval over images (blank below 6 images)"),
    "ci_half_pct": ("± CI (%)", "pct", "half-width of the 95 % interval over the median"),
    "precise": ("within 5 %", "flag", "✓ when the 95 % interval's half-width is within 5 % of the median"),
    "share_pct": ("share of total (%)", "pct", "the stage's time over the direction's total"),
    "total_s": ("total (s)", "ci", "time of the whole compress() or decompress()"),
    "bpp": ("bits per pixel", "bpp", "bitstream bytes × 8 / pixels"),
    "psnr": ("PSNR (dB)", "db", "RGB PSNR of the 8-bit reconstruction"),
    "ms_ssim": ("MS-SSIM", "frac", "RGB MS-SSIM of the 8-bit reconstruction (blank below 161 px)"),
    "nbytes": ("bytes", "int", "bitstream bytes"),
    # complexity
    "kmac_per_px": ("kMAC/px", "sig3", "thousand multiply-accumulates per unpadded pixel (ptflops aten)"),
    "kmac_encode": ("encode kMAC/px", "sig3", "encoder-side thousand MACs per pixel"),
    "kmac_decode": ("decode kMAC/px", "sig3", "decoder-side thousand MACs per pixel"),
    "macs": ("MACs", "int", "multiply-accumulates (ptflops, backend='aten')"),
    "flops_torch": ("FLOPs (torch)", "int", "torch.utils.flop_counter.FlopCounterMode's count (2 per MAC)"),
    "gmac": ("GMAC", "sig3", "billion multiply-accumulates"),
    "params": ("parameters", "int", "parameters of the modules the stage runs"),
    "params_m": ("parameters (M)", "sig3", "millions of parameters of the whole model"),
    "model_params": ("model parameters", "int", "parameters of the whole model"),
    "mac_vs_torch": ("ptflops / FlopCounterMode", "sig3", "agreement of the two counters (1 = equal)"),
    "count_mode": ("counted as", "text", "executed (as the coding ran) or parallel (the AR context in one pass)"),
    "ar_count": ("AR context counted", "text", "parallel: the autoregressive context model in one pass"),
    "uncounted": ("not counted by either counter", "text", "modules with parameters no counter counted"),
    # memory
    "memory": ("memory", "text", "cpu_rss (resident set), cuda_allocated or cuda_reserved"),
    "baseline_mb": ("before the call (MB)", "sig3", "memory just before the timed call"),
    "peak_mb": ("peak memory (MB)", "sig3", "high-water mark during the call"),
    "working_mb": ("working memory (MB)", "mbdiff", "peak minus the resident memory before the call; on CPU a "
                   "lower bound (memory the allocator kept from earlier calls is reused unseen); below 0.1 MB, "
                   "negative ones included (the call gave memory back), shown as < 0.1"),
    "peak_mb_encode": ("encode peak (MB)", "sig3", "high-water mark during the encode"),
    "peak_mb_decode": ("decode peak (MB)", "sig3", "high-water mark during the decode"),
    "working_mb_encode": ("encode working (MB)", "mbdiff",
                          "encode peak minus before (on CPU a lower bound, see working_mb)"),
    "working_mb_decode": ("decode working (MB)", "mbdiff",
                          "decode peak minus before (on CPU a lower bound, see working_mb)"),
    "method": ("method", "text", "how the peak was read"),
    "mac_imports_resident": ("MAC counter's imports resident", "text",
                             "measured before lcstudy's commit a775b1c (7 Dec 2026): the MAC count ran in the run's "
                             "first warm-up and left torch._dynamo and sympy (~150 MB) resident, so baseline and peak "
                             "read that much high"),
    # kernels
    "op": ("operator or kernel", "text", "torch operator (CPU) or CUDA kernel name"),
    "category": ("category", "text", "the paper's kernel categories"),
    "self_seconds": ("self time (s)", "s", "time spent in the op itself"),
    "calls": ("calls", "int", "how often the op ran"),
    "share": ("share (0–1)", "frac", "self time over the call's wall time (CPU) or the kernels' total (CUDA)"),
    "wall_seconds": ("wall (s)", "s", "wall time"),
    "share_of_time_pct": ("share of time (%)", "pct", "share of the call's time"),
    # energy
    "joules": ("energy (J/image)", "sig3", "joules per timed call (median over images), where exposed"),
    "joules_ci_half": ("± (J)", "sig3", "half the 95 % interval of that median over images"),
    "joules_per_mp": ("energy (J/MP)", "sig3", "joules per megapixel of the image"),
    "energy_j": ("energy (J)", "sig3", "joules of the whole call (total rows), from the platform's counter"),
    "energy_j_per_mp": ("energy (J/MP)", "sig3", "joules per megapixel"),
    "encode_j_per_mp": ("encode (J/MP)", "sig3", "encode energy per megapixel, where exposed"),
    "decode_j_per_mp": ("decode (J/MP)", "sig3", "decode energy per megapixel, where exposed"),
    "energy_source": ("energy counter", "text", "NVML (GPU board) or RAPL (CPU packages), or why none"),
}
_PROVENANCE = {
    "cpu_model": ("CPU", "text", "CPU model name"), "cpu_count": ("cores", "int", "logical CPUs of the machine"),
    "cpu_flags": ("CPU flags", "text", "the CPU's vector features that decide the kernels (AVX2, AVX-512, VNNI, AMX)"),
    "gpu_name": ("GPU", "text", "GPU model name"), "torch_version": ("torch", "text", "torch version"),
    "energy": ("energy", "text", "where the run's energy figures come from, or why it has none"),
    "cuda_version": ("CUDA", "text", "CUDA version of the torch build"),
    "compressai_version": ("CompressAI", "text", "CompressAI version"),
    "python_version": ("Python", "text", "Python version"), "lcstudy_version": ("lcstudy", "text", "lcstudy version"),
    "git_commit": ("commit", "text", "lcstudy git commit (-dirty: uncommitted changes)"),
    "time_utc": ("measured (UTC)", "text", "when the run started"),
    "peak_matmul_gflops": ("peak matmul (GFLOP/s)", "int", "best float32 matrix product rate of the run's platform"),
    "load_seconds": ("model loading (s)", "s", "wall time to load the model (the paper's Model Loading)"),
}
COLUMNS.update(_PROVENANCE)
COLUMNS.update({  # deployment backends (lcstudy.core.backends; the Deployment chapter)
    "backend": ("backend", "text", "how the transforms ran: eager (fp32 PyTorch, the reference) or a deployment backend"),
    "run_backend": ("run's backend", "text", "the backend the run deployed (eager: a run before or without one)"),
    "identical_bitstream": ("same bits as eager", "flag", "the bitstream is byte-identical to eager's"),
    # decodability (:mod:`lcstudy.chapters.decodability`)
    "encoder": ("encoder", "text", "the encoder's host · backend · device · threads"),
    "decoder_at": ("decoder", "text", "the decoder's host · configuration (backend · device · threads; h_s+N ulp: "
                   "a simulated platform, h_s's output nudged by N units in the last place)"),
    "decoder": ("decoder", "text", "the decoder's configuration"),
    "mitigated": ("corrupted by", "text", "the decoder configuration whose corrupted images the mitigation decodes "
                  "again"),
    "identical_images": ("identical", "frac", "share of images decoded bit-exactly as the encoder's own decode"),
    "close_images": ("close", "frac", "share of images decoded with the encoder's symbols but other reconstruction "
                     "bits (PSNR within 0.05 dB)"),
    "corrupt_images": ("corrupt", "frac", "share of images whose entropy decoding desynchronised"),
    "error_images": ("error", "frac", "share of images the decoder failed on"),
    "degenerate": ("degenerate model", "flag", "✓: at least 95 % of the scale indexes at one table entry (random "
                   "weights): no decoder can desynchronise, the row says nothing about a trained codec"),
    "example": ("first difference", "text", "why the first image not identical was not"),
    "top_share": ("top entry share", "frac", "median share of the scale indexes at the most used table entry"),
    "indexes_used": ("table entries used", "int", "median number of scale-table entries used by an image"),
    "margin_ulps": ("margin (ulps)", "sig3", "smallest distance of a predicted scale from a scale-table value, in "
                    "float32 ulps: a decoder whose scales differ by more can desynchronise"),
    "at_risk": ("scales at risk", "int", "predicted scales within 8 ulps of a table value"),
    "decoders": ("decoders", "text", "the decoder configurations run on a machine, or the simulated platforms"),
    "configurations": ("configurations", "int", "decoder configurations"),
    "codecs_decoded": ("codecs", "int", "codecs decoded"),
    "pairs": ("pairs", "int", "codec × encoder × decoder configurations"),
    "lost_pairs": ("pairs that lost an image", "int", "pairs with at least one image corrupt or in error"),
    "close_pairs": ("pairs with close images", "int", "pairs with at least one image close (same symbols, other "
                    "reconstruction bits)"),
    "max_corrupt_share": ("most corrupted", "frac", "the largest share of a codec's images corrupted"),
    "restored_share": ("restored", "frac", "share of the corrupted images that decode (identical or close) with the "
                       "mitigation"),
    "mitigation_cost": ("decode time ×", "x", "decode time with h_s in float64 over float32's (median of 3 each)"),
    "identical_share": ("bitstream = eager's (share of images)", "frac", "share of images whose bitstream is eager's, byte for byte"),
    "identical_count": ("bitstream = eager's (images)", "int", "how many images' bitstreams are eager's, byte for byte"),
    "op_share": ("share of the coding", "frac", "the operator's self time over the profiled coding's wall time"),
    "prime_seconds": ("first coding (s)", "s", "untimed first coding of a new input shape: a one-off cost"),
    "setup_seconds": ("setup (s)", "s", "one-off: export, calibration and conversion of the transforms"),
    "model_bytes": ("model bytes", "int", "the model's tensors at the backend's precision (ONNX: the files)"),
    "eager_model_bytes": ("eager model bytes", "int", "the fp32 model's parameters and buffers"),
    "model_ratio": ("model / eager", "sig3", "model bytes over eager's"),
    "precision": ("precision", "text", "the arithmetic the backend runs the transforms in"),
    "kept_fp32": ("left fp32", "text", "layers the int8 quantizer did not quantize"),
    "deployed_modules": ("deployed", "text", "the modules the backend runs (the rest stays eager)"),
    "max_rel_diff": ("max difference", "sig3", "largest max-abs difference from eager over the largest output"),
    "eager_s": ("eager (s)", "s", "eager's time, timed beside the backend: median over images"),
    "backend_s": ("backend (s)", "s", "the backend's time: median over images"),
    "speedup_vs_eager": ("speed-up", "x", "eager's time over the backend's, per image, median over images (>1: faster)"),
    "delta_bpp_pct": ("Δ rate (%)", "pct", "the backend's bits per pixel over eager's, minus 1"),
    "delta_psnr_db": ("Δ PSNR (dB)", "db", "the backend's PSNR minus eager's"),
    "delta_ms_ssim": ("Δ MS-SSIM", "frac", "the backend's MS-SSIM minus eager's"),
})
COLUMNS.update({
    # assessment
    "ratio_to_fastest": ("× the fastest", "x", "time over the fastest codec's, same platform and direction"),
    "rank": ("rank", "int", "1 = fastest on this platform and direction"),
    "paper_share_pct": ("paper's share (%)", "pct", "the ICASSP 2023 paper's share of the stage, same codec, "
                        "quality and device"),
    "source": ("source", "text", "whose measurement"),
    "ratio_to_least": ("× the fewest", "x", "over the codec with the fewest MACs per pixel, same direction"),
    "slowest": ("slowest", "text", "the slowest codec (lowest quality of each)"),
    "slowest_s": ("slowest (s)", "s", "its median time per image"),
    "fastest": ("fastest", "text", "the fastest codec (lowest quality of each)"),
    "fastest_s": ("fastest (s)", "s", "its median time per image"),
    "ratio": ("ratio", "x", "slowest over fastest"),
    "cpu_s": ("CPU (s)", "s", "median time per image on the main CPU platform"),
    "cuda_s": ("GPU (s)", "s", "median time per image on the main GPU platform"),
    "speedup": ("GPU speed-up", "x", "CPU time over GPU time"),
    # paper_comparison
    "paper_seconds": ("paper (s)", "s", "the paper's mean over images (mse models, same quality and device)"),
    "ours_over_paper": ("ours / paper", "x", "our time over the paper's"),
    "a": ("ranking A", "text", "one source's codec ranking"), "b": ("ranking B", "text", "the other's"),
    "codecs": ("codecs", "int", "codecs both rankings have"),
    "tau": ("Kendall τ", "sig3", "1: same order; -1: reversed"),
    "p_value": ("p-value", "sig3", "SciPy's kendalltau p-value (no correlation as the null hypothesis)"),
    "lower_on_a": ("faster by A", "text", "the pair's faster codec in ranking A"),
    "lower_on_b": ("faster by B", "text", "the pair's faster codec in ranking B"),
    "pair": ("pair", "text", "the two codecs"),
    "aez_over_ga": ("AEz / g_a", "x", "the paper's CUDA AEz time over its g_a time (HP, MS-HP: no sync)"),
    "ratio_median": ("median ours / paper", "x", "median over codecs of our total over the paper's"),
    # flops_runtime
    "mpx_per_s": ("megapixels per second", "sig3", "image megapixels over the median time"),
    "pearson_log": ("Pearson r (log–log)", "sig3", "Pearson correlation of log kMAC/px and log seconds"),
    "spearman": ("Spearman ρ", "sig3", "rank correlation of kMAC/px and seconds"),
    "spearman_p": ("Spearman p-value", "sig3", "SciPy's p-value for ρ"),
    "pairs_reversed": ("pairs reversed", "int", "codec pairs in the opposite order by MACs and by time"),
    "rank_time": ("rank by time", "int", "1 = fastest on the platform"),
    "rank_kmac": ("rank by kMAC/px", "int", "1 = fewest MACs per pixel"),
    "more_macs": ("more MACs", "text", "the pair's codec with more MACs per pixel"),
    "fewer_macs": ("fewer MACs", "text", "the pair's codec with fewer MACs per pixel"),
    "mac_ratio": ("MAC ratio", "x", "kMAC/px of the codec with more over the other's"),
    "time_ratio": ("time ratio", "x", "its time over the other's (below 1: faster despite more MACs)"),
    "achieved_gmac_s": ("achieved GMAC/s", "sig3", "the stage's counted MACs over its median time"),
    "peak_gmac_s": ("peak GMAC/s", "sig3", "half the best float32 matmul GFLOP/s of the platform"),
    "fraction_of_peak_pct": ("of the peak (%)", "pct", "achieved over peak"),
    # rd_frontier
    "points": ("RD points", "int", "points of the codec's curve"),
    "bd_rate_vs_x265_pct": ("BD-rate vs x265, published (%)", "pct", "bjontegaard (Akima) against CompressAI's "
                            "published BPG/x265 4:4:4 points; negative = fewer bits at equal PSNR"),
    "bd_rate_vs_x265_ours_pct": ("BD-rate vs our x265 (%)", "pct", "the same against our x265 HEIC measurement"),
    "dec_kmac_px_min": ("decode kMAC/px (lowest config.)", "sig3", "decoder kMAC/px of the smallest channel "
                        "configuration counted"),
    "dec_kmac_px_max": ("decode kMAC/px (largest config.)", "sig3", "decoder kMAC/px of the largest one counted"),
    "counted_at": ("counted at", "text", "image sizes the MACs were counted at"),
    "decode_seconds_cpu": ("decode on CPU (s)", "s", "our median decode time on CPU, lowest quality"),
    "frontier_kmac": ("on the kMAC frontier", "flag", "no codec has both fewer MACs and a lower BD-rate"),
    "frontier_time": ("on the time frontier", "flag", "no codec decodes faster with a lower BD-rate"),
    # standard_codecs
    "s_per_mpx": ("s per Mpx", "s", "seconds per megapixel"),
    "psnr_at_bpp": ("PSNR at the bitrate (dB)", "db", "PSNR interpolated at the matched bitrate"),
    "how": ("how", "text", "how the value at the matched bitrate was obtained"),
    "measured_q": ("measured quality", "int", "the quality of ours whose channels reach the bitrate"),
    "encode_s_per_mpx": ("encode (s/Mpx)", "s", "encode seconds per megapixel at the matched bitrate"),
    "decode_s_per_mpx": ("decode (s/Mpx)", "s", "decode seconds per megapixel at the matched bitrate"),
    "encode_x_jpeg": ("encode × JPEG", "x", "how many times JPEG's encode time"),
    "decode_x_jpeg": ("decode × JPEG", "x", "how many times JPEG's decode time"),
    "encode_x_hevc": ("encode × x265", "x", "how many times x265's (HEIC) encode time"),
    "decode_x_hevc": ("decode × x265", "x", "how many times x265's (HEIC) decode time"),
    "noisy_share": ("noisy share (0–1)", "frac", "share of images whose repeats spread > 10 %"),
    # scaling
    "encode_network_s": ("encode network (s)", "s", "encode transforms only (l3ic's E)"),
    "decode_network_s": ("decode network (s)", "s", "decode transforms only (l3ic's D)"),
    "encode_total_s": ("encode (s)", "ci", "whole encode (l3ic's CE): median over repeats ± half its 95 % interval"),
    "decode_total_s": ("decode (s)", "ci", "whole decode (l3ic's DE): median over repeats ± half its 95 % interval"),
    "encode_ci_half_s": ("encode ± CI (s)", "s", "half the 95 % interval of the encode median (6+ repeats)"),
    "decode_ci_half_s": ("decode ± CI (s)", "s", "half the 95 % interval of the decode median (6+ repeats)"),
    "sizes": ("sizes", "int", "image sizes the exponent is fitted over"),
    "mpx_range": ("megapixels", "text", "smallest to largest size"),
    "exp_encode_total": ("encode exponent", "sig3", "slope of log(encode time) on log(megapixels)"),
    "exp_decode_total": ("decode exponent", "sig3", "slope of log(decode time) on log(megapixels)"),
    "exp_encode_network": ("encode network exponent", "sig3", "the same for the transforms only"),
    "exp_decode_network": ("decode network exponent", "sig3", "the same for the transforms only"),
    "exp_working_encode": ("encode memory exponent", "sig3", "slope of log(working memory) on log(megapixels)"),
    "exp_working_decode": ("decode memory exponent", "sig3", "the same for the decode"),
    "first_over_median": ("first / median", "x", "the first repeat over the median of the repeats"),
    "max_over_min": ("max / min", "x", "slowest repeat over fastest"),
    "warmup_codings": ("warm-up codings", "int", "untimed codings before this item's repeats"),
})


def header(col: str) -> str:
    if col not in COLUMNS:
        raise KeyError(f"column {col!r} has no entry in lcstudy.chapters.columns.COLUMNS: document it there")
    return COLUMNS[col][0]


def sig(x, n: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    x = float(x)
    if x == 0:
        return "0"
    digits = n - int(math.floor(math.log10(abs(x)))) - 1
    if digits <= 0:
        return f"{round(x, digits):,.0f}"
    return f"{x:.{digits}f}"


def _decimals(x: float, n: int) -> int:
    """Decimals that show ``x`` to ``n`` significant digits (negative: round to tens, hundreds…)."""
    return n - int(math.floor(math.log10(abs(x)))) - 1 if x else 0


def ci_text(med, half) -> str:
    """"median ± half-width": the median to 3 significant digits, or to the half-width's second digit
    where the interval is narrow enough to say more (12.346 ± 0.012, not 12.3 ± 0.012)."""
    if half is None or (isinstance(half, float) and math.isnan(half)) or not half:
        return sig(med)
    d = max(_decimals(float(med), 3), _decimals(float(half), 2))
    if d <= 0:
        return f"{round(float(med), d):,.0f} ± {sig(half, 2)}"
    return f"{float(med):.{d}f} ± {float(half):.{d}f}"


def _no_minus_zero(text: str) -> str:
    """'-0.00' (a tiny negative rounded away) written as '0.00': a sign on nothing reads as a finding."""
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def fmt(kind: str, x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or (x is pd.NA):
        return ""
    if kind in ("s", "sig3"):
        return sig(x)
    if kind == "x":
        return sig(x) + "×"
    if kind == "pct":  # 3 significant digits, never more than 1 decimal above 10 %
        return sig(x) if abs(float(x)) < 10 else f"{float(x):.1f}"
    if kind == "int":
        try:
            return f"{int(x):,}"
        except (TypeError, ValueError):
            return str(x)
    if kind == "mbdiff":  # a difference of two resident-memory readings: below 0.1 MB it is not resolved
        return "< 0.1" if float(x) < 0.1 else sig(x)
    if kind == "bpp":
        return _no_minus_zero(f"{float(x):.3f}")
    if kind == "db":
        return _no_minus_zero(f"{float(x):.2f}")
    if kind == "frac":
        return _no_minus_zero(f"{float(x):.3f}")
    if kind == "flag":
        return "✓" if bool(x) else "✗"
    if kind == "ci":
        if isinstance(x, tuple):
            med, half = x
            if med is None or (isinstance(med, float) and math.isnan(med)):
                return ""
            return ci_text(med, half)
        return sig(x)
    return str(x)


#: columns that, when one value fills them, are said once above the table instead of in every row
CONSTANT_OK = ("platform", "device", "weights", "weights_label", "threads", "memory", "method", "size", "images",
               "count_mode")


def present(df: pd.DataFrame, columns: list[str] | None = None, caption: str | None = None):
    """A pandas Styler for the book: documented headers, rounding by quantity, no index; a column of
    :data:`CONSTANT_OK` with one value throughout is said once, in the caption, to keep tables narrow."""
    d = df[columns] if columns else df
    d = d.reset_index(drop=True)
    said = []
    if len(d) > 1:
        for c in [c for c in d.columns if c in CONSTANT_OK]:
            vals = d[c].dropna().astype(str).unique()
            if len(vals) == 1 and len(d.columns) > 2:
                said.append(f"{header(c)}: {fmt(COLUMNS[c][1], d[c].dropna().iloc[0])}")
                d = d.drop(columns=c)
    out = pd.DataFrame({header(c): [fmt(COLUMNS[c][1], v) for v in d[c]] for c in d.columns})
    st = out.style.hide(axis="index")
    text = "; ".join(x for x in [caption or "", "; ".join(said)] if x)
    if text:
        st = st.set_caption(text)
    return st.set_table_attributes('class="lcstudy-table"')


def summarise(rows: pd.DataFrame, by: list[str], value: str = "seconds") -> pd.DataFrame:
    """Per ``by`` group: the median over images of ``value`` (each image once: its runs' median),
    the 95 % interval of that median over the images, its half-width in % and whether it meets the
    precision target; for times, the half-width across runs too (``run_half``, ``run_half_pct``): where
    this median would land if the same images were measured again. That is each image's own interval
    across runs (``ci_run_low``/``ci_run_high``: its repeats' noise and the platform's between-run
    component ``drift_sd``, :func:`lcstudy.core.drift.widen`), their median over the images — never the
    interval over images, which measures how different the images are: two codecs compared on the same
    images share that, and a rerun does not change it. Rows without those columns (results from before
    the reference workload) fall back to the between-run component alone
    (:func:`lcstudy.core.drift.between_half`)."""
    times = value == "seconds"
    spread = times and {"ci_run_low", "ci_run_high"} <= set(rows.columns)
    out = []
    for key, rg in rows.groupby(by, dropna=False, sort=False):
        per = rg.groupby("image", dropna=False, sort=False)
        v = per[value].median().dropna().to_numpy(dtype=float)
        med = float(np.median(v)) if len(v) else float("nan")
        lo, hi = median_ci(v)
        half = (hi - lo) / 2 if not math.isnan(lo) else float("nan")
        # across runs: each image's own interval across runs (its median over the images); the between-run
        # component is common to every image of a run, so it is never less than that; blank when unknown
        sd = float(rg.drift_sd.median()) if times and "drift_sd" in rg and rg.drift_sd.notna().any() else 0.0
        own = (float(((rg.ci_run_high - rg.ci_run_low) / 2).groupby(rg.image, dropna=False).median().median())
               if spread else float("nan"))
        run_half = (max(0.0 if math.isnan(own) else own, between_half(med, sd)) if (not math.isnan(own) or sd > 0)
                    and not math.isnan(med) else float("nan"))
        rec = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        rec.update({"median": med, "half": half, "images": len(v), "run_half": run_half,
                    "run_half_pct": 100 * run_half / med if med and not math.isnan(run_half) else float("nan"),
                    "ci_half_pct": 100 * half / med if med and not math.isnan(half) else float("nan"),
                    "precise": (half / med <= TARGET_REL) if med and not math.isnan(half) else None})
        out.append(rec)
    return pd.DataFrame(out)


def ci_cell(s: pd.DataFrame) -> pd.Series:
    """Cells for a "ci" column: (median, half-width) pairs."""
    return pd.Series(list(zip(s["median"], s["half"])), index=s.index)


def snake_headers(html: str) -> list[str]:
    """Table headers in ``html`` that look like snake_case identifiers (a test uses this on the book)."""
    import re

    heads = re.findall(r"<th[^>]*>(.*?)</th>", html, flags=re.S)
    out = []
    for h in heads:
        text = re.sub(r"<[^>]+>", "", h).strip()
        if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", text):
            out.append(text)
    return out
