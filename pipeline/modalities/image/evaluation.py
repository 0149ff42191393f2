"""How generated images are scored: FID, KID and precision/recall of Inception-v3 pool3 features
against the train split (computed once by the `reference` stage), with the same scores for real test
images and for test images after Stage-1 as references."""
from __future__ import annotations

from ...errors import warn
from .. import scoring
from ..scoring import Scoring
from . import fid

# Protocol text and set sizes: in metrics/detail/generation.json, not in the metrics file.
DETAIL_ONLY = ("fid_protocol", "fid_references.*.images", "fid_references.*.pr_k_used", "fid_references.*.kid_std",
               "fid_references.*.kid_subset")


def reference(cfg, data, device) -> dict:
    """Inception pool3 features of the train split, and of the real test images: the floor reference that
    every `evaluate` reports reads them here instead of recomputing them (200 images, about 17 s on 2 cores,
    the same bits: the same batches through the same network)."""
    m = data.modality
    features = fid.inception_features(m.to_pictures(m.targets(data.train)), progress=True, device=device)
    test = fid.inception_features(m.to_pictures(m.targets(data.test)), progress=True, device=device)
    return {"features": features, "test_features": test, "split": "train", "resolution": cfg.dataset.resolution,
            "resize": fid.RESIZE}


def count(cfg, data) -> int:
    """How many samples the scores read: evaluate.fid_samples."""
    return cfg.evaluate.fid_samples


def scores(s: Scoring) -> dict:
    """FID / KID / precision-recall of the first fid_samples generated images, with references."""
    cfg, device, m, warnings = s.cfg, s.device, s.modality, s.warnings
    e = cfg.evaluate
    real = s.reference["features"]
    dims = real.shape[1]
    for what, n in (("reference (train) set", len(real)), ("generated set", e.fid_samples)):
        if n <= dims:
            warn(warnings, f"FID's {what} has {n} images for {dims}-d Inception features: its covariance is "
                           "rank-deficient and FID reads high; compare only FIDs of equal set sizes")
    kid_size = min(e.kid_subset_size, len(real), e.fid_samples)
    if kid_size < e.kid_subset_size:
        warn(warnings, f"KID subsets cut from {e.kid_subset_size} to {kid_size} images (the smaller set compared)")
    k_used = scoring.pr_k_used(e.pr_k, min(len(real), e.fid_samples))
    if k_used < e.pr_k:
        warn(warnings, f"precision/recall k cut from {e.pr_k} to {k_used}: a set has only {k_used + 1} images")

    def score(feats):
        kid_mean, kid_std = scoring.kid(real, feats, e.kid_subsets, e.kid_subset_size, seed=cfg.seed)
        precision, recall = scoring.precision_recall(real, feats, e.pr_k)
        return {"fid": round(scoring.frechet_distance_of(real, feats), 3), "kid": round(kid_mean, 5),
                "kid_std": round(kid_std, 5), "precision": round(precision, 4), "recall": round(recall, 4),
                "images": len(feats), "pr_k_used": scoring.pr_k_used(e.pr_k, min(len(real), len(feats))),
                "kid_subset": scoring.kid_subset(e.kid_subset_size, real, feats)}

    def features(pics):
        return fid.inception_features(pics, progress=True, device=device)

    generated = score(features(m.to_pictures(s.values[: e.fid_samples])))
    for name, meaning in (("precision", "no generated image lies in the real images' k-NN balls (samples off the "
                                        "data, e.g. a Stage-1 that does not reconstruct)"),
                          ("recall", "no real image lies in the generated images' k-NN balls (samples collapsed "
                                     "onto a few modes or copies)")):
        if generated[name] == 0:
            warn(warnings, f"{name} is 0: {meaning}; look at the samples and the retrieval figure before reading "
                           "FID, and give Stage-1 more data or fewer steps if its test PSNR lags its train PSNR")
    # References on the same scale: real unseen images (the floor), and the same
    # images after Stage-1 (what the LoE's fidelity alone costs).
    test_real = s.reference.get("test_features")      # absent from a reference written before it was kept
    if test_real is None or len(test_real) != len(s.test_targets):
        test_real = features(m.to_pictures(s.test_targets))
    references = {"test_split_real": score(test_real),
                  "test_split_reconstructed": score(features(m.to_pictures(s.loe.render(m.coordinates(),
                                                                                          s.test_latents))))}
    paper = e.fid_samples >= fid.PAPER_SAMPLES
    protocol = {"name": f"FID@{e.fid_samples}", "paper_protocol": paper,
                "comparable_with_table_1": (f"yes: {fid.PAPER_SAMPLES} samples against the train split, as mNIF, if the "
                                            "data is CelebA-HQ 64" if paper else
                                            f"no: {e.fid_samples} samples (Table 1: {fid.PAPER_SAMPLES}); FID falls as "
                                            "the count grows (README: which numbers can be laid beside Table 1)"),
                "generated": e.fid_samples, "reference_split": "train", "reference_size": len(real),
                "features": "Inception-v3 pool3 (TF 2015-12-05 weights), 2048-d", "resize": fid.RESIZE,
                "kid": f"unbiased, cubic kernel, {e.kid_subsets} subsets of {kid_size} (each reference: its "
                       "kid_subset)",
                "precision_recall_k": e.pr_k, "precision_recall_k_used": k_used}
    return {**{k: v for k, v in generated.items() if k not in ("images", "pr_k_used", "kid_subset")},
            "fid_references": references,
            "fid_protocol": protocol}
