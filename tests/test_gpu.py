"""On a GPU (`device: cuda`): the micro pipeline of every modality runs through `dvc repro`, and the tables
computed on the model's device equal the CPU's. Skipped without CUDA; `bash benchmarks/gpu_session.sh tests`
runs them on a lent GPU."""
import shutil

import pytest
import torch

from conftest import micro_params
from test_pipeline import motion_micro_params, nerf_micro_params, repro_in_new_repo, shape_micro_params

from pipeline.generation import memorised_std_table
from pipeline.hcdm import HCDM
from pipeline.latent_views import code_clusters

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not installed")]


@pytest.mark.parametrize("params", [micro_params, shape_micro_params, motion_micro_params, nerf_micro_params])
def test_every_stage_of_each_modality_runs_on_a_gpu(tmp_path, params):
    p = params()
    p["device"] = "cuda"
    work = repro_in_new_repo(tmp_path, p)
    assert (work / "metrics/analyze.json").exists() and (work / "metrics/hierarchy.json").exists()


def model_and_latents():
    g = torch.Generator().manual_seed(0)
    model = HCDM(layers=3, latent_dim=4, binary_len=3, hidden=32, blocks=2, timesteps=10)
    latents = torch.randn(64, 3, 4, generator=g)
    model.mean.copy_(latents.mean(0)), model.std.copy_(latents.std(0))
    return model, latents


def test_the_memorised_floor_on_a_gpu_is_the_cpus():
    model, latents = model_and_latents()
    cpu = memorised_std_table(model, latents)
    gpu = memorised_std_table(model.to("cuda"), latents)
    assert gpu["distinct_codes"] == cpu["distinct_codes"]
    for key, value in cpu["standardised"].items():
        assert gpu["standardised"][key] == pytest.approx(value, abs=1e-6)


def test_code_clusters_of_a_model_on_a_gpu_are_the_cpus():
    model, latents = model_and_latents()
    cpu = code_clusters(model, latents, torch.Generator().manual_seed(1), clusters=2, anchors=2, neighbours=5)
    gpu = code_clusters(model.to("cuda"), latents, torch.Generator().manual_seed(1), clusters=2, anchors=2,
                        neighbours=5)
    assert [v["measured"] for v in gpu] == [v["measured"] for v in cpu]


def test_shape_scores_on_a_gpu_are_the_k_d_trees():
    import numpy as np

    from pipeline.modalities.shape.metrics import generation_scores

    rng = np.random.default_rng(0)
    generated, reference = (rng.random((12, 256, 3)).astype(np.float32) for _ in range(2))
    cpu = generation_scores(generated, reference, progress=False)
    gpu = generation_scores(generated, reference, progress=False, device="cuda")
    assert gpu["coverage"] == cpu["coverage"] and gpu["one_nna"] == cpu["one_nna"]
    assert gpu["mmd"] == pytest.approx(cpu["mmd"], rel=1e-4)


def test_a_gpu_runs_checkpoint_keeps_the_cuda_stream_and_a_cpu_runs_never_does():
    """HCDM dropout on a GPU draws from the CUDA stream: a resume restores it; a CPU run's checkpoint bytes
    do not depend on whether CUDA happens to be initialised."""
    from pipeline.training import restore_rng, rng_state

    g = torch.Generator().manual_seed(0)
    torch.rand(1, device="cuda")                                     # CUDA initialised in this process
    assert "cuda" not in rng_state(g) and "cuda" in rng_state(g, cuda=True)
    saved = rng_state(g, cuda=True)
    first = torch.rand(4, device="cuda")
    restore_rng(g, saved, cuda=True)
    assert torch.equal(first, torch.rand(4, device="cuda"))
