"""Stage `check_params`: validate the whole of params.yaml before anything runs.

Every other stage depends on the keys it reads, so a key no stage reads (a typo at
the top level, `dvc exp run -S +binary_lenght=15`) or one that changes speed only
(`threads`) would otherwise change nothing and be recorded as an experiment
without a word. This stage depends on the whole file: any edit reruns it (about
2 s, the time to start Python), and `run` validates every key, so a bad or
unknown one stops `dvc repro` and `dvc exp run` with `error: <key>: ...` before
the first real stage."""
from . import run

OUTPUTS = ()     # it writes nothing: an edit that passes leaves every other stage to decide for itself


def main(cfg, generator, start, device):
    print("params.yaml: every key valid")


if __name__ == "__main__":
    run(main)
