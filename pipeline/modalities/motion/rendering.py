"""Stick figures by forward kinematics: filmstrips (frames side by side) and animated GIFs.

The figure is seen from its right side at the start (x: its forward axis z,
y: up), orthographic, pelvis fixed at the panel's centre (the poses carry no
translation), so a walk reads as legs swinging and a turn as the figure
rotating towards or away from the viewer. Limbs on the figure's left are
drawn blue, on its right red, the spine and head black.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from .skeleton import BONES, JOINTS, forward_kinematics

EXTENT = 1.1          # metres from the pelvis to a panel's edge (a 1.7 m body fits)
_COLOURS = {"left": (40, 90, 200), "right": (200, 50, 40), "mid": (20, 20, 20)}


def _colour(joint: int) -> tuple[int, int, int]:
    name = JOINTS[joint]
    return _COLOURS["left" if name.startswith("left") else "right" if name.startswith("right") else "mid"]


def draw(joints: np.ndarray, width: int, height: int, supersample: int = 4) -> np.ndarray:
    """(55, 3) joint positions -> (height, width, 3) uint8 picture of the stick figure."""
    s = supersample
    im = Image.new("RGB", (width * s, height * s), (255, 255, 255))
    d = ImageDraw.Draw(im)
    scale = min(width, height) * s / (2 * EXTENT)

    def px(p):
        return (width * s / 2 + p[2] * scale, height * s / 2 - p[1] * scale)

    line = max(1, round(min(width, height) * s / 40))
    for parent, child in BONES:
        d.line([px(joints[parent]), px(joints[child])], fill=_colour(child), width=line)
    hx, hy = px(joints[15])
    r = 0.09 * scale
    d.ellipse([hx - r, hy - r, hx + r, hy + r], outline=_COLOURS["mid"], width=line)
    return np.asarray(im.resize((width, height), Image.Resampling.BOX))


def filmstrip(poses: np.ndarray, panels: int = 6, size: int = 48) -> np.ndarray:
    """(T, 165) poses -> (size * 4/3, panels * size, 3) uint8: `panels` frames evenly spaced over the clip."""
    idx = np.linspace(0, len(poses) - 1, panels).round().astype(int)
    joints = forward_kinematics(poses[idx])
    height = size * 4 // 3
    strip = np.concatenate([draw(j, size, height) for j in joints], axis=1)
    strip[:, size - 1::size][:, :-1] = 200                    # thin grey separators between frames
    return strip


GIF_FPS = 25.0       # GIF delays are whole centiseconds, and viewers slow delays under 20 ms to 100 ms


def gif(poses: np.ndarray, fps: float, size: int = 96) -> bytes:
    """(T, 165) poses at `fps` -> the bytes of a looping animated GIF of the same duration at 25 fps (40 ms
    frames, the poses nearest each frame's time; a 400-frame decode of a 200-frame clip plays as long)."""
    count = max(1, round(len(poses) * GIF_FPS / fps))            # frames at GIF_FPS over the clip's duration
    idx = np.minimum(np.round(np.arange(count) * fps / GIF_FPS).astype(int), len(poses) - 1)
    joints = forward_kinematics(poses[idx])
    frames = [Image.fromarray(draw(j, size, size)) for j in joints]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / GIF_FPS),
                   loop=0)
    return buf.getvalue()
