"""Dataset preparation and the prepared-dataset file every later stage reads.

A prepared dataset is one `.npz`: `train`/`test` signals as stored (images:
(N, R, R, 3) uint8; shapes: (N, R^3 / 8) uint8, packed occupancy bits),
optional ground-truth factors per split, and a JSON header naming the
modality and its construction arguments.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import io, synthetic_faces, synthetic_shapes, voxels
from .config import Config
from .errors import DataError
from .modality import Modality, build

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SHAPE_SUFFIXES = voxels.VOXEL_SUFFIXES + voxels.MESH_SUFFIXES


@dataclass
class PreparedData:
    modality: Modality
    train: np.ndarray                 # (N_train, ...) stored signals
    test: np.ndarray                  # (N_test, ...)
    train_factors: np.ndarray | None  # (N_train, F) ground truth, when the source knows it
    test_factors: np.ndarray | None
    factor_names: list[str]
    factor_kinds: list[str]
    info: dict

    def split(self, name: str) -> np.ndarray:
        return {"train": self.train, "test": self.test}[name]


def save(path: str | Path, data: PreparedData, modality_args: dict) -> None:
    header = {"modality": data.modality.name, "modality_args": modality_args,
              "factor_names": data.factor_names, "factor_kinds": data.factor_kinds, "info": data.info}
    arrays = {"train": data.train, "test": data.test, "header": np.array(json.dumps(header))}
    if data.train_factors is not None:
        arrays.update(train_factors=data.train_factors, test_factors=data.test_factors)
    io.save_npz(path, **arrays)


def load(path: str | Path) -> PreparedData:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: prepared dataset not found (run `dvc repro prepare`)")
    with np.load(path) as z:
        header = json.loads(str(z["header"]))
        has_factors = "train_factors" in z.files
        return PreparedData(
            modality=build(header["modality"], **header["modality_args"]),
            train=z["train"], test=z["test"],
            train_factors=z["train_factors"] if has_factors else None,
            test_factors=z["test_factors"] if has_factors else None,
            factor_names=header["factor_names"], factor_kinds=header["factor_kinds"], info=header["info"],
        )


def synthetic(cfg: Config) -> PreparedData:
    d = cfg.dataset
    n_train, n_test = d.synthetic.train, d.synthetic.test
    generator = synthetic_faces if d.modality == "image" else synthetic_shapes
    signals, factors = generator.generate(n_train + n_test, d.resolution, cfg.seed)
    kinds = [kind for kind, _, _ in generator.FACTORS.values()]
    return PreparedData(
        modality=build(d.modality, resolution=d.resolution),
        train=signals[:n_train], test=signals[n_train:],
        train_factors=factors[:n_train], test_factors=factors[n_train:],
        factor_names=list(generator.FACTOR_NAMES), factor_kinds=kinds,
        info={"source": "synthetic", "skipped_files": 0},
    )


def load_image(path: Path, resolution: int) -> np.ndarray:
    """Centre-crop to a square, resize with bicubic + antialias: -> (R, R, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
            # PIL's resize widens the bicubic kernel by the downscale factor, i.e. antialiases.
            im = im.resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=None)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read image ({e.__class__.__name__}: {e})") from None


def split_count(cfg: Config, total: int, where: Path) -> int:
    """How many of `total` sorted instances go to train: dataset.folder.train_count, else the fraction."""
    f = cfg.dataset.folder
    n_train = f.train_count
    if n_train is None:   # by ratio, keeping at least one instance on each side
        n_train = min(max(1, round(total * f.train_fraction)), total - 1)
    if not 1 <= n_train < total:
        raise DataError(f"{where}: dataset.folder.train_count={n_train} leaves no test instances out of {total}")
    return n_train


def read_folder(cfg: Config, suffixes: tuple[str, ...], read) -> tuple[np.ndarray, list[str], Path]:
    """Every file of the folder with one of `suffixes`, sorted, through `read(path)`."""
    d = cfg.dataset
    root = Path(d.path)
    if not root.is_dir():
        raise DataError(f"{root}: dataset.path is not a folder")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in suffixes)
    if d.folder.limit is not None:
        files = files[: d.folder.limit]
    signals, skipped = [], []
    for p in files:
        try:
            signals.append(read(p))
        except DataError:
            if not d.folder.skip_corrupt:
                raise
            skipped.append(p.name)
    if len(signals) < 2:
        raise DataError(f"{root}: found {len(signals)} readable files with suffixes {suffixes}; need at least 2")
    return np.stack(signals), skipped, root


def folder(cfg: Config) -> PreparedData:
    d = cfg.dataset
    if d.modality == "image":
        stack, skipped, root = read_folder(cfg, IMAGE_SUFFIXES, lambda p: load_image(p, d.resolution))
    else:
        stack, skipped, root = read_folder(cfg, SHAPE_SUFFIXES,
                                           lambda p: voxels.pack(voxels.read_file(p, d.resolution)[None])[0])
    n_train = split_count(cfg, len(stack), root)
    return PreparedData(
        modality=build(d.modality, resolution=d.resolution),
        train=stack[:n_train], test=stack[n_train:], train_factors=None, test_factors=None,
        factor_names=[], factor_kinds=[],
        info={"source": "folder", "path": str(root), "skipped_files": len(skipped), "skipped": skipped[:100]},
    )


def imnet(cfg: Config) -> PreparedData:
    """IM-NET's HDF5 release: its own train/test files; dataset.folder.limit caps each split."""
    d = cfg.dataset
    files = voxels.imnet_files(Path(d.path))
    splits = {split: voxels.read_imnet(path, d.resolution, d.folder.limit) for split, path in files.items()}
    return PreparedData(
        modality=build("shape", resolution=d.resolution), train=splits["train"], test=splits["test"],
        train_factors=None, test_factors=None, factor_names=[], factor_kinds=[],
        info={"source": "imnet", "path": str(d.path), "files": {k: v.name for k, v in files.items()},
              "skipped_files": 0},
    )


def prepare(cfg: Config) -> PreparedData:
    return {"synthetic": synthetic, "folder": folder, "imnet": imnet}[cfg.dataset.source](cfg)
