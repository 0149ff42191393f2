"""Collect the ablations (paper Table 2 and fig. 8, plus the flat baseline) from
DVC experiments into `metrics/ablation.json` and a markdown table.

    for b in 8 12 15 20; do dvc exp run --queue -n bl$b -S binary_len=$b; done
    for v in unconditional flat; do dvc exp run --queue -n $v -S hcdm.variant=$v; done
    dvc queue start --jobs 1          # wait for `dvc queue status` to show them done
    python -m pipeline.ablation       # -> metrics/ablation.json, metrics/ablation.md

Every experiment of the current commit (and the workspace) becomes a row;
`-n 2` also takes the commit before, and so on.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from . import io

PARAMS = {"binary_len": ("binary_len",), "variant": ("hcdm", "variant")}
METRICS = ("fid", "kid", "precision", "recall", "coverage", "mmd", "one_nna", "memorisation_distance")   # images | shapes


def _get(d: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _records(node, out: list) -> list:
    """Every experiment record of `dvc exp show --json`, however nested."""
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and "params" in data and "rev" in node:
            out.append(node)
        for value in node.values():
            if isinstance(value, (dict, list)):
                _records(value, out)
    elif isinstance(node, list):
        for value in node:
            _records(value, out)
    return out


def rows_from_exp_show(payload) -> list[dict]:
    rows, seen = [], {}
    for rec in _records(payload, []):
        data = rec["data"]
        params = _get(data, ("params", "params.yaml", "data")) or {}
        gen = _get(data, ("metrics", "metrics/generation.json", "data"))
        if not gen:
            continue
        rev = str(rec["rev"])
        name = rec.get("name") or (rev if rev == "workspace" else rev[:7])
        row = {"experiment": name, **{k: _get(params, p) for k, p in PARAMS.items()}}
        row.update({k: gen.get(k) for k in METRICS})
        row.update(gen.get("std_table") or {})
        row.update({f"raw_{k}": v for k, v in (gen.get("std_table_raw") or {}).items()})
        # The paper's reading: std_1 from the data, prefixes from train instances, raw units.
        row.update({f"data_{k}": v for k, v in (_get(gen, ("std_table_data_anchored", "raw")) or {}).items()})
        row.update({f"rel_{k}": v for k, v in (gen.get("std_table_relative") or {}).items()})
        # The same run listed again (workspace, branch, an older commit, a re-evaluation
        # with more metrics) has the same params and core metrics: keep the fullest row.
        key = json.dumps({k: v for k, v in row.items() if k != "experiment" and not k.startswith(("rel_", "raw_", "data_"))},
                         sort_keys=True)
        if key in seen:
            i = seen[key]
            if sum(v is not None for v in row.values()) > sum(v is not None for v in rows[i].values()):
                rows[i] = row
            continue
        seen[key] = len(rows)
        rows.append(row)
    return rows


def _cell(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown(rows: list[dict]) -> str:
    """Two tables: the binary-length std table (Table 2) and the prior variants side by side."""
    groups = ("std_", "raw_std_", "data_std_", "rel_std_")   # standardised, raw, data-anchored raw, relative
    std_cols = sorted({k for r in rows for k in r if k.startswith(groups)},
                      key=lambda k: (next(i for i, g in enumerate(groups) if k.startswith(g)), len(k), k))
    hier = sorted((r for r in rows if r.get("variant") == "hierarchical"), key=lambda r: r.get("binary_len") or 0)
    lines = ["## Binary condition length (paper Table 2)", "",
             "| experiment | binary_len | " + " | ".join(std_cols) + " |",
             "|---|---|" + "---|" * len(std_cols)]
    lines += [f"| {r['experiment']} | {_cell(r['binary_len'])} | " + " | ".join(_cell(r.get(c)) for c in std_cols) + " |"
              for r in hier]
    metrics = [m for m in METRICS if any(r.get(m) is not None for r in rows)]   # the modality's own
    lines += ["", "## Prior variants", "", "| experiment | variant | binary_len | " + " | ".join(metrics) + " |",
              "|---|---|---|" + "---|" * len(metrics)]
    lines += [f"| {r['experiment']} | {_cell(r['variant'])} | {_cell(r['binary_len'])} | "
              + " | ".join(_cell(r.get(m)) for m in metrics) + " |"
              for r in sorted(rows, key=lambda r: (str(r.get("variant")), r.get("binary_len") or 0))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("metrics/ablation"), help="writes OUT.json and OUT.md")
    p.add_argument("-n", "--num", type=int, default=1,
                   help="commits to include, newest first (as `dvc exp show -n`): experiments hang off the "
                        "commit they were queued from")
    a = p.parse_args(argv)
    r = subprocess.run(["dvc", "exp", "show", "--json", "-n", str(a.num)], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"error: dvc exp show failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}",
              file=sys.stderr)
        return 2
    rows = rows_from_exp_show(json.loads(r.stdout))
    if not rows:
        print("error: no experiment has metrics/generation.json yet; run the experiments first", file=sys.stderr)
        return 2
    io.save_json(a.out.with_suffix(".json"), {"experiments": rows})
    io.save_text(a.out.with_suffix(".md"), markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
