"""What a modality must say about its data, and nothing more.

The LoE maps d_in coordinates to d_out values and the HCDM sees only latents;
everything that depends on the kind of signal lives behind `Modality`:
where its coordinates lie, how stored signals become targets in [-1, 1], how
a decoded function becomes a picture a person can look at, and which
reconstruction metrics make sense, how training points are drawn, what the
factor predictor reads, and how one instance is written as a file. Images and
shapes (3-D coordinates -> occupancy) live here; motion (time -> 165 pose
values) or NeRF (a renderer around the LoE) would be new subclasses and touch
neither `loe.py` nor `hcdm.py`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from . import metrics, rendering, voxels


class Modality(ABC):
    name: str
    d_in: int
    d_out: int
    resolution: int                    # samples per side of the grid the data lives on

    def _side(self, scale: float) -> int:
        """Samples per side when the continuous INR is decoded at `scale` times the data's grid."""
        side = round(self.resolution * scale)
        if side < 2:
            raise ValueError(f"scale {scale} gives a grid smaller than 2 at resolution {self.resolution}")
        return side

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

    @abstractmethod
    def predictor_input(self, values: torch.Tensor) -> torch.Tensor:
        """Decoded values (B, P, d_out) -> (B, C, *spatial) in [0, 1], what the factor predictor reads."""

    @abstractmethod
    def instance_file(self, values: torch.Tensor) -> bytes:
        """One decoded instance (P, d_out) -> the bytes of a file in the modality's own format."""

    file_suffix: str

    def to_unit(self, values: torch.Tensor) -> torch.Tensor:
        """Values in [-1, 1] -> [0, 1], the range in which distances are reported."""
        return ((values + 1) / 2).clamp(0, 1)

    def sample_points(self, signals: np.ndarray, count: int | None, generator: torch.Generator,
                      surface_fraction: float = 0.0, device: torch.device | str = "cpu"
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training draw on `device`: (coords (P, d_in) shared or (B, P, d_in), targets (B, P, d_out)).

        By default `count` coordinates uniformly without replacement, the same
        for the whole batch (all of them when `count` is None). Modalities with
        a surface override it to draw `surface_fraction` of the points near it.
        Random numbers come from the CPU `generator`, so a draw does not depend
        on the device.
        """
        coords, targets = self.coordinates(), self.targets(signals)
        if count is not None and count < len(coords):
            keep = torch.randperm(len(coords), generator=generator)[:count]
            coords, targets = coords[keep], targets[:, keep]
        return coords.to(device), targets.to(device)


class ImageModality(Modality):
    """RGB images on a square pixel grid; coordinates are a linspace over [-1, 1] inclusive (mNIF)."""

    name = "image"
    d_in = 2

    def __init__(self, resolution: int, channels: int = 3):
        self.resolution = resolution
        self.channels = channels
        self.d_out = channels

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

    def predictor_input(self, values):
        return self.as_images(values)

    file_suffix = ".png"

    def instance_file(self, values):
        import io as _io

        from PIL import Image

        buffer = _io.BytesIO()
        Image.fromarray(self.to_pictures(values[None])[0]).save(buffer, format="PNG")
        return buffer.getvalue()


class ShapeModality(Modality):
    """Occupancy on a cubic voxel grid: 3-D coordinates -> occupancy in {-1, +1}.

    Signals are stored packed (`voxels.pack`). Coordinates are voxel centres,
    (i + 0.5) * 2 / R - 1 (see `rendering`). The decoded occupancy is
    (value + 1) / 2; the surface is its 0.5 level, i.e. value 0.
    """

    name = "shape"
    d_in = 3
    d_out = 1
    file_suffix = ".ply"

    def __init__(self, resolution: int):
        self.resolution = resolution

    def coordinates(self, scale: float = 1.0) -> torch.Tensor:
        return torch.from_numpy(rendering.voxel_centres(self._side(scale))).reshape(-1, 3)

    def grids(self, signals: np.ndarray) -> torch.Tensor:
        """Packed signals (B, R^3 / 8) -> (B, R, R, R) bool."""
        return torch.from_numpy(voxels.unpack(np.asarray(signals), self.resolution))

    def targets(self, signals):
        return self.grids(signals).reshape(len(signals), -1, 1).float() * 2 - 1

    def occupancy(self, values: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """(B, P, 1) decoded values -> (B, S, S, S) occupancy in [0, 1]."""
        side = self._side(scale)
        return self.to_unit(values.detach()).reshape(values.shape[0], side, side, side)

    def sample_points(self, signals, count, generator, surface_fraction=0.0, device="cpu"):
        """`surface_fraction` of the points from the one-voxel band around the surface, the rest
        uniform over the grid, per instance and with replacement (IM-NET's sampling is
        likewise near-surface heavy). The band is found on `device`."""
        if count is None or count >= self.resolution ** 3:
            return self.coordinates().to(device), self.targets(signals).to(device)
        grids = self.grids(signals).to(device)                                  # (B, R, R, R)
        flat = grids.flatten(1)
        b, n = flat.shape
        near = round(count * surface_fraction)
        uniform = torch.randint(n, (b, count - near), generator=generator).to(device)
        u = torch.rand(b, near, generator=generator, dtype=torch.float64).to(device)
        band = voxels.near_surface(grids).flatten(1)
        band[band.sum(1) == 0] = True                                           # no surface: uniform
        # Inverse-CDF draw: the k-th band voxel for u in [k, k + 1) / band size.
        cdf = band.cumsum(1, dtype=torch.float64)
        surface = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_max(n - 1)
        idx = torch.cat([surface, uniform], dim=1)
        coords = self.coordinates().to(device)[idx]                              # (B, P, 3)
        return coords, flat.gather(1, idx)[..., None].float() * 2 - 1

    def to_pictures(self, values, scale=1.0):
        return rendering.shade(self.occupancy(values, scale), 2 * self._side(scale))

    def reconstruction_metrics(self, values, targets):
        """accuracy, iou and psnr on the full grid; accuracy_near_surface on the voxels within one
        voxel of the true surface (where the full-grid accuracy hides the errors).

        psnr is mNIF's shape PSNR (Table 1's 22.3): the decoded values and the
        {-1, +1} occupancy mapped to [0, 1], per-instance PSNR, averaged. Our
        output layer is linear, so values are clamped to [-1, 1] first (mNIF's
        ends in a sine, which bounds them the same way).
        """
        psnr = self.shape_psnr(values[..., 0], targets[..., 0] >= 0)
        pred, true = values[..., 0] >= 0, targets[..., 0] >= 0                    # (B, R^3)
        correct = pred == true
        union = (pred | true).sum(1)
        iou = torch.where(union > 0, (pred & true).sum(1) / union.clamp_min(1), torch.ones(len(pred)))
        band = voxels.near_surface(true.reshape(-1, *(self.resolution,) * 3)).flatten(1)
        near = (correct & band).sum(1) / band.sum(1).clamp_min(1)
        return {"accuracy": correct.float().mean(1).numpy(), "iou": iou.float().numpy(),
                "accuracy_near_surface": near.float().numpy(), "psnr": psnr.numpy()}

    @staticmethod
    def shape_psnr(values: torch.Tensor, occupied: torch.Tensor) -> torch.Tensor:
        """mNIF's shape PSNR: values (B, P) clamped to [-1, 1] and mapped to [0, 1], against occupancy (B, P)
        as 0/1; per-instance PSNR (B,)."""
        return metrics.psnr(values.clamp(-1, 1) * 0.5 + 0.5, occupied.float()).float()

    @classmethod
    def point_metrics(cls, values: torch.Tensor, occupied: torch.Tensor) -> dict[str, np.ndarray]:
        """mNIF's Table-1 figures on sample points: values (B, P) decoded there, occupied (B, P) {0, 1}.

        accuracy: (value >= 0) == occupied; psnr: `shape_psnr`.
        """
        accuracy = ((values >= 0) == occupied.bool()).float().mean(1)
        return {"accuracy_points": accuracy.numpy(), "psnr_points": cls.shape_psnr(values, occupied).numpy()}

    def predictor_input(self, values):
        return self.occupancy(values)[:, None]

    def instance_file(self, values):
        data = rendering.mesh_file(self.occupancy(values[None])[0].numpy(), "ply")
        return data if isinstance(data, bytes) else data.encode()


def build(kind: str, **kwargs) -> Modality:
    if kind == "image":
        return ImageModality(**kwargs)
    if kind == "shape":
        return ShapeModality(**kwargs)
    raise ValueError(f"unknown modality {kind!r}")
