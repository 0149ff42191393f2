import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from pipeline import config
from pipeline.config import ConfigError


def test_shipped_params_are_valid():
    cfg = config.load(ROOT / "params.yaml")
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
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["fit_loe"]["lr"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.prepare"], cwd=tmp_path, capture_output=True,
                       text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert r.stderr.strip() == "error: fit_loe.lr: must be > 0"
    assert not (tmp_path / "data").exists()


def dotted_keys(d: dict, prefix: str = "") -> set[str]:
    return {k for key, v in d.items()
            for k in (dotted_keys(v, f"{prefix}{key}.") if isinstance(v, dict) else {prefix + key})}


def test_presets_are_complete_and_valid():
    presets = sorted((ROOT / "pipeline" / "presets").glob("*.yaml"))
    assert len(presets) >= 3
    defaults = dotted_keys(yaml.safe_load((ROOT / "params.yaml").read_text()))
    for path in presets:
        raw = yaml.safe_load(path.read_text())
        cfg = config.from_dict(raw)
        assert dotted_keys(raw) == defaults, path     # every -S key of params.yaml exists in the preset
        assert cfg.fit_loe.batch_size >= 1


def test_shape_presets():
    small = config.load(ROOT / "pipeline" / "presets" / "shapes32.yaml")
    assert (small.dataset.modality, small.dataset.source, small.dataset.resolution) == ("shape", "synthetic", 32)
    paper = config.load(ROOT / "pipeline" / "presets" / "shapenet64.yaml")
    assert (paper.loe.layers, paper.loe.experts, paper.loe.width, paper.loe.latent_dim) == (5, 256, 64, 256)
    assert paper.dataset.source == "imnet" and paper.dataset.resolution == 64
    assert paper.fit_loe.steps * paper.fit_loe.batch_size >= 800 * 35019


def test_paper_preset_is_the_paper_configuration():
    cfg = config.load(ROOT / "pipeline" / "presets" / "celebahq64.yaml")
    assert (cfg.loe.layers, cfg.loe.experts, cfg.loe.width, cfg.loe.latent_dim) == (7, 384, 128, 128)
    assert cfg.dataset.resolution == 64 and cfg.fit_loe.lr == 1e-4 and cfg.fit_loe.inner_steps == 3
    assert cfg.fit_loe.steps * cfg.fit_loe.batch_size == 800 * 27000       # 800 epochs
    assert cfg.evaluate.fid_samples == 50000                                # Table 1: FID@50k


def test_fid_samples_may_exceed_memorisation_samples():
    # The paper's 50k FID samples must not force 50k nearest-neighbour searches.
    cfg = config.from_dict({"evaluate": {"fid_samples": 50000, "memorisation_samples": 1000}})
    assert (cfg.evaluate.fid_samples, cfg.evaluate.memorisation_samples) == (50000, 1000)
    with pytest.raises(ConfigError, match=r"^evaluate.fid_samples: must be >= 2$"):
        config.from_dict({"evaluate": {"fid_samples": 1}})


def test_precision_is_checked():
    assert config.from_dict({"fit_loe": {"precision": "tf32"}}).fit_loe.precision == "tf32"
    with pytest.raises(ConfigError, match=r"^fit_loe.precision: must be one of 'fp32', 'tf32', 'bf16'$"):
        config.from_dict({"fit_loe": {"precision": "fp16"}})


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ConfigError, match=r"^loe.w0: must be a finite number"):
        config.from_dict({"loe": {"w0": value}})


@pytest.mark.parametrize("raw, message", [
    ({"device": "cuda:abc"}, "device: must be auto, cpu, cuda or cuda:N"),
    ({"device": "cuda:"}, "device: must be auto, cpu, cuda or cuda:N"),
    ({"seed": 2 ** 32}, "seed: must be < 2**32 (numpy's seed range)"),
])
def test_device_and_seed_ranges(raw, message):
    with pytest.raises(ConfigError, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        config.from_dict(raw)
    assert config.from_dict({"device": "cuda:1", "seed": 2 ** 32 - 1}).device == "cuda:1"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_on_a_cpu_machine_is_one_line(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.prepare"], cwd=tmp_path, capture_output=True,
                       text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert r.stderr.strip() == "error: device: 'cuda' asked for, but torch sees no CUDA device (use auto or cpu)"


def test_std_table_parts_must_cover_the_layers():
    cfg = config.from_dict({"loe": {"layers": 7}, "evaluate": {"std_table": {"parts": [1, 1, 2, 2, 1]}}})
    assert cfg.evaluate.std_table.parts == [1, 1, 2, 2, 1]
    for parts, why in (([1, 1, 2], "summing to loe.layers = 7"), ([0, 7], "each >= 1"), ("1,2", "must be a list"),
                       ([1.5, 5.5], "must be an integer")):
        with pytest.raises(ConfigError, match=r"^evaluate\.std_table\.parts(\[0\])?: .*" + why):
            config.from_dict({"loe": {"layers": 7}, "evaluate": {"std_table": {"parts": parts}}})
