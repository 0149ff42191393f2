"""Occupancy grids: packed storage, resampling, the near-surface band, and
readers for the real voxel and mesh formats.

Grids are boolean (R, R, R) arrays indexed [x, y, z], y up (ShapeNet's
convention). They are stored packed, 8 voxels per byte (np.packbits of the
row-major grid): a 64^3 shape takes 32 KiB, so the 43781 shapes of the
IM-NET release fit in 1.4 GB of RAM.

Every reader returns a grid of the requested side. Real files come at their
own resolution (binvox 32^3, IM-NET 64^3, 3D-RecGAN 64^3 boxes) and are
resampled by `resample` (shrinking: a voxel kept when any part of it is occupied;
enlarging: trilinear on the 0/1 grid, then >= 0.5).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import DataError
from ...prepared import dataset_folder, hidden
from .rendering import voxel_centres

MESH_SUFFIXES = (".obj", ".off", ".ply", ".stl")
VOXEL_SUFFIXES = (".binvox", ".txt")
# The largest grid side a voxel file may declare. Real releases are 32-256
# (binvox 32^3 / 128^3, IM-NET 64^3 to 256^3, 3D-RecGAN 64^3); a file claiming
# more is refused before anything is allocated (a bool 512^3 grid is 128 MiB,
# an index of 3000 would have asked for 25 GiB).
MAX_FILE_SIDE = 512


class VoxelError(DataError):
    """A file that cannot become an occupancy grid; the message names it."""


def pack(grids: np.ndarray) -> np.ndarray:
    """(N, R, R, R) bool -> (N, R^3 / 8) uint8."""
    return np.packbits(grids.reshape(len(grids), -1).astype(bool), axis=1)


def unpack(packed: np.ndarray, side: int) -> np.ndarray:
    """(N, R^3 / 8) uint8 -> (N, R, R, R) bool."""
    flat = np.unpackbits(packed, axis=1, count=side ** 3)
    return flat.reshape(len(packed), side, side, side).astype(bool)


def resample(grid: np.ndarray, side: int) -> np.ndarray:
    """A cubic 0/1 grid at any side -> (side, side, side) bool.

    Shrinking keeps a voxel when any part of it is occupied, as IM-NET builds its 64^3 grids from 256^3
    (`np.max` over each block): a chair leg one voxel thick survives halving, where the block's mean
    (1/4 for that leg) would erase it. Enlarging is trilinear on the 0/1 grid, >= 0.5."""
    if grid.shape[0] == side:
        return grid.astype(bool)
    x = torch.from_numpy(grid.astype(np.float32))[None, None]
    if grid.shape[0] > side:
        return (F.adaptive_max_pool3d(x, side)[0, 0] > 0).numpy()
    y = F.interpolate(x, size=(side,) * 3, mode="trilinear", align_corners=False, antialias=False)
    return (y[0, 0] >= 0.5).numpy()


def centre_in_cube(grid: np.ndarray) -> np.ndarray:
    """A box (a, b, c) grid -> a cube of side max(a, b, c) with the box centred in it."""
    side = max(grid.shape)
    out = np.zeros((side,) * 3, dtype=bool)
    o = [(side - s) // 2 for s in grid.shape]
    out[o[0]:o[0] + grid.shape[0], o[1]:o[1] + grid.shape[1], o[2]:o[2] + grid.shape[2]] = grid
    return out


def near_surface(grids: torch.Tensor) -> torch.Tensor:
    """(B, R, R, R) bool -> (B, R, R, R) bool: voxels whose 3x3x3 neighbourhood holds
    both occupied and empty voxels, i.e. within one voxel of the surface."""
    x = grids.float()[:, None]
    inside_any = F.max_pool3d(x, 3, stride=1, padding=1)
    empty_any = F.max_pool3d(1 - x, 3, stride=1, padding=1)
    return ((inside_any > 0) & (empty_any > 0))[:, 0]


# --- readers ---------------------------------------------------------------

def read_binvox(path: Path, side: int) -> np.ndarray:
    """A cubic .binvox file (run-length encoded) -> (side,)*3 grid, via trimesh's reader. A non-cubic one is
    refused: its axis order is not settled between readers (trimesh's asserts against it)."""
    import trimesh

    try:
        with open(path, "rb") as f:
            dims = binvox_dims(path, f)
            if max(dims) > MAX_FILE_SIDE:
                raise VoxelError(f"{path}: binvox dims {dims} exceed the largest supported side {MAX_FILE_SIDE}")
            if len(set(dims)) != 1:
                raise VoxelError(f"{path}: binvox dims {dims} are not a cube; voxelise the shape at a cube "
                                 "(binvox -d N), or give its mesh")
            f.seek(0)
            grid = trimesh.exchange.binvox.load_binvox(f).matrix
    except VoxelError:
        raise
    except Exception as e:   # trimesh raises plain ValueError/IndexError on bad headers and data
        raise VoxelError(f"{path}: cannot read binvox ({e.__class__.__name__}: {e})") from None
    return resample(centre_in_cube(np.asarray(grid, dtype=bool)), side)


def binvox_dims(path: Path, f) -> list[int]:
    """The `dim a b c` of a binvox header, read before any voxel is allocated."""
    for _ in range(8):   # `#binvox 1`, then dim/translate/scale in any order, then `data`
        line = f.readline(256).strip()
        if line.startswith(b"dim"):
            try:
                dims = [int(v) for v in line.split()[1:]]
            except ValueError:
                dims = []
            if len(dims) != 3 or min(dims) < 1:
                raise VoxelError(f"{path}: bad binvox header line {line[:60]!r}")
            return dims
        if line == b"data" or not line:
            break
    raise VoxelError(f"{path}: not a binvox file (no `dim` line in its header)")


_DIMS = re.compile(r"_(\d+)_(\d+)_(\d+)$")
_RECGAN_VIEW = re.compile(r"^(?:train|test)_3d__(?P<object>.+?)(?:_\d+){6}\.txt$", re.IGNORECASE)


def object_of(name: str) -> str:
    """The object a 3D-RecGAN view file shows (`train_3d__chair_0001_0_1_2_062_047_037.txt` -> `chair_0001`:
    three orientation indices and three box dims follow the object); any other name is its own object."""
    m = _RECGAN_VIEW.match(name)
    return m.group("object") if m else name


def read_index_text(path: Path, side: int) -> np.ndarray:
    """An occupied-index text grid (3D-RecGAN: one `i j k` per line) -> (side,)*3 grid.

    The grid's box dims come from the file name's last three numbers when
    present (`..._045_062_047.txt`), else from the largest index; the box is
    centred in a cube, then resampled.
    """
    try:
        idx = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except (ValueError, OSError) as e:
        raise VoxelError(f"{path}: not an occupied-index text grid ({e})") from None
    if idx.size == 0:
        raise VoxelError(f"{path}: no occupied voxels")
    if idx.shape[1] != 3 or idx.min() < 0:
        raise VoxelError(f"{path}: expected lines of three non-negative integers `i j k`")
    m = _DIMS.search(path.stem)
    dims = np.array([int(g) for g in m.groups()]) if m else idx.max(0) + 1
    if dims.max() > MAX_FILE_SIDE or dims.min() < 1:
        where = "in its name" if m else "from its largest index"
        raise VoxelError(f"{path}: grid dims {dims.tolist()} {where} are outside [1, {MAX_FILE_SIDE}]")
    if (idx.max(0) >= dims).any():
        raise VoxelError(f"{path}: index {idx.max(0).tolist()} outside the grid dims {dims.tolist()} in its name")
    grid = np.zeros(dims, dtype=bool)
    grid[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return resample(centre_in_cube(grid), side)


def read_mesh(path: Path, side: int) -> np.ndarray:
    """A watertight mesh -> (side,)*3 solid grid. The mesh is centred and scaled
    so that its longest bounding-box side spans the cube [-1, 1] minus one voxel."""
    import trimesh

    try:
        # Geometry only: an .obj's mtllib and textures (files it names, decoded by Pillow) are never read.
        mesh = trimesh.load(path, force="mesh", process=True, skip_materials=True)
    except Exception as e:
        raise VoxelError(f"{path}: cannot read mesh ({e.__class__.__name__}: {e})") from None
    if len(mesh.faces) == 0 or mesh.area == 0:
        raise VoxelError(f"{path}: empty mesh (no faces)")
    if not mesh.is_watertight:
        raise VoxelError(f"{path}: mesh is not watertight, so its inside is undefined "
                         "(repair it, or set dataset.folder.skip_corrupt: true to skip such files)")
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale((2 - 2 / side) / (hi - lo).max())
    centres = voxel_centres(side).reshape(-1, 3)
    inside = np.zeros(len(centres), dtype=bool)
    lo, hi = mesh.bounds
    box = np.all((centres >= lo) & (centres <= hi), axis=1)
    inside[box] = mesh.contains(centres[box])
    return inside.reshape(side, side, side)


def read_file(path: Path, side: int) -> np.ndarray:
    """Any supported shape file -> (side,)*3 grid; a shape with no occupied voxel at `side` is refused."""
    suffix = path.suffix.lower()
    if suffix == ".binvox":
        grid = read_binvox(path, side)
    elif suffix == ".txt":
        grid = read_index_text(path, side)
    elif suffix in MESH_SUFFIXES:
        grid = read_mesh(path, side)
    else:
        raise VoxelError(f"{path}: unknown shape format (known: {', '.join(VOXEL_SUFFIXES + MESH_SUFFIXES)})")
    check_occupied(path, grid, side)
    return grid


def check_occupied(path, grid: np.ndarray, side: int) -> None:
    if not grid.any():
        raise VoxelError(f"{path}: no occupied voxel at {side}^3 (an empty, flat or degenerate shape, or one too "
                         "thin for this resolution)")


def imnet_files(root: Path) -> dict[str, Path]:
    """The train and test HDF5 files of an IM-NET release folder (`*train*.hdf5`, `*test*.hdf5`)."""
    root = dataset_folder(root)            # the folder holding IM-NET's *train*.hdf5 and *test*.hdf5
    found = {}
    for split in ("train", "test"):
        matches = sorted(p for p in root.glob(f"*{split}*.hdf5") if not hidden(p.name))   # `._x.hdf5` sidecars
        if len(matches) != 1:
            raise VoxelError(f"{root}: expected one *{split}*.hdf5 file, found {[m.name for m in matches]}")
        found[split] = matches[0]
    return found


def imnet_point_coordinates(points: np.ndarray) -> np.ndarray:
    """IM-NET's integer sample points (cells 0..255 of a 256 grid) -> [-1, 1] coordinates of the cells' centres,
    (p + 0.5)/128 - 1: IM-NET's own (p + 0.5)/256 - 0.5, doubled.

    This is the convention our grids are trained on (64^3 voxel i spans cells
    4i..4i+3, its centre -1 + (2i + 1)/64 is their middle). mNIF maps (p + 1)/128 - 1,
    1/256 further (an eighth of a 64^3 voxel), which would put IM-NET's points
    that sit on a voxel's last cell exactly on the boundary between two voxels.
    """
    return (points.astype(np.float32) + 0.5) / 128 - 1


def limited(n: int, limit: int | None) -> np.ndarray:
    """The rows of an n-shape file that `dataset.folder.limit` keeps: all, or `limit` evenly spaced through the
    file. IM-NET's files run category by category (airplanes first), so its first `limit` shapes would give the
    train split other categories than the test split's; evenly spaced rows keep each category's share."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, limit)).astype(np.int64))


def _array(f, name: str, path: Path):
    """An HDF5 dataset of numbers, or one line naming the file (a group, or text, is not IM-NET's)."""
    import h5py

    obj = f[name]
    if not isinstance(obj, h5py.Dataset) or obj.dtype.kind not in "biuf":
        what = "a group" if not isinstance(obj, h5py.Dataset) else f"of type {obj.dtype}"
        raise VoxelError(f"{path}: '{name}' must be an array of numbers, got {what}")
    return obj


def read_imnet_points(path: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """IM-NET's near-surface samples of each shape, `points_64` (N, P, 3) uint8 and `values_64`
    (N, P) {0, 1}, the points mNIF measures voxel accuracy and PSNR on (the rows `limited` keeps); None when the
    file has none."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise VoxelError(f"{path}: cannot open HDF5 ({e})") from None
    with f:
        if "points_64" not in f or "values_64" not in f:
            return None
        points, values = _array(f, "points_64", path), _array(f, "values_64", path)
        if points.ndim != 3 or values.ndim not in (2, 3):
            raise VoxelError(f"{path}: 'points_64' must be (N, P, 3) and 'values_64' (N, P[, 1]), "
                             f"got {points.shape} and {values.shape}")
        rows = limited(len(points), limit)
        try:   # a file damaged past its header fails here, in h5py's words without the path
            points, values = np.asarray(points[rows]), np.asarray(values[rows])
        except (OSError, ValueError) as e:
            raise VoxelError(f"{path}: cannot read 'points_64' / 'values_64' ({e})") from None
    values = values.reshape(len(values), -1)
    if points.shape[2] != 3 or values.shape != points.shape[:2]:
        raise VoxelError(f"{path}: 'points_64' must be (N, P, 3) and 'values_64' (N, P[, 1]), "
                         f"got {points.shape} and {values.shape}")
    if points.dtype.kind in "fc" or values.dtype.kind in "fc":
        if not (np.isfinite(points).all() and np.isfinite(values).all()):
            raise VoxelError(f"{path}: 'points_64' or 'values_64' holds NaN or inf")
    if (points.min(initial=0) < 0 or points.max(initial=0) > 255 or not np.isin(values, (0, 1)).all()
            or (points.dtype.kind in "fc" and (points != np.round(points)).any())):
        raise VoxelError(f"{path}: 'points_64' must hold integers 0..255 and 'values_64' only 0 and 1")
    return points.astype(np.uint8), values.astype(np.uint8)


def read_imnet(path: Path, side: int, limit: int | None = None, chunk: int = 256) -> np.ndarray:
    """IM-NET's `voxels` dataset (N, 64, 64, 64, 1) -> (N, side^3 / 8) packed, read in
    chunks through h5py so the file is never in memory as a whole."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise VoxelError(f"{path}: cannot open HDF5 ({e})") from None
    with f:
        if "voxels" not in f:
            raise VoxelError(f"{path}: no 'voxels' dataset (found {sorted(f.keys())}); is this an IM-NET file?")
        voxels = _array(f, "voxels", path)
        # A 5th axis of C > 1 channels would be read as C shapes per shape (the reshape below).
        if voxels.ndim not in (4, 5) or len(set(voxels.shape[1:4])) != 1 or voxels.shape[4:] not in ((), (1,)):
            raise VoxelError(f"{path}: 'voxels' must be (N, R, R, R[, 1]), got {voxels.shape}")
        rows = limited(len(voxels), limit)
        out = []
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            first, last = int(part[0]), int(part[-1])
            try:   # a file cut short or damaged past its header fails here, in h5py's words without the path
                block = np.asarray(voxels[first:last + 1] if last - first + 1 == len(part) else voxels[part])
                block = block.reshape(-1, *voxels.shape[1:4])
            except (OSError, ValueError) as e:
                raise VoxelError(f"{path}: cannot read shapes {first}..{last} of 'voxels' ({e})") from None
            if block.dtype.kind in "fc" and not np.isfinite(block).all():
                bad = int(part[np.argwhere(~np.isfinite(block).reshape(len(block), -1).all(1))[0, 0]])
                raise VoxelError(f"{path}: 'voxels' holds NaN or inf (first in shape {bad}); occupancy must be 0/1")
            grids = np.stack([resample(g, side) for g in block > 0])
            empty = np.flatnonzero(~grids.reshape(len(grids), -1).any(1))
            if len(empty):
                raise VoxelError(f"{path}: shape {part[empty[0]]} of 'voxels' has no occupied voxel at {side}^3 "
                                 f"({len(empty)} such in shapes {first}..{last})")
            out.append(pack(grids))
    if not out:
        raise VoxelError(f"{path}: 'voxels' is empty")
    return np.concatenate(out)
