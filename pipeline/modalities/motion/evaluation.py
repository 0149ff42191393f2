"""How generated motions are scored: coverage, MMD and 1-NNA (Achlioptas et al.; PointFlow) with the
distance between two clips = the mean over frames and body joints of the distance between their
forward-kinematics joint positions (metres), and a Frechet distance of motion features (the factor
predictor's 256-d penultimate layer, trained on the embedded motions' factors; not Inception FID), against
the test split, with real train clips and test clips after Stage-1 as references."""
from __future__ import annotations

import json

import numpy as np
import torch

from ...errors import warn
from ..scoring import Scoring, frechet_distance_of, set_scores as scores_of_distances, train_subset
from .skeleton import BODY, forward_kinematics

FRAME_STEP = 4        # every 4th frame (7.5 fps) of a trajectory enters the distance
DETAIL_ONLY = ("motion_protocol", "motion_references.*.clips")


def trajectories(poses: np.ndarray) -> np.ndarray:
    """(N, frames, 165) radians -> (N, frames / FRAME_STEP, 22, 3) body-joint positions in metres (float32)."""
    return forward_kinematics(poses[:, ::FRAME_STEP]).astype(np.float32)[..., :BODY, :]


def distances(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Trajectories (N, T, J, 3) and (M, T, J, 3) -> (N, M) mean joint distances."""
    x, y = torch.from_numpy(a), torch.from_numpy(b)
    return torch.stack([(x - y[j]).norm(dim=-1).mean((1, 2)) for j in range(len(y))], 1)


def set_scores(generated: np.ndarray, reference: np.ndarray) -> dict:
    g = len(generated)
    both = np.concatenate([generated, reference])
    cov, mmd, nna = scores_of_distances(distances(both, both), g)
    return {"coverage": round(cov, 4), "mmd": round(mmd, 5), "one_nna": round(nna, 4), "clips": g}


def reference(cfg, data, device) -> dict:
    """Joint trajectories of the test clips, and the scores of as many real train clips against them."""
    test = trajectories(data.test.astype(np.float64))
    real = set_scores(trajectories(train_subset(data.train, len(test), cfg.seed).astype(np.float64)), test)
    return {"trajectories": test, "split": "test", "train_split_real": json.dumps(real, allow_nan=False)}


def count(cfg, data) -> int:
    """As many samples as reference (test) clips."""
    return len(data.test)


def factor_features(predictor, m, values: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Decoded values (N, frames, 165) -> (N, 256) penultimate features of the factor predictor."""
    x = m.predictor_input(values)
    with torch.no_grad():
        return torch.cat([predictor.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).double().numpy()


def scores(s: Scoring) -> dict:
    m, values, test_targets, warnings = s.modality, s.values, s.test_targets, s.warnings
    ref, train_real = s.reference["trajectories"], json.loads(str(s.reference["train_split_real"]))
    n = len(ref)
    reconstructed = s.loe.render(m.coordinates(), s.test_latents)
    generated = set_scores(trajectories(m.poses(values[:n])), ref)
    recon = set_scores(trajectories(m.poses(reconstructed)), ref)
    loaded = s.factor_predictor
    if isinstance(loaded, dict):        # no ground-truth factors (an AMASS folder): no feature extractor
        generated["fd_factor_features"] = None
        warn(warnings, f"no Frechet distance of motion features: {loaded['skipped']}")
    else:
        predictor = loaded[0]
        test_features = factor_features(predictor, m, test_targets)

        def fd(vals):
            return round(frechet_distance_of(test_features, factor_features(predictor, m, vals)), 4)
        train = train_subset(s.data.train, n, s.cfg.seed)
        generated["fd_factor_features"] = fd(values[:n])
        train_real = {**train_real, "fd_factor_features": fd(m.targets(train))}
        recon["fd_factor_features"] = fd(reconstructed)
        if n <= 256:
            warn(warnings, f"the motion-feature Frechet distance compares {n} clips in 256 dimensions: its covariances "
                           "are rank-deficient and it reads high; compare only values of equal set sizes")
    protocol = {"generated": n, "reference_split": "test", "reference_size": n,
                "distance": f"mean over every {FRAME_STEP}th frame and the {BODY} body joints of the Euclidean "
                            "distance between forward-kinematics joint positions (fixed skeleton, pelvis at the "
                            "origin), metres",
                "fd_factor_features": "Frechet distance between Gaussians fitted to the factor predictor's 256-d "
                                      "penultimate features (1-D CNN trained on the embedded motions' factors) of "
                                      "the generated and the test clips; not Inception FID",
                "comparable_with_paper": "no: the paper shows AMASS samples (fig. 11) without generation scores"}
    return {**{k: v for k, v in generated.items() if k != "clips"},
            "motion_references": {"train_split_real": train_real, "test_split_reconstructed": recon},
            "motion_protocol": protocol}
