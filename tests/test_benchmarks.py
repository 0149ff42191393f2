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
