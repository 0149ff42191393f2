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
    factor with values 0..C-1 gets C logits; a circular one (an angle in
    turns, period 1, such as a hue) is regressed as (cos 2 pi x, sin 2 pi x), so
    0.99 and 0.01 are neighbours, not opposite ends of a line. Grids are
    average-pooled to at most 32^3 first and read by strided 3-D
    convolutions (CPU budget).
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
        self.head = nn.Linear(256, sum(_width(k, c) for k, c in zip(kinds, classes)))

    def hyperparameters(self) -> dict:
        return {"kinds": self.kinds, "classes": self.classes, "channels": self.channels, "dims": self.dims}

    def _split(self, out: torch.Tensor) -> list[torch.Tensor]:
        sizes = [_width(k, c) for k, c in zip(self.kinds, self.classes)]
        return list(out.split(sizes, dim=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._split(self.head(self.features(x)))

    def loss(self, x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for i, (kind, out) in enumerate(zip(self.kinds, self(x))):
            if kind == "categorical":
                total = total + F.cross_entropy(out, factors[:, i].long())
            elif kind == "circular":
                total = total + F.mse_loss(out, on_circle(factors[:, i]))
            else:
                total = total + F.mse_loss(out[:, 0], (factors[:, i] - self.mean[i]) / self.std[i])
        return total

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """(N, C, *spatial) in [0, 1] -> (N, F) predicted factor values."""
        self.eval()
        rows = []
        for x in inputs.split(batch_size):
            cols = [out.argmax(1).float() if kind == "categorical" else
                    torch.atan2(out[:, 1], out[:, 0]).div(2 * torch.pi).remainder(1.0) if kind == "circular" else
                    out[:, 0] * self.std[j] + self.mean[j]
                    for j, (kind, out) in enumerate(zip(self.kinds, self(x)))]
            rows.append(torch.stack(cols, 1))
        return torch.cat(rows).numpy()


def _width(kind: str, classes: int) -> int:
    """Outputs a factor takes: C logits, (cos, sin), or one value."""
    return classes if kind == "categorical" else 2 if kind == "circular" else 1


def on_circle(turns):
    """Angles in turns (period 1) -> (..., 2) points (cos 2 pi x, sin 2 pi x) of the unit circle (torch or numpy)."""
    if isinstance(turns, torch.Tensor):
        a = 2 * torch.pi * turns
        return torch.stack([a.cos(), a.sin()], -1)
    a = 2 * np.pi * np.asarray(turns, np.float64)
    return np.stack([np.cos(a), np.sin(a)], -1)


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
    """Held-out quality per factor: accuracy (categorical), R^2 (continuous), or R^2 on the unit circle
    (circular: squared chord distances, so a prediction of 0.99 for 0.01 is near). A factor that does not
    vary in `true` has no R^2: null."""
    out = {}
    for i, (name, kind) in enumerate(zip(names, kinds)):
        if kind == "categorical":
            out[name] = {"accuracy": round(float((predicted[:, i] == true[:, i]).mean()), 4)}
            continue
        p, t = (on_circle(predicted[:, i]), on_circle(true[:, i])) if kind == "circular" else \
            (predicted[:, i, None], true[:, i, None])
        resid, total = ((p - t) ** 2).sum(), ((t - t.mean(0)) ** 2).sum()
        out[name] = {"r2": round(float(1 - resid / total), 4) if total > 1e-12 * len(t) else None}
    return out


def readable(scores: dict, true: np.ndarray, kinds: list[str], threshold: float) -> dict[str, bool]:
    """Which factors the predictor reads well enough: R^2 >= threshold, or for a categorical factor the same
    share of the way from always guessing the commonest class to every answer right (a skill score against
    the majority guess: (accuracy - majority share) / (1 - majority share))."""
    out = {}
    for i, (name, kind) in enumerate(zip(scores, kinds)):
        if kind == "categorical":
            _, counts = np.unique(true[:, i], return_counts=True)
            majority = counts.max() / counts.sum()
            skill = (scores[name]["accuracy"] - majority) / (1 - majority) if majority < 1 else None
        else:
            skill = scores[name]["r2"]
        out[name] = skill is not None and skill >= threshold
    return out


def spread(values: np.ndarray, kind: str) -> float:
    """Unbiased spread of n draws of a factor: the sample variance (ddof 1) of a continuous one; the Gini
    impurity 1 - sum p_c^2 of a categorical one, times n / (n - 1); of a circular one (turns, period 1) the
    mean squared chord between two draws, halved, over (2 pi)^2: (1 - |mean of e^(2 pi i x)|^2) n / (n - 1) /
    (2 pi)^2, the sample variance in turns for draws close together, and 0.99 and 0.01 close together.

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
    if kind == "circular":
        resultant = on_circle(values).mean(0)
        return float((1 - (resultant ** 2).sum()) * n / (n - 1) / (2 * np.pi) ** 2)
    return float(values.var(ddof=1))


def retained_shares(groups: np.ndarray, free: np.ndarray, kinds: list[str]) -> np.ndarray:
    """groups (M, N, F): N completions for each of M fixed prefixes; free (n, F): unconstrained samples.
    -> (M, F) each prefix's within-group spread / the free spread; NaN for a factor that does not vary
    freely (a constant factor, or a predictor that gives one answer to every sample: nothing to control)."""
    out = np.empty((len(groups), len(kinds)))
    for i, kind in enumerate(kinds):
        total = spread(free[:, i], kind)
        out[:, i] = [spread(g[:, i], kind) / total if total > 1e-12 else np.nan for g in groups]
    return out


def retained_variance(groups: np.ndarray, free: np.ndarray, kinds: list[str]) -> np.ndarray:
    """(F,) the mean over prefixes of `retained_shares`: mean within-group spread / free spread."""
    return retained_shares(groups, free, kinds).mean(0)


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
