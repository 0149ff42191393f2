"""Stage `export_latents`: the latent bank, every train and test instance fitted from zero."""
import numpy as np
import torch

from .. import artifacts, datasets, io, pictures
from ..artifacts import DATASET, FIGURES, LATENTS, RECONSTRUCTIONS, metrics_files
from .. import autodecode
from ..meta import fit_latents, inner_steps_for, load_loe, reconstruct
from ..plots import heatmap
from ..metrics import measurement_seeds
from ..svcca import layer_correlations, null_correlations
from ..errors import warn
from . import elapsed, run, write_metrics

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (LATENTS, RECONSTRUCTIONS, *metrics_files("reconstruction"), *metrics_files("svcca"), FIGURES / "svcca.png")

def main(cfg, generator, start, device):
    data = datasets.load(artifacts.require(DATASET, "prepare"), extras=True)
    model, meta_sgd, trained = load_loe()
    model, meta_sgd = model.to(device), meta_sgd.to(device)
    e, m = cfg.export_latents, data.modality
    field = m.field(model)
    table = trained["train_latents"]
    bank, report = {}, {}
    steps = inner_steps_for(e.inner_steps, trained)
    for split in ("train", "test"):
        signals = data.split(split)
        if table is None:      # meta-learned: every instance by the inner loop from zero
            latents, per_instance = fit_latents(model, meta_sgd, m, signals, steps, trained["inner_lr"],
                                                e.batch_size, e.points, cfg.fit_loe.near_surface_fraction, cfg.seed)
        elif split == "train":  # auto-decoded: the train split's latents are the table trained with the weights
            latents = table.float()
            per_instance = reconstruct(field, m, signals, latents, e.batch_size)
        else:                   # ... and a new instance's latent is fitted with the weights frozen
            latents, per_instance = autodecode.fit_latents(
                model, m, signals, table.float().mean(0), e.autodecode_steps, e.autodecode_lr, e.batch_size,
                e.points or cfg.fit_loe.points_per_step, cfg.fit_loe.near_surface_fraction, cfg.seed)
        bank[split] = latents.numpy()
        for name, values in per_instance.items():
            bank[f"{split}_{name}"] = values
        report[split] = {"instances": len(latents),
                         **{name: round(float(np.mean(v)), 4) for name, v in per_instance.items()}}
    # Metrics on what the source ships beside the grid (IM-NET's near-surface test points, where mNIF measures).
    extra = m.extra_reconstruction_metrics(field, torch.from_numpy(bank["test"]), data.extras, e.batch_size, data.test)
    for name, values in extra.items():
        bank[f"test_{name}"] = values
        report["test"][name] = round(float(np.mean(values)), 4)
    io.save_npz(LATENTS, **bank)

    # Top row: test originals; bottom row: their reconstructions from the latent bank.
    n = min(8, len(data.test))
    coords, targets = m.evaluation_points(data.test[:n])
    recon = m.to_pictures(field.render(coords, torch.from_numpy(bank["test"][:n])))
    original = m.to_pictures(targets)
    io.save_png(RECONSTRUCTIONS, pictures.grid(np.concatenate([original, recon]), n,
                                               upscale=pictures.upscale_for(original.shape[1])))
    # Cross-layer SVCCA of the train latents (paper fig. 7a).
    corr = layer_correlations(bank["train"])
    null = null_correlations(bank["train"], np.random.default_rng(measurement_seeds(cfg.seed, "svcca_null")))
    warnings = []
    n, dims = bank["train"].shape[0], bank["train"].shape[2]
    if n <= dims:
        warn(warnings, f"SVCCA on {n} train instances for {dims}-d latents: with no more instances than dimensions "
                       "canonical correlations are inflated towards 1")
    labels = [f"h{l + 1}" for l in range(len(corr))]
    constant = [l for l in range(len(corr)) if np.isnan(corr[l, l])]     # layer_correlations' constant layers
    if constant:
        warn(warnings, f"the latents of {', '.join(labels[l] for l in constant)} are the same for every train "
                       "instance: those layers carry nothing per instance, and their SVCCA entries are null")
    heatmap(FIGURES / "svcca.png", corr, labels, "SVCCA between layers' latents (train split)")

    def mean(values):      # over the pairs SVCCA measures; null when none is
        values = [v for v in values if not np.isnan(v)]
        return round(float(np.mean(values)), 4) if values else None

    def summary(m, prefix=""):   # the matrix, and its means over adjacent and over all pairs
        return {f"{prefix}matrix": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in m],
                f"{prefix}mean_adjacent": mean([m[i, i + 1] for i in range(len(m) - 1)]),
                f"{prefix}mean_off_diagonal": mean(m[~np.eye(len(m), dtype=bool)])}
    main_summary = summary(corr)
    write_metrics("svcca", {
        "matrix": main_summary.pop("matrix"), "layers": labels, **main_summary,
        # The same pairs with one layer's instances shuffled: the measure's floor on this many instances.
        **summary(null, "null_"),
        "definition": "Raghu et al. 2017: centre, keep the top singular directions holding 99% of the variance "
                      "(variance = squared singular values), CCA, mean canonical correlation; "
                      "neurons = latent dimensions, datapoints = train instances; null: the mean over 5 shuffles of "
                      "the second layer's instances"}, warnings)
    write_metrics("reconstruction", {
        **report, **({"inner_steps": steps, "inner_loop_points": e.points or len(m.coordinates())}
                     if table is None else {"method": "autodecode", "fit_steps": e.autodecode_steps,
                                            "fit_lr": e.autodecode_lr}),
        **m.metric_definitions, "seconds": elapsed(start)}, generalisation_warnings(report))


GAP_DB = 3.0    # train - test PSNR above which Stage-1 is said to memorise (the default: 0.2 dB)


def generalisation_warnings(report: dict) -> list[str]:
    """`warning:` lines for a Stage-1 that memorises its train split or a PSNR that means nothing."""
    warnings: list[str] = []
    train, test = report["train"].get("psnr"), report["test"].get("psnr")
    if train is None or test is None:
        return warnings
    if train - test > GAP_DB:
        warn(warnings, f"Stage-1 reconstructs the train split at {train:.1f} dB PSNR but the test split at "
                       f"{test:.1f} dB ({train - test:.1f} dB apart, over {GAP_DB:g}): it memorises its "
                       f"{report['train']['instances']} train instances instead of generalising, and samples "
                       "will look like them; add data, or lower fit_loe.steps, loe.experts or loe.width")
    if test < 0:
        warn(warnings, f"test PSNR {test:.1f} dB is below 0: the error exceeds the normalised signal itself, so "
                       "this PSNR says nothing (a near-constant channel normalised by a tiny spread?); read the "
                       "modality's raw error instead")
    return warnings


if __name__ == "__main__":
    run(main, OUTPUTS)
