"""Atomic artifact writes: every file appears whole or not at all.

Each writer writes to a temporary file beside the target and renames it over
the target (`os.replace` is atomic on POSIX), so an interrupted stage never
leaves a half-written artifact that a later stage could read.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import re
import stat
import tempfile
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError, NonFiniteError

_UMASK = os.umask(0)
os.umask(_UMASK)


def remove_stale_temporaries(path: str | Path) -> None:
    """Remove the temporaries of `path` that a killed writer left behind (`.NAME.*.tmp`, `.NAME.*/`).

    Two writers of one artifact never run at once (DVC locks the repository),
    so any temporary of `path` that exists when a new write starts is stale.
    """
    import shutil

    path = Path(path)
    if not path.parent.is_dir():
        return
    ours = re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}(\.tmp)?$")   # tempfile's 8-character names
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if not ours.match(stale.name):
            continue
        if stale.is_dir() and not stale.is_symlink() and not stale.name.endswith(".tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        elif stale.is_file() and stale.name.endswith(".tmp"):
            stale.unlink(missing_ok=True)


def not_replaceable(path: str | Path, links: bool = False) -> str | None:
    """Why a write must not replace `path`, or None: a folder, a device, a FIFO or a socket (a write
    would put a regular file in its place: `/dev/full` as root became a file), and with `links`, a
    symbolic link (for a user's --out: replacing the link is not what they meant). Pipeline artefacts
    may replace a link: a DVC link-type cache checks outputs out as links into the cache, and
    writing through one would change the cache."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        return "is a symbolic link; name a regular file" if links else None
    if stat.S_ISDIR(mode):
        return "is a folder; name a file"
    if not stat.S_ISREG(mode):
        return "is a device or special file, not a regular file; refusing to replace it"
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path; on success it is renamed to `path` (never over a folder, a device, a FIFO
    or a socket: an OSError naming it)."""
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | Path):
    """Yield a temporary path for each of `paths`; once every one is written (and on disk), they are renamed
    to their names one after the other, so an error while writing any of them leaves none behind."""
    paths, temps = [Path(p) for p in paths], []

    def named(path: Path, e: OSError) -> OSError:   # the error said of the file being written, not its temporary
        return OSError(e.errno, full_disk_reason(path, e.strerror or str(e)), str(path))

    for path in paths:
        why = not_replaceable(path)
        if why is not None:
            raise OSError(errno.EPERM, why, str(path))
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            temps.append(tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; artifacts get the usual permissions
        yield tuple(Path(t) for t in temps)
        for step in ("fsync", "rename"):   # every one on disk before any takes its name: a power cut leaves the old
            for path, tmp in zip(paths, temps):
                try:
                    if step == "fsync":
                        with open(tmp, "rb") as f:
                            os.fsync(f.fileno())
                    else:
                        os.replace(tmp, path)
                except OSError as e:
                    raise named(path, e) from None
    except OSError as e:
        if e.filename not in (None, *temps):   # about another file (or already named): let it say so itself
            raise
        raise named(dict(zip(temps, paths)).get(e.filename, paths[0]), e) from None
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.remove(tmp)


def full_disk_reason(path: Path, reason: str) -> str:
    """`reason`, or that the disk is full when it is (torch's zip writer says only 'unexpected pos ...')."""
    import shutil

    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return reason
    return f"no space left on the disk ({free} bytes free): {reason}" if free < 1 << 20 else reason


# --- finiteness: no NaN or inf is ever written as a result, or read as one ---

def _non_finite_json(obj, where: str = "") -> str | None:
    """The dotted path of the first NaN/inf float in a JSON-able object, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "<top level>")
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for key, value in items:
        found = _non_finite_json(value, key)
        if found is not None:
            return found
    return None


def non_finite_counts(arrays: dict) -> dict[str, tuple[int, int]]:
    """name -> (non-finite values, values) for every floating array or tensor holding NaN or inf."""
    import torch

    bad = {}
    arrays = {k: np.asarray(v) if isinstance(v, (float, np.floating)) else v for k, v in arrays.items()}
    # A structured array (a NeRF scene: views, poses, focal) is checked field by field.
    arrays = {name: value for k, v in arrays.items() for name, value in (
        ((f"{k}.{f}", v[f]) for f in v.dtype.names) if isinstance(v, np.ndarray) and v.dtype.names else ((k, v),))}
    floats = {k: v for k, v in arrays.items()
              if (torch.is_tensor(v) and (v.is_floating_point() or v.is_complex()))
              or (isinstance(v, np.ndarray) and v.dtype.kind in "fc")}
    tensors = {k: v for k, v in floats.items() if torch.is_tensor(v)}
    if tensors:   # one device-to-host read for all of them
        # .cpu() per count: a checkpoint mixes CUDA weights with AdamW's CPU step counters
        counts = torch.stack([(~torch.isfinite(v.detach())).sum().cpu() for v in tensors.values()]).tolist()
        bad.update({k: (c, v.numel()) for (k, v), c in zip(tensors.items(), counts) if c})
    for k, v in floats.items():
        if not torch.is_tensor(v):
            c = int(v.size - np.isfinite(v).sum())
            if c:
                bad[k] = (c, int(v.size))
    return bad


def check_finite(path: str | Path, arrays: dict, reading: bool = False) -> None:
    """Raise NonFiniteError naming `path` and the first array of `arrays` holding NaN or inf."""
    bad = non_finite_counts(arrays)
    if bad:
        name, (count, total) = next(iter(bad.items()))
        then = "refusing to use it; rerun the stage that wrote it" if reading else "nothing was written"
        raise NonFiniteError(f"{path}: '{name}' holds {count} of {total} values that are NaN or inf; {then}")


def _flatten_state(obj, prefix: str = "") -> dict:
    """Every tensor or array in nested dicts/lists, keyed by its dotted path."""
    import torch

    if torch.is_tensor(obj) or isinstance(obj, np.ndarray):
        return {prefix or "<top level>": obj}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten_state(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten_state(v, f"{prefix}[{i}]"))
        return out
    return {}


def check_finite_state(path: str | Path, state, reading: bool = False) -> None:
    """check_finite over every tensor of a (nested) state dict."""
    check_finite(path, _flatten_state(state), reading)


# The picture formats data files are decoded as: Pillow's other decoders (TIFF, PSD, EPS, ...) never see them.
PICTURE_FORMATS = ("PNG", "JPEG")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")   # the files those decoders read, by name

# What reading an .npz (a zip of .npy files) raises for a damaged or foreign file: a damaged header reaches
# Python's tokenizer (SyntaxError, TokenError), damaged compressed data zlib.
NPZ_ERRORS = (ValueError, OSError, EOFError, SyntaxError, KeyError, zipfile.BadZipFile, zlib.error,
              tokenize.TokenError)


def npy_header(z, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an .npz member declares in its header, read without reading (or inflating) its data."""
    with z.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        return tuple(shape), dtype


def memory_bytes() -> int | None:
    """This machine's physical memory (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def load_npz(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays (all, or `keys` when present) of an .npz artifact; an unreadable file or NaN/inf
    in a floating array is a DataError naming it."""
    try:
        z = np.load(path, mmap_mode="r")              # an .npz opens as an archive; a bare .npy is not read
        if not isinstance(z, np.lib.npyio.NpzFile):   # a bare .npy array: np.load returned (a map of) it
            raise DataError(f"{path}: a single .npy array, not an .npz archive of named arrays; rerun the stage "
                            "that wrote it")
        with z:
            wanted = [k for k in z.files if keys is None or k in keys]
            memory = memory_bytes()
            for k in wanted:             # from the headers, before anything is allocated or inflated
                shape, dtype = npy_header(z, k)
                size = math.prod(shape) * dtype.itemsize
                if memory is not None and size > memory:
                    raise DataError(f"{path}: '{k}' declares {shape} {dtype}, {size / 2 ** 30:.3g} GiB, more "
                                    f"than this machine's memory; rerun the stage that wrote it")
            arrays = {k: z[k] for k in wanted}
    except (FileNotFoundError, DataError):
        raise
    except NPZ_ERRORS as e:
        raise DataError(f"{path}: cannot read ({e.__class__.__name__}: {str(e)[:160]}); "
                        "rerun the stage that wrote it") from None
    check_finite(path, arrays, reading=True)
    return arrays


def largest_integer(obj) -> int:
    """The largest integer anywhere in plain nested containers (dict values, lists, tuples); 0 when none."""
    if isinstance(obj, bool):
        return 0
    if isinstance(obj, int):
        return obj
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    return max((largest_integer(v) for v in values), default=0)


def load_module(path: str | Path, what: str, build, parts, settings=lambda: ()):
    """Modules built by `build()` from a loaded file and given its `parts` ({module: state dict}); a file that
    loads but does not hold `what` (keys, settings or shapes of another model) is one DataError naming it.

    `settings()` (what `build` reads from the file): no integer in them may exceed the number of values the
    file's weights hold (or 2**16), as every width, depth and count of an honest file does not, so the
    build never loops or allocates lists over a hostile count (`layers: 10**8` took 73 s and GBs to refuse).

    Each module is first built on the meta device (no memory) and its parameter shapes compared with the
    file's, so settings that name a huge model fail before anything is allocated. That build stops once it
    has registered more parameters than the file holds tensors, or more modules than a few per tensor, so
    settings that count modules (e.g. `blocks: 10**8`) cannot spend memory and time on Python objects."""
    import torch
    from torch.nn.modules import module as nn_module

    def shapes(state: dict) -> dict:
        return {k: tuple(v.shape) for k, v in state.items()}

    def counted(limit: int, what: str):
        seen = [0]

        def hook(*_):
            seen[0] += 1
            if seen[0] > limit:
                raise ValueError(f"its settings describe more {what} than it holds weights for")
        return hook

    try:
        states = [state for state in parts() if isinstance(state, dict)]
        tensors = sum(len(state) for state in states)
        values = sum(v.numel() for state in states for v in state.values() if isinstance(v, torch.Tensor))
        if (largest := largest_integer(settings())) > max(values, 2 ** 16):
            raise ValueError(f"its settings hold {largest}, more than its {values} weights "
                             "could describe")
        hooks = (nn_module.register_module_parameter_registration_hook(counted(tensors, "parameters")),
                 nn_module.register_module_module_registration_hook(counted(8 * tensors + 64, "modules")))
        try:
            with torch.device("meta"):
                probes = build()
        finally:
            for h in hooks:
                h.remove()
        for probe, state in zip(probes if isinstance(probes, tuple) else (probes,), parts()):
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()) \
                    or shapes(probe.state_dict()) != shapes(state):
                raise ValueError("its weights do not fit the model its settings describe")
        modules = build()
        for module, state in zip(modules if isinstance(modules, tuple) else (modules,), parts()):
            module.load_state_dict(state)
        return modules
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:   # a foreign state or setting
        raise DataError(f"{path}: not {what} of this pipeline ({e.__class__.__name__}: {str(e)[:160]}); "
                        "rerun the stage that wrote it") from None


def load_torch(path: str | Path):
    """A torch artifact, read on the CPU; an unreadable file is a DataError naming it.

    `weights_only=True`: only tensors and plain containers are unpickled, so a file that holds
    anything else (e.g. a pickled call of os.system, passed on through a DVC remote or a shared
    folder) is refused as unreadable instead of running."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:   # truncated zip, garbage, a foreign pickle: torch raises many kinds
        raise DataError(f"{path}: cannot read ({e.__class__.__name__}: {str(e)[:160]}); "
                        "rerun the stage that wrote it") from None


def save_json(path: str | Path, obj) -> None:
    """A metrics file is always valid JSON: a NaN or inf anywhere in `obj` is refused, naming its key."""
    where = _non_finite_json(obj)
    if where is not None:
        raise NonFiniteError(f"{path}: '{where}' is NaN or inf; nothing was written")
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npz(path: str | Path, **arrays) -> None:
    check_finite(path, arrays)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:   # a file object keeps numpy from appending ".npz"
            np.savez(f, **arrays)


def save_torch(path: str | Path, obj, before_replace=None) -> None:
    """`obj` written atomically; `before_replace(tmp)` runs on the written file before it takes its name."""
    import torch

    check_finite_state(path, obj)
    with atomic_path(path) as tmp:
        try:
            # Through a file object: given a path, torch names the zip's inner folder after the (random)
            # temporary file, so the same weights gave other bytes on every run, a new hash in dvc.lock,
            # and a `dvc checkout` that could not find them in the cache.
            with open(tmp, "wb") as f:
                torch.save(obj, f)
        except RuntimeError as e:   # torch reports a full disk as a RuntimeError from its zip writer
            raise OSError(errno.EIO, f"cannot write ({str(e)[:160]})", str(tmp)) from None
        if before_replace is not None:
            before_replace(tmp)


def save_png(path: str | Path, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def save_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_directory(path: str | Path, files: dict[str, bytes]) -> None:
    """Replace the folder `path` by one holding `files` (name -> bytes), built beside it first."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
            os.chmod(tmp / name, 0o666 & ~_UMASK)
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def discard(*paths: str | Path) -> None:
    """Remove outputs (files or folders) a stage is about to replace, so a run that fails leaves none of an older run behind."""
    import shutil

    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
