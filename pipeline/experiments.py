"""Experiments into tables: `dvc exp show --json` -> one pandas DataFrame (a row per run, params and
metrics as dotted columns), then the mean and spread over seeds of each group of runs, written as
JSON and markdown.

    for d in skip_mlp mlp; do for o in x0 eps; do for s in 0 1 2; do
      dvc exp run --queue -n $d-$o-s$s -S hcdm.denoiser=$d -S hcdm.objective=$o -S hcdm.seed=$s
    done; done; done
    dvc queue start --jobs 1          # wait for `dvc queue status` to show them done
    python -m pipeline.experiments --by hcdm.denoiser hcdm.objective --out metrics/denoiser

Columns are `params.<key>` (params.yaml) and `<metrics file>.<key>` (e.g. `generation.fid`,
`hierarchy.mean_retained_variance.k=1`). Spread is the sample standard deviation (ddof 1) over
the runs of a group; n counts them. Only seeds are pooled: runs that differ in another param than --by
are rows of their own, that param a column (a note says which).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import io
from .config import load_yaml

# The figures a comparison of Stage-2 priors reads, when present (images | shapes; Table 2; control).
DEFAULT_COLUMNS = (
    "generation.fid", "generation.kid", "generation.coverage", "generation.mmd", "generation.one_nna",
    "generation.memorisation_distance", "generation.std_table.*", "generation.std_table_memorised.*",
    "hierarchy.mean_retained_variance.k=1", "hierarchy.mean_retained_variance.k=2",
)
# A run's identity is its results: the same run listed twice (the workspace and its commit, a branch, an
# experiment whose params were rendered with one more key, a table's recorded copy) agrees on every metric
# both listings have, to the last digit, which two runs of other params or seeds never do; it is kept once.
# Timings are left out (a rerun that gives the same bytes is the same result), and so is what a collector
# derives from them.
VOLATILE = ("seconds", "peak_rss_mib", "stage1_ms_per_step")
# Params whose runs are replicates of one setting: a table pools them into a mean and a spread (the seeds),
# and params that change no result (threads, how often a stage logs or checkpoints).
REPLICATES = ("seed", "threads", "log_every", "checkpoint_every")


def records(node, out: list, experiment: bool = False, state: str | None = None) -> list:
    """Every record of `dvc exp show --json`, however nested, as (record, whether it is an experiment
    of a commit rather than the workspace or a commit itself, its executor's state: None once done,
    else e.g. "running" or "queued")."""
    if isinstance(node, dict):
        if isinstance(node.get("executor"), dict):
            state = node["executor"].get("state")
        data = node.get("data")
        if isinstance(data, dict) and "params" in data and "rev" in node:
            out.append((node, experiment, state))
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                records(value, out, experiment or key == "experiments", state)
    elif isinstance(node, list):
        for value in node:
            records(value, out, experiment, state)
    return out


NULL = "null"       # a params cell whose key the run set to null


def flatten(d, prefix: str = "") -> dict:
    """Nested mapping -> {dotted key: leaf}; lists are leaves."""
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def frame(payload) -> pd.DataFrame:
    """One row per run that has generation metrics, in listing order; a failed run is no row (both are
    named in a note on stderr). A run listed again (the workspace repeating an experiment or its commit)
    is kept once: as the experiment if it is one (its name and params are the run's), else as its
    fullest listing."""
    rows, named, failed, unfinished = [], [], [], []
    for rec, experiment, state in records(payload, []):
        rev = str(rec["rev"])
        name = rec.get("name") or (rev if rev == "workspace" else rev[:7])
        if rec.get("error") or state == "failed":   # it lists its baseline's metrics files as its own
            failed.append(name)
            continue
        if state not in (None, "success"):   # running or queued: it lists the workspace's metrics meanwhile
            unfinished.append(f"{name} ({state})")
            continue
        data = rec["data"]
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        metrics = {Path(name).stem: (m or {}).get("data") for name, m in (data.get("metrics") or {}).items()}
        if not metrics.get("generation"):
            unfinished.append(name)
            continue
        # A param set to null is "null", a value like any other: a run without the key (older code) stays
        # empty. Both as NaN, `varying` took a key null in one run and 4096 in another for a constant.
        row = {"experiment": name, **{k: NULL if v is None else v for k, v in flatten(params, "params.").items()}}
        for stem, values in metrics.items():
            row.update(flatten(values, f"{stem}."))
        rows.append(row)
        named.append(experiment)
    for what, names in (("failed", failed), ("not run to the end (still running or queued, or without "
                                              "metrics/generation.json)", unfinished)):
        if names:
            print(f"note: left out {len(names)} run(s) {what}: {', '.join(names[:20])}"
                  + (", ..." if len(names) > 20 else ""), file=sys.stderr)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return distinct(df, named)


def distinct(df: pd.DataFrame, named) -> pd.DataFrame:
    """Each run once: two rows are one run when they share a metric and agree on every metric both have
    (timings aside: VOLATILE). An experiment's listing is kept before others, then the fullest."""
    values = df[[c for c in df.columns if c != "experiment" and not c.startswith("params.")
                 and c.rsplit(".", 1)[-1] not in VOLATILE]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    rank = pd.DataFrame({"experiment": named, "filled": df.notna().sum(axis=1)})
    kept: list[int] = []
    for i in rank.sort_values(["experiment", "filled"], ascending=False, kind="stable").index:
        both = ~np.isnan(values[i]) & ~np.isnan(values[kept])                # (kept, metrics): None and NaN alike
        same = both.any(1) & ((values[kept] == values[i]) | ~both).all(1)
        if not same.any():
            kept.append(i)
    return df.loc[sorted(kept)].reset_index(drop=True)


def recorded(path: Path) -> pd.DataFrame:
    """The runs an earlier table recorded (its JSON's `runs`); SystemExit(2) with one line naming the file."""
    try:
        payload = json.loads(Path(path).read_text())
        rows = payload["runs"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError("`runs` is not a list of records")
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: --also {path}: not a table's JSON with its `runs` ({type(e).__name__}: {e})", file=sys.stderr)
        raise SystemExit(2)
    return pd.DataFrame(rows)


def select(df: pd.DataFrame, patterns) -> list[str]:
    """The columns of `df` matching the patterns (a trailing `*` matches a prefix), in pattern order."""
    out = []
    for p in patterns:
        hits = [c for c in df.columns if (c.startswith(p[:-1]) if p.endswith("*") else c == p)]
        out += [c for c in hits if c not in out]
    return out


def varying(df: pd.DataFrame, by: list[str]) -> list[str]:
    """The params columns besides `by` and the seeds (REPLICATES) that hold two values or more among the runs."""
    return [c for c in df.columns if c.startswith("params.") and c not in by
            and not c.rsplit(".", 1)[-1].endswith(REPLICATES) and df[c].dropna().astype(str).nunique() > 1]


def summarise(df: pd.DataFrame, by: list[str], columns: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """(per group: `<column> mean`, `<column> std` (ddof 1; NaN for one run) and `n`; the group keys).

    Only replicates are pooled: runs that differ in a param other than `by` and the seeds (binary_len among
    Table 1's runs, loe.variant among the ablation's flat priors) are rows of their own, that param a key
    column after `by` (said in a note on stderr)."""
    extra = varying(df, by)
    if extra:
        print(f"note: rows also split by {', '.join(c[len('params.'):] for c in extra)}: they differ between "
              "these runs, and only seeds are pooled (narrow the runs with --where)", file=sys.stderr)
    keys = [*by, *extra]
    numeric = df[columns].apply(pd.to_numeric, errors="coerce")
    labels = df[keys].apply(lambda column: column.map(   # Series.map: DataFrame.map needs pandas 2.1
        lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)))
    groups = pd.concat([labels, numeric], axis=1).groupby(keys, sort=True, dropna=False)   # a missing value: "–"
    out = groups[columns].agg(["mean", "std"])
    out.columns = [f"{c} {stat}" for c, stat in out.columns]
    out["n"] = groups.size()
    return out.reset_index(), keys


def ordered(summary: pd.DataFrame, first, extra: list[str]) -> pd.DataFrame:
    """The summary's rows sorted by `first(row)` (a tuple), then by the `extra` key columns summarise added,
    as text."""
    def key(i):
        row = summary.iloc[i]
        return (*first(row), *(str(row[k]) for k in extra))
    return summary.iloc[sorted(range(len(summary)), key=key)].reset_index(drop=True)


def numeric_order(label: str) -> tuple:
    """A group label's sort key: numbers by value ("8" before "12.0"), then text, a missing value ("–") last."""
    try:
        return 0, float(label), ""
    except ValueError:
        return (2, 0.0, "") if label == "–" else (1, 0.0, label)


def cell(mean, std=None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if not isinstance(mean, (int, float)):
        return str(mean)
    text = f"{mean:.4g}"
    return text if std is None or math.isnan(std) else f"{text} ± {std:.2g}"


def short(column: str) -> str:
    """`generation.std_table.std_12` -> `std_12`; `hierarchy.mean_retained_variance.k=1` -> `retained k=1`."""
    for prefix, name in (("generation.std_table_memorised.", "floor "), ("generation.std_table_standard_error.", "se "),
                         ("generation.std_table.", ""),
                         ("hierarchy.mean_retained_variance.", "retained "), ("generation.", ""), ("params.", "")):
        if column.startswith(prefix):
            return name + column[len(prefix):]
    return column


def summary_markdown(summary: pd.DataFrame, by: list[str], columns: list[str]) -> str:
    head = [short(c) for c in by] + [short(c) for c in columns] + ["n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [str(r[c]) for c in by] + [cell(r[f"{c} mean"], r[f"{c} std"]) for c in columns] + [str(r["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def runs_markdown(df: pd.DataFrame, columns: list[str]) -> str:
    head = ["experiment"] + [short(c) for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join([str(r["experiment"])] + [cell(r.get(c)) for c in columns]) + " |")
    return "\n".join(lines) + "\n"


def add_selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--num", type=int, default=1,
                   help="commits to include, newest first (as `dvc exp show -n`): experiments hang off the "
                        "commit they were queued from")
    p.add_argument("--where", nargs="+", default=[], metavar="KEY=VALUE",
                   help="keep only the runs whose params.yaml has these values (e.g. binary_len=12)")
    p.add_argument("--also", nargs="+", type=Path, default=[], metavar="TABLE.json",
                   help="add the runs an earlier table's JSON recorded (its `runs`): seeds run in another clone "
                        "or on another day join this repository's experiments")
    p.add_argument("--pool", nargs="+", default=[], metavar="KEY",
                   help="params.yaml keys whose values do not make another setting here (e.g. dataset.path of the "
                        "same data in two clones): their runs pool like seeds instead of making rows of their own")


def collect(prog: str, doc: str, out: Path, tables, argv: list[str] | None) -> int:
    """A table collector's command: the selected runs through `tables(df) -> (JSON, markdown)`, written as
    OUT.json and OUT.md and printed; exit code 2 (said in one line) when no run is selected."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=out, help="writes OUT.json and OUT.md")
    a, df = parse_and_read(p, argv)
    if a is None:
        return df
    payload, md = tables(df)
    io.save_json(a.out.with_suffix(".json"), payload)
    io.save_text(a.out.with_suffix(".md"), md)
    print(md)
    return 0


def parse_and_read(p: argparse.ArgumentParser, argv: list[str] | None):
    """A collector's command line: its own arguments plus -n/--where, then the selected runs.
    Returns (arguments, runs), or (None, exit code) when there are none (runs() has said why, in one line)."""
    add_selection_args(p)
    a = p.parse_args(argv)
    try:
        return a, runs(a.num, a.where, a.also, a.pool)
    except SystemExit as e:
        return None, int(e.code)


def runs(commits: int, where: list[str] = (), also: list[Path] = (), pool: list[str] = ()) -> pd.DataFrame:
    """The runs of the last `commits` commits' experiments, with those recorded in `also` (tables' JSON),
    whose params match `where` (KEY=VALUE, the value read as YAML), less the params in `pool` (their values
    then split no row); SystemExit(2) with one line when there are none."""
    df = frame(exp_show(commits))
    if also:
        earlier = [recorded(path) for path in also]
        df = distinct(pd.concat([df, *earlier], ignore_index=True),   # this repository's listing of a run first
                      [True] * len(df) + [False] * sum(map(len, earlier)))
    for item in where:
        key, sep, value = item.partition("=")
        if not sep or f"params.{key}" not in df.columns:
            print(f"error: --where {item}: expected KEY=VALUE with KEY a params.yaml key of these experiments",
                  file=sys.stderr)
            raise SystemExit(2)
        df = df[df[f"params.{key}"].map(lambda v, want=load_yaml(value): same(v, want))].reset_index(drop=True)
    for key in pool:
        if f"params.{key}" not in df.columns:
            print(f"error: --pool {key}: not a params.yaml key of these experiments", file=sys.stderr)
            raise SystemExit(2)
        values = sorted(df[f"params.{key}"].dropna().astype(str).unique())
        print(f"note: pooled over {key}: {', '.join(values[:10])}", file=sys.stderr)
        df = df.drop(columns=[f"params.{key}"])
    if df.empty:
        print("error: no experiment with metrics/generation.json" + (" matches --where" if where else " yet")
              + "; run the experiments first", file=sys.stderr)
        raise SystemExit(2)
    return df


def same(value, want) -> bool:
    """A params cell against a wanted value: numbers by value (a column with gaps holds 12 as 12.0); `null`
    matches a param left null (pandas holds it as None or NaN)."""
    numbers = (int, float)
    if want is None:
        return value is None or value == NULL or (isinstance(value, float) and math.isnan(value))
    if isinstance(value, numbers) and isinstance(want, numbers) and not isinstance(want, bool):
        return float(value) == float(want)
    return value == want


def exp_show(commits: int) -> dict | list:
    """`dvc exp show --json` of the last `commits` commits; SystemExit(2) with DVC's last line if it fails."""
    r = subprocess.run(["dvc", "exp", "show", "--json", "-n", str(commits)], capture_output=True, text=True)
    if r.returncode != 0:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode
        print(f"error: dvc exp show failed: {last}", file=sys.stderr)
        raise SystemExit(2)
    return json.loads(r.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--by", nargs="+", required=True, metavar="KEY",
                   help="params.yaml keys whose values form the groups (e.g. hcdm.denoiser hcdm.objective)")
    p.add_argument("--columns", nargs="+", default=list(DEFAULT_COLUMNS), metavar="COLUMN",
                   help="metric columns (a trailing * takes a prefix); default: the Stage-2 comparison's")
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    a, df = parse_and_read(p, argv)
    if a is None:
        return df
    by = [f"params.{k}" for k in a.by]
    missing = [k for k, c in zip(a.by, by) if c not in df.columns]
    if missing:
        print(f"error: --by {missing[0]}: not a key of params.yaml in these experiments", file=sys.stderr)
        return 2
    older = df[by].isna().all(axis=1)          # a commit before these params: not one of the compared runs
    if older.any():
        print(f"note: left out {int(older.sum())} run(s) without any --by param (older commits): "
              + ", ".join(map(str, df.loc[older, "experiment"])), file=sys.stderr)
        df = df[~older].reset_index(drop=True)
    columns = select(df, a.columns)
    summary, keys = summarise(df, by, columns)
    io.save_json(a.out.with_suffix(".json"), {
        "by": [k[len("params."):] for k in keys], "spread": "sample standard deviation (ddof 1) over the runs of a group",
        "summary": json.loads(summary.to_json(orient="records")),
        "runs": json.loads(df.to_json(orient="records"))})   # whole rows: --also knows each run again by them
    text = summary_markdown(summary, keys, columns) + "\n" + runs_markdown(df, [*keys, *columns])
    io.save_text(a.out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
