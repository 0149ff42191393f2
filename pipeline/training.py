"""What every training loop here shares: seeding, the LR schedule, the per-step
log that `dvc plots` draws, and checkpoints that let an interrupted stage resume.

A checkpoint carries a fingerprint of everything that defines the run (params
and data). A stage resumes only from a checkpoint with its own fingerprint and
written by the code now on disk; any other is ignored, so changing params or
code can never continue a stale run.
"""
from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import io


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fingerprint(*parts) -> str:
    """Stable hash of JSON-able parts (params sections, data descriptions)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_place(device) -> list:
    """What a run's numbers depend on besides its params and data, as fingerprint parts: the number of
    torchrun processes (the effective batch and each one's stream of batches) and the kind of device (its
    arithmetic). Empty for one process on a CPU, whose fingerprint is its params' and data's alone."""
    from .distributed import world_size

    place = {}
    if world_size() > 1:
        place["processes"] = world_size()
    if torch.device(device).type != "cpu":
        place["device"] = torch.device(device).type
    return [place] if place else []


def code_digest(stage: str | None = None) -> str:
    """Digest of the source a run executes, so that a code change never resumes an old checkpoint: the
    modules `stage` (e.g. "pipeline.stages.fit_loe") imports, as `dvc.yaml` lists them, or the whole package.
    An edit elsewhere (the control page, a collector) leaves an interrupted stage's checkpoint usable."""
    from .deps import closure

    files = closure(stage) if stage else Path(__file__).parent.rglob("*.py")
    h = hashlib.md5()
    for path in sorted(files):
        h.update(path.read_bytes())
    return h.hexdigest()


# oneDNN instruction sets (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: bf16 is emulated under any of them.
ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware: AVX512-BF16 or AMX on x86 (oneDNN's own
    `_is_mkldnn_bf16_supported` says yes to any AVX-512 CPU, which emulates it), oneDNN's test elsewhere.

    An instruction set capped below AVX-512 (ATEN_CPU_CAPABILITY=avx2 or ONEDNN_MAX_CPU_ISA=AVX2: how an
    AVX-512 machine reproduces the bytes of one without it, docs/operations.md) counts as no bf16, as
    on that machine."""
    import platform

    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            if torch.backends.cpu.get_cpu_capability() != "AVX512" or \
                    os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ONEDNN_ISAS_WITHOUT_BF16:
                return False
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_here(settings, key: str, device: torch.device, warnings: list[str]):
    """`settings` (a config section with `precision`) as this machine trains it: bf16 asked for on a CPU
    that only emulates it becomes fp32, with a warning naming `key`. Emulated bf16 is slower than fp32
    (an AVX-512 CPU without BF16: the HCDM step 99 against 43 ms, Stage-1's 2-3x)."""
    import dataclasses

    from .errors import warn

    if settings.precision != "bf16" or device.type != "cpu" or native_bf16():
        return settings
    warn(warnings, f"{key} bf16 asked for, but this CPU has no native bf16 (AVX512-BF16 or AMX): training in "
                   f"fp32 instead (set {key} fp32 to silence this)")
    return dataclasses.replace(settings, precision="fp32")


def file_digest(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base LR, then cosine decay to 0 at `total` steps."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class StepLog:
    """Per-step metrics kept in memory and written as CSV for `dvc plots`."""

    def __init__(self, path: str | Path, rows: list[dict] | None = None):
        self.path = Path(path)
        self.rows = list(rows or [])

    def append(self, **row) -> None:
        self.rows.append(row)

    def write(self) -> None:
        if not self.rows:
            return
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.rows[0]))
        writer.writeheader()
        writer.writerows(self.rows)
        io.save_text(self.path, buf.getvalue())


# Settings that change when and how often a run reports, not what it computes:
# they stay out of a checkpoint's fingerprint, so changing them keeps an
# interrupted run's progress.
SCHEDULE_ONLY = ("checkpoint_every", "log_every")


def run_settings(section) -> dict:
    """A params section as it enters a fingerprint: without the SCHEDULE_ONLY keys."""
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(section).items() if k not in SCHEDULE_ONLY}


def spare_store() -> Path | None:
    """Where an unfinished run's checkpoint is also kept, out of DVC's reach: $CHINR_CHECKPOINTS, else
    ~/.cache/chinr/checkpoints; CHINR_CHECKPOINTS= (empty) turns the spare copy off."""
    where = os.environ.get("CHINR_CHECKPOINTS")
    if where == "":
        return None
    if where:
        return Path(where)
    try:
        return Path.home() / ".cache" / "chinr" / "checkpoints"
    except RuntimeError:   # no home directory to be found: no spare, the run itself is unaffected
        return None


class Checkpointer:
    """The checkpoint of one run: its `persist: true` output, plus a spare copy named by the run's fingerprint.

    A run is its fingerprint (params, data) and the code that trains it (`code`, by default the package's
    digest): a checkpoint resumes only under both. An unfinished checkpoint holds the code digest; the
    finished one does not, so its bytes, which `dvc.lock` records, follow the params and data alone and a
    fresh clone reproduces them after any code change that leaves the computation alone. Who wrote a
    finished checkpoint is vouched for by either of two records: `<name>.code` beside it (the code digest
    of each finished checkpoint this workspace wrote, by the checkpoint's md5), or `dvc.lock`, when it
    lists this very file as a stage's output and every module that stage runs is unchanged since (a
    checkpoint `dvc pull` or `dvc checkout` brought, under the code that made it). Anything else starts
    afresh.

    Why the spare: before it runs, `dvc exp run` checks out the baseline's
    outputs, `persist` ones included, so an interrupted experiment's
    checkpoint is replaced by the baseline's (another fingerprint) and a rerun
    of the same command would start from step 0. The spare lives outside the
    workspace (`spare_store`), is a hard link of the output where the file
    system allows (no extra writing), and is removed when the run finishes,
    so only interrupted runs leave one.
    """

    def __init__(self, path: str | Path, fingerprint: str, every: int, code: str | None = None, place: list = ()):
        self.path = Path(path)
        self.fingerprint = fingerprint
        # `run_place`'s parts, also kept in the checkpoint (none for one CPU process), so that a checkpoint of
        # another process count or device says so instead of "other params"
        self.place = dict(place[0]) if place else {}
        self.code = code_digest() if code is None else code
        self.every = every
        self.vouched = self.path.with_name(self.path.name + ".code")   # who wrote the finished checkpoints
        store = spare_store()
        # Named by the run (params, data, code), not by the workspace: `dvc exp run --queue` and `--temp` run
        # each attempt in a new folder, and a rerun there resumes from the same spare. Two workspaces running
        # the same run under the same code compute the same steps; run at the same moment, one may remove the
        # other's half-written spare (a printed line; the runs go on). A rerun under edited code never
        # overwrites an interrupted run's.
        self.spare = None if store is None else \
            store / f"{self.path.parent.name}-{self.path.stem}-{fingerprint}-{self.code[:8]}.pt"
        io.remove_stale_temporaries(self.path)   # a kill during a save leaves `.checkpoint.pt.*.tmp` behind

    def _read(self, path: Path) -> dict | None:
        """A checkpoint file's state; an unreadable one is moved aside (None)."""
        from .distributed import is_main
        from .errors import DataError

        try:
            state = io.load_torch(path)
            if not isinstance(state, dict) or not {"step", "modules", "optimizer", "fingerprint"} <= set(state):
                raise DataError(f"{path}: not a checkpoint of this pipeline")
            return state
        except FileNotFoundError:   # under torchrun, rank 0 moved it aside (unreadable) as this process looked
            return None
        except DataError as e:
            aside = path.with_name(path.name + ".corrupt")
            if is_main():        # under torchrun every rank reads; one moves the file
                try:
                    path.replace(aside)
                except FileNotFoundError:
                    pass
                reason = str(e).removeprefix(f"{path}: ").split("; rerun")[0]
                print(f"[checkpoint] {path} is unreadable ({reason}); moved it to {aside} and starting afresh")
            return None

    VOUCHED_KEPT = 32                      # finished checkpoints `<name>.code` remembers (a few bytes each)

    def _vouched(self) -> dict:
        try:
            vouched = json.loads(self.vouched.read_text())
        except (OSError, ValueError):
            return {}
        return vouched if isinstance(vouched, dict) else {}

    def _code_of(self, path: Path, state: dict) -> str | None:
        """The code digest that wrote a checkpoint: its own, or for a finished one what `<name>.code` or
        `dvc.lock` vouches (None: unknown)."""
        if "code" in state:
            return state["code"]
        if path != self.path:
            return None
        digest = file_digest(path)
        code = self._vouched().get(digest)
        if code != self.code and lock_vouches(path, digest):   # either record may vouch for this code
            code = self.code
        return code

    def load(self, refuse=None) -> dict | None:
        """The saved state of this very run, or None (no file, another run's, or an unreadable one).

        `refuse(state)`: why this run cannot continue from a state of its own params, data and code (a
        string), or None."""
        other = other_code = False
        refused = None
        for path in (self.path, self.spare):
            if path is None or not path.exists():
                continue
            state = self._read(path)
            if state is None:
                continue
            if state.get("fingerprint") != self.fingerprint:
                saved = state.get("place", {})
                other = other or (f"was written by {self._where(saved)}, this run is {self._where(self.place)}"
                                  if isinstance(saved, dict) and saved != self.place else True)
            elif self._code_of(path, state) != self.code:
                other_code = True
            elif refuse is not None and (why := refuse(state)):
                refused = refused or why
            else:
                say(f"[checkpoint] resuming from {path} at step {state['step']}")
                return interned_keys({k: v for k, v in state.items() if k != "code"})
        if refused:
            say(f"[checkpoint] {self.path} {refused}: starting afresh")
        elif other_code:
            say(f"[checkpoint] {self.path} was written by other code (or is not vouched for): starting afresh")
        elif isinstance(other, str):
            say(f"[checkpoint] {self.path} {other}: starting afresh (run it as it was launched to resume it)")
        elif other:
            say(f"[checkpoint] {self.path} belongs to other params or data: starting afresh")
        return None

    def _place(self) -> dict:
        return {"place": self.place} if self.place else {}

    @staticmethod
    def _where(place: dict) -> str:
        n = place.get("processes", 1)
        return f"{n} process{'es' if n > 1 else ''} on {place.get('device', 'cpu')}"

    def due(self, step: int, total: int) -> bool:
        return step % self.every == 0 or step == total

    def save(self, state: dict, final: bool = False) -> None:
        """Write the checkpoint; keep the spare in step with it until the run's final save removes it."""
        import shutil

        if final:                                  # no code digest inside: the bytes DVC records
            def vouch(written: Path) -> None:      # before the file takes its name: a kill between the two
                digest = file_digest(written)      # never leaves a finished checkpoint nobody vouches for
                vouched = {k: v for k, v in self._vouched().items() if isinstance(v, str) and k != digest}
                vouched[digest] = self.code        # the newest last: the oldest go first past VOUCHED_KEPT
                kept = dict(list(vouched.items())[-self.VOUCHED_KEPT:])
                io.save_text(self.vouched, json.dumps(kept, indent=0) + "\n")

            io.save_torch(self.path, {**state, **self._place(), "fingerprint": self.fingerprint}, before_replace=vouch)
            if self.spare is not None:
                self.spare.unlink(missing_ok=True)
            return
        io.save_torch(self.path, {**state, **self._place(), "fingerprint": self.fingerprint, "code": self.code})
        if self.spare is None:
            return
        try:
            self.spare.parent.mkdir(parents=True, exist_ok=True)
            with io.atomic_path(self.spare) as tmp:
                tmp.unlink()
                try:
                    os.link(self.path, tmp)        # same file system: no second write
                except OSError:
                    shutil.copyfile(self.path, tmp)
        except OSError as e:                       # the spare is a convenience: never fail a run for it
            print(f"[checkpoint] could not keep a spare copy in {self.spare.parent}: {e.strerror or e}")


def say(line: str) -> None:
    """A line printed once, by rank 0 under torchrun (every process reads the checkpoint)."""
    from .distributed import is_main

    if is_main():
        print(line)


def interned_keys(state):
    """`state` with every dict key that is a string replaced by its interned copy.

    Pickle writes a string once per object and refers back to it after, so the bytes of a saved
    dict depend on which keys are the same object. A fresh run's keys ('step', 'exp_avg', 'loss',
    ...) are identifier literals, which Python interns; a resumed run's optimizer state and log rows
    carry the strings unpickled from the checkpoint (new objects), and its final checkpoint came out
    64 bytes longer than an uninterrupted run's with equal tensors. Interned on load, the resumed run
    writes the same bytes (a test for Stage-1; Stage-2 checked the same way). String values are left:
    a scheduler that keeps key names as values (OneCycleLR) would need them interned too.
    """
    if isinstance(state, dict):            # in place, in order: an OrderedDict keeps its type and _metadata
        for k in list(state):
            v = state.pop(k)
            state[sys.intern(k) if isinstance(k, str) else k] = interned_keys(v)
    elif isinstance(state, (list, tuple)):
        for v in state:
            interned_keys(v)
    return state


def lock_vouches(path: Path, digest: str, lock: Path = Path("dvc.lock")) -> bool:
    """Whether `dvc.lock` (a stage's working directory is the repository's root) records `path`, with this
    md5, as a stage's output, and every Python module in that stage's deps still has its recorded md5: the
    code that made the file is the code on disk, as far as the stage runs it (its deps are its import
    closure, `pipeline.deps`)."""
    import yaml

    root = lock.resolve().parent
    where = os.path.relpath(Path(path).resolve(), root)
    try:                                   # a lock DVC did not write (or none) vouches for nothing
        for stage in yaml.safe_load(lock.read_text())["stages"].values():
            if any(o["path"] == where and o.get("md5") == digest for o in stage.get("outs", [])):
                modules = {d["path"]: d.get("md5") for d in stage.get("deps", []) if d["path"].endswith(".py")}
                return bool(modules) and all((root / m).is_file() and file_digest(root / m) == md5
                                             for m, md5 in modules.items())
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return False
    return False


def rng_state(generator: torch.Generator, generators: list[torch.Tensor] | None = None, cuda: bool = False) -> dict:
    """Every RNG's state as tensors, ints, floats and strings only, so that a checkpoint loads with
    `torch.load(weights_only=True)` (numpy's state holds an array, which that loader refuses).

    `generators`: under torchrun, every process's `generator` state by rank (each draws its own batches;
    the global streams are seeded alike on every process). `cuda`: the run trains on a GPU, whose current
    device's stream is kept too (dropout on a GPU draws from it); a CPU run's state never depends on CUDA."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "python": random.getstate()}
    if generators is not None:
        state["generators"] = generators
    if cuda:
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(generator: torch.Generator, state: dict, cuda: bool = False) -> None:
    """Every RNG back to `state`; under torchrun `generator` takes this process's own saved stream."""
    from .distributed import rank, world_size

    generators = state.get("generators")
    if world_size() > 1 and (generators is None or len(generators) != world_size()):
        raise ValueError(f"the checkpoint holds {len(generators or [None])} process(es)' batch streams, "
                         f"this run has {world_size()}")
    generator.set_state(generators[rank()] if world_size() > 1 else state["generator"])
    if cuda and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(state["python"]) if isinstance(state["python"], list) else state["python"])


class TrainingDiverged(RuntimeError):
    """A training loop stopped by its divergence guard; the message names the step, the figure and the knobs."""


class DivergenceGuard:
    """Stops a run that has gone wrong instead of letting it report success.

    Three signs, each checked on every step: a non-finite loss or gradient; a
    gradient norm (before clipping) whose median over a window of `WINDOW`
    steps is `GRAD_FACTOR` times the median of the earlier windows' medians
    (a spike is ignored, a run that stays high is not); and, where the step
    reports a quality figure (Stage-1's train PSNR), a window median
    `DROP_DB` below the best earlier window median. Replayed on the CelebA
    preset's LoE with the old expert step (64x64, batch 8, lr 1e-4): window
    medians of the grad norm 1.9 (steps 1-25), 12.8 (26-50), 1.4e4 (51-75),
    stopped at step 75 ("1932x its running median 7.36"); its train PSNR fell
    15.0 -> 12.3, a 2.7 dB drop that alone would not trip 5 dB. A fourth sign
    catches a model whose normalisation keeps every number finite and the
    gradient flat while the loss sits far above where it began: a window median
    of the loss `LOSS_FACTOR` times the first step's. The x0 / long-skip HCDM
    at hcdm.lr 1000 (the test suite's micro config) ends at a finite loss of
    8.6e3 after 30 steps; its median over steps 1-25 is 1.8e5, 1e5x its first
    step's 1.73. The image default's logged HCDM loss only falls (1.38 at
    step 25, 0.14 at step 4000).
    """

    WINDOW = 25
    GRAD_FACTOR = 100.0
    DROP_DB = 5.0
    LOSS_FACTOR = 100.0

    def __init__(self, stage: str, knobs: str, quality: str | None = None):
        self.stage, self.knobs, self.quality = stage, knobs, quality
        self.grad: list[float] = []          # this window's grad norms
        self.score: list[float] = []         # this window's quality figures
        self.grad_medians: list[float] = []  # one per finished window
        self.best_score = -math.inf
        self.losses: list[float] = []        # this window's losses
        self.first_loss = None               # the first step's loss
        self.last_good = None                # (step, path) of the last checkpoint written

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("grad", "score", "grad_medians", "best_score", "losses", "first_loss")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def _stop(self, step: int, what: str) -> None:
        kept = (f"the last good checkpoint ({self.last_good[1]}, step {self.last_good[0]}) is kept"
                if self.last_good else "this run wrote no checkpoint")
        raise TrainingDiverged(f"{self.stage} diverged at step {step}: {what}; no model was written and {kept}; "
                               f"turn down {self.knobs}")

    def check(self, step: int, loss: float, grad_norm: float, score: float | None = None) -> None:
        if not math.isfinite(loss) or not math.isfinite(grad_norm):
            self._stop(step, f"the loss is {loss:.4g} and the gradient norm {grad_norm:.4g}")
        self.grad.append(grad_norm)
        self.losses.append(loss)
        if self.first_loss is None:
            self.first_loss = loss
        if score is not None:
            self.score.append(score)
        if len(self.grad) < self.WINDOW:
            return
        median = float(np.median(self.grad))
        if len(self.grad_medians) >= 2:
            base = float(np.median(self.grad_medians))
            if median > self.GRAD_FACTOR * base:
                self._stop(step, f"the gradient norm's median over the last {self.WINDOW} steps is {median:.4g}, "
                                 f"{median / base:.0f}x its running median {base:.4g}")
        self.grad_medians.append(median)
        loss_median = float(np.median(self.losses))
        if self.first_loss > 0 and loss_median > self.LOSS_FACTOR * self.first_loss:
            self._stop(step, f"the loss's median over the last {self.WINDOW} steps is {loss_median:.4g}, "
                             f"{loss_median / self.first_loss:.0f}x the first step's {self.first_loss:.4g}")
        if self.score:
            current = float(np.median(self.score))
            if current < self.best_score - self.DROP_DB:
                self._stop(step, f"the train {self.quality} fell to {current:.2f} (median of the last "
                                 f"{self.WINDOW} steps) from {self.best_score:.2f}")
            self.best_score = max(self.best_score, current)
        self.grad, self.score, self.losses = [], [], []


class Trainer:
    """The shared outer loop in three parts, each usable alone: `resume` (the checkpoint, if any, back into
    the modules, optimiser, scheduler, RNG, guard and log), `step` (one optimiser step: backward, gradient
    averaging, clipping, update; nothing read back from the device) and `report` (the pending steps through
    the divergence guard in one device-to-host read, then the log row and the checkpoint when due).

    Every module in `modules` and the optimiser, scheduler, RNG streams, guard and log are checkpointed
    together, so a resumed run continues exactly where the interrupted one stopped. `after_step()` runs
    after each optimiser step (EMA updates).
    """

    def __init__(self, modules: dict[str, torch.nn.Module], params: list[torch.nn.Parameter],
                 optimizer: torch.optim.Optimizer, scheduler, total: int, grad_clip: float, log_every: int,
                 checkpointer: Checkpointer, log: StepLog, generator: torch.Generator, desc: str,
                 after_step=None, guard: DivergenceGuard | None = None):
        from .distributed import is_main

        self.modules, self.params, self.optimizer, self.scheduler = modules, params, optimizer, scheduler
        self.total, self.grad_clip, self.log_every, self.desc = total, grad_clip, log_every, desc
        self.checkpointer, self.log, self.generator, self.after_step = checkpointer, log, generator, after_step
        self.guard = guard or DivergenceGuard(desc, f"{desc} learning rate")
        self.main = is_main()
        self.pending: list[torch.Tensor] = []    # (loss, grad norm, *metrics) of the steps not yet read back
        self.thinned = False                     # resumed with fewer log rows than the checkpoint holds
        self.csv_written = -math.inf             # when the curve CSV was last written between checkpoints
        self.cuda = any(p.is_cuda for p in params)
        self.names: list[str] = []

    LIVE_CSV_SECONDS = 30.0

    def resume(self) -> int:
        """The step to start from: 0, or the checkpoint's step with everything restored."""
        from .distributed import world_size

        def logged(state: dict) -> list[int]:
            return [s for s in range(1, state["step"] + 1) if s % self.log_every == 0 or s == self.total]

        def refuse(state: dict) -> str | None:
            # log_every stays out of the fingerprint: a row's values do not depend on it, so a checkpoint whose
            # rows include every row this log_every writes continues, its rows thinned to them. One that lacks
            # some starts afresh: resumed, its curve and final bytes would differ from a fresh run's.
            if not set(logged(state)) <= {row.get("step") for row in state["log"]}:
                return f"lacks rows that log_every {self.log_every} writes"
            if world_size() > 1 and len(state["rng"].get("generators") or ()) != world_size():
                return f"does not hold the batch streams of {world_size()} processes"
            return None

        state = self.checkpointer.load(refuse)
        if state is None:
            return 0
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(self.generator, state["rng"], self.cuda)
        rows = {row["step"]: row for row in state["log"]}
        self.log.rows = [rows[s] for s in logged(state)]
        self.thinned = len(self.log.rows) < len(state["log"])
        self.guard.load_state_dict(state.get("guard", {}))
        self.guard.last_good = (state["step"], self.checkpointer.path)
        return state["step"]

    @staticmethod
    def same_start_everywhere(start: int) -> None:
        """Under torchrun, stop with one line unless every process resumed from the same step (each reads
        the checkpoint: across machines it must be on a shared file system)."""
        from .distributed import all_gather

        starts = all_gather(torch.tensor([start]))
        if starts is not None and len({int(s) for s in starts}) > 1:
            from .errors import DataError

            raise DataError(f"the processes would start from different steps ({[int(s) for s in starts]} "
                            "by rank): torchrun across machines needs the checkpoint folder on a file system "
                            "they share")

    def step(self, loss: torch.Tensor, metrics: dict) -> None:
        """One optimiser step on `loss`; its loss, gradient norm and metrics wait on the device for `report`."""
        from .distributed import average_gradients

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.params)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip if self.grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        if self.after_step is not None:
            self.after_step()
        self.names = list(metrics)
        self.pending.append(torch.stack([loss.detach().float(), grad_norm.float(),
                                         *(torch.as_tensor(metrics[k]).float().to(loss.device) for k in self.names)]))

    def report(self, done: int) -> dict | None:
        """After step `done`: on a log or checkpoint step, every pending step through the guard, then the
        log row (returned) and the checkpoint; on other steps nothing (None)."""
        from .distributed import average

        logging = done % self.log_every == 0 or done == self.total
        due = self.checkpointer.due(done, self.total)
        if not (logging or due):       # every process reports on the same steps: the guard stops all at once
            return None
        # Under torchrun the guard and the log read the mean over the processes (the gradient norm is
        # already the same on each): every process stops at the same step with the same message.
        values = average(torch.stack(self.pending)).tolist()            # the one device-to-host read
        guard, names = self.guard, self.names
        quality = names.index(guard.quality) if guard.quality in names else None
        for i, (l_, g_, *m_) in enumerate(values):
            guard.check(done - len(values) + 1 + i, l_, g_, None if quality is None else m_[quality])
        self.pending = []
        row = None
        if logging:
            l_, g_, *m_ = values[-1]
            row = {"step": done, "loss": round(l_, 6), **{k: round(v, 4) for k, v in zip(names, m_)},
                   "grad_norm": round(g_, 4), "lr": self.scheduler.get_last_lr()[0]}
            self.log.append(**row)
            # `dvc plots` follows a live run between checkpoints too, the whole CSV rewritten at most every
            # LIVE_CSV_SECONDS (at paper scale a rewrite per row would write thousands of rows thousands of times)
            if self.main and not due and time.monotonic() - self.csv_written >= self.LIVE_CSV_SECONDS:
                self.log.write()
                self.csv_written = time.monotonic()
        if due:
            self.save(done)
        return row

    def save(self, done: int) -> None:
        """The checkpoint after step `done` (rank 0 writes it; every process takes part)."""
        from .distributed import all_gather

        generators = all_gather(self.generator.get_state())               # None for one process
        if self.main:
            self.checkpointer.save({"step": done, "modules": {k: m.state_dict() for k, m in self.modules.items()},
                                    "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                                    "rng": rng_state(self.generator, generators, self.cuda), "log": self.log.rows,
                                    "guard": self.guard.state_dict()}, final=done == self.total)
            self.log.write()
        self.guard.last_good = (done, self.checkpointer.path)

    def run(self, step_fn, progress: bool = True) -> None:
        """`step_fn(step)` -> (loss, metrics) for one batch, from the resumed step to the last."""
        from .progress import bar

        start = self.resume()
        self.same_start_everywhere(start)
        if start == self.total and self.thinned:   # a finished run under a sparser log_every: its final bytes
            self.save(start)
        steps = bar(range(start, self.total), initial=start, total=self.total, desc=self.desc,
                    disable=not (progress and self.main))
        for step in steps:
            self.step(*step_fn(step))
            row = self.report(step + 1)
            if row is not None:
                steps.set_postfix({k: row[k] for k in ("loss", *self.names)}, refresh=False)   # at the next redraw


def train_loop(step_fn, modules: dict[str, torch.nn.Module], params: list[torch.nn.Parameter],
               optimizer: torch.optim.Optimizer, scheduler, total: int, grad_clip: float, log_every: int,
               checkpointer: Checkpointer, log: StepLog, generator: torch.Generator, desc: str,
               after_step=None, progress: bool = True, guard: DivergenceGuard | None = None) -> None:
    """`Trainer(...).run(step_fn)`: resume, then step and report to the last step."""
    Trainer(modules, params, optimizer, scheduler, total, grad_clip, log_every, checkpointer, log, generator, desc,
            after_step, guard).run(step_fn, progress)
