"""Where each stage's outputs live.

These paths are the ones `dvc.yaml` declares; the stages and the tools read
them from here only. Each model's file is written and read beside the model
(`meta.save_loe`/`load_loe`, `hcdm.save_hcdm`/`load_hcdm`,
`factors.load_factor_predictor`), so that this module imports no model and a
stage depends only on the code it runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import io
from .errors import MissingArtifact

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
DETAIL = METRICS / "detail"
LOGS = Path("data/logs")
# Written by check_params with the same bytes whenever params.yaml is valid: prepare depends on it, so that
# every `dvc repro <target>` validates the file first, and a valid edit reruns nothing else by itself.
PARAMS_CHECKED = DETAIL / "check_params.json"


def metrics_files(name: str) -> tuple[Path, Path]:
    """A stage's scalar metrics (what `dvc exp show` lists) and its detail file (tables, lists, definitions)."""
    return METRICS / f"{name}.json", DETAIL / f"{name}.json"


def require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise MissingArtifact(f"{path}: not found; run `dvc repro {stage}` first")
    return path


def load_latents(path: Path = LATENTS) -> dict[str, np.ndarray]:
    return io.load_npz(require(path, "export_latents"))
