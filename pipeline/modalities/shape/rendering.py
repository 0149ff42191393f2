"""Shapes a person can look at, and the surfaces the 3-D metrics compare.

- `shade`: a shaded picture of occupancy grids from one fixed viewpoint, by
  ray marching the trilinearly interpolated occupancy (no OpenGL, batched in
  torch, so a CI machine renders the same pixels as a workstation).
- `surface_mesh`: marching cubes (scikit-image) at level 0.5 of the occupancy.
- `surface_points`: points drawn uniformly by area on that mesh.

Voxel i of a side-R grid has its centre at (i + 0.5) * 2 / R - 1: the grid
tiles the cube [-1, 1]^3, the same convention for training coordinates,
decoding, meshes and points.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# Camera: 35 degrees around the vertical axis, 25 degrees above the horizon;
# light from the upper left, in camera coordinates (right, up, towards the viewer).
YAW, PITCH = math.radians(35), math.radians(25)
LIGHT = np.array([-0.45, 0.6, 0.65])
COLOUR = np.array([0.72, 0.78, 0.9])
AMBIENT = 0.3
VIEW_EXTENT = 1.15     # half-width of the picture in world units: the [-1, 1] cube seen from a corner


def voxel_centres(side: int) -> np.ndarray:
    """(side, side, side, 3) float32 centres, indexed [x, y, z]."""
    axis = (np.arange(side, dtype=np.float32) + 0.5) * 2 / side - 1
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def _camera() -> np.ndarray:
    """3x3 matrix whose columns are the camera's right, up and towards-viewer axes in world coordinates."""
    cy, sy, cp, sp = math.cos(YAW), math.sin(YAW), math.cos(PITCH), math.sin(PITCH)
    towards = np.array([sy * cp, sp, cy * cp])          # from the object to the camera
    right = np.array([cy, 0.0, -sy])
    up = np.cross(towards, right)
    return np.stack([right, up, towards], axis=1)


def shade(occupancy: torch.Tensor, size: int, batch_size: int = 8) -> np.ndarray:
    """(B, R, R, R) occupancy in [0, 1] -> (B, size, size, 3) uint8 pictures on white."""
    cam = torch.from_numpy(_camera()).float()
    pix = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    depth_samples = 2 * size
    w = torch.linspace(VIEW_EXTENT * 1.5, -VIEW_EXTENT * 1.5, depth_samples)     # front to back
    v, u = torch.meshgrid(-pix * VIEW_EXTENT, pix * VIEW_EXTENT, indexing="ij")   # image rows go down
    view = torch.stack([u[None].expand(depth_samples, -1, -1), v[None].expand(depth_samples, -1, -1),
                        w[:, None, None].expand(-1, size, size)], dim=-1)       # (D, S, S, 3) camera coords
    world = view @ cam.T                                                          # (D, S, S, 3) x, y, z
    # grid_sample on a (B, 1, X, Y, Z) volume reads its last grid axis as (z, y, x).
    grid = world.flip(-1)[None]
    pictures = []
    for occ in occupancy.float().split(batch_size):
        vol = occ[:, None]
        samples = F.grid_sample(vol, grid.expand(len(occ), -1, -1, -1, -1), mode="bilinear",
                                padding_mode="zeros", align_corners=False)[:, 0]  # (B, D, S, S)
        inside = samples >= 0.5
        hit = inside.any(1)
        first = inside.float().argmax(1)                                          # (B, S, S)
        prev = (first - 1).clamp_min(0)
        o_cur = samples.gather(1, first[:, None])[:, 0]
        o_prev = samples.gather(1, prev[:, None])[:, 0]
        frac = ((0.5 - o_prev) / (o_cur - o_prev).clamp_min(1e-6)).clamp(0, 1)
        step = (w[0] - w[1]).item()
        depth = w[0] - (prev.float() + torch.where(first > 0, frac, torch.zeros_like(frac))) * step
        depth = torch.where(hit, depth, torch.full_like(depth, w[-1].item()))
        pictures.append(_lambert(depth.numpy(), hit.numpy(), 2 * VIEW_EXTENT / size))
    return np.concatenate(pictures)


def _lambert(depth: np.ndarray, hit: np.ndarray, pixel: float) -> np.ndarray:
    """Depth maps (B, S, S) towards the viewer -> shaded uint8 pictures."""
    dz_dv, dz_du = np.gradient(depth, pixel, axis=(1, 2))
    # Rows go down the picture, so the up-derivative is minus the row derivative.
    normal = np.stack([-dz_du, dz_dv, np.ones_like(depth)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    light = LIGHT / np.linalg.norm(LIGHT)
    intensity = AMBIENT + (1 - AMBIENT) * np.clip(normal @ light, 0, 1)
    rgb = intensity[..., None] * COLOUR
    rgb = np.where(hit[..., None], rgb, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def surface_mesh(occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, R, R) occupancy in [0, 1] -> (vertices (V, 3) in world units, faces (F, 3)).

    Marching cubes at level 0.5 on the grid padded with one empty voxel, so
    shapes touching the border still get closed surfaces. An empty grid has no
    surface: (0, 3) and (0, 3) arrays; a full one is the solid cube, closed by
    the padding as any shape touching the border is.
    """
    from skimage.measure import marching_cubes

    side = occupancy.shape[0]
    padded = np.pad(occupancy.astype(np.float32), 1)
    if padded.max() < 0.5:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    verts, faces, _, _ = marching_cubes(padded, level=0.5)
    verts = (verts - 1 + 0.5) * 2 / side - 1
    # scikit-image winds faces towards increasing values (the inside here): flip them outwards.
    return verts.astype(np.float32), faces[:, ::-1].astype(np.int64)


def sample_on_mesh(verts: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points uniform by area on a triangle mesh -> (count, 3) float32."""
    tri = verts[faces]                                               # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(faces), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    flip = r1 + r2 > 1                                               # fold the square onto the triangle
    r1, r2 = np.where(flip, 1 - r1, r1), np.where(flip, 1 - r2, r2)
    a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]
    return (a + r1[:, None] * (b - a) + r2[:, None] * (c - a)).astype(np.float32)


def surface_points(occupancy: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray | None:
    """(R, R, R) occupancy -> (count, 3) points on its 0.5 level set, or None when it has no surface."""
    verts, faces = surface_mesh(occupancy)
    if len(faces) == 0:
        return None
    return sample_on_mesh(verts, faces, count, rng)


def mesh_file(occupancy: np.ndarray, file_type: str = "ply") -> bytes:
    """(R, R, R) occupancy -> the bytes of its marching-cubes mesh as PLY or OBJ (trimesh)."""
    import trimesh

    verts, faces = surface_mesh(occupancy)
    return trimesh.Trimesh(verts, faces, process=False).export(file_type=file_type)
