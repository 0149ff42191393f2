import numpy as np
import pytest
import torch

from pipeline.modalities.image import synthetic as synthetic_faces
from pipeline.modalities.shape import synthetic as synthetic_shapes
from pipeline.factors import factor_scores, retained_variance, spread, train_predictor
from pipeline.training import StepLog
from pipeline.modalities.image.modality import ImageModality
from pipeline.modalities.shape.modality import ShapeModality


def test_spread_and_retained_variance_known_values():
    assert spread(np.array([0.0, 2.0]), "continuous") == 2.0                 # ddof 1
    assert spread(np.array([0, 0, 1, 1]), "categorical") == pytest.approx(0.5 * 4 / 3)
    rng = np.random.default_rng(0)
    free = np.stack([rng.normal(size=4000), rng.integers(0, 2, 4000)], 1)
    # Factor 0 pinned within each group to a tenth of its spread; factor 1 untouched.
    groups = np.stack([np.stack([c + 0.1 * rng.normal(size=500), rng.integers(0, 2, 500)], 1)
                       for c in rng.normal(size=10)])
    r = retained_variance(groups, free, ["continuous", "categorical"])
    assert r[0] == pytest.approx(0.01, rel=0.2) and r[1] == pytest.approx(1.0, abs=0.05)


def test_an_uninformative_prefix_retains_all_the_spread_at_the_stages_sizes():
    """8 anchors x 16 completions against their 128 draws pooled (the hierarchy stage's k = 0): 1, not 0.945."""
    rng = np.random.default_rng(1)
    ratios = []
    for _ in range(200):
        groups = np.stack([np.stack([rng.normal(size=16), rng.integers(0, 3, 16)], 1) for _ in range(8)])
        ratios.append(retained_variance(groups, groups.reshape(128, 2), ["continuous", "categorical"]))
    assert np.mean(ratios, 0) == pytest.approx([1.0, 1.0], abs=0.01)


def test_factor_scores_known_values():
    true = np.array([[0.0, 1], [1.0, 0], [2.0, 1], [3.0, 1]])
    pred = np.array([[0.0, 1], [1.0, 1], [2.0, 1], [3.0, 1]])
    s = factor_scores(pred, true, ["x", "c"], ["continuous", "categorical"])
    assert s == {"x": {"r2": 1.0}, "c": {"accuracy": 0.75}}


def fit_and_score(m, signals, factors, names, kinds, n_train, steps, batch_size, log=None):
    """Train the predictor on the first n_train instances through the modality; score the rest."""
    model = train_predictor(lambda idx: m.predictor_input(m.targets(signals[idx])), n_train, factors[:n_train],
                            kinds, steps=steps, batch_size=batch_size, lr=3e-3,
                            generator=torch.Generator().manual_seed(0), progress=False, log=log)
    predicted = model.predict(m.predictor_input(m.targets(signals[n_train:])))
    return model, factor_scores(predicted, factors[n_train:], names, kinds)


def test_predictor_learns_the_coarse_factors():
    images, factors = synthetic_faces.generate(700, 16, seed=0)
    kinds = [k for k, _, _ in synthetic_faces.FACTORS.values()]
    log = StepLog("unused.csv")
    model, s = fit_and_score(ImageModality(16), images, factors, synthetic_faces.FACTOR_NAMES, kinds, 600, 300, 64,
                             log=log)
    assert model.dims == 2
    # Its curve for `dvc plots`: a row every 10 steps, the mean loss since the last row, falling.
    assert [r["step"] for r in log.rows] == list(range(10, 301, 10)) and list(log.rows[0]) == ["step", "loss", "lr"]
    assert log.rows[-1]["loss"] < 0.5 * log.rows[0]["loss"]
    assert s["background_hue"]["r2"] > 0.5 and s["skin_tone"]["r2"] > 0.5
    assert s["hair_style"]["accuracy"] > 0.4          # chance is 0.25


def test_3d_predictor_reads_shape_factors_off_grids():
    packed, factors = synthetic_shapes.generate(500, 16, seed=0, progress=False)
    kinds = [k for k, _, _ in synthetic_shapes.FACTORS.values()]
    model, s = fit_and_score(ShapeModality(16), packed, factors, synthetic_shapes.FACTOR_NAMES, kinds, 400, 200, 32)
    assert model.dims == 3
    assert s["category"]["accuracy"] > 0.8 and s["height"]["r2"] > 0.3     # chance: 0.2 and 0
