"""Radiance fields: a scene is posed views; the LoE maps xyz to density and colour (d_in 3, d_out 4).

A stored scene is one record of a numpy structured array: `rgb` (V, R, R, 3)
uint8 views, `pose` (V, 4, 4) camera-to-world (SRN's OpenCV axes) and
`focal` in pixels at R. Its last `HELD_OUT` views are never fitted: not in
Stage-1, not when a scene's latent is fitted later; they give the novel-view
metrics. On the embedded cars they are the same four cameras for every
scene, `coordinates()`'s cameras, so generated and real scenes are seen from
the same poses (FID, memorisation, the factor predictor); SRN scenes keep
their own held-out poses, so memorisation compares samples with Stage-1's
decodes of the train scenes at the shared cameras (`taken_at_coordinates`).

Coordinates are rays (origin, direction: d 6); the modality's `field` wraps
the LoE in the volume renderer, so every stage decodes rays into pixels
(B, P, 3) in [-1, 1], compared with the views' pixels: the Stage-1 loss is
on rendered pixels, as in mNIF.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ... import metrics
from ...errors import DataError
from ..base import Modality
from . import COLOUR, COLOURS, rendering, srn, synthetic

HELD_OUT = 4
ELEVATION, RADIUS = 20.0, 1.3                 # the held-out / picture cameras
UP_DEGREES = 30.0                             # a user's scene's up vector this far from the run's is refused
HELD_OUT_AZIMUTHS = (30.0, 120.0, 210.0, 300.0)
TURNTABLE = 12                                # frames of a sample's GIF
FOCAL = 1.025                                 # focal / image side, as SRN-Cars (131.25 px at 128)


def scene_dtype(views: int, side: int) -> np.dtype:
    return np.dtype([("rgb", np.uint8, (views, side, side, 3)), ("pose", np.float32, (views, 4, 4)),
                     ("focal", np.float32)])


def orbit_poses(azimuths, elevation: float = ELEVATION, radius: float = RADIUS, up=rendering.Y_UP) -> torch.Tensor:
    return torch.stack([rendering.orbit(a, elevation, radius, up) for a in azimuths]).float()


class NerfModality(Modality):
    name = "nerf"
    file_kind = "a scene folder in the SRN layout (rgb/, pose/, intrinsics.txt)"
    set_metrics = "FID and KID of rendered views"
    d_in = 3
    d_out = 4                                  # the LoE's outputs: RGB and density before their activations
    file_suffix = ".gif"
    folder_suffixes = ()
    instance_is_folder = True
    factor_names = tuple(synthetic.FACTOR_NAMES)
    factor_kinds = tuple(kind for kind, _, _ in synthetic.FACTORS.values())
    render_scale = 2.0
    metric_definitions = {
        "psnr_definition": "novel views: the scene's held-out views (never fitted), PSNR of each view in [0, 1], "
                           "mean over views, then over scenes",
        "ssim_definition": "the same views, Wang et al. 2004 (11x11 Gaussian, sigma 1.5, valid windows)",
        "rendering": f"{rendering.SAMPLES} evenly spaced depths in the data's [near, far] (the prepared "
                     "header; SRN-Cars and the embedded cars: mNIF's 0.8-1.8), white background, pixel-centre rays"}

    def __init__(self, resolution: int, views: int = 20, focal: float | None = None, radius: float = RADIUS,
                 colour: str = COLOUR, near: float | None = None, far: float | None = None, up=None,
                 scale: float | None = None):
        if colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {colour!r}")
        self.resolution, self.views, self.radius, self.colour = resolution, views, radius, colour
        self.focal = FOCAL * resolution if focal is None else focal    # pixels at `resolution`
        # Given (params) or read from the prepared header; None: mNIF's SRN bounds and frame, or derived by
        # read_source from the cameras.
        self.asked = {"near": near, "far": far, "up": up, "scale": scale}
        self.near = rendering.NEAR if near is None else float(near)
        self.far = rendering.FAR if far is None else float(far)
        self.up = tuple(float(v) for v in (rendering.Y_UP if up is None else np.asarray(up) / np.linalg.norm(up)))
        self.scale = 1.0 if scale is None else float(scale)

    def construction_args(self) -> dict:
        return {"resolution": self.resolution, "views": self.views, "focal": self.focal, "radius": self.radius,
                "colour": self.colour, "near": self.near, "far": self.far, "up": list(self.up), "scale": self.scale}

    def field(self, model):
        if not self.far > self.near:   # one end set, the other from the data or the renderer's default
            raise DataError(f"dataset.nerf.near / far: the renderer's depth range [{self.near:g}, {self.far:g}] is "
                            f"empty (a null end is {rendering.NEAR:g} / {rendering.FAR:g} on embedded scenes, "
                            "fitted to the cameras on SRN data); far must exceed near")
        return rendering.RadianceField(model, colour=self.colour, near=self.near, far=self.far,
                                       frame=(self.scale, self.up))

    def fit_bounds(self, scenes: dict[str, np.ndarray], names: dict[str, list[str]], where: Path) -> dict:
        """near / far / up / scale from the cameras of every scene where the params leave them null; then
        every camera must see the scene centre (the origin) within [near, far], or one line names the scene."""
        poses = np.concatenate([v["pose"].reshape(-1, 4, 4) for v in scenes.values()])
        near, far, distance = rendering.bounds_from_poses(poses)
        if self.asked["near"] is None:
            self.near = round(near, 4)
        if self.asked["far"] is None:
            self.far = round(far, 4)
        if self.asked["up"] is None:
            self.up = tuple(round(float(v), 4) for v in rendering.up_from_poses(poses))
        if self.asked["scale"] is None:      # the field sees every capture at SRN-Cars' camera distance
            self.scale = round(distance / RADIUS, 4)
        for split, records in scenes.items():
            for name, scene in zip(names[split], records):
                self.check_cameras(where / name, scene["pose"])
        return {"near": self.near, "far": self.far, "up": list(self.up), "scale": self.scale,
                "camera_distance": round(distance, 4),
                "derived": [k for k in ("near", "far", "up", "scale") if self.asked[k] is None]}

    def check_cameras(self, where: Path, poses: np.ndarray, frame: bool = False) -> None:
        """Every camera (V, 4, 4) must see the scene centre within the renderer's [near, far], or one line names the
        scene; `frame`: its cameras' up must also be within UP_DEGREES of the run's (a user's own scene, which the
        run's bounds were not derived from: tilted or far away, its fitted latent would be of empty space)."""
        depth = rendering.centre_depths(poses)
        bad = np.flatnonzero((depth < self.near) | (depth > self.far))
        if len(bad):
            raise DataError(
                f"{where}: camera {bad[0]} sees the scene centre at depth {depth[bad[0]]:.3g}, outside the renderer's "
                f"[{self.near:g}, {self.far:g}] (dataset.nerf.near / far): its rays cannot reach the object; "
                + ("its cameras are not at this run's distance (the run's scenes: about "
                   f"{self.scale * RADIUS:.3g} from the centre)" if frame else
                   "widen them, or set them null to derive them from the cameras"))
        if frame:
            up = rendering.up_from_poses(poses)
            angle = float(np.degrees(np.arccos(np.clip(up @ np.asarray(self.up, np.float64), -1, 1))))
            if angle > UP_DEGREES:
                raise DataError(f"{where}: its cameras' up ({', '.join(f'{v:.2f}' for v in up)}) is {angle:.0f} "
                                f"degrees from this run's (dataset.nerf.up {list(self.up)}): the object would be "
                                "seen tilted; give the scene in the run's frame")

    # -- data ------------------------------------------------------------------------
    def pack(self, views: np.ndarray, poses: np.ndarray, focal: np.ndarray) -> np.ndarray:
        out = np.empty(len(views), scene_dtype(views.shape[1], views.shape[2]))
        out["rgb"], out["pose"], out["focal"] = views, poses, focal
        return out

    def generate(self, n, seed):
        rng = np.random.default_rng(seed)
        factors = synthetic.draw_factors(n, rng)
        held = orbit_poses(HELD_OUT_AZIMUTHS, radius=self.radius)
        side = 2 * self.resolution                                         # rendered at 2x, averaged 2x2
        views = np.empty((n, self.views + HELD_OUT, self.resolution, self.resolution, 3), np.uint8)
        poses = np.empty((n, self.views + HELD_OUT, 4, 4), np.float32)
        for i in range(n):
            az, el = rng.uniform(0, 360, self.views), rng.uniform(0, 40, self.views)
            pose = torch.cat([torch.stack([rendering.orbit(a, e, self.radius) for a, e in zip(az, el)]).float(), held])
            colour = synthetic.render(factors[i], rendering.rays(pose, 2 * self.focal, side).reshape(-1, 6))
            big = colour.reshape(len(pose), self.resolution, 2, self.resolution, 2, 3).mean((2, 4))
            views[i], poses[i] = np.round(big * 255), pose.numpy()
        return self.pack(views, poses, np.full(n, self.focal, np.float32)), factors

    def read_source(self, cfg):
        """An SRN-Cars root: its *train and *test folders of scenes."""
        from ...prepared import PreparedData, check_splits, dataset_folder

        if cfg.dataset.source != "srn":
            return super().read_source(cfg)
        root = dataset_folder(cfg.dataset.path)
        d, splits, info = cfg.dataset, {}, {"source": "srn", "path": str(root), "skipped_files": 0, "skipped": []}
        names = {}
        for split in ("train", "test"):
            scenes = srn.scene_dirs(root, split)[: d.folder.limit]
            records, names[split] = [], []
            for folder in scenes:
                try:   # every scene has all dataset.views fit views (a short one is refused, or skipped)
                    records.append(srn.read_scene(folder, self.resolution, self.views, HELD_OUT, every=True))
                    names[split].append(str(folder.relative_to(root)))
                except DataError:
                    if not d.folder.skip_corrupt:
                        raise
                    info["skipped"].append(str(folder.relative_to(root)))
            splits[split] = self.pack(np.stack([r[0] for r in records]), np.stack([r[1] for r in records]),
                                      np.array([r[2] for r in records], np.float32)) if records else \
                np.empty(0, scene_dtype(self.views + HELD_OUT, self.resolution))
        check_splits(root, len(splits["train"]), len(splits["test"]), self.set_metrics)
        first = splits["train"][0]
        self.focal = float(first["focal"])
        self.radius = float(np.linalg.norm(first["pose"][:, :3, 3], axis=-1).mean())
        info["bounds"] = self.fit_bounds(splits, names, root)
        info["fit_views"], info["held_out_views"] = self.views, HELD_OUT    # per scene (the detail file shows them)
        info["skipped_files"] = len(info["skipped"])
        return PreparedData(modality=self, train=splits["train"], test=splits["test"], train_factors=None,
                            test_factors=None, factor_names=[], factor_kinds=[], info=info)

    def read_file(self, path: Path) -> np.ndarray:
        """One scene folder in SRN's layout -> a stored scene (a user's own scene for control)."""
        views, poses, focal = srn.read_scene(Path(path), self.resolution, self.views, HELD_OUT)
        self.check_cameras(Path(path), poses, frame=True)
        return self.pack(views[None], poses[None], np.array([focal], np.float32))[0]

    # -- coordinates and values ---------------------------------------------------------------
    def coordinates(self, scale: float = 1.0, azimuths=HELD_OUT_AZIMUTHS) -> torch.Tensor:
        """Rays of the four held-out cameras (the pictures' views): (4 side^2, 6)."""
        side = self._side(scale)
        return rendering.rays(orbit_poses(azimuths, radius=self.radius, up=self.up),
                              self.focal * side / self.resolution, side).reshape(-1, 6)

    def decode_points(self, scale: float = 1.0, views: int | None = None) -> int:
        """Rays of the held-out cameras (or of `views` turntable cameras) at `scale`, times the samples each."""
        return (HELD_OUT if views is None else views) * self._side(scale) ** 2 * rendering.SAMPLES

    def viewpoints(self, n, scale=1.0):
        """A turntable: n cameras at the held-out cameras' elevation and distance, evenly around."""
        return self.coordinates(scale, np.arange(n) * 360.0 / n)

    def file_coordinates(self) -> torch.Tensor:
        return self.viewpoints(TURNTABLE)

    @staticmethod
    def _pixels(rgb: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).float()
        return (x / 127.5 - 1).reshape(len(x), -1, 3)

    def targets(self, signals: np.ndarray) -> torch.Tensor:
        """The held-out views' pixels: (B, 4 R^2, 3) in [-1, 1]."""
        return self._pixels(signals["rgb"][:, -HELD_OUT:])

    def taken_at_coordinates(self, signals: np.ndarray) -> bool:
        """Whether every scene's held-out cameras are `coordinates()`' (the embedded cars); not where a scene
        keeps its own (SRN): its views are not at the samples' cameras."""
        held = orbit_poses(HELD_OUT_AZIMUTHS, radius=self.radius, up=self.up).numpy()
        return bool(np.allclose(signals["pose"][:, -HELD_OUT:], held[None], atol=1e-4)
                    and np.allclose(signals["focal"], self.focal, rtol=1e-5))

    def evaluation_points(self, signals: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Each scene's held-out rays (B, 4 R^2, 6) and pixels (B, 4 R^2, 3)."""
        pose = torch.from_numpy(signals["pose"][:, -HELD_OUT:])
        focal = torch.from_numpy(signals["focal"]).double()[:, None].expand(-1, HELD_OUT)
        return rendering.rays(pose, focal, self.resolution).flatten(1, 2), self.targets(signals)

    def sample_points(self, signals, count, generator, surface_fraction=0.0, device="cpu"):
        """`count` pixels per scene drawn uniformly from its fit views (all of them when None): per-scene
        rays (B, P, 6) and pixels (B, P, 3)."""
        fit = signals["rgb"].shape[1] - HELD_OUT
        side, b = self.resolution, len(signals)
        total = fit * side * side
        if count is None or count >= total:
            index = torch.arange(total).expand(b, total)
        else:
            index = torch.randint(total, (b, count), generator=generator)
        view, pixel = torch.div(index, side * side, rounding_mode="floor"), index % (side * side)
        pose = torch.from_numpy(signals["pose"][:, :fit])
        pose = pose[torch.arange(b)[:, None], view]                                         # (B, P, 4, 4)
        focal = torch.from_numpy(signals["focal"]).double()[:, None].expand_as(view)
        ray = rendering.pixel_rays(pose, focal, side, pixel[..., None])[..., 0, :]  # (B, P, 6)
        flat = signals["rgb"][:, :fit].reshape(b, -1, 3)                                     # (B, fit R^2, 3) uint8
        target = self._pixels(flat[np.arange(b)[:, None], index.numpy()])
        return ray.to(device), target.to(device)

    # -- pictures and metrics ------------------------------------------------------------------
    def per_view(self, values: torch.Tensor, scale: float) -> torch.Tensor:
        """(B, V side^2, 3) -> (B, V, 3, side, side) in [0, 1]."""
        side = self._side(scale)
        v = values.shape[1] // (side * side)
        return self.to_unit(values.detach()).reshape(len(values), v, side, side, 3).permute(0, 1, 4, 2, 3)

    def to_pictures(self, values, scale=1.0):
        """The views side by side: (B, side, V side, 3)."""
        views = self.per_view(values, scale)                                       # (B, V, 3, s, s)
        return (views.permute(0, 3, 1, 4, 2).flatten(2, 3) * 255).round().to(torch.uint8).numpy()

    def reconstruction_metrics(self, values, targets):
        pred, true = self.per_view(values, 1.0), self.per_view(targets, 1.0)
        b, v = pred.shape[:2]
        return {"psnr": metrics.psnr(pred.flatten(0, 1), true.flatten(0, 1)).view(b, v).mean(1).numpy(),
                "ssim": metrics.ssim(pred.flatten(0, 1), true.flatten(0, 1)).view(b, v).mean(1).numpy()}

    def predictor_input(self, values):
        return self.per_view(values, 1.0).flatten(1, 2)                            # (B, 3 V, R, R)

    def instance_file(self, values, scale=1.0):
        """An animated GIF, one frame per view (a turntable when decoded at `file_coordinates`)."""
        from PIL import Image

        views = (self.per_view(values[None], scale)[0].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
        frames = [Image.fromarray(v).resize((4 * v.shape[1],) * 2, Image.Resampling.NEAREST) for v in views]
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=150, loop=0)
        return buf.getvalue()
