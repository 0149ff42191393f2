"""Stage-1 by auto-decoding (DeepSDF; how Functa and mNIF fit SRN-Cars): `fit_loe.method: autodecode`.

A table holds one latent (L, H) per train instance; AdamW trains it jointly
with the LoE's shared weights on the modality's Stage-1 loss (a NeRF: pixels
rendered through the field). The table is the train split's latents. A new
instance (a test scene, a user's own) gets its latent by Adam on the latent
alone, the weights frozen, from the mean train latent, on the points the
modality lets it see (a NeRF: its fit views only, never the held-out ones).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from .progress import bar

from .config import FitLoE
from .distributed import broadcast_from_main
from .loe import LayersOfExperts
from .meta import autocast_context, mse_to_psnr, per_instance_mse, precision_context, reconstruct
from .modalities.base import Modality
from .training import Checkpointer, DivergenceGuard, StepLog, train_loop, warmup_cosine

AUTODECODE_KNOBS = "fit_loe.lr, fit_loe.latent_lr or fit_loe.grad_clip"


class LatentTable(nn.Module):
    """One latent (L, H) per train instance, N(0, std^2) at the start."""

    def __init__(self, n: int, layers: int, latent_dim: int, std: float, generator: torch.Generator):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n, layers, latent_dim, generator=generator) * std)


@dataclass
class AutoDecoder:
    model: LayersOfExperts
    modality: Modality
    cfg: FitLoE
    device: torch.device = torch.device("cpu")

    def fit(self, train: np.ndarray, checkpointer: Checkpointer, log: StepLog, generator: torch.Generator,
            progress: bool = True) -> LatentTable:
        c = self.cfg
        field = self.modality.field(self.model)
        table = LatentTable(len(train), self.model.layers, self.model.latent_dim, c.init_std, generator).to(self.device)
        broadcast_from_main(list(table.parameters()))   # under torchrun each rank's generator differs: one table
        groups = self.model.param_groups(c.lr)
        groups.append({"params": list(table.parameters()), "lr": c.latent_lr or c.lr,
                       "weight_decay": c.latent_weight_decay})
        optimizer = torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay)
        scheduler = warmup_cosine(optimizer, c.warmup_steps, c.steps)
        params = list(self.model.parameters()) + list(table.parameters())

        def step(_: int):
            idx = torch.randint(len(train), (min(c.batch_size, len(train)),), generator=generator)
            coords, targets = self.modality.sample_points(train[idx.numpy()], c.points_per_step, generator,
                                                          c.near_surface_fraction, self.device)
            with autocast_context(c.precision, self.device):
                values = field(coords, table.latents[idx.to(self.device)])
            mse = per_instance_mse(values.float(), targets)
            return mse.mean(), {"psnr": mse_to_psnr(mse.detach()).mean()}

        with precision_context(c.precision, self.device):
            train_loop(step, {"model": self.model, "table": table}, params, optimizer, scheduler, c.steps,
                       c.grad_clip, c.log_every, checkpointer, log, generator, "fit_loe", progress=progress,
                       guard=DivergenceGuard("fit_loe", AUTODECODE_KNOBS, quality="psnr"))
        return table


def fit_latents(model: LayersOfExperts, modality: Modality, signals: np.ndarray, start: torch.Tensor, steps: int,
                lr: float, batch_size: int, points: int | None, surface_fraction: float = 0.0, seed: int = 0,
                progress: bool = True, score: bool = True) -> tuple[torch.Tensor, dict]:
    """Latents of new instances with the weights frozen: Adam from `start` (L, H) on each instance's own
    points. Each latent depends on its instance alone (the loss is a sum over instances, Adam is
    per-entry, the points are drawn from a generator seeded by `seed` and the batch start)."""
    device = model.weights[0].device
    field = modality.field(model)
    latents = []
    for first in bar(range(0, len(signals), batch_size), desc="fit latents", disable=not progress, leave=False):
        batch = signals[first:first + batch_size]
        draw = torch.Generator().manual_seed(seed * 1_000_003 + first)
        h = start.to(device).expand(len(batch), *start.shape).clone().requires_grad_()
        optimizer = torch.optim.Adam([h], lr=lr)
        for _ in range(steps):
            coords, targets = modality.sample_points(batch, points, draw, surface_fraction, device)
            loss = per_instance_mse(field(coords, h), targets).sum()
            h.grad, = torch.autograd.grad(loss, h)        # the latent's gradient only: the weights stay as they are
            optimizer.step()
        latents.append(h.detach().cpu())
    latents = torch.cat(latents)
    return latents, reconstruct(field, modality, signals, latents, batch_size) if score else {}

