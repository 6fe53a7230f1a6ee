"""The page of the standard codecs' run (the ``profile_standard`` notebook)."""
from __future__ import annotations

from ..core.pillow_codecs import libraries, options_table
from . import style
from .page import Page
from .run_page import contended_note, measured
from .columns import present


def sweep_table(std):
    """Per codec and sweep value: mean bpp, PSNR and MS-SSIM over the images; median encode and decode
    time over the images (of each image's median over repeats)."""
    g = std.groupby(["codec", "knob", "value", "direction"], as_index=False).agg(
        bpp=("bpp", "mean"), psnr=("psnr", "mean"), ms_ssim=("ms_ssim", "mean"), seconds=("seconds", "median"),
        images=("image", "nunique"))
    keys = ["codec", "knob", "value"]
    # the metrics joined on the keys, not pivoted as index: a NaN (MS-SSIM is undefined below 161 px)
    # would drop the row from a pivot's index
    t = g.pivot_table(index=keys, columns="direction", values="seconds").rename(
        columns={"encode": "encode_s", "decode": "decode_s"}).reindex(columns=["encode_s", "decode_s"])
    q = g.groupby(keys).agg(bpp=("bpp", "first"), psnr=("psnr", "first"), ms_ssim=("ms_ssim", "first"),
                            images=("images", "max"))
    w = q.join(t).reset_index()
    w.columns.name = None
    return style.sort_codecs(w, then=["bpp"])


def fig_rd_time(w, std):
    plt = style.setup()
    fig, axes = plt.subplots(1, 3, figsize=(style.FIG_WIDTH, 3.3))
    for c, g in w.groupby("codec", sort=False):
        g = g.sort_values("bpp")
        kw = dict(marker="s", ms=3, ls="--", color=style.codec_color(c), label=c)
        axes[0].plot(g.bpp, g.psnr, **kw)
        axes[1].plot(g.bpp, g.encode_s, **kw)
        axes[2].plot(g.bpp, g.decode_s, **kw)
    axes[0].set(xlabel="bits per pixel", ylabel="PSNR RGB (dB)", title="rate-distortion")
    axes[1].set(xlabel="bits per pixel", ylabel="seconds per image", yscale="log", title="encode time")
    axes[2].set(xlabel="bits per pixel", ylabel="seconds per image", yscale="log", title="decode time")
    style.legend_above(fig)
    return style.finish(fig, style.title("Standard codecs", std))


def build(result) -> Page:
    std = result.tables["standard"]
    page = Page("standard_run")
    libs = libraries()
    r = std.iloc[0]
    runs = result.tables["runs"].iloc[0]
    size = f"{int(r.crop)}×{int(r.crop)} centre crops" if r.crop == r.crop and r.crop else "full-size images"
    page.header = (f"Platform *{r.platform}*, node(s) `{runs.nodes}`, {r.threads} threads, {std.image.nunique()} "
                   f"images ({size}); repeats made: {int(runs.repeats)} ({runs.contended_share:.1%} contended and "
                   f"measured again), stopped by: {runs.stops}; Pillow {libs['pillow']}, pillow-heif "
                   f"{libs['pillow_heif']} (x265 {libs['x265']}), pillow-jxl-plugin {libs['pillow_jxl_plugin']}."
                   + contended_note(result.run))
    opts = options_table()
    page.text("options", opts.to_markdown(index=False) if hasattr(opts, "to_markdown") else "")
    std = measured(std)
    if std.empty:
        return page
    w = sweep_table(std)
    page.table("sweep", present(w, ["codec", "value", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s", "images"]),
               "Mean bpp, PSNR and MS-SSIM over the images; median over the images of each image's median time.")
    page.figure("rd_time", fig_rd_time(w, std), "Left, the rate-distortion curves; middle and right, encode and "
                "decode time at each point: look at how little the time changes with the bitrate.")
    return page
