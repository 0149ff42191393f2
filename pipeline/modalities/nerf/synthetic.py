"""The embedded cars: a body box, a cabin, four wheels and an optional spoiler, ray-cast exactly.

Seven ground-truth factors, drawn independently per scene from the seed:
body length and height, cabin position (along the car) and height, wheel
radius, paint colour (one of six) and whether it has a spoiler. The car
stands on its wheels with its centre near the origin, its length along z,
y up, scaled by `SCALE` to lie inside a sphere of radius 0.5: from
cameras 1.3 away every surface is then beyond the renderer's near bound 0.8
(at SCALE 1 the largest cars reached radius 0.62, and 2.6% of the pixels
showing a car were first hit nearer than 0.8: surfaces the field could not
place).

Views are ray-cast against the primitives analytically (slabs for boxes, a
quadratic for the wheels' cylinders), shaded with a key and a fill light,
on white, at twice the resolution and averaged 2x2 (anti-aliased). Each
scene has `fit` views from random cameras on the upper hemisphere (seeded)
and the modality's fixed held-out views (`cameras.HELD_OUT`).
"""
from __future__ import annotations

import numpy as np
import torch

PAINTS = np.array([[0.80, 0.12, 0.10], [0.10, 0.30, 0.75], [0.95, 0.75, 0.10],
                   [0.15, 0.55, 0.25], [0.92, 0.92, 0.92], [0.20, 0.20, 0.22]])
GLASS, TYRE = np.array([0.35, 0.45, 0.55]), np.array([0.08, 0.08, 0.08])
FACTORS = {                       # name: (kind, low, high); categorical: (kind, classes, None)
    "body_length": ("continuous", 0.85, 1.1),
    "body_height": ("continuous", 0.12, 0.22),
    "cabin_position": ("continuous", -0.15, 0.15),
    "cabin_height": ("continuous", 0.09, 0.19),
    "wheel_radius": ("continuous", 0.08, 0.13),
    "paint": ("categorical", len(PAINTS), None),
    "spoiler": ("categorical", 2, None),
}
FACTOR_NAMES = list(FACTORS)
WIDTH = 0.48
SCALE = 0.78                     # the largest car's primitives' bounding-box corners: radius 0.491
KEY = np.array([0.45, 0.8, 0.4]) / np.linalg.norm([0.45, 0.8, 0.4])
FILL = np.array([-0.6, 0.3, -0.5]) / np.linalg.norm([-0.6, 0.3, -0.5])


def draw_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    cols = []
    for kind, a, b in FACTORS.values():
        cols.append(rng.uniform(a, b, n) if kind == "continuous" else rng.integers(0, a, n).astype(float))
    return np.stack(cols, 1)


def primitives(f: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """One car's factors -> [(kind, centre (3,), size (3,), colour (3,))]; boxes: half-extents;
    wheels: (half width along x, radius, radius)."""
    length, body_h, cabin_z, cabin_h, r, paint, spoiler = f
    colour = PAINTS[int(paint)]
    clearance = 0.6 * r
    bottom = -(clearance + body_h + cabin_h) / 2             # centre the car's height on y = 0
    body_y = bottom + clearance + body_h / 2
    parts = [("box", np.array([0, body_y, 0]), np.array([WIDTH / 2, body_h / 2, length / 2]), colour)]
    cabin_len = 0.45 * length
    parts.append(("box", np.array([0, body_y + body_h / 2 + cabin_h / 2, cabin_z * length]),
                  np.array([WIDTH / 2 * 0.85, cabin_h / 2, cabin_len / 2]), GLASS))
    wheel_y = bottom + r - 0.0
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(("wheel", np.array([sx * (WIDTH / 2 - 0.035), wheel_y, sz * (length / 2 - 1.25 * r)]),
                          np.array([0.045, r, r]), TYRE))
    if spoiler:
        parts.append(("box", np.array([0, body_y + body_h / 2 + 0.045, -length / 2 + 0.05]),
                      np.array([WIDTH / 2 * 0.95, 0.012, 0.045]), colour))
    return [(kind, centre * SCALE, size * SCALE, paint) for kind, centre, size, paint in parts]


def _box(o, d, centre, half):
    lo, hi = torch.as_tensor(centre - half), torch.as_tensor(centre + half)
    inv = 1 / d                                                   # +-inf along an axis the ray does not move on
    t1, t2 = (lo - o) * inv, (hi - o) * inv
    near, far = torch.minimum(t1, t2), torch.maximum(t1, t2)
    t_in, axis = near.max(-1)
    t_out = far.min(-1).values
    hit = (t_out >= t_in) & (t_in > 0)
    normal = -torch.sign(d.gather(-1, axis[..., None])) * torch.nn.functional.one_hot(axis, 3)
    return torch.where(hit, t_in, torch.inf), normal.double()


def _wheel(o, d, centre, size):
    half, r = size[0], size[1]
    oy, oz = o[..., 1] - centre[1], o[..., 2] - centre[2]
    a = d[..., 1] ** 2 + d[..., 2] ** 2
    b = 2 * (oy * d[..., 1] + oz * d[..., 2])
    c = oy ** 2 + oz ** 2 - r ** 2
    disc = b ** 2 - 4 * a * c
    t_side = (-b - disc.clamp_min(0).sqrt()) / (2 * a).clamp_min(1e-12)
    x_side = o[..., 0] + t_side * d[..., 0]
    side_ok = (disc >= 0) & (t_side > 0) & ((x_side - centre[0]).abs() <= half)
    t = torch.where(side_ok, t_side, torch.inf)
    p = o + t_side[..., None] * d
    normal = torch.stack([torch.zeros_like(t), p[..., 1] - centre[1], p[..., 2] - centre[2]], -1) / r
    for cap in (-1, 1):
        tc = (centre[0] + cap * half - o[..., 0]) / torch.where(d[..., 0] == 0, 1e-12, d[..., 0])
        pc = o + tc[..., None] * d
        ok = (tc > 0) & ((pc[..., 1] - centre[1]) ** 2 + (pc[..., 2] - centre[2]) ** 2 <= r ** 2) & (tc < t)
        t = torch.where(ok, tc, t)
        normal = torch.where(ok[..., None], torch.tensor([cap, 0.0, 0.0], dtype=torch.float64), normal)
    return t, normal


def render(factors: np.ndarray, ray: torch.Tensor) -> np.ndarray:
    """One car's factors and rays (P, 6) -> colours (P, 3) in [0, 1] on white."""
    o, d = ray[:, :3].double(), ray[:, 3:].double()
    best = torch.full((len(ray),), torch.inf, dtype=torch.float64)
    colour = torch.ones(len(ray), 3, dtype=torch.float64)
    for kind, centre, size, paint in primitives(factors):
        t, normal = (_box if kind == "box" else _wheel)(o, d, centre, size)
        closer = t < best
        k, f = normal @ torch.as_tensor(KEY), normal @ torch.as_tensor(FILL)
        shade = 0.3 + 0.6 * k.clamp_min(0) + 0.25 * f.clamp_min(0)
        colour = torch.where(closer[:, None], (torch.as_tensor(paint) * shade[:, None]).clamp(0, 1), colour)
        best = torch.minimum(best, t)
    return colour.numpy()
