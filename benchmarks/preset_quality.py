"""Does a preset's Stage-1 train? Its LoE on the embedded data at its resolution, through the real stages.

    python benchmarks/preset_quality.py pipeline/presets/celebahq64.yaml --steps 3000 --out benchmarks/results/gpu/faces64

Writes params.yaml into a work folder: the preset with `dataset.source:
synthetic` (`--train`/`--test` instances at the preset's resolution), Stage-1
cut to `--steps` outer steps (cosine to zero over them, `--warmup` steps of
warm-up) and any `--set key=value` overrides; then runs `prepare`, `fit_loe`
and `export_latents` as `dvc repro` would, and copies to `--out` what shows
the result: the training curve, `fit_loe.json`, `reconstruction.json`
(held-out instances fitted from zero with the inner loop) and the
reconstruction picture, plus `summary.json` with the stage times.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.config import load_yaml  # noqa: E402
from pipeline.preset import compose  # noqa: E402  (this checkout's presets, whatever --code runs)


def set_key(params: dict, dotted: str, value: str) -> None:
    *path, last = dotted.split(".")
    for part in path:
        params = params[part]
    params[last] = load_yaml(value)


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("preset", type=Path)
    a.add_argument("--steps", type=int, default=3000)
    a.add_argument("--warmup", type=int, default=100)
    a.add_argument("--train", type=int, default=1500)
    a.add_argument("--test", type=int, default=100)
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another override")
    a.add_argument("--limit", type=float, default=None, help="seconds for all stages; a stage still running is "
                   "stopped and what it wrote so far (curve, checkpoint) is reported")
    a.add_argument("--code", type=Path, default=ROOT, help="checkout whose pipeline/ runs (to compare commits)")
    a.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    a.add_argument("--out", type=Path, required=True)
    args = a.parse_args()

    params = compose(args.preset)[1]          # a preset's changes over the default run, or a whole params file
    params["dataset"].update(source="synthetic", path=None, synthetic={"train": args.train, "test": args.test})
    params["fit_loe"].update(steps=args.steps, warmup_steps=args.warmup, checkpoint_every=max(1, args.steps // 10),
                             log_every=max(1, min(params["fit_loe"]["log_every"], args.steps // 100)))
    for item in args.set:
        key, _, value = item.partition("=")
        set_key(params, key, value)
    work = args.work or Path(tempfile.mkdtemp(prefix="preset_quality_"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # No spare checkpoints: a spare resumes any run with the same settings and code, so a rerun after one cut by
    # --limit would time only its rest.
    env = {**os.environ, "CHINR_CHECKPOINTS": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(args.code.resolve()), os.environ.get("PYTHONPATH")]))}
    summary = {"preset": args.preset.name, "code": str(args.code), "steps": args.steps, "warmup": args.warmup,
               "train": args.train, "test": args.test, "overrides": args.set, "stages": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    code, deadline = 0, time.time() + (args.limit or float("inf"))
    for stage in ("prepare", "fit_loe", "export_latents"):
        t = time.time()
        try:
            r = subprocess.run([sys.executable, "-m", f"pipeline.stages.{stage}"], cwd=work, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               timeout=max(1.0, deadline - t) if args.limit else None)
            returncode, stderr = r.returncode, r.stderr
        except subprocess.TimeoutExpired:
            returncode, stderr = "timeout", f"stopped after --limit {args.limit} s"
        summary["stages"][stage] = {"seconds": round(time.time() - t, 1), "exit": returncode}
        print(stage, summary["stages"][stage], flush=True)
        if returncode:
            summary["stages"][stage]["stderr"] = stderr[-1500:]
            print(stderr[-1500:], flush=True)
            code = 1
            break
    for src in ("metrics/fit_loe.json", "metrics/reconstruction.json", "metrics/curves/fit_loe.csv",
                "data/latents/reconstructions.png"):
        if (work / src).exists():
            shutil.copy(work / src, args.out / Path(src).name)
    rec = work / "metrics/reconstruction.json"
    if rec.exists():
        summary["test"] = json.loads(rec.read_text())["test"]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary.get("test", {})), flush=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
