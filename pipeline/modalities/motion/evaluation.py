"""How generated motions are scored: coverage, MMD and 1-NNA (Achlioptas et al.; PointFlow) with the
distance between two clips = the mean over frames and body joints of the distance between their
forward-kinematics joint positions (metres), against the test split, with real train clips and test clips
after Stage-1 as references. (A Frechet distance of learnt motion features is not computed yet.)"""
from __future__ import annotations

import json

import numpy as np
import torch

from ... import artifacts, io
from ...artifacts import REFERENCE
from ..shape.metrics import coverage_mmd, one_nna    # the same set scores as shapes, on another distance
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
    d = distances(both, both)
    cov, mmd = coverage_mmd(d[:g, g:])
    return {"coverage": round(cov, 4), "mmd": round(mmd, 5),
            "one_nna": round(one_nna(d[:g, :g], d[:g, g:], d[g:, g:]), 4), "clips": g}


def reference(cfg, data, device) -> dict:
    """Joint trajectories of the test clips, and the scores of as many real train clips against them."""
    test = trajectories(data.test.astype(np.float64))
    real = set_scores(trajectories(data.train[: len(test)].astype(np.float64)), test)
    return {"trajectories": test, "split": "test", "train_split_real": json.dumps(real, allow_nan=False)}


def count(cfg, data) -> int:
    """As many samples as reference (test) clips."""
    return len(data.test)


def scores(cfg, device, m, loe, values, test_targets, test_latents, warnings: list[str]) -> dict:
    z = io.load_npz(artifacts.require(REFERENCE, "reference"))
    ref, train_real = z["trajectories"], json.loads(str(z["train_split_real"]))
    n = len(ref)
    generated = set_scores(trajectories(m.poses(values[:n])), ref)
    recon = set_scores(trajectories(m.poses(loe.render(m.coordinates(), test_latents))), ref)
    protocol = {"generated": n, "reference_split": "test", "reference_size": n,
                "distance": f"mean over every {FRAME_STEP}th frame and the {BODY} body joints of the Euclidean "
                            "distance between forward-kinematics joint positions (fixed skeleton, pelvis at the "
                            "origin), metres",
                "comparable_with_paper": "no: the paper shows AMASS samples (fig. 11) without generation scores"}
    return {**{k: v for k, v in generated.items() if k != "clips"},
            "motion_references": {"train_split_real": train_real, "test_split_reconstructed": recon},
            "motion_protocol": protocol}
