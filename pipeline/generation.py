"""Sampling procedures built on the HCDM chain: hierarchical control and the
binary-condition std table of the paper's Table 2."""
from __future__ import annotations

import torch

from .hcdm import HCDM


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


def binary_std_table(hcdm: HCDM, samples: int, anchors: int, generator: torch.Generator,
                     sampler: str, steps: int) -> dict[str, float]:
    """Table 2: how much each part still varies once the earlier parts are fixed.

    std_1: mean per-dimension std of h^1 over `samples` draws. std_{l,l+1}:
    draw `anchors` prefixes h^1..h^l from the chain, then `samples` draws of
    h^{l+1} for each; the mean over anchors of the mean per-dimension std.
    All in standardised units (train-set std = 1), so 1 means "varies as
    much as the data" and 0 means "determined by the condition".
    """
    L = hcdm.layers
    table = {}
    first = hcdm.standardise(hcdm.sample(samples, generator, stop=1, sampler=sampler, steps=steps))[:, 0]
    table["std_1"] = float(first.std(0).mean())
    for l in range(1, L):
        prefixes = hcdm.sample(anchors, generator, stop=l, sampler=sampler, steps=steps)[:, :l]
        prefix = prefixes.repeat_interleave(samples, dim=0)
        drawn = hcdm.standardise(hcdm.sample(anchors * samples, generator, prefix=prefix, stop=l + 1,
                                             sampler=sampler, steps=steps))[:, l]
        stds = drawn.reshape(anchors, samples, -1).std(1).mean(1)              # (anchors,)
        table[f"std_{l}{l + 1}"] = float(stds.mean())
    return table


def part_std(hcdm: HCDM, samples: int, generator: torch.Generator, sampler: str, steps: int) -> list[float]:
    """Mean per-dimension std of each part over free chains, standardised units: (L,).

    The yardstick for the std table: std_{l,l+1} / part_std[l] is the share of
    the model's own spread of h^{l+1} that remains once h^1..h^l are fixed,
    which does not mix conditioning up with over- or under-dispersion.
    """
    z = hcdm.standardise(hcdm.sample(samples, generator, sampler=sampler, steps=steps))
    return z.std(0).mean(-1).tolist()


def sample_latents(hcdm: HCDM, n: int, generator: torch.Generator, sampler: str, steps: int,
                   batch_size: int) -> torch.Tensor:
    """n full chains in batches: (n, L, H) raw latents."""
    out = [hcdm.sample(min(batch_size, n - i), generator, sampler=sampler, steps=steps) for i in range(0, n, batch_size)]
    return torch.cat(out)


