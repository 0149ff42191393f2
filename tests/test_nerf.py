"""The radiance-field plug-in: rendering with exact answers, the camera convention, the SRN reader,
the embedded cars, and auto-decoding."""
import math

import numpy as np
import pytest
import torch

from pipeline.autodecode import LatentTable, fit_latents
from pipeline.config import FitLoE
from pipeline.errors import DataError
from pipeline.loe import LayersOfExperts
from pipeline.meta import per_instance_mse, reconstruct
from pipeline.modalities.nerf import rendering, srn, synthetic
from pipeline.modalities.nerf.modality import HELD_OUT, NerfModality


def test_a_slab_of_known_density_gives_the_analytic_colour():
    """A ray crossing a slab of density s over [a, b] of red: opacity 1 - exp(-s (b - a) |d|), on white."""
    samples = 1001
    t = torch.linspace(rendering.NEAR, rendering.FAR, samples, dtype=torch.float64)
    d_norm = 1.5
    delta = torch.cat([t[1:] - t[:-1], t.new_tensor([1e10])]) * d_norm
    a, b, s = 1.0, 1.4, 2.0
    inside = (t >= a) & (t < b)      # sample i stands for [t_i, t_i+1)
    density = torch.where(inside, s, 0.0)
    rgb = torch.zeros(samples, 3, dtype=torch.float64)
    rgb[:, 0] = 1
    pixel, acc = rendering.composite(density, rgb, delta)
    width = float((t[1] - t[0]) * inside.sum())           # the slab as the samples see it (~0.4)
    expected = 1 - math.exp(-s * width * d_norm)
    assert abs(width - (b - a)) < 2e-3
    assert acc.item() == pytest.approx(expected, abs=1e-7)       # the 1e-10 guard per sample
    assert pixel.tolist() == pytest.approx([1.0, 1 - expected, 1 - expected], abs=1e-7)   # red over white


def test_an_empty_field_renders_pure_white():
    """Raw density outputs far below zero: elu(x, 0.1) + 0.1 = 0, nothing absorbs, the background shows."""
    density, rgb = rendering.activate(torch.cat([torch.rand(4, 32, 3), torch.full((4, 32, 1), -1e4)], -1))
    assert density.abs().max().item() < 1e-6
    _, delta = rendering.sample_points(torch.tensor([[0.0, 0, -1.3, 0, 0, 1]]).expand(4, 6))
    pixel, acc = rendering.composite(density, rgb, delta)
    assert torch.allclose(pixel, torch.ones(4, 3), atol=1e-5) and acc.max().item() < 1e-5


def test_a_camera_sees_a_known_point_at_the_expected_pixel():
    """OpenCV camera-to-world: a camera at (0, 0, 2) looking at the origin puts the origin at the image
    centre and a point up and to its right where the pinhole says (from +z, world +x is camera-right)."""
    pose = rendering.look_at(torch.tensor([0.0, 0.0, 2.0]))
    side, focal = 32, 40.0
    ray = rendering.rays(pose, focal, side)                          # (side^2, 6)
    # Through pixel (row v, column u): the point 2 units along the ray's axis of depth.
    def pixel_of(p):
        cam = torch.linalg.inv(pose.double()) @ torch.tensor([*p, 1.0], dtype=torch.float64)
        return cam[0] / cam[2] * focal + side / 2, cam[1] / cam[2] * focal + side / 2
    u, v = pixel_of([0.0, 0.0, 0.0])
    assert (u.item(), v.item()) == (16.0, 16.0)
    u, v = pixel_of([0.225, 0.125, 0.0])         # image-right is world +x; image-down is world -y
    assert (u.item(), v.item()) == pytest.approx((20.5, 13.5))      # the centre of pixel (row 13, column 20)
    o, d = ray[13 * side + 20, :3].double(), ray[13 * side + 20, 3:].double()
    point = torch.tensor([0.225, 0.125, 0.0], dtype=torch.float64)
    assert torch.allclose(o + 2 * d, point, atol=1e-6)                # depth 2 along the axis: the point
    # Rays' depth coordinate: direction's component along the camera axis is 1 for every pixel.
    axis = pose[:3, 2].float()
    assert torch.allclose(ray[:, 3:] @ axis, torch.ones(side * side), atol=1e-6)


def test_the_embedded_cars_hit_their_boxes_at_the_analytic_depth_and_are_seeded():
    f = np.array([1.0, 0.2, 0.0, 0.12, 0.1, 1, 0])
    body = synthetic.primitives(f)[0]
    top = body[1][1] + body[2][1]                                    # the body's roof height
    ray = torch.tensor([[0.0, 1.0, 0.3, 0.0, -1.0, 0.0]])             # straight down onto the body, behind the cabin
    cabin = synthetic.primitives(f)[1]
    assert abs(0.3 - cabin[1][2]) > cabin[2][2]                      # misses the cabin
    t, normal = synthetic._box(ray[:, :3].double(), ray[:, 3:].double(), body[1], body[2])
    assert t.item() == pytest.approx(1.0 - top) and normal.tolist() == [[0.0, 1.0, 0.0]]
    colour = synthetic.render(f, ray)[0]
    shade = 0.3 + 0.6 * synthetic.KEY[1] + 0.25 * max(0.0, synthetic.FILL[1])
    assert colour == pytest.approx(np.clip(synthetic.PAINTS[1] * shade, 0, 1))
    assert synthetic.render(f, torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, -1.0]]))[0].tolist() == [1.0, 1.0, 1.0]
    m = NerfModality(8, views=2)
    a, fa = m.generate(3, seed=5)
    b, fb = m.generate(3, seed=5)
    assert np.array_equal(a["rgb"], b["rgb"]) and np.array_equal(fa, fb)
    assert a["rgb"].shape == (3, 2 + HELD_OUT, 8, 8, 3)
    # The held-out cameras are the pictures' cameras, the same for every scene.
    assert np.array_equal(a["pose"][0, -HELD_OUT:], a["pose"][2, -HELD_OUT:])
    assert torch.allclose(m.evaluation_points(a[:1])[0][0], m.coordinates(), atol=1e-6)


def write_scene(folder, views=6, side=8, focal=10.0, broken=None):
    """A tiny SRN scene folder: RGBA views whose colour encodes their index."""
    from PIL import Image

    (folder / "rgb").mkdir(parents=True)
    (folder / "pose").mkdir()
    (folder / "intrinsics.txt").write_text(f"{focal} {side / 2} {side / 2} 0.\n0. 0. 0.\n1.\n{side} {side}\n")
    for i in range(views):
        rgba = np.zeros((side, side, 4), np.uint8)
        rgba[..., 0] = 20 * i
        rgba[: side // 2, :, 3] = 255                                  # top half opaque, bottom transparent
        Image.fromarray(rgba).save(folder / "rgb" / f"{i:06d}.png")
        pose = rendering.orbit(30 * i, 10, 1.3).numpy()
        (folder / "pose" / f"{i:06d}.txt").write_text(" ".join(f"{v:.8f}" for v in pose.ravel()))
    if broken == "pose_missing":
        (folder / "pose" / "000002.txt").unlink()
    if broken == "pose_3x3":
        (folder / "pose" / "000002.txt").write_text("1 0 0 0 1 0 0 0 1")
    if broken == "intrinsics":
        (folder / "intrinsics.txt").write_text("focal\n")


def test_the_srn_reader_on_a_hand_written_scene(tmp_path):
    write_scene(tmp_path / "cars_train" / "a", views=10)
    write_scene(tmp_path / "cars_train" / "b", views=10)
    views, poses, focal = srn.read_scene(tmp_path / "cars_train" / "a", side=8, fit=3, held_out=HELD_OUT)
    keep, held = srn.pick(10, 3, HELD_OUT)
    assert held == [2, 4, 5, 7] and keep == [0, 3, 9]
    assert [int(v[0, 0, 0]) for v in views] == [20 * i for i in keep + held]     # fit views first, held-out last
    assert views[0, -1, 0].tolist() == [255, 255, 255]                              # transparent -> white
    assert focal == 10.0 and srn.read_scene(tmp_path / "cars_train" / "a", 4, 3, HELD_OUT)[2] == 5.0  # px at 8, at 4
    assert np.allclose(poses[1], rendering.orbit(90, 10, 1.3).numpy(), atol=1e-7)
    for broken, says in (("pose_missing", "000002.txt: missing"), ("pose_3x3", "must be 16 finite numbers"),
                         ("intrinsics", "intrinsics.txt: not SRN intrinsics")):
        write_scene(tmp_path / broken, views=6, broken=broken)
        with pytest.raises(DataError, match=says):
            srn.read_scene(tmp_path / broken, 8, 2, HELD_OUT)


def tiny_autodecoder(seed=0):
    torch.manual_seed(seed)
    m = NerfModality(8, views=6)
    scenes, _ = m.generate(10, seed=1)
    model = LayersOfExperts(3, 4, 2, 4, 32, 8, 30.0)
    return m, scenes, model


def test_auto_decoding_learns_and_a_new_scene_fitted_with_frozen_weights_beats_the_mean_latent():
    m, scenes, model = tiny_autodecoder()
    train, test = scenes[:8], scenes[8:]
    g = torch.Generator().manual_seed(0)
    table = LatentTable(len(train), 2, 8, 0.01, g)
    cfg = FitLoE()
    field = m.field(model)
    opt = torch.optim.AdamW([*model.param_groups(1e-3), {"params": [table.latents], "lr": 1e-2}], lr=1e-3,
                            weight_decay=cfg.weight_decay)
    losses = []
    for step in range(150):
        idx = torch.randint(len(train), (4,), generator=g)
        coords, targets = m.sample_points(train[idx.numpy()], 128, g)
        loss = per_instance_mse(field(coords, table.latents[idx]), targets).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    start = table.latents.detach().mean(0)
    weights = [p.detach().clone() for p in model.parameters()]
    latents, fitted = fit_latents(model, m, test, start, 40, 0.05, 8, 256, progress=False)
    assert all(torch.equal(w, p) for w, p in zip(weights, model.parameters()))     # frozen
    mean = reconstruct(field, m, test, start.expand(len(test), *start.shape))
    assert np.all(fitted["psnr"] > mean["psnr"])                                   # held-out views, per scene


def test_the_fit_views_never_include_the_held_out_ones():
    m, scenes, _ = tiny_autodecoder()
    coords, targets = m.sample_points(scenes[:2], None, torch.Generator())
    held, _ = m.evaluation_points(scenes[:2])
    assert coords.shape == (2, 6 * 64, 6) and targets.shape == (2, 6 * 64, 3)
    fit_origins = {tuple(np.round(o, 5)) for o in coords[0, :, :3].numpy()}
    held_origins = {tuple(np.round(o, 5)) for o in held[0, :, :3].numpy()}
    assert len(fit_origins) == 6 and len(held_origins) == HELD_OUT and not fit_origins & held_origins


def test_prepare_reads_an_srn_root_and_names_a_bad_file(tmp_path):
    from pipeline import config, datasets

    for split, names in (("cars_train", "abc"), ("cars_test", "de")):
        for n in names:
            write_scene(tmp_path / split / n, views=8)
    raw = {"dataset": {"modality": "nerf", "source": "srn", "path": str(tmp_path), "resolution": 8, "views": 3}}
    data = datasets.prepare(config.from_dict(raw))
    assert (len(data.train), len(data.test)) == (3, 2) and data.train["rgb"].shape == (3, 3 + HELD_OUT, 8, 8, 3)
    assert data.modality.focal == 10.0 and data.modality.radius == pytest.approx(1.3, abs=1e-6)
    write_scene(tmp_path / "cars_test" / "f", views=8, broken="pose_missing")
    with pytest.raises(DataError, match=r"cars_test/f/pose/000002.txt: missing"):
        datasets.prepare(config.from_dict(raw))
    raw["dataset"]["folder"] = {"skip_corrupt": True}
    data = datasets.prepare(config.from_dict(raw))
    assert len(data.test) == 2 and data.info["skipped"] == ["cars_test/f"]
