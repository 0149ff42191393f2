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

import io as _io
import platform
import sys
import time
from pathlib import Path

import torch

from ..config import ConfigError, load
from ..errors import DataError, MissingArtifact, NonFiniteError
from ..distributed import init_from_environment, is_main, rank, resolve_device
from ..training import TrainingDiverged, seed_everything


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
    code, line = 0, None
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
    except (ConfigError, DataError, MissingArtifact, TrainingDiverged) as e:
        code, line = 2, f"error: {e}"
    except OSError as e:   # after MissingArtifact, a FileNotFoundError of ours
        code, line = 2, f"error: {stage}: {e.filename}: {e.strerror}" if e.filename else f"error: {stage}: {e}"
    except KeyboardInterrupt:
        code, line = 130, (f"interrupted: {stage} stopped and wrote no result; `dvc repro` runs it again "
                           "(a training stage resumes from its last checkpoint)")
    except BaseException:   # a bug: its traceback is the report, but no partial output may stay behind
        _clean_up(outputs)
        raise
    if code:
        _clean_up(outputs)
        print(line, file=sys.stderr)
    return code


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


class StageLog:
    """Tees stdout and stderr to `data/logs/<stage>.log` (rank N > 0: `<stage>.rankN.log`).

    A progress bar redraws its line with carriage returns; the log keeps one
    line per redraw at most every `every` seconds, and the last one."""

    def __init__(self, stage: str, every: float = 10.0):
        self.stage, self.every, self.file = stage, every, None
        self.streams = (sys.stdout, sys.stderr)

    def open(self, rank: int) -> None:
        from ..artifacts import LOGS

        try:
            LOGS.mkdir(parents=True, exist_ok=True)
            path = LOGS / (f"{self.stage}.log" if rank == 0 else f"{self.stage}.rank{rank}.log")
            # A file name that is not UTF-8 (kept by Python as surrogates) is written escaped, never a crash.
            self.file = open(path, "w", encoding="utf-8", errors="backslashreplace", buffering=1)
        except OSError as e:   # a log we cannot write must not stop the stage
            print(f"warning: no log file ({e})", file=sys.__stderr__)
            return
        self.pending, self.last = "", float("-inf")
        sys.stdout, sys.stderr = (_Tee(s, self) for s in self.streams)

    def note(self, text: str) -> None:
        if self.file is not None:
            self.write(f"# {text}\n")

    def write(self, text: str) -> None:
        """Whole lines go straight to the file; a line redrawn with \\r is kept as its latest state. A log
        that cannot be written (a full disk) stops logging; it never stops the stage or hides its error."""
        if self.file is None:
            return
        try:
            self._write(text)
        except OSError:
            self.file = None

    def _write(self, text: str) -> None:
        *done, self.pending = (self.pending + text).split("\n")
        for line in done:
            self.file.write(line.rsplit("\r", 1)[-1] + "\n")
        if "\r" in self.pending:
            self.pending = self.pending.rsplit("\r", 1)[-1]   # the bar's latest state
            if self.pending.strip():
                now = time.time()
                if now - self.last >= self.every:
                    self.file.write(self.pending + "\n")
                    self.last = now

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        sys.stdout, sys.stderr = self.streams
        if self.file is not None:
            file = self.file
            try:
                if self.pending.strip():
                    file.write(self.pending.rsplit("\r", 1)[-1] + "\n")
                if kind is not None and not issubclass(kind, SystemExit):   # a bug: its traceback belongs in the log
                    import traceback

                    file.write("".join(traceback.format_exception(kind, error, trace)))
                file.close()
            except OSError:   # a full disk: the stage's own line has reached the terminal already
                pass
        return False


class _Tee(_io.TextIOBase):
    def __init__(self, stream, log: StageLog):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        try:
            self.stream.write(text)
        except UnicodeEncodeError:   # e.g. a file name that is not UTF-8, on a strict stdout
            encoding = self.encoding or "utf-8"
            self.stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:   # tqdm and colour decisions see the terminal, not the log
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")


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
