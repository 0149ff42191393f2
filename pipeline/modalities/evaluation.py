"""The registry of generation scorers: `of(modality)` is the module that computes its reference
(`reference(cfg, data, device) -> arrays`), how many samples it scores (`count(cfg, data)`), the
scores (`scores(s: scoring.Scoring) -> dict`, everything they read in one object; they open no file)
and which of their keys stay out of the metrics file (`DETAIL_ONLY`).

Only the `reference` and `evaluate` stages import this, so Inception or Chamfer code is not
among the dependencies of the training stages."""
from __future__ import annotations

from types import ModuleType

from . import SPECS
from .base import Modality
from .image import evaluation as image
from .motion import evaluation as motion
from .nerf import evaluation as nerf
from .shape import evaluation as shape

EVALUATIONS: dict[str, ModuleType] = {"image": image, "shape": shape, "motion": motion, "nerf": nerf}
assert EVALUATIONS.keys() == SPECS.keys(), "every modality needs an evaluation module"


def of(modality: Modality) -> ModuleType:
    return EVALUATIONS[modality.name]
