"""How fast the default Stage-1 step's matmuls run on their own: the ceiling of an eager fp32 step.

    python benchmarks/matmul_floor.py [PARAMS]          # params.yaml by default

Records one outer step's matmuls (torch.profiler: every bmm / mm / baddbmm / addmm with its
shapes), then times each one alone on random inputs of those shapes, and prints the sum: the
step's time if nothing but its matmuls ran, and their share of the step. Compare with
`benchmarks/speed.py --presets params.yaml` on the same machine (benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline import config  # noqa: E402
from pipeline.loe import LayersOfExperts  # noqa: E402
from pipeline.meta import MetaLearner, MetaSGD  # noqa: E402
from pipeline.modalities.plugins import build  # noqa: E402
from pipeline.stages.process import keep_freed_memory  # noqa: E402


def main(params: Path) -> None:
    keep_freed_memory()
    cfg = config.load(params)
    c, f = cfg.loe, cfg.fit_loe
    m = build(cfg.dataset.modality, resolution=cfg.dataset.resolution)   # the LoE's sizes, as speed.py builds it
    torch.manual_seed(0)
    model = LayersOfExperts(m.d_in, m.d_out, c.layers, c.experts, c.width, c.latent_dim, c.w0, c.variant)
    learner = MetaLearner(model, MetaSGD(c.layers, c.latent_dim, *f.meta_sgd_init), m, f)
    points = f.points_per_step or len(m.coordinates())
    coords = torch.rand(f.batch_size, points, m.d_in) * 2 - 1
    targets = torch.rand(f.batch_size, points, m.d_out) * 2 - 1

    def step():
        learner.step_loss(coords, targets, torch.Generator().manual_seed(0)).mean().backward()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(10):
        step()
    step_ms = (time.perf_counter() - start) * 100
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    calls = collections.Counter((e.name, tuple(tuple(s) for s in e.input_shapes if s)) for e in prof.events()
                                if e.name in ("aten::bmm", "aten::mm", "aten::baddbmm", "aten::addmm"))
    rows, total, flops = [], 0.0, 0.0
    for (name, shapes), n in calls.items():
        args = [torch.randn(*s) for s in shapes]
        op = getattr(torch, name.split("::")[1])
        for _ in range(3):
            op(*args)
        start = time.perf_counter()
        for _ in range(20):
            op(*args)
        seconds = (time.perf_counter() - start) / 20
        a, b = shapes[-2], shapes[-1]
        flop = 2 * (a[0] if len(a) == 3 else 1) * a[-2] * a[-1] * b[-1]
        total, flops = total + n * seconds, flops + n * flop
        rows.append((n * seconds * 1000, name, shapes, n, flop / seconds / 1e9))
    for ms, name, shapes, n, rate in sorted(rows, reverse=True)[:12]:
        print(f"{ms:7.2f} ms  {name} {list(shapes)} x{n}  {rate:.0f} GFLOP/s")
    print(f"step {step_ms:.1f} ms; its matmuls alone {total * 1000:.1f} ms ({flops / 1e9:.2f} GFLOP, "
          f"{flops / total / 1e9:.0f} GFLOP/s): {100 * total * 1000 / step_ms:.0f}% of the step")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("params", nargs="?", type=Path, default=ROOT / "params.yaml", help="a params file (default: %(default)s)")
    main(p.parse_args().params)
