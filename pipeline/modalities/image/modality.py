"""Images: RGB on a square pixel grid (CelebA-HQ; the embedded procedural faces)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ... import io, metrics, pictures
from ...errors import DataError
from ..base import Modality
from . import synthetic


def to_rgb(im):
    """Any PIL image -> RGB, keeping the brightness of high-bit-depth grey images (`pictures.eight_bit`)."""
    return pictures.eight_bit(im).convert("RGB")


ALPHA_MODES = ("RGBA", "LA", "PA")
EXIF_ORIENTATION = 0x0112


def has_alpha(im) -> bool:
    """A picture with transparency: an alpha band, or a palette / grey / RGB PNG with a transparent colour."""
    return im.mode in ALPHA_MODES or (im.mode in ("P", "L", "RGB") and "transparency" in im.info)


def upright(im):
    """The picture turned as its EXIF Orientation tag says (a phone's JPEG stores the sensor's pixels and a tag
    saying how to turn them; PIL does not apply it on opening): ImageOps.exif_transpose's table, without its
    rewriting of the EXIF block, which raises on a damaged one. A damaged EXIF block leaves the pixels as
    stored (they decode; Pillow's per-tag warnings about it would be noise)."""
    import warnings

    from PIL import Image

    im.load()   # a pixel decoding error is the file's DataError (load_image), never taken for an EXIF one
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:   # Pillow's EXIF parser raises struct.error, TypeError, ... on damaged tags
        return im
    turn = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}.get(orientation) if isinstance(orientation, int) else None
    return im if turn is None else im.transpose(turn)


def load_image(path: Path, resolution: int) -> np.ndarray:
    """Turn upright (EXIF), centre-crop to a square, resize with bicubic + antialias, put any transparency on
    white: -> (R, R, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=io.PICTURE_FORMATS) as im:   # no other decoder runs
            im = upright(im)
            # Transparent pixels go on white after the resize, as in the SRN reader: PIL resizes RGBA with
            # premultiplied alpha, so a transparent pixel's hidden colour never bleeds into its neighbours,
            # and the float compositing runs at the resolution, not the file's size. An opaque alpha band
            # gives the RGB pixels exactly.
            im = im.convert("RGBA") if has_alpha(im) else to_rgb(im)
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
            # PIL's resize widens the bicubic kernel by the downscale factor, i.e. antialiases.
            im = im.resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=None)
            pixels = np.asarray(im, dtype=np.uint8)
            return pictures.on_white(pixels) if pixels.shape[-1] == 4 else pixels
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read image ({e.__class__.__name__}: {e})") from None


CROP_WARN = 1.25      # a picture longer than this loses more than a fifth of its long side to the centre crop


class ImageModality(Modality):
    """RGB images on a square pixel grid; coordinates are a linspace over [-1, 1] inclusive (mNIF)."""

    name = "image"
    file_kind = "a picture (.png, .jpg), centre-cropped and resized"
    set_metrics = "FID, KID and precision/recall"
    d_in = 2
    folder_suffixes = io.PICTURE_SUFFIXES
    factor_names = tuple(synthetic.FACTOR_NAMES)
    factor_kinds = tuple(kind for kind, _, _ in synthetic.FACTORS.values())
    metric_definitions = {"psnr_definition": "mean over instances of per-instance PSNR, images in [0, 1]",
                          "ssim_definition": "Wang et al. 2004, 11x11 Gaussian window sigma 1.5, valid windows, [0, 1]"}

    def __init__(self, resolution: int, channels: int = 3):
        self.resolution = resolution
        self.channels = channels
        self.d_out = channels

    def read_file(self, path):
        return load_image(path, self.resolution)

    def folder_notes(self, files):
        """Native sizes (upright, as EXIF says) and modes from the pictures' headers (no pixel decoded; the median:
        the upper middle one by area), and a warning for pictures
        enlarged to the resolution (their targets are blurred) or cropped by more than a fifth of their long
        side (the centre square is kept), which nothing in the outputs would otherwise show."""
        from collections import Counter

        from PIL import Image

        sizes, modes = [], Counter()
        for path in files:
            try:
                with Image.open(path, formats=io.PICTURE_FORMATS) as im:
                    w, h = im.size
                    turned = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)   # upright, as load_image
                    sizes.append((h, w) if turned else (w, h))
                    modes[im.mode] += 1
            except Exception:   # noqa: BLE001 -- unreadable files are load_image's to name or skip
                continue
        if not sizes:
            return {}, []
        area = np.array([w * h for w, h in sizes])
        order = np.argsort(area, kind="stable")
        short = np.array([min(s) for s in sizes])
        ratio = np.array([max(s) / min(s) for s in sizes])
        notes = {"native_size": {"smallest": list(sizes[order[0]]), "median": list(sizes[order[len(order) // 2]]),
                                 "largest": list(sizes[order[-1]])}, "modes": dict(sorted(modes.items()))}
        lines = []
        if (short < self.resolution).any():
            i = int(np.argmin(short))
            lines.append(f"{int((short < self.resolution).sum())} of {len(sizes)} picture files are smaller than "
                         f"dataset.resolution {self.resolution} on their short side (shortest side: {sizes[i][0]}x"
                         f"{sizes[i][1]}): they are enlarged, and their targets blurred")
        if (ratio > CROP_WARN).any():
            i = int(np.argmax(ratio))
            lines.append(f"{int((ratio > CROP_WARN).sum())} of {len(sizes)} picture files are longer than {CROP_WARN}:1 "
                         f"(longest {sizes[i][0]}x{sizes[i][1]}): only their centre square is kept")
        return notes, lines

    def generate(self, n, seed):
        return synthetic.generate(n, self.resolution, seed)

    def coordinates(self, scale: float = 1.0) -> torch.Tensor:
        side = self._side(scale)
        axis = torch.linspace(-1, 1, side)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        return torch.stack([xx, yy], dim=-1).reshape(-1, 2)             # (side*side, 2), row-major

    def targets(self, signals: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(signals, dtype=np.float32))       # (B, R, R, C) uint8 values
        return (x / 127.5 - 1).reshape(x.shape[0], -1, self.channels)

    def to_pictures(self, values: torch.Tensor, scale: float = 1.0) -> np.ndarray:
        side = self._side(scale)
        unit = self.to_unit(values.detach()).reshape(values.shape[0], side, side, self.channels)
        pics = (unit * 255).round().to(torch.uint8).numpy()
        return np.repeat(pics, 3, axis=-1) if self.channels == 1 else pics

    def as_images(self, values: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """(B, P, C) in [-1, 1] -> (B, C, h, w) in [0, 1]."""
        side = self._side(scale)
        return self.to_unit(values).reshape(values.shape[0], side, side, self.channels).permute(0, 3, 1, 2)

    def reconstruction_metrics(self, values, targets):
        pred, true = self.as_images(values), self.as_images(targets)
        return {
            "psnr": metrics.psnr(pred, true).numpy(),
            "ssim": metrics.ssim(pred, true).numpy(),
        }

    def predictor_input(self, values):
        return self.as_images(values)

    file_suffix = ".png"

    def instance_file(self, values, scale=1.0):
        return pictures.png_bytes(self.to_pictures(values[None], scale)[0])
