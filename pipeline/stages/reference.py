"""Stage `reference`: what generated samples are compared with, computed once
per dataset and reused by every experiment's `evaluate`.

Images: Inception pool3 features of the train split (FID / KID / precision-recall).
Shapes: 2048 surface points of every test shape, from marching cubes at level
0.5 of its voxels (COV / MMD / 1-NNA by Chamfer distance), and the scores of
as many real train shapes against them: what a perfect generator would get.
"""
import json

from .. import artifacts, datasets, fid, io
from ..artifacts import DATASET, REFERENCE
from ..shape_metrics import generation_scores, point_clouds
from . import elapsed, run

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (REFERENCE,)


def main(cfg, generator, start, device):
    data = datasets.load(artifacts.require(DATASET, "prepare"))
    m = data.modality
    if m.name == "image":
        features = fid.inception_features(m.to_pictures(m.targets(data.train)), progress=True, device=device)
        io.save_npz(REFERENCE, features=features, split="train", resolution=cfg.dataset.resolution,
                    resize=fid.RESIZE, seconds=elapsed(start))
        return
    points = cfg.evaluate.surface_points
    clouds, empty = point_clouds(m.occupancy(m.targets(data.test)).numpy(), points, cfg.seed)
    real, real_empty = point_clouds(m.occupancy(m.targets(data.train[:len(clouds)])).numpy(), points, cfg.seed + 1)
    real_scores = {**generation_scores(real, clouds), "shapes": len(real), "without_surface": real_empty}
    io.save_npz(REFERENCE, points=clouds, split="test", empty=empty, resolution=cfg.dataset.resolution,
                train_split_real=json.dumps(real_scores, allow_nan=False), seconds=elapsed(start))


if __name__ == "__main__":
    run(main, OUTPUTS)
