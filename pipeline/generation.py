"""Sampling procedures built on the HCDM chain: hierarchical control and the
binary-condition std table of the paper's Table 2."""
from __future__ import annotations

import numpy as np
import torch

from . import artifacts, datasets
from .hcdm import HCDM, load_hcdm
from .meta import load_loe
from .metrics import measurement_seeds


def stream(seed: int, purpose: str) -> torch.Generator:
    """A generator for one measurement, seeded from (seed, purpose) through numpy's SeedSequence: its numbers
    are not those of another measurement, nor of a stage or control command seeded with a small integer
    (`hcdm.seed: 1` trains from Generator(1); `seed * c + k` would hand that stream to a table). torch's CPU
    generator keeps the low 32 bits of a seed: those are the stream's (3531610827 for std_table at seed 0)."""
    state = measurement_seeds(seed, purpose).generate_state(2, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def control_depths(hcdm: HCDM) -> list[int]:
    """The prefix lengths k a model can hold fixed: 0..L-1, or only 0 for the flat baseline."""
    return [0] if hcdm.variant == "flat" else list(range(hcdm.layers))


def control_latents(hcdm: HCDM, anchors: torch.Tensor, completions: int, generator: torch.Generator,
                    sampler: str, steps: int) -> torch.Tensor:
    """Fix h^1..h^k of each anchor for each k of `control_depths` and resample the rest.

    anchors (A, L, H) -> (A, depths, completions, L, H); entry [a, k, j] shares
    its first k layers with anchor a exactly (k = 0: fully fresh samples).
    """
    a, L, H = anchors.shape
    depths = control_depths(hcdm)
    out = torch.empty(a, len(depths), completions, L, H)
    for k in depths:
        prefix = anchors[:, :k].repeat_interleave(completions, dim=0)          # (A*completions, k, H)
        drawn = hcdm.sample(a * completions, generator, prefix=prefix, sampler=sampler, steps=steps)
        drawn[:, :k] = prefix                                                  # exact, not round-tripped
        out[:, k] = drawn.reshape(a, completions, L, H)
    return out


def std_tables(hcdm: HCDM, samples: int, anchors: int, generator: torch.Generator, sampler: str, steps: int,
               data: torch.Tensor | None = None, parts: list[int] | None = None) -> dict[str, dict[str, float]]:
    """Table 2: how much each part still varies once the earlier parts are fixed.

    A part is one layer's latent h^l, or, with `parts` (layers per part, e.g.
    [1, 1, 2, 2, 1] for 7 layers in the paper's 5 parts), consecutive layers
    taken together: std_{p,p+1} then fixes every layer of parts 1..p and
    measures the spread of all dimensions of part p+1.

    std_1: mean per-dimension std of h^1. std_{l,l+1}: fix `anchors` prefixes
    h^1..h^l, draw `samples` h^{l+1} for each, and take the mean over anchors
    of the mean per-dimension std. Two readings:
      data None  -- the model's own: std_1 over `samples` draws of h^1, the
                    prefixes drawn from the chain;
      data (N, L, H) raw train latents -- anchored on data: std_1 over the
                    data's h^1 and the prefixes taken from `anchors` random
                    data instances. std_1 then does not depend on the model,
                    which is what the paper's Table 2 shows (std_1 = 0.7766 for
                    every binary length).
    Returns {"standardised": table, "raw": table, "standard_error": table}:
    standardised units divide each dimension by its train-set std (so the
    data's own std_1 is 1 there); raw units are the latents as the LoE reads
    them; standard_error is that of each standardised std_{l,l+1} as a mean
    over its anchors (their spread / sqrt(anchors): how far another draw of
    anchors and samples moves the entry; None for std_1 and one anchor).
    """
    sizes = parts or [1] * hcdm.layers
    if sum(sizes) != hcdm.layers or min(sizes) < 1:
        raise ValueError(f"parts {sizes} must be layer counts >= 1 summing to {hcdm.layers}")
    ends = torch.cumsum(torch.tensor(sizes), 0).tolist()                  # part p covers layers [ends[p-1], ends[p])
    raw, std, error = {}, {}, {}

    def record(key: str, lo: int, hi: int, drawn: torch.Tensor, groups: int) -> None:   # drawn (groups * n, hi-lo, H)
        mean, scale = hcdm.mean[lo:hi].to(drawn.device), hcdm.std[lo:hi].to(drawn.device)   # buffers may be on a GPU
        raw[key] = float(drawn.reshape(groups, -1, drawn[0].numel()).std(1).mean())
        spreads = ((drawn - mean) / scale).reshape(groups, -1, drawn[0].numel()).std(1)    # (groups, dims)
        std[key] = float(spreads.mean())
        error[key] = float(spreads.mean(1).std() / groups ** 0.5) if groups > 1 else None

    first = data[:, :ends[0]] if data is not None else \
        hcdm.sample(samples, generator, stop=ends[0], sampler=sampler, steps=steps)[:, :ends[0]]
    record("std_1", 0, ends[0], first, 1)
    for p in range(1, len(sizes)):
        lo, hi = ends[p - 1], ends[p]
        if data is None:
            prefixes = hcdm.sample(anchors, generator, stop=lo, sampler=sampler, steps=steps)[:, :lo]
        else:
            prefixes = data[torch.randperm(len(data), generator=generator)[:anchors], :lo]
        prefix = prefixes.repeat_interleave(samples, dim=0)
        drawn = hcdm.sample(len(prefixes) * samples, generator, prefix=prefix, stop=hi, sampler=sampler,
                            steps=steps)[:, lo:hi]
        record(f"std_{p}{p + 1}", lo, hi, drawn, len(prefixes))
    return {"standardised": std, "raw": raw, "standard_error": error}


def memorised_std_table(hcdm: HCDM, data: torch.Tensor, parts: list[int] | None = None) -> dict[str, dict]:
    """Table 2 as a prior that had memorised its train set would give it: p(part p+1 | c) = the
    train instances whose code c equals the anchor's. The floor the model's own std_{p,p+1} falls
    to when its code identifies the prefix and it reproduces the training pairs; the marginal
    (1 in standardised units) is the ceiling, when it ignores the code.

    data (N, L, H) raw train latents. Every train instance is an anchor (the expectation over
    random anchors, without their noise): the population std of part p+1's dimensions over the
    instances sharing the anchor's code (0 for a code of its own), mean over dimensions, then over
    anchors; standardised units. Also per part: distinct codes among the train instances and the
    mean count of instances sharing an anchor's code.
    """
    sizes = parts or [1] * hcdm.layers
    ends = torch.cumsum(torch.tensor(sizes), 0).tolist()
    z = hcdm.standardise(data.float().to(hcdm.mean.device))
    codes = hcdm.condition_codes(z)                                          # (N, L, bits): c^l sees h^<l
    table, distinct, shared = {}, {}, {}
    for p in range(1, len(sizes)):
        lo, hi = ends[p - 1], ends[p]
        key = f"std_{p}{p + 1}"
        _, group = torch.unique(codes[:, lo], dim=0, return_inverse=True)
        counts = torch.bincount(group).double()                              # (groups,)
        values = z[:, lo:hi].flatten(1).double()
        mean = torch.zeros(len(counts), values.shape[1], dtype=torch.float64, device=values.device).index_add_(
            0, group, values)
        square = torch.zeros_like(mean).index_add_(0, group, values ** 2)
        mean, square = mean / counts[:, None], square / counts[:, None]
        group_std = (square - mean ** 2).clamp_min(0).sqrt().mean(1)           # (groups,)
        table[key] = float((counts * group_std).sum() / len(z))
        distinct[key] = len(counts)
        shared[key] = float((counts ** 2).sum() / len(z))
    return {"standardised": table, "distinct_codes": distinct, "instances_per_anchor_code": shared}


def binary_std_table(hcdm: HCDM, samples: int, anchors: int, generator: torch.Generator,
                     sampler: str, steps: int) -> dict[str, float]:
    """The model's own std table in standardised units (see `std_tables`)."""
    return std_tables(hcdm, samples, anchors, generator, sampler, steps)["standardised"]


def part_std(hcdm: HCDM, samples: int, generator: torch.Generator, sampler: str, steps: int,
             parts: list[int] | None = None) -> list[float]:
    """Mean per-dimension std of each part (a layer, or `parts` layers together) over free chains,
    standardised units: one value per part.

    The yardstick for the std table: std_{l,l+1} / part_std[l] is the share of
    the model's own spread of h^{l+1} that remains once h^1..h^l are fixed,
    which does not mix conditioning up with over- or under-dispersion.
    """
    per_dim = hcdm.standardise(hcdm.sample(samples, generator, sampler=sampler, steps=steps)).std(0)   # (L, H)
    return [chunk.mean().item() for chunk in per_dim.split(parts or [1] * hcdm.layers)]


def sample_latents(hcdm: HCDM, n: int, generator: torch.Generator, sampler: str, steps: int,
                   batch_size: int) -> torch.Tensor:
    """n full chains in batches: (n, L, H) raw latents."""
    out = [hcdm.sample(min(batch_size, n - i), generator, sampler=sampler, steps=steps) for i in range(0, n, batch_size)]
    return torch.cat(out)


def load_trained(device: torch.device | str = "cpu"):
    """What the generation stages need: (prepared data, the LoE as the modality decodes it, HCDM), on `device`."""
    data = datasets.load(artifacts.require(artifacts.DATASET, "prepare"))
    loe, _, _ = load_loe()
    return data, data.modality.field(loe.to(device)), load_hcdm().to(device)
