"""Stage `hierarchy`: hierarchical controllability against ground truth.

For k = 0..L-1: draw M anchors, fix h^1..h^k, resample the rest N times,
decode, predict the factors, and report per factor the share of its spread
that remains (within-anchor spread / spread of free samples): early layers
that fix coarse semantics drive the coarse factors' share towards 0.
"""
import numpy as np

from ..artifacts import FIGURES, metrics_files
from ..factors import load_factor_predictor, retained_variance
from ..generation import control_depths, control_latents, load_trained, sample_latents
from ..plots import line_plot, message
from . import elapsed, run, write_metrics, write_not_measured

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (*metrics_files("hierarchy"), FIGURES / "hierarchy.png")


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
    m = data.modality
    h, s = cfg.hierarchy, cfg.sample
    anchors = sample_latents(hcdm, h.anchors, generator, s.sampler, s.ddim_steps, s.batch_size)
    tree = control_latents(hcdm, anchors, h.completions, generator, s.sampler, s.ddim_steps)   # (M, L, N, L, H)
    M, depths, N = tree.shape[:3]
    values = loe.render(m.coordinates(), tree.flatten(0, 2))
    predicted = predictor.predict(m.predictor_input(values)).reshape(M, depths, N, -1)
    free = predicted[:, 0].reshape(M * N, -1)
    table = {f"k={k}": dict(zip(names, np.round(retained_variance(predicted[:, k], free, predictor.kinds), 4).tolist()))
             for k in range(depths)}
    write_metrics("hierarchy", {
        # The headline: per k, the mean over factors (the table per factor is in the detail file).
        "mean_retained_variance": {k: round(float(np.mean(list(row.values()))), 4) for k, row in table.items()},
        "retained_variance": table,
        "definition": "mean over anchors of the within-anchor spread of the predicted factor, divided by its "
                      "spread over all k=0 samples; spread = unbiased variance (ddof 1; continuous) or Gini impurity "
                      "times n / (n - 1) (categorical), so an uninformative prefix reads 1",
        "anchors": h.anchors, "completions": h.completions, "variant": hcdm.variant, "seconds": elapsed(start)},
        omit=("retained_variance", "anchors", "completions"))
    line_plot(FIGURES / "hierarchy.png", list(range(depths)),
              {n: [table[f"k={k}"][n] for k in range(depths)] for n in names},
              xlabel="k (layers h^1..h^k fixed)", ylabel="retained share of factor variance",
              title="Hierarchical control against ground-truth factors")


if __name__ == "__main__":
    run(main, OUTPUTS)
