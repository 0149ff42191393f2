"""Do the fused Triton kernels (`fit_loe.kernel: triton`) give the eager path's numbers at a preset's sizes?

    python benchmarks/fused_check.py pipeline/presets/celebahq64.yaml --batch 4 --out fused_check.json
    TRITON_INTERPRET=1 python benchmarks/fused_check.py params.yaml --batch 2 --points 64   # a CPU check

On the device it finds (a GPU, or the CPU under Triton's interpreter), the
preset's LoE at its sizes on random inputs: the forward pass, the hand-written
inner gradient and the outer gradient of every parameter through the preset's
inner steps, for `fit_loe.kernel` torch and triton at fp32 and TF32 (a GPU),
each against the same computation in float64. Reports the largest error of
each relative to the largest float64 value: the fused path is right where its
error is of the eager path's size at the same precision.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline import config, loe_triton  # noqa: E402
from pipeline.loe import LayersOfExperts  # noqa: E402
from pipeline.meta import MetaSGD, inner_loop, per_instance_mse  # noqa: E402
from pipeline.modalities.plugins import build  # noqa: E402
from pipeline.preset import compose  # noqa: E402


def quantities(model, rates, coords, latents, targets, inner_steps):
    """Forward, inner gradient, and the outer gradients through `inner_steps` inner steps, flattened."""
    model.zero_grad()
    rates.zero_grad()
    out = model(coords, latents).detach()
    grad = model.latent_grad(coords, latents, targets).detach()
    h = inner_loop(model, rates(), coords, targets, latents, inner_steps, 1.0, create_graph=True)
    per_instance_mse(model(coords, h), targets).mean().backward()
    outer = torch.cat([p.grad.flatten() for p in (*model.parameters(), *rates.parameters())])
    return {"forward": out.flatten(), "inner_gradient": grad.flatten(), "outer_gradient": outer.clone()}


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("preset", type=Path)
    a.add_argument("--batch", type=int, default=4)
    a.add_argument("--points", type=int, default=None, help="points per instance (default: the preset's)")
    a.add_argument("--out", type=Path, default=None)
    args = a.parse_args()

    cfg = config.from_dict(compose(args.preset)[1])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    m = build(cfg.dataset.modality, resolution=cfg.dataset.resolution)
    L, H = cfg.loe.layers, cfg.loe.latent_dim
    points = args.points or cfg.fit_loe.points_per_step or len(m.coordinates())
    torch.manual_seed(0)
    model = LayersOfExperts(m.d_in, m.d_out, L, cfg.loe.experts, cfg.loe.width, H, cfg.loe.w0, cfg.loe.variant)
    rates = MetaSGD(L, H, *cfg.fit_loe.meta_sgd_init)
    coords = torch.rand(args.batch, points, m.d_in) * 2 - 1
    latents = torch.randn(args.batch, L, H) * 0.1
    targets = torch.rand(args.batch, points, m.d_out) * 2 - 1
    inputs = (coords, latents, targets)

    def run(kernel, dtype, tf32):
        model.to(device, dtype)
        rates.to(device, dtype)
        loe_triton.use(model, kernel, device)   # triton where it cannot run: one line, not Triton's error
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            return quantities(model, rates, *(x.to(device, dtype) for x in inputs), cfg.fit_loe.inner_steps)
        finally:
            model.kernel = "torch"
            torch.backends.cuda.matmul.allow_tf32 = False

    reference = run("torch", torch.float64, False)
    results = {"preset": args.preset.name, "device": torch.cuda.get_device_name() if device.type == "cuda"
               else "cpu (Triton interpreter)", "batch": args.batch, "points": points,
               "inner_steps": cfg.fit_loe.inner_steps, "error_relative_to_largest_float64_value": {}}
    for precision in ("fp32", "tf32") if device.type == "cuda" else ("fp32",):
        for kernel in ("torch", "triton"):
            got = run(kernel, torch.float32, precision == "tf32")
            errors = {name: float((got[name].double() - ref).abs().max() / ref.abs().max())
                      for name, ref in reference.items()}
            results["error_relative_to_largest_float64_value"][f"{kernel}:{precision}"] = errors
            print(f"{kernel:>6}:{precision}  " + "  ".join(f"{k} {v:.2e}" for k, v in errors.items()), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except config.ConfigError as e:   # e.g. triton without a GPU or TRITON_INTERPRET=1
        sys.exit(f"error: {e}")
