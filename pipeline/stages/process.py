"""The process a stage runs in: its seeds, its CPU threads, and how glibc's malloc keeps memory."""
from __future__ import annotations

import platform

import torch

from ..distributed import rank
from ..training import seed_everything


def seeded(seed: int) -> torch.Generator:
    """Every RNG seeded with `seed`; the returned generator offset by the process's rank, so that
    under torchrun each process draws its own batches."""
    generator = seed_everything(seed)
    return generator.manual_seed(seed + rank())


def set_threads(threads: int | None) -> None:
    """`threads` in params.yaml: torch's CPU threads (null: torch's choice, all cores or OMP_NUM_THREADS).
    One process per core budget: `dvc queue start --jobs 2` on 2 cores wants threads 1 (README)."""
    if threads is not None:
        torch.set_num_threads(threads)


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks for reuse instead of returning them to the system.

    By default a block over the (dynamic, at most 32 MB) mmap threshold is
    mapped afresh on each allocation and unmapped when freed, so every large
    activation pays its page faults again: Inception at 299x299 on 2 CPU cores
    took 87-91 ms an image in batches of 16, 62-73 ms with this; a Stage-1 step
    of the default 226-230 ms, 213-219 ms. The price is a process that keeps
    its peak memory (1.4 -> 1.9 GB for Inception). Numbers are unchanged
    (the default's micro pipeline is byte-identical with and without it). Not
    glibc (macOS, musl): nothing to do; returns whether both settings were
    accepted (glibc <= 2.34 refuses the mmap threshold: no speed-up there).
    """
    import ctypes
    import ctypes.util

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        # Each on its own: glibc <= 2.34 refuses an mmap threshold above 32 MiB (returns 0), and the
        # trim threshold still helps there.
        mmap = bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30))
        trim = bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
        return mmap and trim
    except (OSError, AttributeError):
        return False
