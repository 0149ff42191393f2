"""dvc.yaml stays complete: a code change can never leave a result stale, and no param is owned by no stage."""
from pathlib import Path

import yaml

from conftest import ROOT

from pipeline.deps import PACKAGE, closure, cycles, graph, imports_of, rewrite


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_lists_every_module_it_runs():
    missing = {}
    for name, stage in stages().items():
        cmd = stage["cmd"].split()
        assert cmd[:3] == ["python", "-m", f"pipeline.stages.{name}"], f"{name}: unexpected cmd {stage['cmd']}"
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
        needed = {str(p.relative_to(ROOT)) for p in closure(cmd[2])}
        lacking = sorted(p for p in needed if not covered(p, deps))
        if lacking:
            missing[name] = lacking
    assert not missing, f"dvc.yaml deps miss modules the stage imports: {missing}"


def test_dvc_yaml_module_deps_are_generated_from_the_imports():
    """`python -m pipeline.deps` writes them; a module added or removed shows here until it is rerun."""
    text = (ROOT / "dvc.yaml").read_text()
    assert rewrite(text) == text, "dvc.yaml's module deps are stale: run `python -m pipeline.deps`"
    # The rewrite keeps every other line: data deps, comments, params and outs.
    stale = text.replace("      - pipeline/hcdm.py\n", "", 1).replace("      - pipeline/io.py\n", "      - pipeline/x.py\n", 1)
    assert rewrite(stale) == text


def test_the_package_has_no_import_cycle():
    g = graph()
    assert len(g) > 60 and "pipeline.prepared" in g["pipeline.datasets"]
    assert cycles(g) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]   # the check itself


def test_plug_ins_sit_below_datasets_and_their_scorers_open_no_file():
    """A plug-in never imports `datasets` (which builds plug-ins) or the stages; an evaluation plug-in gets
    everything in `scoring.Scoring` and imports neither `artifacts` (where files are) nor `io`."""
    g = graph()
    plugins = [m for m in g if m.startswith(f"{PACKAGE}.modalities")]
    assert {m: sorted(d) for m in plugins
            if (d := {x for x in g[m] if x == f"{PACKAGE}.datasets" or x.startswith(f"{PACKAGE}.stages")})} == {}
    scorers = [m for m in plugins if m.endswith(".evaluation") and m != f"{PACKAGE}.modalities.evaluation"]
    assert len(scorers) == 4
    assert {m: sorted(d) for m in scorers
            if (d := g[m] & {f"{PACKAGE}.artifacts", f"{PACKAGE}.io", f"{PACKAGE}.factors"})} == {}


def test_closure_is_what_the_stage_runs():
    """train_hcdm runs the HCDM, not Stage-1: editing the LoE must not retrain it, editing the HCDM must."""
    files = {str(p.relative_to(ROOT)) for p in closure("pipeline.stages.train_hcdm")}
    for f in ("pipeline/stages/train_hcdm.py", "pipeline/stages/__init__.py", "pipeline/hcdm.py", "pipeline/training.py",
              "pipeline/io.py", "pipeline/errors.py", "pipeline/config.py", "pipeline/artifacts.py"):
        assert f in files, f
    for f in ("pipeline/loe.py", "pipeline/meta.py", "pipeline/datasets.py", "pipeline/stages/evaluate.py"):
        assert f not in files, f
    assert "pipeline/hcdm.py" not in {str(p.relative_to(ROOT)) for p in closure("pipeline.stages.fit_loe")}


def leaf_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out += leaf_keys(v, key + ".") if isinstance(v, dict) else [key]
    return out


def test_every_param_is_owned_by_a_stage():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    owned = [p for stage in stages().values() for p in stage.get("params", []) if isinstance(p, str)]
    from pipeline.config import RUNTIME_ONLY

    orphans = [k for k in leaf_keys(params) if not any(k == o or k.startswith(o + ".") for o in owned + list(RUNTIME_ONLY))]
    assert not orphans, f"params no stage depends on (a change would never rerun or validate anything): {orphans}"
    stale = [o for o in owned if not any(k == o or k.startswith(o + ".") for k in leaf_keys(params))]
    assert not stale, f"dvc.yaml names params that params.yaml lacks: {stale}"


def test_the_first_stage_validates_the_whole_params_file():
    """Keys no stage reads (a top-level typo, `threads`) are validated too: check_params depends on every
    key of params.yaml."""
    first, stage = next(iter(stages().items()))
    assert first == "check_params" and stage["params"] == [{"params.yaml": None}]
    # Its one output, the same bytes whenever the file is valid, is prepare's dependency: every target's
    # upstream, so `dvc repro <target>` validates the file first too.
    assert stage["outs"] == [{"metrics/detail/check_params.json": {"cache": False}}]
    assert "metrics/detail/check_params.json" in stages()["prepare"]["deps"]


def test_each_stage_removes_exactly_its_declared_outputs_when_it_stops():
    """A stage's OUTPUTS (removed when it stops early) are dvc.yaml's outs, metrics and plots,
    less the ones that must survive a failure: persist checkpoints and the training curves."""
    import importlib

    for name, stage in stages().items():
        declared = set()
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, opts = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
                if not (opts or {}).get("persist") and not path.startswith("metrics/curves/"):
                    declared.add(path)
        module = importlib.import_module(f"pipeline.stages.{name}")
        assert {str(p) for p in module.OUTPUTS} == declared, name


def top_level_plots() -> dict[str, list[str]]:
    """dvc.yaml's top-level plots: each file drawn -> the columns drawn from it (none for a picture). An entry is
    a file (its `y` a column or a list of them), or an id whose `y` maps files to columns."""
    drawn: dict[str, list[str]] = {}
    for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]:
        name, spec = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        y = (spec or {}).get("y", [])
        targets = y if isinstance(y, dict) else {name: y}
        for path, columns in targets.items():
            drawn.setdefault(path, []).extend([columns] if isinstance(columns, str) else columns)
    return drawn


def test_each_plot_is_declared_once():
    """A stage `plots:` output that a top-level `plots:` entry also names is drawn twice by `dvc plots show`."""
    top = set(top_level_plots())
    stage_plots = {next(iter(p)) if isinstance(p, dict) else p
                   for stage in stages().values() for p in stage.get("plots", [])}
    assert not top & stage_plots, f"declared twice: {sorted(top & stage_plots)}"


def test_every_training_curve_is_drawn_from_columns_its_csv_has():
    """Each long stage's curve is a top-level plot, and every column drawn is in the committed CSV's header."""
    drawn = top_level_plots()
    curves = {f"metrics/curves/{name}.csv" for name in ("fit_loe", "train_hcdm", "factor_predictor")}
    assert curves <= set(drawn)
    for path in curves:
        header = (ROOT / path).read_text().splitlines()[0].split(",")
        assert drawn[path] and set(drawn[path]) <= set(header) and "step" in header, (path, drawn[path], header)
    assert drawn["metrics/curves/fit_loe.csv"] == ["loss", "psnr"]   # two plots: the scales differ 100-fold


def test_readme_pictures_are_not_stage_outputs():
    """A run on a user's data rewrites the stage outputs; the README's pictures must not change with it."""
    import re

    outputs = []
    for stage in stages().values():
        for kind in ("outs", "metrics", "plots"):
            outputs += [e if isinstance(e, str) else next(iter(e)) for e in stage.get(kind, [])]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert links, "the README shows no pictures"
    for link in links:
        assert (ROOT / link).exists(), link
        assert not any(link == o or link.startswith(o.rstrip("/") + "/") for o in outputs), f"{link} is a stage output"


def test_the_docs_pictures_are_the_committed_default_runs_figures():
    """docs/images keeps copies of the default run's figures for the README and docs/control.md (a run on a
    user's data rewrites the stage outputs, not these); where the checkout's figures are the committed ones,
    each copy equals its figure byte for byte, so a new default run's figures cannot leave the docs stale."""
    import subprocess

    copies = {p.name: p for p in (ROOT / "docs/images").glob("*.png") if p.name != "serve.png"}
    assert {"tree.png", "hierarchy.png"} <= set(copies)
    for name, copy in copies.items():
        source = next((ROOT / d / name for d in ("metrics/analysis", "metrics/figures") if (ROOT / d / name).exists()))
        committed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", str(source)], cwd=ROOT).returncode == 0
        if committed:
            assert copy.read_bytes() == source.read_bytes(), f"{copy} is not {source}: copy the new figure"


def test_no_module_below_the_stages_imports_the_stage_runner():
    """Layers point one way: models, plug-ins and tools sit below `pipeline.stages`; a plug-in reports a weak
    figure through `pipeline.errors.warn`, never through the runner."""
    below = [p for p in (ROOT / PACKAGE).rglob("*.py") if "stages" not in p.relative_to(ROOT).parts]
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in closure_names(p) if m.startswith(f"{PACKAGE}.stages"))
                 for p in below}
    assert {k: v for k, v in offenders.items() if v} == {}


def closure_names(path: Path) -> set[str]:
    """Every package module `path` reaches through imports, by dotted name."""
    return {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for f in closure(*imports_of(path))}


def test_every_stage_that_computes_on_the_device_lists_the_device_param():
    """A stage whose main reads its `device` argument gives other bits on another device, so `device` is one
    of its params (a change must rerun it)."""
    import ast

    for name, stage in stages().items():
        if name == "check_params":
            continue
        module = stage["cmd"].split()[-1]
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        main = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "main")
        reads = any(isinstance(n, ast.Name) and n.id == "device" and isinstance(n.ctx, ast.Load)
                    for n in ast.walk(main))
        assert reads == ("device" in stage.get("params", [])), f"{name}: reads device {reads}, lists it " \
                                                               f"{'device' in stage.get('params', [])}"


def param_reads(path: Path, sections: set[str]) -> set[str]:
    """The params a stage's own file reads: `cfg.section.key`, `cfg.key`, and `alias.key` for an alias bound
    to a section (`s = cfg.sample`, `h, s = cfg.hierarchy, cfg.sample`, `fit = precision_here(cfg.fit_loe, ...)`,
    `h = precision_here(h, ...)`)."""
    import ast

    def chain(node) -> list[str] | None:
        names = []
        while isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        return [node.id, *reversed(names)] if isinstance(node, ast.Name) else None

    tree = ast.parse(path.read_text())
    aliases = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        pairs = zip(target.elts, value.elts) if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) \
            else [(target, value)]
        for t, v in pairs:
            if not isinstance(t, ast.Name):
                continue
            c = chain(v.args[0] if isinstance(v, ast.Call) and v.args else v)
            if c and c[0] == "cfg" and len(c) == 2 and c[1] in sections:
                aliases[t.id] = c[1]
            elif c and len(c) == 1 and c[0] in aliases:
                aliases[t.id] = aliases[c[0]]
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}   # a.b of a.b.c
    reads = set()
    for node in ast.walk(tree):
        c = chain(node) if isinstance(node, ast.Attribute) and id(node) not in inner else None
        if not c:
            continue
        if c[0] == "cfg" and len(c) >= 3 and c[1] in sections:
            reads.add(f"{c[1]}.{c[2]}")
        elif c[0] == "cfg" and c[1] not in sections:
            reads.add(c[1])
        elif c[0] in aliases:
            reads.add(f"{aliases[c[0]]}.{c[1]}")
    return reads


def test_every_param_a_stage_reads_is_among_its_dvc_params():
    """Else `dvc exp run -S key=value` leaves that stage's result from the old value."""
    from pipeline import config

    import dataclasses
    import typing

    sections = {k for k, t in typing.get_type_hints(config.Config).items() if dataclasses.is_dataclass(t)}
    missing = {}
    for name, stage in stages().items():
        listed = [p for p in stage.get("params", []) if isinstance(p, str)]
        if not listed:                                  # check_params: the whole file
            continue
        reads = param_reads(ROOT / "pipeline" / "stages" / f"{name}.py", sections)
        lacking = sorted(r for r in reads if not any(r == p or r.startswith(p + ".") for p in listed))
        if lacking:
            missing[name] = lacking
    assert not missing, f"stages read params dvc.yaml does not list for them: {missing}"
