"""The image plug-in (CelebA-HQ; embedded procedural faces).

    modality.py    ImageModality: reading files, the embedded data, coordinates, targets, pictures,
                   reconstruction metrics (PSNR, SSIM), the factor predictor's input, PNG files
    synthetic.py   the embedded faces with nine ground-truth factors
    evaluation.py  reference features and generation scores (FID, KID, precision/recall)
    fid.py         Inception-v3 features (TF weights), FID, KID, precision/recall

This file stays light: the config reads SPEC without importing torch.
"""
from ..spec import Spec

SPEC = Spec(name="image", summary="2-D coordinates -> RGB", sources=("synthetic", "folder"))
