"""One thin script per DVC stage: read params, call the library, write outputs.

`run` gives every stage the same behaviour: params loaded and validated once,
everything seeded, bad input reported as one line naming the key or file
(exit code 2) instead of a traceback, and the wall time returned for metrics.
"""
from __future__ import annotations

import sys
import time

from ..artifacts import MissingArtifact
from ..config import ConfigError, load
from ..datasets import DataError
from ..distributed import init_from_environment, rank, resolve_device
from ..training import TrainingDiverged, seed_everything


def run(main, params: str = "params.yaml") -> None:
    try:
        cfg = load(params)
        device = resolve_device(cfg.device)
        init_from_environment(device)
        generator = seed_everything(cfg.seed)
        generator.manual_seed(cfg.seed + rank())   # under torchrun each process draws its own batches
        start = time.time()
        main(cfg, generator, start, device)
    except (ConfigError, DataError, MissingArtifact, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def elapsed(start: float) -> float:
    return round(time.time() - start, 1)
