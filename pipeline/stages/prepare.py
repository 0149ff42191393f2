"""Stage `prepare`: build the dataset (synthetic faces or shapes, a folder of
images, voxel or mesh files, or IM-NET's HDF5 release)."""
import resource

from .. import datasets, io, pictures
from ..artifacts import DATASET, DATASET_PREVIEW, metrics_files
from ..errors import warn
from ..modalities import SPECS
from . import elapsed, run, write_metrics

# Below this many test instances, every figure measured on the split is noisy.
SMALL_TEST_SPLIT = 50

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (DATASET, DATASET_PREVIEW, *metrics_files("prepare"))
SPLIT_DETAIL = ("split", "groups", "files", "train_files", "body_shape_files", "test_files", "test_file_names",
                "skipped", "fit_views", "held_out_views", "bounds", "native")


def main(cfg, generator, start, device):
    warnings = []
    if cfg.dataset.source == "synthetic" and cfg.dataset.path:
        # Not an error: a preset that names a folder runs on the embedded data with `-S dataset.source=synthetic`.
        formats = [s for s in SPECS[cfg.dataset.modality].sources if s != "synthetic"]
        warn(warnings, f"dataset.path ({cfg.dataset.path}) is not read: dataset.source is 'synthetic', the embedded "
                       f"data; set dataset.source ({' | '.join(formats)}) to read it, or dataset.path null")
    data = datasets.prepare(cfg)
    datasets.save(DATASET, data, data.modality.construction_args())
    m = data.modality
    preview = m.to_pictures(m.targets(data.train[:64]))
    io.save_png(DATASET_PREVIEW, pictures.grid(preview, 8, upscale=pictures.upscale_for(preview.shape[1])))
    if len(data.test) < SMALL_TEST_SPLIT:
        warn(warnings, f"the test split has {len(data.test)} instances (< {SMALL_TEST_SPLIT}): reconstruction figures "
                       f"and the {m.set_metrics} measured on it are noisy")
    if data.info.get("skipped"):
        skipped = data.info["skipped"]
        warn(warnings, f"skipped {data.info['skipped_files']} unreadable files (dataset.folder.skip_corrupt): "
                       + ", ".join(skipped[:10]) + (", ..." if data.info["skipped_files"] > 10 else ""))
    for line in [*data.info.get("read_warnings", []), *m.data_warnings(data.train, data.test)]:
        warn(warnings, line)
    # A user's files only: the embedded data is drawn from continuous factors, and its committed metrics stand.
    copies = datasets.exact_copies(data.train, data.test) if data.info["source"] != "synthetic" else 0
    if copies:
        warn(warnings, f"{copies} of {len(data.test)} test instances equal a train instance exactly (the same stored "
                       "signal, e.g. one file saved under two names): their test figures measure recall, not "
                       f"generalisation; remove the duplicates from the data in {cfg.dataset.path}")
    # What a user's source was split into, by name (detail file only; the embedded data has none of these).
    split = {k: data.info[k] for k in SPLIT_DETAIL if k in data.info}
    write_metrics("prepare", {
        "modality": m.name, "source": data.info["source"], "resolution": cfg.dataset.resolution,
        "train": len(data.train), "test": len(data.test), "skipped_files": data.info["skipped_files"],
        "stored_bytes_per_instance": int(data.train[0].nbytes), "factors": data.factor_names,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": elapsed(start), **split},
        warnings, omit=("peak_rss_mib", *SPLIT_DETAIL))   # memory: detail only (it differs run to run)


if __name__ == "__main__":
    run(main, OUTPUTS)
