"""Stage `evaluate`: generation metrics. Memorisation distance (sec. 4.1), FID,
KID and precision/recall against the train split, the binary-condition std
table (Table 2), and the retrieval view of fig. 9."""
import numpy as np
import torch

from .. import artifacts, fid, io, pictures
from ..artifacts import FID_REFERENCE, FIGURES, METRICS
from ..generation import binary_std_table, part_std, sample_latents
from ..metrics import memorisation_distance, nearest_distances
from . import elapsed, run


def main(cfg, generator, start, device):
    e, s = cfg.evaluate, cfg.sample
    data, loe, hcdm = artifacts.load_trained(device)
    m = data.modality
    coords = m.coordinates()

    latents = sample_latents(hcdm, e.memorisation_samples, generator, s.sampler, s.ddim_steps, e.batch_size)
    values = loe.render(coords, latents, e.batch_size)
    generated = m.to_unit(values).flatten(1)
    train = m.to_unit(m.targets(data.train)).flatten(1)
    test = m.to_unit(m.targets(data.test)).flatten(1)
    memo = memorisation_distance(generated, train)
    test_memo = memorisation_distance(test, train)        # real unseen data on the same scale

    # FID / KID / precision-recall of the first fid_samples generated images.
    fake_pics = m.to_pictures(values[: e.fid_samples])
    with np.load(artifacts.require(FID_REFERENCE, "fid_reference")) as z:
        real = z["features"]
    real_stats = fid.gaussian(real)

    def scores(pics):
        feats = fid.inception_features(pics, progress=True, device=device)
        kid_mean, kid_std = fid.kid(real, feats, e.kid_subsets, e.kid_subset_size, seed=cfg.seed)
        precision, recall = fid.precision_recall(real, feats, e.pr_k)
        return {"fid": round(fid.frechet_distance(*real_stats, *fid.gaussian(feats)), 3), "kid": round(kid_mean, 5),
                "kid_std": round(kid_std, 5), "precision": round(precision, 4), "recall": round(recall, 4),
                "images": len(pics)}

    generated_scores = scores(fake_pics)
    # References on the same scale: real unseen images (the floor), and the same
    # images after Stage-1 (what the LoE's fidelity alone costs).
    test_latents = torch.from_numpy(artifacts.load_latents()["test"])
    references = {"test_split_real": scores(m.to_pictures(m.targets(data.test))),
                  "test_split_reconstructed": scores(m.to_pictures(loe.render(coords, test_latents)))}

    # Retrieval view: each row a generated sample, then its nearest training image.
    q = min(e.retrieval_queries, e.fid_samples)
    _, nearest = nearest_distances(generated[:q], train)
    pairs = np.concatenate([fake_pics[:q, None], data.modality.to_pictures(m.targets(data.train[nearest.numpy()]))[:, None]], 1)
    io.save_png(FIGURES / "retrieval.png",
                pictures.grid(pairs.reshape(-1, *pairs.shape[2:]), 2, upscale=pictures.upscale_for(cfg.dataset.resolution)))

    chain = hcdm.variant != "flat"
    table = binary_std_table(hcdm, e.std_table.samples, e.std_table.anchors, generator, s.sampler,
                             s.ddim_steps) if chain else None
    relative = None
    if chain:
        free = part_std(hcdm, e.std_table.samples, generator, s.sampler, s.ddim_steps)
        # The i-th entry (std_1, std_12, std_23, ...) measures part i (h^1, h^2, h^3, ...).
        relative = {k: round(v / free[i], 4) for i, (k, v) in enumerate(table.items())}
    dims = train.shape[1]
    io.save_json(METRICS / "generation.json", {
        "variant": hcdm.variant, "binary_len": hcdm.binary_len,
        **{k: v for k, v in generated_scores.items() if k != "images"},
        "fid_references": references,
        "memorisation_distance": round(float(memo.mean()), 4),
        "memorisation_distance_test_split": round(float(test_memo.mean()), 4),
        "fid_protocol": {"generated": e.fid_samples, "reference_split": "train", "reference_size": len(real),
                         "features": "Inception-v3 pool3 (TF 2015-12-05 weights), 2048-d", "resize": fid.RESIZE,
                         "kid": f"unbiased, cubic kernel, {e.kid_subsets} subsets of {min(e.kid_subset_size, len(real), e.fid_samples)}",
                         "precision_recall_k": e.pr_k},
        "memorisation": {"samples": e.memorisation_samples, "value_range": "[0, 1] per value",
                         "values_per_instance": dims, "max_possible": round(float(np.sqrt(dims)), 2),
                         "reference_split": "train", "reference_size": len(data.train)},
        "std_table": {k: round(v, 4) for k, v in table.items()} if chain else None,
        "std_table_relative": relative,
        "free_part_std": [round(v, 4) for v in free] if chain else None,
        "std_table_protocol": {"samples_per_anchor": e.std_table.samples, "anchors": e.std_table.anchors,
                               "units": "standardised latents (train-set std = 1)"},
        "sampler": s.sampler, "ddim_steps": s.ddim_steps, "seconds": elapsed(start)})


if __name__ == "__main__":
    run(main)
