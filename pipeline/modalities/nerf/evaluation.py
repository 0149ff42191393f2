"""How generated radiance fields are scored, as mNIF does it on SRN-Cars: generated latent i is
rendered at test scene i's held-out poses, cycling through the test scenes (the embedded cars' four
held-out cameras are the same for every scene; SRN's are each scene's own), and
FID / KID of Inception-v3 pool3 features of those views is measured against the ground-truth held-out
views of the test scenes. References on the same scale: the train scenes' real held-out views (as many
scenes as the test split) and the test scenes' views rendered from their fitted latents."""
from __future__ import annotations

import numpy as np
import torch

from ...errors import warn
from .. import scoring
from ..image import fid
from ..scoring import Scoring

DETAIL_ONLY = ("fid_protocol", "fid_references.*.images", "fid_references.*.kid_subset")


def view_images(m, values) -> np.ndarray:
    """Rendered or real pixels (B, V R^2, 3) -> (B V, R, R, 3) uint8, one image per view."""
    views = m.per_view(values, 1.0)                                       # (B, V, 3, R, R) in [0, 1]
    return (views.flatten(0, 1).permute(0, 2, 3, 1) * 255).round().byte().numpy()


def reference(cfg, data, device) -> dict:
    """Inception features of the test scenes' held-out views, and of as many train scenes' held-out views."""
    m = data.modality
    test = fid.inception_features(view_images(m, m.targets(data.test)), progress=True, device=device)
    real = m.targets(scoring.train_subset(data.train, len(data.test), cfg.seed))
    train = fid.inception_features(view_images(m, real), progress=True, device=device)
    return {"features": test, "train_features": train, "split": "test", "resize": fid.RESIZE}


def count(cfg, data) -> int:
    return cfg.evaluate.fid_samples


# `scores` renders the generated scenes itself (at the test scenes' cameras): `evaluate` renders its fixed
# views only for the memorisation search.
RENDERS_OWN_SAMPLES = True


def generated_features(s: Scoring, coords: torch.Tensor) -> np.ndarray:
    """Inception features of generated scene i rendered at test scene (i mod n)'s held-out rays `coords`
    (n, V R^2, 6), a batch of scenes at a time (5000 SRN scenes at once would be 8 GB of rays)."""
    from ...progress import bar

    e = s.cfg.evaluate
    drawn = s.latents[: e.fid_samples].float()
    index = torch.arange(len(drawn)) % len(coords)
    features = []
    for i in bar(range(0, len(drawn), e.batch_size), desc="generated views", leave=False):
        views = s.loe.render(coords[index[i:i + e.batch_size]], drawn[i:i + e.batch_size], e.batch_size)
        features.append(fid.inception_features(view_images(s.modality, views), device=s.device))
    return np.concatenate(features)


def scores(s: Scoring) -> dict:
    cfg, device, m, data, values, warnings = s.cfg, s.device, s.modality, s.data, s.values, s.warnings
    e = cfg.evaluate
    real, train_real = s.reference["features"], s.reference["train_features"]
    coords, _ = m.evaluation_points(data.test)
    reconstructed = s.loe.render(coords, s.test_latents, e.batch_size)
    if len(real) <= real.shape[1]:
        warn(warnings, f"FID's reference has {len(real)} views for {real.shape[1]}-d Inception features: its "
                       "covariance is rank-deficient and FID reads high; compare only FIDs of equal set sizes")

    def score(features):
        kid_size = scoring.kid_subset(e.kid_subset_size, real, features)
        kid_mean, _ = scoring.kid(real, features, e.kid_subsets, kid_size, seed=cfg.seed)
        return {"fid": round(scoring.frechet_distance_of(real, features), 3),
                "kid": round(kid_mean, 5), "images": len(features), "kid_subset": kid_size}

    generated = score(generated_features(s, coords) if s.latents is not None else
                      fid.inception_features(view_images(m, values[: e.fid_samples]), progress=True, device=device))
    references = {"train_split_real": score(train_real),
                  "test_split_reconstructed": score(fid.inception_features(view_images(m, reconstructed),
                                                                           progress=True, device=device))}
    protocol = {"name": f"FID of {e.fid_samples} generated scenes x {s.test_targets.shape[1] // m.resolution ** 2} "
                        "views", "generated_scenes": e.fid_samples,
                "poses": "generated scene i at test scene (i mod test scenes)'s held-out cameras (embedded cars: "
                         "the same four for every scene; SRN: each scene's own)",
                "reference": f"ground-truth held-out views of the {len(data.test)} test scenes",
                "features": "Inception-v3 pool3 (TF 2015-12-05 weights), 2048-d", "resize": fid.RESIZE,
                "comparable_with_table_1": "no: Table 1 renders SRN-Cars scenes at 128x128 (FID 77.9)"}
    return {"fid": generated["fid"], "kid": generated["kid"], "fid_references": references, "fid_protocol": protocol}
