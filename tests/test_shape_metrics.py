"""Chamfer, coverage, MMD and 1-NNA against values computed by hand, and an
LoE that overfits one shape."""
import numpy as np
import pytest
import torch

from pipeline.modalities import scoring
from pipeline.modalities.shape import metrics as shape_metrics
from pipeline.modalities.shape import voxels
from pipeline.loe import LayersOfExperts
from pipeline.modalities.shape.modality import ShapeModality
from pipeline.modalities.shape.rendering import voxel_centres


def test_chamfer_by_hand():
    a = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    b = np.array([[0, 0, 0]], np.float32)
    # a -> b: (0 + 1) / 2; b -> a: 0
    assert shape_metrics.chamfer(a, b) == pytest.approx(0.5)
    assert shape_metrics.chamfer(a, a) == 0


def test_chamfer_of_a_known_displacement():
    rng = np.random.default_rng(0)
    grid = voxel_centres(8).reshape(-1, 3)                         # spacing 0.25
    shift = np.array([0.01, -0.02, 0.02], np.float32)            # far below half the spacing
    assert shape_metrics.chamfer(grid, grid + shift) == pytest.approx(2 * (shift ** 2).sum(), rel=1e-5)
    x = rng.random((3, 512, 3)).astype(np.float32)
    m = shape_metrics.chamfer_matrix(x)
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 0)
    assert m[0, 1] == pytest.approx(shape_metrics.chamfer(x[0], x[1]))


def test_the_dense_search_a_gpu_runs_gives_the_k_d_trees_matrix():
    """The GPU route (run here on the CPU): the same Chamfer matrix as the trees', across block edges."""
    rng = np.random.default_rng(1)
    # 2048 points on each of 6 spheres of radius 0.2-0.4 in the unit cube, two of them the same sphere drawn
    # twice (their Chamfer distance is the point spacing alone, ~1e-4): the protocol's scales.
    directions = rng.normal(size=(6, 2048, 3))
    radii = np.array([0.2, 0.25, 0.3, 0.3, 0.35, 0.4])[:, None, None]
    x = (radii * directions / np.linalg.norm(directions, axis=-1, keepdims=True)).astype(np.float32)
    dense = shape_metrics.chamfer_matrix_dense(x, "cpu", block=3)
    trees = shape_metrics.chamfer_matrix(x)
    np.testing.assert_allclose(dense, trees, rtol=1e-5)
    assert 1e-5 < trees[2, 3] < 1e-3
    assert np.array_equal(dense, dense.T) and (np.diag(dense) == 0).all()


def test_scores_from_a_stored_reference_matrix_are_the_union_matrix_scores_to_the_bit():
    """The reference's own block, computed once and passed in, gives what the union's matrix gives; the
    dense route's blocks are its union matrix's entries exactly; a matrix of another set's size is refused."""
    rng = np.random.default_rng(2)
    generated, reference = rng.random((5, 200, 3)).astype(np.float32), rng.random((4, 200, 3)).astype(np.float32)
    union = torch.from_numpy(shape_metrics.chamfer_matrix(np.concatenate([generated, reference])))
    cov, mmd, nna = scoring.set_scores(union, len(generated))
    by_union = {"coverage": round(cov, 4), "mmd": round(mmd, 6), "one_nna": round(nna, 4)}
    stored = shape_metrics.distance_matrix(reference)
    assert np.array_equal(stored, union[5:, 5:].numpy())
    assert shape_metrics.generation_scores(generated, reference, progress=False) == by_union
    assert shape_metrics.generation_scores(generated, reference, progress=False,
                                           reference_distances=stored) == by_union
    assert 0 < by_union["mmd"] and by_union["one_nna"] not in (0, 1)
    dense = shape_metrics.chamfer_matrix_dense(np.concatenate([generated, reference]), "cpu", block=3)
    cross = shape_metrics.chamfer_matrix_dense(generated, "cpu", block=3, y=reference)
    assert np.array_equal(cross, dense[:5, 5:]) and cross.shape == (5, 4)
    with pytest.raises(ValueError, match=r"reference_distances: shape \(5, 5\)"):
        shape_metrics.generation_scores(generated, reference, progress=False,
                                        reference_distances=np.zeros((5, 5)))


def test_coverage_and_mmd_by_hand():
    d = torch.tensor([[1.0, 5, 9, 9],
                      [2, 1, 9, 9],
                      [9, 9, 9, 3]])                              # 3 generated x 4 reference
    cov, mmd = scoring.coverage_mmd(d)
    assert cov == 3 / 4                                           # references 0, 1, 3 are matched
    assert mmd == pytest.approx((1 + 1 + 9 + 3) / 4)              # column minima


def test_one_nna_by_hand():
    gen_gen = torch.tensor([[0.0, 1], [1, 0]])
    ref_ref = torch.tensor([[0.0, 4], [4, 0]])
    gen_ref = torch.tensor([[3.0, 0.5],                           # g0's nearest: r1 (wrong)
                            [2, 6]])                              # g1's nearest: g0 (right)
    # r0: nearest g1 (2) -> wrong; r1: nearest g0 (0.5) -> wrong. 1 of 4 right.
    assert scoring.one_nna(gen_gen, gen_ref, ref_ref) == 0.25


def test_identical_and_disjoint_sets():
    rng = np.random.default_rng(1)
    clouds = rng.random((6, 256, 3)).astype(np.float32)
    same = shape_metrics.generation_scores(clouds, clouds.copy(), progress=False)
    assert same["coverage"] == 1 and same["mmd"] == 0
    assert same["one_nna"] == 0                                   # every shape's twin is in the other set
    far = shape_metrics.generation_scores(clouds + 10, clouds, progress=False)
    assert far["one_nna"] == 1


def test_point_clouds_mark_shapes_without_surface():
    occ = np.zeros((2, 16, 16, 16), np.float32)
    occ[0, 4:12, 4:12, 4:12] = 1
    clouds, empty = shape_metrics.point_clouds(occ, 128, seed=0)
    assert clouds.shape == (2, 128, 3) and empty == 1 and (clouds[1] == 0).all()
    # The box spans voxels 4..11 of 16: faces at +-0.5 in our [-1, 1]^3, +-0.25 in the protocol's unit cube.
    assert np.abs(clouds[0]).max(0) == pytest.approx([0.25, 0.25, 0.25], abs=1e-5)


def test_chamfer_reads_in_unit_cube_units_a_quarter_of_ours():
    """mNIF's MMD is in squared unit-cube units; ours were in [-1, 1]^3 and read 4x larger."""
    from pipeline.modalities.shape.rendering import surface_points

    occ = np.zeros((2, 16, 16, 16), np.float32)
    occ[0, 4:12, 4:12, 4:12] = 1
    occ[1, 6:14, 4:12, 4:12] = 1                                    # the same box two voxels (0.25) along x
    clouds, _ = shape_metrics.point_clouds(occ, 512, seed=3)
    rng = np.random.default_rng(3)
    world = [surface_points(o, 512, rng) for o in occ]              # the same draws, in [-1, 1]^3
    unit = shape_metrics.chamfer(clouds[0], clouds[1])
    assert unit == pytest.approx(shape_metrics.chamfer(*world) / 4, rel=1e-6)
    assert np.allclose(clouds[1].mean(0) - clouds[0].mean(0), [0.125, 0, 0], atol=0.03)   # 1/8 of the unit cube
    assert shape_metrics.UNIT_CUBE == 0.5


def test_loe_overfits_one_shape():
    """A LoE with its latent fitted jointly reaches 99% voxel accuracy on one 16^3 shape."""
    side = 16
    m = ShapeModality(side)
    grid = np.linalg.norm(voxel_centres(side) - [0.2, 0, 0], axis=-1) <= 0.5
    grid |= (np.abs(voxel_centres(side)) <= [0.7, 0.15, 0.15]).all(-1)      # a sphere on a bar
    packed = voxels.pack(grid[None])
    coords, targets = m.coordinates(), m.targets(packed)
    model = LayersOfExperts(3, 1, layers=3, experts=4, width=32, latent_dim=8, w0=30.0)
    h = torch.zeros(1, 3, 8, requires_grad=True)
    opt = torch.optim.Adam([*model.parameters(), h], lr=1e-3)
    for _ in range(300):
        loss = ((model(coords, h) - targets) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    scores = m.reconstruction_metrics(model(coords, h).detach(), targets)
    assert scores["accuracy"][0] > 0.99 and scores["iou"][0] > 0.95


def test_shape_psnr_is_mnifs_on_hand_made_values():
    m = ShapeModality(2)                                               # 8 voxels
    targets = torch.tensor([1.0, 1, 1, 1, -1, -1, -1, -1]).reshape(1, 8, 1)
    zeros = m.reconstruction_metrics(torch.zeros(1, 8, 1), targets)
    # all values 0 -> 0.5 in [0, 1] against {0, 1}: MSE 0.25, PSNR 10 log10(4)
    assert zeros["psnr"][0] == pytest.approx(10 * np.log10(4), abs=1e-5)
    # beyond [-1, 1] is clamped (mNIF's sine output cannot leave it): +-3 reads as perfect on those voxels
    values = torch.tensor([3.0, 3, 1, 1, -3, -1, -1, 0]).reshape(1, 8, 1)   # one voxel off by 0.5 in [0, 1]
    scores = m.reconstruction_metrics(values, targets)
    assert scores["psnr"][0] == pytest.approx(-10 * np.log10(0.25 / 8), abs=1e-4)
    assert scores["accuracy"][0] == pytest.approx(7 / 8)              # 0 counts as occupied (value >= 0)


def test_a_full_grid_is_the_solid_cube_and_an_empty_one_has_no_surface():
    """The padding closes a shape at the grid's border, so a full grid's surface is the cube [-1, 1]^3 (a
    collapsed sample still has a surface); only an empty grid has none."""
    from pipeline.modalities.shape.rendering import surface_mesh

    verts, faces = surface_mesh(np.ones((8, 8, 8), np.float32))
    assert len(faces) > 0 and np.allclose(verts.min(0), -1) and np.allclose(verts.max(0), 1)
    verts, faces = surface_mesh(np.zeros((8, 8, 8), np.float32))
    assert verts.shape == (0, 3) and faces.shape == (0, 3)
