"""Reconstruction and generation metrics, each as the reference protocols define it."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-instance PSNR in dB of images in [0, 1]: (B, ...) -> (B,).

    The dataset figure is the mean of these (mNIF's convention), not the PSNR
    of the mean MSE (Functa's).
    """
    mse = ((pred - true) ** 2).flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-12))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(pred: torch.Tensor, true: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-instance SSIM (Wang et al. 2004) of images (B, C, H, W) in [0, 1] -> (B,).

    11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1;
    statistics over 'valid' windows only (as the authors' ssim_index.m), the
    SSIM map averaged over positions and channels. Images smaller than the
    window use a window the size of the image.
    """
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out_dtype = pred.dtype
    pred, true = pred.double(), true.double()   # E[x^2] - mu^2 cancels badly in float32
    size = min(window, pred.shape[-1], pred.shape[-2])
    w = _gaussian_window(size, sigma).to(pred)
    channels = pred.shape[1]
    kernel = w.expand(channels, 1, size, size)

    def filt(x):
        return F.conv2d(x, kernel, groups=channels)

    mu_x, mu_y = filt(pred), filt(true)
    sxx = filt(pred * pred) - mu_x ** 2
    syy = filt(true * true) - mu_y ** 2
    sxy = filt(pred * true) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(1).to(out_dtype)


def nearest_distances(queries: torch.Tensor, references: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 distance from each query to its nearest reference, and that reference's index.

    queries (Q, D), references (N, D) -> ((Q,), (Q,)). Computed in float64
    chunks so that large reference sets fit in memory and distances of
    near-duplicates do not cancel to garbage.
    """
    refs = references.double()
    ref_sq = (refs ** 2).sum(1)
    dists, idx = [], []
    for q in queries.double().split(chunk):
        d2 = (q ** 2).sum(1, keepdim=True) - 2 * q @ refs.T + ref_sq[None]
        best, arg = d2.min(1)
        dists.append(best.clamp_min(0).sqrt())
        idx.append(arg)
    return torch.cat(dists).float(), torch.cat(idx)


def memorisation_distance(generated: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Paper sec. 4.1: per generated sample, L2 distance to the nearest training signal.

    Both (N, ...) in the same value range (we use [0, 1]); returns (Q,). The
    paper reports the mean; a low value means samples sit on training data.
    """
    return nearest_distances(generated.flatten(1), train.flatten(1))[0]
