"""The one config object: `params.yaml` read into typed sections, validated once.

Every error names the offending key by its full dotted path (e.g.
`fit_loe.batch_size`), so a typo in `dvc exp run -S ...` is caught before any
work starts.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .modalities import SOURCES, SPECS


class ConfigError(ValueError):
    """A bad value or key in params.yaml; the message names the key."""


@dataclass
class SyntheticData:
    train: int = 2000            # instances in the train split
    test: int = 200              # instances in the test split


@dataclass
class FolderData:
    train_count: int | None = None     # CelebA-HQ style: first N files train, rest test
    train_fraction: float = 0.9        # used when train_count is null
    skip_corrupt: bool = False         # skip (and count) unreadable files (and empty / non-watertight meshes)
    limit: int | None = None           # read at most this many files (sorted order)


@dataclass
class Dataset:
    modality: str = "image"            # image (2-D -> RGB) | shape (3-D -> occupancy)
    source: str = "synthetic"          # synthetic | folder | imnet (shapes: IM-NET HDF5 release)
    path: str | None = None            # the folder, when source is folder or imnet
    resolution: int = 32               # images R x R; shapes R^3 voxels; motion frames; nerf views R x R
    views: int = 20                    # nerf: fitted views per scene (the embedded cars': rendered; SRN: kept)
    synthetic: SyntheticData = field(default_factory=SyntheticData)
    folder: FolderData = field(default_factory=FolderData)


@dataclass
class LoE:
    layers: int = 5                    # L: layers, one latent per layer
    experts: int = 64                  # K: shared experts per layer
    width: int = 64                    # C: channels of each expert
    latent_dim: int = 32               # H: size of each layer's latent
    w0: float = 30.0                   # SIREN frequency factor


@dataclass
class FitLoE:
    steps: int = 1500                  # outer steps
    batch_size: int = 32
    lr: float = 3e-4                   # outer AdamW learning rate (the experts': lr / sqrt(loe.experts))
    weight_decay: float = 0.0
    warmup_steps: int = 50
    grad_clip: float = 1.0             # max global grad norm; 0 disables
    inner_steps: int = 3
    inner_lr: float = 1.0              # multiplies the Meta-SGD per-dimension rates
    meta_sgd_init: tuple[float, float] = (0.005, 0.1)
    first_order: bool = False          # True: no gradient through the inner loop
    precision: str = "fp32"            # fp32 | tf32 | bf16: the training step's matmuls on a GPU (CPU: always fp32)
    compile: bool = False              # torch.compile of the whole step (CUDA graphs on a GPU)
    init_std: float = 1e-4             # latent init N(0, init_std^2) during training (autodecode: the table's)
    method: str = "meta"               # meta (CAVIA inner loop) | autodecode (a latent table; NeRF in the paper)
    latent_lr: float | None = None     # autodecode: the table's AdamW lr (null: fit_loe.lr)
    latent_weight_decay: float = 0.0   # autodecode: the table's AdamW weight decay
    points_per_step: int | None = None # random subset of coordinates per step (None: all)
    near_surface_fraction: float = 0.5 # shapes: share of each step's points within a voxel of the surface
    checkpoint_every: int = 100
    log_every: int = 10


@dataclass
class ExportLatents:
    inner_steps: int = 3               # steps from zero for every instance
    batch_size: int = 256
    points: int | None = None          # coordinates the inner loop sees per instance (None: all; shapes: drawn
                                       # like training points, with fit_loe.near_surface_fraction)
    autodecode_steps: int = 100        # autodecode: Adam steps on a new instance's latent, weights frozen
    autodecode_lr: float = 0.01        # autodecode: their learning rate


@dataclass
class HCDM:
    variant: str = "hierarchical"      # hierarchical | unconditional (fig. 8 ablation) | flat (Functa/mNIF-style)
    hidden: int = 512                  # denoiser width
    blocks: int = 4                    # residual blocks of the denoiser
    timesteps: int = 1000
    schedule: str = "cosine"           # cosine | linear
    steps: int = 4000
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    dropout: float = 0.0
    precision: str = "fp32"            # fp32 | bf16: the training step's forward under bf16 autocast (CPU or GPU);
                                       # weights, optimiser and sampling stay fp32
    checkpoint_every: int = 500
    log_every: int = 25


@dataclass
class Sample:
    num_samples: int = 64
    sampler: str = "ddim"              # ddpm | ddim
    ddim_steps: int = 100
    batch_size: int = 256
    control_anchors: int = 3           # anchors in the hierarchical control figure
    control_completions: int = 6       # completions per (anchor, k)
    grid_columns: int = 8


@dataclass
class StdTable:
    samples: int = 500                 # latents drawn for std_1 and per anchor for std_{l,l+1}
    anchors: int = 10                  # fixed prefixes per part
    parts: list[int] | None = None     # layers per part, e.g. [1, 1, 2, 2, 1] for L = 7 in 5 parts; null: one per layer


@dataclass
class Evaluate:
    memorisation_samples: int = 1000
    batch_size: int = 256
    fid_samples: int = 500             # generated images for FID/KID/precision-recall (paper: 50000); the
                                       # memorisation distance uses the first memorisation_samples of them
    kid_subsets: int = 50
    kid_subset_size: int = 500
    pr_k: int = 3                      # k of the k-NN balls of precision/recall (mNIF: 3)
    retrieval_queries: int = 8         # generated samples shown with their nearest training images
    surface_points: int = 2048         # shapes: points per surface for Chamfer / COV / MMD / 1-NNA
    std_table: StdTable = field(default_factory=StdTable)


@dataclass
class FactorPredictor:
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3


@dataclass
class Hierarchy:
    anchors: int = 8                   # fixed prefixes per k
    completions: int = 16              # resamples per anchor


@dataclass
class Config:
    seed: int = 0
    binary_len: int = 12               # length of the binary condition code c^l
    device: str = "auto"               # auto (a GPU if present) | cpu | cuda | cuda:N
    threads: int | None = None         # torch CPU threads; null: torch's choice (all cores, or OMP_NUM_THREADS)
    dataset: Dataset = field(default_factory=Dataset)
    loe: LoE = field(default_factory=LoE)
    fit_loe: FitLoE = field(default_factory=FitLoE)
    export_latents: ExportLatents = field(default_factory=ExportLatents)
    hcdm: HCDM = field(default_factory=HCDM)
    sample: Sample = field(default_factory=Sample)
    evaluate: Evaluate = field(default_factory=Evaluate)
    factor_predictor: FactorPredictor = field(default_factory=FactorPredictor)
    hierarchy: Hierarchy = field(default_factory=Hierarchy)


# Params that change how fast a stage runs, never what it writes, so no stage depends on them
# (tests/test_stages.py checks the claim for `threads`).
RUNTIME_ONLY = ("threads",)

# Range rules, checked after parsing; keys are dotted paths into Config.
AT_LEAST = {
    "seed": 0, "dataset.synthetic.train": 2, "dataset.synthetic.test": 2,
    "loe.layers": 2, "loe.experts": 1, "loe.width": 1, "loe.latent_dim": 1,
    "fit_loe.steps": 1, "fit_loe.batch_size": 1, "fit_loe.weight_decay": 0, "fit_loe.warmup_steps": 0,
    "fit_loe.grad_clip": 0, "fit_loe.inner_steps": 1, "fit_loe.init_std": 0, "fit_loe.checkpoint_every": 1,
    "fit_loe.log_every": 1, "export_latents.inner_steps": 1, "export_latents.batch_size": 1,
    "export_latents.autodecode_steps": 0, "dataset.views": 1,
    "hcdm.hidden": 1, "hcdm.blocks": 1, "hcdm.timesteps": 2, "hcdm.steps": 1, "hcdm.batch_size": 1,
    "hcdm.weight_decay": 0, "hcdm.warmup_steps": 0, "hcdm.grad_clip": 0, "hcdm.checkpoint_every": 1,
    "hcdm.log_every": 1, "sample.num_samples": 1, "sample.batch_size": 1, "sample.control_anchors": 1,
    "sample.control_completions": 1, "sample.grid_columns": 1, "evaluate.memorisation_samples": 1,
    "evaluate.batch_size": 1, "evaluate.kid_subsets": 1, "evaluate.kid_subset_size": 2, "evaluate.pr_k": 1,
    "evaluate.retrieval_queries": 1, "evaluate.surface_points": 1, "evaluate.std_table.samples": 2, "evaluate.std_table.anchors": 1,
    "factor_predictor.steps": 1, "factor_predictor.batch_size": 1, "hierarchy.anchors": 1,
    "hierarchy.completions": 2,
}
AT_LEAST_OR_NULL = {"fit_loe.latent_lr": 1e-12, "fit_loe.latent_weight_decay": 0, "threads": 1, "dataset.folder.train_count": 1, "dataset.folder.limit": 2, "fit_loe.points_per_step": 1,
                    "export_latents.points": 1}
POSITIVE = ("loe.w0", "export_latents.autodecode_lr", "fit_loe.lr", "fit_loe.inner_lr", "hcdm.lr", "factor_predictor.lr")
CHOICES = {
    "dataset.modality": tuple(SPECS),             # the registered plug-ins (pipeline/modalities)
    "dataset.source": SOURCES,
    "fit_loe.precision": ("fp32", "tf32", "bf16"),
    "fit_loe.method": ("meta", "autodecode"),
    "hcdm.variant": ("hierarchical", "unconditional", "flat"),
    "hcdm.schedule": ("cosine", "linear"),
    "hcdm.precision": ("fp32", "bf16"),
    "sample.sampler": ("ddpm", "ddim"),
}


def _value(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _rules(c: Config) -> list[tuple[str, bool, str]]:
    """(key, holds, what it must be) for every constraint on the parsed config."""
    rules = [(k, _value(c, k) >= n, f"must be >= {n}") for k, n in AT_LEAST.items()]
    rules += [(k, _value(c, k) is None or _value(c, k) >= n, f"must be null or >= {n}") for k, n in AT_LEAST_OR_NULL.items()]
    rules += [(k, _value(c, k) > 0, "must be > 0") for k in POSITIVE]
    rules += [(k, _value(c, k) in opts, "must be one of " + ", ".join(map(repr, opts))) for k, opts in CHOICES.items()]
    compressor_in = c.loe.layers * c.loe.latent_dim
    spec = SPECS.get(c.dataset.modality)   # None: the CHOICES rule above names the key
    return rules + [
        ("binary_len", 1 <= c.binary_len <= compressor_in,
         f"must be >= 1 and <= the compressor's input size loe.layers*loe.latent_dim = {compressor_in}"),
        ("device", c.device in ("auto", "cpu", "cuda") or (c.device.startswith("cuda:") and c.device[5:].isdigit()),
         "must be auto, cpu, cuda or cuda:N"),
        ("seed", c.seed < 2 ** 32, "must be < 2**32 (numpy's seed range)"),
        ("dataset.path", c.dataset.source == "synthetic" or bool(c.dataset.path),
         f"must name a folder when dataset.source is '{c.dataset.source}'"),
        ("dataset.source", spec is None or c.dataset.source in spec.sources,
         f"{c.dataset.source} is not a source of dataset.modality {c.dataset.modality}; its sources: "
         + ", ".join(spec.sources if spec else ())),
        ("dataset.resolution", spec is None or c.dataset.resolution % spec.resolution_multiple == 0,
         f"must be a multiple of {spec.resolution_multiple if spec else 1} for dataset.modality "
         f"{c.dataset.modality} ({spec.resolution_reason if spec else ''})"),
        ("fit_loe.near_surface_fraction", 0 <= c.fit_loe.near_surface_fraction <= 1, "must be in [0, 1]"),
        ("fit_loe.compile", not (c.fit_loe.compile and c.fit_loe.method == "autodecode"),
         "compiles the meta-learning step: set it false with fit_loe.method autodecode"),
        ("dataset.resolution", 8 <= c.dataset.resolution <= 1024, "must be in [8, 1024]"),
        ("dataset.folder.train_fraction", 0.0 < c.dataset.folder.train_fraction < 1.0, "must be in (0, 1)"),
        ("fit_loe.meta_sgd_init", 0 <= c.fit_loe.meta_sgd_init[0] <= c.fit_loe.meta_sgd_init[1] <= 1,
         "must be [low, high] with 0 <= low <= high <= 1"),
        ("hcdm.ema_decay", 0 <= c.hcdm.ema_decay < 1, "must be in [0, 1)"),
        ("hcdm.dropout", 0 <= c.hcdm.dropout < 1, "must be in [0, 1)"),
        ("sample.ddim_steps", 1 <= c.sample.ddim_steps <= c.hcdm.timesteps, "must be in [1, hcdm.timesteps]"),
        ("evaluate.fid_samples", c.evaluate.fid_samples >= 2, "must be >= 2"),
        ("evaluate.std_table.parts", c.evaluate.std_table.parts is None or (
            min(c.evaluate.std_table.parts, default=0) >= 1 and sum(c.evaluate.std_table.parts) == c.loe.layers),
         f"must be null or a list of layer counts, each >= 1, summing to loe.layers = {c.loe.layers}"),
    ]


def _coerce(value, annotation, key: str):
    """Check `value` against a dataclass field annotation; ints are accepted as floats."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a mapping, got {value!r}")
        return _build(annotation, value, key + ".")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation} for {key}")


def _build(cls, raw: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {name: _coerce(raw[name], hints[name], prefix + name) for name in names if name in raw}
    return cls(**kwargs)


def from_dict(raw: dict | None) -> Config:
    """Build and validate a Config; raises ConfigError naming the first bad key."""
    cfg = _build(Config, raw or {})
    for key, ok, why in _rules(cfg):
        if not ok:
            raise ConfigError(f"{key}: {why}")
    return cfg


def load(path: str | Path = "params.yaml") -> Config:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameters file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: must hold a mapping of parameters")
    return from_dict(raw)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
