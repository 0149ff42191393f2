"""SRN-Cars folders (Sitzmann et al. 2019, as Functa and mNIF read them).

    <root>/<split>/<scene>/rgb/000000.png ...     views (RGBA or RGB; 128x128 in the release)
    <root>/<split>/<scene>/pose/000000.txt ...    4x4 camera-to-world, OpenCV axes, 16 numbers
    <root>/<split>/<scene>/intrinsics.txt         first line "f cx cy _", last line "H W"

`<split>` is the one folder whose name ends in `train` (cars_train) or `test`
(cars_test). Views are resized to the configured resolution (focal scaled
with them); an RGBA view is put on white. Each scene's held-out views are
picked first, evenly spread over all of its views (`pick`); then `views`
fit views evenly spaced over the rest. Names starting with `.` or `__MACOSX`
(macOS sidecars, `.ipynb_checkpoints/`) are not scenes or views. Any problem
is one line naming the file.
"""
from __future__ import annotations

import math

from pathlib import Path

import numpy as np

from ... import io, pictures
from ...errors import DataError
from ...prepared import hidden


def scene_dirs(root: Path, split: str) -> list[Path]:
    """The scene folders of the one folder of `root` whose name ends in `split`; two such folders
    (cars_train and chairs_train) are refused rather than one of them read silently."""
    found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().endswith(split) and not hidden(p.name))
    if not found:
        raise DataError(f"{root}: no folder whose name ends in '{split}' (SRN-Cars: cars_train, cars_test)")
    if len(found) > 1:
        raise DataError(f"{root}: {len(found)} folders whose names end in '{split}' ({', '.join(p.name for p in found)})"
                        "; point dataset.path at a root holding one *train and one *test folder")
    return sorted(p for p in found[0].iterdir() if p.is_dir() and not hidden(p.name))


def view_files(folder: Path) -> list[Path]:
    """A scene's views: the pictures in rgb/, by name."""
    return sorted(p for p in (folder / "rgb").glob("*") if p.suffix.lower() in io.PICTURE_SUFFIXES and not hidden(p.name))


def read_intrinsics(path: Path) -> tuple[float, int]:
    """intrinsics.txt -> (focal in pixels, image side); the principal point must be the image centre
    (SRN-Cars': 64 64 at 128), as the rays assume."""
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        if len(lines) < 2:
            raise ValueError
        f, cx, cy = (float(v) for v in lines[0][:3])
        h, w = (int(float(v)) for v in lines[-1][:2])
    except FileNotFoundError:
        raise DataError(f"{path}: missing (each SRN scene needs intrinsics.txt)") from None
    except (ValueError, IndexError, OverflowError):   # OverflowError: int(inf)
        raise DataError(f"{path}: not SRN intrinsics (first line 'f cx cy _', last line 'H W')") from None
    if not all(math.isfinite(v) for v in (f, cx, cy)):   # NaN passes every comparison below
        raise DataError(f"{path}: focal and principal point must be finite numbers, got {f:g} {cx:g} {cy:g}")
    if h != w or f <= 0 or h <= 0:
        raise DataError(f"{path}: focal {f:g} and size {h}x{w}: need a positive focal and square views")
    if abs(cx - w / 2) > 0.5 or abs(cy - h / 2) > 0.5:
        raise DataError(f"{path}: principal point ({cx:g}, {cy:g}) is not the centre of a {w}x{h} view; "
                        "the rays assume it is")
    return f, h


def read_pose(path: Path) -> np.ndarray:
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except FileNotFoundError:
        raise DataError(f"{path}: missing (every view in rgb/ needs a pose of the same name)") from None
    except ValueError:
        raise DataError(f"{path}: a pose must be 16 numbers (4x4 camera-to-world)") from None
    if values.size != 16 or not np.all(np.isfinite(values)):
        raise DataError(f"{path}: a pose must be 16 finite numbers (4x4 camera-to-world), found {values.size}")
    pose = values.reshape(4, 4)
    if not np.allclose(pose[3], [0, 0, 0, 1], atol=1e-4):
        raise DataError(f"{path}: the last row of a camera-to-world pose must be 0 0 0 1")
    rotation = pose[:3, :3]
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-3) or np.linalg.det(rotation) < 0:
        raise DataError(f"{path}: the pose's 3x3 rotation is not a rotation (its columns must be orthonormal, "
                        "determinant +1)")
    return pose


def read_view(path: Path, side: int, native: int) -> np.ndarray:
    """One view, `native` pixels square as the intrinsics say, resized to `side` and put on white."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=io.PICTURE_FORMATS) as im:   # no other decoder runs
            if im.size != (native, native):   # from the header, before any pixel is decoded
                raise DataError(f"{path}: {im.size[0]}x{im.size[1]} pixels, but intrinsics.txt says "
                                f"{native}x{native} (the focal would be wrong)")
            im.load()
            rgba = np.asarray(pictures.eight_bit(im).convert("RGBA").resize((side, side), Image.Resampling.BICUBIC))
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({e.__class__.__name__})") from None
    return pictures.on_white(rgba)


def even(total: int, count: int) -> np.ndarray:
    """`count` indices evenly spread over range(total), the first and the last included."""
    return np.unique(np.round(np.linspace(0, total - 1, min(count, total))).astype(int))


def pick(total: int, fit: int, held_out: int) -> tuple[list[int], list[int]]:
    """Held-out views evenly spread over all (view floor((i + 1/2) total / held_out): distinct, as the spacing
    is >= 1), then `fit` views evenly spread over the rest."""
    if total < held_out + 1:
        raise ValueError(f"{total} views: need at least {held_out + 1}")
    held = [int((i + 0.5) * total / held_out) for i in range(held_out)]
    rest = [i for i in range(total) if i not in held]
    return [rest[i] for i in even(len(rest), fit)], held


def read_scene(folder: Path, side: int, fit: int, held_out: int,
               every: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """One scene -> views (V, side, side, 3) uint8 (fit views first, held-out last), poses (V, 4, 4), focal at side.

    `every`: the scene must have all `fit` fit views (a dataset's scenes are one array of fit + held_out
    views each); else a scene with fewer keeps what it has (a user's own scene, fitted alone)."""
    focal, native = read_intrinsics(folder / "intrinsics.txt")
    images = view_files(folder)
    if len(images) < held_out + 1:
        raise DataError(f"{folder / 'rgb'}: {len(images)} views; a scene needs at least {held_out + 1} "
                        f"({held_out} held out for evaluation)")
    if every and len(images) < fit + held_out:
        raise DataError(f"{folder}: {len(images)} views in rgb/; dataset.views asks for {fit} fit views + {held_out} "
                        f"held out = {fit + held_out} a scene; lower dataset.views, or set "
                        "dataset.folder.skip_corrupt: true to skip such scenes")
    for p in images:          # every view needs its pose, whether or not it is kept
        if not (folder / "pose" / f"{p.stem}.txt").is_file():
            raise DataError(f"{folder / 'pose' / (p.stem + '.txt')}: missing (every view in rgb/ needs a pose of "
                            "the same name)")
    keep, held = pick(len(images), fit, held_out)
    order = keep + held
    views = np.stack([read_view(images[i], side, native) for i in order])
    poses = np.stack([read_pose(folder / "pose" / f"{images[i].stem}.txt") for i in order])
    return views, poses, focal * side / native
