"""The embedded default dataset: procedural, anti-aliased cartoon faces.

Each face is drawn from nine ground-truth factors that span the paper's
coarse-to-fine hierarchy (fig. 5): global colour and pose, head shape, hair
style and colour, skin tone, expression and eye size. Everything is drawn
with hard masks on a grid `supersample` times finer than the target and
box-filtered down, which anti-aliases every edge.

Deterministic from the seed: the same (n, resolution, seed) gives the same
bytes on any machine, since only numpy float64 arithmetic is involved.
"""
from __future__ import annotations

import colorsys

import numpy as np

# name -> (kind, low, high); categorical factors take the integers low..high; circular ones are in turns.
FACTORS: dict[str, tuple[str, float, float]] = {
    "background_hue": ("circular", 0.0, 1.0),   # hue in turns: 0 and 1 are the same red
    "pose_x": ("continuous", -0.22, 0.22),       # head centre offset, fraction of the canvas half-width
    "tilt": ("continuous", -0.35, 0.35),         # head roll, radians
    "head_aspect": ("continuous", 0.70, 0.95),   # head width / height
    "hair_style": ("categorical", 0, 3),         # 0 bald, 1 short, 2 long, 3 long with fringe
    "hair_colour": ("continuous", 0.0, 1.0),     # position along a black-brown-blond-red palette
    "skin_tone": ("continuous", 0.0, 1.0),       # pale to dark
    "smile": ("continuous", -1.0, 1.0),          # mouth curvature, frown to smile
    "eye_size": ("continuous", 0.6, 1.2),
}
FACTOR_NAMES = list(FACTORS)

_SKIN = np.array([[0.98, 0.86, 0.76], [0.87, 0.68, 0.52], [0.62, 0.43, 0.30], [0.36, 0.24, 0.17]])
_HAIR = np.array([[0.08, 0.06, 0.05], [0.38, 0.22, 0.10], [0.90, 0.78, 0.45], [0.70, 0.25, 0.08]])
_SHIRT = np.array([0.20, 0.24, 0.33])
_LIPS = np.array([0.62, 0.15, 0.18])


def _palette(colours: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp: t in [0, 1] -> (n, 3)."""
    pos = np.clip(t, 0, 1) * (len(colours) - 1)
    i = np.minimum(pos.astype(int), len(colours) - 2)
    w = (pos - i)[:, None]
    return colours[i] * (1 - w) + colours[i + 1] * w


def sample_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, F) factor values, uniform within each factor's range."""
    cols = []
    for kind, lo, hi in FACTORS.values():
        if kind == "categorical":
            cols.append(rng.integers(int(lo), int(hi) + 1, size=n).astype(np.float64))
        else:
            cols.append(rng.uniform(lo, hi, size=n))
    return np.stack(cols, axis=1)


def render(factors: np.ndarray, resolution: int, supersample: int = 4) -> np.ndarray:
    """Render faces: (n, F) factors -> (n, resolution, resolution, 3) uint8."""
    f = {name: factors[:, i] for i, name in enumerate(FACTOR_NAMES)}
    n = len(factors)
    s = resolution * supersample
    # Pixel centres on [-1, 1]; y points down, as in an image.
    axis = (np.arange(s) + 0.5) / s * 2 - 1
    y, x = np.meshgrid(axis, axis, indexing="ij")
    x, y = x[None], y[None]                                       # (1, s, s)

    def col(v):                                                   # (n,) -> (n, 1, 1)
        return v[:, None, None]

    # Head-local coordinates: translate to the head centre, undo the roll.
    cx, cy = col(f["pose_x"]), col(np.full(n, -0.05))
    c, sn = np.cos(col(f["tilt"])), np.sin(col(f["tilt"]))
    u = c * (x - cx) + sn * (y - cy)
    v = -sn * (x - cx) + c * (y - cy)
    b = 0.52                                                       # head half-height
    a = b * col(f["head_aspect"])                                  # head half-width

    hue = f["background_hue"]
    bg = np.array([colorsys.hsv_to_rgb(h, 0.45, 0.85) for h in hue])
    skin = _palette(_SKIN, f["skin_tone"])
    hair = _palette(_HAIR, f["hair_colour"])
    style = f["hair_style"].astype(int)

    img = np.broadcast_to(bg[:, None, None, :], (n, s, s, 3)).copy()

    def paint(mask, colour):
        nonlocal img
        m = mask[..., None]
        img = np.where(m, colour[:, None, None, :] if colour.ndim == 2 else colour, img)

    # Long hair falls behind the head and shoulders.
    long_hair = ((u / (a * 1.28)) ** 2 + ((v + 0.06) / (b * 1.18)) ** 2 <= 1) & (v < b * 1.05)
    paint(long_hair & col(style >= 2), hair)
    # Shoulders and neck (in image coordinates: the body does not roll with the head).
    shoulders = (((x - cx * 0.6) / 0.95) ** 2 + ((y - 1.25) / 0.55) ** 2 <= 1)
    paint(shoulders, np.broadcast_to(_SHIRT, (n, 3)))
    neck = (np.abs(x - cx * 0.8) < 0.16 * col(f["head_aspect"])) & (y > cy) & (y < 0.85)
    paint(neck & ~shoulders, skin * 0.88)
    # Head.
    head = (u / a) ** 2 + (v / b) ** 2 <= 1
    paint(head, skin)
    # Hair on top: a cap for short hair, a cap plus fringe for style 3.
    cap = ((u / (a * 1.07)) ** 2 + ((v + 0.02) / (b * 1.07)) ** 2 <= 1) & (v < -b * 0.45 + 0.05 * np.cos(u * 9))
    fringe = head & (v < -b * 0.12 + 0.07 * np.cos(u * 14))
    paint(cap & col(style >= 1), hair)
    paint(fringe & col(style == 3), hair)
    # Eyes: white, then iris; brows above in the hair colour.
    r = 0.085 * col(f["eye_size"])
    ex, ey = 0.40 * a, -0.08
    for side in (-1, 1):
        du, dv = u - side * ex, v - ey
        paint((du / (r * 1.3)) ** 2 + (dv / r) ** 2 <= 1, np.broadcast_to(np.array([0.97, 0.97, 0.97]), (n, 3)))
        paint(du ** 2 + dv ** 2 <= (0.6 * r) ** 2, np.broadcast_to(np.array([0.10, 0.12, 0.20]), (n, 3)))
        brow = (np.abs(du) < r * 1.5) & (np.abs(dv + r * 1.9 + 0.03 * (du / r) ** 2 * 0.2) < 0.028)
        paint(brow, hair * 0.8 + 0.05)
    # Nose: a short darker stroke.
    nose = (np.abs(u) < 0.035) & (v > 0.0) & (v < 0.16)
    paint(nose, skin * 0.8)
    # Mouth: a curved band; smile > 0 lifts the corners.
    w = 0.22 * a / 0.45
    my = 0.27 + col(f["smile"]) * 0.09 * (1 - (u / w) ** 2) - col(f["smile"]) * 0.045
    mouth = (np.abs(u) < w) & (np.abs(v - my) < 0.035)
    paint(mouth, np.broadcast_to(_LIPS, (n, 3)))

    # Box filter down to the target resolution: the anti-aliasing step.
    img = img.reshape(n, resolution, supersample, resolution, supersample, 3).mean(axis=(2, 4))
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def generate(n: int, resolution: int, seed: int, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """n faces and their factors: ((n, R, R, 3) uint8, (n, F) float32)."""
    rng = np.random.default_rng(seed)
    factors = sample_factors(n, rng)
    images = np.concatenate([render(factors[i:i + chunk], resolution) for i in range(0, n, chunk)])
    return images, factors.astype(np.float32)
