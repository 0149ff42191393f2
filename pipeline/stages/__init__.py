"""One thin script per DVC stage: read params, call the library, write outputs.

`run` gives every stage the same behaviour: params loaded and validated once,
everything seeded, and the wall time returned for metrics. Whatever stops a
stage ends as one line on stderr and an exit code, never a traceback:

| what | line | exit |
|---|---|---|
| a bad param | `error: <dotted key>: ...` | 2 |
| a bad or missing input file, NaN/inf in an input or a result | `error: [stage: ]<file>: ...` | 2 |
| a diverged training run | `error: <stage> diverged at step ...` | 2 |
| an output that cannot be written (read-only folder, full disk) | `error: <stage>: <path>: <reason>` | 2 |
| Ctrl-C | `interrupted: ...` | 130 |

and a stage that stops removes the outputs it declared (`outputs`), so no
half-finished or older result is left looking current; checkpoints, which
are not among them, stay and resume the run.

Everything a stage prints (progress bars included, one line per bar every
few seconds) also goes to `data/logs/<stage>.log`, with the start, the
machine, the threads and the wall time; the log of a stage that failed stays.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import torch

from ..config import ConfigError, load
from ..errors import DataError, MissingArtifact, NonFiniteError
from ..distributed import init_from_environment, is_main, rank, resolve_device
from ..training import TrainingDiverged
from .log import StageLog
from .process import keep_freed_memory, seeded, set_threads
from .report import elapsed, write_metrics, write_not_measured

__all__ = ["run", "seeded", "elapsed", "write_metrics", "write_not_measured", "StageLog", "keep_freed_memory", "set_threads"]


def stage_name(main) -> str:
    """`fit_loe` for the `main` of pipeline/stages/fit_loe.py, also when it runs as `python -m`."""
    module = sys.modules.get(main.__module__)
    spec = getattr(module, "__spec__", None)
    return (spec.name if spec is not None else main.__module__).rsplit(".", 1)[-1]


def run(main, outputs: tuple[Path, ...] = (), params: str = "params.yaml") -> None:
    stage = stage_name(main)
    with StageLog(stage) as log:
        code = _run(main, stage, outputs, params, log)
    if code:
        sys.exit(code)


def _run(main, stage: str, outputs, params: str, log: "StageLog") -> int:
    code, line, shared = 0, None, False
    try:
        cfg = load(params)
        set_threads(cfg.threads)
        keep_freed_memory()
        device = resolve_device(cfg.device)
        init_from_environment(device)
        log.open(rank())
        log.note(f"{stage}: started {time.strftime('%Y-%m-%d %H:%M:%S')} on {platform.node()}, torch "
                 f"{torch.__version__}, device {device}, {torch.get_num_threads()} threads, params {params}")
        generator = seeded(cfg.seed)
        start = time.time()
        main(cfg, generator, start, device)
        log.note(f"{stage}: finished in {elapsed(start)} s")
    except NonFiniteError as e:
        code, line = 2, f"error: {stage}: {e}"
    except TrainingDiverged as e:   # under torchrun every process stops at one step with this message
        code, line, shared = 2, f"error: {e}", True
    except (ConfigError, DataError, MissingArtifact) as e:
        code, line = 2, f"error: {e}"
    except OSError as e:   # after MissingArtifact, a FileNotFoundError of ours
        code, line = 2, f"error: {stage}: {e.filename}: {e.strerror}" if e.filename else f"error: {stage}: {e}"
    except KeyboardInterrupt:
        again = ("the same torchrun command runs it again (a training stage resumes from its last checkpoint; "
                 "`dvc repro` runs one process, which starts afresh)" if int(os.environ.get("WORLD_SIZE", "1")) > 1
                 else "`dvc repro` runs it again (a training stage resumes from its last checkpoint)")
        code, line, shared = 130, f"interrupted: {stage} stopped and wrote no result; {again}", True
    except BaseException:   # a bug: its traceback is the report, but no partial output may stay behind
        _clean_up(outputs)
        raise
    if code:
        _clean_up(outputs)
        if rank() == 0:
            print(line, file=sys.stderr)
        elif shared:                # said once, by rank 0; each process's own log keeps it
            log.note(line)
        else:
            print(f"[rank {rank()}] {line}", file=sys.stderr)
    return code


def _clean_up(outputs) -> None:
    """Remove the stage's outputs; a second Ctrl-C meanwhile is ignored, so it cannot become a traceback."""
    import signal

    from .. import io

    if not is_main():
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        io.discard(*outputs)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)


