"""Modalities as plug-ins: one package per kind of signal, `pipeline/modalities/<name>/`.

A plug-in owns its whole path from signal to latent and back: reading its
files and generating its embedded data, coordinates and training targets, the
Stage-1 loss's points, decoding into pictures and files, reconstruction
metrics (`<name>/modality.py`, a `Modality`), and how generated samples are
scored against a reference (`<name>/evaluation.py`). Stages and tools never
branch on a modality's name; they ask the registries:

    SPECS                        (here) what the config checks: names, sources, resolution rules
    plugins.build(name, ...)     the Modality a prepared dataset names
    evaluation.of(modality)      its reference and generation scores

A new modality is a new package plus one line in each registry; `loe.py`,
`hcdm.py` and the stages do not change. This module imports no torch, so
the config can validate `dataset.modality` without loading any plug-in.
"""
from .image import SPEC as _IMAGE
from .motion import SPEC as _MOTION
from .nerf import SPEC as _NERF
from .shape import SPEC as _SHAPE
from .spec import Spec

SPECS: dict[str, Spec] = {s.name: s for s in (_IMAGE, _SHAPE, _MOTION, _NERF)}
SOURCES: tuple[str, ...] = tuple(dict.fromkeys(src for s in SPECS.values() for src in s.sources))
