"""Reconstruction and generation metrics, each as the reference protocols define it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import NonFiniteError


def measurement_seeds(seed: int, purpose: str) -> np.random.SeedSequence:
    """The seed sequence of one measurement's random draws, from (seed, purpose): not another measurement's,
    nor a stage's seeded with a small integer (generation.stream; the train draw of scoring.train_subset)."""
    return np.random.SeedSequence([seed, int.from_bytes(purpose.encode(), "little")])


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


# Reference rows held as float64 at once: 1 GiB (the default's 2000 train images are 49 MB, one block).
BLOCK_BYTES = 2 ** 30


@dataclass(frozen=True)
class Rows:
    """`count` reference rows made `block` at a time by `make(start, stop)` -> (stop - start, D): a train set
    too large to hold as float (ShapeNet's 35019 train shapes at 64^3 are 37 GB as float32, 73 GB as float64;
    stored as bits they are 1.1 GB), or made on demand (Stage-1's decodes of SRN's train latents)."""
    count: int
    make: Callable[[int, int], torch.Tensor]
    block: int

    @classmethod
    def of(cls, rows: torch.Tensor) -> "Rows":
        rows = rows.flatten(1)
        return cls(len(rows), lambda a, b: rows[a:b], block_rows(rows.shape[1]))


def block_rows(dims: int, multiple: int = 1) -> int:
    """Rows of `dims` values that fit BLOCK_BYTES as float64, a multiple of `multiple` (at least one)."""
    return max(multiple, BLOCK_BYTES // (8 * dims) // multiple * multiple)


def nearest_many(query_sets: list[torch.Tensor], references: torch.Tensor | Rows, chunk: int = 512
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each set of queries (Q, D): the L2 distance from each query to its nearest reference and that
    reference's index, ((Q,), (Q,)); references (N, D) or Rows, made once for all the sets.

    Computed in float64 (distances of near-duplicates do not cancel to garbage), queries `chunk` at a time
    and references a block at a time; a tie goes to the lower index.
    """
    references = references if isinstance(references, Rows) else Rows.of(references)
    for k, queries in enumerate(query_sets):
        finite(queries, f"query set {k + 1}")
    best = [torch.full((len(q),), float("inf"), dtype=torch.float64) for q in query_sets]
    where = [torch.zeros(len(q), dtype=torch.long) for q in query_sets]
    for start in range(0, references.count, references.block):
        refs = references.make(start, min(start + references.block, references.count)).flatten(1).double()
        finite(refs, f"reference rows {start}-{start + len(refs) - 1}")
        ref_sq = (refs ** 2).sum(1)
        for queries, b, w in zip(query_sets, best, where):
            for q, b_q, w_q in zip(queries.flatten(1).split(chunk), b.split(chunk), w.split(chunk)):
                q = q.double()
                d2 = (q ** 2).sum(1, keepdim=True) - 2 * q @ refs.T + ref_sq[None]
                value, arg = d2.min(1)
                nearer = value < b_q
                b_q[nearer], w_q[nearer] = value[nearer], arg[nearer] + start
    return [(b.clamp_min(0).sqrt().float(), w) for b, w in zip(best, where)]


def finite(rows: torch.Tensor, what: str) -> None:
    """A NaN or inf makes a block's minimum NaN (or inf), which is never the smaller: every query would skip
    the whole block without a word. Refused."""
    if not torch.isfinite(rows).all():
        raise NonFiniteError(f"the nearest-neighbour search's {what}: {int((~torch.isfinite(rows)).sum())} values "
                             "are NaN or inf (a decode of a diverged model?)")


def nearest_distances(queries: torch.Tensor, references: torch.Tensor | Rows, chunk: int = 512
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 distance from each query (Q, D) to its nearest reference, and that reference's index: (Q,), (Q,)."""
    return nearest_many([queries], references, chunk)[0]


def memorisation_distance(generated: torch.Tensor, train: torch.Tensor | Rows) -> torch.Tensor:
    """Paper sec. 4.1: per generated sample, L2 distance to the nearest training signal.

    Both in the same value range (we use [0, 1]); returns (Q,). The paper
    reports the mean; a low value means samples sit on training data.
    """
    return nearest_distances(generated.flatten(1), train)[0]
