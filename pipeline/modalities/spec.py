"""What the config checks of a modality before anything is built (no torch, no data code)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    name: str                          # the value of dataset.modality
    summary: str                       # for messages and the README
    sources: tuple[str, ...]           # the dataset.source values it reads
    resolution_multiple: int = 1       # dataset.resolution must be a multiple of this ...
    resolution_reason: str = ""        # ... because
    dataset_args: tuple[str, ...] = () # dataset.* keys its constructor takes besides the resolution (dotted:
                                       # "nerf.colour" is passed as colour=)
