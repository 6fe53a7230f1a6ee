"""Rate and quality exactly as CompressAI's ``eval_model``: bpp from the real bitstream
bytes; PSNR and MS-SSIM on the 8-bit reconstruction (values rounded to 0..255)."""
from __future__ import annotations

import math

import torch
from pytorch_msssim import ms_ssim

#: pytorch_msssim's 5-scale MS-SSIM needs the smaller side > 160 px.
MS_SSIM_MIN_SIDE = 161


def bpp(nbytes: int, height: int, width: int) -> float:
    return nbytes * 8.0 / (height * width)


def _eight_bit(org: torch.Tensor, rec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    org = (org.detach().float().cpu() * 255).clamp(0, 255).round()
    rec = (rec.detach().float().cpu() * 255).clamp(0, 255).round()
    mse = torch.mean((org - rec) ** 2).item()
    return org, rec, mse, float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def psnr(org: torch.Tensor, rec: torch.Tensor) -> float:
    """PSNR with both images at 8 bits, as :func:`quality` (without the MS-SSIM)."""
    return _eight_bit(org, rec)[3]


def quality(org: torch.Tensor, rec: torch.Tensor) -> dict[str, float]:
    org, rec, mse, psnr = _eight_bit(org, rec)
    if min(org.shape[-2:]) >= MS_SSIM_MIN_SIDE:
        msssim = ms_ssim(org, rec, data_range=255.0).item()
    else:
        msssim = float("nan")  # too small for 5 scales; recorded as missing, not invented
    return {"psnr": psnr, "ms_ssim": msssim, "mse": mse}
