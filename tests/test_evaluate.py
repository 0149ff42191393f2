"""The evaluate stage's draws, checks and records, on the shared micro run."""
import json

import numpy as np
import pytest
import torch
import yaml


@pytest.fixture(scope="module")
def scored(micro_trained, tmp_path_factory):
    """A copy of the micro run with its reference and factor predictor, ready for evaluate."""
    from conftest import copy_of
    from pipeline import config
    from pipeline.stages import factor_predictor, reference, seeded

    work = copy_of(micro_trained, tmp_path_factory.mktemp("evaluate") / "run")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        cfg = config.load(work / "params.yaml")
        for stage in (reference, factor_predictor):
            stage.main(cfg, seeded(0), 0.0, torch.device("cpu"))
    return work


def evaluate_with(work, monkeypatch, **changes) -> dict:
    """evaluate.main with these evaluate params -> its detail file."""
    from pipeline import config
    from pipeline.stages import evaluate, seeded

    monkeypatch.chdir(work)
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["evaluate"].update(changes)
    (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    evaluate.main(config.load(work / "params.yaml"), seeded(0), 0.0, torch.device("cpu"))
    return json.loads((work / "metrics/detail/generation.json").read_text())


def test_the_std_tables_do_not_move_with_the_fid_sample_count_or_the_batch_size(scored, monkeypatch):
    """Table 2 draws from its own streams: with 8 or 12 FID samples drawn first, in batches of 256 or 5, its
    entries are the same to the bit; each reference records its own KID subset size (12 generated images
    against the 8 test images: subsets of 8)."""
    first = evaluate_with(scored, monkeypatch, fid_samples=8, kid_subset_size=8, batch_size=256)
    second = evaluate_with(scored, monkeypatch, fid_samples=12, kid_subset_size=12, batch_size=5)
    for key in ("std_table", "std_table_raw", "std_table_standard_error", "std_table_relative",
                "std_table_data_anchored"):
        assert first[key] == second[key], key
    assert set(first["std_table_standard_error"]) == {"std_12", "std_23"}      # std_1 is one group: no error
    refs = second["fid_references"]
    assert refs["test_split_real"]["kid_subset"] == 8 and refs["test_split_reconstructed"]["kid_subset"] == 8
    assert "subsets of 12" in second["fid_protocol"]["kid"]
    memo = second["memorisation"]
    assert memo["reference"] == "the stored train instances" and memo["standard_error"] > 0


def test_a_sample_that_is_nan_stops_evaluate_with_one_line_and_no_fid(scored, monkeypatch):
    from pipeline.errors import NonFiniteError
    from pipeline.stages import evaluate

    draw = evaluate.sample_latents

    def spoiled(*a, **k):
        out = draw(*a, **k)
        out[3, 1, 0] = float("nan")
        return out
    monkeypatch.setattr(evaluate, "sample_latents", spoiled)
    with pytest.raises(NonFiniteError, match=r"^1 of the 8 generated samples are NaN or inf"):
        evaluate_with(scored, monkeypatch, fid_samples=8, kid_subset_size=8, batch_size=256)


def test_the_memorisation_warning_needs_two_standard_errors_of_the_difference():
    from pipeline.stages.evaluate import standard_error

    a, b = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0, 1.0, 1.0])       # variances 2 and 0
    assert standard_error(a, b) == pytest.approx(1.0)
    assert standard_error(a) == pytest.approx(1.0) and standard_error(b) == 0
    assert standard_error(torch.tensor([1.0]), b) is None                    # one distance: no spread to judge
    assert standard_error(b, b) == 0                                         # no spread: never warned (no ratio)


def test_nerf_scenes_seen_from_their_own_cameras_have_no_values_at_the_shared_ones():
    """The embedded cars' held-out views are `coordinates()`' cameras, so the memorisation search may read
    them; a scene with other held-out cameras (as SRN's) is searched through Stage-1's decodes instead."""
    from pipeline.modalities.nerf.modality import NerfModality

    m = NerfModality(resolution=8, views=2)
    scenes, _ = m.generate(3, seed=0)
    assert m.taken_at_coordinates(scenes) is True
    moved = scenes.copy()
    moved["pose"][1, -1, :3, 3] += np.float32(0.05)
    assert m.taken_at_coordinates(moved) is False


def test_measurement_streams_are_their_own_and_not_a_small_seeds():
    """A stream is fixed by (seed, purpose), differs between purposes and seeds, and is not the stream of a
    generator seeded with a small integer (hcdm.seed 1 trains from Generator(1); control's gen:S): torch's
    CPU generator keeps a seed's low 32 bits, and those are far from any small seed."""
    from pipeline.generation import stream

    purposes = ("std_table", "part_std", "std_table_anchored")
    low = {(s, p): stream(s, p).initial_seed() & 0xffffffff for s in range(3) for p in purposes}
    assert low[0, "std_table"] == 3531610827                                   # the same on every machine
    assert len(set(low.values())) == len(low) and min(low.values()) > 2 ** 20
    a, b = stream(0, "std_table"), torch.Generator().manual_seed(low[0, "std_table"])
    assert torch.equal(torch.randn(8, generator=a), torch.randn(8, generator=b))


def test_the_memorisation_search_over_blocks_of_train_rows_gives_the_search_over_all_at_once(scored, monkeypatch):
    """The train side of the search is made a block at a time (ShapeNet's 35019 train shapes are 37 GB as
    float): in blocks of 5 train instances the three memorisation distances and the retrieval figure are those
    of one block, for stored instances and for Stage-1's decodes (in whole batches of 5)."""
    from pipeline import metrics
    from pipeline.modalities.image.modality import ImageModality

    keys = ("memorisation_distance", "memorisation_distance_test_split", "memorisation_distance_test_reconstructed")
    figure = scored / "metrics/figures/retrieval.png"
    for decoded in (False, True):
        if decoded:
            monkeypatch.setattr(ImageModality, "taken_at_coordinates", lambda self, signals: False)
        whole = evaluate_with(scored, monkeypatch, fid_samples=8, kid_subset_size=8, batch_size=5)
        picture = figure.read_bytes()
        dims = whole["memorisation"]["values_per_instance"]
        assert len(np.load(scored / "data/latents/latents.npz")["train"]) > 10          # several blocks
        monkeypatch.setattr(metrics, "BLOCK_BYTES", 8 * dims * 5)
        blocks = evaluate_with(scored, monkeypatch, fid_samples=8, kid_subset_size=8, batch_size=5)
        monkeypatch.setattr(metrics, "BLOCK_BYTES", 2 ** 30)
        assert [blocks[k] for k in keys] == [whole[k] for k in keys]
        assert (whole["memorisation_distance_test_split"] is None) == decoded
        assert figure.read_bytes() == picture


def test_memorisation_on_data_not_taken_at_the_samples_coordinates_searches_stage1s_decodes(
        scored, monkeypatch):
    """Where the stored instances were not taken at `coordinates()` (SRN scenes), the train side of the search
    is Stage-1's decode of each train latent there: the test reconstructions then sit at the distances the
    decodes of their own latents give, and test_split (real data elsewhere) is null."""
    from pipeline.modalities.image.modality import ImageModality

    monkeypatch.setattr(ImageModality, "taken_at_coordinates", lambda self, signals: False)
    detail = evaluate_with(scored, monkeypatch, fid_samples=8, kid_subset_size=8, batch_size=256)
    assert detail["memorisation_distance_test_split"] is None
    assert detail["memorisation"]["reference"].startswith("Stage-1's decodes of the train latents")
    assert detail["memorisation_distance"] > 0 and detail["memorisation_distance_test_reconstructed"] > 0
    monkeypatch.undo()
    stored = evaluate_with(scored, monkeypatch, fid_samples=8, kid_subset_size=8, batch_size=256)
    assert stored["memorisation"]["reference"] == "the stored train instances"
    assert stored["memorisation_distance_test_split"] is not None
    assert stored["memorisation_distance"] != detail["memorisation_distance"]


def test_the_real_set_a_perfect_generator_is_scored_by_is_a_seeded_draw_of_the_train_split_not_its_first_files():
    """Shapes, motion and radiance fields score as many real train instances as the reference holds. IM-NET's
    train split runs category by category (AMASS's by sub-dataset): its first files would be one category."""
    from pipeline.modalities.scoring import train_subset

    train = np.repeat(np.arange(4), 50)                          # 4 categories of 50, in file order
    drawn = train_subset(train, 40, seed=0)
    assert len(drawn) == 40 and set(drawn.tolist()) == {0, 1, 2, 3}
    assert np.array_equal(drawn, np.sort(drawn))                 # kept in stored order
    assert np.array_equal(train_subset(np.arange(200), 40, 0), train_subset(np.arange(200), 40, 0))
    assert not np.array_equal(train_subset(np.arange(200), 40, 0), train_subset(np.arange(200), 40, 1))
    assert len(set(train_subset(np.arange(200), 40, 0).tolist())) == 40     # without replacement
    assert train_subset(train, 200, 0) is train and train_subset(train, 500, 0) is train
