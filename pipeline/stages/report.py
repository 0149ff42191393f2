"""A stage's metrics: the whole detail file and the numbers-only file that DVC compares."""
from __future__ import annotations

import time


def with_warnings(metrics: dict, warnings: list[str]) -> dict:
    """`metrics` plus a `warnings` list when there is any (so a clean run's file is unchanged)."""
    return {**metrics, "warnings": warnings} if warnings else metrics


def write_metrics(name: str, detail: dict, warnings: list[str] = (), omit: tuple[str, ...] = ()) -> None:
    """Two files per stage. `metrics/detail/<name>.json`: everything (tables, lists, definitions, the
    warnings' text). `metrics/<name>.json`: only its numbers, less the dotted keys matching a pattern in
    `omit` (shell-style, e.g. `refs.*.images`), plus the count of warnings: the figures that `dvc exp show`
    and `dvc metrics diff` compare."""
    from .. import io
    from ..artifacts import metrics_files

    scalars, full = metrics_files(name)
    io.save_json(full, with_warnings(detail, list(warnings)))
    headline = _numbers(detail, omit)
    io.save_json(scalars, {**headline, "warnings": len(warnings)} if warnings else headline)


def write_not_measured(name: str, reason: str) -> None:
    """A stage that has nothing to measure says so: a `warning:` line, and `measured: 0` with the warning's
    count in the metrics file (not `{}`, which `dvc metrics diff` shows as nothing at all)."""
    from ..errors import warn

    warnings: list[str] = []
    warn(warnings, f"{name} not measured: {reason}")
    write_metrics(name, {"measured": 0, "skipped": reason}, warnings)


def _numbers(d: dict, omit: tuple[str, ...], prefix: str = "") -> dict:
    from fnmatch import fnmatchcase

    out = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if any(fnmatchcase(path, pattern) for pattern in omit):
            continue
        if isinstance(value, dict):
            inner = _numbers(value, omit, path + ".")
            if inner:
                out[key] = inner
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


def elapsed(start: float) -> float:
    return round(time.time() - start, 1)
