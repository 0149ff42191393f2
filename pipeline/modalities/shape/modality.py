"""Shapes: occupancy on a cubic voxel grid (ShapeNet / IM-NET; the embedded procedural shapes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ... import metrics
from ..base import Modality
from . import rendering, synthetic, voxels


class ShapeModality(Modality):
    """Occupancy on a cubic voxel grid: 3-D coordinates -> occupancy in {-1, +1}.

    Signals are stored packed (`voxels.pack`). Coordinates are voxel centres,
    (i + 0.5) * 2 / R - 1 (see `rendering`). The decoded occupancy is
    (value + 1) / 2; the surface is its 0.5 level, i.e. value 0.
    """

    name = "shape"
    file_kind = "a shape (.binvox, an index .txt, or a watertight mesh)"
    set_metrics = "COV, MMD and 1-NNA"
    d_in = 3
    d_out = 1
    file_suffix = ".ply"
    folder_suffixes = voxels.VOXEL_SUFFIXES + voxels.MESH_SUFFIXES
    factor_names = tuple(synthetic.FACTOR_NAMES)
    factor_kinds = tuple(kind for kind, _, _ in synthetic.FACTORS.values())
    metric_definitions = {
        "accuracy_definition": "share of correctly classified voxels on the full grid (occupied: value >= 0); "
                               "mNIF's (Table 1) is on IM-NET's near-surface points: not comparable",
        "points_definition": "accuracy_points / psnr_points (IM-NET sources only): the same figures on IM-NET's "
                             "test points_64/values_64, as mNIF's Table 1, at the cells' centres (p + 0.5)/128 - 1 "
                             "(mNIF: (p + 1)/128 - 1, 1/256 further)",
        "psnr_definition": "mNIF's shape PSNR on the full grid: values clamped to [-1, 1] and occupancy {-1, 1} "
                           "mapped to [0, 1], per-instance PSNR, mean; mNIF's (Table 1) is on IM-NET's points",
        "iou_definition": "intersection over union of occupied voxels on the full grid",
        "accuracy_near_surface_definition": "accuracy on the voxels within one voxel of the true surface "
                                            "(3x3x3 neighbourhood holds both classes); mNIF reports accuracy "
                                            "on IM-NET's near-surface sample points instead"}
    render_scale = 2.0   # 4x of a 32^3 grid is 2M points per decode: 2x suffices

    def __init__(self, resolution: int):
        self.resolution = resolution

    def read_file(self, path):
        return voxels.pack(voxels.read_file(path, self.resolution)[None])[0]

    def decoded_to_unit(self, values):
        """A decoded shape is its occupancy at the 0.5 level (its mesh, its accuracy): {0, 1} like the data's.
        The soft occupancy would put a good reconstruction sqrt(R^3 * MSE) from its own original (about 8.5 of
        a sample's 14 at 32^3 and 26.6 dB), so distances would measure decoding noise, not nearness."""
        return (self.to_unit(values) >= 0.5).to(values.dtype)

    def group_of(self, name):
        """3D-RecGAN's grids are views of an object (`train_3d__chair_0001_0_1_2_062_047_037.txt`: three
        orientation indices, then the box dims): its views are one group, so no object is on both sides."""
        return voxels.object_of(name)

    def generate(self, n, seed):
        return synthetic.generate(n, self.resolution, seed)

    def read_source(self, cfg):
        """IM-NET's HDF5 release: its own train/test files; dataset.folder.limit caps each split."""
        from ...prepared import PreparedData

        if cfg.dataset.source != "imnet":
            return super().read_source(cfg)
        d = cfg.dataset
        files = voxels.imnet_files(Path(d.path))
        splits = {split: voxels.read_imnet(path, d.resolution, d.folder.limit) for split, path in files.items()}
        # The test split's near-surface sample points, where mNIF measures voxel accuracy and PSNR.
        points = voxels.read_imnet_points(files["test"], d.folder.limit)
        extras = {} if points is None else {"test_points": points[0], "test_values": points[1]}
        return PreparedData(
            modality=self, train=splits["train"], test=splits["test"],
            train_factors=None, test_factors=None, factor_names=[], factor_kinds=[],
            info={"source": "imnet", "path": str(d.path), "files": {k: v.name for k, v in files.items()},
                  "skipped_files": 0, "test_points": None if points is None else int(points[0].shape[1])},
            extras=extras,
        )

    def extra_reconstruction_metrics(self, model, latents, extras, batch_size, signals):
        """IM-NET's near-surface samples: accuracy and PSNR where mNIF measures them."""
        if "test_points" not in extras:
            return {}
        points, occupied = extras["test_points"], extras["test_values"]
        scores = []
        for i in range(0, len(points), batch_size):   # float coordinates of all 8762 x 16384 points: 1.7 GB
            coords = torch.from_numpy(voxels.imnet_point_coordinates(points[i:i + batch_size]))
            values = model.render(coords, latents[i:i + batch_size], batch_size)[..., 0]
            scores.append(self.point_metrics(values, torch.from_numpy(occupied[i:i + batch_size])))
        return {name: np.concatenate([s[name] for s in scores]) for name in scores[0]}

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

    def instance_file(self, values, scale=1.0):
        data = rendering.mesh_file(self.occupancy(values[None], scale)[0].numpy(), "ply")
        return data if isinstance(data, bytes) else data.encode()
