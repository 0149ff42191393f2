"""Pictures a person can open: grids of rendered samples."""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def eight_bit(im):
    """A PIL image with 8-bit bands: 16-bit grey (modes I;16*, I) rescaled from 0..65535 to an L image.

    PIL's own convert("RGB") / convert("RGBA") clips 16-bit grey at 255, which turns a 16-bit PNG pure
    white; every other mode is returned as it is."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.asarray(im, dtype=np.float64)
        return Image.fromarray(np.clip(np.round(grey / 257.0), 0, 255).astype(np.uint8), mode="L")   # 65535 / 257
    return im


def grid(pictures: np.ndarray, columns: int, pad: int = 2, fill: int = 255, upscale: int = 1,
         column_labels: list[str] | None = None, row_labels: list[str] | None = None) -> np.ndarray:
    """(N, h, w, 3) uint8 -> one (rows*(h+pad)+pad, columns*(w+pad)+pad, 3) image, row-major;
    with labels, a strip above (one label per column) and one on the left (one per row) are added."""
    n, h, w, _ = pictures.shape
    if upscale > 1:
        pictures = pictures.repeat(upscale, axis=1).repeat(upscale, axis=2)
        h, w = h * upscale, w * upscale
    rows = -(-n // columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), fill, dtype=np.uint8)
    for i, pic in enumerate(pictures):
        r, c = divmod(i, columns)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = pic
    if column_labels or row_labels:
        out = label(out, h + pad, w + pad, pad, column_labels or [], row_labels or [], fill)
    return out


FONT_SIZE = 11


@lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    return ImageFont.load_default(size=FONT_SIZE)


def png_bytes(picture: np.ndarray) -> bytes:
    """One (h, w, 3) uint8 picture as the bytes of a PNG file."""
    import io as _io

    from PIL import Image

    buffer = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buffer, format="PNG")
    return buffer.getvalue()


def label(image: np.ndarray, cell_h: int, cell_w: int, pad: int, column_labels: list[str], row_labels: list[str],
          fill: int = 255) -> np.ndarray:
    """Text above each column and left of each row of a grid (PIL's built-in font: no font files needed)."""
    from PIL import Image, ImageDraw

    font = _font()
    width = lambda s: int(font.getlength(s))
    top, left = margins(column_labels, row_labels)
    canvas = Image.new("RGB", (image.shape[1] + left, image.shape[0] + top), (fill,) * 3)
    canvas.paste(Image.fromarray(image), (left, top))
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(column_labels):
        text = _fit(text, cell_w - 2, width)
        draw.text((left + pad + c * cell_w + (cell_w - pad - width(text)) // 2, 2), text, fill=(40, 40, 40), font=font)
    for r, text in enumerate(row_labels):
        draw.text((3, top + pad + r * cell_h + (cell_h - pad - FONT_SIZE) // 2), text, fill=(40, 40, 40), font=font)
    return np.asarray(canvas)


def margins(column_labels: list[str], row_labels: list[str]) -> tuple[int, int]:
    """(top, left): the pixels `label` adds above and left of a grid."""
    top = FONT_SIZE + 6 if column_labels else 0
    left = max(int(_font().getlength(s)) for s in row_labels) + 8 if row_labels else 0
    return top, left


def _fit(text: str, room: int, width) -> str:
    """`text`, shortened with an ellipsis to fit `room` pixels."""
    while text and width(text) > room:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


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


def on_white(rgba: np.ndarray) -> np.ndarray:
    """(..., 4) uint8 RGBA -> (..., 3) uint8 RGB composited on white (SRN's views are rendered on white; a
    user's transparent picture is put on the same ground)."""
    rgba = rgba.astype(np.float64) / 255
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
