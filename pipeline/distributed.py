"""Devices and data-parallel training under `torchrun`, with the same code as one process.

Launched as `torchrun --nproc_per_node N -m pipeline.stages.fit_loe` (or
train_hcdm), every process builds the same model from the same seed, draws
its own batches (its generator is seeded with seed + rank) and, after each
backward pass, averages the gradients over the processes. The effective
batch is N x batch_size. Only rank 0 writes checkpoints, logs and artifacts.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .config import ConfigError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_environment(device: torch.device) -> None:
    """Join the process group that torchrun describes in the environment (no-op otherwise)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def resolve_device(name: str) -> torch.device:
    """`auto`: a GPU when there is one (this process's under torchrun), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: '{name}' asked for, but torch sees no CUDA device (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device: '{name}' asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def broadcast_from_main(tensors: list[torch.Tensor]) -> None:
    """Give every process rank 0's values of `tensors` (e.g. state drawn from a per-rank generator)."""
    if world_size() == 1:
        return
    for t in tensors:
        dist.broadcast(t.data, src=0)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """All-reduce each gradient to its mean over the processes."""
    n = world_size()
    if n == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(n)


def _on_backend(t: torch.Tensor) -> torch.Tensor:
    """`t` where the process group's backend takes it: the process's GPU under NCCL, else where it is."""
    return t.to(torch.device("cuda", torch.cuda.current_device())) if dist.get_backend() == "nccl" else t


def all_gather(t: torch.Tensor) -> list[torch.Tensor] | None:
    """Every process's `t` (same shape and dtype everywhere) by rank, on the CPU; None for one process."""
    n = world_size()
    if n == 1:
        return None
    x = _on_backend(t)
    out = [torch.empty_like(x) for _ in range(n)]
    dist.all_gather(out, x)
    return [o.cpu() for o in out]


def average(t: torch.Tensor) -> torch.Tensor:
    """The mean of `t` over the processes (`t` itself for one process)."""
    n = world_size()
    if n == 1:
        return t
    x = _on_backend(t).clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return (x / n).to(t.device)
