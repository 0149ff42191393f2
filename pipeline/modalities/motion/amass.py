"""AMASS motion files: SMPL-H or SMPL-X axis-angle poses -> SMPL-X 165-value frames at one frame rate,
cut into fixed-length clips.

An AMASS `.npz` holds `poses` (T, 156) for SMPL-H (52 joints: root, 21 body,
15 + 15 hand) or (T, 165) for SMPL-X (55 joints: + jaw and two eyes before the
hands), `trans`, `betas`, `gender` and its frame rate as `mocap_framerate`
(SMPL-H releases) or `mocap_frame_rate` (SMPL-X releases). Only the poses are
kept (the paper's 165 values per frame): no translation, no shape.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ... import io
from ...errors import DataError
from ...prepared import dataset_folder, hidden, natural_key
from .skeleton import VALUES, matrix_to_axis_angle, rotation_matrices, unwrap

FPS = 30.0            # every sequence is resampled to this rate (AMASS ships 60-250 fps)
# AMASS is z-up (the floor is the xy plane); the skeleton and pictures here are y-up, as SMPL's own frame:
# the root orientation is turned by -90 degrees about x on reading (what AMASS's own tools do for viewing).
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
SMPLH_VALUES = 156
RATE_KEYS = ("mocap_framerate", "mocap_frame_rate")
SKIPPED_NAMES = ("shape.npz",)   # AMASS's per-subject body-shape files: no poses, not motions
SKIPPED_SUFFIX = "_stagei.npz"   # ... and the SMPL-X release's (`female_stagei.npz`; motions end `_stageii.npz`)
RATES = (1.0, 2000.0)            # frame rates read (AMASS: 60-250 fps); 1e-4 fps would resample 3 s into 58 GiB
# Frames a motion file may hold: an hour at 100 fps (AMASS's longest takes are minutes), 0.5 GB as float64.
# Checked from the file's header before its data is read: a small deflated upload can declare and hold GBs.
MAX_FRAMES = 360_000
MAX_ANGLE = 100.0                # radians; an axis-angle rotation is within [0, pi] (a few turns once unwrapped)


def smplh_to_smplx(poses: np.ndarray) -> np.ndarray:
    """(T, 156) SMPL-H -> (T, 165) SMPL-X: root + 21 body joints unchanged, zeros for jaw and eyes, the hands."""
    return np.concatenate([poses[:, :66], np.zeros((len(poses), 9), poses.dtype), poses[:, 66:156]], axis=1)


def _quaternions(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 4) unit quaternions (w, x, y, z)."""
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / np.where(angle > 1e-12, angle, 1.0)
    return np.concatenate([np.cos(angle / 2), axis * np.sin(angle / 2)], -1)


def _rotvecs(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions -> (..., 3) axis-angle with angle in [0, pi]."""
    q = np.where(q[..., :1] < 0, -q, q)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2 * np.arctan2(s, q[..., :1])
    return q[..., 1:] / np.where(s > 1e-12, s, 1.0) * angle


def resample(poses: np.ndarray, source_fps: float, target_fps: float = FPS) -> np.ndarray:
    """(T, 3J) axis-angle at source_fps -> (T', 3J) at target_fps, by spherical interpolation per joint.

    Frame k of the result is at time k / target_fps, for every such time within
    the source's span; between two source frames each joint's rotation moves
    along the shortest arc (slerp), so no rotation is averaged component-wise.
    """
    t, width = poses.shape
    q = _quaternions(poses.reshape(t, width // 3, 3).astype(np.float64))       # (T, J, 4)
    count = int(np.floor((t - 1) * target_fps / source_fps + 1e-9)) + 1
    pos = np.arange(count) * source_fps / target_fps                               # source frame index
    i0 = np.minimum(np.floor(pos).astype(int), t - 1)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (pos - i0)[:, None, None]
    a, b = q[i0], q[i1]
    dot = np.sum(a * b, -1, keepdims=True)
    b = np.where(dot < 0, -b, b)                                                    # the shorter arc
    dot = np.abs(dot).clip(max=1.0)
    theta = np.arccos(dot)
    small = theta < 1e-6
    sin = np.where(small, 1.0, np.sin(theta))
    wa = np.where(small, 1 - w, np.sin((1 - w) * theta) / sin)
    wb = np.where(small, w, np.sin(w * theta) / sin)
    out = wa * a + wb * b
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    return _rotvecs(out).reshape(count, width).astype(np.float32)


def read_poses(path: Path) -> tuple[np.ndarray, float]:
    """One AMASS file -> ((T, 165) SMPL-X poses, y-up, frame rate); DataError naming the file when it is not one.

    Shapes and types are checked from the arrays' headers before any data is read: a small deflated file
    can declare, and hold, gigabytes."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "poses" not in z.files:
                raise DataError(f"{path}: no 'poses' array (keys: {', '.join(z.files)}); not an AMASS motion file")
            rate_key = next((k for k in RATE_KEYS if k in z.files), None)
            if rate_key is None:
                raise DataError(f"{path}: no frame rate ('mocap_framerate' or 'mocap_frame_rate')")
            shape, dtype = io.npy_header(z, "poses")
            if dtype.kind not in "fiu" or dtype.itemsize > 8:   # complex, strings, objects, long double
                raise DataError(f"{path}: 'poses' must hold real numbers, found {dtype}")
            if len(shape) != 2 or shape[1] not in (SMPLH_VALUES, VALUES):
                raise DataError(f"{path}: 'poses' has shape {shape}; expected (frames, {SMPLH_VALUES}) for SMPL-H "
                                f"or (frames, {VALUES}) for SMPL-X")
            if shape[0] > MAX_FRAMES:
                raise DataError(f"{path}: 'poses' declares {shape[0]} frames; a motion file holds at most "
                                f"{MAX_FRAMES} (an hour at 100 fps)")
            rate_shape, rate_dtype = io.npy_header(z, rate_key)
            if math.prod(rate_shape) != 1 or rate_dtype.kind not in "fiu":
                raise DataError(f"{path}: frame rate '{rate_key}' must be one real number, found {rate_dtype} "
                                f"{rate_shape}")
            poses, rate = np.asarray(z["poses"]), float(z[rate_key].reshape(()))
    except DataError:
        raise
    except io.NPZ_ERRORS + (TypeError, AttributeError) as e:
        raise DataError(f"{path}: cannot read as .npz ({e.__class__.__name__}: {e})") from None
    if len(poses) < 2:
        raise DataError(f"{path}: 'poses' has {len(poses)} frames; a motion needs at least 2")
    if not np.isfinite(poses).all():
        raise DataError(f"{path}: 'poses' holds NaN or infinite values")
    largest = float(np.abs(poses).max())
    if largest > MAX_ANGLE:
        raise DataError(f"{path}: 'poses' holds a rotation of {largest:.3g} rad; axis-angle values stay within a "
                        f"few turns (here: at most {MAX_ANGLE:g})")
    if not (np.isfinite(rate) and RATES[0] <= rate <= RATES[1]):
        raise DataError(f"{path}: frame rate {rate:g} fps is outside [{RATES[0]:g}, {RATES[1]:g}] fps")
    poses = (smplh_to_smplx(poses) if poses.shape[1] == SMPLH_VALUES else poses).astype(np.float64)
    poses[:, :3] = matrix_to_axis_angle(Z_UP_TO_Y_UP @ rotation_matrices(poses[:, :3]))
    return poses, rate


def frames_at(poses: np.ndarray, rate: float, target_fps: float = FPS) -> int:
    """How many frames a sequence of len(poses) frames at `rate` has at target_fps (as `resample` makes)."""
    return int(np.floor((len(poses) - 1) * target_fps / rate + 1e-9)) + 1


def clips(poses: np.ndarray, rate: float, frames: int) -> np.ndarray:
    """A sequence at `rate` -> (k, frames, 165) float32 clips at FPS, back to back (stride = frames); a
    remainder shorter than a clip is dropped."""
    seq = resample(poses, rate, FPS)
    seq = unwrap(seq.reshape(len(seq), -1, 3)).reshape(len(seq), VALUES).astype(np.float32)
    k = len(seq) // frames
    return seq[: k * frames].reshape(k, frames, VALUES)


def is_body_shape(path: Path) -> bool:
    """A per-subject body-shape file of AMASS's (SMPL-H `shape.npz`, SMPL-X `<gender>_stagei.npz`)."""
    name = path.name.lower()   # the suffix is read in any case (`motion_files`), so the names are too
    return name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIX)


def motion_files(root: Path) -> tuple[list[Path], int]:
    """(every motion .npz under root (AMASS nests dataset/subject/file) in natural order of their paths below
    root (digit runs by value), the count of body-shape files left out), from one walk of the folder.

    The suffix in any case (`.NPZ`), as the image and shape folders read theirs; a path with a `hidden` part
    (`._walk.npz` sidecars, `.ipynb_checkpoints/`, `__MACOSX/`) is not a motion."""
    root = dataset_folder(root)
    found = [p for p in root.rglob("*") if p.suffix.lower() == ".npz" and p.is_file()
             and not any(hidden(part) for part in p.relative_to(root).parts)]
    motions = [p for p in found if not is_body_shape(p)]
    return sorted(motions, key=lambda p: natural_key(p.relative_to(root).as_posix())), len(found) - len(motions)
