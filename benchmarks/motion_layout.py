"""Which coordinates for motion: t -> 165 values per frame, or (t, d) -> 1 value per grid cell?

    python benchmarks/motion_layout.py --seconds 120 --out benchmarks/results/cpu/motion_layout.json

The paper calls an AMASS instance a 200 x 165 grid. Both readings are fitted
here with the same LoE size and w0 (the motion preset's (5, 64, 64, 64) and 5) on the same
embedded motions, by Stage-1's meta-learning for the same wall-clock time each
(one after the other, alone on the machine), then the held-out clips are
fitted from zero with the inner loop and scored in normalised MSE, PSNR and
joint rotation error. (t, d) sees `--points` random cells per step (all
33,000 would make a step ~90x dearer than the 200 frames of t -> 165).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import config  # noqa: E402
from pipeline.loe import LayersOfExperts  # noqa: E402
from pipeline.meta import MetaLearner, MetaSGD, fit_latents  # noqa: E402
from pipeline.modalities.motion.modality import MotionModality  # noqa: E402
from pipeline.modalities.motion.skeleton import VALUES  # noqa: E402
from pipeline.modalities.motion import synthetic  # noqa: E402
from pipeline.training import seed_everything  # noqa: E402


class GridMotion(MotionModality):
    """The same motions read as a 2-D grid: (t, d) in [-1, 1]^2 -> one normalised value."""

    d_in, d_out = 2, 1

    def coordinates(self, scale: float = 1.0) -> torch.Tensor:
        t = torch.linspace(-1, 1, self._side(scale))
        d = torch.linspace(-1, 1, VALUES)
        tt, dd = torch.meshgrid(t, d, indexing="ij")
        return torch.stack([tt, dd], -1).reshape(-1, 2)

    def targets(self, signals):
        return super().targets(signals).reshape(len(signals), -1, 1)

    def poses(self, values):
        return super().poses(values.reshape(len(values), -1, VALUES))

    def reconstruction_metrics(self, values, targets):
        return super().reconstruction_metrics(values.reshape(len(values), -1, VALUES),
                                              targets.reshape(len(targets), -1, VALUES))


def run(m, train, test, seconds: float, points, batch: int, w0: float) -> dict:
    g = seed_everything(0)
    model = LayersOfExperts(m.d_in, m.d_out, 5, 64, 64, 64, w0)
    meta = MetaSGD(5, 64, 0.005, 0.1)
    cfg = config.FitLoE(steps=10 ** 6, batch_size=batch, lr=2.5e-3, points_per_step=points, log_every=10 ** 6)
    learner = MetaLearner(model, meta, m, cfg)
    opt = learner.optimizer()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        idx = torch.randint(len(train), (batch,), generator=g).numpy()
        coords, targets = m.sample_points(train[idx], points, g)
        loss = learner.step_loss(coords, targets, g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(meta.parameters()), 1.0)
        opt.step()
        steps += 1
    trained = time.perf_counter() - start          # the training loop alone: the test fit below is not timed
    _, scores = fit_latents(model, meta, m, test, 3, 1.0, 64, progress=False)
    return {"steps": steps, "seconds": round(trained, 1), "step_ms": round(1e3 * trained / steps, 1),
            **{k: round(float(np.mean(v)), 4) for k, v in scores.items()}}


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--seconds", type=float, default=120)
    a.add_argument("--points", type=int, default=4096, help="(t, d) cells per instance per step")
    a.add_argument("--w0", type=float, default=5.0, help="the motion preset's (30 does not learn motion; docs/modalities/motion.md)")
    a.add_argument("--train", type=int, default=1000)
    a.add_argument("--test", type=int, default=100)
    a.add_argument("--out", type=Path, default=None)
    args = a.parse_args()
    poses, _ = synthetic.generate(args.train + args.test, 200, seed=0)
    train, test = poses[:args.train], poses[args.train:]
    report = {"seconds_each": args.seconds, "loe": [5, 64, 64, 64], "w0": args.w0, "train": args.train, "test": args.test,
              "threads": torch.get_num_threads()}
    for name, m, points in (("t_to_165", MotionModality(200), None), ("td_to_1", GridMotion(200), args.points)):
        m.fit_to_train(train)
        report[name] = run(m, train, test, args.seconds, points, 32, args.w0)
        print(name, report[name], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
