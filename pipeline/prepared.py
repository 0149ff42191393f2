"""The prepared dataset in memory and how a source is split into train and test: a leaf module that
the modality plug-ins and `datasets` both use (`datasets` builds plug-ins; plug-ins never import it)."""
from __future__ import annotations

import re
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


def split_count(cfg: Config, total: int, where, compares: str = SET_METRICS, least: int = MIN_SPLIT) -> int:
    """How many of `total` members (files, or groups of files) go to train: dataset.folder.train_count, else
    the fraction, keeping MIN_SPLIT on each side where there are 2 * MIN_SPLIT members, one below."""
    f = cfg.dataset.folder
    n_train = f.train_count
    if n_train is None:
        keep = MIN_SPLIT if total >= 2 * MIN_SPLIT else 1
        n_train = min(max(keep, round(total * f.train_fraction)), total - keep)
    if n_train >= total:
        check_splits(where, total, 0, compares, least)
    return n_train


def check_groups(where, groups: list[str], train, test, compares: str = SET_METRICS, least: int = MIN_SPLIT) -> None:
    """One line when a side holds `least` files but fewer instances: the views of one 3D-RecGAN object, or
    files sharing a stem, are one instance (`groups[i]` names file i's), and two views of one object are not
    a set of two for the metrics that compare sets."""
    n_train, n_test = (len({groups[i] for i in side}) for side in (train, test))
    if min(n_train, n_test) < least:
        raise DataError(f"{where}: its {len(train) + len(test)} files are {n_train + n_test} instances (the views of "
                        f"one object, or files sharing a stem, are one), split into {n_train} train / {n_test} test; "
                        f"each split needs at least {least} ({compares} compare sets): add files of other objects, "
                        "or change dataset.folder.train_count / train_fraction")


def check_splits(where, n_train: int, n_test: int, compares: str = SET_METRICS, least: int = MIN_SPLIT) -> None:
    """One line, before any training, when a split is too small for the stages after it; `compares`
    names what compares sets (the modality's `set_metrics`)."""
    if min(n_train, n_test) < least:
        raise DataError(f"{where}: {n_train + n_test} instances split into {n_train} train / {n_test} test; each "
                        f"split needs at least {least} ({compares} compare sets): add files, "
                        "or change dataset.folder.train_count / train_fraction")


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """A name's sort key with its digit runs compared by value: `2.png` before `10.png`. CelebA-HQ ships
    `0.jpg` to `29999.jpg` unpadded; in plain string order a `sorted` split with train_count 27000 would test
    every name starting with 8 or 9 instead of 27000-29999. Zero-padded names keep their string order."""
    parts = _DIGITS.split(name)      # text, digits, text, ...: the same type at the same position
    return tuple(int(t) if i % 2 else t for i, t in enumerate(parts)), name


def split_members(cfg: Config, names: list[str], where, compares: str = SET_METRICS,
                  groups: list[str] | None = None, least: int = MIN_SPLIT) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices into `names` (in natural order) by dataset.split, whole groups to one side:

    - `groups[i]` names the instance file i belongs to (3D-RecGAN's 16 views of one object; a folder's files
      sharing a stem, `00001.png` and `00001.jpg`); the split draws groups, so no group has files on both
      sides. None: each file its own.
    - `random`: a permutation of the groups seeded by `seed` (numpy's PCG64), so the split does not depend
      on how the files are named or listed, and is the same on every machine; the sizes as
      dataset.folder.train_count / train_fraction say (counting groups). Each split keeps the order.
    - `sorted`: the first ones train, the rest test (CelebA-HQ's split as mNIF uses it).
    - a FILE: the names it lists, one per line, are the test split: a file name, its stem, its path below
      the folder (with or without suffix), or a group; a file's whole group goes with it. A name that
      matches files of several groups is refused, with the matches.

    Each side must then hold `least` files, of `least` groups.
    """
    mode = cfg.dataset.split
    groups = list(names) if groups is None else list(groups)
    position = {g: k for k, g in enumerate(dict.fromkeys(groups))}     # the groups, in the files' order
    member = np.array([position[g] for g in groups], dtype=np.int64)
    if len(position) < 2:
        raise DataError(f"{where}: its {len(names)} files are views of one object ({groups[0]}); a split needs two "
                        "objects or more, one a side")
    if mode in ("random", "sorted"):
        g = len(position)
        n_train = split_count(cfg, g, where, compares, least)
        ranked = np.arange(g) if mode == "sorted" else np.random.default_rng(cfg.seed).permutation(g)
        test_groups = ranked[n_train:]
    else:
        test_groups = _listed_groups(Path(mode), names, groups, position, where)
    in_test = np.isin(member, test_groups)
    train, test = np.flatnonzero(~in_test), np.flatnonzero(in_test)
    check_splits(where, len(train), len(test), compares, least)
    check_groups(where, groups, train, test, compares, least)
    return train, test


def _listed_groups(listed: Path, names: list[str], groups: list[str], position: dict[str, int],
                   where) -> np.ndarray:
    """The groups a split file's names pick (see split_members)."""
    try:
        # A BOM (Windows' Notepad writes one) would otherwise be part of the first name.
        text = config.read_text(listed).removeprefix("\ufeff")
        wanted = [line.strip() for line in text.splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"{listed}: dataset.split is not random, sorted or a readable file ({e.strerror or e})") \
            from None

    def keys(name: str) -> set[str]:
        path = Path(name)
        return {name, path.name, path.stem, str(path.with_suffix(""))}

    index: dict[str, set[int]] = {}
    for name, group in zip(names, groups):
        for key in keys(name) | {group}:
            index.setdefault(key, set()).add(position[group])
    missing = [w for w in wanted if w not in index]
    if missing:
        raise DataError(f"{listed}: {len(missing)} of its {len(wanted)} test names not in {where} "
                        f"(first: {missing[0]!r}); list file names, stems or paths below it, one per line")
    for w in wanted:
        if len(index[w]) > 1:
            matches = [name for name, group in zip(names, groups) if w in keys(name) | {group}]
            raise DataError(f"{listed}: {w!r} matches {len(matches)} files ({', '.join(matches[:5])}"
                            f"{', ...' if len(matches) > 5 else ''}); name one by its path below {where}")
    return np.unique([k for w in wanted for k in index[w]])


def hidden(name: str) -> bool:
    """A name no reader takes for data: dot files and folders (macOS's `._x.png` AppleDouble sidecars and
    `.DS_Store`, Jupyter's `.ipynb_checkpoints/`, `.git/`) and `__MACOSX/`, the sidecar folder of a zip made
    on a Mac. Their files look like data by suffix (`._00001.png`) but are not, or are stale copies."""
    return name.startswith((".", "__MACOSX"))


def dataset_folder(path: str | Path) -> Path:
    """`dataset.path` as a folder, or one line saying what it is instead."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: dataset.path does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: dataset.path is a file, not a folder")
    return root


def list_folder(cfg: Config, suffixes: tuple[str, ...]) -> tuple[Path, list[Path]]:
    """(folder, its files with one of `suffixes` in natural order, cut to dataset.folder.limit; `hidden` ones
    left out)."""
    d = cfg.dataset
    root = dataset_folder(d.path)
    files = sorted((p for p in root.iterdir() if p.suffix.lower() in suffixes and not hidden(p.name)),
                   key=lambda p: natural_key(p.name))
    if d.folder.limit is not None:
        files = files[: d.folder.limit]
    if len(files) < 2 * MIN_SPLIT:
        raise DataError(f"{root}: found {len(files)} files with suffixes {suffixes}; need at least "
                        f"{2 * MIN_SPLIT} ({MIN_SPLIT} train, {MIN_SPLIT} test)")
    return root, files


def read_members(cfg: Config, files: list[Path], read) -> tuple[dict[int, np.ndarray], list[str]]:
    """({index: read(file)} for the files read, names of those skipped as unreadable with
    dataset.folder.skip_corrupt; without it the first unreadable file's DataError stops the run)."""
    signals, skipped = {}, []
    for i, p in enumerate(files):
        try:
            signals[i] = read(p)
        except DataError:
            if not cfg.dataset.folder.skip_corrupt:
                raise
            skipped.append(p.name)
    return signals, skipped
