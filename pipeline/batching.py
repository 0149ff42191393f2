"""Decoding many latents in batches: what the LoE and the fields that wrap it (a NeRF's renderer) share."""
from __future__ import annotations

import torch


def render_in_batches(decode, coords: torch.Tensor, latents: torch.Tensor, device: torch.device,
                      batch_size: int) -> torch.Tensor:
    """`decode(coords, latents)` without gradients, `batch_size` latents at a time on `device`: (N, P, d) on
    the CPU; coords (P, d_in) shared by all, or (N, P, d_in) one set per instance."""
    own = coords.dim() == 3
    coords = coords if own else coords.to(device)
    with torch.no_grad():
        return torch.cat([decode(coords[i:i + batch_size].to(device) if own else coords,
                                 latents[i:i + batch_size].to(device)).cpu()
                          for i in range(0, len(latents), batch_size)])
