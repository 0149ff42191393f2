"""How much FID depends on the input preprocessing, for one trained model and one set of samples.

    python benchmarks/fid_preprocessing.py --samples 500 --out benchmarks/results/cpu/fid_preprocessing

Run in a workspace after `dvc repro` (it reads data/prepared, data/fit_loe/loe.pt and data/hcdm/hcdm.pt).
Draws --samples chains once (seeded, the params' sampler and DDIM steps) and scores them against the
train split, with the train images' features extracted again under each preprocessing:

- `pipeline`: bilinear at half-pixel centres (align_corners=False, pytorch-fid's and mNIF's), then the
  TF graph's (x - 128) / 128 (`pipeline/modalities/image/fid.py`);
- `mnif`: the same resize, then pytorch-fid's 2 x / 255 - 1;
- `tf1_resize`: TF1's ResizeBilinear, which samples source pixel i * in / out, then (x - 128) / 128.

Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pipeline import config, io  # noqa: E402
from pipeline.generation import load_trained, sample_latents  # noqa: E402
from pipeline.modalities import scoring  # noqa: E402
from pipeline.modalities.image import fid  # noqa: E402

SIZE = fid.INPUT_SIZE


def pixels(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def tf1_resize(x: torch.Tensor) -> torch.Tensor:
    """Bilinear with output pixel i read at source i * in / out (TF1's align_corners=False), edges clamped."""
    n, _, h, w = x.shape
    theta = torch.eye(2, 3).repeat(n, 1, 1)
    theta[:, 0, 2] += 1 / w - 1 / SIZE                  # shifts half-pixel sampling to i * in / out
    theta[:, 1, 2] += 1 / h - 1 / SIZE
    grid = F.affine_grid(theta, [n, 3, SIZE, SIZE], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def half_pixel(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


VARIANTS = {
    "pipeline": fid.preprocess,
    "mnif": lambda images: half_pixel(pixels(images)) * (2 / 255) - 1,
    "tf1_resize": lambda images: tf1_resize(pixels(images)) / 128.0 - 1.0,
}


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--samples", type=int, default=500)
    a.add_argument("--params", type=Path, default=Path("params.yaml"))
    a.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu/fid_preprocessing"))
    args = a.parse_args()
    cfg = config.load(args.params)
    e, s = cfg.evaluate, cfg.sample
    generator = torch.Generator().manual_seed(cfg.seed)
    data, loe, hcdm = load_trained("cpu")
    m = data.modality
    latents = sample_latents(hcdm, args.samples, generator, s.sampler, s.ddim_steps, e.batch_size)
    generated = m.to_pictures(loe.render(m.coordinates(), latents, e.batch_size))
    train = m.to_pictures(m.targets(data.train))
    rows, start = [], time.time()
    for name, preprocess in VARIANTS.items():
        fid.preprocess = preprocess                     # what inception_features calls on each batch
        real, fake = fid.inception_features(train, progress=True), fid.inception_features(generated, progress=True)
        rows.append({"preprocessing": name, "fid": round(scoring.frechet_distance_of(real, fake), 3)})
        print(rows[-1], flush=True)
    out = {"rows": rows, "samples": args.samples, "reference": {"split": "train", "size": len(train)},
           "seconds": round(time.time() - start, 1), "machine": f"torch {torch.__version__}, "
                                                          f"{torch.get_num_threads()} CPU threads"}
    io.save_json(args.out.with_suffix(".json"), out)
    lines = ["| preprocessing | FID |", "|---|---|"] + [f"| {r['preprocessing']} | {r['fid']:.3f} |" for r in rows]
    io.save_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
