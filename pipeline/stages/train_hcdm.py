"""Stage `train_hcdm` (Stage-2): learn p(h^1) prod p(h^l | h^<l) on the train latents."""
import dataclasses

import torch

from .. import artifacts, io
from ..artifacts import CURVES, HCDM_CHECKPOINT, HCDM_MODEL, LATENTS, metrics_files
from ..hcdm import HCDMTrainer, build_hcdm, save_hcdm
from ..distributed import is_main
from ..training import (Checkpointer, StepLog, code_digest, file_digest, fingerprint, precision_here, run_place,
                        run_settings)
from . import elapsed, run, seeded, write_metrics

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (HCDM_MODEL, *metrics_files("train_hcdm"))


def main(cfg, generator, start, device):
    latents = torch.from_numpy(artifacts.load_latents()["train"])
    h = cfg.hcdm
    if h.seed is not None:   # Stage-2's own seed: several HCDMs over one Stage-1
        generator = seeded(h.seed)
    warnings: list[str] = []
    h = precision_here(h, "hcdm.precision", device, warnings)
    model = build_hcdm(dataclasses.replace(cfg, hcdm=h), latents).to(device)
    place = run_place(device)   # torchrun processes and device kind: part of the run
    run_id = fingerprint(cfg.seed, cfg.binary_len, run_settings(h), file_digest(LATENTS), *place)
    io.discard(*OUTPUTS)   # a diverged run must not leave an older model looking current
    log = StepLog(CURVES / "train_hcdm.csv")
    trainer = HCDMTrainer(model, h)
    trainer.fit(latents, Checkpointer(HCDM_CHECKPOINT, run_id, h.checkpoint_every, code_digest(__spec__.name), place),
                log, generator)
    if not is_main():
        return
    save_hcdm(HCDM_MODEL, trainer.ema)
    log.write()
    tail = log.rows[-5:]
    write_metrics("train_hcdm", {
        "binary_len": cfg.binary_len, "variant": h.variant, "steps": h.steps,
        "final_loss_mean_last_logs": round(sum(r["loss"] for r in tail) / len(tail), 5),
        "parameters": sum(p.numel() for p in model.parameters()), "seconds": elapsed(start)}, warnings,
        omit=("binary_len", "steps"))   # params, shown as such


if __name__ == "__main__":
    run(main, OUTPUTS)
