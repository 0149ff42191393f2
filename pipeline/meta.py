"""Stage-1: CAVIA-style meta-learning of the LoE (paper sec. 3.2).

Inner loop: a few gradient steps on the latents only, from (near) zero, with
Meta-SGD per-dimension learning rates. Outer loop: AdamW on the shared
weights, the gates and the Meta-SGD rates, through the inner loop (second
order) unless `first_order` (the inner gradients then constants, as mNIF's).

The inner loss is the SUM over instances of each instance's mean squared
error. Each latent's gradient then depends on its own instance alone, so the
inner step does not shrink with the batch size (mNIF's batch-mean loss does:
at its batch of 32 an instance's inner step is 1/32 of ours at the same inner
lr; Functa's per-example inner loop does not).
"""
from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts
from .progress import bar

from . import artifacts, io
from .errors import DataError
from .config import FitLoE
from .loe import LayersOfExperts
from .modalities.base import Modality
from .training import Checkpointer, DivergenceGuard, StepLog, train_loop, warmup_cosine

KNOBS = "fit_loe.lr, fit_loe.inner_lr or fit_loe.meta_sgd_init"


def precision_context(precision: str, device: torch.device):
    """The arithmetic of Stage-1's training step: fp32 (the reference), tf32 (CUDA only) or bf16.

    tf32 runs fp32 matmuls on tensor cores with 10-bit mantissas (a global
    switch, so the context must cover the backward pass too); bf16 runs the
    forward under autocast (`autocast_context`, on a CPU too), and autograd runs the backward in the
    same types. tf32 changes nothing on a CPU.
    """
    stack = contextlib.ExitStack()
    if device.type == "cuda" and precision in ("tf32", "bf16"):
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        stack.callback(setattr, torch.backends.cuda.matmul, "allow_tf32", old)
    return stack


def autocast_context(precision: str, device: torch.device):
    """bf16 autocast of the forward pass (GPU or CPU); a no-op otherwise. On 2 CPU cores with
    AVX512-BF16 the default's step takes 133-136 ms against 208-217 ms in fp32; a CPU without it
    emulates bf16 (slower than fp32), so `fit_loe` runs fp32 there and says so."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class MetaSGD(nn.Module):
    """Per-dimension inner learning rates, one per latent entry (L, H), clamped to [0, 1]."""

    def __init__(self, layers: int, latent_dim: int, low: float, high: float):
        super().__init__()
        self.rates = nn.Parameter(torch.empty(layers, latent_dim).uniform_(low, high))

    def forward(self) -> torch.Tensor:
        return self.rates.clamp(0, 1)


def per_instance_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, P, D) pair -> (B,) mean squared error of each instance."""
    return ((pred - target) ** 2).flatten(1).mean(1)


def mse_to_psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR of values in [-1, 1] measured as images in [0, 1] (MSE / 4)."""
    return -10 * torch.log10((mse / 4).clamp_min(1e-12))


def inner_loop(model: LayersOfExperts, rates: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor,
               latents: torch.Tensor, steps: int, lr: float, create_graph: bool) -> torch.Tensor:
    """Adapt latents (B, L, H) to targets (B, P, D); the shared weights stay fixed.

    The gradient is `LayersOfExperts.latent_grad`, written out by hand: the
    same numbers as torch.autograd.grad of the summed per-instance MSE (a test
    checks it in float64), 3-11% less time per meta-learning step on 2 CPU
    cores (303 vs 314-342 ms at the default's sizes), and a plain forward graph that
    torch.compile can trace (`fit_loe.compile`). With `create_graph` the
    outer loop differentiates through it (second order).
    """
    h = latents
    for _ in range(steps):
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            grad = model.latent_grad(coords, h, targets)
        h = h - lr * rates * grad
    return h


def reconstruct(field, modality: Modality, signals: np.ndarray, latents: torch.Tensor,
                batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per-instance reconstruction metrics of fitted latents (N, L, H), `batch_size` instances at a time,
    decoded where the modality compares them with their signals (the full grid; a NeRF's held-out views)."""
    metrics: dict[str, list] = {}
    for first in range(0, len(signals), batch_size):
        coords, targets = modality.evaluation_points(signals[first:first + batch_size])
        values = field.render(coords, latents[first:first + batch_size])
        for name, v in modality.reconstruction_metrics(values, targets).items():
            metrics.setdefault(name, []).append(v)
    return {k: np.concatenate(v) for k, v in metrics.items()}


def fit_latents(model: LayersOfExperts, meta_sgd: MetaSGD, modality: Modality, signals: np.ndarray,
                steps: int, lr: float, batch_size: int, points: int | None = None, surface_fraction: float = 0.0,
                seed: int = 0, progress: bool = True, score: bool = True) -> tuple[torch.Tensor, dict]:
    """Latents of every instance from zero with the meta-learned inner loop.

    The inner loop sees `points` coordinates per instance (all when None),
    drawn by the modality with a generator seeded from `seed` and the batch
    start, so a latent does not depend on what else is being fitted. The
    reconstruction metrics decode the full grid. Returns latents (N, L, H) on
    the CPU and per-instance metrics (none with `score` false). Runs on the model's device.
    """
    device = model.weights[0].device
    field = modality.field(model)
    rates = meta_sgd().detach()
    latents = []
    starts = range(0, len(signals), batch_size)
    for start in bar(starts, desc="fit latents", disable=not progress, leave=False):
        batch = signals[start:start + batch_size]
        draw = torch.Generator().manual_seed(seed * 1_000_003 + start)
        coords, targets = modality.sample_points(batch, points, draw, surface_fraction, device)
        zero = torch.zeros(len(batch), model.layers, model.latent_dim, device=device)
        latents.append(inner_loop(field, rates, coords, targets, zero, steps, lr, create_graph=False).detach().cpu())
    latents = torch.cat(latents)
    return latents, reconstruct(field, modality, signals, latents, batch_size) if score else {}


def _must_save(*_, **__):
    return CheckpointPolicy.MUST_SAVE


_SAVE_ALL = functools.partial(create_selective_checkpoint_contexts, _must_save)   # a checkpoint's context_fn


def _no_in_place_note(record: logging.LogRecord) -> bool:
    """Drops torch's note, on compiling a checkpoint policy, to keep in-place ops out of it: the step has none."""
    return "context_fn is passed to torch.utils.checkpoint" not in record.getMessage()


@dataclass
class MetaLearner:
    model: LayersOfExperts
    meta_sgd: MetaSGD
    modality: Modality
    cfg: FitLoE
    device: torch.device = torch.device("cpu")

    def __post_init__(self):
        # fit_loe.compile: the whole step (inner loop by the hand-written gradient, outer
        # loss) traced once and fused by torch.compile; autograd then differentiates the
        # compiled graph for the outer gradient. Shapes are fixed for a run (batch, points).
        # On a GPU it is replayed as CUDA graphs (mode reduce-overhead): CelebA preset's
        # step on one H200 at TF32, 35.1 ms eager, 23.6 ms compiled, 21.3 ms as graphs
        # (benchmarks/results/h200/compile). A CPU has no graphs: plain compile.
        self.field = self.modality.field(self.model)     # the LoE itself, or what renders through it
        self.graphs = self.cfg.compile and self.device.type == "cuda"
        mode = "reduce-overhead" if self.graphs else None
        self.outer = self.outer_loss
        if self.cfg.compile:
            cpu = self.device.type == "cpu"
            if cpu:
                logging.getLogger("torch._higher_order_ops.wrap").addFilter(_no_in_place_note)
            self.outer = torch.compile(self._outer_loss_saving_all if cpu else self.outer_loss, mode=mode,
                                       dynamic=False, fullgraph=True)

    def _outer_loss_saving_all(self, coords: torch.Tensor, targets: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        """outer_loss with every value the backward reads saved by the forward, as eager does (compiled on a CPU).

        Left to itself, the compiler's partitioner saves each layer's pre-activation and recomputes sin and
        cos from it in the backward kernels (it counts them as cheap element-wise work, as they are on a GPU):
        56 full-size passes with a sin or cos in a default step against eager's 32, each about 0.5 ms on 2 CPU cores.
        Saved instead, the compiled default step on 2 AMD EPYC cores (AVX-512) takes 121-130 ms against
        134-142 ms (medians of 60 steps, three alternating runs; eager 175-181 ms): benchmarks/README.md.
        """
        return checkpoint(self.outer_loss, coords, targets, init, use_reentrant=False, context_fn=_SAVE_ALL)

    def outer_loss(self, coords: torch.Tensor, targets: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        """Per-instance MSE after the inner loop from `init`, (B,)."""
        c = self.cfg
        # First order (mNIF's first_order): the inner gradients are constants, but h stays a function of the
        # Meta-SGD rates through its updates h - lr * rates * grad, so the rates still learn.
        h = inner_loop(self.field, self.meta_sgd(), coords, targets, init, c.inner_steps, c.inner_lr,
                       create_graph=not c.first_order)
        return per_instance_mse(self.field(coords, h), targets)

    def step_loss(self, coords: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Outer loss: per-instance MSE after the inner loop, (B,)."""
        c = self.cfg
        # Random numbers come from the CPU generator, so a run is the same on any device count.
        init = (torch.randn(len(targets), self.model.layers, self.model.latent_dim, generator=generator)
                * c.init_std).to(targets.device)
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()   # the last step's outputs are no longer read
        return self.outer(coords, targets, init)

    def optimizer(self) -> torch.optim.AdamW:
        """AdamW over the LoE's groups (experts at lr / sqrt(K)), the Meta-SGD rates at the base lr."""
        groups = self.model.param_groups(self.cfg.lr)
        groups[0]["params"] += list(self.meta_sgd.parameters())
        # On a GPU one fused kernel per parameter group (1.4 ms of a 21 ms CelebA-preset step
        # went to the multi-kernel AdamW); a CPU keeps the reference implementation.
        return torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay,
                                 fused=True if self.device.type == "cuda" else None)

    def fit(self, train: np.ndarray, checkpointer: Checkpointer, log: StepLog, generator: torch.Generator,
            progress: bool = True) -> None:
        c = self.cfg
        params = list(self.model.parameters()) + list(self.meta_sgd.parameters())
        optimizer = self.optimizer()
        scheduler = warmup_cosine(optimizer, c.warmup_steps, c.steps)

        def step(_: int):
            idx = torch.randint(len(train), (min(c.batch_size, len(train)),), generator=generator).numpy()
            coords, targets = self.modality.sample_points(train[idx], c.points_per_step, generator,
                                                          c.near_surface_fraction, self.device)
            with autocast_context(c.precision, self.device):
                mse = self.step_loss(coords, targets, generator).float()
            return mse.mean(), {"psnr": mse_to_psnr(mse.detach()).mean()}

        with precision_context(c.precision, self.device):
            train_loop(step, {"model": self.model, "meta_sgd": self.meta_sgd}, params, optimizer, scheduler,
                       c.steps, c.grad_clip, c.log_every, checkpointer, log, generator, "fit_loe", progress=progress,
                       guard=DivergenceGuard("fit_loe", KNOBS, quality="psnr"))


def inner_steps_for(setting: int | None, trained: dict) -> int:
    """The inner steps a new instance is fitted with: `export_latents.inner_steps`, or where it is null the
    steps the model was trained with (`load_loe`'s record)."""
    return trained["inner_steps"] if setting is None else setting


def save_loe(path: Path, model: LayersOfExperts, meta_sgd: MetaSGD, inner_steps: int, inner_lr: float,
             train_latents: torch.Tensor | None = None) -> None:
    """The LoE and what gives any instance its latent: the meta-learned inner loop (Meta-SGD rates, steps,
    lr), or, auto-decoded (`train_latents` given), the train split's latent table."""
    method = {} if train_latents is None else {"method": "autodecode", "train_latents": train_latents.detach().cpu()}
    io.save_torch(path, {"hyperparameters": model.hyperparameters(), "model": model.state_dict(),
                         "meta_sgd": meta_sgd.state_dict(), "inner_steps": inner_steps, "inner_lr": inner_lr,
                         **method})


def load_loe(path: Path = artifacts.LOE) -> tuple[LayersOfExperts, MetaSGD, dict]:
    """The trained LoE, its Meta-SGD rates and the inner-loop settings it was trained with."""
    state = io.load_torch(artifacts.require(path, "fit_loe"))
    io.check_finite_state(path, state, reading=True)
    model, meta_sgd = io.load_module(
        path, "a Stage-1 model",
        lambda: (LayersOfExperts(**state["hyperparameters"]),
                 MetaSGD(state["hyperparameters"]["layers"], state["hyperparameters"]["latent_dim"], 0.0, 0.0)),
        lambda: (state["model"], state["meta_sgd"]), settings=lambda: state["hyperparameters"])
    try:
        inner = {"inner_steps": int(state["inner_steps"]), "inner_lr": float(state["inner_lr"])}
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: not a Stage-1 model of this pipeline (inner loop: {e!r})") from None
    model.eval()
    return model, meta_sgd, {**inner, "method": state.get("method", "meta"), "train_latents": state.get("train_latents")}
