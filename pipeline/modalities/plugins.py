"""The registry of Modality classes: `build` makes the one a config or a prepared dataset names."""
from __future__ import annotations

from . import SPECS
from .base import Modality
from .image.modality import ImageModality
from .motion.modality import MotionModality
from .nerf.modality import NerfModality
from .shape.modality import ShapeModality

CLASSES: dict[str, type[Modality]] = {c.name: c for c in (ImageModality, ShapeModality, MotionModality, NerfModality)}
assert CLASSES.keys() == SPECS.keys(), "every modality needs a SPEC and a class"


def build(kind: str, **kwargs) -> Modality:
    if kind not in CLASSES:
        raise ValueError(f"unknown modality {kind!r} (known: {', '.join(CLASSES)})")
    return CLASSES[kind](**kwargs)
