"""Stage `fid_reference`: Inception features of the train split, computed once
per dataset and resolution and reused by every experiment's `evaluate`."""
from .. import artifacts, datasets, fid, io
from ..artifacts import DATASET, FID_REFERENCE
from . import elapsed, run


def main(cfg, generator, start, device):
    data = datasets.load(artifacts.require(DATASET, "prepare"))
    pics = data.modality.to_pictures(data.modality.targets(data.train))
    features = fid.inception_features(pics, progress=True, device=device)
    io.save_npz(FID_REFERENCE, features=features, split="train", resolution=cfg.dataset.resolution,
                resize=fid.RESIZE, seconds=elapsed(start))


if __name__ == "__main__":
    run(main)
