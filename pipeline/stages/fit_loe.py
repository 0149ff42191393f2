"""Stage `fit_loe` (Stage-1): fit the Layers-of-Experts to the train split, by meta-learning (CAVIA) or
auto-decoding (`fit_loe.method`)."""
from .. import artifacts, config, datasets, io
from ..artifacts import CURVES, DATASET, LOE, LOE_CHECKPOINT, metrics_files
from ..loe import LayersOfExperts
from ..loe_triton import use as use_kernel
from ..autodecode import AutoDecoder
from ..meta import MetaLearner, MetaSGD, save_loe
from ..distributed import is_main
from ..training import (Checkpointer, StepLog, code_digest, file_digest, fingerprint, precision_here, run_place,
                        run_settings)
from . import elapsed, run, seeded, write_metrics

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (LOE, *metrics_files("fit_loe"))


def main(cfg, generator, start, device):
    if cfg.fit_loe.seed is not None:   # Stage-1's own seed: several Stage-1 runs over one dataset
        generator = seeded(cfg.fit_loe.seed)
    warnings: list[str] = []
    fit = precision_here(cfg.fit_loe, "fit_loe.precision", device, warnings)
    data = datasets.load(artifacts.require(DATASET, "prepare"))
    m = data.modality
    model = LayersOfExperts(m.d_in, m.d_out, cfg.loe.layers, cfg.loe.experts, cfg.loe.width,
                            cfg.loe.latent_dim, cfg.loe.w0, cfg.loe.variant)
    meta_sgd = MetaSGD(cfg.loe.layers, cfg.loe.latent_dim, *cfg.fit_loe.meta_sgd_init)
    model, meta_sgd = model.to(device), meta_sgd.to(device)
    use_kernel(model, cfg.fit_loe.kernel, device)
    place = run_place(device)   # torchrun processes and device kind: part of the run
    run_id = fingerprint(cfg.seed, config.to_dict(cfg.loe), run_settings(fit), file_digest(DATASET), *place)
    io.discard(*OUTPUTS)      # a diverged run must not leave an older model looking current
    log = StepLog(CURVES / "fit_loe.csv")
    checkpointer = Checkpointer(LOE_CHECKPOINT, run_id, fit.checkpoint_every, code_digest(__spec__.name), place)
    table = None
    if fit.method == "autodecode":
        table = AutoDecoder(model, m, fit, device).fit(data.train, checkpointer, log, generator).latents
    else:
        MetaLearner(model, meta_sgd, m, fit, device).fit(data.train, checkpointer, log, generator)
    if not is_main():
        return
    save_loe(LOE, model, meta_sgd, cfg.fit_loe.inner_steps, cfg.fit_loe.inner_lr, train_latents=table)
    log.write()
    last = log.rows[-1]
    write_metrics("fit_loe", {
        "steps": cfg.fit_loe.steps, "final_loss": last["loss"], "final_train_batch_psnr": last["psnr"],
        **({"meta_sgd_rate_mean": round(meta_sgd().mean().item(), 5)} if table is None else {"method": "autodecode"}),
        "parameters": sum(p.numel() for p in model.parameters()), "seconds": elapsed(start)}, warnings, omit=("steps",))


if __name__ == "__main__":
    run(main, OUTPUTS)
