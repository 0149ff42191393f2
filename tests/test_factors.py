import numpy as np
import pytest
import torch

from pipeline.modalities.image import synthetic as synthetic_faces
from pipeline.modalities.shape import synthetic as synthetic_shapes
from pipeline.factors import (factor_scores, readable, retained_shares, retained_variance, spread,
                              train_predictor)
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


def test_a_circular_factor_wraps_round():
    """A hue in turns: draws either side of 0 are as close as draws either side of 0.5, in spread and in R^2."""
    rng = np.random.default_rng(2)
    near_half = 0.5 + 0.02 * rng.normal(size=400)
    across_zero = near_half - 0.5                       # the same draws, moved across the wrap (in [-0.06, 0.06])
    wrapped = across_zero % 1.0                         # as a hue is stored: 0.99 and 0.01
    assert spread(wrapped, "circular") == pytest.approx(spread(near_half, "circular"), rel=1e-9)
    assert spread(near_half, "circular") == pytest.approx(near_half.var(ddof=1), rel=0.01)   # ~ variance in turns
    assert spread(wrapped, "continuous") > 100 * spread(wrapped, "circular")                 # the linear misread
    assert spread(np.linspace(0, 1, 1000, endpoint=False), "circular") == pytest.approx(
        1000 / 999 / (2 * np.pi) ** 2)                                  # uniform round the circle: the largest
    noisy = (wrapped + 0.005 * rng.normal(size=400)) % 1.0
    s = factor_scores(noisy[:, None], wrapped[:, None], ["hue"], ["circular"])["hue"]["r2"]
    moved = factor_scores((noisy[:, None] + 0.5) % 1.0, (wrapped[:, None] + 0.5) % 1.0, ["hue"], ["circular"])
    assert s == pytest.approx(moved["hue"]["r2"], abs=1e-4) and s > 0.9          # the same wherever the wrap is
    assert factor_scores(noisy[:, None], wrapped[:, None], ["hue"], ["continuous"])["hue"]["r2"] < s


def test_a_factor_that_does_not_vary_freely_has_no_share_and_no_r2():
    """Nothing to control: NaN, not 0 (which read as perfect control); a constant test factor: R^2 null."""
    groups = np.stack([np.stack([np.full(4, 2.0), np.arange(4.0)], 1) for _ in range(3)])   # (3, 4, 2)
    shares = retained_shares(groups, groups.reshape(12, 2), ["continuous", "continuous"])
    assert np.isnan(shares[:, 0]).all()
    assert shares[:, 1] == pytest.approx(np.full(3, (5 / 3) / (15 / 11)))      # var(0..3) / var of three copies
    true = np.stack([np.full(5, 1.0), np.arange(5.0)], 1)
    assert factor_scores(true, true, ["c", "x"], ["continuous", "continuous"]) == {"c": {"r2": None}, "x": {"r2": 1.0}}


def test_readable_factors_are_judged_against_the_majority_guess():
    true = np.array([[0.0, 0], [1.0, 0], [2.0, 0], [3.0, 1]])           # class 0 is 3 of 4
    scores = {"x": {"r2": 0.6}, "c": {"accuracy": 0.75}}                  # c: no better than always 0
    assert readable(scores, true, ["continuous", "categorical"], 0.5) == {"x": True, "c": False}
    assert readable({"x": {"r2": None}, "c": {"accuracy": 1.0}}, true, ["continuous", "categorical"], 0.5) == \
        {"x": False, "c": True}


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
