"""3-D shapes: storage, the embedded generator, real-format loaders, rendering and meshes."""
import h5py
import numpy as np
import pytest
import torch
import trimesh

from conftest import REALDATA
from pipeline import config, datasets
from pipeline.modalities.shape import rendering
from pipeline.modalities.shape import synthetic as synthetic_shapes
from pipeline.modalities.shape import voxels
from pipeline.datasets import DataError
from pipeline.modalities.shape.modality import ShapeModality
from pipeline.modalities.shape.rendering import voxel_centres

BINVOX = REALDATA / "binvox"
RECGAN = REALDATA / "voxels_3drecgan"
needs_realdata = pytest.mark.skipif(not REALDATA.exists(), reason=f"{REALDATA} (real sample files) not present")


def sphere_grid(side: int, radius: float) -> np.ndarray:
    return np.linalg.norm(rendering.voxel_centres(side), axis=-1) <= radius


def test_pack_roundtrip_and_size():
    grids = np.random.default_rng(0).random((3, 16, 16, 16)) > 0.7
    packed = voxels.pack(grids)
    assert packed.shape == (3, 16 ** 3 // 8) and packed.dtype == np.uint8
    assert np.array_equal(voxels.unpack(packed, 16), grids)


def test_resample_keeps_a_sphere():
    grid = sphere_grid(64, 0.6)
    down = voxels.resample(grid, 32)
    assert down.shape == (32,) * 3
    # Halving keeps each 2x2x2 block holding an occupied voxel (IM-NET's np.max): exactly the blocks' max.
    assert np.array_equal(down, grid.reshape(32, 2, 32, 2, 32, 2).any(axis=(1, 3, 5)))
    assert abs(down.mean() - sphere_grid(32, 0.6).mean()) < 0.03
    assert np.array_equal(voxels.resample(down, 32), down)
    up = voxels.resample(down, 64)                               # enlarging: trilinear, >= 0.5
    assert up.shape == (64,) * 3 and abs(up.mean() - down.mean()) < 0.01


def test_shrinking_keeps_a_part_one_voxel_thick():
    grid = np.zeros((64,) * 3, bool)
    grid[28:36, 28:36, 28:36] = True                             # an 8^3 seat
    grid[10:50, 20, 20] = True                                   # a leg one voxel thick, 40 long
    down = voxels.resample(grid, 32)
    assert down[5:25, 10, 10].all() and down.sum() == 4 ** 3 + 20


def test_near_surface_band_of_a_cube():
    grid = np.zeros((1, 8, 8, 8), bool)
    grid[0, 2:6, 2:6, 2:6] = True                      # a 4^3 cube
    band = voxels.near_surface(torch.from_numpy(grid))[0].numpy()
    # inside: the 4^3 cube minus its 2^3 core; outside: the 6^3 shell around it
    assert band.sum() == (64 - 8) + (216 - 64)


def test_synthetic_shapes_are_deterministic_labelled_and_varied():
    a, fa = synthetic_shapes.generate(25, 32, seed=3, progress=False)
    b, fb = synthetic_shapes.generate(25, 32, seed=3, progress=False)
    assert np.array_equal(a, b) and np.array_equal(fa, fb)
    assert a.shape == (25, 32 ** 3 // 8) and fa.shape == (25, len(synthetic_shapes.FACTORS))
    grids = voxels.unpack(a, 32)
    fill = grids.reshape(25, -1).mean(1)
    assert (fill > 0.001).all() and (fill < 0.3).all()           # every shape has volume, none fills the box
    for i, (kind, lo, hi) in enumerate(synthetic_shapes.FACTORS.values()):
        assert (fa[:, i] >= lo).all() and (fa[:, i] <= hi).all()
    assert len(np.unique(fa[:, 0])) == len(synthetic_shapes.CATEGORIES)


@pytest.mark.parametrize("category", range(len(synthetic_shapes.CATEGORIES)))
def test_each_part_factor_changes_the_shape(category):
    base = {name: lo for name, (_, lo, _) in synthetic_shapes.FACTORS.items()}
    base["category"] = category
    ref = synthetic_shapes.voxelise(base, 32)
    for name in ("support", "style", "width", "height", "thickness"):
        kind, _, hi = synthetic_shapes.FACTORS[name]
        moved = dict(base, **{name: hi - 1 if kind == "categorical" else hi})
        assert (synthetic_shapes.voxelise(moved, 32) != ref).sum() > 0, (synthetic_shapes.CATEGORIES[category], name)


def test_synthetic_shapes_at_the_paper_resolution():
    packed, _ = synthetic_shapes.generate(3, 64, seed=0, progress=False)
    grids = voxels.unpack(packed, 64)
    assert packed.shape == (3, 64 ** 3 // 8) and grids.any(axis=(1, 2, 3)).all()


@needs_realdata
def test_binvox_files_read_with_their_occupancy():
    assert voxels.read_binvox(BINVOX / "chair.binvox", 32).sum() == 1002
    assert voxels.read_binvox(BINVOX / "8a85.binvox", 32).sum() == 14382
    assert voxels.read_binvox(BINVOX / "chair.binvox", 64).sum() == pytest.approx(1002 * 8, rel=0.25)


@needs_realdata
def test_3drecgan_index_grids_read_with_their_occupancy():
    path = sorted(RECGAN.glob("*.txt"))[0]                       # ..._045_062_047.txt: a 45x62x47 box
    lines = len(path.read_text().split("\n")) - 1
    grid = voxels.read_index_text(path, 62)                      # the box centred in a 62^3 cube
    assert grid.sum() == lines
    # Halved by IM-NET's any-occupied rule: a chair's thin parts keep about a quarter of their voxels
    # (area-like), not the eighth a solid would.
    assert voxels.read_index_text(path, 32).sum() == pytest.approx(lines / 4, rel=0.2)


@needs_realdata
@pytest.mark.parametrize("folder, count", [(BINVOX, 4), (RECGAN, 64)])
def test_folder_of_real_voxel_files(folder, count, tmp_path):
    for f in folder.iterdir():   # each sample holds 2 objects; a split needs 2 objects each side: 2 copies of each
        for c in range(2):       # (a 3D-RecGAN copy renamed as a view of another object: `test_3d__0chair_0890_...`)
            name = f.name.replace("_3d__", f"_3d__{c}") if "_3d__" in f.name else f"{c}_{f.name}"
            (tmp_path / name).write_bytes(f.read_bytes())
    cfg = config.from_dict({"dataset": {"modality": "shape", "source": "folder", "path": str(tmp_path),
                                        "resolution": 32, "folder": {"train_fraction": 0.5}}})
    data = datasets.prepare(cfg)
    assert len(data.train) + len(data.test) == count and data.train.shape[1] == 32 ** 3 // 8
    assert isinstance(data.modality, ShapeModality)
    assert voxels.unpack(data.train, 32).any(axis=(1, 2, 3)).all()


def write_meshes(folder):
    trimesh.creation.icosphere(subdivisions=3, radius=2.0).export(folder / "a_sphere.ply")
    trimesh.creation.box(extents=[2, 1, 1]).export(folder / "b_box.obj")
    trimesh.creation.cylinder(radius=1, height=2, sections=32).export(folder / "c_cylinder.off")
    trimesh.creation.capsule(height=1, radius=0.5).export(folder / "d_capsule.stl")


def test_folder_of_meshes_is_voxelised_solid(tmp_path):
    write_meshes(tmp_path)
    cfg = config.from_dict({"dataset": {"modality": "shape", "source": "folder", "path": str(tmp_path),
                                        "resolution": 24, "split": "sorted", "folder": {"train_count": 2}}})
    data = datasets.prepare(cfg)
    grids = voxels.unpack(np.concatenate([data.train, data.test]), 24)       # in file-name order
    fill = grids.reshape(4, -1).mean(1)
    # Normalised so the longest side spans 2 - 2/R: a sphere fills pi/6 of its cube, scaled.
    assert fill[0] == pytest.approx(np.pi / 6 * (1 - 1 / 24) ** 3, rel=0.06)
    assert fill[1] == pytest.approx(0.25, rel=0.2)                # box 2x1x1 -> a quarter of the cube
    assert grids[:, 12, 12, 12].all()                             # solid, not just a shell


def test_bad_meshes_get_a_clear_error_or_are_skipped(tmp_path):
    write_meshes(tmp_path)
    open_box = trimesh.creation.box(extents=[1, 1, 1])
    open_box.update_faces(np.arange(len(open_box.faces)) > 1)      # drop one side: not watertight
    open_box.export(tmp_path / "e_open.obj")
    (tmp_path / "f_empty.obj").write_text("# no faces\n")
    raw = {"dataset": {"modality": "shape", "source": "folder", "path": str(tmp_path), "resolution": 16}}
    with pytest.raises(DataError, match="e_open.obj: mesh is not watertight"):
        datasets.prepare(config.from_dict(raw))
    raw["dataset"]["folder"] = {"skip_corrupt": True}
    data = datasets.prepare(config.from_dict(raw))
    assert data.info["skipped_files"] == 2 and data.info["skipped"] == ["e_open.obj", "f_empty.obj"]
    assert len(data.train) + len(data.test) == 4


def write_imnet(folder, n_train=5, n_test=3):
    grids, _ = synthetic_shapes.generate(n_train + n_test, 64, seed=1, progress=False)
    grids = voxels.unpack(grids, 64)
    for name, part in (("all_vox256_img_train.hdf5", grids[:n_train]), ("all_vox256_img_test.hdf5", grids[n_train:])):
        with h5py.File(folder / name, "w") as f:
            f.create_dataset("voxels", data=part[..., None].astype(np.uint8), chunks=(1, 64, 64, 64, 1))
            f.create_dataset("points_64", data=np.zeros((len(part), 16, 3), np.uint8))
            f.create_dataset("values_64", data=np.zeros((len(part), 16, 1), np.uint8))
    return grids


def test_imnet_hdf5_release(tmp_path):
    grids = write_imnet(tmp_path)
    raw = {"dataset": {"modality": "shape", "source": "imnet", "path": str(tmp_path), "resolution": 32}}
    data = datasets.prepare(config.from_dict(raw))
    assert data.train.shape == (5, 32 ** 3 // 8) and data.test.shape == (3, 32 ** 3 // 8)
    expected = np.stack([voxels.resample(g, 32) for g in grids[5:]])
    assert np.array_equal(voxels.unpack(data.test, 32), expected)
    # A limit keeps rows evenly spaced through each file (IM-NET's run category by category), not the first ones.
    raw["dataset"]["resolution"] = 64
    raw["dataset"]["folder"] = {"limit": 2}
    data = datasets.prepare(config.from_dict(raw))
    assert np.array_equal(voxels.unpack(data.train, 64), grids[[0, 4]])
    assert np.array_equal(voxels.unpack(data.test, 64), grids[[5, 7]])
    raw["dataset"]["folder"] = {"limit": 3}
    assert np.array_equal(voxels.unpack(datasets.prepare(config.from_dict(raw)).train, 64), grids[[0, 2, 4]])
    assert voxels.limited(10, 4).tolist() == [0, 3, 6, 9] and voxels.limited(3, 5).tolist() == [0, 1, 2]
    assert voxels.read_imnet_points(tmp_path / "all_vox256_img_test.hdf5", 2)[0].shape == (2, 16, 3)


def test_imnet_errors_name_the_file(tmp_path):
    raw = {"dataset": {"modality": "shape", "source": "imnet", "path": str(tmp_path), "resolution": 32}}
    with pytest.raises(DataError, match=r"expected one \*train\*.hdf5"):
        datasets.prepare(config.from_dict(raw))
    for split in ("train", "test"):
        with h5py.File(tmp_path / f"x_{split}.hdf5", "w") as f:
            f.create_dataset("pixels", data=np.zeros((2, 4)))
    with pytest.raises(DataError, match=r"x_t\w+\.hdf5: no 'voxels' dataset"):
        datasets.prepare(config.from_dict(raw))


def test_config_rejects_imnet_images_and_odd_shape_grids():
    with pytest.raises(config.ConfigError, match="^dataset.source: imnet is not a source of dataset.modality image; "
                                                 "its sources: synthetic, folder$"):
        config.from_dict({"dataset": {"source": "imnet", "path": "/x"}})
    with pytest.raises(config.ConfigError, match=r"^dataset.resolution: must be a multiple of 2 for dataset.modality "
                                                 r"shape \(voxels are packed 8 to a byte\), got 31$"):
        config.from_dict({"dataset": {"modality": "shape", "resolution": 31}})


def test_training_points_come_from_the_surface_band():
    m = ShapeModality(16)
    packed = voxels.pack(sphere_grid(16, 0.6)[None].repeat(2, 0))
    band = voxels.near_surface(torch.from_numpy(voxels.unpack(packed, 16))).flatten(1)
    coords, targets = m.sample_points(packed, 300, torch.Generator().manual_seed(0), surface_fraction=1.0)
    assert coords.shape == (2, 300, 3) and targets.shape == (2, 300, 1)
    idx = ((coords + 1) * 16 / 2 - 0.5).round().long()          # back to voxel indices
    flat = (idx[..., 0] * 16 + idx[..., 1]) * 16 + idx[..., 2]
    assert band.gather(1, flat).all()
    inside = np.linalg.norm(coords.numpy(), axis=-1) <= 0.6
    assert np.array_equal(targets[..., 0].numpy() > 0, inside)   # targets are the occupancy at the points
    # fraction 0: uniform over the grid; about the sphere's share of points inside
    _, uniform = m.sample_points(packed, 4000, torch.Generator().manual_seed(0), surface_fraction=0.0)
    assert (uniform > 0).float().mean().item() == pytest.approx(sphere_grid(16, 0.6).mean(), abs=0.03)


def test_reconstruction_metrics_on_known_cases():
    m = ShapeModality(16)
    truth = m.targets(voxels.pack(sphere_grid(16, 0.6)[None]))
    empty = -torch.ones_like(truth)
    perfect = m.reconstruction_metrics(truth, truth)
    assert perfect["accuracy"][0] == 1 and perfect["iou"][0] == 1 and perfect["accuracy_near_surface"][0] == 1
    none = m.reconstruction_metrics(empty, truth)
    assert none["iou"][0] == 0
    assert none["accuracy"][0] == pytest.approx(1 - sphere_grid(16, 0.6).mean())
    band = voxels.near_surface(torch.from_numpy(sphere_grid(16, 0.6))[None])[0].numpy()
    inside_band = (band & sphere_grid(16, 0.6)).sum() / band.sum()
    assert none["accuracy_near_surface"][0] == pytest.approx(1 - inside_band)


def test_marching_cubes_surface_of_a_sphere():
    occ = sphere_grid(32, 0.7).astype(np.float32)
    points = rendering.surface_points(occ, 2048, np.random.default_rng(0))
    radius = np.linalg.norm(points, axis=1)
    assert points.shape == (2048, 3) and abs(radius.mean() - 0.7) < 0.03 and radius.std() < 0.03
    assert rendering.surface_points(np.zeros((8, 8, 8)), 10, np.random.default_rng(0)) is None
    mesh = trimesh.load(trimesh.util.wrap_as_stream(rendering.mesh_file(occ)), file_type="ply")
    assert mesh.is_watertight and mesh.volume == pytest.approx(4 / 3 * np.pi * 0.7 ** 3, rel=0.05)


def test_shaded_render_of_a_sphere():
    occ = torch.from_numpy(np.stack([sphere_grid(32, 0.5), np.zeros((32,) * 3, bool)])).float()
    pics = rendering.shade(occ, 64)
    assert pics.shape == (2, 64, 64, 3) and (pics[1] == 255).all()           # nothing: white
    drawn = (pics[0] != 255).any(-1)
    expected = np.pi * (0.5 / rendering.VIEW_EXTENT * 32) ** 2                # disc area in pixels
    assert drawn.sum() == pytest.approx(expected, rel=0.08)
    lit = pics[0][drawn].mean(-1)
    assert lit.max() - lit.min() > 80                                          # shaded, not flat


def test_modality_renders_and_writes_meshes():
    m = ShapeModality(16)
    values = m.targets(voxels.pack(sphere_grid(16, 0.6)[None]))
    assert m.to_pictures(values).shape == (1, 32, 32, 3)
    ply = m.instance_file(values[0])
    assert ply.startswith(b"ply") and trimesh.load(trimesh.util.wrap_as_stream(ply), file_type="ply").is_watertight


def test_imnet_test_points_are_read_at_cell_centres_and_scored(tmp_path):
    grids = write_imnet(tmp_path)                                      # (8, 64, 64, 64): 5 train, 3 test
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 64, (3, 100, 3))                             # voxels of each test shape
    points = (4 * idx + rng.integers(0, 4, idx.shape)).astype(np.uint8)   # any of the voxel's 4 cells per axis
    values = np.stack([grids[5 + s][tuple(idx[s].T)] for s in range(3)]).astype(np.uint8)
    with h5py.File(tmp_path / "all_vox256_img_test.hdf5", "a") as f:
        del f["points_64"], f["values_64"]
        f.create_dataset("points_64", data=points)
        f.create_dataset("values_64", data=values[..., None])
    raw = {"dataset": {"modality": "shape", "source": "imnet", "path": str(tmp_path), "resolution": 64}}
    data = datasets.prepare(config.from_dict(raw))
    assert data.extras["test_points"].shape == (3, 100, 3) and data.info["test_points"] == 100
    coords = voxels.imnet_point_coordinates(data.extras["test_points"])
    assert np.allclose(coords, (points + 0.5) / 256 * 2 - 1)           # IM-NET's (p + 0.5)/256 - 0.5, doubled
    centres = voxel_centres(64)[tuple(idx.reshape(-1, 3).T)].reshape(3, 100, 3)
    assert (np.abs(coords - centres) <= 3 / 256 + 1e-6).all()          # inside the voxel (half-width 4/256)
    # cells 1 and 2 straddle 64^3 voxel 0's centre -1 + 1/64 symmetrically
    assert voxels.imnet_point_coordinates(np.array([1, 2])).mean() == pytest.approx(-1 + 1 / 64)
    datasets.save(tmp_path / "d.npz", data, {"resolution": 64})
    assert np.array_equal(datasets.load(tmp_path / "d.npz", extras=True).extras["test_values"], values)
    assert datasets.load(tmp_path / "d.npz").extras == {}                # ~1 GB at full size: only on request
    # A decoder that is exactly right at the points, then one wrong on a fifth of them.
    occupied = torch.from_numpy(values)
    exact = ShapeModality.point_metrics(occupied.float() * 2 - 1, occupied)
    assert (exact["accuracy_points"] == 1).all() and (exact["psnr_points"] > 100).all()
    wrong = occupied.float() * 2 - 1
    wrong[:, :20] *= -1
    scores = ShapeModality.point_metrics(wrong, occupied)
    assert np.allclose(scores["accuracy_points"], 0.8) and np.allclose(scores["psnr_points"], -10 * np.log10(0.2))


@pytest.mark.parametrize("points, values, message", [
    (np.zeros((2, 5, 3), np.uint8), np.full((2, 5), 2, np.uint8), "only 0 and 1"),
    (np.zeros((2, 5, 2), np.uint8), np.zeros((2, 5), np.uint8), "must be \\(N, P, 3\\)"),
    (np.full((2, 5, 3), np.nan, np.float32), np.zeros((2, 5), np.uint8), "NaN or inf"),
])
def test_bad_imnet_points_are_named(tmp_path, points, values, message):
    with h5py.File(tmp_path / "x.hdf5", "w") as f:
        f.create_dataset("points_64", data=points)
        f.create_dataset("values_64", data=values)
    with pytest.raises(DataError, match=r"x\.hdf5: .*" + message):
        voxels.read_imnet_points(tmp_path / "x.hdf5")


def test_imnet_run_reports_accuracy_and_psnr_on_its_test_points(tmp_path):
    """prepare -> fit_loe -> export_latents on an IM-NET-style release with sample points."""
    import json
    import subprocess
    import sys

    import yaml

    from conftest import STAGE_ENV
    from test_pipeline import shape_micro_params

    data_dir = tmp_path / "imnet"
    data_dir.mkdir()
    write_imnet(data_dir, n_train=6, n_test=3)
    with h5py.File(data_dir / "all_vox256_img_test.hdf5", "a") as f:   # 64 points per test shape
        del f["points_64"], f["values_64"]
        f.create_dataset("points_64", data=np.random.default_rng(0).integers(0, 256, (3, 64, 3), dtype=np.uint8))
        f.create_dataset("values_64", data=np.random.default_rng(1).integers(0, 2, (3, 64, 1), dtype=np.uint8))
    params = shape_micro_params()
    params["dataset"].update(source="imnet", path=str(data_dir))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("prepare", "fit_loe", "export_latents"):
        r = subprocess.run([sys.executable, "-m", f"pipeline.stages.{stage}"], cwd=tmp_path, capture_output=True,
                           text=True, env=STAGE_ENV)
        assert r.returncode == 0, r.stderr[-2000:]
    test = json.loads((tmp_path / "metrics/reconstruction.json").read_text())["test"]
    assert 0 <= test["accuracy_points"] <= 1 and test["psnr_points"] > 0 and "accuracy_points" not in \
        json.loads((tmp_path / "metrics/reconstruction.json").read_text())["train"]
    with np.load(tmp_path / "data/latents/latents.npz") as z:
        assert z["test_accuracy_points"].shape == (3,)


def write_recgan_views(folder, objects=4, views=2):
    """3D-RecGAN-named index grids: `views` orientations of each object (an 8^3 box with a bar in it)."""
    for k in range(objects):
        for v in range(views):
            rows = [f"{i} {k + v} 4" for i in range(8)]
            (folder / f"train_3d__chair_{k:04d}_0_0_{v}_008_008_008.txt").write_text("\n".join(rows) + "\n")


def test_3drecgan_views_of_one_object_never_land_on_both_sides(tmp_path):
    write_recgan_views(tmp_path)
    cfg = {"modality": "shape", "source": "folder", "path": str(tmp_path), "resolution": 8,
           "folder": {"train_fraction": 0.5}}
    data = datasets.prepare(config.from_dict({"dataset": cfg}))
    test_objects = {voxels.object_of(n) for n in data.info["test_files"]}
    assert data.info["groups"] == 4 and len(test_objects) == 2 and len(data.test) == 4 and len(data.train) == 4
    # A split file may name an object: both of its views are tested.
    listing = tmp_path.parent / f"{tmp_path.name}_test.txt"
    listing.write_text("chair_0002\ntrain_3d__chair_0003_0_0_1_008_008_008\n")
    data = datasets.prepare(config.from_dict({"dataset": {**cfg, "split": str(listing)}}))
    assert [voxels.object_of(n) for n in data.info["test_files"]] == ["chair_0002"] * 2 + ["chair_0003"] * 2


@needs_realdata
def test_the_real_3drecgan_sample_of_two_chairs_is_refused_as_one_chair_a_side(tmp_path):
    """16 views of each of 2 chairs: 16 files a side, but COV / MMD / 1-NNA would compare one chair with one."""
    for f in RECGAN.glob("*.txt"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match=(rf"^{tmp_path}: its 32 files are 2 instances \(the views of one object, or "
                                         r"files sharing a stem, are one\), split into 1 train / 1 test; each split "
                                         r"needs at least 2 \(COV, MMD and 1-NNA compare sets\)")):
        datasets.prepare(config.from_dict({"dataset": {"modality": "shape", "source": "folder",
                                                       "path": str(tmp_path), "resolution": 32}}))


def test_a_split_of_one_object_a_side_is_refused_whatever_the_split_setting(tmp_path):
    write_recgan_views(tmp_path, objects=3, views=4)
    listing = tmp_path.parent / f"{tmp_path.name}_test.txt"
    listing.write_text("chair_0001\n")
    for split, folder, sides in (("random", {}, "2 train / 1 test"), ("sorted", {"train_count": 1}, "1 train / 2 test"),
                                 (str(listing), {}, "2 train / 1 test")):
        cfg = config.from_dict({"dataset": {"modality": "shape", "source": "folder", "path": str(tmp_path),
                                            "resolution": 8, "split": split, "folder": folder}})
        with pytest.raises(DataError, match=rf": its 12 files are 3 instances .*, split into {sides}; each split"):
            datasets.prepare(cfg)
    write_recgan_views(tmp_path, objects=4, views=4)                    # a 4th object: 2 a side
    data = datasets.prepare(config.from_dict({"dataset": {"modality": "shape", "source": "folder",
                                                          "path": str(tmp_path), "resolution": 8}}))
    assert data.info["groups"] == 4 and (len(data.train), len(data.test)) == (8, 8)


def test_a_shape_in_two_formats_is_one_instance_and_hidden_files_are_not_read(tmp_path):
    write_meshes(tmp_path)
    trimesh.creation.box(extents=[1, 1, 2]).export(tmp_path / "a_sphere.stl")      # stem a_sphere twice
    (tmp_path / "._b_box.obj").write_bytes(b"\x00\x05\x16\x07 AppleDouble")    # macOS sidecars
    (tmp_path / ".ipynb_checkpoints.binvox").write_bytes(b"#binvox 1\n")
    data = datasets.prepare(config.from_dict({"dataset": {"modality": "shape", "source": "folder", "split": "sorted",
                                                          "path": str(tmp_path), "resolution": 8}}))
    assert data.info["groups"] == 4 and (len(data.train), len(data.test)) == (3, 2)
    assert data.info["test_files"] == ["c_cylinder.off", "d_capsule.stl"]


def test_imnet_voxels_with_several_channels_are_refused_not_read_as_more_shapes(tmp_path):
    for split in ("train", "test"):
        with h5py.File(tmp_path / f"v_{split}.hdf5", "w") as f:
            f.create_dataset("voxels", data=np.ones((2, 8, 8, 8, 3), np.uint8))
        (tmp_path / f"._v_{split}.hdf5").write_bytes(b"\x00\x05\x16\x07")        # sidecars: not a 2nd file
    cfg = config.from_dict({"dataset": {"modality": "shape", "source": "imnet", "path": str(tmp_path),
                                        "resolution": 8}})
    with pytest.raises(DataError, match=(rf"^{tmp_path / 'v_train.hdf5'}: 'voxels' must be \(N, R, R, R\[, 1\]\), "
                                         r"got \(2, 8, 8, 8, 3\)$")):
        datasets.prepare(cfg)


def test_a_damaged_imnet_chunk_is_named_with_its_file(tmp_path):
    grids = voxels.unpack(synthetic_shapes.generate(4, 64, seed=1, progress=False)[0], 64)
    for split in ("train", "test"):
        with h5py.File(tmp_path / f"v_{split}.hdf5", "w") as f:
            f.create_dataset("voxels", data=grids[..., None].astype(np.uint8), chunks=(1, 64, 64, 64, 1),
                             compression="gzip")
    path = tmp_path / "v_train.hdf5"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\xff" * 64       # inside the compressed chunks, past the header
    path.write_bytes(bytes(raw))
    cfg = config.from_dict({"dataset": {"modality": "shape", "source": "imnet", "path": str(tmp_path),
                                        "resolution": 32}})
    with pytest.raises(DataError, match=rf"{path}: cannot read shapes 0\.\.\d+ of 'voxels' \("):
        datasets.prepare(cfg)


def test_a_decoded_shape_is_compared_as_its_occupancy_not_its_soft_values():
    from pipeline.metrics import memorisation_distance

    m = ShapeModality(8)
    grids = voxels.pack(np.stack([sphere_grid(8, r) for r in (0.5, 0.8)]))
    targets = m.targets(grids).flatten(1)                              # values in {-1, +1}
    soft = 0.8 * targets                                               # the right side of 0 everywhere
    train = m.to_unit(targets)
    assert memorisation_distance(m.decoded_to_unit(soft), train).max() == 0
    assert memorisation_distance(m.to_unit(soft), train).min() == pytest.approx(0.1 * np.sqrt(8 ** 3), rel=1e-5)


def test_views_of_a_single_object_are_refused_as_unsplittable(tmp_path):
    write_recgan_views(tmp_path, objects=1, views=4)
    cfg = config.from_dict({"dataset": {"modality": "shape", "source": "folder", "path": str(tmp_path),
                                        "resolution": 8}})
    with pytest.raises(DataError, match=r"its 4 files are views of one object \(chair_0000\); a split needs two"):
        datasets.prepare(cfg)
