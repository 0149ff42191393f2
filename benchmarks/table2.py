"""What decides Table 2's trend? HCDMs trained on this run's latent bank, one per (setting, binary_len,
seed), each measured by the paper's std protocol beside the floor a memorising prior would reach.

    python benchmarks/table2.py --bits 8 12 15 20 --setting default \\
        --setting random hcdm.compressor=random --setting eps hcdm.objective=eps --out benchmarks/results/cpu/table2

Reads params.yaml (the run's Stage-2 and std-table settings) and data/latents/latents.npz (run `dvc
repro` first); a setting is a name and `key=value` overrides of params.yaml. Per run it writes the
model's own std table (standardised latents: 10 anchors, `evaluate.std_table.samples` draws each, from
`evaluate`'s stream: the default setting at binary_len 12 and --seeds 0 gives metrics/generation.json's
table to the digit) and each entry's standard error over its anchors, the memorised floor and code
occupancy (`generation.memorised_std_table`), the final training loss and seconds; `--floor-only` skips
the training and reads the floor of the random compressor W a fresh model starts with. OUT.json and
OUT.md, with the mean and spread over the seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline import artifacts, config, io  # noqa: E402
from pipeline.generation import memorised_std_table, std_tables, stream  # noqa: E402
from pipeline.hcdm import HCDMTrainer, build_hcdm  # noqa: E402
from pipeline.training import Checkpointer, StepLog, native_bf16, seed_everything  # noqa: E402


def with_overrides(raw: dict, overrides: list[str]) -> config.Config:
    raw = json.loads(json.dumps(raw))
    for item in overrides:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        node = raw
        for part in path:
            node = node.setdefault(part, {})
        node[last] = config.load_yaml(value)
    return config.from_dict(raw)


def one_run(cfg: config.Config, train: torch.Tensor, seed: int, floor_only: bool, work: Path, tag: str) -> dict:
    h, e, s = cfg.hcdm, cfg.evaluate.std_table, cfg.sample
    if h.precision == "bf16" and not native_bf16():
        h = dataclasses.replace(h, precision="fp32")
    generator = seed_everything(seed)
    model = build_hcdm(dataclasses.replace(cfg, hcdm=h), train)
    out = {"parameters": sum(p.numel() for p in model.parameters()), "precision": h.precision}
    start = time.time()
    if floor_only:
        model.set_statistics(train)
    else:
        trainer = HCDMTrainer(model, h)
        log = StepLog(work / "curve.csv")
        trainer.fit(train, Checkpointer(work / f"{tag}.pt", tag, 10 ** 9), log, generator)
        model = trainer.ema
        tail = log.rows[-5:]
        out["final_loss"] = round(sum(r["loss"] for r in tail) / len(tail), 5)
        out["train_seconds"] = round(time.time() - start, 1)
        # evaluate's stream (the run's `seed`, not the Stage-2 seed), so that the tables differ only by the model.
        table = std_tables(model, e.samples, e.anchors, stream(cfg.seed, "std_table"), s.sampler, s.ddim_steps,
                           parts=e.parts)
        out["std_table"] = {k: round(v, 4) for k, v in table["standardised"].items()}
        out["standard_error"] = {k: round(v, 4) for k, v in table["standard_error"].items() if v is not None}
    floor = memorised_std_table(model, train, e.parts)
    out["floor"] = {k: round(v, 4) for k, v in floor["standardised"].items()}
    out["distinct_codes"] = floor["distinct_codes"]
    out["instances_per_anchor_code"] = {k: round(v, 2) for k, v in floor["instances_per_anchor_code"].items()}
    return out


def markdown(rows: list[dict]) -> str:
    keys = sorted({k for r in rows for k in r.get("floor", {})})
    std_keys = sorted({k for r in rows for k in r.get("std_table", {})})

    def entry(r, k):
        value, se = r.get("std_table", {}).get(k), r.get("standard_error", {}).get(k)
        return "–" if value is None else f"{value:.3f}" + (f" ({se:.3f})" if se is not None else "")
    head = ["setting", "bits", "seed", *std_keys, *[f"floor {k}" for k in keys], *[f"codes {k}" for k in keys],
            "loss", "s"]
    lines = ["Each run; a std entry's standard error over its anchors in brackets.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["setting"], str(r["binary_len"]), str(r["seed"]), *[entry(r, k) for k in std_keys],
                 *[f"{r['floor'][k]:.3f}" for k in keys], *[str(r["distinct_codes"][k]) for k in keys],
                 str(r.get("final_loss", "–")), str(r.get("train_seconds", "–"))]
        lines.append("| " + " | ".join(cells) + " |")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["setting"], r["binary_len"]), []).append(r)

    def spread(values):
        values = np.array(values, dtype=float)
        return f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else "")
    if any(len(g) > 1 for g in groups.values()):
        head = ["setting", "bits", "seeds", *std_keys, *[f"floor {k}" for k in keys]]
        lines += ["", "Over the seeds: mean ± standard deviation (ddof 1).", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for (name, bits), g in groups.items():
            cells = [name, str(bits), str(len(g)),
                     *[spread([r["std_table"][k] for r in g]) if all("std_table" in r for r in g) else "–"
                       for k in std_keys],
                     *[spread([r["floor"][k] for r in g]) for k in keys]]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--bits", type=int, nargs="+", default=[8, 12, 15, 20])
    a.add_argument("--setting", nargs="+", action="append", metavar=("NAME", "KEY=VALUE"),
                   help="a named setting and its overrides of params.yaml (repeatable); default: params.yaml as is")
    a.add_argument("--seeds", type=int, nargs="+", default=[0])
    a.add_argument("--floor-only", action="store_true", help="no training: the floor of a fresh random W")
    a.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    a.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = a.parse_args()
    for name, *overrides in args.setting or []:
        if any(item.partition("=")[0] == "hcdm.seed" for item in overrides):
            a.error(f"--setting {name}: hcdm.seed is what --seeds sets")
    raw = config.load_yaml(args.params.read_text())
    train = torch.from_numpy(artifacts.load_latents(ROOT / artifacts.LATENTS)["train"]).float()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, *overrides in args.setting or [["default"]]:
            for bits in args.bits:
                cfg = with_overrides(raw, [*overrides, f"binary_len={bits}"])
                for seed in args.seeds:
                    row = {"setting": name, "overrides": overrides, "binary_len": bits, "seed": seed,
                           **one_run(cfg, train, seed, args.floor_only, Path(tmp), f"{name}-{bits}-{seed}")}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    io.save_json(args.out.with_suffix(".json"), {"train_instances": len(train), "runs": rows})
    io.save_text(args.out.with_suffix(".md"), markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
