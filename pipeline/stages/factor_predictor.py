"""Stage `factor_predictor`: a CNN that reads the ground-truth factors off an
image or an occupancy grid, trained on the prepared train split and scored on
the test split."""
import numpy as np

from .. import artifacts, datasets, io
from ..artifacts import CURVES, DATASET, FACTOR_PREDICTOR, metrics_files
from ..factors import CURVE_COLUMNS, factor_scores, train_predictor
from ..training import StepLog
from . import elapsed, run, write_metrics, write_not_measured

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (FACTOR_PREDICTOR, *metrics_files("factor_predictor"))
CURVE = CURVES / "factor_predictor.csv"


def main(cfg, generator, start, device):
    data = datasets.load(artifacts.require(DATASET, "prepare"))
    if data.train_factors is None:
        reason = f"dataset source '{data.info['source']}' has no ground-truth factors"
        io.save_torch(FACTOR_PREDICTOR, {"skipped": reason})
        io.save_text(CURVE, ",".join(CURVE_COLUMNS) + "\n")   # dvc.yaml's plot: the header, no rows
        write_not_measured("factor_predictor", reason)
        return
    f = cfg.factor_predictor
    m = data.modality

    def inputs(signals):
        return m.predictor_input(m.targets(signals))

    log = StepLog(CURVE)
    model = train_predictor(lambda idx: inputs(data.train[idx]), len(data.train), data.train_factors,
                            data.factor_kinds, f.steps, f.batch_size, f.lr, generator, log=log)
    log.write()
    io.save_torch(FACTOR_PREDICTOR, {**model.hyperparameters(), "names": data.factor_names,
                                     "state": model.state_dict()})
    predicted = np.concatenate([model.predict(inputs(data.test[i:i + 256])) for i in range(0, len(data.test), 256)])
    scores = factor_scores(predicted, data.test_factors, data.factor_names, data.factor_kinds)
    write_metrics("factor_predictor", {"test": scores, "test_size": len(data.test), "seconds": elapsed(start)})


if __name__ == "__main__":
    run(main, OUTPUTS)
