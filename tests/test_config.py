import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, STAGE_ENV
from pipeline import config, preset
from pipeline.config import ConfigError


def shipped_params() -> Path:
    """params.yaml, unless `python -m pipeline.preset NAME` has made it another preset's (skipped, saying how to
    go back): these tests are of the file the repository ships."""
    path = ROOT / "params.yaml"
    made = re.search(r"^# Written by `python -m pipeline.preset (\S+)`", path.read_text(), re.M)
    if made and made[1] != "default":
        pytest.skip(f"params.yaml is the {made[1]} preset's here: `python -m pipeline.preset default` restores it")
    return path


def test_shipped_params_are_valid():
    cfg = config.load(shipped_params())
    assert cfg.binary_len == 12 and cfg.dataset.source == "synthetic"


@pytest.mark.parametrize("raw, key", [
    ({"binary_len": 0}, "binary_len"),
    ({"binary_len": 10_000}, "binary_len"),
    ({"binary_len": 3.5}, "binary_len"),
    ({"loe": {"layers": 1}}, "loe.layers"),
    ({"loe": {"expertz": 4}}, "loe.expertz"),
    ({"fit_loe": {"batch_size": "32"}}, "fit_loe.batch_size"),
    ({"fit_loe": {"meta_sgd_init": [0.5, 0.1]}}, "fit_loe.meta_sgd_init"),
    ({"dataset": {"source": "folder"}}, "dataset.path"),
    ({"dataset": {"source": "lmdb"}}, "dataset.source"),
    ({"sample": {"ddim_steps": 5000}}, "sample.ddim_steps"),
    ({"sample": {"sampler": "euler"}}, "sample.sampler"),
    ({"typo_section": {}}, "typo_section"),
    ({"loe": {"variant": "gasp"}}, "loe.variant"),
    ({"loe": {"variant": "mnif"}}, "hcdm.variant"),          # one latent for all layers: no layer chain
    ({"loe": {"variant": "functa"}, "hcdm": {"variant": "unconditional"}}, "hcdm.variant"),
    ({"hcdm": {"denoiser": "mlp", "hidden": 33}}, "hcdm.hidden"),       # cos and sin halves of the embedding
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        config.from_dict(raw)
    assert str(e.value).startswith(key + ":"), str(e.value)


def test_binary_len_bound_is_the_compressor_input():
    cfg = config.from_dict({"loe": {"layers": 3, "latent_dim": 4}, "binary_len": 12})
    assert cfg.binary_len == 12
    with pytest.raises(ConfigError, match=r"binary_len: .*= 12"):
        config.from_dict({"loe": {"layers": 3, "latent_dim": 4}, "binary_len": 13})


def test_stage_reports_bad_params_in_one_line(tmp_path):
    params = yaml.safe_load(preset.rendered("default"))
    params["fit_loe"]["lr"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.prepare"], cwd=tmp_path, capture_output=True,
                       text=True, env=STAGE_ENV)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: fit_loe.lr: must be > 0, got -1.0"
    assert not (tmp_path / "data").exists()


def dotted_keys(d: dict, prefix: str = "") -> set[str]:
    return {k for key, v in d.items()
            for k in (dotted_keys(v, f"{prefix}{key}.") if isinstance(v, dict) else {prefix + key})}


def test_params_yaml_is_the_rendering_of_the_default_preset():
    # One place for each default: config.py, then presets/default.yaml; params.yaml is written from them.
    assert shipped_params().read_text() == preset.rendered("default")
    assert preset.load("default") == config.load(ROOT / "params.yaml")


def test_presets_render_complete_valid_params():
    names = preset.names()
    assert {"default", "shapes32", "celebahq64", "shapenet64", "motion", "nerf"} <= set(names)
    every_key = dotted_keys(yaml.safe_load(preset.rendered("default")))
    for name in names:
        cfg, raw, _, _ = preset.compose(name)
        text = preset.rendered(name)
        assert yaml.safe_load(text) == raw, name                  # the rendering reads back as the composed values
        assert dotted_keys(raw) == every_key, name                # every -S key is in it
        assert config.from_dict(yaml.safe_load(text)) == cfg, name


def flat(d: dict, prefix: str = "") -> dict:
    return {k: x for key, v in d.items()
            for k, x in (flat(v, f"{prefix}{key}.") if isinstance(v, dict) else {prefix + key: v}).items()}


def test_presets_hold_only_changes():
    # A preset is a small override, not a copy: each value it sets differs from what it is laid over.
    library = flat(preset._plain(config.to_dict(config.Config())))
    default = flat(preset.compose("default")[1])
    for name in preset.names():
        under = library if name == "default" else default
        changes = flat(preset._plain(preset.read(preset.path_of(name)).values))
        same = sorted(k for k, v in changes.items() if under[k] == v)
        assert not same, f"{name} repeats {same}"
        assert len(changes) <= 40, name


def test_preset_comments_reach_params_yaml():
    text = preset.rendered("celebahq64")
    lines = text.splitlines()
    fit = lines[lines.index("fit_loe:                  # Stage-1"):]
    assert next(x for x in fit if x.startswith("  precision:")).startswith("  precision: tf32         # H200")  # the preset's
    assert "  w0: 30.0                # SIREN frequency factor" in lines                                 # config.py's
    assert "python -m pipeline.preset celebahq64" in text.splitlines()[5]
    # A value changed without a reason gets config.py's comment, not the default run's reason for its own value.
    assert "  steps: 675000           # outer steps" in lines
    assert "  steps: 1500             # outer steps" in preset.rendered("motion").splitlines()


def test_preset_comments_follow_yaml_rules(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text('dataset:\n  source: folder\n  path: "/data/faces # 2"  # my faces\n')
    p = preset.read(mine)
    assert p.values["dataset"]["path"] == "/data/faces # 2" and p.comments == {"dataset.path": "my faces"}
    text = preset.rendered(mine)
    assert yaml.safe_load(text)["dataset"]["path"] == "/data/faces # 2"


def test_bad_preset_input_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_text("fit_loe:\n  stepz: 10\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: fit_loe.stepz: unknown key"):
        preset.compose(bad)
    bad.write_text("fit_loe:\n  steps: -1\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: fit_loe.steps: must be >= 1, got -1$"):
        preset.compose(bad)
    assert preset.main(["nosuch", "--out", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nosuch.yaml: no such preset" in err and "shapes32" in err and "\n" not in err
    assert not (tmp_path / "p.yaml").exists()
    bad.write_text("fit_loe:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"mine.yaml:3: not valid YAML \(expected ',' or ']'"):
        preset.compose(bad)
    out = tmp_path / "params.yaml"
    out.write_text(preset.rendered("default"))
    assert preset.main([str(out), "--out", str(out)]) == 2                 # would re-label params.yaml as a preset
    assert "is the file to write" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"shapes32.yaml: a preset holds only its changes; `python -m pipeline.preset "
                                          r"shapes32` writes the whole params.yaml"):
        config.load(ROOT / "pipeline" / "presets" / "shapes32.yaml")


def test_preset_command_writes_and_checks(tmp_path):
    out = tmp_path / "params.yaml"
    assert preset.main(["shapes32", "--out", str(out)]) == 0
    assert config.load(out) == preset.load("shapes32") and config.load(out).dataset.modality == "shape"
    assert preset.main(["shapes32", "--out", str(out), "--check"]) == 0
    assert preset.rendered(str(ROOT / "pipeline/presets/shapes32.yaml")) == preset.rendered("shapes32")
    here = Path.cwd()
    try:                                     # named by a relative path, too
        os.chdir(ROOT)
        assert preset.rendered("pipeline/presets/shapes32.yaml") == preset.rendered("shapes32")
    finally:
        os.chdir(here)
    assert preset.main(["default", "--out", str(out), "--check"]) == 1
    assert preset.main(["default", "--out", str(out)]) == 0
    assert out.read_text() == preset.rendered("default")
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]          # nothing half-written beside it
    # A preset named by its path is that preset: the file says so, and --check by name agrees.
    assert preset.main([str(ROOT / "pipeline/presets/shapes32.yaml"), "--out", str(out)]) == 0
    assert "# Written by `python -m pipeline.preset shapes32`" in out.read_text()
    assert preset.main(["shapes32", "--out", str(out), "--check"]) == 0


def test_preset_check_without_a_preset_name_is_an_error_not_the_list(tmp_path, capsys):
    """It printed the presets and exited 0: a CI step `python -m pipeline.preset --check` always passed."""
    assert preset.main(["--check", "--out", str(tmp_path / "params.yaml")]) == 2
    assert capsys.readouterr().err.strip() == ("error: --check: name the preset to check --out against "
                                              "(e.g. python -m pipeline.preset default --check)")


def test_preset_out_never_replaces_a_link_a_device_or_a_folder(tmp_path, capsys):
    """`--out /dev/full` as root replaced the device node with a file."""
    import os

    target = tmp_path / "target.yaml"
    target.write_text("mine\n")
    link = tmp_path / "link.yaml"
    os.symlink(target, link)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for out, why in ((link, "is a symbolic link; name a regular file"),
                     (fifo, "is a device or special file, not a regular file; refusing to replace it"),
                     (tmp_path, "is a folder; name a file")):
        assert preset.main(["default", "--out", str(out)]) == 2
        assert capsys.readouterr().err.strip() == f"error: --out {out}: {why}"
    assert link.is_symlink() and target.read_text() == "mine\n" and fifo.is_fifo()


def test_a_params_or_preset_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_bytes(b"seed: 1\nfit_loe:  # \xff\xfe\n  steps: 5\n")
    assert preset.main([str(bad), "--out", str(tmp_path / "p.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}:2: not UTF-8 text (byte 0xff)"
    with pytest.raises(ConfigError, match=r"mine.yaml:2: not UTF-8 text \(byte 0xff\)$"):
        config.load(bad)


def test_shape_presets():
    small = preset.load("shapes32")
    assert (small.dataset.modality, small.dataset.source, small.dataset.resolution) == ("shape", "synthetic", 32)
    paper = preset.load("shapenet64")
    assert (paper.loe.layers, paper.loe.experts, paper.loe.width, paper.loe.latent_dim) == (5, 256, 64, 256)
    assert paper.dataset.source == "imnet" and paper.dataset.resolution == 64
    assert paper.fit_loe.steps * paper.fit_loe.batch_size >= 800 * 35019


def test_paper_preset_is_the_paper_configuration():
    cfg = preset.load("celebahq64")
    assert (cfg.loe.layers, cfg.loe.experts, cfg.loe.width, cfg.loe.latent_dim) == (7, 384, 128, 128)
    assert cfg.dataset.resolution == 64 and cfg.fit_loe.lr == 1e-4 and cfg.fit_loe.inner_steps == 3
    assert cfg.fit_loe.steps * cfg.fit_loe.batch_size == 800 * 27000       # 800 epochs
    assert cfg.evaluate.fid_samples == 50000                                # Table 1: FID@50k


def test_fid_samples_may_exceed_memorisation_samples():
    # The paper's 50k FID samples must not force 50k nearest-neighbour searches.
    cfg = config.from_dict({"evaluate": {"fid_samples": 50000, "memorisation_samples": 1000}})
    assert (cfg.evaluate.fid_samples, cfg.evaluate.memorisation_samples) == (50000, 1000)
    with pytest.raises(ConfigError, match=r"^evaluate.fid_samples: must be >= 2, got 1$"):
        config.from_dict({"evaluate": {"fid_samples": 1}})


def test_precision_is_checked():
    assert config.from_dict({"fit_loe": {"precision": "tf32"}}).fit_loe.precision == "tf32"
    with pytest.raises(ConfigError, match=r"^fit_loe.precision: must be one of 'fp32', 'tf32', 'bf16', got 'fp16'$"):
        config.from_dict({"fit_loe": {"precision": "fp16"}})


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ConfigError, match=r"^loe.w0: must be a finite number"):
        config.from_dict({"loe": {"w0": value}})


@pytest.mark.parametrize("raw, message", [
    ({"device": "cuda:abc"}, "device: must be auto, cpu, cuda or cuda:N, got 'cuda:abc'"),
    ({"device": "cuda:"}, "device: must be auto, cpu, cuda or cuda:N, got 'cuda:'"),
    ({"device": "cuda:01"}, "device: must be auto, cpu, cuda or cuda:N, got 'cuda:01'"),
    ({"device": "cuda:\u00b2"}, "device: must be auto, cpu, cuda or cuda:N, got 'cuda:\u00b2'"),   # torch refused it
    ({"seed": 2 ** 32}, "seed: must be < 2**32 (numpy's seed range), got 4294967296"),
    ({"threads": 10 ** 10}, "threads: must be null or in [1, 1024], got 10000000000"),     # a traceback in torch before
])
def test_device_and_seed_ranges(raw, message):
    with pytest.raises(ConfigError, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")
                       .replace("[", r"\[")):
        config.from_dict(raw)
    assert config.from_dict({"device": "cuda:1", "seed": 2 ** 32 - 1}).device == "cuda:1"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_on_a_cpu_machine_is_one_line(tmp_path):
    params = yaml.safe_load(preset.rendered("default"))
    params["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.prepare"], cwd=tmp_path, capture_output=True,
                       text=True, env=STAGE_ENV)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: device: 'cuda' asked for, but torch sees no CUDA device (use auto or cpu)"


def test_std_table_parts_must_cover_the_layers():
    cfg = config.from_dict({"loe": {"layers": 7}, "evaluate": {"std_table": {"parts": [1, 1, 2, 2, 1]}}})
    assert cfg.evaluate.std_table.parts == [1, 1, 2, 2, 1]
    for parts, why in (([1, 1, 2], "summing to loe.layers = 7"), ([0, 7], "each >= 1"), ("1,2", "must be a list"),
                       ([1.5, 5.5], "must be an integer")):
        with pytest.raises(ConfigError, match=r"^evaluate\.std_table\.parts(\[0\])?: .*" + why):
            config.from_dict({"loe": {"layers": 7}, "evaluate": {"std_table": {"parts": parts}}})


def test_ctrl_c_in_the_preset_command_is_one_line(monkeypatch, capsys):
    def interrupted(argv=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(preset, "main", interrupted)
    assert preset._main() == 130
    assert capsys.readouterr().err.strip() == "interrupted: --out is as it was, or fully written (writes are atomic)"


def test_paper_presets_use_the_papers_stage_2():
    """mNIF's latent denoiser (long skips, 8 blocks x 4096, x0 prediction) and the paper's HCDM schedule:
    batch 32, lr 1e-4, 1000 epochs; SRN-Cars' auto-decoding 1000 epochs at batch 8 over Functa's 2458 scenes."""
    for name, train in (("celebahq64", 27000), ("srncars128", 2458)):
        h = preset.load(name).hcdm
        assert (h.denoiser, h.objective, h.hidden, h.blocks) == ("skip_mlp", "x0", 4096, 8), name
        assert (h.batch_size, h.lr) == (32, 1e-4) and abs(h.steps * h.batch_size - 1000 * train) < h.batch_size, name
    srn = preset.load("srncars128")
    assert srn.fit_loe.method == "autodecode" and srn.fit_loe.steps * srn.fit_loe.batch_size == 1000 * 2458
    assert srn.sample.sampler == "ddpm"


@pytest.mark.parametrize("raw, message", [
    ({"fit_loe": {"steps": 40}}, "fit_loe.warmup_steps: must be < fit_loe.steps (40): the learning rate would never "
                                 "leave its warm-up, got 50"),
    ({"hcdm": {"steps": 50}}, "hcdm.warmup_steps: must be < hcdm.steps (50): the learning rate would never leave its "
                              "warm-up, got 100"),
    ({"fit_loe": {"lr": "1e-4"}}, "fit_loe.lr: must be a number, got '1e-4' (a number written as text: remove the "
                                  "quotes)"),
    ({"dataset": {"modality": "nerf", "nerf": {"far": -1.0}}}, "dataset.nerf.far: must be null or > 0, got -1.0"),
    ({False: 1, "binary_lenght": 15}, "False: unknown key"),          # YAML's `no: 1` beside a typo
])
def test_settings_that_passed_and_then_misbehaved_are_one_line(raw, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        config.from_dict(raw)


def test_dvc_exp_run_set_floats_without_a_dot_are_read_as_numbers(tmp_path):
    """`dvc exp run -S fit_loe.lr=1e-5` writes params.yaml in YAML 1.2 (`lr: 1e-05`), which YAML 1.1 reads as text:
    through DVC's own override writer, every such float reads back as the number set."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text(preset.rendered("default"))
    apply_overrides(path, ["fit_loe.lr=1e-5", "hcdm.lr=0.00005", "fit_loe.weight_decay=1e-5",
                           "fit_loe.init_std=2E-6", "hcdm.weight_decay=1e20"])
    assert "lr: 1e-05" in path.read_text()                        # what YAML 1.1 alone reads as a string
    cfg = config.load(path)
    assert (cfg.fit_loe.lr, cfg.hcdm.lr, cfg.fit_loe.weight_decay) == (1e-5, 5e-5, 1e-5)
    assert (cfg.fit_loe.init_std, cfg.hcdm.weight_decay) == (2e-6, 1e20)
    assert config.load_yaml("a: '1e-5'\nb: 1e\nc: 7") == {"a": "1e-5", "b": "1e", "c": 7}   # text and ints stay


def test_an_empty_nerf_depth_range_is_one_line_before_training():
    """near set above the renderer's default far (or far below its near): the depths would run backwards."""
    from pipeline.errors import DataError
    from pipeline.loe import LayersOfExperts
    from pipeline.modalities.nerf.modality import NerfModality

    with pytest.raises(DataError, match=r"^dataset\.nerf\.near / far: the renderer's depth range \[2, 1\.8\] is empty"):
        NerfModality(16, near=2.0).field(LayersOfExperts(3, 4, 3, 2, 8, 4, 30.0))
