"""Ground-truth factors: a predictor trained on the real signals (images or
occupancy grids), and the measured hierarchy of control (how much of each
factor's variation is left once h^1..h^k are fixed) that the paper's fig. 5
shows only as pictures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from .progress import bar

from . import artifacts, io
from .errors import DataError


class FactorPredictor(nn.Module):
    """A small CNN: sequences (B, C, T), images (B, C, R, R) or grids (B, C, R, R, R) in [0, 1] -> every factor.

    Continuous factors are regressed in standardised units; a categorical
    factor with values 0..C-1 gets C logits. Grids are average-pooled to at
    most 32^3 first and read by strided 3-D convolutions (CPU budget).
    """

    def __init__(self, kinds: list[str], classes: list[int], mean: np.ndarray, std: np.ndarray,
                 channels: int = 3, dims: int = 2, width: int = 32):
        super().__init__()
        self.kinds, self.classes, self.channels, self.dims = list(kinds), list(classes), channels, dims
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        w = width
        if dims == 1:                  # sequences (B, C, T): motion, C = 165 values per frame
            self.features = nn.Sequential(
                nn.Conv1d(channels, 2 * w, 5, padding=2), nn.GELU(), nn.MaxPool1d(2),
                nn.Conv1d(2 * w, 2 * w, 5, padding=2), nn.GELU(), nn.MaxPool1d(2),
                nn.Conv1d(2 * w, 4 * w, 5, padding=2), nn.GELU(), nn.AdaptiveAvgPool1d(4), nn.Flatten(),
                nn.Linear(16 * w, 256), nn.GELU())
        elif dims == 2:
            self.features = nn.Sequential(
                nn.Conv2d(channels, w, 3, padding=1), nn.GELU(), nn.Conv2d(w, w, 3, padding=1), nn.GELU(),
                nn.MaxPool2d(2), nn.Conv2d(w, 2 * w, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
                nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                nn.Linear(64 * w, 256), nn.GELU())
        elif dims == 3:
            w = width // 2
            self.features = nn.Sequential(
                nn.AdaptiveAvgPool3d(32), nn.Conv3d(channels, w, 4, stride=2, padding=1), nn.GELU(),
                nn.Conv3d(w, 2 * w, 4, stride=2, padding=1), nn.GELU(),
                nn.Conv3d(2 * w, 4 * w, 4, stride=2, padding=1), nn.GELU(), nn.AdaptiveAvgPool3d(2), nn.Flatten(),
                nn.Linear(32 * w, 256), nn.GELU())
        else:
            raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
        self.head = nn.Linear(256, sum(c if k == "categorical" else 1 for k, c in zip(kinds, classes)))

    def hyperparameters(self) -> dict:
        return {"kinds": self.kinds, "classes": self.classes, "channels": self.channels, "dims": self.dims}

    def _split(self, out: torch.Tensor) -> list[torch.Tensor]:
        sizes = [c if k == "categorical" else 1 for k, c in zip(self.kinds, self.classes)]
        return list(out.split(sizes, dim=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._split(self.head(self.features(x)))

    def loss(self, x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for i, (kind, out) in enumerate(zip(self.kinds, self(x))):
            if kind == "categorical":
                total = total + F.cross_entropy(out, factors[:, i].long())
            else:
                total = total + F.mse_loss(out[:, 0], (factors[:, i] - self.mean[i]) / self.std[i])
        return total

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """(N, C, *spatial) in [0, 1] -> (N, F) predicted factor values."""
        self.eval()
        rows = []
        for x in inputs.split(batch_size):
            cols = [out.argmax(1).float() if kind == "categorical" else out[:, 0] * self.std[j] + self.mean[j]
                    for j, (kind, out) in enumerate(zip(self.kinds, self(x)))]
            rows.append(torch.stack(cols, 1))
        return torch.cat(rows).numpy()


LOG_EVERY = 10        # steps a curve row averages (the default's 1000 steps: 100 rows)
CURVE_COLUMNS = ("step", "loss", "lr")


def train_predictor(inputs, n: int, factors: np.ndarray, kinds: list[str], steps: int, batch_size: int,
                    lr: float, generator: torch.Generator, progress: bool = True, log=None) -> FactorPredictor:
    """`inputs(indices)` -> (B, C, *spatial) in [0, 1] for those of the n training instances; `log` (a
    training.StepLog) takes a row of CURVE_COLUMNS every LOG_EVERY steps: the mean loss since the last."""
    classes = [int(factors[:, i].max()) + 1 if k == "categorical" else 1 for i, k in enumerate(kinds)]
    probe = inputs(np.arange(1))
    model = FactorPredictor(kinds, classes, factors.mean(0), factors.std(0) + 1e-8,
                            channels=probe.shape[1], dims=probe.dim() - 2)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    y = torch.from_numpy(factors).float()
    model.train()
    since = []
    for step in bar(range(1, steps + 1), desc="factor predictor", disable=not progress):
        idx = torch.randint(n, (batch_size,), generator=generator)
        x = inputs(idx.numpy())
        # Light augmentation: random brightness keeps the predictor from keying on exact colours.
        gain = 1 + 0.05 * torch.randn(len(x), *([1] * (x.dim() - 1)), generator=generator)
        loss = model.loss((x * gain).clamp(0, 1), y[idx])
        opt.zero_grad()
        loss.backward()
        if log is not None:
            since.append(loss.detach())
            if step % LOG_EVERY == 0 or step == steps:
                log.append(**dict(zip(CURVE_COLUMNS, (step, round(torch.stack(since).mean().item(), 6),
                                                      opt.param_groups[0]["lr"]))))
                since.clear()
        opt.step()
        sched.step()
    return model.eval()


def factor_scores(predicted: np.ndarray, true: np.ndarray, names: list[str], kinds: list[str]) -> dict:
    """Held-out quality per factor: accuracy (categorical) or R^2 (continuous)."""
    out = {}
    for i, (name, kind) in enumerate(zip(names, kinds)):
        if kind == "categorical":
            out[name] = {"accuracy": round(float((predicted[:, i] == true[:, i]).mean()), 4)}
        else:
            resid = ((predicted[:, i] - true[:, i]) ** 2).sum()
            total = ((true[:, i] - true[:, i].mean()) ** 2).sum()
            out[name] = {"r2": round(float(1 - resid / total), 4)}
    return out


def spread(values: np.ndarray, kind: str) -> float:
    """Unbiased spread of n draws of a factor: the sample variance (ddof 1) of a continuous one; the Gini
    impurity 1 - sum p_c^2 of a categorical one, times n / (n - 1).

    Unbiased, because the retained share divides a spread over a handful of completions by one over many
    samples: with the plug-in estimators, 16 completions against 128 free samples read an uninformative
    prefix as (15/16) / (127/128) = 0.945, not 1."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a spread needs two draws or more, got {n}")
    if kind == "categorical":
        _, counts = np.unique(values, return_counts=True)
        p = counts / n
        return float((1 - (p ** 2).sum()) * n / (n - 1))
    return float(values.var(ddof=1))


def retained_variance(groups: np.ndarray, free: np.ndarray, kinds: list[str]) -> np.ndarray:
    """groups (M, N, F): N completions for each of M fixed prefixes; free (n, F):
    unconstrained samples. -> (F,) mean within-group spread / free spread."""
    out = []
    for i, kind in enumerate(kinds):
        within = np.mean([spread(g[:, i], kind) for g in groups])
        out.append(within / max(spread(free[:, i], kind), 1e-12))
    return np.array(out)


def load_factor_predictor(path: Path = artifacts.FACTOR_PREDICTOR):
    """(predictor, factor names), or the saved {"skipped": reason} when the data has no factors."""
    state = io.load_torch(artifacts.require(path, "factor_predictor"))
    io.check_finite_state(path, state, reading=True)
    if "skipped" in state:
        return state
    model = io.load_module(
        path, "a factor predictor",
        lambda: FactorPredictor(state["kinds"], state["classes"], np.zeros(len(state["kinds"])),
                                np.ones(len(state["kinds"])), channels=state.get("channels", 3), dims=state.get("dims", 2)),
        lambda: (state["state"],),
        settings=lambda: [state.get(k, 0) for k in ("classes", "channels", "dims")])
    if not isinstance(state.get("names"), list):
        raise DataError(f"{path}: not a factor predictor of this pipeline (no list of factor names)")
    return model.eval(), state["names"]
