"""The whole pipeline, driven by DVC, in a temporary copy with a micro config."""
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, copy_of, micro_params
from pipeline.experiments import records

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not installed")


def sh(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, shell=True, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def leaves_of(d):
    """Every leaf of a nested JSON object."""
    for v in d.values():
        yield from leaves_of(v) if isinstance(v, dict) else [v]


def flat(d, prefix=""):
    """Dotted column names of nested metrics files, as `dvc exp show` lays them out."""
    out = []
    for k, v in d.items():
        out += flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def repro_in_new_repo(tmp_path, params: dict):
    """A fresh git + DVC repository with the package, dvc.yaml and `params`, after `dvc repro`."""
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(ROOT / "pipeline", work / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", work)
    shutil.copy(ROOT / ".gitignore", work)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git init -q && git config user.email t@t && git config user.name t && dvc init -q "
       "&& dvc config core.analytics false", work)
    sh("dvc repro", work)
    return work


@pytest.fixture(scope="module")
def image_repo(tmp_path_factory):
    """The micro image configuration after `dvc repro` in a fresh repository, once for this module."""
    return repro_in_new_repo(tmp_path_factory.mktemp("image"), micro_params())


def data_hashes(work) -> dict:
    """dvc.lock's hash of every output under data/ (metrics hold timings, so they differ between runs)."""
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs", [])
            if o["path"].startswith("data/")}


@pytest.mark.xdist_group("image_repo")    # one worker builds the module's repository once
def test_dvc_repro_then_binary_len_experiment(image_repo, tmp_path):
    work = copy_of(image_repo, tmp_path / "repo")

    # Same params, same bytes: Stage-1 trained again from scratch, the reference and the HCDM again, and
    # every data/ output keeps its hash, so a fresh clone's `dvc repro` leaves dvc.lock as it was and
    # `dvc checkout` finds the files in the cache (torch.save given a path named its zip's inner folder
    # after the random temporary file; reference.npz held the stage's seconds).
    before = data_hashes(work)
    assert {"data/fit_loe/loe.pt", "data/fit_loe/checkpoint.pt", "data/reference/reference.npz"} <= set(before)
    for checkpoint in ("data/fit_loe/checkpoint.pt", "data/hcdm/checkpoint.pt"):
        (work / checkpoint).unlink()                                 # so both train from step 0
    for stage in ("fit_loe", "reference", "train_hcdm"):
        sh(f"dvc repro -f -s {stage}", work)
    assert data_hashes(work) == before

    rec = json.loads((work / "metrics/reconstruction.json").read_text())
    gen = json.loads((work / "metrics/detail/generation.json").read_text())
    assert rec["test"]["instances"] == 8 and rec["test"]["psnr"] > 10
    # The metrics files hold only numbers (what `dvc exp show` lists); text, lists and tables are in metrics/detail/.
    headline = json.loads((work / "metrics/generation.json").read_text())
    assert headline["fid"] == gen["fid"] and "fid_protocol" not in headline and "binary_len" not in headline
    assert headline["fid_references"]["test_split_real"] == {
        k: gen["fid_references"]["test_split_real"][k] for k in ("fid", "kid", "precision", "recall")}
    # The floor reference's features come from the reference stage: those of the real test images.
    from pipeline import datasets
    from pipeline.modalities.image import fid

    data = datasets.load(work / "data/prepared/dataset.npz")
    m = data.modality
    kept = np.load(work / "data/reference/reference.npz")["test_features"]
    assert kept.shape == (8, 2048) and gen["fid_references"]["test_split_real"]["images"] == 8
    assert np.allclose(kept, fid.inception_features(m.to_pictures(m.targets(data.test))), rtol=1e-5, atol=1e-6)
    for f in (work / "metrics").glob("*.json"):
        leaves = list(leaves_of(json.loads(f.read_text())))
        assert leaves and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in leaves), f
        assert (work / "metrics/detail" / f.name).exists(), f
    exp_show = json.loads(sh("dvc exp show --json", work))
    columns = {k for rec, _, _ in records(exp_show, []) for k in flat(rec["data"]["metrics"])}
    assert len(columns) <= 60, len(columns)
    assert gen["binary_len"] == 4 and set(gen["std_table"]) == {"std_1", "std_12", "std_23"}
    assert set(gen["std_table_relative"]) == set(gen["std_table"]) and len(gen["free_part_std"]) == 3
    assert 0 < gen["memorisation_distance"] < gen["memorisation"]["max_possible"]
    assert 0 < gen["memorisation_distance_test_reconstructed"] < gen["memorisation"]["max_possible"]
    floor = gen["std_table_memorised"]
    assert set(floor) == {"std_12", "std_23"} and all(0 <= v <= 1.5 for v in floor.values())
    assert gen["code_occupancy"]["train_instances"] == 48 and set(gen["code_occupancy"]["distinct_codes"]) == set(floor)
    views = json.loads((work / "metrics/detail/analyze.json").read_text())
    assert [v["layers"] for v in views["conditionals"]] == [[1, 2], [2, 3]] and len(views["code_clusters"]) == 2
    assert gen["fid"] > 0 and gen["fid_protocol"]["generated"] == 8 and 0 <= gen["precision"] <= 1
    assert gen["fid_protocol"]["name"] == "FID@8" and gen["fid_protocol"]["paper_protocol"] is False
    anchored = gen["std_table_data_anchored"]
    assert anchored["standardised"]["std_1"] == pytest.approx(1.0, abs=1e-3)   # the data's own, standardised
    assert set(gen["std_table_raw"]) == set(anchored["raw"]) == set(gen["std_table"])
    detail = json.loads((work / "metrics/detail/hierarchy.json").read_text())
    hierarchy, counted = detail["retained_variance"], detail["factors_in_mean"]
    assert list(hierarchy) == ["k=0", "k=1", "k=2"] and len(hierarchy["k=1"]) == 9
    assert set(detail["retained_variance_se"]["k=1"]) == set(hierarchy["k=1"])
    assert set(detail["on_decodes"]["scores"]) == set(hierarchy["k=1"]) and detail["on_decodes"]["test_reconstructions"] == 8
    mean = json.loads((work / "metrics/hierarchy.json").read_text()).get("mean_retained_variance")
    if counted:
        assert mean["k=1"] == pytest.approx(np.mean([hierarchy["k=1"][n] for n in counted]), abs=1e-4)
    else:   # a micro Stage-1's decodes: nothing readable, so no mean, and the warning says so
        assert mean is None and any("no factor is readable" in w for w in detail["warnings"])
    svcca = json.loads((work / "metrics/detail/svcca.json").read_text())
    assert len(svcca["matrix"]) == 3
    for png in ("data/prepared/preview.png", "data/samples/samples.png", "data/samples/control.png",
                "data/latents/reconstructions.png", "metrics/figures/svcca.png", "metrics/figures/hierarchy.png",
                "metrics/figures/retrieval.png", "metrics/analysis/tree.png"):
        assert (work / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    curve = (work / "metrics/curves/fit_loe.csv").read_text().splitlines()
    assert curve[0].startswith("step,loss,psnr") and len(curve) == 1 + 4

    # A DVC remote (a directory) and a git remote (bare), configured once, as in README "Share a run".
    sh(f"git init -q --bare {tmp_path / 'origin.git'} && dvc remote add -d store {tmp_path / 'dvc-store'} && "
       f"git remote add origin {tmp_path / 'origin.git'}", work)
    sh("git add -A && git commit -qm base", work)
    assert "data/logs" not in sh("git ls-files", work)           # logs are not results
    out = sh("dvc exp run -n bl3 -S binary_len=3", work)
    for stage in ("prepare", "fit_loe", "export_latents", "reference", "factor_predictor"):
        assert f"Stage '{stage}' didn't change" in out, out
    assert "Running stage 'train_hcdm'" in out
    changed = json.loads(sh("dvc params diff --json", work))["params.yaml"]
    assert (changed["binary_len"]["old"], changed["binary_len"]["new"]) == (4, 3)
    changed = json.loads(sh("dvc metrics diff --json", work))["metrics/generation.json"]
    # (at this micro size the EMA weights are still close to the init, so the scores move in the 4th digit only)
    assert any(k.startswith("std_table") for k in changed)
    bl3 = (work / "metrics/generation.json").read_text()
    # the diff's new side is the experiment's file (dvc metrics diff lists only what changed)
    table = {k.split(".", 1)[1]: v["new"] for k, v in changed.items() if k.startswith("std_table.")}
    assert table and all(json.loads(bl3)["std_table"][k] == v for k, v in table.items())

    # The ablation collector turns the experiments into the tables.
    sh("dvc exp run -S hcdm.variant=flat", work)
    out = sh(f"{sys.executable} -m pipeline.ablation", work)
    table = json.loads((work / "metrics/ablation.json").read_text())
    assert [r["params.binary_len"] for r in table["table_2"]] == ["3", "4"]
    assert {(r["params.hcdm.variant"], r["params.binary_len"], r["n"]) for r in table["variants"]} == {
        ("flat", "3", 1), ("hierarchical", "3", 1), ("hierarchical", "4", 1)}
    assert "## Binary condition length" in out and (work / "metrics/ablation.md").exists()

    # Table 1's baselines run through the same stages; control refuses what needs per-layer latents.
    for variant in ("mnif", "functa"):
        sh(f"dvc exp run -n {variant} -S loe.variant={variant} -S hcdm.variant=flat", work)
        loe_metrics = json.loads((work / "metrics/fit_loe.json").read_text())
        assert loe_metrics["parameters"] > 0 and (work / "metrics/analysis/retrieve.png").exists()
    r = subprocess.run([sys.executable, "-m", "pipeline.control", "compose"], cwd=work, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: compose: this run's Stage-1 is loe.variant "
                                                             "functa, which has no per-layer latents"), r.stderr
    assert "wrote" in sh(f"{sys.executable} -m pipeline.control interpolate --out i.png", work)
    out = sh(f"{sys.executable} -m pipeline.table1", work)
    methods = {(r["params.loe.variant"], r["params.hcdm.variant"])
               for r in json.loads((work / "metrics/table1.json").read_text())["table_1"]}
    assert {("chinr", "hierarchical"), ("chinr", "flat"), ("mnif", "flat"), ("functa", "flat")} <= methods
    assert "## The paper's Table 1" in out

    # Share the run: push the baseline and an experiment, then a fresh clone elsewhere.
    sh("git reset -q --hard && dvc checkout -q", work)          # back to the committed baseline
    sh("git push -q origin HEAD && dvc push && dvc exp push origin bl3", work)
    clone = tmp_path / "clone"
    sh(f"git clone -q {tmp_path / 'origin.git'} {clone} && cd {clone} && dvc pull", tmp_path)
    assert "Data and pipelines are up to date." in sh("dvc status", clone)
    out = sh("dvc repro", clone)
    assert "Running stage" not in out and "Data and pipelines are up to date." in out, out
    assert (clone / "data/hcdm/hcdm.pt").read_bytes() == (work / "data/hcdm/hcdm.pt").read_bytes()
    # The experiment travels too: pulled into the clone, applied, its outputs fetched, its metrics the same.
    sh("dvc exp pull origin bl3 && dvc exp apply bl3 && dvc pull", clone)
    assert (clone / "metrics/generation.json").read_text() == bl3


def shape_micro_params() -> dict:
    p = micro_params()
    p["dataset"].update(modality="shape", resolution=16, synthetic={"train": 40, "test": 6})
    p["fit_loe"].update(points_per_step=256)
    p["export_latents"].update(points=512, batch_size=16)
    p["evaluate"].update(surface_points=256)
    return p


def test_dvc_repro_on_shapes(tmp_path):
    """The same dvc.yaml runs the 3-D modality end to end."""
    work = repro_in_new_repo(tmp_path, shape_micro_params())

    prep = json.loads((work / "metrics/detail/prepare.json").read_text())
    assert prep["modality"] == "shape" and prep["stored_bytes_per_instance"] == 16 ** 3 // 8
    rec = json.loads((work / "metrics/reconstruction.json").read_text())
    assert rec["test"]["instances"] == 6 and 0.5 < rec["test"]["accuracy"] <= 1
    assert {"iou", "accuracy_near_surface", "psnr"} <= set(rec["test"]) and rec["test"]["psnr"] > 3
    gen = json.loads((work / "metrics/detail/generation.json").read_text())
    assert 0 < gen["coverage"] <= 1 and gen["mmd"] > 0 and 0 <= gen["one_nna"] <= 1
    assert gen["shape_protocol"]["points_per_shape"] == 256 and gen["shape_protocol"]["generated"] == 6
    assert "unit cube" in gen["shape_protocol"]["units"]
    assert set(gen["shape_references"]) == {"train_split_real", "test_split_reconstructed"}
    hierarchy = json.loads((work / "metrics/detail/hierarchy.json").read_text())["retained_variance"]
    assert list(hierarchy) == ["k=0", "k=1", "k=2"] and "category" in hierarchy["k=1"]
    meshes = sorted((work / "data/samples/files").glob("*.ply"))
    assert len(meshes) == 8 and all(m.read_bytes().startswith(b"ply") for m in meshes)
    for png in ("data/prepared/preview.png", "data/samples/samples.png", "data/samples/control.png",
                "metrics/figures/retrieval.png", "metrics/analysis/tree.png"):
        assert (work / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png

    # Control from a user's own shape file; an image source is refused with one line.
    import trimesh

    trimesh.creation.icosphere(radius=1.0).export(tmp_path / "ball.ply")
    out = sh(f"{sys.executable} -m pipeline.control resample --source shape:{tmp_path / 'ball.ply'} -k 1 -n 2 "
             "--out ball.png", work)
    assert (work / "ball.png").read_bytes()[:4] == b"\x89PNG" and "wrote ball.png" in out
    r = subprocess.run([sys.executable, "-m", "pipeline.control", "tree", "--source", "image:x.png"], cwd=work,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "error: source 'image:x.png': this run models shapes; use shape:PATH"

    # The ablations run on shapes too; the collector shows the shape metrics.
    sh("git add -A && git commit -qm base", work)
    sh("dvc exp run -S hcdm.variant=unconditional", work)
    out = sh(f"{sys.executable} -m pipeline.ablation", work)
    rows = json.loads((work / "metrics/ablation.json").read_text())["variants"]
    assert {r["params.hcdm.variant"] for r in rows} == {"hierarchical", "unconditional"}
    assert all(r["generation.coverage mean"] is not None and "generation.fid mean" not in r for r in rows)
    assert "| coverage | mmd | one_nna |" in out and "fid" not in out.split("## Prior variants")[1]


def motion_micro_params() -> dict:
    p = micro_params()
    p["dataset"].update(modality="motion", resolution=32, synthetic={"train": 40, "test": 6})
    p["loe"].update(w0=5.0)
    return p


def test_dvc_repro_on_motion(tmp_path):
    """The same dvc.yaml runs the motion modality end to end; control decodes a clip at twice the frames."""
    work = repro_in_new_repo(tmp_path, motion_micro_params())

    prep = json.loads((work / "metrics/detail/prepare.json").read_text())
    assert prep["modality"] == "motion" and prep["stored_bytes_per_instance"] == 32 * 165 * 4
    rec = json.loads((work / "metrics/reconstruction.json").read_text())["test"]
    assert rec["instances"] == 6 and {"mse", "psnr", "rotation_error", "body_rotation_error", "position_error",
                                      "body_position_error"} <= set(rec)
    assert rec["psnr"] == pytest.approx(10 * math.log10(4 / rec["mse"]), abs=0.5)   # rounded mse
    gen = json.loads((work / "metrics/detail/generation.json").read_text())
    assert 0 < gen["coverage"] <= 1 and gen["mmd"] > 0 and 0 <= gen["one_nna"] <= 1
    assert gen["motion_protocol"]["generated"] == 6 and "body joints" in gen["motion_protocol"]["distance"]
    assert gen["fd_factor_features"] > 0 and "not Inception" in gen["motion_protocol"]["fd_factor_features"]
    assert all(r["fd_factor_features"] >= 0 for r in gen["motion_references"].values())
    hierarchy = json.loads((work / "metrics/detail/hierarchy.json").read_text())["retained_variance"]
    assert list(hierarchy) == ["k=0", "k=1", "k=2"] and "action" in hierarchy["k=1"]
    gifs = sorted((work / "data/samples/files").glob("*.gif"))
    assert len(gifs) == 8 and all(g.read_bytes()[:6] == b"GIF89a" for g in gifs)
    for png in ("data/prepared/preview.png", "data/samples/samples.png", "metrics/analysis/tree.png"):
        assert (work / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # Temporal upsampling: 64 frames for a 32-frame clip, as a GIF of the clip's duration (25 fps, 40 ms frames).
    out = sh(f"{sys.executable} -m pipeline.control render --source test:0 --scale 2 --out long.png --file long.gif",
             work)
    assert "wrote long.png" in out and (work / "long.png").read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    with Image.open(work / "long.gif") as gif:
        assert gif.n_frames == round(64 * 25 / 60) and gif.info["duration"] == 40


def nerf_micro_params() -> dict:
    p = micro_params()
    p["dataset"].update(modality="nerf", resolution=8, views=4, synthetic={"train": 24, "test": 6})
    p["fit_loe"].update(method="autodecode", points_per_step=64, batch_size=4, lr=0.001, latent_lr=0.01)
    p["export_latents"].update(autodecode_steps=3, points=64, batch_size=8)
    return p


def test_dvc_repro_on_nerf(tmp_path):
    """The same dvc.yaml runs the radiance-field modality, auto-decoded, end to end; control renders a
    turntable from new viewpoints."""
    work = repro_in_new_repo(tmp_path, nerf_micro_params())

    fit = json.loads((work / "metrics/detail/fit_loe.json").read_text())     # text stays in the detail file
    assert fit["method"] == "autodecode" and "meta_sgd_rate_mean" not in fit
    rec = json.loads((work / "metrics/reconstruction.json").read_text())
    assert rec["test"]["instances"] == 6 and {"psnr", "ssim"} <= set(rec["test"]) and rec["fit_steps"] == 3
    assert "held-out views" in json.loads((work / "metrics/detail/reconstruction.json").read_text())["psnr_definition"]
    gen = json.loads((work / "metrics/detail/generation.json").read_text())
    assert gen["fid"] > 0 and gen["fid_protocol"]["generated_scenes"] == 8
    assert gen["fid_references"]["train_split_real"]["images"] == 6 * 4          # 6 scenes x 4 held-out views
    assert "body_length" in json.loads((work / "metrics/detail/hierarchy.json").read_text())["retained_variance"]["k=1"]
    from PIL import Image

    gifs = sorted((work / "data/samples/files").glob("*.gif"))
    assert len(gifs) == 8
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == 12 and gif.size == (32, 32)                      # a 12-view turntable, zoomed 4x
    out = sh(f"{sys.executable} -m pipeline.control render --source test:0 --views 6 --out spin.png --file spin.gif",
             work)
    assert "wrote spin.png" in out
    with Image.open(work / "spin.png") as png, Image.open(work / "spin.gif") as gif:
        assert gif.n_frames == 6 and png.size[0] == 6 * png.size[1]              # six views side by side
    # A scene of the user's own (SRN layout), fitted with the frozen weights as export_latents fits a test scene.
    from test_nerf import write_scene

    write_scene(work / "my_scene", views=8)
    out = sh(f"{sys.executable} -m pipeline.control render --source nerf:my_scene --scale 1 --out mine.png "
             "--npz mine.npz", work)
    assert "wrote mine.png" in out and np.load(work / "mine.npz")["latent"].shape == (3, 8)
    with pytest.raises(AssertionError, match="my_scene.png: no such nerf folder"):
        sh(f"{sys.executable} -m pipeline.control render --source nerf:my_scene.png", work)


@pytest.mark.xdist_group("image_repo")
def test_a_bad_or_unknown_key_stops_an_experiment_before_any_stage_clears_its_outputs(image_repo, tmp_path):
    """A top-level typo (DVC's own hint for an unknown `-S` key is `+key=value`) or a bad `threads`
    changes no stage's params: before the check_params stage it was recorded as an experiment. A bad
    value of a key prepare reads stops at check_params too, before DVC clears prepare's outputs, and so
    does a run of one target (prepare depends on check_params' output)."""
    work = copy_of(image_repo, tmp_path / "repo")
    sh("git add -A && git commit -qm base", work)
    dataset = work / "data/prepared/dataset.npz"
    for command, line in ((["exp", "run", "-S", "+binary_lenght=15"], "error: binary_lenght: unknown key (known: "),
                          (["exp", "run", "-S", "threads=-1"], "error: threads: must be null or in [1, 1024], got -1"),
                          (["exp", "run", "-S", "dataset.synthetic.test=1"],
                           "error: dataset.synthetic.test: must be >= 2, got 1"),
                          (["repro", "train_hcdm"], "error: binary_lenght: unknown key (known: ")):
        if command[0] == "repro":
            with open(work / "params.yaml", "a") as f:
                f.write("binary_lenght: 15\n")
        r = subprocess.run(["dvc", *command], cwd=work, capture_output=True, text=True, timeout=300)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and line in out, out[-3000:]
        assert "Running stage 'check_params'" in out and "Running stage 'prepare'" not in out, out[-3000:]
        assert dataset.is_file()
        sh("git checkout -q -- params.yaml dvc.lock metrics && dvc checkout -q", work)


@pytest.mark.xdist_group("image_repo")    # one worker builds the module's repository once
def test_an_interrupted_experiment_resumes_when_run_again(image_repo, tmp_path):
    """Ctrl-C during `dvc exp run`, then the same command: Stage-2 resumes instead of starting over
    (before it does, dvc checks the baseline's checkpoint out over the experiment's own)."""
    import os
    import signal
    import time

    import torch

    work = copy_of(image_repo, tmp_path / "repo")
    sh("git add -A && git commit -qm base", work)
    spares = tmp_path / "spares"
    env = {**os.environ, "CHINR_CHECKPOINTS": str(spares)}
    cmd = ["dvc", "exp", "run", "-S", "hcdm.steps=1000", "-S", "hcdm.checkpoint_every=50"]
    p = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline, step = time.time() + 300, 0
    while step < 200 and time.time() < deadline and p.poll() is None:
        time.sleep(0.5)
        for f in spares.glob("hcdm-checkpoint-*.pt"):
            try:
                step = torch.load(f, weights_only=True)["step"]
            except Exception:   # being replaced right now
                pass
    assert step >= 200 and p.poll() is None, "the experiment did not reach step 200 to be interrupted"
    os.killpg(p.pid, signal.SIGINT)                                    # what Ctrl-C in a terminal sends
    p.wait(timeout=120)
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "[checkpoint] resuming from" in out and "hcdm-checkpoint-" in out, out[-3000:]
    assert not list(spares.glob("hcdm-checkpoint-*.pt"))           # finished: the spare is gone
