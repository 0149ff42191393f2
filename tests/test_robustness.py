"""Nothing silent, nothing stuck: each numbered item of the robustness issue, probed as a user would.

1. NaN/inf never becomes a result   2. tiny splits are refused or adapted up front
3. odd data is read right or refused  4. one line, never a traceback
5. stuck checkpoints                  (6: tests/test_dvc_yaml.py; 7: tests/test_fuzz.py)
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import STAGE_ENV, copy_of, micro_params
from pipeline.modalities.image.modality import load_image
from pipeline import config, control, datasets, io
from pipeline.modalities import scoring
from pipeline.modalities.shape import voxels
from pipeline.errors import DataError, NonFiniteError
from pipeline.stages.analyze import figures
from pipeline.training import Checkpointer, run_settings

ENV = STAGE_ENV


def stage(name, cwd, check=False, **kw):
    r = subprocess.run([sys.executable, "-m", f"pipeline.stages.{name}"], cwd=cwd, capture_output=True, text=True,
                       **{"env": ENV, **kw})
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def last_line(r) -> str:
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.stderr.strip().splitlines()[-1]


def write_params(work: Path, params: dict) -> None:
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def trained(micro_trained, tmp_path_factory):
    """A micro run through train_hcdm, copied fresh for each test that spoils it."""
    return copy_of(micro_trained, tmp_path_factory.mktemp("trained") / "run")


@pytest.fixture
def run_copy(trained, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(trained, work)
    return work


# --- 1. NaN and inf -----------------------------------------------------------

def test_metrics_json_refuses_nan_and_names_the_key(tmp_path):
    path = tmp_path / "m.json"
    with pytest.raises(NonFiniteError, match=r"m\.json: 'test\.psnr\[1\]' is NaN or inf; nothing was written"):
        io.save_json(path, {"steps": 3, "test": {"psnr": [20.0, float("nan")]}})
    assert not path.exists() and not list(tmp_path.iterdir())
    io.save_json(path, {"x": 1.5, "inf_as_text": "inf"})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c)) == {"x": 1.5, "inf_as_text": "inf"}


def test_array_and_model_writers_refuse_non_finite_values(tmp_path):
    good = np.ones((2, 3), np.float32)
    with pytest.raises(NonFiniteError, match=r"l\.npz: 'train' holds 1 of 6 values that are NaN or inf"):
        io.save_npz(tmp_path / "l.npz", test=good, train=np.array([[1, 2, np.inf], [0, 0, 0]], np.float32))
    with pytest.raises(NonFiniteError, match=r"m\.pt: 'model\.layers\.0\.w' holds 2 of 4"):
        io.save_torch(tmp_path / "m.pt", {"model": {"layers.0.w": torch.tensor([1.0, float("nan"), -float("inf"), 0])},
                                          "step": 3})
    assert not list(tmp_path.iterdir())
    io.save_npz(tmp_path / "ok.npz", a=good, ids=np.arange(3), names=np.array(["x"]))
    assert io.load_npz(tmp_path / "ok.npz")["a"].sum() == 6
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, a=np.array([np.nan]))
    with pytest.raises(NonFiniteError, match=r"bad\.npz: 'a' holds 1 of 1 .*refusing to use it"):
        io.load_npz(tmp_path / "bad.npz")
    with open(tmp_path / "bare.npz", "wb") as f:     # np.save, renamed: np.load gives the array, not an archive
        np.save(f, good)
    with pytest.raises(DataError, match=r"bare\.npz: a single \.npy array, not an \.npz archive"):
        io.load_npz(tmp_path / "bare.npz")
    # A structured array (a NeRF scene: views, poses, focal) is checked field by field.
    scenes = np.zeros(3, dtype=[("rgb", np.uint8, (2, 2, 3)), ("pose", np.float32, (4, 4)), ("focal", np.float32)])
    scenes["focal"][1] = np.nan
    with pytest.raises(NonFiniteError, match=r"d\.npz: 'train\.focal' holds 1 of 3 values that are NaN or inf"):
        io.save_npz(tmp_path / "d.npz", train=scenes)


def test_nan_latents_stop_train_hcdm_in_one_line_naming_stage_and_file(run_copy):
    path = run_copy / "data/latents/latents.npz"
    bank = dict(np.load(path))
    bank["train"][3, 1, 2] = np.nan
    with open(path, "wb") as f:
        np.savez(f, **bank)
    r = stage("train_hcdm", run_copy)
    assert r.returncode == 2
    assert last_line(r).startswith("error: train_hcdm: data/latents/latents.npz: 'train' holds 1 of ")
    assert not (run_copy / "data/hcdm/hcdm.pt").exists() and not (run_copy / "metrics/train_hcdm.json").exists()


def test_nan_weights_stop_every_stage_that_reads_them(run_copy):
    path = run_copy / "data/fit_loe/loe.pt"
    state = torch.load(path, weights_only=True)
    next(iter(state["model"].values())).view(-1)[0] = float("inf")
    torch.save(state, path)
    r = stage("export_latents", run_copy)
    assert r.returncode == 2 and last_line(r).startswith("error: export_latents: data/fit_loe/loe.pt: 'model.")
    # the stage's older outputs are gone too: nothing looks current after a failure
    assert not (run_copy / "data/latents/latents.npz").exists()
    assert not (run_copy / "metrics/reconstruction.json").exists()
    r = stage("sample", run_copy)
    assert r.returncode == 2 and "data/fit_loe/loe.pt" in last_line(r)
    assert not (run_copy / "data/samples/samples.npz").exists()


def test_a_huge_hcdm_lr_is_stopped_not_reported(run_copy):
    params = micro_params()
    params["hcdm"]["lr"] = 1000.0
    write_params(run_copy, params)
    r = stage("train_hcdm", run_copy)
    assert r.returncode == 2 and last_line(r).startswith("error: train_hcdm diverged at step ")
    assert "hcdm.lr" in last_line(r) and not (run_copy / "data/hcdm/hcdm.pt").exists()


def test_unreadable_artifacts_are_one_line_naming_the_file(tmp_path):
    import zipfile

    good = tmp_path / "good.npz"
    io.save_npz(good, a=np.ones(3))
    for name, data in (("empty.npz", b""), ("garbage.npz", b"not a zip at all" * 10),
                       ("truncated.npz", good.read_bytes()[:40])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=rf"{name}: cannot read \(\w+.*rerun the stage that wrote it"):
            io.load_npz(tmp_path / name)
    with pytest.raises(DataError, match=r"m\.pt: cannot read"):
        (tmp_path / "m.pt").write_bytes(b"garbage")
        io.load_torch(tmp_path / "m.pt")
    with pytest.raises(NonFiniteError, match=r"'x' holds 1 of 1"):       # scalars too
        io.save_npz(tmp_path / "s.npz", x=np.float32("nan"))
    with pytest.raises(NonFiniteError):
        io.save_npz(tmp_path / "s.npz", x=float("inf"))
    assert zipfile.is_zipfile(good)


def test_every_metrics_file_of_a_run_is_strict_json(trained):
    files = sorted((trained / "metrics").glob("**/*.json"))
    assert len(files) == 10                                    # prepare, fit_loe, reconstruction, svcca, train_hcdm, and detail
    for f in files:
        json.loads(f.read_text(), parse_constant=lambda c: pytest.fail(f"{f}: {c}"))


# --- 2. small splits ----------------------------------------------------------

def write_faces(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")


def folder_params(path: Path, **folder) -> dict:
    params = micro_params()
    params["dataset"].update(source="folder", path=str(path), folder=folder)
    return params


def test_pictures_enlarged_or_cropped_are_said_and_their_native_sizes_recorded(tmp_path):
    """20 x 20 faces and a 25 x 25 grey one read at 32 (enlarged: blurred targets) and a 300 x 128 picture (its
    centre square kept): a warning each from prepare, and the native sizes and modes in its detail file; a phone's
    portrait JPEG (stored 300 x 128, EXIF Orientation 6) counts upright, 128 x 300."""
    folder = tmp_path / "imgs"
    write_faces(folder, 4)                                             # 20 x 20 RGB
    Image.fromarray(np.full((25, 25), 90, np.uint8)).save(folder / "grey.png")
    Image.fromarray(np.full((128, 300, 3), 90, np.uint8)).save(folder / "wide.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((128, 300, 3), 90, np.uint8)).save(folder / "phone.jpg", exif=exif)
    write_params(tmp_path, folder_params(folder))
    r = stage("prepare", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "smaller than dataset.resolution" not in r.stderr                # the micro run reads them at 16
    detail = json.loads((tmp_path / "metrics/detail/prepare.json").read_text())
    assert detail["native"] == {"native_size": {"smallest": [20, 20], "median": [20, 20], "largest": [300, 128]},
                                "modes": {"L": 1, "RGB": 6}}
    assert ("warning: 2 of 7 picture files are longer than 1.25:1 (longest 128x300): only their centre square is kept"
            in r.stderr)
    params = folder_params(folder)
    params["dataset"]["resolution"] = 32
    write_params(tmp_path, params)
    r = stage("prepare", tmp_path)
    assert r.returncode == 0, r.stderr
    assert ("warning: 5 of 7 picture files are smaller than dataset.resolution 32 on their short side (shortest "
            "side: 20x20): they are enlarged, and their targets blurred") in r.stderr


def test_a_folder_too_small_to_split_is_refused_before_training(tmp_path):
    write_faces(tmp_path / "imgs", 3)
    write_params(tmp_path, folder_params(tmp_path / "imgs"))
    r = stage("prepare", tmp_path)
    assert r.returncode == 2 and not (tmp_path / "data/prepared/dataset.npz").exists()
    assert last_line(r) == (f"error: {tmp_path / 'imgs'}: found 3 files with suffixes ('.png', '.jpg', "
                            "'.jpeg'); need at least 4 (2 train, 2 test)")
    write_faces(tmp_path / "imgs", 5)
    cfg = config.from_dict(folder_params(tmp_path / "imgs", train_count=4))
    with pytest.raises(DataError, match=r"5 instances split into 4 train / 1 test; each split needs at least 2"):
        datasets.prepare(cfg)
    data = datasets.prepare(config.from_dict(folder_params(tmp_path / "imgs", train_fraction=0.95)))
    assert (len(data.train), len(data.test)) == (3, 2)       # the ratio keeps two on each side
    with pytest.raises(config.ConfigError, match=r"^dataset\.synthetic\.test: must be >= 2, got 1$"):
        config.from_dict({"dataset": {"synthetic": {"test": 1}}})


@pytest.mark.parametrize("modality, source", [("image", "folder"), ("shape", "imnet"), ("motion", "amass"),
                                              ("nerf", "srn")])
def test_a_dataset_path_that_is_missing_or_a_file_is_one_line_saying_which(tmp_path, modality, source):
    (tmp_path / "a_file").write_text("x")
    for path, what in ((tmp_path / "missing", "does not exist"), (tmp_path / "a_file", "is a file, not a folder")):
        cfg = config.from_dict({"dataset": {"modality": modality, "source": source, "path": str(path)}})
        with pytest.raises(DataError, match=f"^{path}: dataset.path {what}$"):
            datasets.prepare(cfg)


def test_a_folder_named_while_the_source_is_synthetic_is_said_not_to_be_read(tmp_path):
    params = micro_params()
    params["dataset"]["path"] = str(tmp_path / "faces")     # without dataset.source=folder
    write_params(tmp_path, params)
    r = stage("prepare", tmp_path, check=True)
    line = (f"dataset.path ({tmp_path / 'faces'}) is not read: dataset.source is 'synthetic', the embedded data; "
            "set dataset.source (folder) to read it, or dataset.path null")
    assert f"warning: {line}" in r.stderr
    assert line in json.loads((tmp_path / "metrics/detail/prepare.json").read_text())["warnings"]


def test_check_params_stops_on_a_key_no_other_stage_reads(tmp_path):
    for key, value, line in (("binary_lenght", 15, "error: binary_lenght: unknown key (known: binary_len, "),
                             ("threads", -1, "error: threads: must be null or in [1, 1024], got -1")):
        write_params(tmp_path, {**micro_params(), key: value})
        r = stage("check_params", tmp_path)
        assert r.returncode == 2 and last_line(r).startswith(line), r.stderr[-2000:]
    write_params(tmp_path, micro_params())
    assert stage("check_params", tmp_path, check=True).stdout.strip() == "params.yaml: every key valid"


def test_precision_recall_on_two_member_sets_uses_the_other_member():
    real = np.array([[0.0], [1.0]])
    fake = np.array([[0.5], [3.0]])
    # real balls: radius 1 around 0 and 1 -> fake 0.5 inside, 3 outside; fake balls: radius 2.5 -> both reals inside
    assert scoring.precision_recall(real, fake, k=3) == (0.5, 1.0)
    assert scoring.pr_k_used(3, 2) == 1 and scoring.pr_k_used(3, 500) == 3
    with pytest.raises(ValueError, match="two members per set"):
        scoring.precision_recall(real[:1], fake)


def test_analyze_picks_test_instances_that_exist():
    for n in (2, 3, 6, 200):
        used = [int(a.split(":")[1]) for args in figures(n).values() for a in args if a.startswith("test:")]
        assert used and max(used) < n
    assert figures(200)["retrieve"][:2] == ["--source", "test:5"]


def test_analyze_resamples_at_a_depth_the_run_has():
    """Two layers (loe.layers' least): -k 1, not a -k 2 that control refuses, which failed the stage."""
    for layers in (2, 3, 5):
        assert figures(10, layers=layers)["resample"][2:4] == ["-k", str(min(2, layers - 1))]   # control: k < L


def test_four_images_run_through_evaluate_and_analyze(tmp_path):
    write_faces(tmp_path / "imgs", 4)
    write_params(tmp_path, folder_params(tmp_path / "imgs"))
    said = {name: stage(name, tmp_path, check=True).stderr
            for name in ("prepare", "fit_loe", "export_latents", "reference", "factor_predictor", "train_hcdm", "sample",
                         "evaluate", "hierarchy", "analyze")}
    # Weak figures are computed but flagged: on stderr and in the metrics file.
    headline = json.loads((tmp_path / "metrics/prepare.json").read_text())
    assert headline["warnings"] == 1   # the count; the text:
    prep = json.loads((tmp_path / "metrics/detail/prepare.json").read_text())
    # The process's peak memory differs run to run: in the detail file, not among what `dvc metrics diff` compares.
    assert prep["peak_rss_mib"] > 0 and "peak_rss_mib" not in headline and headline["train"] == prep["train"]
    assert prep["warnings"][0] == ("the test split has 2 instances (< 50): reconstruction figures and the FID, KID "
                                   "and precision/recall measured on it are noisy")
    # The split by name, in the detail file only (a user reads which of their files were tested).
    assert len(prep["test_files"]) == 2 and set(prep["test_files"]) < {p.name for p in (tmp_path / "imgs").iterdir()}
    assert prep["split"] == "random" and "test_files" not in headline and "split" not in headline and "warning: the test split has 2" in said["prepare"]
    assert "SVCCA on 2 train instances for 8-d latents" in json.loads((tmp_path / "metrics/detail/svcca.json").read_text())["warnings"][0]
    gen = json.loads((tmp_path / "metrics/detail/generation.json").read_text())
    flagged = " | ".join(gen["warnings"])
    assert "reference (train) set has 2 images for 2048-d" in flagged and "KID subsets cut from 8 to 2" in flagged
    assert "precision/recall k cut from 3 to 1" in flagged and flagged.count("warning") == 0
    assert said["evaluate"].count("warning: ") == len(gen["warnings"])
    # Two train faces cannot be generalised from: empty precision / recall are flagged.
    # Samples and test reconstructions both collapse onto the two faces: a tie within 1% is not read as
    # memorisation (the other warnings say the data is too small).
    memo, recon = gen["memorisation_distance"], gen["memorisation_distance_test_reconstructed"]
    assert abs(memo - recon) < 0.01 * recon and "generated samples sit nearer the training instances" not in flagged
    for name in ("precision", "recall"):
        assert (f"{name} is 0: " in flagged) == (gen[name] == 0)
    assert gen["fid_protocol"]["precision_recall_k_used"] == 1 and gen["fid_protocol"]["reference_size"] == 2
    assert gen["fid_references"]["test_split_real"]["pr_k_used"] == 1 and np.isfinite(gen["kid"])
    # A folder has no ground-truth factors: the two factor stages say so, in the metrics file and on stderr.
    for name in ("factor_predictor", "hierarchy"):
        assert json.loads((tmp_path / f"metrics/{name}.json").read_text()) == {"measured": 0, "warnings": 1}
        reason = "dataset source 'folder' has no ground-truth factors"
        assert json.loads((tmp_path / f"metrics/detail/{name}.json").read_text())["skipped"] == reason
        assert said[name].count("warning: ") == 1 and f"warning: {name} not measured: {reason}" in said[name]
    assert (tmp_path / "metrics/curves/factor_predictor.csv").read_text() == "step,loss,lr\n"   # dvc.yaml's out
    pictures = sorted(p.stem for p in (tmp_path / "metrics/analysis").glob("*.png"))
    assert pictures == ["code_clusters", "compose", "conditionals", "interpolate", "render", "resample", "retrieve",
                        "tree"]
    views = json.loads((tmp_path / "metrics/detail/analyze.json").read_text())
    layers = views["code_clusters"]   # 2 train images: each anchor's one neighbour is the other image
    assert [v["layer"] for v in layers] == [2, 3] and all(len(v["anchors"]) == 2 for v in layers)


# --- 3. odd data read right, or refused -----------------------------------------

def test_16_bit_grey_png_keeps_its_brightness(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 32), (32, 1)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    img = load_image(tmp_path / "g16.png", 32)
    expected = np.round(ramp / 257.0)
    assert img.shape == (32, 32, 3) and np.abs(img[..., 0].astype(float) - expected).max() <= 2
    assert (img[..., 0] == img[..., 2]).all() and 120 < img.mean() < 135       # not the old pure white (255)


def write_imnet_split(folder: Path, voxels_array: np.ndarray, name: str) -> None:
    import h5py

    with h5py.File(folder / name, "w") as f:
        f.create_dataset("voxels", data=voxels_array)


def imnet_grids(n: int, dtype=np.uint8) -> np.ndarray:
    g = np.zeros((n, 16, 16, 16, 1), dtype)
    g[:, 4:12, 4:12, 4:12] = 1
    return g


@pytest.mark.parametrize("spoil, message", [
    (lambda g: g.__setitem__((1, 0, 0, 0, 0), np.nan), r"'voxels' holds NaN or inf \(first in shape 1\)"),
    (lambda g: g.__setitem__((2, 0, 0, 0, 0), np.inf), r"'voxels' holds NaN or inf \(first in shape 2\)"),
    (lambda g: g.__setitem__(2, 0), r"shape 2 of 'voxels' has no occupied voxel at 16\^3"),
])
def test_imnet_nan_inf_and_empty_shapes_are_refused(tmp_path, spoil, message):
    train = imnet_grids(3, np.float32)
    spoil(train)
    write_imnet_split(tmp_path, train, "v_train.hdf5")
    write_imnet_split(tmp_path, imnet_grids(2, np.float32), "v_test.hdf5")
    raw = {"dataset": {"modality": "shape", "source": "imnet", "path": str(tmp_path), "resolution": 16}}
    with pytest.raises(DataError, match=r"v_train\.hdf5: " + message):
        datasets.prepare(config.from_dict(raw))


def binvox_bytes(dims, runs: list[tuple[int, int]]) -> bytes:
    head = f"#binvox 1\ndim {dims[0]} {dims[1]} {dims[2]}\ntranslate 0 0 0\nscale 1\ndata\n".encode()
    return head + bytes(v for run in runs for v in run)


def flat_tetrahedron(path: Path) -> None:
    import trimesh

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], float)      # four points in one plane
    trimesh.Trimesh(v, [[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], process=False).export(path)


def test_empty_grids_and_degenerate_meshes_stop_prepare(tmp_path):
    (tmp_path / "empty.binvox").write_bytes(binvox_bytes((8, 8, 8), [(0, 255), (0, 255), (0, 2)]))
    flat_tetrahedron(tmp_path / "flat.ply")
    for name in ("empty.binvox", "flat.ply"):
        with pytest.raises(DataError, match=rf"{name}: no occupied voxel at 16\^3"):
            voxels.read_file(tmp_path / name, 16)
    # One voxel of 256^3 is kept at 16^3 (IM-NET's any-occupied rule), not refused as empty.
    (tmp_path / "tiny_256_256_256.txt").write_text("0 0 0\n")
    assert voxels.read_file(tmp_path / "tiny_256_256_256.txt", 16).sum() == 1


# --- 4. one line, never a traceback -------------------------------------------

def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (only the header is ever read)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_one_line_and_skippable(tmp_path):
    write_faces(tmp_path, 4)
    (tmp_path / "zz_bomb.png").write_bytes(png_claiming(20000, 20000))     # 400 Mpx > PIL's 179 Mpx limit
    with pytest.raises(DataError, match=r"zz_bomb\.png: cannot read image \(DecompressionBombError"):
        load_image(tmp_path / "zz_bomb.png", 16)
    data = datasets.prepare(config.from_dict(folder_params(tmp_path, skip_corrupt=True)))
    assert data.info["skipped"] == ["zz_bomb.png"] and len(data.train) + len(data.test) == 4


def test_an_index_grid_too_big_for_memory_is_refused_before_allocating(tmp_path):
    (tmp_path / "big.txt").write_text("0 0 0\n3000 1 1\n")
    (tmp_path / "named_9000_9000_9000.txt").write_text("0 0 0\n")
    (tmp_path / "huge.binvox").write_bytes(binvox_bytes((4096, 4096, 4096), [(1, 255)]))
    with pytest.raises(DataError, match=r"big\.txt: grid dims \[3001, 2, 2\] from its largest index are outside \[1, 512\]"):
        voxels.read_file(tmp_path / "big.txt", 16)
    with pytest.raises(DataError, match=r"grid dims \[9000, 9000, 9000\] in its name"):
        voxels.read_file(tmp_path / "named_9000_9000_9000.txt", 16)
    with pytest.raises(DataError, match=r"huge\.binvox: binvox dims \[4096, 4096, 4096\] exceed"):
        voxels.read_file(tmp_path / "huge.binvox", 16)


def test_control_out_at_a_folder_or_under_a_file_is_one_line(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(trained)
    (tmp_path / "afile").write_text("x")
    for out, message in ((tmp_path, "is a folder; name a file"), (tmp_path / "afile" / "x.png", "is a file, not a folder")):
        assert control.main(["render", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --out {out}: ") and message in err and "\n" not in err


def test_an_unwritable_output_is_one_line_and_leaves_nothing(tmp_path):
    write_params(tmp_path, micro_params())
    (tmp_path / "metrics").write_text("a file where the metrics folder goes")
    r = stage("prepare", tmp_path)
    assert r.returncode == 2 and last_line(r).startswith("error: prepare: metrics")
    assert not (tmp_path / "data/prepared/dataset.npz").exists()      # written before the failure, then removed
    if os.geteuid() != 0:                                              # root writes into read-only folders anyway
        (tmp_path / "metrics").unlink()
        (tmp_path / "metrics").mkdir(mode=0o555)
        r = stage("prepare", tmp_path)
        assert r.returncode == 2 and "Permission denied" in last_line(r)


def test_ctrl_c_is_one_line_and_the_checkpoint_resumes(run_copy):
    params = micro_params()
    params["hcdm"].update(steps=100000, checkpoint_every=20)
    write_params(run_copy, params)
    shutil.rmtree(run_copy / "data/hcdm")
    p = subprocess.Popen([sys.executable, "-m", "pipeline.stages.train_hcdm"], cwd=run_copy, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_copy / "data/hcdm/checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (run_copy / "data/hcdm/checkpoint.pt").exists(), "no checkpoint within 120 s: nothing to interrupt"
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: train_hcdm stopped and wrote no result")
    assert not (run_copy / "data/hcdm/hcdm.pt").exists()
    saved = torch.load(run_copy / "data/hcdm/checkpoint.pt", weights_only=True)["step"]
    assert saved >= 20
    # Run again: it picks the run up where the checkpoint left it (then interrupted once more).
    out = run_copy / "resume.log"
    with open(out, "w") as log:
        p = subprocess.Popen([sys.executable, "-u", "-m", "pipeline.stages.train_hcdm"], cwd=run_copy, env=ENV,
                             stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 120
        while "resuming from" not in out.read_text() and p.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    assert f"resuming from data/hcdm/checkpoint.pt at step {saved}" in out.read_text()


# --- 5. stuck runs ------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"garbage" * 10, "truncate"])
def test_an_unreadable_checkpoint_is_moved_aside_and_the_run_starts_afresh(tmp_path, content, capsys, monkeypatch):
    monkeypatch.setenv("CHINR_CHECKPOINTS", str(tmp_path / "spares"))
    path = tmp_path / "checkpoint.pt"
    io.save_torch(path, {"step": 5, "modules": {}, "optimizer": {}, "fingerprint": "f", "w": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:300] if content == "truncate" else content)
    (tmp_path / ".checkpoint.pt.abc12345.tmp").write_bytes(b"left by a kill")
    ckpt = Checkpointer(path, "f", every=10)
    assert not (tmp_path / ".checkpoint.pt.abc12345.tmp").exists()
    assert ckpt.load() is None and not path.exists() and (tmp_path / "checkpoint.pt.corrupt").exists()
    assert "is unreadable" in capsys.readouterr().out
    ckpt.save({"step": 1, "modules": {}, "optimizer": {}})
    assert ckpt.load()["step"] == 1


class Payload:
    """What a hostile model file holds: unpickling it would call os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("name", ["loe.pt", "checkpoint.pt"])
def test_a_model_file_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path, name, capsys, monkeypatch):
    monkeypatch.setenv("CHINR_CHECKPOINTS", str(tmp_path / "spares"))
    marker = tmp_path / "ran"
    path = tmp_path / name
    with open(path, "wb") as f:
        torch.save({"step": 1, "modules": {}, "optimizer": {}, "fingerprint": "f", "x": Payload(marker)}, f)
    with pytest.raises(DataError, match=f"{name}: cannot read"):
        io.load_torch(path)
    assert Checkpointer(path, "f", every=10).load() is None and (tmp_path / f"{name}.corrupt").exists()
    assert not marker.exists()


def test_a_checkpoint_with_every_rng_state_loads_without_unpickling_code(tmp_path):
    """The RNG states (numpy's holds an array) are stored as tensors and plain values: weights_only loads them."""
    import random

    import numpy as np

    from pipeline.training import restore_rng, rng_state

    g = torch.Generator().manual_seed(3)
    np.random.seed(5), random.seed(7), np.random.randn(3)
    io.save_torch(tmp_path / "c.pt", {"rng": rng_state(g)})
    first = (np.random.randn(4), random.random(), torch.rand(2), torch.rand(2, generator=g))
    restore_rng(g, io.load_torch(tmp_path / "c.pt")["rng"])
    again = (np.random.randn(4), random.random(), torch.rand(2), torch.rand(2, generator=g))
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    assert torch.equal(first[2], again[2]) and torch.equal(first[3], again[3])


def test_a_spare_checkpoint_survives_dvc_replacing_the_output(tmp_path, monkeypatch):
    """`dvc exp run` checks the baseline's persist outputs out over an interrupted experiment's checkpoint."""
    monkeypatch.setenv("CHINR_CHECKPOINTS", str(tmp_path / "spares"))
    path = tmp_path / "hcdm" / "checkpoint.pt"
    Checkpointer(path, "fp-baseline", every=10).save({"step": 99, "modules": {}, "optimizer": {}}, final=True)
    baseline = path.read_bytes()                                       # the baseline's run, finished here
    run = Checkpointer(path, "fp-exp", every=10)
    run.save({"step": 10, "modules": {}, "optimizer": {}})
    spare = run.spare
    assert spare.parent == tmp_path / "spares" and spare.name == f"hcdm-checkpoint-fp-exp-{run.code[:8]}.pt"
    assert spare.exists() and os.path.samefile(spare, path)            # a hard link: nothing written twice
    queued = tmp_path / ".dvc" / "tmp" / "exps" / "tmpq1" / "hcdm" / "checkpoint.pt"   # a queued or --temp attempt
    assert Checkpointer(queued, "fp-exp", every=10).load()["step"] == 10          # runs in a new folder each time
    path.unlink()                                                      # the checkout of the baseline's file:
    path.write_bytes(baseline)                                         # a new file, as DVC writes it
    assert torch.load(spare, weights_only=True)["step"] == 10          # a new file replaced the link, not its content
    assert Checkpointer(path, "fp-exp", every=10).load()["step"] == 10
    assert Checkpointer(path, "fp-baseline", every=10).load()["step"] == 99
    run.save({"step": 20, "modules": {}, "optimizer": {}}, final=True)  # a finished run leaves no spare
    assert not spare.exists() and torch.load(path, weights_only=True)["step"] == 20
    monkeypatch.setenv("CHINR_CHECKPOINTS", "")
    assert Checkpointer(path, "x", every=10).spare is None
    monkeypatch.delenv("CHINR_CHECKPOINTS")

    def no_home():
        raise RuntimeError("Could not determine home directory")
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert Checkpointer(path, "x", every=10).spare is None              # no home: no spare, no failure


def test_a_finished_checkpoint_has_the_same_bytes_under_any_code_and_resumes_only_under_its_own(tmp_path, capsys):
    """dvc.lock records the finished checkpoint: its bytes follow params and data, not the code digest; the
    code that wrote it is vouched for beside it, with the file's digest, and only that code resumes it."""
    state = {"step": 20, "modules": {"w": torch.arange(4.0)}, "optimizer": {}}
    a, b = tmp_path / "a" / "checkpoint.pt", tmp_path / "b" / "checkpoint.pt"
    Checkpointer(a, "fp", every=10, code="code-1").save(state, final=True)
    Checkpointer(b, "fp", every=10, code="code-2").save(state, final=True)
    assert a.read_bytes() == b.read_bytes() and "code" not in torch.load(a, weights_only=True)
    assert Checkpointer(a, "fp", every=10, code="code-1").load()["step"] == 20
    assert Checkpointer(a, "fp", every=10, code="code-2").load() is None
    assert "was written by other code" in capsys.readouterr().out
    # A checkpoint put in place by someone else (`dvc checkout` of another run's file): not vouched for.
    io.save_torch(a, {**state, "step": 19, "fingerprint": "fp"})
    assert Checkpointer(a, "fp", every=10, code="code-1").load() is None
    # An unfinished checkpoint carries its code; other code does not resume it, its own does.
    run = Checkpointer(a, "fp", every=10, code="code-1")
    run.save({**state, "step": 10})
    assert torch.load(a, weights_only=True)["code"] == "code-1"
    assert Checkpointer(a, "fp", every=10, code="code-2").load() is None
    resumed = Checkpointer(a, "fp", every=10, code="code-1").load()
    assert resumed["step"] == 10 and "code" not in resumed
    assert Checkpointer(a, "other-params", every=10, code="code-1").load() is None
    assert "belongs to other params or data" in capsys.readouterr().out


def test_the_code_record_keeps_the_newest_finished_checkpoints(tmp_path):
    path = tmp_path / "checkpoint.pt"
    kept = Checkpointer.VOUCHED_KEPT
    for step in range(kept + 1):
        Checkpointer(path, "fp", every=10, code=f"code-{step}").save({"step": step, "modules": {}, "optimizer": {}},
                                                                    final=True)
    Checkpointer(path, "fp", every=10, code="code-1").save({"step": 1, "modules": {}, "optimizer": {}}, final=True)
    record = json.loads((tmp_path / "checkpoint.pt.code").read_text())
    assert len(record) == kept and list(record.values())[-1] == "code-1"      # rewritten: the newest again
    assert "code-0" not in record.values() and list(record.values())[0] == "code-2"   # the oldest went
    assert Checkpointer(path, "fp", every=10, code="code-1").load()["step"] == 1


def test_dvc_lock_vouches_for_a_pulled_checkpoint_while_the_stage_s_modules_are_unchanged(tmp_path, monkeypatch):
    """A checkpoint `dvc pull` brought has no `.code` beside it: dvc.lock says which code made it."""
    from pipeline.training import file_digest

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipeline").mkdir()
    module = tmp_path / "pipeline" / "stage.py"
    module.write_text("STEPS = 20\n")
    path = Path("data/hcdm/checkpoint.pt")
    io.save_torch(path, {"step": 20, "modules": {}, "optimizer": {}, "fingerprint": "fp"})   # as pulled
    lock = {"schema": "2.0", "stages": {"train_hcdm": {
        "cmd": "python -m pipeline.stages.train_hcdm",
        "deps": [{"path": "pipeline/stage.py", "hash": "md5", "md5": file_digest(module)},
                 {"path": "data/latents/latents.npz", "hash": "md5", "md5": "0" * 32}],
        "outs": [{"path": str(path), "hash": "md5", "md5": file_digest(path)}]}}}
    Path("dvc.lock").write_text(yaml.safe_dump(lock))
    assert Checkpointer(path, "fp", every=10, code="any").load()["step"] == 20
    assert Checkpointer(path, "other-params", every=10, code="any").load() is None
    # `.code` beside it names older code (this workspace wrote the file before an edit `dvc commit` took in):
    # the lock still vouches for the code on disk
    Path(str(path) + ".code").write_text(json.dumps({file_digest(path): "older-code"}))
    assert Checkpointer(path, "fp", every=10, code="any").load()["step"] == 20
    module.write_text("STEPS = 21\n")                                 # the stage's code changed since
    assert Checkpointer(path, "fp", every=10, code="any").load() is None
    module.write_text("STEPS = 20\n")
    io.save_torch(path, {"step": 19, "modules": {}, "optimizer": {}, "fingerprint": "fp"})   # not the lock's file
    assert Checkpointer(path, "fp", every=10, code="any").load() is None


def test_stale_temporaries_of_an_artifact_are_cleaned_on_the_next_write(tmp_path):
    (tmp_path / ".m.json.x1abc_9z.tmp").write_text("{")                # what mkstemp names, left by a kill
    (tmp_path / ".files.k2abcdef").mkdir()                             # what mkdtemp names
    (tmp_path / ".other.json.x1abc_9z.tmp").write_text("kept: another artifact's")
    (tmp_path / ".m.json.backup").mkdir()                              # kept: not a name tempfile makes
    io.save_json(tmp_path / "m.json", {"a": 1})
    io.save_directory(tmp_path / "files", {"a.txt": b"a"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.json.backup", ".other.json.x1abc_9z.tmp", "files",
                                                           "m.json"]


def test_schedule_only_settings_keep_an_interrupted_run(run_copy):
    """checkpoint_every and log_every stay out of the fingerprint: a finished run continues with its rows
    thinned to the new log_every, to the bytes of a fresh run under it; a log_every needing rows the run
    never wrote starts afresh."""
    cfg = config.from_dict(micro_params())
    assert "log_every" not in run_settings(cfg.hcdm) and "lr" in run_settings(cfg.hcdm)
    params = micro_params()
    params["hcdm"].update(log_every=10, checkpoint_every=7)           # rows every 5 steps were written
    write_params(run_copy, params)
    (run_copy / "data/hcdm/hcdm.pt").unlink()
    r = stage("train_hcdm", run_copy, check=True)
    assert f"resuming from data/hcdm/checkpoint.pt at step {params['hcdm']['steps']}" in r.stdout
    curve = (run_copy / "metrics/curves/train_hcdm.csv").read_text()
    assert [line.split(",")[0] for line in curve.splitlines()] == ["step", "10", "20", "30"]
    resumed = (run_copy / "data/hcdm/checkpoint.pt").read_bytes()
    (run_copy / "data/hcdm/checkpoint.pt").unlink()
    r = stage("train_hcdm", run_copy, check=True)                     # fresh, under log_every 10
    assert "resuming" not in r.stdout
    assert (run_copy / "data/hcdm/checkpoint.pt").read_bytes() == resumed
    assert (run_copy / "metrics/curves/train_hcdm.csv").read_text() == curve
    params["hcdm"]["log_every"] = 3                                   # rows at 3, 6, ... were never written
    write_params(run_copy, params)
    r = stage("train_hcdm", run_copy, check=True)
    assert "data/hcdm/checkpoint.pt lacks rows that log_every 3 writes: starting afresh" in r.stdout
    assert "resuming" not in r.stdout
    params["hcdm"]["lr"] *= 2                                        # a setting that changes the result does not
    write_params(run_copy, params)
    r = stage("train_hcdm", run_copy, check=True)
    assert "belongs to other params or data: starting afresh" in r.stdout


def test_an_artifact_write_never_replaces_a_device_or_a_folder_but_does_replace_a_link(tmp_path):
    """A stage's atomic write: a FIFO or device stays what it is (one OSError naming it); a link (as a DVC
    link-type cache checks outputs out) is replaced, never written through into what it points at."""
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="is a device or special file") as e:
        io.save_json(fifo, {"a": 1})
    assert e.value.filename == str(fifo) and fifo.is_fifo()
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(OSError, match="is a folder"):
        io.save_json(tmp_path / "dir.json", {"a": 1})
    cached = tmp_path / "cache-entry"
    cached.write_text("cached bytes")
    os.symlink(cached, tmp_path / "link.json")
    io.save_json(tmp_path / "link.json", {"a": 1})
    assert not (tmp_path / "link.json").is_symlink() and cached.read_text() == "cached bytes"


def test_hcdm_seed_gives_other_hcdms_over_one_stage_1_and_null_is_the_runs_seed(run_copy):
    """Several Stage-2 seeds over one latent bank (the denoiser study's 3 seeds): hcdm.seed 0 with seed 0
    is the run's own HCDM byte for byte; hcdm.seed 1 another one; Stage-1's files are untouched."""
    import yaml

    params = yaml.safe_load((run_copy / "params.yaml").read_text())
    ours = (run_copy / "data/hcdm/hcdm.pt").read_bytes()
    loe = (run_copy / "data/fit_loe/loe.pt").read_bytes()
    models = {}
    for seed in (0, 1):
        params["hcdm"]["seed"] = seed
        write_params(run_copy, params)
        (run_copy / "data/hcdm/checkpoint.pt").unlink(missing_ok=True)
        stage("train_hcdm", run_copy, check=True)
        models[seed] = (run_copy / "data/hcdm/hcdm.pt").read_bytes()
    assert params["seed"] == 0 and models[0] == ours and models[1] != ours
    assert (run_copy / "data/fit_loe/loe.pt").read_bytes() == loe


def test_a_corrupt_file_whose_name_is_not_utf8_is_one_line_in_the_terminal_and_the_log(tmp_path):
    write_faces(tmp_path / "imgs", 4)
    with open(os.fsencode(tmp_path / "imgs") + b"/bad\xff.png", "wb") as f:
        f.write(b"garbage")
    write_params(tmp_path, folder_params(tmp_path / "imgs"))
    r = stage("prepare", tmp_path, env={**ENV, "PYTHONIOENCODING": "utf-8:strict"})
    assert r.returncode == 2 and last_line(r).startswith(f"error: {tmp_path / 'imgs'}/bad\\udcff.png: cannot read image")
    log = (tmp_path / "data/logs/prepare.log").read_text().strip().splitlines()
    assert log[-1] == last_line(r)


def test_a_full_disk_is_named_with_the_file_not_as_torch_zip_offsets(tmp_path, monkeypatch):
    """torch's zip writer says 'unexpected pos 413376 vs 413264'; numpy's write has no file name."""
    import collections
    import shutil as sh

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(100, 100, 0))

    def full(f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as e:
        io.save_torch(tmp_path / "m.pt", {"w": torch.ones(3)})
    assert e.value.filename == str(tmp_path / "m.pt")
    assert e.value.strerror.startswith("no space left on the disk (0 bytes free): cannot write (")

    def enospc(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", enospc)
    with pytest.raises(OSError) as e:
        io.save_npz(tmp_path / "l.npz", a=np.ones(3))
    assert e.value.filename == str(tmp_path / "l.npz") and "no space left on the disk" in e.value.strerror
    assert not list(tmp_path.iterdir())                                  # no temporary left behind


def test_files_written_together_are_all_renamed_or_none(tmp_path):
    """io.atomic_paths: an error while writing any of them leaves no file and no temporary behind."""
    with pytest.raises(RuntimeError):
        with io.atomic_paths(tmp_path / "a.png", tmp_path / "b.npz") as (a, b):
            a.write_bytes(b"picture")
            raise RuntimeError("the second write failed")
    assert not list(tmp_path.iterdir())
    with io.atomic_paths(tmp_path / "a.png", tmp_path / "sub" / "b.npz") as (a, b):
        a.write_bytes(b"picture")
        b.write_bytes(b"latents")
    assert (tmp_path / "a.png").read_bytes() == b"picture" and (tmp_path / "sub/b.npz").read_bytes() == b"latents"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "b.npz", "sub"]


def test_a_model_file_that_loads_but_holds_another_model_is_one_line_naming_it(tmp_path):
    """Keys, settings or shapes of another model are a DataError, and settings naming a huge model are
    refused before anything is allocated (the model is first built on the meta device)."""
    from pipeline.errors import DataError
    from pipeline.factors import load_factor_predictor
    from pipeline.hcdm import HCDM, load_hcdm, save_hcdm
    from pipeline.loe import LayersOfExperts
    from pipeline.meta import MetaSGD, load_loe, save_loe

    path = tmp_path / "loe.pt"
    model, rates = LayersOfExperts(2, 3, 3, 4, 8, 5, 30.0), MetaSGD(3, 5, 0.01, 0.1)
    save_loe(path, model, rates, 3, 0.01)
    assert load_loe(path)[0].width == 8
    for state in ({"x": torch.zeros(1)},
                  {**torch.load(path, weights_only=True), "hyperparameters": {**model.hyperparameters(), "width": 16}},
                  {**torch.load(path, weights_only=True), "hyperparameters": {**model.hyperparameters(),
                                                                             "width": 10 ** 7}},
                  {**torch.load(path, weights_only=True), "hyperparameters": "width=8"},
                  {**torch.load(path, weights_only=True), "inner_steps": "three"}):
        torch.save(state, path)
        with pytest.raises(DataError, match=rf"^{path}: not a Stage-1 model of this pipeline"):
            load_loe(path)
    hcdm = HCDM(3, 5, 4, hidden=16, blocks=2, timesteps=10)
    save_hcdm(tmp_path / "hcdm.pt", hcdm)
    assert load_hcdm(tmp_path / "hcdm.pt").arch == hcdm.arch
    torch.save({"arch": {**hcdm.arch, "hidden": 32}, "model": hcdm.state_dict()}, tmp_path / "hcdm.pt")
    with pytest.raises(DataError, match=r"hcdm\.pt: not a Stage-2 model of this pipeline \(ValueError: its weights"):
        load_hcdm(tmp_path / "hcdm.pt")
    # Counts over what the weights could describe are refused before the build loops over them (layers:
    # 10**8 took 73 s and GBs of Python lists to refuse); a count under that bound stops at the parameter
    # that outnumbers the file's tensors.
    for arch, says in (({"blocks": 10 ** 8}, "its settings hold 100000000, more than its 8331 weights"),
                       ({"blocks": 60000}, "its settings describe more parameters than it holds weights for")):
        torch.save({"arch": {**hcdm.arch, **arch}, "model": hcdm.state_dict()}, tmp_path / "hcdm.pt")
        with pytest.raises(DataError, match=rf"hcdm\.pt: not a Stage-2 model of this pipeline \(ValueError: {says}"):
            load_hcdm(tmp_path / "hcdm.pt")
    save_loe(path, model, rates, 3, 0.01)
    torch.save({**torch.load(path, weights_only=True), "hyperparameters": {**model.hyperparameters(),
                                                                           "layers": 10 ** 8}}, path)
    with pytest.raises(DataError, match=r"loe\.pt: not a Stage-1 model of this pipeline \(ValueError: its settings hold"):
        load_loe(path)
    torch.save({"kinds": ["binary"], "state": {}}, tmp_path / "fp.pt")
    with pytest.raises(DataError, match=r"fp\.pt: not a factor predictor of this pipeline"):
        load_factor_predictor(tmp_path / "fp.pt")


def test_a_picture_in_another_format_under_a_png_name_is_refused_not_decoded(tmp_path):
    """Only Pillow's PNG and JPEG decoders run on data files: a TIFF (or PSD, EPS, ...) named x.png is one line."""
    from pipeline.errors import DataError
    from pipeline.modalities.nerf.srn import read_view

    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "x.png", format="TIFF")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'x.png'}: cannot read image \(UnidentifiedImageError"):
        load_image(tmp_path / "x.png", 4)
    with pytest.raises(DataError, match=rf"^{tmp_path / 'x.png'}: not a readable image"):
        read_view(tmp_path / "x.png", 4, 8)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "y.png", format="JPEG")   # a JPEG named .png reads
    assert load_image(tmp_path / "y.png", 4).shape == (4, 4, 3)


def test_a_mesh_is_read_for_its_geometry_alone_never_its_materials_or_textures(tmp_path, monkeypatch):
    import trimesh
    from PIL import Image as PILImage

    obj = trimesh.exchange.obj.export_obj(trimesh.creation.box())
    (tmp_path / "m.obj").write_text("mtllib m.mtl\nusemtl a\n" + obj)
    (tmp_path / "m.mtl").write_text("newmtl a\nmap_Kd texture.png\n")
    PILImage.new("RGB", (4, 4)).save(tmp_path / "texture.png")
    opened = []                    # trimesh catches what its material loading raises: record instead
    monkeypatch.setattr(PILImage, "open", lambda *a, **k: opened.append("texture"))
    # a FIFO (or /dev/zero) named by mtllib would hang the reader: no file the mesh names is opened
    monkeypatch.setattr(trimesh.resolvers.FilePathResolver, "get", lambda self, name: opened.append(name) or b"")
    assert voxels.read_mesh(tmp_path / "m.obj", 8).sum() > 0 and opened == []
