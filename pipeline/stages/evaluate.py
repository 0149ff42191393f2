"""Stage `evaluate`: generation metrics. Memorisation distance (sec. 4.1);
images: FID, KID and precision/recall against the train split; shapes:
coverage, MMD and 1-NNA by Chamfer distance against the test split; the
binary-condition std table (Table 2), and the retrieval view of fig. 9."""
import json

import numpy as np
import torch

from .. import artifacts, fid, io, pictures
from ..artifacts import FIGURES, REFERENCE, metrics_files
from ..generation import load_trained, part_std, sample_latents, std_tables
from ..metrics import memorisation_distance, nearest_distances
from ..shape_metrics import UNITS, generation_scores, point_clouds
from . import elapsed, run, warn, write_metrics

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (*metrics_files("generation"), FIGURES / "retrieval.png")


def image_scores(cfg, device, m, loe, values, test_targets, test_latents, warnings: list[str]) -> dict:
    """FID / KID / precision-recall of the first fid_samples generated images, with references."""
    e = cfg.evaluate
    real = io.load_npz(artifacts.require(REFERENCE, "reference"))["features"]
    real_stats = fid.gaussian(real)
    dims = real.shape[1]
    for what, n in (("reference (train) set", len(real)), ("generated set", e.fid_samples)):
        if n <= dims:
            warn(warnings, f"FID's {what} has {n} images for {dims}-d Inception features: its covariance is "
                           "rank-deficient and FID reads high; compare only FIDs of equal set sizes")
    kid_size = min(e.kid_subset_size, len(real), e.fid_samples)
    if kid_size < e.kid_subset_size:
        warn(warnings, f"KID subsets cut from {e.kid_subset_size} to {kid_size} images (the smaller set compared)")
    k_used = fid.pr_k_used(e.pr_k, min(len(real), e.fid_samples))
    if k_used < e.pr_k:
        warn(warnings, f"precision/recall k cut from {e.pr_k} to {k_used}: a set has only {k_used + 1} images")

    def scores(pics):
        feats = fid.inception_features(pics, progress=True, device=device)
        kid_mean, kid_std = fid.kid(real, feats, e.kid_subsets, e.kid_subset_size, seed=cfg.seed)
        precision, recall = fid.precision_recall(real, feats, e.pr_k)
        return {"fid": round(fid.frechet_distance(*real_stats, *fid.gaussian(feats)), 3), "kid": round(kid_mean, 5),
                "kid_std": round(kid_std, 5), "precision": round(precision, 4), "recall": round(recall, 4),
                "images": len(pics), "pr_k_used": fid.pr_k_used(e.pr_k, min(len(real), len(feats)))}

    generated = scores(m.to_pictures(values[: e.fid_samples]))
    # References on the same scale: real unseen images (the floor), and the same
    # images after Stage-1 (what the LoE's fidelity alone costs).
    references = {"test_split_real": scores(m.to_pictures(test_targets)),
                  "test_split_reconstructed": scores(m.to_pictures(loe.render(m.coordinates(), test_latents)))}
    paper = e.fid_samples >= fid.PAPER_SAMPLES
    protocol = {"name": f"FID@{e.fid_samples}", "paper_protocol": paper,
                "comparable_with_table_1": (f"yes: {fid.PAPER_SAMPLES} samples against the train split, as mNIF, if the "
                                            "data is CelebA-HQ 64" if paper else
                                            f"no: {e.fid_samples} samples (Table 1: {fid.PAPER_SAMPLES}); FID falls as "
                                            "the count grows (README: which numbers can be laid beside Table 1)"),
                "generated": e.fid_samples, "reference_split": "train", "reference_size": len(real),
                "features": "Inception-v3 pool3 (TF 2015-12-05 weights), 2048-d", "resize": fid.RESIZE,
                "kid": f"unbiased, cubic kernel, {e.kid_subsets} subsets of {kid_size}",
                "precision_recall_k": e.pr_k, "precision_recall_k_used": k_used}
    return {**{k: v for k, v in generated.items() if k not in ("images", "pr_k_used")}, "fid_references": references,
            "fid_protocol": protocol}


def shape_scores(cfg, m, loe, values, test_latents) -> dict:
    """COV / MMD / 1-NNA of as many generated shapes as the reference (test) set, with references."""
    z = io.load_npz(artifacts.require(REFERENCE, "reference"))
    reference, train_real = z["points"], json.loads(str(z["train_split_real"]))
    n, points = len(reference), reference.shape[1]

    def scores(vals):
        clouds, empty = point_clouds(m.occupancy(vals).numpy(), points, cfg.seed + 1)
        return {**generation_scores(clouds, reference), "shapes": len(clouds), "without_surface": empty}

    generated = scores(values[:n])
    # The same metrics for real train shapes (what a perfect generator scores on this
    # reference size; computed once by `reference`) and for the test shapes after
    # Stage-1 (the LoE's fidelity alone).
    references = {"train_split_real": train_real,
                  "test_split_reconstructed": scores(loe.render(m.coordinates(), test_latents))}
    protocol = {"generated": n, "reference_split": "test", "reference_size": n, "points_per_shape": points,
                "surface": "marching cubes (scikit-image) at level 0.5 of the occupancy, points uniform by area",
                "normalisation": "unit cube, shapes in canonical pose (not rescaled per shape)",
                "units": UNITS, "comparable_with_table_1": "MMD scale yes (unit cube, 2048 points); the sets are not "
                                                            "the paper's unless the data is IM-NET's test split",
                "chamfer": "mean squared nearest-neighbour distance, both directions, summed"}
    return {**{k: v for k, v in generated.items() if k != "shapes"}, "shape_references": references,
            "shape_protocol": protocol}


def main(cfg, generator, start, device):
    e, s = cfg.evaluate, cfg.sample
    warnings = []
    data, loe, hcdm = load_trained(device)
    m = data.modality
    coords = m.coordinates()

    # One set of samples serves both: FID on the first fid_samples, memorisation on the first
    # memorisation_samples (a nearest-neighbour search each, so 50k FID samples need not mean 50k searches).
    count = max(e.memorisation_samples, e.fid_samples if m.name == "image" else len(data.test))
    latents = sample_latents(hcdm, count, generator, s.sampler, s.ddim_steps, e.batch_size)
    values = loe.render(coords, latents, e.batch_size)
    generated = m.to_unit(values[: e.memorisation_samples]).flatten(1)
    train_targets = m.targets(data.train)
    train = m.to_unit(train_targets).flatten(1)
    test_targets = m.targets(data.test)
    test = m.to_unit(test_targets).flatten(1)
    memo = memorisation_distance(generated, train)
    test_memo = memorisation_distance(test, train)        # real unseen data on the same scale
    bank = artifacts.load_latents()
    test_latents = torch.from_numpy(bank["test"])
    if m.name == "image":
        quality = image_scores(cfg, device, m, loe, values, test_targets, test_latents, warnings)
    else:
        quality = shape_scores(cfg, m, loe, values, test_latents)

    # Retrieval view: each row a generated sample, then its nearest training instance.
    q = min(e.retrieval_queries, len(generated))
    _, nearest = nearest_distances(generated[:q], train)
    pairs = np.concatenate([m.to_pictures(values[:q])[:, None],
                            m.to_pictures(train_targets[nearest])[:, None]], 1)
    io.save_png(FIGURES / "retrieval.png",
                pictures.grid(pairs.reshape(-1, *pairs.shape[2:]), 2, upscale=pictures.upscale_for(pairs.shape[2])))

    chain = hcdm.variant != "flat"
    tables = std_tables(hcdm, e.std_table.samples, e.std_table.anchors, generator, s.sampler,
                        s.ddim_steps, parts=e.std_table.parts) if chain else None
    table = tables["standardised"] if chain else None
    relative = anchored = None
    if chain:
        free = part_std(hcdm, e.std_table.samples, generator, s.sampler, s.ddim_steps, e.std_table.parts)
        # The i-th entry (std_1, std_12, std_23, ...) measures part i (h^1, h^2, h^3, ...).
        relative = {k: round(v / free[i], 4) for i, (k, v) in enumerate(table.items())}
        # Table 2 read the other way: std_1 from the data, prefixes from random train instances.
        anchored = std_tables(hcdm, e.std_table.samples, e.std_table.anchors, generator, s.sampler, s.ddim_steps,
                              data=torch.from_numpy(bank["train"]).float(), parts=e.std_table.parts)

    def rounded(t):
        return {k: round(v, 4) for k, v in t.items()}
    dims = train.shape[1]
    write_metrics("generation", {
        "variant": hcdm.variant, "binary_len": hcdm.binary_len,
        **quality,
        "memorisation_distance": round(float(memo.mean()), 4),
        "memorisation_distance_test_split": round(float(test_memo.mean()), 4),
        "memorisation": {"samples": e.memorisation_samples, "value_range": "[0, 1] per value",
                         "values_per_instance": dims, "max_possible": round(float(np.sqrt(dims)), 2),
                         "reference_split": "train", "reference_size": len(data.train)},
        "std_table": rounded(table) if chain else None,
        "std_table_raw": rounded(tables["raw"]) if chain else None,
        "std_table_relative": relative,
        "free_part_std": [round(v, 4) for v in free] if chain else None,
        "std_table_data_anchored": {k: rounded(v) for k, v in anchored.items()} if chain else None,
        "std_table_protocol": {
            "samples_per_anchor": e.std_table.samples, "anchors": e.std_table.anchors,
            "units": "std_table: standardised latents (train-set std = 1 per dimension); std_table_raw: raw latents",
            "readings": "std_table / std_table_raw: std_1 over the model's samples, prefixes drawn from the chain; "
                        "std_table_data_anchored: std_1 over the train latents, prefixes of random train instances "
                        "(std_1 then does not depend on binary_len, as in the paper's Table 2)",
            "parts": ("one part per LoE layer (h^1..h^L)" if e.std_table.parts is None else
                      f"layers per part {e.std_table.parts} (evaluate.std_table.parts)")},
        "sampler": s.sampler, "ddim_steps": s.ddim_steps, "seconds": elapsed(start)}, warnings,
        # Protocol text, set sizes and params stay in the detail file; the scores, references and Table 2 stay here.
        omit=("binary_len", "ddim_steps", "fid_protocol", "shape_protocol", "memorisation", "std_table_protocol",
              "std_table_data_anchored.standardised", "*_references.*.images", "*_references.*.shapes",
              "*_references.*.pr_k_used", "*_references.*.kid_std"))


if __name__ == "__main__":
    run(main, OUTPUTS)
