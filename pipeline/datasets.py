"""Dataset preparation and the prepared-dataset file every later stage reads.

A prepared dataset is one `.npz`: `train`/`test` signals as stored (images:
(N, R, R, 3) uint8; shapes: (N, R^3 / 8) uint8, packed occupancy bits),
optional ground-truth factors per split, and a JSON header naming the
modality and its construction arguments.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from . import io
from .config import Config
from .errors import DataError
from .modalities import SPECS
from .modalities.base import Modality
from .modalities.plugins import build
from .prepared import PreparedData, check_groups, check_splits, list_folder, read_members, split_members


def save(path: str | Path, data: PreparedData, modality_args: dict) -> None:
    header = {"modality": data.modality.name, "modality_args": modality_args,
              "factor_names": data.factor_names, "factor_kinds": data.factor_kinds, "info": data.info}
    arrays = {"train": data.train, "test": data.test, "header": np.array(json.dumps(header))}
    if data.train_factors is not None:
        arrays.update(train_factors=data.train_factors, test_factors=data.test_factors)
    io.save_npz(path, **arrays, **data.extras)


CORE_ARRAYS = ("train", "test", "header", "train_factors", "test_factors")


def load(path: str | Path, extras: bool = False) -> PreparedData:
    """The prepared dataset; `extras` (e.g. IM-NET's test points, ~1 GB at full size) only when asked for."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: prepared dataset not found (run `dvc repro prepare`)")
    z = io.load_npz(path, None if extras else CORE_ARRAYS)
    try:
        header = json.loads(str(z["header"]))
        return PreparedData(
            modality=build(header["modality"], **header["modality_args"]),
            train=z["train"], test=z["test"], train_factors=z.get("train_factors"),
            test_factors=z.get("test_factors"), factor_names=header["factor_names"],
            factor_kinds=header["factor_kinds"], info=header["info"],
            extras={k: v for k, v in z.items() if k not in CORE_ARRAYS},
        )
    except (KeyError, TypeError, ValueError) as e:   # ValueError covers a bad JSON header
        raise DataError(f"{path}: not a prepared dataset of this pipeline ({e.__class__.__name__}: {e}); "
                        "rerun `dvc repro prepare`") from None


def synthetic(cfg: Config, m: Modality) -> PreparedData:
    """The modality's embedded dataset, with its ground-truth factors."""
    n_train, n_test = cfg.dataset.synthetic.train, cfg.dataset.synthetic.test
    signals, factors = m.generate(n_train + n_test, cfg.seed)
    return PreparedData(
        modality=m, train=signals[:n_train], test=signals[n_train:],
        train_factors=factors[:n_train], test_factors=factors[n_train:],
        factor_names=list(m.factor_names), factor_kinds=list(m.factor_kinds),
        info={"source": "synthetic", "skipped_files": 0},
    )


def folder(cfg: Config, m: Modality) -> PreparedData:
    """Every file of dataset.path the modality reads, split by dataset.split (`split_members`).

    The split is decided on the listed names before any file is read: a file skipped as unreadable
    (dataset.folder.skip_corrupt) leaves its own side, and never moves another across the boundary
    of a `sorted` split.

    A file that is its own instance is grouped by its stem: `00001.png` and `00001.jpg` are one instance,
    on one side (a split file's stem names both), so a picture saved in two formats is never in both
    splits."""
    root, files = list_folder(cfg, m.folder_suffixes)
    names = [p.name for p in files]
    groups = [stem_group(m.group_of(name), name) for name in names]
    train, test = split_members(cfg, names, root, m.set_metrics, groups)
    signals, skipped = read_members(cfg, files, m.read_file)
    train, test = [i for i in train if i in signals], [i for i in test if i in signals]
    where = f"{root} (less {len(skipped)} unreadable files skipped)" if skipped else root
    check_splits(where, len(train), len(test), m.set_metrics)
    check_groups(where, groups, train, test, m.set_metrics)
    notes, notes_warnings = m.folder_notes([files[i] for i in sorted(signals)])
    return PreparedData(
        modality=m, train=np.stack([signals[i] for i in train]), test=np.stack([signals[i] for i in test]),
        train_factors=None, test_factors=None, factor_names=[], factor_kinds=[],
        info={"source": "folder", "path": str(root), "skipped_files": len(skipped), "skipped": skipped[:100],
              "split": cfg.dataset.split, "groups": len(set(groups)), "native": notes, "read_warnings": notes_warnings,
              "test_files": [names[i] for i in test]},   # all: CelebA-HQ's 3000 are 45 kB of JSON
    )


def stem_group(group: str, name: str) -> str:
    """The group of a file that is its own (`Modality.group_of` gave its name back) is its stem; a group the
    modality names (a 3D-RecGAN object) stays."""
    return Path(name).stem if group == name else group


def exact_copies(train: np.ndarray, test: np.ndarray) -> int:
    """How many test signals equal some train signal byte for byte (by a hash of each stored signal): the same
    file under two names, or one picture saved twice, lands on both sides of any split by name."""
    def digests(signals):
        return [hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest() for x in signals]

    seen = set(digests(train))
    return sum(d in seen for d in digests(test))


def build_modality(d):
    """The modality plug-in a `dataset` params section describes, with every setting it takes from there."""
    args = {}
    for key in SPECS[d.modality].dataset_args:   # e.g. "views", "nerf.colour" -> views=..., colour=...
        value = d
        for part in key.split("."):
            value = getattr(value, part)
        args[key.rsplit(".", 1)[-1]] = value
    return build(d.modality, resolution=d.resolution, **args)


def prepare(cfg: Config) -> PreparedData:
    d = cfg.dataset
    m = build_modality(d)
    readers = {"synthetic": synthetic, "folder": folder}
    data = readers[d.source](cfg, m) if d.source in readers else m.read_source(cfg)   # e.g. IM-NET for shapes
    check_splits(cfg.dataset.path or f"dataset.source {cfg.dataset.source}", len(data.train), len(data.test),
                 data.modality.set_metrics)
    data.modality.fit_to_train(data.train)
    return data
