"""Latent-space operations behind the control tools and the `analyze` stage:
fitting a user's signal, resampling with a fixed prefix, composition (sec.
4.3.1), interpolation (appendix C.1.1) and latent retrieval (appendix B.5).

Latents are (L, H) for one instance and (N, L, H) for many, in raw units.
"""
from __future__ import annotations

import numpy as np
import torch

from .generation import control_latents
from .hcdm import HCDM
from .loe import LayersOfExperts
from . import autodecode, meta
from .meta import MetaSGD
from .modalities.base import Modality


def fit_signal(model: LayersOfExperts, meta_sgd: MetaSGD, modality: Modality, signal: np.ndarray,
               steps: int, trained: dict, fit_lr: float = 0.0, points: int | None = None,
               surface_fraction: float = 0.0, seed: int = 0) -> torch.Tensor:
    """The latent of one stored signal, fitted as `export_latents` fits a test instance: -> (L, H).

    Meta-learned: the inner loop from zero on `points` drawn once (all when None); more steps than
    the model was trained with keep descending the same per-instance loss with the same rates.
    Auto-decoded: `steps` Adam steps at `fit_lr` from the mean train latent with the weights frozen,
    on `points` drawn per step (a NeRF: rays of its fit views). Points are drawn by the modality, a
    `surface_fraction` of them near a shape's surface, from a generator seeded by `seed`.
    """
    if trained["method"] == "autodecode":
        start = trained["train_latents"].float().mean(0)
        return autodecode.fit_latents(model, modality, signal[None], start, steps, fit_lr, 1, points,
                                      surface_fraction, seed, progress=False, score=False)[0][0]
    return meta.fit_latents(model, meta_sgd, modality, signal[None], steps, trained["inner_lr"], 1, points,
                            surface_fraction, seed, progress=False, score=False)[0][0]


def resample(hcdm: HCDM, latent: torch.Tensor, k: int, n: int, generator: torch.Generator,
             sampler: str, steps: int) -> torch.Tensor:
    """n completions that keep h^1..h^k of `latent` bit for bit: -> (n, L, H)."""
    if not 0 <= k <= hcdm.layers:
        raise ValueError(f"k must be in [0, {hcdm.layers}], got {k}")
    prefix = latent[None, :k].expand(n, k, latent.shape[-1]).clone()
    out = hcdm.sample(n, generator, prefix=prefix, sampler=sampler, steps=steps)
    out[:, :k] = prefix
    return out


def tree(hcdm: HCDM, latent: torch.Tensor, n: int, generator: torch.Generator, sampler: str,
         steps: int) -> torch.Tensor:
    """Branching at every layer: (L, n, L, H), row k shares h^1..h^k with `latent`."""
    return control_latents(hcdm, latent[None], n, generator, sampler, steps)[0]


def compose(base: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """Swap one layer at a time: out[l, j] is `base` with h^l taken from donor j: (L, N, L, H)."""
    layers = base.shape[0]
    out = base[None, None].repeat(layers, len(donors), 1, 1)
    for l in range(layers):
        out[l, :, l] = donors[:, l]
    return out


def bilinear_interpolation(corners: torch.Tensor, size: int) -> torch.Tensor:
    """Complete interpolation (fig. 15): corners (4, L, H) as top-left, top-right,
    bottom-left, bottom-right -> (size, size, L, H)."""
    t = torch.linspace(0, 1, size)
    ty, tx = t[:, None, None, None], t[None, :, None, None]
    tl, tr, bl, br = corners
    top = tl * (1 - tx) + tr * tx
    bottom = bl * (1 - tx) + br * tx
    return top * (1 - ty) + bottom * ty


def layerwise_interpolation(start: torch.Tensor, end: torch.Tensor, size: int) -> torch.Tensor:
    """Layer-wise interpolation (fig. 16): row l moves only h^l from start to end: (L, size, L, H)."""
    layers = start.shape[0]
    t = torch.linspace(0, 1, size)
    out = start[None, None].repeat(layers, size, 1, 1)
    for l in range(layers):
        out[l, :, l] = start[l] * (1 - t[:, None]) + end[l] * t[:, None]
    return out


def retrieve(query: torch.Tensor, bank: torch.Tensor, top: int) -> dict[str, torch.Tensor]:
    """Nearest bank entries by L2 distance of the flattened latent ('all') and of each
    layer's latent ('layer1'..'layerL'): each (top,) indices, nearest first."""
    def nearest(q, b):
        return torch.cdist(q[None].double(), b.double())[0].argsort()[:top]

    found = {"all": nearest(query.flatten(), bank.flatten(1))}
    for l in range(bank.shape[1]):
        found[f"layer{l + 1}"] = nearest(query[l], bank[:, l])
    return found
