"""Stage `evaluate`: generation metrics (memorisation distance, Table 2 std table)."""
import numpy as np

from .. import artifacts, io
from ..artifacts import DATASET, METRICS
from ..datasets import load
from ..generation import binary_std_table, sample_latents
from ..metrics import memorisation_distance
from . import elapsed, run


def main(cfg, generator, start):
    e, s = cfg.evaluate, cfg.sample
    data = load(artifacts.require(DATASET, "prepare"))
    loe, _, _ = artifacts.load_loe()
    hcdm = artifacts.load_hcdm()
    m = data.modality
    coords = m.coordinates()

    latents = sample_latents(hcdm, e.memorisation_samples, generator, s.sampler, s.ddim_steps, e.batch_size)
    generated = m.to_unit(loe.render(coords, latents, e.batch_size))
    train = m.to_unit(m.targets(data.train))
    test = m.to_unit(m.targets(data.test))
    dims = train[0].numel()
    memo = memorisation_distance(generated, train)
    # Reference: how far real unseen data sits from the train set on this scale.
    test_memo = memorisation_distance(test, train)
    table = binary_std_table(hcdm, e.std_table.samples, e.std_table.anchors, generator, s.sampler, s.ddim_steps)
    io.save_json(METRICS / "generation.json", {
        "memorisation_distance": round(float(memo.mean()), 4),
        "memorisation_distance_test_split": round(float(test_memo.mean()), 4),
        "memorisation": {"samples": e.memorisation_samples, "value_range": "[0, 1] per value",
                         "values_per_instance": dims, "max_possible": round(float(np.sqrt(dims)), 2),
                         "reference_split": "train", "reference_size": len(data.train)},
        "binary_len": hcdm.binary_len, "conditional": hcdm.conditional,
        "std_table": {k: round(v, 4) for k, v in table.items()},
        "std_table_protocol": {"samples_per_anchor": e.std_table.samples, "anchors": e.std_table.anchors,
                               "units": "standardised latents (train-set std = 1)"},
        "sampler": s.sampler, "ddim_steps": s.ddim_steps, "seconds": elapsed(start)})


if __name__ == "__main__":
    run(main)
