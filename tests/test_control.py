"""The control commands on a tiny trained run (micro config, trained once per module)."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import STAGE_ENV, copy_of
from pipeline import analysis, control, meta, metrics, pictures

@pytest.fixture(scope="module")
def run_dir(micro_trained, tmp_path_factory):
    work = copy_of(micro_trained, tmp_path_factory.mktemp("run") / "run")
    subprocess.run([sys.executable, "-m", "pipeline.stages.sample"], cwd=work, check=True,
                   capture_output=True, env=STAGE_ENV)
    return work


@pytest.fixture
def in_run(run_dir, monkeypatch):
    monkeypatch.chdir(run_dir)
    return run_dir


def ctl(*args):
    return control.main([str(a) for a in args])


def load(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def png_shape(path):
    return np.asarray(Image.open(path)).shape


def test_resample_keeps_the_prefix_bit_for_bit(in_run):
    for k in range(3):
        assert ctl("resample", "--source", "gen:1", "-k", k, "-n", 4, "--out", f"r{k}.png") == 0
        z = load(f"r{k}.npz")
        src, drawn = z["source"], z["completions"]
        assert drawn.shape == (4, 3, 8)
        assert (drawn[:, :k] == src[None, :k]).all()
        for j in range(1, 4):                                  # completions differ after the prefix
            assert not np.array_equal(drawn[0, k:], drawn[j, k:])
        if k > 0:   # ... and are drawn given it: the same seed from another source draws other h^k+1..h^L (a
            # prior that drew its own prefix and had the source's written over it would draw the same, bit for bit)
            assert ctl("resample", "--source", "gen:2", "-k", k, "-n", 4, "--out", f"o{k}.png") == 0
            assert not np.array_equal(load(f"o{k}.npz")["completions"][:, k:], drawn[:, k:])
        top, left = pictures.margins(["source"], [f"k={k}"])      # labels above and left; 16 px x4 by default
        assert png_shape(f"r{k}.png") == (top + 2 + 64 + 2, left + 2 + 5 * 66, 3)


def test_resample_from_a_user_image_shows_the_reconstruction(in_run, tmp_path):
    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(tmp_path / "me.jpg")
    assert ctl("resample", "--source", f"image:{tmp_path / 'me.jpg'}", "-k", 1, "-n", 3,
               "--inner-steps", 5, "--out", "me.png", "--upscale", 1) == 0
    assert png_shape("me.png")[1] == pictures.margins([], ["k=1"])[1] + 2 + 5 * 18   # input, fit, 3 completions


def test_tree_rows_share_growing_prefixes(in_run):
    assert ctl("tree", "--source", "train:2", "-n", 3, "--out", "t.png") == 0
    z = load("t.npz")
    b = z["branches"]
    assert b.shape == (3, 3, 3, 8)
    for k in range(3):
        assert (b[k, :, :k] == z["source"][None, :k]).all()


def test_compose_with_own_latent_reproduces_the_base(in_run):
    base = torch.randn(3, 8)
    own = analysis.compose(base, base[None])
    assert all(torch.equal(own[l, 0], base) for l in range(3))
    assert ctl("compose", "--source", "gen:0", "--donors", "gen:1", "gen:2", "--out", "c.png") == 0
    z = load("c.npz")
    assert z["composed"].shape == (3, 2, 3, 8)
    for l in range(3):
        assert (z["composed"][l, :, l] == z["donors"][:, l]).all()
        others = [i for i in range(3) if i != l]
        assert (z["composed"][l][:, others] == z["base"][None, others]).all()


def test_interpolation_end_points_are_exact(in_run):
    corners = torch.randn(4, 3, 8)
    grid = analysis.bilinear_interpolation(corners, 5)
    assert torch.equal(grid[0, 0], corners[0]) and torch.equal(grid[0, -1], corners[1])
    assert torch.equal(grid[-1, 0], corners[2]) and torch.equal(grid[-1, -1], corners[3])
    rows = analysis.layerwise_interpolation(corners[0], corners[1], 5)
    for l in range(3):
        others = [i for i in range(3) if i != l]
        assert torch.equal(rows[l, 0], corners[0])
        assert torch.equal(rows[l, -1, l], corners[1, l])
        assert torch.equal(rows[l][:, others], corners[0, others][None].expand(5, -1, -1))   # only h^l moves
        assert torch.allclose(rows[l, 2, l], (corners[0, l] + corners[1, l]) / 2, atol=1e-6)  # linearly
    assert ctl("interpolate", "--corners", "train:0", "train:1", "test:0", "gen:3", "--size", 4, "--out", "i.png") == 0
    z = load("i.npz")
    assert z["bilinear"].shape == (4, 4, 3, 8)
    lw, (a, b) = z["layerwise"], z["corners"][:2]
    for l in range(3):
        others = [i for i in range(3) if i != l]
        assert (lw[l][:, others] == a[None, others]).all() and np.allclose(lw[l, -1, l], b[l], atol=1e-6)


def test_retrieve_finds_the_training_image_itself(in_run, tmp_path, capsys):
    from pipeline import datasets

    train = datasets.load("data/prepared/dataset.npz").train
    Image.fromarray(train[7]).save(tmp_path / "q.png")
    assert ctl("retrieve", "--source", f"image:{tmp_path / 'q.png'}", "--top", 3, "--out", "q.png") == 0
    z = load("q.npz")
    assert z["all"][0] == 7
    said = capsys.readouterr().out
    assert f"nearest train instances by the whole latent: {z['all'].tolist()}" in said and "by h2: " in said
    assert set(z) >= {"all", "layer1", "layer2", "layer3", "query"}


def test_render_is_continuous_across_resolutions(in_run):
    """A 2x render, area-downsampled, stays close to the 1x render (measured: > 25 dB here)."""
    from pipeline import artifacts, datasets

    loe, _, _ = meta.load_loe()
    m = datasets.load("data/prepared/dataset.npz").modality
    latents = torch.from_numpy(artifacts.load_latents()["test"][:4])
    one = m.as_images(loe.render(m.coordinates(1), latents))
    two = m.as_images(loe.render(m.coordinates(2), latents), scale=2)
    down = torch.nn.functional.avg_pool2d(two, 2)
    assert metrics.psnr(down, one).min() > 25
    assert ctl("render", "--source", "gen:0", "--scale", 4, "--out", "big.png") == 0
    assert png_shape("big.png") == (64, 64, 3)


@pytest.mark.parametrize("args, message", [
    (["resample", "--source", "image:/no/such.png"], "/no/such.png: no such image file"),
    (["resample", "-k", "3"], "-k 3: must be in [0, 2]"),
    (["tree", "--source", "train:999"], "train:999"),
    (["tree", "--source", "bogus"], "expected gen:S"),
    (["render", "--scale", "0"], "--scale 0.0"),
    (["resample", "--seed", str(2 ** 64)], f"--seed: the seed must be in [0, 2**32), got {2 ** 64}"),
    (["tree", "--source", "gen:-1"], "source 'gen:-1': the seed must be in [0, 2**32), got -1"),
    (["tree", "-n", "0"], "error: -n 0: must be >= 1"),
    (["retrieve", "--top", "100000"], "--top 100000: at most 64"),
    (["interpolate", "--size", "100000"], "--size 100000: at most 32"),       # 10^10 pictures: a traceback before
    (["resample", "-n", "100000"], "-n 100000: at most 64"),
    (["compose", "--donors", *["gen:1"] * 65], "--donors (65 sources): at most 64"),
    (["render", "--views", "100000"], "--views 100000: at most 360"),
    (["render", "--upscale", str(10 ** 9)], f"--upscale {10 ** 9}: must be at most 32"),
    (["render", "--out", "r.npz"], "--out r.npz: the figure is a PNG; name a .png file"),
    (["render", "--out", "r.png", "--npz", "r.png"], "--npz r.png: the same file as --out"),
    (["render", "--out", "r.png", "--file", "r.npz"], "--file r.npz: the same file as --npz"),
    (["render", "--file", "x.ply"], "--file x.ply: image decodes are written as .png; name a .png file"),
])
def test_bad_arguments_give_one_line(in_run, capsys, args, message):
    assert ctl(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_a_render_over_the_decode_budget_and_running_out_of_memory_are_one_line(in_run, capsys, monkeypatch):
    """A 3-D run's --scale 16 decodes 512^3 points at once: refused from the count, before any model runs; and
    torch's own out-of-memory (a RuntimeError) is one line, where another RuntimeError stays a defect."""
    monkeypatch.setattr(control, "MAX_DECODE_POINTS", 1000)
    assert ctl("render", "--scale", 4) == 2                                  # 64^2 points of this 16-px run
    assert capsys.readouterr().err.strip() == ("error: --scale 4: 4,096 query points for this image run, over the "
                                               "1,000 one render decodes; at most --scale 1.97")

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 6400000000000 bytes")
    monkeypatch.setattr(control.analysis, "resample", no_memory)
    assert ctl("resample", "-n", 2) == 2
    assert capsys.readouterr().err.strip() == ("error: resample: out of memory; ask for fewer pictures, a smaller "
                                               "--scale or --upscale")
    monkeypatch.setattr(control.analysis, "resample", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        ctl("resample", "-n", 2)


def test_a_refused_render_file_leaves_nothing_written(in_run, tmp_path, capsys):
    """--out, --npz and --file are all written or none: a folder at --file is refused before any work."""
    (tmp_path / "adir").mkdir()
    assert ctl("render", "--scale", 1, "--out", tmp_path / "half.png", "--file", tmp_path / "adir") == 2
    assert "--file" in capsys.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == ["adir"]
    assert ctl("render", "--scale", 1, "--out", tmp_path / "whole.png", "--file", tmp_path / "own.png") == 0
    assert {p.name for p in tmp_path.iterdir()} == {"adir", "whole.png", "whole.npz", "own.png"}


def test_a_figure_past_pillows_pixel_limit_is_refused_before_it_is_drawn():
    """64 neighbours at --upscale 32 of a 64-px picture would be a 133,252 x 2,052-pixel canvas: one line, no canvas."""
    with pytest.raises(control.UsageError, match=r"the figure would be 133252x2052 pixels, more than picture viewers"):
        control.grid(np.zeros((65, 64, 64, 3), np.uint8), 65, upscale=32)


def test_a_users_signal_is_fitted_as_export_latents_fits_a_test_instance(in_run):
    """A test instance's own signal, fitted by control as a file would be, gets the bank's latent."""
    from pipeline import artifacts, config

    run = control.Run()
    a = control.parser().parse_args(["resample"])
    fitted = control.fit_file(run, run.data.test[:1][0], a).latent
    bank = torch.from_numpy(artifacts.load_latents()["test"][0])
    assert config.load().export_latents.points is None and torch.allclose(fitted, bank, atol=1e-5)
    # export_latents.inner_steps null: as many steps as the model was trained with (its record, not a default).
    assert config.load().export_latents.inner_steps is None
    run.loe[2]["inner_steps"] = 1
    once = control.fit_file(run, run.data.test[:1][0], a).latent
    explicit = control.fit_file(run, run.data.test[:1][0], control.parser().parse_args(["resample", "--inner-steps",
                                                                                         "1"])).latent
    assert torch.equal(once, explicit) and (once - bank).abs().max() > 0.1 * bank.abs().max()


def test_a_file_fitted_with_params_other_than_the_banks_is_warned_once_naming_the_keys(in_run, capsys):
    """params.yaml edited since the bank was fitted (dvc.lock's record of export_latents): a user's file is
    fitted with params.yaml's settings, and one warning per run names each key that differs."""
    import yaml

    from pipeline import config

    cfg = config.load()
    steps = cfg.export_latents.inner_steps
    assert steps is None                                                      # as the model was trained
    lock = in_run / "dvc.lock"
    record = {"export_latents": {"inner_steps": 5, "batch_size": 7, "points": cfg.export_latents.points},
              "fit_loe.near_surface_fraction": cfg.fit_loe.near_surface_fraction, "seed": cfg.seed}
    assert control.bank_drift(cfg, lock) == []                                # no lock: nothing to compare
    lock.write_text(yaml.safe_dump({"stages": {"export_latents": {"params": {"params.yaml": record}}}}))
    try:
        assert control.bank_drift(cfg, lock) == ["export_latents.inner_steps null (the bank: 5)"]
        run, a = control.Run(), control.parser().parse_args(["resample"])
        for _ in range(2):
            control.fit_file(run, run.data.test[0], a)
        err = capsys.readouterr().err
        assert err.count("warning: params.yaml fits your file otherwise than the latent bank's") == 1
        assert "export_latents.inner_steps null (the bank: 5)" in err
        for same in (steps, cfg.fit_loe.inner_steps):      # null is the trained count; batch_size decides no latent
            record["export_latents"]["inner_steps"] = same
            lock.write_text(yaml.safe_dump({"stages": {"export_latents": {"params": {"params.yaml": record}}}}))
            assert control.bank_drift(cfg, lock) == []
        # ... the model's own count (loe.pt's record), not params.yaml's fit_loe.inner_steps edited since
        assert control.bank_drift(cfg, lock, trained_steps=cfg.fit_loe.inner_steps + 2) == [
            f"export_latents.inner_steps null (the bank: {cfg.fit_loe.inner_steps})"]
        # DVC writes YAML 1.2, where 1e-05 is a float that PyYAML reads as a string: a rate as text is that rate
        record["export_latents"]["autodecode_lr"] = str(cfg.export_latents.autodecode_lr)
        lock.write_text(yaml.safe_dump({"stages": {"export_latents": {"params": {"params.yaml": record}}}}))
        assert control.bank_drift(cfg, lock, method="autodecode") == []
        # Only the keys the run's method fits with: auto-decoding's rate and steps mean nothing to a meta-learned
        # Stage-1, and the inner loop's steps nothing to an auto-decoded one.
        record["export_latents"].update(autodecode_lr=1.0, autodecode_steps=1, inner_steps=9)
        record["fit_loe.points_per_step"] = 3
        lock.write_text(yaml.safe_dump({"stages": {"export_latents": {"params": {"params.yaml": record}}}}))
        assert control.bank_drift(cfg, lock) == ["export_latents.inner_steps null (the bank: 9)"]
        assert control.bank_drift(cfg, lock, method="autodecode") == [
            f"export_latents.autodecode_steps {cfg.export_latents.autodecode_steps} (the bank: 1)",
            f"export_latents.autodecode_lr {cfg.export_latents.autodecode_lr} (the bank: 1.0)",
            f"fit_loe.points_per_step {cfg.fit_loe.points_per_step or 'null'} (the bank: 3)"]
        lock.write_text("<<<<<<< HEAD\nstages:\n\t- broken\n")                 # a conflicted lock: nothing to say
        assert control.bank_drift(cfg, lock) == []
    finally:
        lock.unlink()


def test_undecodable_image_is_named(in_run, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert ctl("resample", "--source", f"image:{tmp_path / 'broken.png'}") == 2
    assert "broken.png: cannot read image" in capsys.readouterr().err


def test_untrained_workspace_is_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pipeline.control", "tree"], capture_output=True, text=True,
                       env=STAGE_ENV)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: data/") and "dvc repro" in r.stderr


def test_analyze_stage_writes_every_figure(run_dir):
    work = run_dir
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.analyze"], cwd=work, capture_output=True, text=True,
                       env=STAGE_ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("tree", "resample", "compose", "interpolate", "retrieve", "render"):
        assert (work / "metrics/analysis" / f"{name}.png").exists()
        assert (work / "data/analysis" / f"{name}.npz").exists()
    shutil.rmtree(work / "metrics/analysis")


def test_source_may_be_positional_but_not_twice(in_run, tmp_path, capsys):
    assert ctl("render", "gen:2", "--out", tmp_path / "a.png") == 0
    assert ctl("render", "--source", "gen:2", "--out", tmp_path / "b.png") == 0
    assert np.array_equal(load(tmp_path / "a.npz")["latent"], load(tmp_path / "b.npz")["latent"])
    assert ctl("render", "--out", tmp_path / "c.png") == 0                    # the default, gen:0
    assert not np.array_equal(load(tmp_path / "c.npz")["latent"], load(tmp_path / "a.npz")["latent"])
    assert ctl("render", "gen:1", "--source", "gen:2", "--out", tmp_path / "d.png") == 2
    assert capsys.readouterr().err.strip().endswith("give it once")


def test_figures_carry_labels_in_strips_that_leave_the_grid_unchanged():
    pics = np.zeros((4, 8, 8, 3), np.uint8)
    plain = pictures.grid(pics, 2)
    labelled = pictures.grid(pics, 2, column_labels=["source", "1"], row_labels=["k=0", "k=1"])
    top, left = pictures.margins(["source", "1"], ["k=0", "k=1"])
    assert labelled.shape == (plain.shape[0] + top, plain.shape[1] + left, 3) and top == pictures.FONT_SIZE + 6
    assert np.array_equal(labelled[top:, left:], plain)
    assert (labelled[:top] < 128).any() and (labelled[top:, :left] < 128).any()     # text in both strips
    from PIL import ImageFont

    width = ImageFont.load_default(size=pictures.FONT_SIZE).getlength
    short = pictures._fit("a label far too long for its column", 40, width)
    assert short.endswith("…") and width(short) <= 40
