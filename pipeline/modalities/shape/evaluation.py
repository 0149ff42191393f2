"""How generated shapes are scored: coverage, MMD and 1-NNA by Chamfer distance between surface point
clouds, against the test split (points computed once by the `reference` stage), with real train shapes
and test shapes after Stage-1 as references."""
from __future__ import annotations

import json

from ...errors import DataError
from ..scoring import Scoring, train_subset
from .metrics import UNITS, distance_matrix, generation_scores, point_clouds

# Protocol text and set sizes: in metrics/detail/generation.json, not in the metrics file.
DETAIL_ONLY = ("shape_protocol", "shape_references.*.shapes")


def reference(cfg, data, device) -> dict:
    """evaluate.surface_points surface points of every test shape, from marching cubes at level 0.5
    of its voxels, their own Chamfer matrix (which every set scored against them shares), and the scores
    of as many real train shapes against them."""
    m, points = data.modality, cfg.evaluate.surface_points
    clouds, empty = point_clouds(m.occupancy(m.targets(data.test)).numpy(), points, cfg.seed)
    real_shapes = m.targets(train_subset(data.train, len(clouds), cfg.seed))
    real, real_empty = point_clouds(m.occupancy(real_shapes).numpy(), points, cfg.seed + 1)
    distances = distance_matrix(clouds, device=device, progress=True)
    real_scores = {**generation_scores(real, clouds, device=device, reference_distances=distances),
                   "shapes": len(real), "without_surface": real_empty}
    return {"points": clouds, "distances": distances, "split": "test", "empty": empty,
            "resolution": cfg.dataset.resolution,
            "train_split_real": json.dumps(real_scores, allow_nan=False)}


def count(cfg, data) -> int:
    """As many samples as reference (test) shapes."""
    return len(data.test)


def scores(s: Scoring) -> dict:
    """COV / MMD / 1-NNA of as many generated shapes as the reference (test) set, with references."""
    cfg, m = s.cfg, s.modality
    reference, train_real = s.reference["points"], json.loads(str(s.reference["train_split_real"]))
    distances = s.reference.get("distances")
    if distances is None or distances.shape != (len(reference), len(reference)):
        raise DataError(f"the reference stage's file holds no Chamfer matrix of its {len(reference)} test shapes "
                        "(written by older code, or damaged); `dvc repro reference` remakes it")
    n, points = len(reference), reference.shape[1]

    def score(vals):
        clouds, empty = point_clouds(m.occupancy(vals).numpy(), points, cfg.seed + 1)
        return {**generation_scores(clouds, reference, device=s.device, reference_distances=distances),
                "shapes": len(clouds), "without_surface": empty}

    generated = score(s.values[:n])
    # The same metrics for real train shapes (what a perfect generator scores on this
    # reference size; computed once by `reference`) and for the test shapes after
    # Stage-1 (the LoE's fidelity alone).
    references = {"train_split_real": train_real,
                  "test_split_reconstructed": score(s.loe.render(m.coordinates(), s.test_latents))}
    # Chamfer distances shrink with more points per cloud: Table 1's MMD holds at its 2048 only.
    scale = ("MMD scale yes (unit cube, 2048 points)" if points == 2048 else
             f"MMD scale no (unit cube, {points} points; Table 1: 2048)")
    protocol = {"generated": n, "reference_split": "test", "reference_size": n, "points_per_shape": points,
                "surface": "marching cubes (scikit-image) at level 0.5 of the occupancy, points uniform by area",
                "normalisation": "unit cube; each file rescaled when read (a mesh's longest side fills the cube, a "
                                 "3D-RecGAN grid's box is centred and resized): not comparable with Table 1"
                                 if cfg.dataset.source == "folder" else
                                 "unit cube, shapes as the source gives them (not rescaled per shape)",
                "units": UNITS, "comparable_with_table_1": scale + "; the sets are not the paper's unless the data is "
                                                            "IM-NET's test split",
                "chamfer": "mean squared nearest-neighbour distance, both directions, summed"}
    return {**{k: v for k, v in generated.items() if k != "shapes"}, "shape_references": references,
            "shape_protocol": protocol}
