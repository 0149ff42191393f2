"""What a modality must say about its data, and nothing more.

The LoE maps d_in coordinates to d_out values and the HCDM sees only latents;
everything that depends on the kind of signal lives behind `Modality`:
where its coordinates lie, how stored signals become targets in [-1, 1], how
a decoded function becomes a picture a person can look at, and which
reconstruction metrics make sense. A new modality (voxels: 3-D coordinates ->
occupancy; motion: time -> 165 pose values; NeRF: a renderer around the LoE)
is a new subclass here and touches neither `loe.py` nor `hcdm.py`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from . import metrics


class Modality(ABC):
    name: str
    d_in: int
    d_out: int

    @abstractmethod
    def coordinates(self, scale: float = 1.0) -> torch.Tensor:
        """(P, d_in) query coordinates; `scale` > 1 samples the continuous INR more densely."""

    @abstractmethod
    def targets(self, signals: np.ndarray) -> torch.Tensor:
        """Stored signals (B, ...) -> (B, P, d_out) float targets in [-1, 1], ordered like `coordinates()`."""

    @abstractmethod
    def to_pictures(self, values: torch.Tensor, scale: float = 1.0) -> np.ndarray:
        """Decoded values (B, P, d_out) -> (B, h, w, 3) uint8 pictures for grids."""

    @abstractmethod
    def reconstruction_metrics(self, values: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        """Per-instance metrics of decoded values against targets, both (B, P, d_out)."""

    def to_unit(self, values: torch.Tensor) -> torch.Tensor:
        """Values in [-1, 1] -> [0, 1], the range in which distances are reported."""
        return ((values + 1) / 2).clamp(0, 1)


class ImageModality(Modality):
    """RGB images on a square pixel grid; coordinates are a linspace over [-1, 1] inclusive (mNIF)."""

    name = "image"
    d_in = 2

    def __init__(self, resolution: int, channels: int = 3):
        self.resolution = resolution
        self.channels = channels
        self.d_out = channels

    def _side(self, scale: float) -> int:
        side = round(self.resolution * scale)
        if side < 1:
            raise ValueError(f"scale {scale} gives an empty grid at resolution {self.resolution}")
        return side

    def coordinates(self, scale: float = 1.0) -> torch.Tensor:
        side = self._side(scale)
        axis = torch.linspace(-1, 1, side)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        return torch.stack([xx, yy], dim=-1).reshape(-1, 2)             # (side*side, 2), row-major

    def targets(self, signals: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(signals, dtype=np.float32))       # (B, R, R, C) uint8 values
        return (x / 127.5 - 1).reshape(x.shape[0], -1, self.channels)

    def to_pictures(self, values: torch.Tensor, scale: float = 1.0) -> np.ndarray:
        side = self._side(scale)
        unit = self.to_unit(values.detach()).reshape(values.shape[0], side, side, self.channels)
        pics = (unit * 255).round().to(torch.uint8).numpy()
        return np.repeat(pics, 3, axis=-1) if self.channels == 1 else pics

    def as_images(self, values: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """(B, P, C) in [-1, 1] -> (B, C, h, w) in [0, 1]."""
        side = self._side(scale)
        return self.to_unit(values).reshape(values.shape[0], side, side, self.channels).permute(0, 3, 1, 2)

    def reconstruction_metrics(self, values, targets):
        pred, true = self.as_images(values), self.as_images(targets)
        return {
            "psnr": metrics.psnr(pred, true).numpy(),
            "ssim": metrics.ssim(pred, true).numpy(),
        }


def build(kind: str, **kwargs) -> Modality:
    if kind == "image":
        return ImageModality(**kwargs)
    raise ValueError(f"unknown modality {kind!r}")
