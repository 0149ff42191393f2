"""Stage `prepare`: build the dataset (synthetic faces or a folder of images)."""
from .. import datasets, io, pictures
from ..artifacts import DATASET, DATASET_PREVIEW, METRICS
from . import elapsed, run


def main(cfg, generator, start, device):
    data = datasets.prepare(cfg)
    datasets.save(DATASET, data, {"resolution": cfg.dataset.resolution})
    preview = data.train[:64]
    io.save_png(DATASET_PREVIEW, pictures.grid(preview, 8, upscale=pictures.upscale_for(cfg.dataset.resolution)))
    io.save_json(METRICS / "prepare.json", {
        "source": data.info["source"], "resolution": cfg.dataset.resolution,
        "train": len(data.train), "test": len(data.test), "skipped_files": data.info["skipped_files"],
        "factors": data.factor_names, "seconds": elapsed(start)})


if __name__ == "__main__":
    run(main)
