"""The embedded 3-D dataset: procedural furniture-and-objects shapes with
part-level ground-truth factors, voxelised at any resolution.

Every shape is a union of trimesh primitives (boxes, cylinders, cones,
icospheres), minus optional carved parts (a mug's hollow). All primitives are
convex, so a voxel centre is inside a part exactly when it lies behind every
face plane of the part's mesh; testing only the voxels inside each part's
bounding box keeps 10000 shapes at 64^3 to minutes.

Factors (the same seven for every category, so one predictor reads them all):

    category   chair | table | lamp | airplane | mug
    width      x extent (span, diameter)
    depth      z extent (length)
    height     y extent
    support    legs: chair/table 4 legs | pedestal | side panels;
               lamp round base | square base | tripod; airplane engines 0 | 2 | 4;
               mug handle none | round | square
    style      chair back solid | posts | solid + armrests; table top rectangular |
               round | with shelf; lamp shade cone | cylinder | sphere;
               airplane tail conventional | T | twin fins; mug plain | foot | saucer
    thickness  legs, poles, walls, fuselage radius
"""
from __future__ import annotations

import numpy as np
from ...progress import bar

from .rendering import voxel_centres
from .voxels import pack

CATEGORIES = ("chair", "table", "lamp", "airplane", "mug")
FACTORS = {   # name -> (kind, low, high); categorical factors take the values 0..high-1
    "category": ("categorical", 0, len(CATEGORIES)),
    "width": ("continuous", 0.8, 1.6),
    "depth": ("continuous", 0.8, 1.6),
    "height": ("continuous", 0.9, 1.7),
    "support": ("categorical", 0, 3),
    "style": ("categorical", 0, 3),
    "thickness": ("continuous", 0.08, 0.18),
}
FACTOR_NAMES = tuple(FACTORS)
SECTIONS = 24     # facets of cylinders and cones


def draw_factors(rng: np.random.Generator) -> dict:
    return {name: int(rng.integers(lo, hi)) if kind == "categorical" else float(rng.uniform(lo, hi))
            for name, (kind, lo, hi) in FACTORS.items()}


# --- primitives (trimesh meshes in world coordinates) ----------------------

def _translate(mesh, centre):
    mesh.apply_translation(centre)
    return mesh


def box(centre, size, rotation=None):
    import trimesh

    mesh = trimesh.creation.box(extents=size)
    if rotation is not None:
        mesh.apply_transform(rotation)
    return _translate(mesh, centre)


def cylinder(centre, radius, length, axis="y"):
    """A cylinder centred at `centre` along a world axis."""
    import trimesh

    mesh = trimesh.creation.cylinder(radius=radius, height=length, sections=SECTIONS)   # along z
    if axis == "y":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    elif axis == "x":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    return _translate(mesh, centre)


def cone(base_centre, radius, height):
    """A cone standing on `base_centre`, apex up."""
    import trimesh

    mesh = trimesh.creation.cone(radius=radius, height=height, sections=SECTIONS)       # base z=0, apex z=h
    mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    return _translate(mesh, base_centre)


def sphere(centre, radius):
    import trimesh

    return _translate(trimesh.creation.icosphere(subdivisions=2, radius=radius), centre)


def tilted(angle_x=0.0, angle_z=0.0):
    import trimesh

    rx = trimesh.transformations.rotation_matrix(angle_x, [1, 0, 0])
    rz = trimesh.transformations.rotation_matrix(angle_z, [0, 0, 1])
    return rz @ rx


# --- categories: factors -> (added parts, carved parts) --------------------

def _legs(f, top_y, floor_y, inset):
    w, d, t = f["width"] / 2 - inset, f["depth"] / 2 - inset, f["thickness"]
    h = top_y - floor_y
    if f["support"] == 0:
        return [box([sx * w, floor_y + h / 2, sz * d], [t, h, t]) for sx in (-1, 1) for sz in (-1, 1)]
    if f["support"] == 1:
        return [cylinder([0, floor_y + h / 2, 0], 1.2 * t, h),
                cylinder([0, floor_y + t / 2, 0], min(w, d), t)]
    return [box([sx * w, floor_y + h / 2, 0], [t, h, 2 * d + t]) for sx in (-1, 1)]


def chair(f):
    W, D, H, t = f["width"] * 0.8, f["depth"] * 0.8, f["height"], f["thickness"]
    floor, seat = -H / 2, -H / 2 + 0.45 * H
    parts = [box([0, seat, 0], [W, t, D])]
    parts += _legs({**f, "width": W, "depth": D}, seat, floor, t / 2)
    back_h, back_z = H / 2 - seat, -D / 2 + t / 2
    if f["style"] == 1:
        parts += [box([sx * (W / 2 - t / 2), seat + back_h / 2, back_z], [t, back_h, t]) for sx in (-1, 1)]
        parts.append(box([0, H / 2 - t, back_z], [W, 2 * t, t]))
    else:
        parts.append(box([0, seat + back_h / 2, back_z], [W, back_h, t]))
    if f["style"] == 2:
        arm_y = seat + 0.35 * back_h
        parts += [box([sx * (W / 2 - t / 2), arm_y, 0], [t, t, D]) for sx in (-1, 1)]
        parts += [box([sx * (W / 2 - t / 2), (seat + arm_y) / 2, D / 2 - t / 2], [t, arm_y - seat, t]) for sx in (-1, 1)]
    return parts, []


def table(f):
    W, D, H, t = f["width"], f["depth"], f["height"] * 0.7, f["thickness"]
    floor, top = -H / 2, H / 2 - t / 2
    if f["style"] == 1:
        parts = [cylinder([0, top, 0], min(W, D) / 2, t)]
        W = D = min(W, D) / np.sqrt(2)
    else:
        parts = [box([0, top, 0], [W, t, D])]
    parts += _legs({**f, "width": W, "depth": D}, top, floor, t)
    if f["style"] == 2:
        parts.append(box([0, floor + 0.3 * H, 0], [W - t, t, D - t]))
    return parts, []


def lamp(f):
    H, t, shade_w = f["height"], f["thickness"] * 0.6, f["width"] * 0.55
    floor = -H / 2
    base_t = 0.08
    if f["support"] == 0:
        parts = [cylinder([0, floor + base_t / 2, 0], f["depth"] * 0.25, base_t)]
    elif f["support"] == 1:
        s = f["depth"] * 0.45
        parts = [box([0, floor + base_t / 2, 0], [s, base_t, s])]
    else:
        leg = 0.35 * H
        parts = [box([0.12 * leg * np.cos(a), floor + leg / 2, 0.12 * leg * np.sin(a)], [t, leg, t],
                     rotation=tilted(0.4 * np.sin(a), -0.4 * np.cos(a))) for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)]
    shade_h = 0.3 * H
    pole_top = H / 2 - shade_h
    parts.append(cylinder([0, (floor + pole_top) / 2, 0], t, pole_top - floor))
    if f["style"] == 0:
        parts.append(cone([0, pole_top, 0], shade_w / 2, shade_h))
    elif f["style"] == 1:
        parts.append(cylinder([0, pole_top + shade_h / 2, 0], shade_w / 2.4, shade_h))
    else:
        parts.append(sphere([0, pole_top + shade_h / 2, 0], min(shade_w / 2, shade_h * 0.8)))
    return parts, []


def airplane(f):
    span, length, fin, r = f["width"] * 1.1, f["depth"] * 1.1, f["height"] * 0.25, 0.05 + f["thickness"] * 0.6
    plate = 0.08      # wings and fins: thicker than one voxel at 32^3
    parts = [cylinder([0, 0, 0], r, length, axis="z"), cone([0, 0, length / 2], r, 0.01)]
    chord = 0.25 * length
    parts.append(box([0, 0, 0.05 * length], [span, plate, chord]))
    tail_z = -length / 2 + 0.08 * length
    if f["style"] == 0:
        parts += [box([0, 0, tail_z], [0.4 * span, plate, 0.12 * length]),
                  box([0, r + fin / 2, tail_z], [plate, fin, 0.12 * length])]
    elif f["style"] == 1:
        parts += [box([0, r + fin / 2, tail_z], [plate, fin, 0.12 * length]),
                  box([0, r + fin, tail_z], [0.4 * span, plate, 0.1 * length])]
    else:
        parts += [box([0, 0, tail_z], [0.4 * span, plate, 0.12 * length])]
        parts += [box([sx * 0.2 * span, fin / 2, tail_z], [plate, fin, 0.1 * length]) for sx in (-1, 1)]
    engines = {0: [], 1: [0.3], 2: [0.2, 0.38]}[f["support"]]
    for e in engines:
        for sx in (-1, 1):
            parts.append(cylinder([sx * e * span, -r * 0.9, 0.12 * length], 0.05 + 0.3 * r, 0.18 * length, axis="z"))
    return parts, []


def mug(f):
    R, H, t = f["width"] * 0.3, f["height"] * 0.55, f["thickness"] * 0.6
    floor = -H / 2
    parts = [cylinder([0, 0, 0], R, H)]
    carved = [cylinder([0, t + 0.05, 0], R - t, H)]
    if f["style"] == 1:
        parts.append(cylinder([0, floor + 0.04, 0], R * 1.15, 0.08))
    elif f["style"] == 2:
        parts.append(cylinder([0, floor - 0.04, 0], R * 1.7, 0.08))
    handle_h, reach = 0.6 * H, 0.1 + 0.15 * f["depth"]
    if f["support"] == 1:
        for a in np.linspace(-np.pi / 2, np.pi / 2, 9):
            parts.append(box([R + reach * np.cos(a), handle_h / 2 * np.sin(a), 0], [2 * t + 0.04] * 3))
    elif f["support"] == 2:
        parts += [box([R + reach / 2, sy * handle_h / 2, 0], [reach, 2 * t + 0.04, 2 * t + 0.04]) for sy in (-1, 1)]
        parts.append(box([R + reach, 0, 0], [2 * t + 0.04, handle_h + 2 * t + 0.04, 2 * t + 0.04]))
    return parts, carved


BUILDERS = {"chair": chair, "table": table, "lamp": lamp, "airplane": airplane, "mug": mug}


# --- voxelisation ----------------------------------------------------------

def _fill_convex(grid: np.ndarray, centres: np.ndarray, mesh, value: bool) -> None:
    """Set grid voxels whose centres lie inside the convex `mesh` to `value`."""
    side = grid.shape[0]
    lo, hi = mesh.bounds
    # Voxel index range whose centres can fall inside the bounding box.
    i0 = np.clip(np.floor((lo + 1) * side / 2 - 0.5).astype(int), 0, side)
    i1 = np.clip(np.ceil((hi + 1) * side / 2 - 0.5).astype(int) + 1, 0, side)
    if np.any(i1 <= i0):
        return
    block = centres[i0[0]:i1[0], i0[1]:i1[1], i0[2]:i1[2]]
    normals = mesh.face_normals
    offsets = np.einsum("fi,fi->f", normals, mesh.triangles[:, 0])
    planes = np.unique(np.round(np.c_[normals, offsets], 6), axis=0)
    inside = np.all(block @ planes[:, :3].T <= planes[:, 3] + 1e-9, axis=-1)
    target = grid[i0[0]:i1[0], i0[1]:i1[1], i0[2]:i1[2]]
    target[inside] = value


def voxelise(factors: dict, side: int, centres: np.ndarray | None = None) -> np.ndarray:
    """One shape's factors -> (side, side, side) bool occupancy."""
    centres = voxel_centres(side) if centres is None else centres
    added, carved = BUILDERS[CATEGORIES[factors["category"]]](factors)
    grid = np.zeros((side,) * 3, dtype=bool)
    for mesh in added:
        _fill_convex(grid, centres, mesh, True)
    for mesh in carved:
        _fill_convex(grid, centres, mesh, False)
    return grid


def generate(n: int, side: int, seed: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """n shapes -> (packed occupancy (n, side^3 / 8) uint8, factors (n, F) float32).

    Shapes are packed as they are made, so memory grows by side^3 / 8 bytes per shape.
    """
    rng = np.random.default_rng(seed)
    centres = voxel_centres(side)
    packed = np.empty((n, -(-side ** 3 // 8)), dtype=np.uint8)
    factors = np.empty((n, len(FACTORS)), dtype=np.float32)
    for i in bar(range(n), desc="synthetic shapes", disable=not progress, leave=False):
        f = draw_factors(rng)
        packed[i] = pack(voxelise(f, side, centres)[None])[0]
        factors[i] = [f[name] for name in FACTOR_NAMES]
    return packed, factors
