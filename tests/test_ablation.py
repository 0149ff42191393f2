import json
import math

import pytest

from pipeline.ablation import tables
from pipeline.experiments import frame, main as collect_main, select, summarise


def record(rev, name, binary_len, variant, fid, std=None, seed=None, denoiser="skip_mlp", retained=None):
    gen = {"fid": fid, "kid": 0.01, "precision": 0.5, "recall": 0.4, "memorisation_distance": 3.0}
    if std is not None:
        gen["std_table"] = std
    metrics = {"metrics/generation.json": {"data": gen}}
    if retained is not None:
        metrics["metrics/hierarchy.json"] = {"data": {"mean_retained_variance": {"k=1": retained, "k=2": retained / 2}}}
    return {"rev": rev, "name": name, "data": {
        "rev": rev, "params": {"params.yaml": {"data": {
            "binary_len": binary_len, "hcdm": {"variant": variant, "seed": seed, "denoiser": denoiser}}}},
        "metrics": metrics}}


def test_runs_listed_twice_are_kept_once_and_flattened_to_dotted_columns():
    payload = [
        record("workspace", None, 12, "hierarchical", 20.0, {"std_1": 1.0, "std_12": 0.9}),
        {**record("abc1234def", "main", 12, "hierarchical", 20.0, {"std_1": 1.0, "std_12": 0.9}),
         "experiments": [{"revs": [record("e1", "bl8", 8, "hierarchical", 21.0, {"std_1": 1.0, "std_12": 0.95})]},
                         {"revs": [record("e2", "flat", 12, "flat", 30.0)]}]},
        {"rev": "no-metrics", "data": {"rev": "x", "params": {}, "metrics": {}}},   # not run yet: no row
    ]
    df = frame(payload)
    # "main" repeats the workspace's params and metrics: listed once.
    assert list(df["experiment"]) == ["workspace", "bl8", "flat"]
    assert df.loc[1, "generation.std_table.std_12"] == 0.95 and df.loc[2, "params.hcdm.variant"] == "flat"
    assert select(df, ["generation.std_table.*", "generation.fid"]) == [
        "generation.std_table.std_1", "generation.std_table.std_12", "generation.fid"]


def test_the_collector_gives_exactly_the_mean_and_spread_over_seeds():
    payload = [record(f"s{d}{s}", f"{d}-s{s}", 12, "hierarchical", fid, {"std_1": 1.0, "std_12": s12}, seed=s,
                      denoiser=d, retained=r)
               for d, rows in {"skip_mlp": [(40.0, 0.5, 0.2), (44.0, 0.7, 0.4)],
                               "mlp": [(60.0, 0.8, 0.3), (61.0, 0.8, 0.5), (65.0, 0.9, 0.1)]}.items()
               for s, (fid, s12, r) in enumerate(rows)]
    df = frame(payload)
    out, keys = summarise(df, ["params.hcdm.denoiser"], ["generation.fid", "generation.std_table.std_12",
                                                          "hierarchy.mean_retained_variance.k=1"])
    out = out.set_index("params.hcdm.denoiser")
    assert keys == ["params.hcdm.denoiser"]                                 # only the seeds differ besides
    assert out.loc["skip_mlp", "generation.fid mean"] == 42.0
    assert out.loc["skip_mlp", "generation.fid std"] == pytest.approx(math.sqrt(8.0))       # ddof 1: (2^2*2)/1
    assert out.loc["mlp", "generation.fid mean"] == 62.0
    assert out.loc["mlp", "generation.fid std"] == pytest.approx(math.sqrt((4 + 1 + 9) / 2))
    assert out.loc["mlp", "generation.std_table.std_12 mean"] == pytest.approx(2.5 / 3)
    assert out.loc["skip_mlp", "hierarchy.mean_retained_variance.k=1 mean"] == pytest.approx(0.3)
    assert out.loc["mlp", "n"] == 3 and out.loc["skip_mlp", "n"] == 2


def test_collector_command_writes_json_and_markdown(tmp_path, monkeypatch, capsys):
    payload = [record(f"r{s}", f"x-s{s}", 12, "hierarchical", 40.0 + 2 * s, {"std_1": 1.0}, seed=s) for s in range(3)]
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: payload)
    assert collect_main(["--by", "hcdm.denoiser", "--out", str(tmp_path / "study")]) == 0
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved["summary"][0]["generation.fid mean"] == 42.0 and saved["summary"][0]["n"] == 3
    assert "| skip_mlp | 42 ± 2 |" in (tmp_path / "study.md").read_text()
    assert collect_main(["--by", "hcdm.nothing", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == "error: --by hcdm.nothing: not a key of params.yaml in these experiments"


def test_table_2_by_binary_length_with_the_papers_beside_it():
    payload = [record("a", "bl8", 8, "hierarchical", 50.0, {"std_1": 1.0, "std_12": 0.9}),
               record("b", "bl20", 20, "hierarchical", 52.0, {"std_1": 1.0, "std_12": 0.2}),
               record("c", "bl12", 12, "hierarchical", 51.0, {"std_1": 1.0, "std_12": 0.6}),
               record("d", "unconditional", 12, "unconditional", 90.0, {"std_1": 1.0, "std_12": 1.0})]
    payload_json, md = tables(frame(payload))
    assert [r["params.binary_len"] for r in payload_json["table_2"]] == ["8", "12", "20"]   # numeric order
    assert "| 20 | 1 | 0.2 | 1 |" in md
    assert "| CelebA-HQ | 20 | 0.7766 | 0.1032 | 0.1121 | 0.0853 | 0.0766 |" in md
    assert "| unconditional | 12 | 90 | 0.01 | 0.5 | 0.4 | 3 | 1 |" in md


def test_an_experiment_the_workspace_repeats_is_kept_as_the_experiment():
    """After `dvc exp apply` (or a rerun of the same params) the workspace lists the same run again, with
    whatever keys params.yaml has gained since: the row is the experiment's, with its seed."""
    ws = record("workspace", None, 12, "hierarchical", 40.0, {"std_1": 1.0, "std_12": 0.5})
    ws["data"]["params"]["params.yaml"]["data"]["dataset"] = {"nerf": {"colour": "sigmoid"}}
    payload = [ws, {**record("abc", "main", 12, "hierarchical", 41.0, {"std_1": 1.0}),
                    "experiments": [{"revs": [record("e1", "x-s0", 12, "hierarchical", 40.0,
                                                     {"std_1": 1.0, "std_12": 0.5}, seed=0)]}]}]
    df = frame(payload)
    assert list(df["experiment"]) == ["main", "x-s0"] and df.loc[1, "params.hcdm.seed"] == 0


def test_where_keeps_the_runs_of_one_design(monkeypatch, tmp_path, capsys):
    payload = [record("a", "skip-12", 12, "hierarchical", 50.0, {"std_1": 1.0}, seed=0),
               record("b", "film-12", 12, "hierarchical", 60.0, {"std_1": 1.0}, seed=0, denoiser="mlp"),
               record("c", "skip-8", 8, "hierarchical", 52.0, {"std_1": 1.0}, seed=0)]
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: payload)
    assert collect_main(["--by", "hcdm.denoiser", "--where", "binary_len=12", "--out", str(tmp_path / "s")]) == 0
    rows = json.loads((tmp_path / "s.json").read_text())["summary"]
    assert {r["params.hcdm.denoiser"]: r["n"] for r in rows} == {"mlp": 1, "skip_mlp": 1}
    assert collect_main(["--by", "hcdm.denoiser", "--where", "binary_len=99", "--out", str(tmp_path / "s")]) == 2
    assert "matches --where" in capsys.readouterr().err
    assert collect_main(["--by", "hcdm.denoiser", "--where", "nokey=1", "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --where nokey=1: expected KEY=VALUE")
    # null selects the runs that left a param null (seeds 1 and 2 set, the third left at `seed`).
    payload[2] = record("c", "skip-12-default", 12, "hierarchical", 54.0, {"std_1": 1.0})
    payload[1]["data"]["params"]["params.yaml"]["data"]["hcdm"].update(seed=1, denoiser="skip_mlp")
    assert collect_main(["--by", "hcdm.denoiser", "--where", "hcdm.seed=null", "--out", str(tmp_path / "s")]) == 0
    assert [r["experiment"] for r in json.loads((tmp_path / "s.json").read_text())["runs"]] == ["skip-12-default"]


def method_record(rev, variant, seed, fid, psnr, seconds, prior="flat"):
    r = record(rev, f"{variant}-s{seed}", 12, prior, fid)
    r["data"]["params"]["params.yaml"]["data"].update(seed=seed, loe={"variant": variant},
                                                      fit_loe={"steps": 100, "lr": 0.0025})
    r["data"]["metrics"].update({"metrics/reconstruction.json": {"data": {"test": {"psnr": psnr, "ssim": 0.9}}},
                                 "metrics/fit_loe.json": {"data": {"parameters": 1000, "seconds": seconds}}})
    return r


def test_a_run_from_before_the_compared_params_is_not_a_row(tmp_path, monkeypatch, capsys):
    payload = [record(f"r{s}", f"x-s{s}", 12, "hierarchical", 40.0 + 2 * s, {"std_1": 1.0}, seed=s) for s in range(2)]
    old = record("22ca781", None, 12, "hierarchical", 60.0, {"std_1": 1.0})
    del old["data"]["params"]["params.yaml"]["data"]["hcdm"]["denoiser"]        # the commit predates the key
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: [*payload, old])
    assert collect_main(["--by", "hcdm.denoiser", "--columns", "generation.fid", "--out", str(tmp_path / "d")]) == 0
    out = json.loads((tmp_path / "d.json").read_text())
    assert [r["experiment"] for r in out["runs"]] == ["x-s0", "x-s1"] and out["summary"][0]["generation.fid mean"] == 41.0
    assert "22ca781" not in (tmp_path / "d.md").read_text() and "left out 1 run(s)" in capsys.readouterr().err


def test_table_1_gives_each_method_exactly_its_mean_and_spread(tmp_path, monkeypatch):
    from pipeline.table1 import main as table1_main
    payload = [method_record("a0", "chinr", 0, 50.0, 30.0, 20.0, prior="hierarchical"),
               method_record("a1", "chinr", 1, 52.0, 31.0, 22.0, prior="hierarchical"),
               method_record("b0", "mnif", 0, 40.0, 29.0, 30.0), method_record("b1", "mnif", 1, 46.0, 28.0, 30.0),
               method_record("c0", "functa", 0, 90.0, 25.0, 10.0)]
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: payload)
    assert table1_main(["--out", str(tmp_path / "t1")]) == 0
    rows = {r["params.loe.variant"]: r for r in json.loads((tmp_path / "t1.json").read_text())["table_1"]}
    assert list(rows) == ["chinr", "mnif", "functa"]                       # the paper's order, not the alphabet's
    failed = method_record("c1", "functa", 1, 49.0, 30.0, 10.0)            # diverged: the baseline's files
    failed["error"] = {"msg": "Experiment run failed", "type": ""}
    assert list(frame([*payload, failed])["experiment"]) == [f"{r['name']}" for r in payload]
    assert rows["chinr"]["generation.fid mean"] == 51.0 and rows["chinr"]["n"] == 2
    assert rows["chinr"]["generation.fid std"] == pytest.approx(math.sqrt(2.0))
    assert rows["mnif"]["reconstruction.test.psnr mean"] == 28.5
    assert rows["mnif"]["generation.fid std"] == pytest.approx(math.sqrt(18.0))
    assert rows["chinr"]["stage1_ms_per_step mean"] == pytest.approx(210.0)   # 1000 * 21 s / 100 steps
    assert rows["functa"]["n"] == 1 and rows["functa"]["generation.fid std"] is None
    md = (tmp_path / "t1.md").read_text()
    assert "| mnif | flat | 0.0025 | 28.5 ± 0.71 |" in md and "| CHINR (paper) | 34.9 | 0.963 | 13.4 | 22.3 | 0.988 | 0.441 | 0.0011 | 26.2 | 0.772 | 77.9 | 15.971 |" in md
    assert "| Functa (Dupont et al., 2022a) | 26.6 | 0.801 | 40.4 | – |" in md


def test_also_joins_the_runs_an_earlier_table_recorded_once_each(tmp_path, monkeypatch, capsys):
    """Seed 0 collected on one day, seeds 1 and 2 in another clone: the table over all three, a run listed
    in both counted once; a file that is not a table's JSON is one line naming it."""
    from pipeline.table1 import main as table1_main
    monkeypatch.setattr("pipeline.experiments.exp_show",
                        lambda n: [method_record("a0", "chinr", 0, 50.0, 30.0, 20.0, prior="hierarchical")])
    assert table1_main(["--out", str(tmp_path / "day1")]) == 0
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: [
        method_record("a1", "chinr", 1, 52.0, 31.0, 22.0, prior="hierarchical"),
        method_record("a2", "chinr", 2, 57.0, 32.0, 22.0, prior="hierarchical")])
    earlier = tmp_path / "day1.json"
    assert table1_main(["--also", str(earlier), str(earlier), "--out", str(tmp_path / "all")]) == 0
    row = json.loads((tmp_path / "all.json").read_text())["table_1"][0]
    assert row["n"] == 3 and row["generation.fid mean"] == 53.0 and row["reconstruction.test.psnr mean"] == 31.0
    assert row["generation.fid std"] == pytest.approx(math.sqrt((9 + 1 + 16) / 2))
    (tmp_path / "bad.json").write_text('{"table_1": []}')
    assert table1_main(["--also", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: --also {tmp_path / 'bad.json'}: not a table's JSON")


def test_also_knows_a_run_whose_recorded_table_left_a_metric_empty(tmp_path, monkeypatch):
    """A shape run has no FID: the recorded table holds null where this repository's listing has nothing
    (NaN); the run is still one run, and this repository's listing of it is the one kept."""
    from pipeline.experiments import runs

    gen = {"coverage": 0.5, "mmd": 0.002, "memorisation_distance": 14.0}
    listing = {"rev": "e1", "name": "s-0", "data": {"rev": "e1", "params": {"params.yaml": {"data": {
        "loe": {"variant": "chinr"}}}}, "metrics": {"metrics/generation.json": {"data": gen}}}}
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: [listing])
    recorded = [{"experiment": "workspace", "params.loe.variant": "chinr", "generation.fid": None,
                 "generation.kid": None, **{f"generation.{k}": v for k, v in gen.items()}},
                {"experiment": "other", "params.loe.variant": "chinr", "generation.fid": None, "generation.kid": None,
                 "generation.coverage": 0.4, "generation.mmd": 0.003, "generation.memorisation_distance": 13.0}]
    (tmp_path / "t.json").write_text(json.dumps({"runs": recorded}))
    df = runs(1, also=[tmp_path / "t.json"])
    assert list(df["experiment"]) == ["s-0", "other"]


def test_runs_with_the_same_generation_metrics_but_other_later_results_are_two_runs(monkeypatch, tmp_path, capsys):
    """hierarchy.completions changes only the hierarchy stage: two runs with equal generation metrics."""
    payload = [record(f"r{c}", f"c{c}", 12, "hierarchical", 40.0, {"std_1": 1.0}, seed=0, retained=r)
               for c, r in ((8, 0.3), (16, 0.5))]
    for rec, c in zip(payload, (8, 16)):
        rec["data"]["params"]["params.yaml"]["data"]["hierarchy"] = {"completions": c}
    df = frame(payload)
    assert list(df["experiment"]) == ["c8", "c16"]
    # A run of an older commit without hierarchy metrics does not make them any less a key of the others.
    older = record("old", "older", 12, "hierarchical", 45.0, {"std_1": 1.0}, seed=0)
    assert list(frame([*payload, older])["experiment"]) == ["c8", "c16", "older"]
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: payload)
    assert collect_main(["--by", "hierarchy.completions", "--columns", "hierarchy.*", "--out", str(tmp_path / "h")]) == 0
    rows = json.loads((tmp_path / "h.json").read_text())["summary"]
    assert {r["params.hierarchy.completions"]: r["hierarchy.mean_retained_variance.k=1 mean"] for r in rows} == \
        {"8": 0.3, "16": 0.5}
    # The recorded table knows each run again (whole rows are saved): joined with itself, still two runs.
    from pipeline.experiments import runs

    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: [])
    assert list(runs(1, also=[tmp_path / "h.json"] * 2)["experiment"]) == ["c8", "c16"]


def test_runs_that_differ_in_more_than_seeds_are_never_pooled(tmp_path, monkeypatch, capsys):
    """Table 1 over a commit that also queued the binary-length ablation: binary_len 8 is a row of its own."""
    from pipeline.table1 import main as table1_main
    payload = [method_record("a0", "chinr", 0, 50.0, 30.0, 20.0, prior="hierarchical"),
               method_record("a1", "chinr", 1, 52.0, 31.0, 22.0, prior="hierarchical"),
               method_record("b8", "chinr", 0, 70.0, 30.0, 20.0, prior="hierarchical")]
    payload[2]["data"]["params"]["params.yaml"]["data"]["binary_len"] = 8
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: payload)
    assert table1_main(["--out", str(tmp_path / "t1")]) == 0
    rows = json.loads((tmp_path / "t1.json").read_text())["table_1"]
    assert [(r["params.binary_len"], r["n"], r["generation.fid mean"]) for r in rows] == [("12", 2, 51.0), ("8", 1, 70.0)]
    assert "note: rows also split by binary_len" in capsys.readouterr().err
    # Params that change no result pool like seeds: another log interval is the same setting.
    payload[1]["data"]["params"]["params.yaml"]["data"]["fit_loe"]["log_every"] = 50
    assert table1_main(["--where", "binary_len=12", "--out", str(tmp_path / "t2")]) == 0
    assert [r["n"] for r in json.loads((tmp_path / "t2.json").read_text())["table_1"]] == [2]


def test_a_param_null_in_one_run_and_set_in_another_splits_the_rows(tmp_path, monkeypatch, capsys):
    """export_latents.points null (every point) against 4096 is another setting, not a seed to pool; `--where
    KEY=null` still finds the null run."""
    from pipeline.table1 import main as table1_main
    payload = [method_record("a0", "chinr", 0, 50.0, 30.0, 20.0), method_record("a1", "chinr", 1, 70.0, 31.0, 22.0)]
    for r, points in zip(payload, (None, 4096)):
        r["data"]["params"]["params.yaml"]["data"]["export_latents"] = {"points": points}
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: payload)
    assert table1_main(["--out", str(tmp_path / "t1")]) == 0
    rows = json.loads((tmp_path / "t1.json").read_text())["table_1"]
    assert sorted((r["n"], r["generation.fid mean"]) for r in rows) == [(1, 50.0), (1, 70.0)]
    assert "note: rows also split by export_latents.points" in capsys.readouterr().err
    assert table1_main(["--where", "export_latents.points=null", "--out", str(tmp_path / "t2")]) == 0
    assert [r["generation.fid mean"] for r in json.loads((tmp_path / "t2.json").read_text())["table_1"]] == [50.0]


def test_the_ablation_takes_a_run_without_binary_len(monkeypatch, tmp_path):
    """A run of a commit before binary_len existed: the column holds 12.0 and NaN, ordered by value."""
    payload = [record("a", "bl12", 12, "hierarchical", 50.0, {"std_1": 1.0, "std_12": 0.6}),
               record("b", "bl8", 8, "hierarchical", 51.0, {"std_1": 1.0, "std_12": 0.9}),
               record("c", "old", None, "hierarchical", 52.0, {"std_1": 1.0, "std_12": 0.7})]
    del payload[2]["data"]["params"]["params.yaml"]["data"]["binary_len"]
    out, _ = tables(frame(payload))
    assert [r["params.binary_len"] for r in out["table_2"]] == ["8.0", "12.0", "–"]


def test_failed_and_unfinished_runs_are_named_when_left_out(capsys):
    failed = record("f", "diverged", 12, "hierarchical", 40.0)
    failed["error"] = {"msg": "Experiment run failed", "type": ""}
    unfinished = {"rev": "u", "name": "queued", "data": {"rev": "u", "params": {}, "metrics": {}}}
    assert list(frame([record("a", "ok", 12, "hierarchical", 41.0), failed, unfinished])["experiment"]) == ["ok"]
    err = capsys.readouterr().err
    assert "note: left out 1 run(s) failed: diverged" in err
    assert ("note: left out 1 run(s) not run to the end (still running or queued, or without "
            "metrics/generation.json): queued") in err


def test_a_running_experiment_listing_the_workspaces_metrics_is_not_a_run(capsys):
    """While an experiment runs, `dvc exp show` lists it under its executor with a copy of the workspace's
    metrics: taken as a run, it would stand for (and be deduplicated against) the workspace."""
    workspace = record("workspace", None, 12, "hierarchical", 49.3, seed=None)
    running = {"name": "bl15-s2", "executor": {"state": "running", "name": "tempdir"},
               "revs": [record("008ab0b", "bl15-s2", 15, "hierarchical", 49.3, seed=2)]}
    done = {"name": "bl15-s1", "executor": None, "revs": [record("2eb96b1", "bl15-s1", 15, "hierarchical", 49.4, seed=1)]}
    failed = {"name": "bl20-s0", "executor": {"state": "failed", "name": "dvc-task"},
              "revs": [record("9f0e1d2", "bl20-s0", 20, "hierarchical", 49.3, seed=0)]}
    payload = [workspace, {"rev": "142af0c", "experiments": [running, done, failed]}]
    assert list(frame(payload)["experiment"]) == ["workspace", "bl15-s1"]
    err = capsys.readouterr().err
    assert "bl15-s2 (running)" in err and "left out 1 run(s) failed: bl20-s0" in err


def test_pool_joins_runs_whose_param_names_the_same_setting_twice(tmp_path, monkeypatch, capsys):
    """The same data at two paths (two clones joined with --also): --pool dataset.path makes them one row."""
    from pipeline.table1 import main as table1_main
    payload = [method_record("a0", "chinr", 0, 50.0, 30.0, 20.0, prior="hierarchical"),
               method_record("a1", "chinr", 1, 52.0, 31.0, 22.0, prior="hierarchical")]
    for rec, path in zip(payload, ("/data/faces", "/mnt/clone2/faces")):
        rec["data"]["params"]["params.yaml"]["data"]["dataset"] = {"path": path}
    monkeypatch.setattr("pipeline.experiments.exp_show", lambda n: payload)
    assert table1_main(["--out", str(tmp_path / "t")]) == 0
    assert [r["n"] for r in json.loads((tmp_path / "t.json").read_text())["table_1"]] == [1, 1]
    assert table1_main(["--pool", "dataset.path", "--out", str(tmp_path / "t")]) == 0
    assert [r["n"] for r in json.loads((tmp_path / "t.json").read_text())["table_1"]] == [2]
    assert "note: pooled over dataset.path: /data/faces, /mnt/clone2/faces" in capsys.readouterr().err
    assert table1_main(["--pool", "dataset.nokey", "--out", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().err.strip().endswith("error: --pool dataset.nokey: not a params.yaml key of these experiments")
