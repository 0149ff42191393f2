"""The embedded default dataset: procedural human motions in SMPL-X's pose layout.

Each clip is one action played by a kinematic model (joint angles as
functions of time) with style factors the hierarchy should separate: the
action (walk, run, jump, wave, squat) and its cadence, amplitude, arm swing,
turning rate and body lean. The phase (where in its cycle the clip starts) is
random but not a factor: it is circular, which a regression would misread.
Poses are axis-angle, 55 joints x 3 (hands, jaw and eyes at rest), at 30 fps.
Deterministic from the seed (numpy float64 only).
"""
from __future__ import annotations

import numpy as np

from .amass import FPS
from .skeleton import JOINTS, VALUES, matrix_to_axis_angle, unwrap

ACTIONS = ("walk", "run", "jump", "wave", "squat")
# name -> (kind, low, high); categorical factors take the integers low..high.
FACTORS: dict[str, tuple[str, float, float]] = {
    "action": ("categorical", 0, len(ACTIONS) - 1),
    "cadence": ("continuous", 0.6, 1.4),      # cycles per second
    "amplitude": ("continuous", 0.5, 1.0),    # stride / depth of the movement
    "arm_swing": ("continuous", 0.0, 1.0),
    "turn_rate": ("continuous", -0.4, 0.4),   # radians per second about the vertical (|yaw| < pi over 200 frames)
    "lean": ("continuous", -0.3, 0.3),        # forward (+) or backward lean of the torso, radians
}
FACTOR_NAMES = list(FACTORS)
J = {name: i for i, name in enumerate(JOINTS)}


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*a.shape, 3, 3)


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*a.shape, 3, 3)


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)


def sample_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    cols = []
    for kind, lo, hi in FACTORS.values():
        cols.append(rng.integers(int(lo), int(hi) + 1, size=n).astype(np.float64) if kind == "categorical"
                    else rng.uniform(lo, hi, size=n))
    return np.stack(cols, axis=1)


def animate(factors: np.ndarray, phase: np.ndarray, frames: int) -> np.ndarray:
    """(n, F) factors and (n,) phases -> (n, frames, 165) axis-angle poses (float32)."""
    n = len(factors)
    f = {name: factors[:, i][:, None] for i, name in enumerate(FACTOR_NAMES)}     # (n, 1) each
    t = np.arange(frames)[None] / FPS                                              # (1, T)
    action = f["action"][:, 0].astype(int)
    phi = 2 * np.pi * f["cadence"] * t + phase[:, None]                            # (n, T)
    amp, swing = f["amplitude"], f["arm_swing"]
    zero = np.zeros((n, frames))
    # Per-joint flexion angles about the joint's x axis (radians), one row per action.
    hip_l, hip_r, knee_l, knee_r = zero.copy(), zero.copy(), zero.copy(), zero.copy()
    sh_fwd_l, sh_fwd_r, elbow_l, elbow_r, sh_up_r, spine = (zero.copy() for _ in range(6))
    lean_extra = zero.copy()
    gait = np.sin(phi)
    pulse = (1 - np.cos(phi)) / 2                                                   # 0 -> 1 -> 0 per cycle
    for a, scale in ((0, 0.45), (1, 0.8)):                                          # walk, run
        m = action == a
        hip_l[m], hip_r[m] = (-scale * amp * gait)[m], (scale * amp * gait)[m]
        knee_l[m] = (scale * 1.4 * amp * np.clip(np.sin(phi + np.pi / 2), 0, None))[m]
        knee_r[m] = (scale * 1.4 * amp * np.clip(np.sin(phi - np.pi / 2), 0, None))[m]
        sh_fwd_l[m], sh_fwd_r[m] = (0.6 * swing * scale * gait)[m], (-0.6 * swing * scale * gait)[m]
        elbow_l[m] = elbow_r[m] = (0.3 + 1.0 * (a == 1)) * np.ones_like(gait)[m]
        lean_extra[m] = 0.15 * (a == 1)
    m = action == 2                                                                 # jump: crouch and reach
    hip_l[m] = hip_r[m] = (-1.1 * amp * pulse)[m]
    knee_l[m] = knee_r[m] = (1.8 * amp * pulse)[m]
    sh_fwd_l[m] = sh_fwd_r[m] = (-(0.6 + 1.6 * swing) * (1 - pulse))[m]
    m = action == 3                                                                 # wave: right arm up, waving
    sh_up_r[m] = (0.9 + 0.3 * amp * np.ones_like(phi))[m]                          # share of the way up
    elbow_r[m] = (0.9 + 0.6 * amp * np.sin(2 * phi))[m]
    sh_fwd_l[m] = (0.3 * swing * gait)[m]
    m = action == 4                                                                 # squat
    hip_l[m] = hip_r[m] = (-1.6 * amp * pulse)[m]
    knee_l[m] = knee_r[m] = (2.2 * amp * pulse)[m]
    sh_fwd_l[m] = sh_fwd_r[m] = (-1.2 * swing * pulse)[m]
    spine[:] = 0.5 * (f["lean"] + lean_extra) + 0.05 * amp * np.sin(2 * phi) * (action[:, None] < 2)

    rot = np.broadcast_to(np.eye(3), (n, frames, len(JOINTS), 3, 3)).copy()
    yaw = f["turn_rate"] * t
    rot[:, :, J["pelvis"]] = _ry(yaw) @ _rx(0.5 * (f["lean"] + lean_extra) * np.ones_like(yaw))
    rot[:, :, J["spine1"]] = _rx(spine)
    rot[:, :, J["spine2"]] = _rx(0.5 * spine)
    rot[:, :, J["left_hip"]], rot[:, :, J["right_hip"]] = _rx(hip_l), _rx(hip_r)
    rot[:, :, J["left_knee"]], rot[:, :, J["right_knee"]] = _rx(knee_l), _rx(knee_r)
    # Arms hang down from the T-pose (about z), then swing forward / back (about x).
    rot[:, :, J["left_shoulder"]] = _rz(np.full_like(zero, -1.2)) @ _rx(-sh_fwd_l)
    rot[:, :, J["right_shoulder"]] = _rz(1.2 - 2.2 * sh_up_r) @ _rx(-sh_fwd_r)
    rot[:, :, J["left_elbow"]], rot[:, :, J["right_elbow"]] = _ry(elbow_l), _ry(-elbow_r)
    # Over time, no sign flips where a rotation passes pi (frames on axis 1).
    return np.swapaxes(unwrap(np.swapaxes(matrix_to_axis_angle(rot), 0, 1)), 0, 1).reshape(
        n, frames, VALUES).astype(np.float32)


def generate(n: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n clips of `frames` frames: ((n, frames, 165) float32 poses, (n, F) factors)."""
    rng = np.random.default_rng(seed)
    factors = sample_factors(n, rng)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    # 100 clips at a time: the 55 joints' rotation matrices of 1100 clips would take 0.9 GB at once.
    poses = [animate(factors[i:i + 100], phase[i:i + 100], frames) for i in range(0, n, 100)]
    return np.concatenate(poses) if poses else np.zeros((0, frames, VALUES), np.float32), factors
