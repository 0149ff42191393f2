"""Controllable generation and latent analysis from any trained run.

    python -m pipeline.control resample image:me.png -k 2 -n 8
    python -m pipeline.control tree gen:3            (or: tree --source gen:3)
    python -m pipeline.control compose --source gen:0 --donors gen:1 gen:2 gen:3
    python -m pipeline.control interpolate --corners train:0 train:1 train:2 train:3
    python -m pipeline.control retrieve --source test:5
    python -m pipeline.control render --source gen:0 --scale 4

A SOURCE names one latent:
    gen:S      the chain h^1 -> h^L drawn with seed S
    sample:I   sample I of the `sample` stage (data/samples/samples.npz)
    train:I    test:I   instance I of the latent bank
    MODALITY:PATH  a file of yours in the run's modality, fitted as Stage-1 fits a test instance:
{sources}
Each command reads the trained LoE and HCDM from the DVC outputs of the
current workspace and writes a PNG plus the latents it drew (`.npz`, same
stem). Bad arguments end with one line naming the problem and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import analysis, artifacts, config, datasets, hcdm, io, meta, pictures
from .errors import DataError, MissingArtifact, warn
from .modalities import SPECS


class UsageError(ValueError):
    """A bad argument; the message says which."""


_KINDS = ["gen:S", "sample:I", "train:I", "test:I"] + [f"{name}:PATH" for name in SPECS]
EXPECTED = "expected " + ", ".join(_KINDS[:-1]) + " or " + _KINDS[-1]


@dataclass
class Run:
    """The trained models and data of the workspace, loaded on first use."""

    _cache: dict = field(default_factory=dict)

    def _get(self, key, load):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    @property
    def loe(self):
        return self._get("loe", meta.load_loe)

    @property
    def hcdm(self):
        return self._get("hcdm", hcdm.load_hcdm)

    @property
    def data(self):
        return self._get("data", lambda: datasets.load(artifacts.require(artifacts.DATASET, "prepare")))

    @property
    def bank(self):
        return self._get("bank", artifacts.load_latents)

    @property
    def samples(self):
        """The `sample` stage's latents (N, L, H)."""
        return self._get("samples", lambda: io.load_npz(artifacts.require(artifacts.SAMPLES, "sample"))["latents"])

    def decode(self, latents: torch.Tensor, scale: float = 1.0, coords: torch.Tensor | None = None) -> torch.Tensor:
        """(N, L, H) -> (N, P, d_out) decoded values at `scale` times the data's resolution (or at `coords`)."""
        m = self.data.modality
        return m.field(self.loe[0]).render(m.coordinates(scale) if coords is None else coords, latents)

    def render(self, latents: torch.Tensor, scale: float = 1.0) -> np.ndarray:
        """(N, L, H) -> (N, h, w, 3) pictures."""
        return self.data.modality.to_pictures(self.decode(latents, scale), scale)


@dataclass
class Source:
    latent: torch.Tensor              # (L, H)
    picture: np.ndarray | None = None  # the user's own signal, shown beside its reconstruction


MAX_UPSCALE = 32
MAX_TOP = 64                          # retrieve's neighbours a row
# Upper bounds, checked before any model runs (a figure too large to save was refused only after every
# sample was drawn and decoded; --size 100000 asked for 10^10 pictures): pictures a row, and points a decode.
MAX_COUNT = {"n": 64, "top": MAX_TOP, "size": 32, "donors": 64, "views": 360}
MAX_DECODE_POINTS = 2 ** 24           # query points of one `render` (a 3-D grid of 256 a side)
MAX_PIXELS = Image.MAX_IMAGE_PIXELS   # Pillow's own limit: a larger PNG is refused as a decompression bomb
SEEDS = 2 ** 32   # torch's CPU generator keeps a seed's low 32 bits: S and S + 2**32 drew the same latent


def generator(seed: int, what: str) -> torch.Generator:
    """A CPU generator seeded by `seed`, or a UsageError naming `what` for a seed outside [0, 2**32)."""
    if not 0 <= seed < SEEDS:
        raise UsageError(f"{what}: the seed must be in [0, 2**32), got {seed}")
    return torch.Generator().manual_seed(seed)


def resolve(run: Run, spec: str, a: argparse.Namespace) -> Source:
    """The latent a SOURCE spec names; `a` supplies --inner-steps, --sampler and --steps."""
    kind, _, value = spec.partition(":")
    if kind in SPECS:   # a file of the user's, read by the run's modality
        return fit_file(run, read_file(run, spec), a)
    try:
        index = int(value)
    except ValueError:
        raise UsageError(f"source {spec!r}: {EXPECTED}") from None
    if kind == "gen":
        g, model = generator(index, f"source {spec!r}"), run.hcdm   # the model first: a missing one says what to run
        sampler, steps = sampling(a)
        return Source(model.sample(1, g, sampler=sampler, steps=steps)[0])
    if kind in ("sample", "train", "test"):
        pool = run.samples if kind == "sample" else run.bank[kind]
        if not 0 <= index < len(pool):
            raise UsageError(f"source {spec!r}: index out of range [0, {len(pool)})")
        return Source(torch.from_numpy(pool[index]).float())
    raise UsageError(f"source {spec!r}: {EXPECTED}")


def read_file(run: Run, spec: str) -> np.ndarray:
    """The signal of a `<modality>:PATH` source, read by the run's modality (no model runs)."""
    kind, _, value = spec.partition(":")
    path, m = Path(value), run.data.modality
    if kind != m.name:
        raise UsageError(f"source {spec!r}: this run models {m.name}s; use {m.name}:PATH")
    what = "folder" if m.instance_is_folder else "file"     # a NeRF scene is a folder of posed views
    if not (path.is_dir() if m.instance_is_folder else path.is_file()):
        raise UsageError(f"{path}: no such {kind} {what}")
    if not m.instance_is_folder and m.folder_suffixes and path.suffix.lower() not in m.folder_suffixes:
        raise UsageError(f"{path}: this {m.name} run reads {m.file_kind}, not a {path.suffix or 'suffix-less'} file")
    return m.read_file(path)


# The params that decide how a test instance's latent is fitted (export_latents' own, and the Stage-1 ones it reads).
FIT_KEYS = ("export_latents.inner_steps", "export_latents.points", "export_latents.autodecode_steps",
            "export_latents.autodecode_lr", "fit_loe.near_surface_fraction", "fit_loe.points_per_step", "seed")


def fit_keys(cfg, method: str) -> tuple[str, ...]:
    """The FIT_KEYS `fit_file` reads for a Stage-1 trained by `method`: the inner loop's steps, or auto-decoding's
    steps and rate (and fit_loe.points_per_step where export_latents.points is null)."""
    if method == "autodecode":
        skip = ("export_latents.inner_steps",) + (("fit_loe.points_per_step",) if cfg.export_latents.points else ())
    else:
        skip = ("export_latents.autodecode_steps", "export_latents.autodecode_lr", "fit_loe.points_per_step")
    return tuple(k for k in FIT_KEYS if k not in skip)


def bank_drift(cfg, lock: Path = Path("dvc.lock"), trained_steps: int | None = None,
               method: str = "meta") -> list[str]:
    """The keys `fit_file` reads for this `method` (`fit_keys`) whose value in params.yaml differs from the one
    the latent bank was fitted with (dvc.lock's record of export_latents), as `key X (the bank: Y)`; empty
    without a lock or a record of them. A null inner_steps is the model's own count (`trained_steps`, from
    loe.pt; else fit_loe.inner_steps)."""
    import yaml

    try:
        recorded = config.load_yaml(config.read_text(lock))["stages"]["export_latents"]["params"]["params.yaml"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):   # none, or not one of ours
        return []
    flat = {}
    for key, value in recorded.items():      # dvc.lock nests a whole section, and lists single keys dotted
        flat.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value})

    def same(a, b) -> bool:   # DVC writes YAML 1.2: 1e-05, which PyYAML (1.1) reads as a string
        try:
            return a == b or (a is not None and b is not None and float(a) == float(b))
        except (TypeError, ValueError):
            return False

    def text(value) -> str:
        return "null" if value is None else str(value)

    def steps(key, value):    # inner_steps null: as many as Stage-1 trained with, the same as that number
        null_steps = key == "export_latents.inner_steps" and value is None
        return (trained_steps or cfg.fit_loe.inner_steps) if null_steps else value
    keys = fit_keys(cfg, method)
    now = {key: config._value(cfg, key) for key in keys}
    return [f"{key} {text(now[key])} (the bank: {text(flat[key])})" for key in keys
            if key in flat and not same(steps(key, flat[key]), steps(key, now[key]))]


def say_drift(run: Run, cfg=None) -> None:
    """Warn, once a run (serve fits many files), where params.yaml would fit a user's file otherwise than the
    bank's instances were fitted (`bank_drift`)."""
    if "drift" not in run._cache:
        trained = run.loe[2]
        steps = trained["inner_steps"] if trained["method"] != "autodecode" else None
        drift = run._cache["drift"] = bank_drift(cfg or config.load(), trained_steps=steps, method=trained["method"])
        if drift:
            warn([], "params.yaml fits your file otherwise than the latent bank's instances were fitted "
                     f"(dvc.lock): {'; '.join(drift)}; `dvc repro` refits the bank")


def fit_file(run: Run, signal: np.ndarray, a: argparse.Namespace) -> Source:
    """A signal's latent, fitted as `export_latents` fits a test instance (its params in params.yaml: the inner
    loop's steps and points, or auto-decoding's steps, rate and points; the near-surface share; the seed).
    Where params.yaml no longer says what the bank was fitted with, a warning names the keys, once a run."""
    model, meta_sgd, trained = run.loe
    cfg = config.load()
    say_drift(run, cfg)
    e = cfg.export_latents
    fit = {"surface_fraction": cfg.fit_loe.near_surface_fraction, "seed": cfg.seed}
    if trained["method"] == "autodecode":
        n = e.autodecode_steps
        fit.update(fit_lr=e.autodecode_lr, points=e.points or cfg.fit_loe.points_per_step)
    else:
        n = meta.inner_steps_for(e.inner_steps, trained)
        fit.update(points=e.points)
    n = a.inner_steps if a.inner_steps is not None else n
    latent = analysis.fit_signal(model, meta_sgd, run.data.modality, signal, n, trained, **fit)
    return Source(latent, signal)


def sampling(a) -> tuple[str, int]:
    """(sampler, DDIM steps): --sampler and --steps, or params.yaml's sample.sampler and sample.ddim_steps (read
    when first needed, after the models, so an untrained workspace says what to run)."""
    if a.sampler is None or a.steps is None:
        s = config.load().sample
        a.sampler, a.steps = a.sampler or s.sampler, a.steps or s.ddim_steps
    return a.sampler, a.steps


def check_k(run: Run, k: int) -> None:
    if k != 0 and run.hcdm.variant == "flat":
        raise UsageError(f"-k {k}: this run's prior (hcdm.variant flat) has no layer chain and can only draw "
                         "afresh; use -k 0")
    if not 0 <= k < run.hcdm.layers:
        raise UsageError(f"-k {k}: must be in [0, {run.hcdm.layers - 1}] (the number of fixed layers)")


def check_layer_wise(run: Run, what: str) -> None:
    """A Table-1 baseline (loe.variant mnif or functa) has one latent for every layer: nothing to hold per layer."""
    if not run.loe[0].per_layer_latents:
        raise UsageError(f"{what}: this run's Stage-1 is loe.variant {run.loe[0].variant}, which has no per-layer "
                         "latents (one latent drives every layer); sampling, interpolate, retrieve and render work")


def check_writable(path: Path, flag: str) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; name a file, e.g. {path / ('figure' + (path.suffix or '.png'))}")
    why = io.not_replaceable(path, links=True)
    if why is not None:
        raise UsageError(f"{flag} {path}: {why}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {parent}")


def check_outputs(a) -> None:
    """--out (a .png), --npz and render's --file: writable, and three different files, before any work."""
    named = {"--out": a.out, "--npz": a.npz or a.out.with_suffix(".npz")}
    if getattr(a, "file", None) is not None:
        named["--file"] = a.file
    for flag, path in named.items():
        check_writable(path, flag)
    if a.out.suffix.lower() != ".png":
        raise UsageError(f"--out {a.out}: the figure is a PNG; name a .png file")
    seen = {}
    for flag, path in named.items():
        same = seen.setdefault(path.resolve(), flag)
        if same != flag:
            raise UsageError(f"{flag} {path}: the same file as {same}; name another")


def grid(pics: np.ndarray, columns: int, pad: int = 2, upscale: int = 1, **labels) -> np.ndarray:
    """pictures.grid, refused with one line before anything is drawn when the figure would pass Pillow's limit."""
    n, h, w = pics.shape[:3]
    check_pixels(columns * (w * upscale + pad) + pad, -(-n // columns) * (h * upscale + pad) + pad)
    return pictures.grid(pics, columns, pad=pad, upscale=upscale, **labels)


def check_pixels(wide: int, high: int) -> None:
    """A figure past Pillow's pixel limit is one line (a grid's before it is drawn, a stacked one's before saving)."""
    if high * wide > MAX_PIXELS:
        raise UsageError(f"the figure would be {wide}x{high} pixels, more than picture viewers open ({MAX_PIXELS}); "
                         "ask for fewer pictures or a smaller --upscale")


def save(a, image: np.ndarray, instance_file: bytes | None = None, **latents) -> None:
    """The PNG at --out, the latents at --npz (default: beside the PNG) and render's --file: all or none (each is
    written to a temporary first, and they take their names only once every one is written)."""
    npz = a.npz or a.out.with_suffix(".npz")
    arrays = {k: v.numpy() if torch.is_tensor(v) else v for k, v in latents.items()}
    io.check_finite(npz, arrays)
    check_pixels(image.shape[1], image.shape[0])
    files = (a.out, npz) + ((a.file,) if instance_file is not None else ())
    with io.atomic_paths(*files) as temps:
        Image.fromarray(image).save(temps[0], format="PNG")
        with open(temps[1], "wb") as f:   # a file object keeps numpy from appending ".npz"
            np.savez(f, **arrays)
        if instance_file is not None:
            temps[2].write_bytes(instance_file)
    print("wrote " + ", ".join(str(p) for p in (a.out, npz, getattr(a, "file", None)) if p is not None))


def head(run: Run, src: Source, scale: float = 1.0) -> tuple[np.ndarray, list[str]]:
    """The pictures that open a row and their labels: the user's signal (if any), then the source's rendering."""
    first, labels = [run.render(src.latent[None], scale)], ["source"]
    if src.picture is not None:
        first.insert(0, run.data.modality.to_pictures(run.data.modality.targets(src.picture[None])))
        labels = ["input", "fit"]
    return np.concatenate(first), labels


def upscale(a, pics: np.ndarray) -> int:
    """--upscale, or a zoom that makes pictures (N, h, w, 3) at least 64 pixels wide."""
    return a.upscale if a.upscale is not None else pictures.upscale_for(pics.shape[2])


def numbered(n: int) -> list[str]:
    return [str(i + 1) for i in range(n)]


# -- commands ------------------------------------------------------------------

def cmd_resample(run: Run, a) -> None:
    check_k(run, a.k)
    if a.k > 0:
        check_layer_wise(run, f"resample -k {a.k}")
    src = resolve(run, a.source, a)
    drawn = analysis.resample(run.hcdm, src.latent, a.k, a.n, generator(a.seed, "--seed"), *sampling(a))
    first, labels = head(run, src)
    pics = np.concatenate([first, run.render(drawn)])
    save(a, grid(pics, len(first) + a.n, upscale=upscale(a, pics), column_labels=labels + numbered(a.n),
                 row_labels=[f"k={a.k}"]), source=src.latent, completions=drawn, k=a.k)


def cmd_tree(run: Run, a) -> None:
    check_layer_wise(run, "tree")
    src = resolve(run, a.source, a)
    branches = analysis.tree(run.hcdm, src.latent, a.n, generator(a.seed, "--seed"), *sampling(a))
    first, labels = head(run, src)
    rows = [np.concatenate([first, run.render(branches[k])]) for k in range(len(branches))]
    save(a, grid(np.concatenate(rows), len(first) + a.n, upscale=upscale(a, first),
                 column_labels=labels + numbered(a.n), row_labels=[f"k={k}" for k in range(len(branches))]),
         source=src.latent, branches=branches)


def cmd_compose(run: Run, a) -> None:
    check_layer_wise(run, "compose")
    base = resolve(run, a.source, a)
    donors = torch.stack([resolve(run, d, a).latent for d in a.donors])
    composed = analysis.compose(base.latent, donors)                              # (L, N, L, H)
    top = np.concatenate([run.render(base.latent[None]), run.render(donors)])
    rows = [top] + [np.concatenate([np.full_like(top[:1], 255), run.render(composed[l])]) for l in range(len(composed))]
    save(a, grid(np.concatenate(rows), len(donors) + 1, upscale=upscale(a, top),
                 column_labels=["base"] + [f"donor {i}" for i in numbered(len(donors))],
                 row_labels=[""] + [f"h{l + 1} swapped" for l in range(len(composed))]),
         base=base.latent, donors=donors, composed=composed)


def cmd_interpolate(run: Run, a) -> None:
    corners = torch.stack([resolve(run, c, a).latent for c in a.corners])
    grid_latents = analysis.bilinear_interpolation(corners, a.size)              # (S, S, L, H)
    layerwise = analysis.layerwise_interpolation(corners[0], corners[1], a.size)  # (L, S, L, H)
    ts = [f"t={t:.2g}" for t in torch.linspace(0, 1, a.size).tolist()]
    square = run.render(grid_latents.flatten(0, 1))
    square = grid(square, a.size, upscale=upscale(a, square), column_labels=ts,
                  row_labels=[f"s={t[2:]}" for t in ts])
    if not run.loe[0].per_layer_latents:   # a baseline's latent has no layers to interpolate one at a time
        save(a, square, corners=corners, bilinear=grid_latents)
        return
    rows = run.render(layerwise.flatten(0, 1))
    rows = grid(rows, a.size, upscale=upscale(a, rows), column_labels=ts,
                row_labels=[f"only h{l + 1}" for l in range(len(layerwise))])
    save(a, pictures.stack_vertically([square, rows], gap=16), corners=corners, bilinear=grid_latents,
         layerwise=layerwise)


def cmd_retrieve(run: Run, a) -> None:
    query = resolve(run, a.source, a)
    bank = torch.from_numpy(run.bank["train"]).float()
    top = min(a.top, len(bank))     # a small train split: every instance, nearest first
    found = analysis.retrieve(query.latent, bank, top)
    if not run.loe[0].per_layer_latents:   # a baseline: by the whole latent only
        found = {"all": found["all"]}
    first, labels = head(run, query)
    train = run.data.train
    m = run.data.modality
    rows = [np.concatenate([first, m.to_pictures(m.targets(train[idx.numpy()]))]) for idx in found.values()]
    save(a, grid(np.concatenate(rows), len(first) + top, upscale=upscale(a, first),
                 column_labels=labels + numbered(top),
                 row_labels=["all" if name == "all" else f"by h{name[5:]}" for name in found]),
         query=query.latent, **{name: idx for name, idx in found.items()})
    for name, idx in found.items():
        print(f"nearest train instances {'by the whole latent' if name == 'all' else f'by h{name[5:]}'}: "
              f"{idx.tolist()}")


def cmd_render(run: Run, a) -> None:
    if not 0 < a.scale <= 16:
        raise UsageError(f"--scale {a.scale}: must be in (0, 16]")
    m = run.data.modality
    points = m.decode_points(a.scale, a.views)
    if points > MAX_DECODE_POINTS:
        low, high = 0.0, a.scale                    # the largest scale within the budget, to 3 digits
        for _ in range(40):
            mid = (low + high) / 2
            low, high = (mid, high) if round(m.resolution * mid) < 2 or \
                m.decode_points(mid, a.views) <= MAX_DECODE_POINTS else (low, mid)
        views = f" and {a.views} --views" if a.views is not None else ""
        raise UsageError(f"--scale {a.scale:g}{views}: {points:,} query points for this {m.name} run, over the "
                         f"{MAX_DECODE_POINTS:,} one render decodes; at most --scale {low:.3g}")
    src = resolve(run, a.source, a)
    coords = None
    if a.views is not None:
        coords = m.viewpoints(a.views, a.scale) if a.views >= 1 else None
        if coords is None:
            raise UsageError(f"--views {a.views}: " + ("must be >= 1" if a.views < 1 else
                                                       f"{m.name} signals have no viewpoints"))
    if a.file is not None and a.file.suffix.lower() != m.file_suffix:
        raise UsageError(f"--file {a.file}: {m.name} decodes are written as {m.file_suffix}; "
                         f"name a {m.file_suffix} file")
    values = run.decode(src.latent[None], a.scale, coords)
    pic = m.to_pictures(values, a.scale)
    # --file: the decode in the modality's own format too (a mesh, an animation, a PNG)
    save(a, grid(pic, 1, pad=0, upscale=a.upscale or 1),
         m.instance_file(values[0], a.scale) if a.file is not None else None, latent=src.latent, picture=pic[0])


COMMANDS = {
    "resample": (cmd_resample, "fix h^1..h^k of a source and draw N completions"),
    "tree": (cmd_tree, "branch at every layer: rows k = 0..L-1 share h^1..h^k"),
    "compose": (cmd_compose, "swap each layer's latent between a base and donors (fig. 6)"),
    "interpolate": (cmd_interpolate, "bilinear between four corners, and layer-wise between the first two"),
    "retrieve": (cmd_retrieve, "nearest training instances by the whole latent and by each layer"),
    "render": (cmd_render, "render a latent at any resolution (the INR is continuous)"),
}


def parser() -> argparse.ArgumentParser:
    from .modalities.plugins import CLASSES

    sources = "\n".join(f"      {name}:PATH  {CLASSES[name].file_kind}" for name in SPECS)
    p = argparse.ArgumentParser(prog="python -m pipeline.control", description=__doc__.replace("{sources}", sources),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        c = sub.add_parser(name, help=help_text, description=help_text)
        if name not in ("interpolate",):
            default = "test:0" if name == "retrieve" else "gen:0"
            c.add_argument("source_arg", nargs="?", metavar="SOURCE", default=None,
                           help=f"the latent to start from, here or as --source (default: {default})")
            c.add_argument("--source", default=None, help="the same, as an option")
            c.set_defaults(default_source=default)
        if name in ("resample", "tree"):
            c.add_argument("-n", type=int, default=6, help="completions per row (default: %(default)s)")
        if name == "resample":
            c.add_argument("-k", type=int, default=1, help="layers h^1..h^k kept fixed (default: %(default)s)")
        if name == "compose":
            c.add_argument("--donors", nargs="+", default=[f"gen:{i}" for i in range(1, 7)], metavar="SOURCE")
        if name == "interpolate":
            c.add_argument("--corners", nargs=4, default=[f"train:{i}" for i in range(4)], metavar="SOURCE",
                           help="top-left top-right bottom-left bottom-right (default: train:0..3)")
            c.add_argument("--size", type=int, default=6, help="points per side (default: %(default)s)")
        if name == "retrieve":
            c.add_argument("--top", type=int, default=6,
                           help=f"neighbours per row, at most {MAX_TOP} (default: %(default)s)")
        if name == "render":
            c.add_argument("--scale", type=float, default=2.0, help="times the training resolution")
            c.add_argument("--views", type=int, default=None,
                           help="nerf: render from N cameras evenly around the object (a turntable)")
            c.add_argument("--file", type=Path, default=None,
                           help="also write the decode in the modality's own format (.png, .ply, .gif)")
        c.add_argument("--out", type=Path, default=Path(f"control_{name}.png"),
                       help=f"PNG to write (default: control_{name}.png in the current folder)")
        c.add_argument("--npz", type=Path, default=None, help="latents to write (default: beside --out)")
        c.add_argument("--seed", type=int, default=0, help="resample, tree: seed of the completions drawn (they also "
                       "depend on -n: one stream draws the batch); the other commands draw nothing")
        c.add_argument("--inner-steps", type=int, default=None,
                       help="steps to fit a MODALITY:PATH source (meta-learned: inner steps; auto-decoded: Adam steps)")
        c.add_argument("--sampler", choices=("ddim", "ddpm"), default=None,
                       help="the HCDM's sampler (default: params.yaml's sample.sampler, as the stages sample)")
        c.add_argument("--steps", type=int, default=None,
                       help="DDIM steps (default: params.yaml's sample.ddim_steps)")
        c.add_argument("--upscale", type=int, default=None,
                       help=f"nearest-neighbour zoom of the PNG, at most {MAX_UPSCALE} (default: " +
                            ("1" if name == "render" else "to 64 pixels per picture or more") + ")")
    return p


def option_name(name: str) -> str:
    """An argparse destination as the option it came from: n -> -n, inner_steps -> --inner-steps."""
    return f"{'-' if len(name) == 1 else '--'}{name.replace('_', '-')}"


def first_below_one(args: argparse.Namespace, names) -> str | None:
    """`--NAME VALUE: must be >= 1` for the first of the count options `names` given below one, else None."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            return f"{option_name(name)} {value}: must be >= 1"
    return None


def first_out_of_range(args: argparse.Namespace) -> str | None:
    """The first count over MAX_COUNT, or a seed outside [0, SEEDS), said before anything loads."""
    for name, most in MAX_COUNT.items():
        value = getattr(args, name, None)
        count = len(value) if isinstance(value, list) else value
        if count is not None and count > most:
            return f"{option_name(name)} {count if not isinstance(value, list) else f'({count} sources)'}: at most {most}"
    if not 0 <= args.seed < SEEDS:
        return f"--seed: the seed must be in [0, 2**32), got {args.seed}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if hasattr(args, "source_arg"):   # the source may come positionally or as --source, not both
        if args.source_arg is not None and args.source is not None:
            print(f"error: source given twice ({args.source_arg} and --source {args.source}); give it once",
                  file=sys.stderr)
            return 2
        args.source = args.source_arg or args.source or args.default_source
    below = first_below_one(args, ("n", "top", "size", "inner_steps", "steps", "upscale")) or first_out_of_range(args)
    if below:
        print(f"error: {below}", file=sys.stderr)
        return 2
    if (args.upscale or 1) > MAX_UPSCALE:
        print(f"error: --upscale {args.upscale}: must be at most {MAX_UPSCALE}", file=sys.stderr)
        return 2
    run = Run()
    start = time.time()
    try:
        check_outputs(args)
        COMMANDS[args.command][0](run, args)
    except (UsageError, MissingArtifact, DataError, ValueError) as e:   # ValueError: e.g. a flat prior asked for a prefix
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:   # a write that failed all the same (disk full, read-only file system)
        print(f"error: {e.filename}: {e.strerror}" if e.filename else f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: {args.command}: out of memory; ask for fewer pictures or a smaller --upscale", file=sys.stderr)
        return 2
    except RuntimeError as e:   # torch says it is out of memory this way (CPU: "can't allocate memory")
        if not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in str(e):
            raise
        print(f"error: {args.command}: out of memory; ask for fewer pictures, a smaller --scale or --upscale",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {args.command} stopped; nothing was written", file=sys.stderr)
        return 130
    print(f"{args.command}: {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
