"""The benchmark scripts' own argument checks: a bad request stops before any timing, with one line naming it."""
import subprocess
import sys

from conftest import ROOT


def test_speed_profile_of_a_preset_not_timed_is_an_error_naming_the_timed_ones():
    run = subprocess.run([sys.executable, "benchmarks/speed.py", "--presets", "params.yaml",
                          "--profile", "celebahq64:fp32"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == \
        "speed.py: error: --profile: 'celebahq64' is not one of --presets (default)"
    assert run.stdout == ""                      # stopped before the matmul yardstick


def test_speed_times_a_preset_whose_field_reads_rays(tmp_path):
    """NeRF's LoE is read through a renderer: random points of d_in values are not its input (it crashed)."""
    preset = tmp_path / "tiny_nerf.yaml"
    preset.write_text("dataset:\n  modality: nerf\n  resolution: 16\n  views: 4\nloe:\n  experts: 4\n  width: 16\n"
                      "fit_loe:\n  batch_size: 2\n  points_per_step: 32\n  method: autodecode\n"
                      "hcdm:\n  hidden: 32\n  blocks: 2\n")
    run = subprocess.run([sys.executable, "benchmarks/speed.py", "--presets", str(preset), "--precisions", "fp32",
                          "--steps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| tiny_nerf | (5, 4, 16, 32) |" in run.stdout


def test_speed_refuses_a_variant_it_does_not_time_rather_than_timing_eager_under_its_name():
    run = subprocess.run([sys.executable, "benchmarks/speed.py", "--presets", "params.yaml", "--precisions",
                          "fp32", "tf32+graphs"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines()[-1] == ("speed.py: error: 'tf32+graphs' is not a precision (fp32, tf32, "
                                                   "bf16), optionally +compile, +autotune, +triton")


def test_table2_refuses_a_setting_of_the_stage2_seed_that_its_seeds_set():
    run = subprocess.run([sys.executable, "benchmarks/table2.py", "--bits", "8", "--setting", "s1", "hcdm.seed=1",
                          "--out", "unused"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == "table2.py: error: --setting s1: hcdm.seed is what --seeds sets"
