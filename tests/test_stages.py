"""What every stage does the same way: a log file per stage, the `threads` param, scalar metrics files."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import micro_params
from pipeline import config
from pipeline.stages import StageLog, write_metrics
from pipeline.stages.report import _numbers
from test_robustness import ENV, write_params


def run_stage(name, cwd, **env):
    return subprocess.run([sys.executable, "-m", f"pipeline.stages.{name}"], cwd=cwd, capture_output=True,
                          text=True, env={**ENV, **env})


def test_a_stage_leaves_its_log_with_progress_timings_and_the_error_of_a_failed_run(tmp_path):
    params = micro_params()
    params["threads"] = 1
    write_params(tmp_path, params)
    r = run_stage("prepare", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (tmp_path / "data/logs/prepare.log").read_text().splitlines()
    assert log[0].startswith("# prepare: started ") and ", 1 threads, params params.yaml" in log[0]
    assert log[-1].startswith("# prepare: finished in ") and log[-1].endswith(" s")
    # A stage that fails rewrites its log, which ends with the line the user saw.
    params["fit_loe"]["lr"] = 1e4
    write_params(tmp_path, params)
    r = run_stage("fit_loe", tmp_path)
    assert r.returncode == 2
    log = (tmp_path / "data/logs/fit_loe.log").read_text()
    assert log.startswith("# fit_loe: started ") and log.strip().splitlines()[-1] == r.stderr.strip().splitlines()[-1]
    assert "diverged" in log and "# fit_loe: finished" not in log


def test_progress_bars_redraw_every_30_s_when_the_output_is_not_a_terminal(tmp_path):
    """`dvc repro > run.log` filled the file with a redrawn bar ten times a second."""
    params = micro_params()
    params["fit_loe"].update(steps=60, checkpoint_every=60)
    write_params(tmp_path, params)
    assert run_stage("prepare", tmp_path).returncode == 0
    redraws = {}
    for every in ("", "0"):                     # the stage's own setting; one a user set (kept)
        (tmp_path / "data/fit_loe/checkpoint.pt").unlink(missing_ok=True)
        r = run_stage("fit_loe", tmp_path, **({"TQDM_MININTERVAL": every} if every else {}))
        assert r.returncode == 0, r.stderr[-2000:]
        redraws[every] = sum(line.startswith("fit_loe: ") for line in r.stderr.splitlines())   # text: \r read as \n
    assert redraws[""] <= 3 < redraws["0"], redraws    # the first state, the last, and the closing one


def test_the_log_keeps_redrawn_progress_lines_sparsely(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clock = iter([0.0, 1.0, 20.0, 21.0])   # the times of the four redraws
    monkeypatch.setattr("pipeline.stages.log.time.time", lambda: next(clock))
    before = sys.stdout, sys.stderr
    with StageLog("x", every=10.0) as log:
        log.open(0)
        print("plain line")
        for i in range(4):
            sys.stderr.write(f"\rbar {i}/4")
        sys.stderr.write("\rbar 4/4\n")
    # the first redraw is written (t=0), the second not (1 s later), the third is (20 s), the fourth not; the final state is
    assert (tmp_path / "data/logs/x.log").read_text().splitlines() == ["plain line", "bar 0/4", "bar 2/4", "bar 4/4"]
    assert (sys.stdout, sys.stderr) == before   # the streams are given back
    with StageLog("x") as log:                 # the next run (a resume, say): the last run's log kept beside
        log.open(0)
        print("resumed")
    assert (tmp_path / "data/logs/x.log").read_text() == "resumed\n"
    assert (tmp_path / "data/logs/x.previous.log").read_text().splitlines()[0] == "plain line"


def test_threads_change_speed_not_results(tmp_path):
    """`threads` is a param no stage depends on: the same run with 1 and with 2 threads writes the same model."""
    models = []
    for threads in (1, 2):
        work = tmp_path / f"t{threads}"
        work.mkdir()
        params = micro_params()
        params["threads"] = threads
        params["fit_loe"]["steps"] = 10
        write_params(work, params)
        for name in ("prepare", "fit_loe"):
            r = run_stage(name, work)
            assert r.returncode == 0, r.stderr[-2000:]
        assert f", {threads} threads," in (work / "data/logs/fit_loe.log").read_text()
        models.append(torch.load(work / "data/fit_loe/loe.pt", weights_only=True))
    a, b = models
    for part in ("model", "meta_sgd"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    with pytest.raises(config.ConfigError, match=r"^threads: must be null or in \[1, 1024\], got 0$"):
        config.from_dict({"threads": 0})


def test_metrics_files_hold_numbers_and_the_detail_holds_everything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    detail = {"fid": 12.5, "name": "FID@8", "flag": True, "matrix": [[1, 0], [0, 1]],
              "refs": {"real": {"fid": 1.0, "images": 8}, "fake": {"fid": 2.0, "images": 8}},
              "protocol": {"generated": 8}, "skipped": None}
    write_metrics("x", detail, warnings=["small set"], omit=("refs.*.images", "protocol"))
    assert json.loads((tmp_path / "metrics/x.json").read_text()) == {
        "fid": 12.5, "refs": {"real": {"fid": 1.0}, "fake": {"fid": 2.0}}, "warnings": 1}
    assert json.loads((tmp_path / "metrics/detail/x.json").read_text()) == {**detail, "warnings": ["small set"]}
    write_metrics("y", {"skipped": "no factors"})                   # nothing to compare: an empty metrics file
    assert json.loads((tmp_path / "metrics/y.json").read_text()) == {}
    assert _numbers({"a": {"b": "text"}, "c": 3}, ()) == {"c": 3}


def test_keep_freed_memory_applies_on_glibc_only(monkeypatch):
    import platform

    from pipeline import stages

    name, version = platform.libc_ver()
    recent_glibc = platform.system() == "Linux" and name == "glibc" and tuple(map(int, version.split(".")[:2])) >= (2, 35)
    if recent_glibc:
        assert stages.keep_freed_memory() is True       # glibc >= 2.35 accepts both settings
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("musl", "1.2"))
    assert stages.keep_freed_memory() is False          # elsewhere: nothing to set, nothing fails


def test_a_log_that_cannot_be_written_stops_logging_not_the_stage(tmp_path, monkeypatch, capsys):
    """A full disk: the log's write raises; the stage's own output still reaches the terminal."""
    monkeypatch.chdir(tmp_path)

    class Full:
        def write(self, text):
            raise OSError(28, "No space left on device")

        def close(self):
            raise OSError(28, "No space left on device")
    with StageLog("x") as log:
        log.open(0)
        log.file = Full()
        print("first line")
        print("second line")
    assert log.file is None and capsys.readouterr().out == "first line\nsecond line\n"


def test_a_stage_1_that_memorises_or_a_meaningless_psnr_is_flagged(capsys):
    from pipeline.stages.export_latents import generalisation_warnings

    def report(train, test):
        return {"train": {"instances": 50, "psnr": train}, "test": {"instances": 6, "psnr": test}}

    assert generalisation_warnings(report(30.32, 30.09)) == []                 # the default: 0.2 dB apart
    small = generalisation_warnings(report(26.3, 17.4))                          # 50 real photos
    assert len(small) == 1 and "8.9 dB apart, over 3" in small[0] and "memorises its 50 train instances" in small[0]
    static = generalisation_warnings(report(5.0, -16.4))
    assert len(static) == 2 and "test PSNR -16.4 dB is below 0" in static[1]
    assert generalisation_warnings({"train": {"instances": 3}, "test": {"instances": 2}}) == []   # no PSNR
    assert capsys.readouterr().err.count("warning: ") == 3


def test_an_interrupted_stage_under_torchrun_says_to_rerun_torchrun_and_rank_1_keeps_quiet(tmp_path, monkeypatch,
                                                                                          capsys):
    """`dvc repro` runs one process, which would start afresh: the line names the command that resumes."""
    import pipeline.stages as stages

    write_params(tmp_path, micro_params())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(stages, "init_from_environment", lambda device: None)

    def interrupted(cfg, generator, start, device):
        raise KeyboardInterrupt
    for rank in (0, 1):
        monkeypatch.setattr(stages, "rank", lambda: rank)
        with StageLog("x") as log:
            assert stages._run(interrupted, "x", (), "params.yaml", log) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["interrupted: x stopped and wrote no result; the same torchrun command runs it again (a training "
                   "stage resumes from its last checkpoint; `dvc repro` runs one process, which starts afresh)"]
    assert (tmp_path / "data/logs/x.rank1.log").read_text().strip().endswith(err[0])   # rank 1: in its log only
