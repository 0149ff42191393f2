"""The SMPL-X kinematic tree: 55 joints, their parents, fixed rest offsets, and forward kinematics.

A frame is 165 values: 55 joints x 3 axis-angle components (global orientation,
21 body joints, jaw, two eyes, 15 joints per hand), SMPL-X's order. The tree
(parents) is SMPL-X's published one. The rest offsets (joint minus parent, in
metres, x to the body's left, y up, z forward) are fixed here, rounded from
the SMPL neutral template's joints for the body and laid out by hand for the
jaw, eyes and fingers: no body model is downloaded, so positions are those of
one average skeleton, enough for stick figures and position errors, not for
meshes.
"""
from __future__ import annotations

import numpy as np

JOINTS = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
          "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
          "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw",
          "left_eye", "right_eye") + tuple(
    f"{side}_{finger}{k}" for side in ("left", "right") for finger in ("index", "middle", "pinky", "ring", "thumb")
    for k in (1, 2, 3))
BODY = 22                       # pelvis .. right_wrist: the joints every AMASS file moves
VALUES = 3 * len(JOINTS)        # 165

_BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
_BODY_OFFSETS = (
    (0.0, 0.0, 0.0), (0.059, -0.082, -0.018), (-0.060, -0.091, -0.004), (0.004, 0.124, -0.038),
    (0.043, -0.386, 0.008), (-0.043, -0.384, -0.005), (0.004, 0.138, 0.027), (-0.015, -0.427, -0.037),
    (0.019, -0.420, -0.035), (-0.002, 0.056, 0.003), (0.041, -0.060, 0.122), (-0.035, -0.062, 0.130),
    (-0.013, 0.212, -0.034), (0.072, 0.114, -0.019), (-0.083, 0.113, -0.024), (0.010, 0.089, 0.050),
    (0.123, 0.045, -0.019), (-0.113, 0.047, -0.009), (0.255, -0.016, -0.023), (-0.260, -0.014, -0.031),
    (0.266, 0.013, -0.007), (-0.269, 0.007, -0.006))
# Finger bases from the wrist and each further phalanx, for the left hand (the right is mirrored in x).
_FINGER_BASE = {"index": (0.090, -0.005, 0.025), "middle": (0.095, -0.005, 0.0), "pinky": (0.075, -0.005, -0.040),
                "ring": (0.088, -0.005, -0.020), "thumb": (0.030, -0.015, 0.040)}
_PHALANX = {"thumb": (0.025, -0.005, 0.020)}


def _tree() -> tuple[np.ndarray, np.ndarray]:
    parents = list(_BODY_PARENTS) + [15, 15, 15]                       # jaw and eyes hang from the head
    offsets = [*_BODY_OFFSETS, (0.0, -0.030, 0.050), (0.030, 0.050, 0.080), (-0.030, 0.050, 0.080)]
    for side, wrist, mirror in (("left", 20, 1.0), ("right", 21, -1.0)):
        for finger in ("index", "middle", "pinky", "ring", "thumb"):
            base = len(parents)
            step = _PHALANX.get(finger, (0.030, 0.0, 0.0))
            for k, (parent, off) in enumerate(((wrist, _FINGER_BASE[finger]), (base, step), (base + 1, step))):
                parents.append(parent)
                offsets.append((mirror * off[0], off[1], off[2]))
    return np.array(parents), np.array(offsets, dtype=np.float64)


PARENTS, OFFSETS = _tree()
assert len(PARENTS) == len(JOINTS) == 55 and all(p < i for i, p in enumerate(PARENTS))
# The bones a stick figure draws: the body and the head; fingers are too small to see at picture size.
BONES = tuple((int(PARENTS[j]), j) for j in range(1, BODY)) + ((15, 22),)


def rest_joints() -> np.ndarray:
    """(55, 3) joint positions of the zero pose, pelvis at the origin."""
    out = np.zeros((len(JOINTS), 3))
    for j in range(1, len(JOINTS)):
        out[j] = out[PARENTS[j]] + OFFSETS[j]
    return out


def rotation_matrices(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues: (..., 3) axis-angle -> (..., 3, 3) rotation matrices (float64)."""
    v = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    axis = v / np.where(angle > 1e-12, angle, 1.0)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*v.shape[:-1], 3, 3)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def matrix_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle with the angle in [0, pi].

    Near pi the usual (R - R^T) / (2 sin) loses the axis; there it comes from
    R = 2 a a^T - I, i.e. the largest column of (R + I) / 2, signed like R - R^T.
    """
    r = np.asarray(r, dtype=np.float64)
    angle = np.arccos(np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0))[..., None]
    v = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    sin = np.sin(angle)
    general = v / (2 * np.where(sin > 1e-12, sin, 1.0)) * angle
    b = (r + np.eye(3)) / 2
    k = np.argmax(np.diagonal(b, axis1=-2, axis2=-1), -1)
    col = np.take_along_axis(b, k[..., None, None].repeat(3, -2), -1)[..., 0]            # (..., 3)
    axis = col / np.sqrt(np.maximum(np.take_along_axis(col, k[..., None], -1), 1e-12))
    axis = np.where(np.sum(axis * v, -1, keepdims=True) < 0, -axis, axis)
    return np.where(angle < 1e-6, v / 2, np.where(angle > np.pi - 1e-3, axis * angle, general))


def unwrap(rotvecs: np.ndarray) -> np.ndarray:
    """(T, ..., 3) axis-angle over time -> the same rotations with no jumps between frames.

    An axis-angle vector v and (|v| + 2 pi k) v / |v| are the same rotation;
    frame by frame the one closest to the previous frame is kept (k = 0 keeps
    the vector as it is), so a turn past pi does not flip the values' sign.
    """
    out = np.array(rotvecs, dtype=np.float64, copy=True)
    angle = np.linalg.norm(out, axis=-1, keepdims=True)
    axis = out / np.where(angle > 1e-12, angle, 1.0)
    ks = np.arange(-2, 3).reshape(5, *([1] * out[0].ndim))
    for t in range(1, len(out)):
        candidates = (angle[t] + 2 * np.pi * ks) * axis[t]                               # (5, ..., 3)
        candidates[2] = out[t]
        best = np.argmin(np.linalg.norm(candidates - out[t - 1], axis=-1), 0)            # (...)
        out[t] = np.take_along_axis(candidates, best[None, ..., None], 0)[0]
    return out


def forward_kinematics(poses: np.ndarray) -> np.ndarray:
    """(..., 165) axis-angle poses -> (..., 55, 3) joint positions, pelvis at the origin."""
    poses = np.asarray(poses, dtype=np.float64)
    rot = rotation_matrices(poses.reshape(*poses.shape[:-1], len(JOINTS), 3))      # (..., 55, 3, 3)
    glob = [rot[..., 0, :, :]]
    pos = [np.zeros((*poses.shape[:-1], 3))]
    for j in range(1, len(JOINTS)):
        p = PARENTS[j]
        pos.append(pos[p] + np.einsum("...ij,j->...i", glob[p], OFFSETS[j]))
        glob.append(glob[p] @ rot[..., j, :, :])
    return np.stack(pos, -2)


def geodesic_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle of the rotation between two axis-angle rotations (..., 3) and (..., 3), in degrees."""
    ra, rb = rotation_matrices(a), rotation_matrices(b)
    trace = np.einsum("...ij,...ij->...", ra, rb)                 # trace(Ra^T Rb)
    return np.degrees(np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0)))
