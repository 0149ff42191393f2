"""Collect the ablations (paper Table 2 and fig. 8, plus the flat baseline) from DVC experiments
into `metrics/ablation.json` and a markdown table, on the shared collector (`pipeline.experiments`).

    for b in 8 12 15 20; do dvc exp run --queue -n bl$b -S binary_len=$b; done
    for v in unconditional flat; do dvc exp run --queue -n $v -S hcdm.variant=$v; done
    dvc queue start --jobs 1          # wait for `dvc queue status` to show them done
    python -m pipeline.ablation       # -> metrics/ablation.json, metrics/ablation.md

Every experiment of the current commit (and the workspace) becomes a run; `-n 2` also takes the
commit before, and so on. Runs that differ only in a seed are one row: mean ± spread; runs that differ in
another param too (Table 1's mNIF- and Functa-style flat priors, `loe.variant`) are rows of their own.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .experiments import collect, numeric_order, ordered, select, summarise, summary_markdown

# The paper's Table 2 (CelebA-HQ, ShapeNet, SRN-Cars): std_1, std_12, std_23, std_34, std_45 per binary_len.
PAPER_TABLE_2 = {
    "CelebA-HQ": {8: (0.7766, 0.9153, 0.9363, 0.8772, 0.8631), 12: (0.7766, 0.9092, 0.9292, 0.8663, 0.8550),
                  15: (0.7766, 0.5344, 0.5478, 0.3257, 0.2570), 20: (0.7766, 0.1032, 0.1121, 0.0853, 0.0766)},
    "ShapeNet": {8: (0.8533, 0.9510, 0.8933, 0.7682, 0.7301), 12: (0.8533, 0.9424, 0.8712, 0.7327, 0.7110),
                 15: (0.8533, 0.6125, 0.5241, 0.4088, 0.3857), 20: (0.8533, 0.1051, 0.0823, 0.0715, 0.0522)},
    "SRN-Cars": {8: (0.7223, 1.1270, 1.1108, 0.9474, 1.1210), 12: (0.7223, 1.0663, 1.0180, 0.9331, 1.1803),
                 15: (0.7223, 0.6348, 0.6432, 0.5837, 0.6578), 20: (0.7223, 0.1048, 0.1122, 0.0821, 0.0933)},
}
TABLE_2 = ("generation.std_table.*", "generation.std_table_memorised.*", "generation.std_table_standard_error.*")
QUALITY = ("generation.fid", "generation.kid", "generation.precision", "generation.recall", "generation.coverage",
           "generation.mmd", "generation.one_nna", "generation.memorisation_distance")   # images | shapes
VARIANT, BITS = "params.hcdm.variant", "params.binary_len"


def paper_markdown() -> str:
    lines = ["| dataset | binary_len | std_1 | std_12 | std_23 | std_34 | std_45 |", "|---|---|---|---|---|---|---|"]
    for name, rows in PAPER_TABLE_2.items():
        lines += [f"| {name} | {b} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for b, row in rows.items()]
    return "\n".join(lines) + "\n"


def tables(df) -> tuple[dict, str]:
    """(JSON, markdown): Table 2 over the hierarchical runs by binary_len, the prior variants side by side."""
    hier = df[df[VARIANT] == "hierarchical"] if VARIANT in df else df.iloc[:0]
    std_cols = select(df, TABLE_2)
    table2, t2_keys = summarise(hier, [BITS], std_cols) if len(hier) and std_cols else (None, [BITS])
    if table2 is not None:   # numeric order of binary_len (a column with gaps holds 12 as "12.0"), not string order
        table2 = ordered(table2, lambda row: (numeric_order(row[BITS]),), t2_keys[1:])
    quality = select(df, QUALITY)
    variants, v_keys = summarise(df, [VARIANT, BITS], quality)
    variants = ordered(variants, lambda row: (row[VARIANT], numeric_order(row[BITS])), v_keys[2:])
    md = ["## Binary condition length (paper Table 2): ours", "",
          "Standardised latents, the model's own chain (prefixes drawn from it); `floor` is what a prior that "
          "reproduced its training pairs code by code would give (`std_table_memorised`); `se` is the standard "
          "error of an entry from its anchors and draws within one run (`std_table_standard_error`; mean ± spread "
          "over runs): two runs' entries closer than about three of it (2√2 se) are not told apart.", ""]
    md += [summary_markdown(table2, t2_keys, std_cols) if table2 is not None else "(no hierarchical run)\n",
           "## The paper's Table 2", "", paper_markdown(), "## Prior variants", "",
           summary_markdown(variants, v_keys, quality)]
    payload = {"table_2": json.loads(table2.to_json(orient="records")) if table2 is not None else [],
               "paper_table_2": {k: {str(b): v for b, v in rows.items()} for k, rows in PAPER_TABLE_2.items()},
               "variants": json.loads(variants.to_json(orient="records")),
               "runs": json.loads(df.to_json(orient="records"))}
    return payload, "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    return collect("python -m pipeline.ablation", __doc__, Path("metrics/ablation"), tables, argv)


if __name__ == "__main__":
    sys.exit(main())
