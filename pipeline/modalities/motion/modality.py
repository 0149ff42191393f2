"""Motion: SMPL-X poses over time (AMASS; the embedded procedural motions).

The INR maps a time t in [-1, 1] to a whole frame, 165 values (the 55 joints'
axis-angle rotations): d_in 1, d_out 165, `dataset.resolution` frames per
clip (the paper: 200). Decoding at `scale` 2 gives 400 frames over the same
clip: temporal upsampling. Why t -> 165 rather than (t, d) -> 1: see the
README (measured).

Stored signals are radians, (N, frames, 165) float32. Targets are normalised
per dimension with the train split's mean and standard deviation, stored in
the prepared dataset's header: (x - mean) / (3 std), so nearly all values lie
in [-1, 1]. Dimensions that never move in the train split (std below 0.01
rad: the jaw, eyes, often the hands) are scaled by the typical spread of the
moving ones (the RMS of their std) instead of a floor of 0.01 rad. Measured
on the real AMASS sample, hands still in the two train files and swinging
0.3 rad in the test file (docs/modalities/motion.md): test PSNR -8.1 -> 25.3
dB, test body rotation error 10.8 -> 3.5 degrees (the tiny floor made the
hands' error dominate the test fit); the cost is the train split's error over
all 55 joints, 1.40 -> 2.17 degrees (the network's small residual on a still
value now decodes at the typical scale); body joints unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from ..base import Modality
from . import amass, rendering, synthetic
from .skeleton import BODY, VALUES, forward_kinematics, geodesic_degrees

STATIC_STD = 0.01    # radians: a train-split std below this is a dimension that never moves
SPREAD = 3.0         # normalised value = (x - mean) / (SPREAD * std)


def normalising_std(std: np.ndarray) -> np.ndarray:
    """Per-dimension std -> the std that normalises: its own, or for a dimension that never moves the RMS
    std of those that do (1 / SPREAD rad when none does), so an unexpected movement is an error of the
    typical motion's scale."""
    static = std < STATIC_STD
    typical = float(np.sqrt(np.mean(std[~static] ** 2))) if (~static).any() else 1 / SPREAD
    return np.where(static, typical, std)


class MotionModality(Modality):
    name = "motion"
    file_kind = "an AMASS-style .npz clip (poses, mocap_framerate)"
    set_metrics = "COV, MMD and 1-NNA of joint trajectories, and the feature Frechet distance"
    d_in = 1
    d_out = VALUES
    file_suffix = ".gif"
    folder_suffixes = (".npz",)
    factor_names = tuple(synthetic.FACTOR_NAMES)
    factor_kinds = tuple(kind for kind, _, _ in synthetic.FACTORS.values())
    metric_definitions = {
        "mse_definition": "mean squared error of the 165 values per frame in normalised units ((x - mean) / (3 std), "
                          "train-split statistics), per instance, mean",
        "psnr_definition": "PSNR of the normalised values taken as a signal of range 2 ([-1, 1], as the image grid): "
                           "10 log10(4 / mse), per instance, mean",
        "rotation_error_definition": "geodesic angle between decoded and true rotation of each of the 55 joints "
                                     "in each frame, degrees, mean; body_rotation_error: the 22 body joints "
                                     "(the jaw, eyes and often the hands never move)",
        "position_error_definition": "distance between decoded and true joint positions by forward kinematics on "
                                     "a fixed SMPL-X-like skeleton (pelvis at the origin, no translation), 55 "
                                     "joints, millimetres, mean",
        "body_position_error_definition": "the same on the 22 body joints (pelvis to wrists)",
        "upsampled_definition": "test clips decoded at twice their frames (temporal upsampling) against the source "
                                "clip slerped to the same times: body rotation error (degrees) and body joint "
                                "position error (mm)"}
    render_scale = 2.0   # 400 frames of a 200-frame clip: the paper's temporal upsampling

    def __init__(self, resolution: int, mean: list[float] | None = None, std: list[float] | None = None):
        self.resolution = resolution
        self.mean = np.zeros(VALUES, np.float32) if mean is None else np.asarray(mean, np.float32)
        self.std = np.full(VALUES, 1 / SPREAD, np.float32) if std is None else np.asarray(std, np.float32)

    # -- data ------------------------------------------------------------------------
    def fit_to_train(self, train: np.ndarray) -> None:
        """Per-dimension mean and std of the train split (N, frames, 165), kept in the dataset's header."""
        flat = train.reshape(-1, VALUES).astype(np.float64)
        self.mean = flat.mean(0).astype(np.float32)
        self.std = normalising_std(flat.std(0)).astype(np.float32)

    def data_warnings(self, train: np.ndarray, test: np.ndarray) -> list[str]:
        """Dimensions still in the train split that move in the test split: learnt as constants."""
        train_std = train.reshape(-1, VALUES).std(0)
        test_std = test.reshape(-1, VALUES).std(0)
        moving = (train_std < STATIC_STD) & (test_std >= STATIC_STD)
        if not moving.any():
            return []
        worst = int(np.argmax(np.where(moving, test_std, 0)))
        return [f"{int(moving.sum())} of {VALUES} pose values never move in the train split but do in the test "
                f"split (up to {test_std[worst]:.2f} rad std, value {worst}, joint {worst // 3}): Stage-1 learns "
                "them as constants and their error dominates the test metrics; put clips that move them in "
                "the train split"]

    def construction_args(self) -> dict:
        return {"resolution": self.resolution, "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std]}

    def read_file(self, path: Path) -> np.ndarray:
        """One AMASS file -> its first clip of `resolution` frames at 30 fps (a user's own motion for control)."""
        poses, rate = amass.read_poses(path)
        c = amass.clips(poses, rate, self.resolution)
        if not len(c):
            raise DataError(f"{path}: {len(poses)} frames at {rate:g} fps is shorter than one clip of "
                            f"{self.resolution} frames at {amass.FPS:g} fps")
        return c[0]

    def generate(self, n, seed):
        return synthetic.generate(n, self.resolution, seed)

    def read_source(self, cfg):
        """An AMASS folder (nested as AMASS ships it): split by file, each file cut into clips."""
        from ...prepared import PreparedData, check_splits, split_members

        if cfg.dataset.source != "amass":
            return super().read_source(cfg)
        d = cfg.dataset
        root = Path(d.path)
        files, body_shapes = amass.motion_files(root)
        if d.folder.limit is not None:
            files = files[: d.folder.limit]
        per_file, skipped, short, lengths = [], [], 0, {}
        for p in files:
            try:
                poses, rate = amass.read_poses(p)
            except DataError:
                if not d.folder.skip_corrupt:
                    raise
                skipped.append(str(p.relative_to(root)))
                continue
            c = amass.clips(poses, rate, self.resolution)
            short += len(c) == 0
            per_file.append((str(p.relative_to(root)), c))
            lengths[per_file[-1][0]] = amass.frames_at(poses, rate)
        kept = [(name, c) for name, c in per_file if len(c)]
        if len(kept) < 2:
            listed = ", ".join(f"{name} {n}" for name, n in list(lengths.items())[:10])
            longest = sorted(lengths.values(), reverse=True)
            fits = longest[1] if len(longest) >= 2 else 0            # the most frames two files both have
            if len(longest) < 2:          # one readable file: no resolution helps, the split is by file
                hint = ("; add a second motion file: the split is by file, so one sequence never has clips on both "
                        "sides")
            else:
                hint = (f"; dataset.resolution {fits} or less keeps a clip of {sum(n >= fits for n in longest)} of "
                        "them" if fits >= 8 else "; add longer files (dataset.resolution is at least 8 frames)")
            raise DataError(f"{root}: {len(kept)} motion file(s) hold a clip of {self.resolution} frames at "
                            f"{amass.FPS:g} fps ({len(files)} .npz files, {short} too short, {len(skipped)} "
                            f"unreadable); need at least 2 (one train, one test). Frames at {amass.FPS:g} fps: "
                            f"{listed}{hint}")
        # Split by file (a file's clips are one performance: never on both sides), as dataset.split says, on
        # every listed file: one skipped as unreadable or too short leaves its own side and moves no other
        # across a `sorted` boundary. One file a side will do (the clips are counted next), so 2 or 3 split too.
        paths = [str(p.relative_to(root)) for p in files]
        clips = dict(kept)
        sides = [[i for i in side if paths[i] in clips]
                 for side in split_members(cfg, paths, root, self.set_metrics, least=1)]
        for side, chosen in zip(("train", "test"), sides):
            if not chosen:
                raise DataError(f"{root}: no {side} file holds a clip of {self.resolution} frames (too short or "
                                f"unreadable: {', '.join(n for n in paths if n not in clips)[:300]}); add files or "
                                "change dataset.split / dataset.folder.train_count")
        names = [paths[i] for i in sides[0] + sides[1]]
        train_files, test_files = np.arange(len(sides[0])), np.arange(len(sides[0]), len(names))
        n_train_files = len(train_files)
        train = np.concatenate([clips[names[i]] for i in train_files])
        test = np.concatenate([clips[names[i]] for i in test_files])
        check_splits(root, len(train), len(test), self.set_metrics)
        return PreparedData(
            modality=self, train=train, test=test, train_factors=None, test_factors=None,
            factor_names=[], factor_kinds=[],
            info={"source": "amass", "path": str(root), "files": len(files), "train_files": n_train_files,
                  "body_shape_files": body_shapes,
                  "split": cfg.dataset.split, "test_file_names": [names[i] for i in test_files][:200],
                  "fps": amass.FPS, "clip_frames": self.resolution, "clip_stride": self.resolution,
                  "too_short_files": int(short), "skipped_files": len(skipped), "skipped": skipped[:100]})

    # -- coordinates and values ---------------------------------------------------------------
    def coordinates(self, scale: float = 1.0) -> torch.Tensor:
        return torch.linspace(-1, 1, self._side(scale))[:, None]                    # (frames, 1)

    def targets(self, signals: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(signals, dtype=np.float32))                 # (B, frames, 165)
        return (x - torch.from_numpy(self.mean)) / torch.from_numpy(SPREAD * self.std)

    def poses(self, values: torch.Tensor) -> np.ndarray:
        """Decoded values (B, frames, 165) -> axis-angle radians (B, frames, 165)."""
        return values.detach().numpy() * (SPREAD * self.std) + self.mean

    def to_pictures(self, values: torch.Tensor, scale: float = 1.0) -> np.ndarray:
        """Film strips of 6 frames evenly over each clip; a decode at `scale` times the frames shows
        6 x scale of them (`control render --scale 2`: 12), so the finer decode is seen."""
        return np.stack([rendering.filmstrip(p, panels=max(2, round(6 * scale))) for p in self.poses(values)])

    # -- metrics ---------------------------------------------------------------------------
    @staticmethod
    def joint_errors(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Poses (B, T, 165) in radians, twice -> per joint and frame (B, T, 55): rotation error in degrees,
        forward-kinematics position error in mm."""
        n, t = a.shape[:2]
        rot = geodesic_degrees(a.reshape(n, t, -1, 3), b.reshape(n, t, -1, 3))
        return rot, np.linalg.norm(forward_kinematics(a) - forward_kinematics(b), axis=-1) * 1000

    def reconstruction_metrics(self, values, targets):
        mse = ((values - targets) ** 2).flatten(1).mean(1)
        rot, dist = self.joint_errors(self.poses(values), self.poses(targets))                # (B, T, 55) each
        return {"mse": mse.numpy(), "psnr": (10 * torch.log10(4 / mse.clamp_min(1e-12))).numpy(),
                "rotation_error": rot.mean((1, 2)), "body_rotation_error": rot[..., :BODY].mean((1, 2)),
                "position_error": dist.mean((1, 2)),
                "body_position_error": dist[..., :BODY].mean((1, 2))}

    def extra_reconstruction_metrics(self, model, latents, extras, batch_size, signals):
        """Temporal upsampling (paper B.3): the test clips decoded at twice their frames against the source
        slerped to the same times; body joints only (the rest never move in the embedded data)."""
        frames = 2 * self.resolution
        long = self.poses(model.render(self.coordinates(2.0), latents, batch_size))              # (N, 2R, 165)
        # The decode's times are linspace(-1, 1, 2R): source frame k (R - 1) / (2R - 1).
        source = np.stack([amass.resample(s.astype(np.float64), self.resolution - 1, frames - 1) for s in signals])
        rot, dist = self.joint_errors(long, source)
        return {"upsampled_body_rotation_error": rot[..., :BODY].mean((1, 2)),
                "upsampled_body_position_error": dist[..., :BODY].mean((1, 2))}

    def predictor_input(self, values):
        return self.to_unit(values.detach()).transpose(1, 2)                          # (B, 165, frames)

    def instance_file(self, values, scale=1.0):
        """An animated GIF; a clip decoded at more frames (scale > 1) plays as long as the clip."""
        return rendering.gif(self.poses(values[None])[0], amass.FPS * values.shape[0] / self.resolution)
