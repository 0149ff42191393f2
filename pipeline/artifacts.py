"""Where each stage's outputs live, and how trained models are saved and loaded.

These paths are the ones `dvc.yaml` declares; the stages and the tools read
them from here only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import io
from .hcdm import HCDM
from .loe import LayersOfExperts
from .meta import MetaSGD

DATASET = Path("data/prepared/dataset.npz")
DATASET_PREVIEW = Path("data/prepared/preview.png")
LOE = Path("data/fit_loe/loe.pt")
LOE_CHECKPOINT = Path("data/fit_loe/checkpoint.pt")
LATENTS = Path("data/latents/latents.npz")
RECONSTRUCTIONS = Path("data/latents/reconstructions.png")
HCDM_MODEL = Path("data/hcdm/hcdm.pt")
HCDM_CHECKPOINT = Path("data/hcdm/checkpoint.pt")
SAMPLES = Path("data/samples/samples.npz")
SAMPLES_GRID = Path("data/samples/samples.png")
CONTROL_GRID = Path("data/samples/control.png")
ANALYSIS_LATENTS = Path("data/analysis")
REFERENCE = Path("data/reference/reference.npz")
SAMPLE_FILES = Path("data/samples/files")
FACTOR_PREDICTOR = Path("data/factors/predictor.pt")
METRICS = Path("metrics")
ANALYSIS_FIGURES = METRICS / "analysis"
FIGURES = METRICS / "figures"
CURVES = METRICS / "curves"


class MissingArtifact(FileNotFoundError):
    """A stage's input has not been produced yet."""


def require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise MissingArtifact(f"{path}: not found; run `dvc repro {stage}` first")
    return path


def save_loe(path: Path, model: LayersOfExperts, meta_sgd: MetaSGD, inner_steps: int, inner_lr: float) -> None:
    io.save_torch(path, {"hyperparameters": model.hyperparameters(), "model": model.state_dict(),
                         "meta_sgd": meta_sgd.state_dict(), "inner_steps": inner_steps, "inner_lr": inner_lr})


def load_loe(path: Path = LOE) -> tuple[LayersOfExperts, MetaSGD, dict]:
    """The trained LoE, its Meta-SGD rates and the inner-loop settings it was trained with."""
    state = torch.load(require(path, "fit_loe"), map_location="cpu", weights_only=False)
    hp = state["hyperparameters"]
    model = LayersOfExperts(**hp)
    model.load_state_dict(state["model"])
    meta_sgd = MetaSGD(hp["layers"], hp["latent_dim"], 0.0, 0.0)
    meta_sgd.load_state_dict(state["meta_sgd"])
    model.eval()
    return model, meta_sgd, {"inner_steps": state["inner_steps"], "inner_lr": state["inner_lr"]}


def save_hcdm(path: Path, model: HCDM) -> None:
    io.save_torch(path, {"arch": model.arch, "model": model.state_dict()})


def load_hcdm(path: Path = HCDM_MODEL) -> HCDM:
    """The EMA weights of the trained HCDM, ready to sample."""
    state = torch.load(require(path, "train_hcdm"), map_location="cpu", weights_only=False)
    model = HCDM(**state["arch"])
    model.load_state_dict(state["model"])
    return model.eval()


def load_trained(device: torch.device | str = "cpu"):
    """What the generation stages need: (prepared data, LoE, HCDM), models on `device`."""
    from .datasets import load

    data = load(require(DATASET, "prepare"))
    loe, _, _ = load_loe()
    return data, loe.to(device), load_hcdm().to(device)


def load_latents(path: Path = LATENTS) -> dict[str, np.ndarray]:
    with np.load(require(path, "export_latents")) as z:
        return {k: z[k] for k in z.files}


def load_factor_predictor(path: Path = FACTOR_PREDICTOR):
    """(predictor, factor names), or the saved {"skipped": reason} when the data has no factors."""
    from .factors import FactorPredictor

    state = torch.load(require(path, "factor_predictor"), map_location="cpu", weights_only=False)
    if "skipped" in state:
        return state
    n = len(state["kinds"])
    model = FactorPredictor(state["kinds"], state["classes"], np.zeros(n), np.ones(n),
                            channels=state.get("channels", 3), dims=state.get("dims", 2))
    model.load_state_dict(state["state"])
    return model.eval(), state["names"]
