"""Throughput and memory of a preset's Stage-1 and Stage-2 training steps, and a
short end-to-end run of every stage on the preset's model sizes.

    python benchmarks/paper_scale.py pipeline/presets/shapenet64.yaml --out bench.json

Part 1 times `--steps` optimisation steps of the preset's exact LoE / Meta-SGD
step (batch, points per step, second order) and HCDM step on random data of
the right shapes, and projects the preset's full schedule. Part 2 (unless
--no-stages) runs prepare .. analyze in a temporary folder on the embedded
synthetic data at the preset's resolution and model sizes, with the step
counts cut down, so every stage's device path runs once. Numbers are for the
machine it runs on; no GPU is needed, but a CPU run of a paper preset is slow.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import config  # noqa: E402
from pipeline.distributed import resolve_device  # noqa: E402
from pipeline.hcdm import HCDM  # noqa: E402
from pipeline.loe import LayersOfExperts  # noqa: E402
from pipeline.meta import MetaLearner, MetaSGD  # noqa: E402
from pipeline.modality import build  # noqa: E402


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, steps: int, device) -> float:
    step()                                   # warm-up: allocation, kernel selection
    synchronise(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronise(device)
    return (time.perf_counter() - start) / steps


def stage1_step(cfg, device):
    d = cfg.dataset
    m = build(d.modality, resolution=d.resolution)
    model = LayersOfExperts(m.d_in, m.d_out, cfg.loe.layers, cfg.loe.experts, cfg.loe.width,
                            cfg.loe.latent_dim, cfg.loe.w0).to(device)
    meta = MetaSGD(cfg.loe.layers, cfg.loe.latent_dim, *cfg.fit_loe.meta_sgd_init).to(device)
    learner = MetaLearner(model, meta, m, cfg.fit_loe, device)
    opt = torch.optim.AdamW(list(model.parameters()) + list(meta.parameters()), lr=cfg.fit_loe.lr)
    b, p = cfg.fit_loe.batch_size, cfg.fit_loe.points_per_step or len(m.coordinates())
    g = torch.Generator().manual_seed(0)
    coords = (torch.rand(b, p, m.d_in) * 2 - 1).to(device)
    targets = (torch.rand(b, p, m.d_out) * 2 - 1).to(device)

    def step():
        loss = learner.step_loss(coords, targets, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step, sum(x.numel() for x in model.parameters())


def stage2_step(cfg, device):
    h = cfg.hcdm
    model = HCDM(cfg.loe.layers, cfg.loe.latent_dim, cfg.binary_len, h.variant, h.hidden, h.blocks,
                 h.timesteps, h.schedule, h.dropout).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=h.lr)
    latents = torch.randn(h.batch_size, cfg.loe.layers, cfg.loe.latent_dim, device=device)
    g = torch.Generator().manual_seed(0)

    def step():
        loss = model.loss(latents, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step, sum(x.numel() for x in model.parameters())


def run_stages(preset: dict, out: dict, device_name: str, report: Path | None = None) -> None:
    """prepare .. analyze on synthetic data with the preset's sizes and short schedules."""
    p = json.loads(json.dumps(preset))
    p["device"] = device_name
    p["dataset"].update(source="synthetic", path=None, synthetic={"train": 512, "test": 64})
    p["fit_loe"].update(steps=200, checkpoint_every=100, log_every=20, warmup_steps=20)
    p["hcdm"].update(steps=500, checkpoint_every=250, log_every=50, warmup_steps=50)
    p["evaluate"].update(memorisation_samples=64, fid_samples=64, kid_subset_size=64,
                         std_table={"samples": 64, "anchors": 4})
    p["factor_predictor"].update(steps=200)
    p["hierarchy"].update(anchors=4, completions=4)
    stages = ["prepare", "fit_loe", "export_latents", "reference", "factor_predictor", "train_hcdm", "sample",
              "evaluate", "hierarchy", "analyze"]
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "params.yaml").write_text(yaml.safe_dump(p))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        for stage in stages:
            t = time.time()
            r = subprocess.run([sys.executable, "-m", f"pipeline.stages.{stage}"], cwd=work, env=env,
                               capture_output=True, text=True)
            out.setdefault("stages", {})[stage] = {"seconds": round(time.time() - t, 1), "exit": r.returncode}
            if report:                       # after every stage, so a run cut short still reports
                report.write_text(json.dumps(out, indent=2) + "\n")
            print(stage, out["stages"][stage], flush=True)
            if r.returncode != 0:
                out["stages"][stage]["stderr"] = r.stderr[-2000:]
                return
        metrics = Path(work) / "metrics"
        out["stage_metrics"] = {name: json.loads((metrics / f"{name}.json").read_text())
                                for name in ("fit_loe", "reconstruction", "generation", "train_hcdm")}


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("preset", type=Path)
    a.add_argument("--steps", type=int, default=20, help="timed steps per stage")
    a.add_argument("--out", type=Path, default=None, help="JSON report (default: stdout only)")
    a.add_argument("--no-stages", action="store_true", help="skip the end-to-end stage run")
    args = a.parse_args()
    raw = yaml.safe_load(args.preset.read_text())
    cfg = config.from_dict(raw)
    device = resolve_device(cfg.device)
    torch.manual_seed(0)
    report = {"preset": str(args.preset), "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    for name, make, total in (("fit_loe", stage1_step, cfg.fit_loe.steps), ("train_hcdm", stage2_step, cfg.hcdm.steps)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step, params = make(cfg, device)
        seconds = time_steps(step, args.steps, device)
        report[name] = {"seconds_per_step": round(seconds, 4), "parameters": params,
                        "preset_steps": total, "projected_hours": round(seconds * total / 3600, 1)}
        if device.type == "cuda":
            report[name]["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
        print(name, report[name], flush=True)
    if not args.no_stages:
        run_stages(raw, report, str(device), args.out)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if all(s["exit"] == 0 for s in report.get("stages", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
