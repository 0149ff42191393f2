"""SVCCA (Raghu et al. 2017) and the cross-layer correlation of the latent bank (paper fig. 7a).

Representations are arrays of shape (neurons, datapoints), as in google/svcca.
"""
from __future__ import annotations

import numpy as np


def cca(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Canonical correlations of two centred-or-not representations, largest first.

    Via QR: with A^T = Qa Ra and B^T = Qb Rb (datapoints x neurons, centred),
    the canonical correlations are the singular values of Qa^T Qb.
    """
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    qa, _ = np.linalg.qr(a.T)
    qb, _ = np.linalg.qr(b.T)
    rho = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return np.clip(rho[: min(a.shape[0], b.shape[0])], 0.0, 1.0)


def svd_reduce(x: np.ndarray, keep: float = 0.99) -> np.ndarray:
    """Centre, then keep the top singular directions holding `keep` of the variance.

    Variance is measured by the SQUARED singular values (the eigenvalues of the
    covariance); with plain singular values the cut lands elsewhere and the
    results change completely. Returns (kept directions, datapoints). A representation that does not
    vary has no directions to keep: a ValueError, not a correlation of rounding noise.
    """
    scale = np.abs(x).max(axis=1, initial=0.0)                               # each neuron's own magnitude
    x = x - x.mean(1, keepdims=True)
    # Centring a constant row leaves its rounding error (1.1 in float32 over 2000 datapoints: up to 2.4e-7),
    # which the cut would keep as a direction of pure noise: a row's spread under a few of its ulps is none,
    # and a representation with no other row does not vary.
    if not ((x ** 2).sum(1) > (8 * np.finfo(x.dtype).eps * scale) ** 2 * x.shape[1]).any():
        raise ValueError("SVCCA: a representation is constant over the datapoints (no variance to correlate)")
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s ** 2
    k = int(np.searchsorted(np.cumsum(var) / var.sum(), keep) + 1)
    return s[:k, None] * vt[:k]


def svcca(a: np.ndarray, b: np.ndarray, keep: float = 0.99) -> tuple[float, np.ndarray]:
    """Mean canonical correlation after SVD reduction, and the correlations themselves."""
    rho = cca(svd_reduce(a, keep), svd_reduce(b, keep))
    return float(rho.mean()), rho


def constant_layers(latents: np.ndarray) -> list[int]:
    """The layers (0-based) of an (N, L, H) bank whose latent is the same for every instance."""
    return [l for l in range(latents.shape[1]) if not np.ptp(latents[:, l], axis=0).any()]


def pairwise(latents: np.ndarray, measure) -> np.ndarray:
    """(N, L, H) latent bank -> (L, L) `measure(layer i's latents, layer j's)` for each pair i < j, mirrored;
    1 on the diagonal, NaN in the rows and columns of a layer whose latent does not vary (`constant_layers`),
    which no correlation describes."""
    layers = latents.shape[1]
    out = np.eye(layers)
    for l in constant_layers(latents):
        out[l, :] = out[:, l] = np.nan
    for i in range(layers):
        for j in range(i + 1, layers):
            if not np.isnan(out[i, j]):
                out[i, j] = out[j, i] = measure(latents[:, i], latents[:, j])
    return out


def layer_correlations(latents: np.ndarray, keep: float = 0.99) -> np.ndarray:
    """(N, L, H) latent bank -> (L, L) SVCCA between each pair of layers' latents (`pairwise`)."""
    return pairwise(latents, lambda a, b: svcca(a.T, b.T, keep)[0])


def null_correlations(latents: np.ndarray, rng: np.random.Generator, permutations: int = 5,
                      keep: float = 0.99) -> np.ndarray:
    """(L, L) SVCCA of each pair of layers with the second layer's instances shuffled, averaged over
    `permutations` shuffles: what the measure gives two layers that share nothing instance by instance (the
    number `layer_correlations` is read against; with a few thousand instances and a dozen kept directions it
    is not 0). NaN where `layer_correlations` has NaN; 1 on the diagonal."""
    return pairwise(latents, lambda a, b: float(np.mean([svcca(a.T, b[rng.permutation(len(b))].T, keep)[0]
                                                         for _ in range(permutations)])))
