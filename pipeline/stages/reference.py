"""Stage `reference`: what generated samples are compared with, computed once
per dataset and reused by every experiment's `evaluate`; the modality's
evaluation plug-in says what (images: Inception pool3 features of the train
split; shapes: surface points of every test shape, and the scores of as many
real train shapes against them: what a perfect generator would get)."""
from .. import artifacts, datasets, io
from ..artifacts import DATASET, REFERENCE
from ..modalities import evaluation
from . import run

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (REFERENCE,)


def main(cfg, generator, start, device):
    # Nothing run-dependent goes in (its time is in data/logs/reference.log): the same params and data
    # give the same bytes, so dvc.lock does not change and `dvc checkout` finds the file in the cache.
    data = datasets.load(artifacts.require(DATASET, "prepare"))
    arrays = evaluation.of(data.modality).reference(cfg, data, device)
    io.save_npz(REFERENCE, **arrays)


if __name__ == "__main__":
    run(main, OUTPUTS)
