"""What every training loop here shares: seeding, the LR schedule, the per-step
log that `dvc plots` draws, and checkpoints that let an interrupted stage resume.

A checkpoint carries a fingerprint of everything that defines the run (params
and data). A stage resumes only from a checkpoint with its own fingerprint;
any other is ignored, so changing params can never continue a stale run.
"""
from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import math
import random
from pathlib import Path

import numpy as np
import torch

from . import io


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fingerprint(*parts) -> str:
    """Stable hash of JSON-able parts (params sections, data descriptions)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_digest() -> str:
    """Digest of the package's source, so that a code change never resumes an old checkpoint."""
    h = hashlib.md5()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base LR, then cosine decay to 0 at `total` steps."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class StepLog:
    """Per-step metrics kept in memory and written as CSV for `dvc plots`."""

    def __init__(self, path: str | Path, rows: list[dict] | None = None):
        self.path = Path(path)
        self.rows = list(rows or [])

    def append(self, **row) -> None:
        self.rows.append(row)

    def write(self) -> None:
        if not self.rows:
            return
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.rows[0]))
        writer.writeheader()
        writer.writerows(self.rows)
        io.save_text(self.path, buf.getvalue())


class Checkpointer:
    def __init__(self, path: str | Path, fingerprint: str, every: int):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.every = every

    def load(self) -> dict | None:
        """The saved state of this very run, or None (no file, or another run's)."""
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != self.fingerprint:
            print(f"[checkpoint] {self.path} belongs to other params or data: starting afresh")
            return None
        print(f"[checkpoint] resuming from {self.path} at step {state['step']}")
        return state

    def due(self, step: int, total: int) -> bool:
        return step % self.every == 0 or step == total

    def save(self, state: dict) -> None:
        io.save_torch(self.path, {**state, "fingerprint": self.fingerprint})


def rng_state(generator: torch.Generator) -> dict:
    return {"generator": generator.get_state(), "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng(generator: torch.Generator, state: dict) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def train_loop(step_fn, modules: dict[str, torch.nn.Module], params: list[torch.nn.Parameter],
               optimizer: torch.optim.Optimizer, scheduler, total: int, grad_clip: float, log_every: int,
               checkpointer: Checkpointer, log: StepLog, generator: torch.Generator, desc: str,
               after_step=None, progress: bool = True) -> None:
    """The shared outer loop: resume, step, clip, log, checkpoint.

    `step_fn(step)` returns (loss, metrics) for one batch; `after_step()` runs
    after each optimiser step (EMA updates). Every module in `modules` and the
    optimiser, scheduler, RNG streams and log are checkpointed together, so a
    resumed run continues exactly where the interrupted one stopped.
    """
    from tqdm import tqdm

    from .distributed import average_gradients, is_main, world_size

    main = is_main()
    start = 0
    state = checkpointer.load()
    if state is not None:
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(generator, state["rng"])
        log.rows = state["log"]
        start = state["step"]
        if world_size() > 1:   # the checkpoint holds rank 0's streams: give every process its own again
            generator.manual_seed(generator.initial_seed() * 1_000_003 + start)

    bar = tqdm(range(start, total), initial=start, total=total, desc=desc, disable=not (progress and main))
    for step in bar:
        loss, metrics = step_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step()
        done = step + 1
        if done % log_every == 0 or done == total:
            row = {"step": done, "loss": round(loss.item(), 6),
                   **{k: round(float(v), 4) for k, v in metrics.items()},
                   "grad_norm": round(grad_norm.item(), 4), "lr": scheduler.get_last_lr()[0]}
            log.append(**row)
            bar.set_postfix({k: row[k] for k in ("loss", *metrics)})
        if main and checkpointer.due(done, total):
            checkpointer.save({"step": done, "modules": {k: m.state_dict() for k, m in modules.items()},
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "rng": rng_state(generator), "log": log.rows})
            log.write()
