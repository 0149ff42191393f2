"""Stage `export_latents`: the latent bank, every train and test instance fitted from zero."""
import numpy as np
import torch

from .. import artifacts, datasets, io, pictures
from ..artifacts import DATASET, LATENTS, METRICS, RECONSTRUCTIONS
from ..meta import fit_latents
from . import elapsed, run


def main(cfg, generator, start):
    data = datasets.load(artifacts.require(DATASET, "prepare"))
    model, meta_sgd, trained = artifacts.load_loe()
    e = cfg.export_latents
    bank, report = {}, {}
    for split in ("train", "test"):
        latents, per_instance = fit_latents(model, meta_sgd, data.modality, data.split(split),
                                            e.inner_steps, trained["inner_lr"], e.batch_size)
        bank[split] = latents.numpy()
        for name, values in per_instance.items():
            bank[f"{split}_{name}"] = values
        report[split] = {"instances": len(latents),
                         **{name: round(float(np.mean(v)), 4) for name, v in per_instance.items()}}
    io.save_npz(LATENTS, **bank)

    # Top row: test originals; bottom row: their reconstructions from the latent bank.
    m = data.modality
    n = min(8, len(data.test))
    recon = m.to_pictures(model.render(m.coordinates(), torch.from_numpy(bank["test"][:n])))
    original = m.to_pictures(m.targets(data.test[:n]))
    io.save_png(RECONSTRUCTIONS, pictures.grid(np.concatenate([original, recon]), n,
                                               upscale=pictures.upscale_for(cfg.dataset.resolution)))
    io.save_json(METRICS / "reconstruction.json", {
        **report, "inner_steps": e.inner_steps,
        "psnr_definition": "mean over instances of per-instance PSNR, images in [0, 1]",
        "ssim_definition": "Wang et al. 2004, 11x11 Gaussian window sigma 1.5, valid windows, [0, 1]",
        "seconds": elapsed(start)})


if __name__ == "__main__":
    run(main)
