"""What a modality must say about its signals, and nothing more.

The LoE maps d_in coordinates to d_out values and the HCDM sees only latents;
everything that depends on the kind of signal lives behind `Modality`: how
its files are read and its embedded data generated, where its coordinates
lie, how stored signals become targets in [-1, 1], how training points are
drawn, how a decoded function becomes a picture a person can look at, which
reconstruction metrics make sense, what the factor predictor reads, and how
one instance is written as a file. How generated samples are scored lives in
the plug-in's `evaluation` module (see `pipeline/modalities/__init__.py`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import DataError
from ..prepared import SET_METRICS

if TYPE_CHECKING:
    from ..config import Config
    from ..prepared import PreparedData


class Modality(ABC):
    name: str
    d_in: int
    d_out: int
    resolution: int                    # samples per side of the grid the data lives on

    def _side(self, scale: float) -> int:
        """Samples per side when the continuous INR is decoded at `scale` times the data's grid."""
        side = round(self.resolution * scale)
        if side < 2:
            raise ValueError(f"scale {scale} gives a grid smaller than 2 at resolution {self.resolution}")
        return side

    def decode_points(self, scale: float = 1.0, views: int | None = None) -> int:
        """Query points one instance's decode at `scale` runs the field on (`views`: cameras, where the modality
        has viewpoints): the grid's, side^d_in."""
        return self._side(scale) ** self.d_in

    # -- data ------------------------------------------------------------------------
    folder_suffixes: tuple[str, ...]     # the files a `dataset.source: folder` reads
    instance_is_folder: bool = False     # `read_file` reads a folder (a NeRF scene), not a file
    set_metrics: str = SET_METRICS       # what compares sets (why each split needs two members)
    file_kind: str = "a file"            # what a user's file of this modality is, for help and refusals
    factor_names: tuple[str, ...]        # the embedded data's ground-truth factors
    factor_kinds: tuple[str, ...]        # "continuous" | "categorical" | "circular" (turns, period 1), per factor

    @abstractmethod
    def read_file(self, path: Path) -> np.ndarray:
        """One file of the user's -> the stored signal at this resolution; DataError naming the file if bad."""

    def group_of(self, name: str) -> str:
        """The instance a file of the user's belongs to: a split never puts one group's files on both
        sides (e.g. views of one object). Each file is its own by default."""
        return name

    @abstractmethod
    def generate(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The embedded dataset: n stored signals and their (n, F) ground-truth factors, from the seed."""

    def fit_to_train(self, train: np.ndarray) -> None:
        """Keep statistics of the train split's stored signals (e.g. a normalisation); nothing by default."""

    def data_warnings(self, train: np.ndarray, test: np.ndarray) -> list[str]:
        """What `prepare` should warn about the two splits' stored signals (none by default)."""
        return []

    def construction_args(self) -> dict:
        """What `plugins.build` needs to make this modality again; kept in the prepared dataset's header."""
        return {"resolution": self.resolution}

    def folder_notes(self, files: list[Path]) -> tuple[dict, list[str]]:
        """What a folder's files are as stored (e.g. pictures' native sizes and modes, from their headers), for the
        prepared data's info, and warnings about what reading them to this modality's grid does to them;
        nothing by default."""
        return {}, []

    def read_source(self, cfg: Config) -> PreparedData:
        """A `dataset.source` of this modality's own (beyond synthetic and folder), e.g. IM-NET's HDF5."""
        raise DataError(f"dataset.source {cfg.dataset.source!r} is not a source of {self.name}s")

    # -- decoding and reconstruction ------------------------------------------------------
    metric_definitions: dict[str, str]   # what `export_latents` writes beside the reconstruction metrics
    render_scale: float = 4.0            # the scale `analyze` renders one sample at (the INR is continuous)

    def extra_reconstruction_metrics(self, model, latents: torch.Tensor, extras: dict[str, np.ndarray],
                                     batch_size: int, signals: np.ndarray) -> dict[str, np.ndarray]:
        """Per-instance metrics of the test split (latents and stored `signals`) beyond the grid's, e.g. on
        data the source ships besides it (none by default)."""
        return {}

    def field(self, model):
        """What decodes latents at this modality's coordinates: the LoE itself, or a wrapper that reads it
        (a NeRF renders rays through it). Has `render`, is called like the LoE, and gives `latent_grad`."""
        return model

    def evaluation_points(self, signals: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Where a fitted instance is compared with its signal: (coords (P, d_in) or (B, P, d_in), targets
        (B, P, d_out)); by default the whole grid (a NeRF: each scene's held-out views)."""
        return self.coordinates(), self.targets(signals)

    def viewpoints(self, n: int, scale: float = 1.0) -> torch.Tensor | None:
        """Coordinates seeing the instance from `n` viewpoints around it, or None: no viewpoints (not 3-D
        seen through a camera)."""
        return None

    def file_coordinates(self) -> torch.Tensor | None:
        """Where a sample is decoded for its file under data/samples/files, if not at `coordinates()`
        (a NeRF: a turntable); None: the pictures' decode is the file's."""
        return None

    @abstractmethod
    def coordinates(self, scale: float = 1.0) -> torch.Tensor:
        """(P, d_in) query coordinates; `scale` > 1 samples the continuous INR more densely."""

    @abstractmethod
    def targets(self, signals: np.ndarray) -> torch.Tensor:
        """Stored signals (B, ...) -> (B, P, d_out) float targets in [-1, 1], ordered like `coordinates()`."""

    def taken_at_coordinates(self, signals: np.ndarray) -> bool:
        """Whether the stored instances' `targets` are their values at `coordinates()`, where generated samples
        are decoded: the memorisation search then compares samples with them; otherwise (SRN scenes, each seen
        from its own cameras) with Stage-1's decodes of their latents there."""
        return True

    @abstractmethod
    def to_pictures(self, values: torch.Tensor, scale: float = 1.0) -> np.ndarray:
        """Decoded values (B, P, d_out) -> (B, h, w, 3) uint8 pictures for grids."""

    @abstractmethod
    def reconstruction_metrics(self, values: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        """Per-instance metrics of decoded values against targets, both (B, P, d_out)."""

    @abstractmethod
    def predictor_input(self, values: torch.Tensor) -> torch.Tensor:
        """Decoded values (B, P, d_out) -> (B, C, *spatial) in [0, 1], what the factor predictor reads."""

    @abstractmethod
    def instance_file(self, values: torch.Tensor, scale: float = 1.0) -> bytes:
        """One decoded instance (P, d_out), decoded at `scale`, -> the bytes of a file in the modality's own format."""

    file_suffix: str

    def to_unit(self, values: torch.Tensor) -> torch.Tensor:
        """Values in [-1, 1] -> [0, 1], the range in which distances are reported."""
        return ((values + 1) / 2).clamp(0, 1)

    def decoded_to_unit(self, values: torch.Tensor) -> torch.Tensor:
        """A decode as the sample it stands for, in [0, 1]: what the memorisation search compares with the
        data's `to_unit` (the decode's values themselves by default)."""
        return self.to_unit(values)

    def sample_points(self, signals: np.ndarray, count: int | None, generator: torch.Generator,
                      surface_fraction: float = 0.0, device: torch.device | str = "cpu"
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training draw on `device`: (coords (P, d_in) shared or (B, P, d_in), targets (B, P, d_out)).

        By default `count` coordinates uniformly without replacement, the same
        for the whole batch (all of them when `count` is None). Modalities with
        a surface override it to draw `surface_fraction` of the points near it.
        Random numbers come from the CPU `generator`, so a draw does not depend
        on the device.
        """
        coords, targets = self.coordinates(), self.targets(signals)
        if count is not None and count < len(coords):
            keep = torch.randperm(len(coords), generator=generator)[:count]
            coords, targets = coords[keep], targets[:, keep]
        return coords.to(device), targets.to(device)
