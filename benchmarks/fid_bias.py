"""How FID moves with the number of generated samples, for one trained model.

    python benchmarks/fid_bias.py --counts 500 1000 2000 5000 --out benchmarks/results/cpu/fid_vs_samples

Run in a workspace after `dvc repro` (it reads data/fit_loe/loe.pt,
data/hcdm/hcdm.pt and the train-split Inception features of
data/reference/reference.npz). Draws max(--counts) chains once (seeded, the
params' sampler and DDIM steps), renders them, extracts Inception features
once, and scores the first n of them for each n, so every row is the same
model and the same samples, only fewer of them. FID is biased upwards at
small n (Chong & Forsyth 2020): the rows show by how much on this data, which
is why `metrics/generation.json` calls its figure FID@n and why it is not laid
beside Table 1's FID@50000. Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pipeline import config, io  # noqa: E402
from pipeline.modalities import scoring
from pipeline.modalities.image import fid
from pipeline.artifacts import REFERENCE  # noqa: E402
from pipeline.generation import load_trained, sample_latents  # noqa: E402


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--counts", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    a.add_argument("--params", type=Path, default=Path("params.yaml"))
    a.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu/fid_vs_samples"))
    args = a.parse_args()
    cfg = config.load(args.params)
    e, s = cfg.evaluate, cfg.sample
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    data, loe, hcdm = load_trained("cpu")
    m = data.modality
    real = io.load_npz(REFERENCE)["features"]
    n_max = max(args.counts)

    t = time.time()
    latents = sample_latents(hcdm, n_max, generator, s.sampler, s.ddim_steps, e.batch_size)
    pictures = m.to_pictures(loe.render(m.coordinates(), latents, e.batch_size))
    t_sample = time.time() - t
    t = time.time()
    feats = fid.inception_features(pictures, progress=True)
    t_inception = time.time() - t

    rows = []
    for n in sorted(args.counts):
        f = feats[:n]
        kid_mean, kid_std = scoring.kid(real, f, e.kid_subsets, e.kid_subset_size, seed=cfg.seed)
        precision, recall = scoring.precision_recall(real, f, e.pr_k)
        rows.append({"samples": n, "fid": round(scoring.frechet_distance_of(real, f), 3),
                     "kid": round(kid_mean, 5), "kid_std": round(kid_std, 5),
                     "precision": round(precision, 4), "recall": round(recall, 4)})
        print(rows[-1], flush=True)
    out = {"rows": rows, "reference": {"split": "train", "size": len(real)},
           "model": {"binary_len": cfg.binary_len, "sampler": s.sampler, "ddim_steps": s.ddim_steps,
                     "resolution": cfg.dataset.resolution, "source": cfg.dataset.source},
           "seconds": {"sample_and_render": round(t_sample, 1), "inception": round(t_inception, 1)},
           "machine": f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"}
    io.save_json(args.out.with_suffix(".json"), out)
    lines = ["| generated samples | FID | KID | precision | recall |", "|---|---|---|---|---|"]
    lines += [f"| {r['samples']} | {r['fid']:.2f} | {r['kid']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} |"
              for r in rows]
    io.save_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
