"""Pictures a person can open: grids of rendered samples."""
from __future__ import annotations

import numpy as np


def grid(pictures: np.ndarray, columns: int, pad: int = 2, fill: int = 255, upscale: int = 1) -> np.ndarray:
    """(N, h, w, 3) uint8 -> one (rows*(h+pad)+pad, columns*(w+pad)+pad, 3) image, row-major."""
    n, h, w, _ = pictures.shape
    if upscale > 1:
        pictures = pictures.repeat(upscale, axis=1).repeat(upscale, axis=2)
        h, w = h * upscale, w * upscale
    rows = -(-n // columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), fill, dtype=np.uint8)
    for i, pic in enumerate(pictures):
        r, c = divmod(i, columns)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = pic
    return out


def stack_vertically(images: list[np.ndarray], gap: int = 8, fill: int = 255) -> np.ndarray:
    width = max(im.shape[1] for im in images)
    parts = []
    for im in images:
        padded = np.full((im.shape[0], width, 3), fill, dtype=np.uint8)
        padded[:, : im.shape[1]] = im
        parts += [padded, np.full((gap, width, 3), fill, dtype=np.uint8)]
    return np.concatenate(parts[:-1])


def upscale_for(resolution: int, target: int = 64) -> int:
    """Integer nearest-neighbour factor that makes small pictures readable."""
    return max(1, target // resolution)
