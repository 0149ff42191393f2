"""Stage `check_params`: validate the whole of params.yaml before anything runs.

Every other stage depends on the keys it reads, so a key no stage reads (a typo at
the top level, `dvc exp run -S +binary_lenght=15`) or one that changes speed only
(`threads`) would otherwise change nothing and be recorded as an experiment
without a word. This stage depends on the whole file: any edit reruns it (about
2 s, mostly importing torch), and `run` validates every key, so a bad or unknown
one stops `dvc repro` and `dvc exp run` with `error: <key>: ...`. `prepare`
depends on its output, so that it runs first under any target (`dvc repro
train_hcdm` too); the output's bytes never change, so a valid edit leaves every
other stage to decide for itself whether it reruns."""
from .. import io
from ..artifacts import PARAMS_CHECKED
from . import run

OUTPUTS = (PARAMS_CHECKED,)


def main(cfg, generator, start, device):
    io.save_json(PARAMS_CHECKED, {"params": "params.yaml", "valid": True})
    print("params.yaml: every key valid")


if __name__ == "__main__":
    run(main, OUTPUTS)
