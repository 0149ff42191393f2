"""Can a factor predictor read a factor off Stage-1's decodes at all? The pipeline's predictor learns on real
instances; the `hierarchy` stage scores it on decoded test reconstructions and leaves out of its mean the factors
it cannot read there. This trains a second predictor on the decodes of the train split (the same steps, batch and
rate as the `factor_predictor` stage) and scores both on the decoded test split: a factor neither reads is not
in the decodes, whatever the predictor.

    python benchmarks/decoded_predictor.py --out benchmarks/results/cpu/decoded_predictor

Run in a workspace after `dvc repro` (it reads data/prepared/dataset.npz, data/fit_loe/loe.pt,
data/latents/latents.npz and data/factors/predictor.pt). Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pipeline import artifacts, config, datasets, io  # noqa: E402
from pipeline.factors import factor_scores, load_factor_predictor, train_predictor  # noqa: E402
from pipeline.meta import load_loe  # noqa: E402


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--params", type=Path, default=Path("params.yaml"))
    a.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu/decoded_predictor"))
    args = a.parse_args()
    cfg = config.load(args.params)
    data = datasets.load(artifacts.require(artifacts.DATASET, "prepare"))
    if data.train_factors is None:
        print(f"error: {artifacts.DATASET}: this data has no ground-truth factors", file=sys.stderr)
        return 2
    m, bank = data.modality, artifacts.load_latents()
    field = m.field(load_loe()[0])
    with torch.no_grad():
        decoded = {split: m.predictor_input(field.render(m.coordinates(), torch.from_numpy(bank[split])))
                   for split in ("train", "test")}
    real, names = load_factor_predictor()
    f, start = cfg.factor_predictor, time.time()
    on_decodes = train_predictor(lambda idx: decoded["train"][idx], len(decoded["train"]), data.train_factors,
                                 data.factor_kinds, f.steps, f.batch_size, f.lr,
                                 torch.Generator().manual_seed(cfg.seed), progress=False)
    rows = {"trained on real, scored on real test": real.predict(m.predictor_input(m.targets(data.test))),
            "trained on real, scored on decoded test": real.predict(decoded["test"]),
            "trained on decoded train, scored on decoded test": on_decodes.predict(decoded["test"])}
    table = {k: factor_scores(v, data.test_factors, names, data.factor_kinds) for k, v in rows.items()}
    io.save_json(args.out.with_suffix(".json"), {"scores": table, "seconds_training": round(time.time() - start, 1),
                                                 "test_instances": len(data.test)})
    lines = ["| predictor | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for k, scores in table.items():
        lines.append(f"| {k} | " + " | ".join(f"{next(iter(s.values())):.2f}" for s in scores.values()) + " |")
    io.save_text(args.out.with_suffix(".md"), "R^2 (accuracy for categorical factors)\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
