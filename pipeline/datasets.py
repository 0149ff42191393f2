"""Dataset preparation and the prepared-dataset file every later stage reads.

A prepared dataset is one `.npz`: `train`/`test` signals as stored (images:
(N, R, R, 3) uint8; shapes: (N, R^3 / 8) uint8, packed occupancy bits),
optional ground-truth factors per split, and a JSON header naming the
modality and its construction arguments.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import io
from . import config
from .config import Config
from .errors import DataError
from .modalities import SPECS
from .modalities.base import Modality
from .modalities.plugins import build


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
    extras: dict[str, np.ndarray] = field(default_factory=dict)   # e.g. IM-NET's test_points / test_values

    def split(self, name: str) -> np.ndarray:
        return {"train": self.train, "test": self.test}[name]


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


# The smallest split every stage can work with: FID, KID and precision/recall
# compare sets and need two members each (a covariance, an unbiased MMD, a
# nearest other member); smaller sets are refused by `prepare`, before any
# training. Stages adapt above it: precision/recall's k is capped at n - 1
# (the k used is written beside each score) and `analyze` picks its test
# instances modulo the split's size.
MIN_SPLIT = 2


def split_count(cfg: Config, total: int, where: Path, compares: str = Modality.set_metrics) -> int:
    """How many of `total` instances go to train: dataset.folder.train_count, else the fraction."""
    f = cfg.dataset.folder
    n_train = f.train_count
    if n_train is None:   # by ratio, keeping at least MIN_SPLIT instances on each side
        n_train = min(max(MIN_SPLIT, round(total * f.train_fraction)), total - MIN_SPLIT)
    check_splits(where, n_train, total - n_train, compares)
    return n_train


def check_splits(where, n_train: int, n_test: int, compares: str = Modality.set_metrics) -> None:
    """One line, before any training, when a split is too small for the stages after it; `compares`
    names what compares sets (the modality's `set_metrics`)."""
    if min(n_train, n_test) < MIN_SPLIT:
        raise DataError(f"{where}: {n_train + n_test} instances split into {n_train} train / {n_test} test; each "
                        f"split needs at least {MIN_SPLIT} ({compares} compare sets): add files, "
                        "or change dataset.folder.train_count / train_fraction")


def split_members(cfg: Config, names: list[str], where,
                  compares: str = Modality.set_metrics) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices into `names` (files or groups, in sorted order) by dataset.split:

    - `random`: a permutation seeded by `seed` (numpy's PCG64), so the split does not depend on
      how the files are named or listed, and is the same on every machine; the sizes as
      dataset.folder.train_count / train_fraction say. Each split keeps the sorted order.
    - `sorted`: the first ones train, the rest test (CelebA-HQ's split as mNIF uses it).
    - a FILE: the names it lists, one per line (a file name, or its stem), are the test split.
    """
    mode = cfg.dataset.split
    n = len(names)
    if mode in ("random", "sorted"):
        n_train = split_count(cfg, n, where, compares)
        order = np.arange(n) if mode == "sorted" else np.random.default_rng(cfg.seed).permutation(n)
        return np.sort(order[:n_train]), np.sort(order[n_train:])
    listed = Path(mode)
    try:
        wanted = [line.strip() for line in config.read_text(listed).splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"{listed}: dataset.split is not random, sorted or a readable file ({e.strerror or e})") \
            from None
    index = {}
    for i, name in enumerate(names):
        for key in (name, Path(name).name, Path(name).stem):
            index.setdefault(key, i)
    missing = [w for w in wanted if w not in index]
    if missing:
        raise DataError(f"{listed}: {len(missing)} of its {len(wanted)} test names are not in {where} "
                        f"(first: {missing[0]!r}); list file names or stems, one per line")
    test = np.unique([index[w] for w in wanted])
    train = np.setdiff1d(np.arange(n), test)
    check_splits(where, len(train), len(test), compares)
    return train, test


def read_folder(cfg: Config, suffixes: tuple[str, ...], read) -> tuple[np.ndarray, list[str], Path, list[str]]:
    """Every file of the folder with one of `suffixes`, sorted, through `read(path)`: (stack, skipped
    names, folder, the names read)."""
    d = cfg.dataset
    root = Path(d.path)
    if not root.is_dir():
        raise DataError(f"{root}: dataset.path is not a folder")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in suffixes)
    if d.folder.limit is not None:
        files = files[: d.folder.limit]
    signals, skipped, names = [], [], []
    for p in files:
        try:
            signals.append(read(p))
            names.append(p.name)
        except DataError:
            if not d.folder.skip_corrupt:
                raise
            skipped.append(p.name)
    if len(signals) < 2 * MIN_SPLIT:
        raise DataError(f"{root}: found {len(signals)} readable files with suffixes {suffixes}; need at least "
                        f"{2 * MIN_SPLIT} ({MIN_SPLIT} train, {MIN_SPLIT} test)")
    return np.stack(signals), skipped, root, names


def folder(cfg: Config, m: Modality) -> PreparedData:
    """Every file of dataset.path the modality reads, split by dataset.split (`split_members`)."""
    stack, skipped, root, names = read_folder(cfg, m.folder_suffixes, m.read_file)
    train, test = split_members(cfg, names, root, m.set_metrics)
    return PreparedData(
        modality=m, train=stack[train], test=stack[test], train_factors=None, test_factors=None,
        factor_names=[], factor_kinds=[],
        info={"source": "folder", "path": str(root), "skipped_files": len(skipped), "skipped": skipped[:100],
              "split": cfg.dataset.split, "test_files": [names[i] for i in test][:200]},
    )


def prepare(cfg: Config) -> PreparedData:
    d = cfg.dataset
    args = {}
    for key in SPECS[d.modality].dataset_args:   # e.g. "views", "nerf.colour" -> views=..., colour=...
        value = d
        for part in key.split("."):
            value = getattr(value, part)
        args[key.rsplit(".", 1)[-1]] = value
    m = build(d.modality, resolution=d.resolution, **args)
    readers = {"synthetic": synthetic, "folder": folder}
    data = readers[d.source](cfg, m) if d.source in readers else m.read_source(cfg)   # e.g. IM-NET for shapes
    check_splits(cfg.dataset.path or f"dataset.source {cfg.dataset.source}", len(data.train), len(data.test),
                 data.modality.set_metrics)
    data.modality.fit_to_train(data.train)
    return data
