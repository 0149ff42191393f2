"""Stage `hierarchy`: hierarchical controllability against ground truth.

For k = 0..L-1: draw M anchors, fix h^1..h^k, resample the rest N times,
decode, predict the factors, and report per factor the share of its spread
that remains (within-anchor spread / spread of free samples): early layers
that fix coarse semantics drive the coarse factors' share towards 0.

The predictor learnt the factors on real instances and reads them here off
decodes. How well it reads each factor off decodes is measured on Stage-1's
reconstructions of the test split, whose true factors are known; a factor it
cannot read there (hierarchy.readable) is listed but left out of the mean:
its shares would measure the predictor's reaction to decoding, not control.
"""
import numpy as np
import torch

from .. import artifacts
from ..artifacts import FIGURES, metrics_files
from ..errors import warn
from ..factors import factor_scores, load_factor_predictor, readable, retained_shares
from ..metrics import measurement_seeds
from ..generation import control_depths, control_latents, load_trained, sample_latents
from ..plots import line_plot, message
from . import elapsed, run, write_metrics, write_not_measured

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (*metrics_files("hierarchy"), FIGURES / "hierarchy.png")
DECODED = 1000      # test reconstructions the predictor is scored on


def main(cfg, generator, start, device):
    saved = load_factor_predictor()
    data, loe, hcdm = load_trained(device)
    skipped = saved.get("skipped") if isinstance(saved, dict) else None
    if skipped is None and len(control_depths(hcdm)) == 1:
        skipped = f"the {hcdm.variant} prior cannot fix a prefix h^1..h^k"
    if skipped is not None:
        write_not_measured("hierarchy", skipped)
        message(FIGURES / "hierarchy.png", f"hierarchy not measured: {skipped}")
        return
    predictor, names = saved
    m, kinds, warnings = data.modality, predictor.kinds, []
    h, s = cfg.hierarchy, cfg.sample

    # How well the predictor reads each factor off decodes: Stage-1's test reconstructions, true factors known.
    # At most DECODED of them, a seeded draw (ShapeNet's 8762 test grids at 64^3 decoded at once are 9 GB).
    test_latents = artifacts.load_latents()["test"]
    pick = np.arange(len(test_latents)) if len(test_latents) <= DECODED else np.sort(
        np.random.default_rng(measurement_seeds(cfg.seed, "hierarchy_on_decodes")).choice(
            len(test_latents), DECODED, replace=False))
    decoded = predictor.predict(m.predictor_input(loe.render(m.coordinates(),
                                                             torch.from_numpy(test_latents[pick]).to(device))))
    true = data.test_factors[pick]
    on_decodes = factor_scores(decoded, true, names, kinds)
    counted = readable(on_decodes, true, kinds, h.readable)
    left_out = [n for n in names if not counted[n]]
    if left_out:
        warn(warnings, f"left out of the mean: {', '.join(left_out)} (the factor predictor reads them off Stage-1's "
                       f"decoded test reconstructions below hierarchy.readable {h.readable}: see on_decodes)")
    if not any(counted.values()):
        warn(warnings, "no factor is readable off decodes: the means are null")

    anchors = sample_latents(hcdm, h.anchors, generator, s.sampler, s.ddim_steps, s.batch_size)
    tree = control_latents(hcdm, anchors, h.completions, generator, s.sampler, s.ddim_steps)   # (M, L, N, L, H)
    M, depths, N = tree.shape[:3]
    values = loe.render(m.coordinates(), tree.flatten(0, 2))
    predicted = predictor.predict(m.predictor_input(values)).reshape(M, depths, N, -1)
    free = predicted[:, 0].reshape(M * N, -1)
    shares = {k: retained_shares(predicted[:, k], free, kinds) for k in range(depths)}          # (M, F) each
    constant = [n for i, n in enumerate(names) if np.isnan(shares[0][:, i]).all()]
    if constant:
        warn(warnings, f"no free spread, so no share: {', '.join(constant)} (the predictor gives every sample the "
                       "same value)")
    keep = np.array([counted[n] and n not in constant for n in names])

    def number(x):
        return None if not np.isfinite(x) else round(float(x), 4)

    def se(x):   # standard error of a mean over the M anchors
        return x.std(0, ddof=1) / np.sqrt(len(x))

    table = {f"k={k}": dict(zip(names, map(number, r.mean(0)))) for k, r in shares.items()}
    errors = {f"k={k}": dict(zip(names, map(number, se(r)))) for k, r in shares.items()}
    # The headline: per k, the mean over the readable factors; its error from the anchors' own means.
    means = {k: r[:, keep].mean(1) if keep.any() else None for k, r in shares.items()}
    write_metrics("hierarchy", {
        "mean_retained_variance": {f"k={k}": None if v is None else number(v.mean()) for k, v in means.items()},
        "mean_retained_variance_se": {f"k={k}": None if v is None else number(se(v)) for k, v in means.items()},
        "retained_variance": table,
        "retained_variance_se": errors,
        "factors_in_mean": [n for n, k in zip(names, keep) if k],
        "on_decodes": {"test_reconstructions": len(pick), "readable": h.readable, "scores": on_decodes},
        "definition": "mean over anchors of the within-anchor spread of the predicted factor, divided by its "
                      "spread over all k=0 samples; spread = unbiased variance (ddof 1; continuous), Gini impurity "
                      "times n / (n - 1) (categorical), or the circular variance times n / (n - 1) over (2 pi)^2 "
                      "(circular), so an uninformative prefix reads 1; _se: the standard error over the anchors; the "
                      "mean is over factors_in_mean, those the predictor reads off decoded test reconstructions",
        "anchors": h.anchors, "completions": h.completions, "variant": hcdm.variant, "seconds": elapsed(start)},
        warnings,
        omit=("retained_variance", "retained_variance_se", "factors_in_mean", "on_decodes", "anchors", "completions"))
    line_plot(FIGURES / "hierarchy.png", list(range(depths)),
              {(n if counted[n] else f"{n} (not read off decodes)"): [table[f"k={k}"][n] for k in range(depths)]
               for n in names if n not in constant},
              xlabel="k (layers h^1..h^k fixed)", ylabel="retained share of factor variance",
              title="Hierarchical control against ground-truth factors")


if __name__ == "__main__":
    run(main, OUTPUTS)
