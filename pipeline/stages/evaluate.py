"""Stage `evaluate`: generation metrics. Memorisation distance (sec. 4.1);
the modality's own scores against its reference (images: FID, KID and
precision/recall against the train split; shapes: coverage, MMD and 1-NNA by
Chamfer distance against the test split); the binary-condition std table
(Table 2), and the retrieval view of fig. 9."""
import numpy as np
import torch

from .. import artifacts, io, pictures
from ..artifacts import FIGURES, REFERENCE, metrics_files
from ..factors import load_factor_predictor
from ..generation import load_trained, memorised_std_table, part_std, sample_latents, std_tables, stream
from ..metrics import Rows, block_rows, nearest_many
from ..modalities import evaluation
from ..modalities.scoring import Scoring
from ..errors import NonFiniteError, warn
from . import elapsed, run, write_metrics

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (*metrics_files("generation"), FIGURES / "retrieval.png")


def standard_error(a: torch.Tensor, b: torch.Tensor | None = None) -> float | None:
    """The standard error of mean(a), or of mean(b) - mean(a) for two independent sets of distances (unbiased
    spreads); None where a set has one member and no spread."""
    sets = (a,) if b is None else (a, b)
    if min(len(x) for x in sets) < 2:
        return None
    return float(sum(x.var() / len(x) for x in sets) ** 0.5)


def main(cfg, generator, start, device):
    e, s = cfg.evaluate, cfg.sample
    warnings = []
    data, loe, hcdm = load_trained(device)
    m = data.modality
    scorer = evaluation.of(m)
    coords = m.coordinates()

    # One set of samples serves both: FID on the first fid_samples, memorisation on the first
    # memorisation_samples (a nearest-neighbour search each, so 50k FID samples need not mean 50k searches).
    count = max(e.memorisation_samples, scorer.count(cfg, data))
    latents = sample_latents(hcdm, count, generator, s.sampler, s.ddim_steps, e.batch_size)
    # Each later measurement draws from its own stream, so that none depends on how many samples were drawn
    # here (evaluate.fid_samples) or in what batches (evaluate.batch_size).
    seed = generator.initial_seed()      # seed + rank
    # Decoded at the modality's coordinates: all of them, or only those the memorisation search reads when
    # the scorer renders the generated samples its own way (radiance fields: at the test scenes' cameras).
    shown = e.memorisation_samples if getattr(scorer, "RENDERS_OWN_SAMPLES", False) else count
    values = loe.render(coords, latents[:shown], e.batch_size)
    # A NaN sample would enter FID as a black image and drop out of a nearest-neighbour search.
    bad = (~torch.isfinite(latents.flatten(1))).any(1)
    bad[:shown] |= (~torch.isfinite(values.flatten(1))).any(1)
    if bad.any():
        raise NonFiniteError(f"{int(bad.sum())} of the {count} generated samples are NaN or inf (latents or their "
                             "decodes): the HCDM or Stage-1 diverged (see metrics/curves/train_hcdm.csv)")
    generated = m.decoded_to_unit(values[: e.memorisation_samples]).flatten(1)
    bank = artifacts.load_latents()
    test_latents = torch.from_numpy(bank["test"])
    # The nearest-neighbour search compares values at the same coordinates: the train instances' stored values
    # there, or, where the data was not taken there (SRN scenes, each posed by its own cameras), Stage-1's
    # decodes of the train latents at the samples' coordinates. The train rows are made a block at a time
    # (metrics.Rows), once for the three searches: ShapeNet's 35019 train shapes at 64^3 are 37 GB as float.
    train_latents = torch.from_numpy(bank["train"]).float()
    stored = m.taken_at_coordinates(data.train)
    dims = generated.shape[1]
    if stored:
        train = Rows(len(data.train), lambda a, b: m.to_unit(m.targets(data.train[a:b])).flatten(1), block_rows(dims))
    else:      # blocks of whole batches: the decodes are those of one render over all the latents
        train = Rows(len(train_latents), block=block_rows(dims, e.batch_size), make=lambda a, b: m.decoded_to_unit(
            loe.render(coords, train_latents[a:b], e.batch_size)).flatten(1))
    test_targets = m.targets(data.test)
    # Unseen instances as the LoE decodes them (fitted latents): what a new sample should look like to the
    # nearest-neighbour search. Samples much nearer the train set than these reproduce training instances.
    recon = m.decoded_to_unit(loe.render(coords, test_latents.float(), e.batch_size)).flatten(1)
    # Real unseen data on the same scale, where it was taken.
    test_at = m.to_unit(test_targets).flatten(1) if m.taken_at_coordinates(data.test) else None
    (memo, nearest), (recon_memo, _), *tested = nearest_many(
        [generated, recon, *([] if test_at is None else [test_at])], train)
    test_memo = tested[0][0] if tested else None
    # Warned past two standard errors of the difference: the reference is a mean over a few hundred test
    # instances (1.7% standard error on the default), so a fixed 1% margin would flag a prior that ties with
    # the reconstructions about a third of the time.
    gap, gap_error = float(recon_memo.mean() - memo.mean()), standard_error(memo, recon_memo)
    if gap_error and gap > 2 * gap_error:
        warn(warnings, f"generated samples sit nearer the training instances (memorisation distance "
                       f"{float(memo.mean()):.4g}) than the unseen test instances decoded by Stage-1 do "
                       f"({float(recon_memo.mean()):.4g}; {gap / gap_error:.1f} standard errors apart): the prior "
                       "reproduces training instances more than it makes new ones (see metrics/figures/retrieval.png)")
    quality = scorer.scores(Scoring(cfg, device, data, dict(io.load_npz(artifacts.require(REFERENCE, "reference"))),
                                    loe, values, test_targets, test_latents, load_factor_predictor(), warnings,
                                    latents))

    # Retrieval view: each row a generated sample, then its nearest training instance.
    q = min(e.retrieval_queries, len(generated))
    nearest = nearest[:q]
    found = (m.targets(data.train[nearest.numpy()]) if stored else
             loe.render(coords, train_latents[nearest], e.batch_size))
    pairs = np.concatenate([m.to_pictures(values[:q])[:, None], m.to_pictures(found)[:, None]], 1)
    io.save_png(FIGURES / "retrieval.png",
                pictures.grid(pairs.reshape(-1, *pairs.shape[2:]), 2, upscale=pictures.upscale_for(pairs.shape[2])))

    chain = hcdm.variant != "flat"
    tables = std_tables(hcdm, e.std_table.samples, e.std_table.anchors, stream(seed, "std_table"),
                        s.sampler, s.ddim_steps, parts=e.std_table.parts) if chain else None
    table = tables["standardised"] if chain else None
    relative = anchored = memorised = None
    if chain:
        free = part_std(hcdm, e.std_table.samples, stream(seed, "part_std"), s.sampler, s.ddim_steps,
                        e.std_table.parts)
        # The i-th entry (std_1, std_12, std_23, ...) measures part i (h^1, h^2, h^3, ...).
        relative = {k: round(v / free[i], 4) for i, (k, v) in enumerate(table.items())}
        # Table 2 read the other way: std_1 from the data, prefixes from random train instances.
        anchored = std_tables(hcdm, e.std_table.samples, e.std_table.anchors, stream(seed, "std_table_anchored"),
                              s.sampler, s.ddim_steps, data=train_latents, parts=e.std_table.parts)
        # The floor: what a prior that reproduced its training pairs code by code would report.
        memorised = memorised_std_table(hcdm, train_latents, e.std_table.parts)

    def rounded(t):
        return {k: round(v, 4) for k, v in t.items()}
    write_metrics("generation", {
        "variant": hcdm.variant, "binary_len": hcdm.binary_len,
        **quality,
        "memorisation_distance": round(float(memo.mean()), 4),
        "memorisation_distance_test_split": round(float(test_memo.mean()), 4) if test_memo is not None else None,
        "memorisation_distance_test_reconstructed": round(float(recon_memo.mean()), 4),
        "memorisation": {"samples": e.memorisation_samples, "value_range": "[0, 1] per value",
                         "values_per_instance": dims, "max_possible": round(float(np.sqrt(dims)), 2),
                         "reference_split": "train", "reference_size": len(data.train),
                         "reference": ("the stored train instances" if stored else
                                       "Stage-1's decodes of the train latents at the samples' coordinates (the "
                                       "stored instances were not taken there; test_split is not measured)"),
                         **{key: None if v is None else round(v, 4) for key, v in (
                             ("standard_error", standard_error(memo)),
                             ("standard_error_test_reconstructed", standard_error(recon_memo)))},
                         "warns_when": "samples nearer the train set than the test reconstructions by over two "
                                       "standard errors of the difference"},
        "std_table": rounded(table) if chain else None,
        "std_table_standard_error": {k: round(v, 4) for k, v in tables["standard_error"].items()
                                     if v is not None} if chain else None,
        "std_table_raw": rounded(tables["raw"]) if chain else None,
        "std_table_relative": relative,
        "free_part_std": [round(v, 4) for v in free] if chain else None,
        "std_table_data_anchored": {k: rounded(anchored[k]) for k in ("standardised", "raw")} if chain else None,
        "std_table_memorised": rounded(memorised["standardised"]) if chain else None,
        "code_occupancy": {"distinct_codes": memorised["distinct_codes"],
                           "instances_per_anchor_code": rounded(memorised["instances_per_anchor_code"]),
                           "train_instances": len(bank["train"])} if chain else None,
        "std_table_protocol": {
            "samples_per_anchor": e.std_table.samples, "anchors": e.std_table.anchors,
            "units": "std_table: standardised latents (train-set std = 1 per dimension); std_table_raw: raw latents",
            "readings": "std_table / std_table_raw: std_1 over the model's samples, prefixes drawn from the chain; "
                        "std_table_data_anchored: std_1 over the train latents, prefixes of random train instances "
                        "(std_1 then does not depend on binary_len, as in the paper's Table 2); "
                        "std_table_memorised: every train instance as anchor, the std of its next part over the "
                        "train instances sharing its code (population std; 0 for a code of its own): what a prior "
                        "that reproduced its training pairs would report",
            "parts": ("one part per LoE layer (h^1..h^L)" if e.std_table.parts is None else
                      f"layers per part {e.std_table.parts} (evaluate.std_table.parts)")},
        "sampler": s.sampler, "ddim_steps": s.ddim_steps, "seconds": elapsed(start)}, warnings,
        # Protocol text, set sizes and params stay in the detail file; the scores, references and Table 2 stay here.
        omit=("binary_len", "ddim_steps", "memorisation", "std_table_protocol", "std_table_data_anchored.standardised",
              "code_occupancy",
              *scorer.DETAIL_ONLY))


if __name__ == "__main__":
    run(main, OUTPUTS)
