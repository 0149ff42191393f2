"""The radiance-field plug-in: rendering with exact answers, the camera convention, the SRN reader,
the embedded cars, and auto-decoding."""
import itertools
import math
import shutil

import numpy as np
import pytest
import torch

from pipeline.autodecode import LatentTable, fit_latents
from pipeline.config import FitLoE
from pipeline.errors import DataError
from pipeline.loe import LayersOfExperts
from pipeline.meta import per_instance_mse, reconstruct
from pipeline.modalities.nerf import rendering, srn, synthetic
from pipeline.modalities.nerf.modality import HELD_OUT, RADIUS, NerfModality


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


def test_raw_colour_passes_the_fields_rgb_through_and_the_setting_travels_with_the_data():
    """dataset.nerf.colour raw (mNIF's rgb_activation no_use): the composite sees the field's RGB as it is."""
    from pipeline import config
    from pipeline.datasets import prepare
    from pipeline.modalities.nerf.modality import NerfModality

    out = torch.tensor([[0.3, -0.2, 1.4, 5.0]])
    _, raw_rgb = rendering.activate(out, "raw")
    _, squashed = rendering.activate(out, "sigmoid")
    assert torch.equal(rendering.activate(out)[1], raw_rgb)      # the default, as the config's
    assert torch.equal(raw_rgb, out[:, :3]) and torch.allclose(squashed, torch.sigmoid(out[:, :3]))
    from pipeline.loe import LayersOfExperts

    m = NerfModality(8, views=2, colour="raw")
    loe = LayersOfExperts(d_in=3, d_out=4, layers=2, experts=2, width=8, latent_dim=4, w0=30.0)
    assert m.construction_args()["colour"] == "raw" and m.field(loe).colour == "raw"
    cfg = config.from_dict({"dataset": {"modality": "nerf", "resolution": 8, "views": 2, "nerf": {"colour": "raw"},
                                        "synthetic": {"train": 2, "test": 2}}})
    assert prepare(cfg).modality.colour == "raw"
    with pytest.raises(config.ConfigError, match="dataset.nerf.colour: must be one of 'sigmoid', 'raw'"):
        config.from_dict({"dataset": {"nerf": {"colour": "tanh"}}})


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
    corners = [np.linalg.norm(c + s * np.array(sign), axis=-1)                    # every car inside radius 0.5:
               for f in itertools.product(*[(lo, hi) if kind == "continuous" else (0, lo - 1)   # beyond NEAR
                                            for kind, lo, hi in synthetic.FACTORS.values()])
               for _, c, s, _ in synthetic.primitives(np.array(f, float))
               for sign in itertools.product((-1, 1), repeat=3)]
    assert max(corners) <= RADIUS - rendering.NEAR == pytest.approx(0.5)
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


def write_scene(folder, views=6, side=8, focal=10.0, broken=None, radius=1.3, up=rendering.Y_UP):
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
        pose = rendering.orbit(30 * i, 10, radius, up=up).numpy()
        (folder / "pose" / f"{i:06d}.txt").write_text(" ".join(f"{v:.8f}" for v in pose.ravel()))
    if broken == "pose_missing":
        (folder / "pose" / "000002.txt").unlink()
    if broken == "pose_3x3":
        (folder / "pose" / "000002.txt").write_text("1 0 0 0 1 0 0 0 1")
    if broken == "intrinsics":
        (folder / "intrinsics.txt").write_text("focal\n")
    if broken == "one_line":
        (folder / "intrinsics.txt").write_text(f"{focal} {side / 2} {side / 2} 0.\n")
    if broken == "off_centre":
        (folder / "intrinsics.txt").write_text(f"{focal} {side / 2 + 2} {side / 2} 0.\n{side} {side}\n")
    if broken == "size":
        (folder / "intrinsics.txt").write_text(f"{2 * focal} {side} {side} 0.\n{2 * side} {2 * side}\n")
    if broken == "scaled":   # a 4x4 whose 3x3 part is twice a rotation: rays would be twice as long
        pose = rendering.orbit(60, 10, 1.3).numpy()
        pose[:3, :3] *= 2
        (folder / "pose" / "000002.txt").write_text(" ".join(f"{v:.8f}" for v in pose.ravel()))
    if broken == "bomb":   # a view whose header claims 400 Mpx (over PIL's decompression-bomb limit)
        from test_robustness import png_claiming

        (folder / "rgb" / "000002.png").write_bytes(png_claiming(20000, 20000))
    if broken in ("nan_focal", "nan_centre", "inf_focal", "inf_size", "latin1"):
        f, c, size = {"nan_focal": ("nan", side / 2, side), "nan_centre": (focal, "nan", side),
                      "inf_focal": ("inf", side / 2, side), "inf_size": (focal, side / 2, "inf"),
                      "latin1": (focal, side / 2, side)}[broken]
        text = f"{f} {c} {side / 2} 0.\n{size} {size}\n".encode() + (b"\xe9" if broken == "latin1" else b"")
        (folder / "intrinsics.txt").write_bytes(text)


def test_the_srn_reader_on_a_hand_written_scene(tmp_path):
    write_scene(tmp_path / "cars_train" / "a", views=10)
    write_scene(tmp_path / "cars_train" / "b", views=10)
    views, poses, focal = srn.read_scene(tmp_path / "cars_train" / "a", side=8, fit=3, held_out=HELD_OUT)
    keep, held = srn.pick(10, 3, HELD_OUT)
    assert held == [1, 3, 6, 8] and keep == [0, 4, 9]
    assert [int(v[0, 0, 0]) for v in views] == [20 * i for i in keep + held]     # fit views first, held-out last
    assert views[0, -1, 0].tolist() == [255, 255, 255]                              # transparent -> white
    assert focal == 10.0 and srn.read_scene(tmp_path / "cars_train" / "a", 4, 3, HELD_OUT)[2] == 5.0  # px at 8, at 4
    assert np.allclose(poses[1], rendering.orbit(120, 10, 1.3).numpy(), atol=1e-7)          # view 4
    for broken, says in (("pose_missing", "000002.txt: missing"), ("pose_3x3", "must be 16 finite numbers"),
                         ("intrinsics", "intrinsics.txt: not SRN intrinsics"),
                         ("one_line", "intrinsics.txt: not SRN intrinsics"),
                         ("off_centre", r"principal point \(6, 4\) is not the centre"),
                         ("size", r"rgb/\d+.png: 8x8 pixels, but intrinsics.txt says 16x16"),
                         # NaN passes every comparison (f <= 0 is False), so finiteness is checked first
                         ("nan_focal", "intrinsics.txt: focal and principal point must be finite numbers"),
                         ("nan_centre", "intrinsics.txt: focal and principal point must be finite numbers"),
                         ("inf_focal", "intrinsics.txt: focal and principal point must be finite numbers"),
                         ("inf_size", "intrinsics.txt: not SRN intrinsics"),
                         ("latin1", "intrinsics.txt: not SRN intrinsics"),
                         ("scaled", r"000002.txt: the pose's 3x3 rotation is not a rotation"),
                         ("bomb", r"000002.png: not a readable image \(DecompressionBombError\)")):
        write_scene(tmp_path / broken, views=6, broken=broken)
        with pytest.raises(DataError, match=says):
            srn.read_scene(tmp_path / broken, 8, 2, HELD_OUT)


def test_a_users_own_scene_outside_the_runs_depths_or_frame_is_refused_naming_it(tmp_path):
    """control's nerf:FOLDER is checked as prepare checks a dataset: cameras 4 units away (the run renders depths
    0.8-1.8) or with z up (the run's y) would fit a latent of empty space, silently."""
    m = NerfModality(8, views=2)
    write_scene(tmp_path / "ok")
    assert m.read_file(tmp_path / "ok")["rgb"].shape[0] == 2 + HELD_OUT
    write_scene(tmp_path / "far", radius=4.0)
    with pytest.raises(DataError, match=r"far: camera 0 sees the scene centre at depth 4, outside the renderer's "
                                        r"\[0.8, 1.8\] .* not at this run's distance \(the run's scenes: about 1.3"):
        m.read_file(tmp_path / "far")
    write_scene(tmp_path / "z_up", up=(0.0, 0.0, 1.0))
    with pytest.raises(DataError, match=r"z_up: its cameras' up \(0.00, 0.00, 1.00\) is 90 degrees from this run's "
                                        r"\(dataset.nerf.up \[0.0, 1.0, 0.0\]\)"):
        m.read_file(tmp_path / "z_up")


def test_a_16_bit_grey_srn_view_keeps_its_brightness(tmp_path):
    """PIL's convert clips 16-bit grey at 255: the view read as pure white, without a word."""
    from PIL import Image

    Image.fromarray(np.full((8, 8), 100 * 257, np.uint16)).save(tmp_path / "v.png")
    assert Image.open(tmp_path / "v.png").mode.startswith("I")
    assert np.array_equal(srn.read_view(tmp_path / "v.png", 8, 8), np.full((8, 8, 3), 100, np.uint8))


def tiny_autodecoder(seed=0):
    torch.manual_seed(seed)
    m = NerfModality(8, views=6, colour="sigmoid")
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
    assert (data.info["fit_views"], data.info["held_out_views"]) == (3, HELD_OUT)
    keep, held = srn.pick(8, 3, HELD_OUT)
    assert [int(v[0, 0, 0]) for v in data.train["rgb"][0]] == [20 * i for i in (*keep, *held)]
    # A scene with fewer views than dataset.views + 4 is refused, naming it: no other scene is cut to its count.
    write_scene(tmp_path / "cars_train" / "z", views=6)
    with pytest.raises(DataError, match=(rf"^{tmp_path / 'cars_train' / 'z'}: 6 views in rgb/; dataset.views asks for "
                                         r"3 fit views \+ 4 held out = 7 a scene; lower dataset.views, or set ")):
        datasets.prepare(config.from_dict(raw))
    write_scene(tmp_path / "cars_test" / "f", views=8, broken="pose_missing")
    raw["dataset"]["folder"] = {"skip_corrupt": True}       # ... or skipped and named, as a broken scene is
    data = datasets.prepare(config.from_dict(raw))
    assert len(data.test) == 2 and data.info["skipped"] == ["cars_train/z", "cars_test/f"]
    assert data.train["rgb"].shape == (3, 3 + HELD_OUT, 8, 8, 3) and data.info["skipped_files"] == 2
    del raw["dataset"]["folder"]
    shutil.rmtree(tmp_path / "cars_train" / "z")
    with pytest.raises(DataError, match=r"cars_test/f/pose/000002.txt: missing"):
        datasets.prepare(config.from_dict(raw))


def test_the_views_per_scene_and_derived_bounds_are_in_the_prepare_detail_file(tmp_path, monkeypatch):
    import json

    from pipeline import config
    from pipeline.stages import prepare

    for split, names in (("cars_train", "ab"), ("cars_test", "cd")):
        for n in names:
            write_scene(tmp_path / "srn" / split / n, views=8)
    cfg = config.from_dict({"dataset": {"modality": "nerf", "source": "srn", "path": str(tmp_path / "srn"),
                                        "resolution": 8, "views": 3}})
    monkeypatch.chdir(tmp_path)
    prepare.main(cfg, None, 0.0, "cpu")
    detail = json.loads((tmp_path / "metrics/detail/prepare.json").read_text())
    headline = json.loads((tmp_path / "metrics/prepare.json").read_text())
    assert (detail["fit_views"], detail["held_out_views"]) == (3, HELD_OUT) and "fit_views" not in headline
    assert detail["bounds"]["derived"] == ["near", "far", "up", "scale"] and detail["bounds"]["camera_distance"] == 1.3


def test_hidden_folders_and_sidecars_are_not_scenes_or_views(tmp_path):
    from pipeline import config, datasets

    for split, names in (("cars_train", "ab"), ("cars_test", "cd")):
        for n in names:
            write_scene(tmp_path / split / n, views=8)
    (tmp_path / "cars_train" / ".ipynb_checkpoints").mkdir()                   # not a scene
    (tmp_path / "__MACOSX" / "cars_train").mkdir(parents=True)
    (tmp_path / ".cars_train").mkdir()                                          # not a 2nd *train folder
    (tmp_path / "cars_train" / "a" / "rgb" / "._000003.png").write_bytes(b"\x00\x05\x16\x07")   # not a view
    raw = {"dataset": {"modality": "nerf", "source": "srn", "path": str(tmp_path), "resolution": 8, "views": 3}}
    data = datasets.prepare(config.from_dict(raw))
    assert (len(data.train), len(data.test)) == (2, 2) and data.info["skipped"] == []
    keep, held = srn.pick(8, 3, HELD_OUT)
    assert [int(v[0, 0, 0]) for v in data.train["rgb"][0]] == [20 * i for i in (*keep, *held)]


def test_two_train_folders_in_one_root_are_refused_naming_both(tmp_path):
    from pipeline import config, datasets

    for split in ("cars_train", "chairs_train", "cars_test"):
        write_scene(tmp_path / split / "a", views=8)
    raw = {"dataset": {"modality": "nerf", "source": "srn", "path": str(tmp_path), "resolution": 8, "views": 3}}
    with pytest.raises(DataError, match=(rf"^{tmp_path}: 2 folders whose names end in 'train' \(cars_train, "
                                         r"chairs_train\); point dataset.path at a root holding one \*train and one "
                                         r"\*test folder$")):
        datasets.prepare(config.from_dict(raw))


def test_auto_decoding_is_generic_and_resumes_the_same_table(tmp_path):
    """fit_loe.method autodecode on images: the loss falls, and a run interrupted after its step-20
    checkpoint and run again ends with the same table and weights as one that ran straight through."""
    from pipeline.autodecode import AutoDecoder
    from pipeline.modalities.image.modality import ImageModality
    from pipeline.training import Checkpointer, StepLog

    m = ImageModality(8)
    images, _ = m.generate(6, seed=0)
    cfg = FitLoE(steps=60, batch_size=3, lr=1e-2, latent_lr=1e-1, init_std=0.01, warmup_steps=2,
                 points_per_step=32, log_every=5, method="autodecode")

    class Interrupted(Exception):
        pass

    def run(folder, stop_at=None):
        torch.manual_seed(0)
        model = LayersOfExperts(2, 3, 2, 4, 16, 4, 30.0)
        calls = {"n": 0}
        draw = m.sample_points

        def sample_points(*args, **kwargs):       # Ctrl-C in the middle of step `stop_at`
            calls["n"] += 1
            if calls["n"] == stop_at:
                raise Interrupted
            return draw(*args, **kwargs)
        m.sample_points = sample_points
        try:
            log = StepLog(folder / "log.csv")
            table = AutoDecoder(model, m, cfg).fit(images, Checkpointer(folder / "ck.pt", "run", 20), log,
                                                   torch.Generator().manual_seed(0), progress=False)
        finally:
            del m.sample_points
        return model, table, log

    model, table, log = run(tmp_path / "straight")
    assert table.latents.shape == (6, 2, 4) and log.rows[-1]["loss"] < 0.5 * log.rows[0]["loss"]
    with pytest.raises(Interrupted):
        run(tmp_path / "resumed", stop_at=25)
    again, table2, _ = run(tmp_path / "resumed")
    assert torch.equal(table.latents, table2.latents)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    latents, metrics = fit_latents(model, m, images[:2], table.latents.detach().mean(0), 5, 0.05, 2, None,
                                   progress=False)
    assert latents.shape == (2, 2, 4) and set(metrics) == {"psnr", "ssim"}


def write_posed_scene(folder, poses, side=8, focal=10.0, views=None):
    """An SRN scene folder with the given camera-to-world poses (views: given, or flat colours)."""
    from PIL import Image

    (folder / "rgb").mkdir(parents=True)
    (folder / "pose").mkdir()
    (folder / "intrinsics.txt").write_text(f"{focal} {side / 2} {side / 2} 0.\n0. 0. 0.\n1.\n{side} {side}\n")
    for i, pose in enumerate(poses):
        view = np.full((side, side, 3), 10 * i, np.uint8) if views is None else views[i]
        Image.fromarray(view).save(folder / "rgb" / f"{i:06d}.png")
        (folder / "pose" / f"{i:06d}.txt").write_text(" ".join(f"{v:.10f}" for v in np.asarray(pose).ravel()))


Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])     # world y -> z: a Blender-style capture


def capture(root, scale=1.0, turn=np.eye(3), scenes=3, views=8):
    """SRN-layout cars_train / cars_test of cameras orbiting at 1.3 x scale, the world turned by `turn`."""
    rng = np.random.default_rng(0)
    for split in ("cars_train", "cars_test"):
        for s in range(scenes):
            poses = []
            for _ in range(views):
                p = rendering.orbit(rng.uniform(0, 360), rng.uniform(0, 40), 1.3).numpy()
                p[:3, :3], p[:3, 3] = turn @ p[:3, :3], scale * turn @ p[:3, 3]
                poses.append(p)
            write_posed_scene(root / split / f"s{s}", poses)


def nerf_cfg(root, **nerf):
    from pipeline import config

    return config.from_dict({"dataset": {"modality": "nerf", "source": "srn", "path": str(root), "resolution": 8,
                                         "views": 3, "nerf": nerf}})


def test_scene_bounds_and_up_axis_come_from_the_cameras(tmp_path):
    from pipeline import datasets

    capture(tmp_path / "srn")
    srn_like = datasets.prepare(nerf_cfg(tmp_path / "srn"))
    m = srn_like.modality
    assert (m.near, m.far) == pytest.approx((0.8, 1.8), abs=1e-3)     # cameras 1.3 away: mNIF's SRN bounds
    assert m.up == pytest.approx((0.0, 1.0, 0.0), abs=1e-3)
    capture(tmp_path / "blender", scale=4 / 1.3, turn=Z_UP)              # 4 units away, z up
    blender = datasets.prepare(nerf_cfg(tmp_path / "blender")).modality
    assert (blender.near, blender.far) == pytest.approx((0.8 * 4 / 1.3, 1.8 * 4 / 1.3), rel=1e-3)
    assert blender.up == pytest.approx((0.0, 0.0, 1.0), abs=1e-3)
    assert blender.radius == pytest.approx(4.0, rel=1e-4)
    # The turntable of the z-up capture is the y-up one turned and scaled: upright, at the same relative distance.
    s, turn = 4 / 1.3, torch.from_numpy(Z_UP).float()
    ours, theirs = blender.viewpoints(6), m.viewpoints(6)
    assert torch.allclose(ours[:, :3], s * theirs[:, :3] @ turn.T, atol=1e-4)
    assert torch.allclose(ours[:, 3:], theirs[:, 3:] @ turn.T, atol=1e-5)
    # ... and the renderer samples the same points of the object: the same picture from the same field.
    p1, d1 = rendering.sample_points(theirs[:10], near=m.near, far=m.far)
    p2, d2 = rendering.sample_points(ours[:10], near=blender.near, far=blender.far)
    assert torch.allclose(p2, s * p1 @ turn.T, atol=1e-3) and torch.allclose(d2[:, :-1], s * d1[:, :-1], rtol=1e-3)
    # The field reads both in SRN's frame: the same points, the same pixels from the same LoE and latents.
    assert (m.scale, blender.scale) == (1.0, pytest.approx(4 / 1.3, rel=1e-3))
    model = LayersOfExperts(3, 4, 2, 2, 8, 4, 30.0)
    field, latents = blender.field(model), torch.randn(2, 2, 4)
    assert (field.near, field.far) == (blender.near, blender.far)
    assert torch.allclose(field(ours[:50], latents), m.field(model)(theirs[:50], latents), atol=2e-4)
    # The header keeps them: a stage loading the prepared data renders with the same bounds and frame.
    again = NerfModality(**blender.construction_args())
    assert (again.near, again.far, again.up, again.scale) == (blender.near, blender.far, blender.up, blender.scale)


def test_a_capture_4_units_away_with_z_up_reconstructs_as_well_as_the_same_scene_at_srns_radius(tmp_path):
    """The issue's check: the embedded cars written as SRN folders twice, as rendered (1.3 away, y up) and with
    the world turned z up and scaled to 4 units; the same auto-decoding on both gives held-out PSNRs within
    1 dB (they agree to float rounding: the field sees the same points). With `dataset.nerf.scale` 1 (points
    3x larger, the earlier frame) the same run reaches 9.78 dB; at 600 steps 14.71 against 10.51."""
    from pipeline import datasets

    m = NerfModality(8, views=6)
    scenes, _ = m.generate(6, seed=1)
    for root, s, turn in (("srn", 1.0, np.eye(3)), ("blender", 4 / 1.3, Z_UP)):
        for i, scene in enumerate(scenes):
            poses = scene["pose"].astype(np.float64).copy()
            poses[:, :3, :3], poses[:, :3, 3] = turn @ poses[:, :3, :3], s * poses[:, :3, 3] @ turn.T
            write_posed_scene(tmp_path / root / ("cars_train" if i < 4 else "cars_test") / f"s{i}", poses,
                              focal=m.focal, views=scene["rgb"])

    def held_out_psnr(root, **nerf):
        data = datasets.prepare(nerf_cfg(tmp_path / root, **nerf))
        torch.manual_seed(0)
        model, g = LayersOfExperts(3, 4, 2, 4, 32, 8, 30.0), torch.Generator().manual_seed(0)
        table = LatentTable(len(data.train), 2, 8, 0.01, g)
        field = data.modality.field(model)
        opt = torch.optim.Adam([*model.param_groups(1e-3), {"params": [table.latents], "lr": 1e-2}], lr=1e-3)
        for _ in range(300):
            idx = torch.randint(len(data.train), (4,), generator=g)
            coords, targets = data.modality.sample_points(data.train[idx.numpy()], 128, g)
            loss = per_instance_mse(field(coords, table.latents[idx]), targets).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return reconstruct(field, data.modality, data.train, table.latents.detach())["psnr"].mean()

    srn_psnr, blender_psnr = held_out_psnr("srn"), held_out_psnr("blender")
    assert srn_psnr > 11 and abs(blender_psnr - srn_psnr) < 1.0        # measured: 12.78 and 12.78 dB


def test_bounds_that_no_ray_can_reach_are_refused_naming_the_scene(tmp_path):
    from pipeline import datasets

    capture(tmp_path / "blender", scale=4 / 1.3, turn=Z_UP)
    with pytest.raises(DataError, match=r"cars_train/s0: camera \d+ sees the scene centre at depth 4[.0-9]*, "
                                        r"outside the renderer's \[0\.8, 1\.8\]"):
        datasets.prepare(nerf_cfg(tmp_path / "blender", near=0.8, far=1.8))
    given = datasets.prepare(nerf_cfg(tmp_path / "blender", near=2.0, far=6.0, up=[0, 0, 2])).modality
    assert (given.near, given.far, given.up) == (2.0, 6.0, (0.0, 0.0, 1.0))


def test_generated_scenes_are_rendered_at_the_test_scenes_own_held_out_cameras(monkeypatch):
    """mNIF's SRN protocol: generated scene i is seen from test scene (i mod n)'s held-out poses."""
    from pipeline import config
    from pipeline.modalities.nerf import evaluation
    from pipeline.modalities.scoring import Scoring
    from pipeline.prepared import PreparedData

    m = NerfModality(8, views=2)
    signals, _ = m.generate(3, seed=0)
    signals["pose"][1, -HELD_OUT:, :3, 3] *= 1.5                 # scene 1's cameras further out than scene 0's
    data = PreparedData(m, signals[:1], signals, None, None, [], [], {})
    seen = []

    class Field:
        def render(self, coords, latents, batch_size=256):
            seen.append(coords)
            return torch.zeros(len(latents), coords.shape[-2], 3)

    monkeypatch.setattr(evaluation.fid, "inception_features", lambda images, **_: np.random.default_rng(
        len(images)).normal(size=(len(images), 4)))
    cfg = config.from_dict({"dataset": {"modality": "nerf", "resolution": 8, "views": 2},
                            "evaluate": {"fid_samples": 5, "kid_subsets": 2, "kid_subset_size": 4}})
    reference = {"features": np.random.default_rng(0).normal(size=(12, 4)),
                 "train_features": np.random.default_rng(1).normal(size=(12, 4))}
    s = Scoring(cfg, torch.device("cpu"), data, reference, Field(), torch.zeros(8, 4 * 64, 3),
                m.targets(signals), torch.zeros(3, 2, 4), None, [], torch.zeros(8, 2, 4))
    out = evaluation.scores(s)
    test_rays, _ = m.evaluation_points(signals)
    assert torch.equal(seen[-1], test_rays[torch.tensor([0, 1, 2, 0, 1])])
    assert "test scene (i mod test scenes)'s held-out cameras" in out["fid_protocol"]["poses"]
