"""Cameras, rays and volume rendering, as mNIF and Functa render SRN-Cars.

Poses are camera-to-world 4x4 matrices in SRN's (OpenCV) convention: the
camera looks along its +z, x to the right, y down the image. mNIF multiplies
them by diag(1, -1, -1, 1) and casts OpenGL rays (x, -y, -1); the world ray is
the same as casting (u - cx, v - cy, f) / f through the pose as it is, which
is what `rays` does. Pixels are sampled at their centres (u = i + 0.5).

Rendering (`composite`): `SAMPLES` evenly spaced depths t in [near, far] along
the unnormalised direction d (t is then the depth along the camera's axis),
no hierarchical pass; densities sigma = clip(elu(x, 0.1) + 0.1, 0, 10) and
colours sigmoid(x) or, `colour` raw, x as it is (mNIF's `rgb_activation:
no_use`, Functa's minimal NeRF); alpha_i = 1 - exp(-sigma_i delta_i |d|) with the last
interval 1e10; weights w_i = alpha_i prod_{j<i} (1 - alpha_j); a white
background (rgb += 1 - sum w).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...batching import render_in_batches
from . import COLOUR

NEAR, FAR, SAMPLES = 0.8, 1.8, 32            # mNIF's SRN-Cars bounds: the embedded cars' and SRN-Cars' default
Y_UP = (0.0, 1.0, 0.0)
# The object's radius as a share of the cameras' distance when bounds are derived from the data: SRN-Cars'
# cameras 1.3 from the centre give mNIF's 0.8-1.8; Blender captures (4.03 away, NeRF's own 2-6) 2.48-5.58.
RADIUS_SHARE = 5 / 13


def rotation_to(up) -> torch.Tensor:
    """The rotation (3, 3) float64 taking +y to the unit vector along `up` (Rodrigues; +y itself: identity)."""
    u = F.normalize(torch.as_tensor(up, dtype=torch.float64), dim=0)
    y = torch.tensor(Y_UP, dtype=torch.float64)
    axis, c = torch.linalg.cross(y, u), float(y @ u)
    if axis.norm() < 1e-12:
        return torch.eye(3, dtype=torch.float64) if c > 0 else torch.diag(torch.tensor([1.0, -1.0, -1.0],
                                                                                       dtype=torch.float64))
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + k + k @ k / (1 + c)


def centre_depths(poses: np.ndarray) -> np.ndarray:
    """Camera-to-world poses (N, 4, 4) -> the scene centre's (the origin's) depth along each camera's axis."""
    return -(poses[:, :3, 3].astype(np.float64) * poses[:, :3, 2]).sum(-1)      # (0 - o) . forward


def bounds_from_poses(poses: np.ndarray, radius_share: float = RADIUS_SHARE) -> tuple[float, float, float]:
    """Camera-to-world poses (N, 4, 4) -> (near, far, mean distance): the scene centre's (the origin's)
    depth along each camera's axis, less / plus `radius_share` of the cameras' mean distance."""
    depth = centre_depths(poses)
    distance = float(np.linalg.norm(poses[:, :3, 3].astype(np.float64), axis=-1).mean())
    r = radius_share * distance
    return max(float(depth.min()) - r, 0.05 * float(depth.min())), float(depth.max()) + r, distance


def up_from_poses(poses: np.ndarray, snap_degrees: float = 15.0) -> np.ndarray:
    """The cameras' mean up vector (OpenCV: image y points down, so up is -y of each camera), unit length,
    snapped to the nearest world axis when within `snap_degrees` of it (cameras looking down at an object
    tilt their up vectors towards it; their mean is a few degrees off the capture's axis)."""
    up = -poses[:, :3, 1].astype(np.float64).mean(0)
    up = up / max(np.linalg.norm(up), 1e-12)
    axis = int(np.abs(up).argmax())
    if abs(up[axis]) >= math.cos(math.radians(snap_degrees)):
        up = np.eye(3)[axis] * np.sign(up[axis])
    return up


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None, up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """Camera-to-world (OpenCV: +z forward, y down the image) of a camera at `eye` (3,) looking at `target`."""
    eye = eye.double()
    target = torch.zeros(3, dtype=torch.float64) if target is None else target.double()
    z = F.normalize(target - eye, dim=0)
    x = F.normalize(torch.linalg.cross(z, torch.tensor(up, dtype=torch.float64)), dim=0)   # right
    y = torch.linalg.cross(z, x)                                                               # down
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def orbit(azimuth_deg: float, elevation_deg: float, radius: float, up=Y_UP) -> torch.Tensor:
    """The pose of a camera on a sphere around the origin, looking at it (azimuth 0 on +z, elevation towards
    +y, for `up` +y; another `up` turns that frame so +y goes to it)."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    eye = torch.tensor([radius * math.cos(e) * math.sin(a), radius * math.sin(e), radius * math.cos(e) * math.cos(a)])
    pose = look_at(eye)
    if tuple(float(v) for v in up) == Y_UP:
        return pose
    turned = torch.eye(4, dtype=torch.float64)
    turned[:3, :3] = rotation_to(up)
    return turned @ pose


def pixel_rays(poses: torch.Tensor, focal, side: int, pixels: torch.Tensor) -> torch.Tensor:
    """Rays through pixel indices (row-major, `pixels` (..., P) ints) of cameras `poses` (..., 4, 4) with
    `focal` (...) in pixels of this side: (..., P, 6), origin and unnormalised direction."""
    f = torch.as_tensor(focal, dtype=torch.float64)[..., None]
    u, v = (pixels % side).double() + 0.5, torch.div(pixels, side, rounding_mode="floor").double() + 0.5
    cam = torch.stack([(u - side / 2) / f, (v - side / 2) / f, torch.ones_like(u)], -1)         # (..., P, 3)
    rot, origin = poses[..., :3, :3].double(), poses[..., :3, 3].double()
    direction = cam @ rot.transpose(-1, -2)
    return torch.cat([origin[..., None, :].expand_as(direction), direction], -1).float()


def rays(poses: torch.Tensor, focal, side: int) -> torch.Tensor:
    """Every pixel of cameras `poses` (..., 4, 4): (..., side * side, 6), row-major."""
    f = torch.as_tensor(focal, dtype=torch.float64)
    pixels = torch.arange(side * side).expand(*poses.shape[:-2], side * side)
    return pixel_rays(poses, f.expand(poses.shape[:-2]), side, pixels)


def sample_points(ray: torch.Tensor, samples: int = SAMPLES, near: float = NEAR,
                  far: float = FAR) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays (..., 6) -> points (..., S, 3) at evenly spaced depths in [near, far], and the intervals (..., S)
    scaled by |d| (the last one 1e10)."""
    t = torch.linspace(near, far, samples, device=ray.device, dtype=ray.dtype)
    o, d = ray[..., None, :3], ray[..., None, 3:]
    points = o + t[:, None] * d
    delta = torch.cat([t[1:] - t[:-1], t.new_tensor([1e10])])
    return points, delta * ray[..., 3:].norm(dim=-1, keepdim=True)


def activate(raw: torch.Tensor, colour: str = COLOUR) -> tuple[torch.Tensor, torch.Tensor]:
    """The field's 4 outputs -> (density >= 0, rgb: in [0, 1] through a sigmoid, or `colour` raw as it is)."""
    density = (F.elu(raw[..., 3], alpha=0.1) + 0.1).clamp(0, 10)
    return density, torch.sigmoid(raw[..., :3]) if colour == "sigmoid" else raw[..., :3]


def composite(density: torch.Tensor, rgb: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Densities (..., S), colours (..., S, 3), intervals (..., S) -> (pixel colour (..., 3) on white, opacity (...))."""
    alpha = 1 - torch.exp(-density * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1] + 1e-10], -1), -1)
    weights = alpha * transmittance
    acc = weights.sum(-1)
    return (weights[..., None] * rgb).sum(-2) + (1 - acc[..., None]), acc


class RadianceField:
    """A LoE read as a radiance field: rays (P, 6) or (B, P, 6) and latents (B, L, H) -> pixels (B, P, 3) in [-1, 1].

    Quacks like the LoE where stages use it (`render`, calling it, `layers`,
    `latent_dim`, `latent_grad`), so every stage decodes a NeRF latent the
    way it decodes an image's.

    `frame` (scale, up): the field reads each world point turned so that `up`
    is +y and divided by `scale`, and measures the intervals in those units, so
    a capture 4 units away with z up gives the SIREN the points (and the
    renderer the opacities) of the same scene at SRN-Cars' 1.3 with y up.
    (1, +y), SRN-Cars' and the embedded cars' frame, leaves the points as they are.
    """

    def __init__(self, model, samples: int = SAMPLES, colour: str = COLOUR, near: float = NEAR, far: float = FAR,
                 frame: tuple[float, tuple] = (1.0, Y_UP)):
        self.model, self.samples, self.colour, self.near, self.far = model, samples, colour, near, far
        self.layers, self.latent_dim, self.weights = model.layers, model.latent_dim, model.weights
        scale, up = frame
        turned = tuple(float(v) for v in up) != Y_UP
        # Row vectors: world x = R x_field with R = rotation_to(up), so x_field = x R / scale.
        self.to_field = (rotation_to(up).float() / scale) if turned or scale != 1 else None
        self.scale = float(scale)

    def __call__(self, ray: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        points, delta = sample_points(ray, self.samples, self.near, self.far)   # (..., P, S, 3), (..., P, S)
        if self.to_field is not None:
            points, delta = points @ self.to_field.to(points), delta / self.scale
        p, s = points.shape[-3:-1]
        raw = self.model(points.reshape(*points.shape[:-3], p * s, 3), latents)  # (B, P*S, 4)
        density, rgb = activate(raw.view(len(latents), p, s, 4), self.colour)
        pixel, _ = composite(density, rgb, delta)
        return pixel * 2 - 1

    def render(self, ray: torch.Tensor, latents: torch.Tensor, batch_size: int = 256,
               points_per_batch: int = 2 ** 20) -> torch.Tensor:
        """Many latents without gradients, in batches bounded by points along rays: (N, P, 3) on the CPU."""
        return render_in_batches(self, ray, latents, self.weights[0].device,
                                 max(1, min(batch_size, points_per_batch // (ray.shape[-2] * self.samples))))

    def latent_grad(self, ray: torch.Tensor, latents: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """d/dh of sum_b mean (render - target)^2, by autograd (through the renderer); a graph when grad mode is on."""
        keep = torch.is_grad_enabled()
        with torch.enable_grad():
            h = latents if latents.requires_grad else latents.detach().requires_grad_()
            loss = ((self(ray, h) - targets) ** 2).flatten(1).mean(1).sum()
            return torch.autograd.grad(loss, h, create_graph=keep)[0]
