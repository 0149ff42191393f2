"""The prepared dataset in memory and how a source is split into train and test: a leaf module that
the modality plug-ins and `datasets` both use (`datasets` builds plug-ins; plug-ins never import it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import config
from .config import Config
from .errors import DataError

if TYPE_CHECKING:
    from .modalities.base import Modality

SET_METRICS = "the generation metrics"     # Modality.set_metrics' default: what compares sets


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


# The smallest split every stage can work with: FID, KID and precision/recall
# compare sets and need two members each (a covariance, an unbiased MMD, a
# nearest other member); smaller sets are refused by `prepare`, before any
# training. Stages adapt above it: precision/recall's k is capped at n - 1
# (the k used is written beside each score) and `analyze` picks its test
# instances modulo the split's size.
MIN_SPLIT = 2


def split_count(cfg: Config, total: int, where: Path, compares: str = SET_METRICS) -> int:
    """How many of `total` instances go to train: dataset.folder.train_count, else the fraction."""
    f = cfg.dataset.folder
    n_train = f.train_count
    if n_train is None:   # by ratio, keeping at least MIN_SPLIT instances on each side
        n_train = min(max(MIN_SPLIT, round(total * f.train_fraction)), total - MIN_SPLIT)
    check_splits(where, n_train, total - n_train, compares)
    return n_train


def check_splits(where, n_train: int, n_test: int, compares: str = SET_METRICS) -> None:
    """One line, before any training, when a split is too small for the stages after it; `compares`
    names what compares sets (the modality's `set_metrics`)."""
    if min(n_train, n_test) < MIN_SPLIT:
        raise DataError(f"{where}: {n_train + n_test} instances split into {n_train} train / {n_test} test; each "
                        f"split needs at least {MIN_SPLIT} ({compares} compare sets): add files, "
                        "or change dataset.folder.train_count / train_fraction")


def split_members(cfg: Config, names: list[str], where,
                  compares: str = SET_METRICS) -> tuple[np.ndarray, np.ndarray]:
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


def dataset_folder(path: str | Path) -> Path:
    """`dataset.path` as a folder, or one line saying what it is instead."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: dataset.path does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: dataset.path is a file, not a folder")
    return root


def read_folder(cfg: Config, suffixes: tuple[str, ...], read) -> tuple[np.ndarray, list[str], Path, list[str]]:
    """Every file of the folder with one of `suffixes`, sorted, through `read(path)`: (stack, skipped
    names, folder, the names read)."""
    d = cfg.dataset
    root = dataset_folder(d.path)
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


