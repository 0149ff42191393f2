import numpy as np
import pytest

from pipeline.svcca import cca, layer_correlations, null_correlations, svcca, svd_reduce


def test_cca_known_case():
    rng = np.random.RandomState(0)
    a = rng.randn(20, 2000)
    m = rng.randn(10, 20)
    b = m @ a
    b[:5] += 2.0 * rng.randn(5, 2000)
    rho = cca(a, b)
    expected = [1, 1, 1, 1, 1, 0.940523, 0.896240, 0.834958, 0.772490, 0.597695]
    assert rho == pytest.approx(expected, abs=1e-6)
    assert rho.mean() == pytest.approx(0.904191, abs=1e-6)


def test_svcca_known_case_keeps_eight_directions():
    rng = np.random.RandomState(1)
    z = rng.randn(8, 3000)
    x = rng.randn(30, 8) @ z + 0.3 * rng.randn(30, 3000)
    y = rng.randn(25, 8) @ z + 0.3 * rng.randn(25, 3000)
    assert svd_reduce(x).shape[0] == 8 and svd_reduce(y).shape[0] == 8
    assert svcca(x, y)[0] == pytest.approx(0.995367, abs=1e-6)
    assert cca(x, y).mean() == pytest.approx(0.368967, abs=1e-6)


def test_invertible_transform_gives_one_and_noise_near_zero():
    rng = np.random.RandomState(2)
    a = rng.randn(12, 3000)
    t = rng.randn(12, 12) + 3 * np.eye(12)
    assert svcca(a, t @ a)[0] == pytest.approx(1.0, abs=1e-6)
    assert svcca(a, rng.randn(12, 3000))[0] < 0.1


def test_layer_correlation_matrix():
    rng = np.random.RandomState(3)
    h1 = rng.randn(1000, 6)
    bank = np.stack([h1, h1 @ rng.randn(6, 6), rng.randn(1000, 6)], axis=1)    # (N, L=3, H=6)
    c = layer_correlations(bank)
    assert c.shape == (3, 3) and np.allclose(c, c.T) and np.allclose(np.diag(c), 1)
    assert c[0, 1] > 0.99 and c[0, 2] < 0.15


def test_a_layer_whose_latent_never_varies_has_null_correlations_not_noise():
    """A constant representation has no variance to keep: svd_reduce refuses it, also where centring leaves
    rounding error (1.1 in float32 over 2000 datapoints: 2.4e-7), instead of keeping a direction of noise;
    the bank's matrix holds NaN in its row and column while the other pairs keep their values."""
    rng = np.random.RandomState(4)
    h1 = rng.randn(500, 6)
    bank = np.stack([h1, h1 @ rng.randn(6, 6), np.ones((500, 6)), rng.randn(500, 6)], axis=1)
    rounded = np.full((3, 2000), 1.1, np.float32)
    assert (rounded - rounded.mean(1, keepdims=True)).any()                 # centring leaves rounding error
    for constant in (bank[:, 2].T, rounded, np.full((4, 999), 0.7311)):
        with pytest.raises(ValueError, match="constant"):
            svd_reduce(constant)
    spread = rounded[:2] + 1e-4 * rng.randn(2, 2000).astype(np.float32)      # a small real spread is kept
    assert svd_reduce(spread).shape == (2, 2000)
    beside = np.concatenate([np.full((1, 2000), 1000.0, np.float32), 1e-5 * rng.randn(2, 2000).astype(np.float32)])
    assert svd_reduce(beside).shape[0] >= 1                  # a large constant neuron does not hide the others
    c = layer_correlations(bank)
    assert np.isnan(c[2]).all() and np.isnan(c[:, 2]).all()
    kept = [0, 1, 3]
    assert np.array_equal(c[np.ix_(kept, kept)], layer_correlations(bank[:, kept]))


def test_the_shuffled_null_is_the_measures_floor_and_a_tied_pair_rises_above_it():
    """Two layers that share nothing still read above 0 on finite data; shuffling one layer's instances gives
    that floor (here ~ the expected mean canonical correlation of independent 6-d sets over 300 instances), and a
    tied pair reads far above it."""
    rng = np.random.RandomState(5)
    h1 = rng.randn(300, 6)
    bank = np.stack([h1, h1 @ rng.randn(6, 6) + 0.5 * rng.randn(300, 6), rng.randn(300, 6)], axis=1)
    c, null = layer_correlations(bank), null_correlations(bank, np.random.default_rng(0))
    assert null.shape == (3, 3) and np.allclose(null, null.T) and np.allclose(np.diag(null), 1)
    assert 0.03 < null[0, 2] < 0.2 and abs(c[0, 2] - null[0, 2]) < 0.08     # independent: at the floor
    assert c[0, 1] > 0.9 and null[0, 1] < 0.2                                # tied: shuffling breaks it
    assert np.array_equal(null, null_correlations(bank, np.random.default_rng(0)))   # seeded
