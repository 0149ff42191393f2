"""The shared outer loop, part by part: `Trainer.step` defers every read-back, `report` reads them in one go
on log and checkpoint steps, `resume` puts a run back exactly where its checkpoint left it."""
import torch

from pipeline.training import Checkpointer, DivergenceGuard, StepLog, Trainer


def make(tmp_path, total=6, log_every=3, every=2, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    g = torch.Generator().manual_seed(0)
    trainer = Trainer({"model": model}, list(model.parameters()), opt, sched, total, 0.0, log_every,
                      Checkpointer(tmp_path / "checkpoint.pt", "f", every), StepLog(tmp_path / "log.csv"), g, "t",
                      guard=DivergenceGuard("t", "the lr"))
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0]])

    def step_fn(_):
        return ((model(x) - y) ** 2).mean(), {"half": torch.tensor(0.5)}
    return trainer, model, step_fn


def test_report_reads_back_only_on_log_steps_and_gives_the_last_steps_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("CHINR_CHECKPOINTS", str(tmp_path / "spare"))
    trainer, model, step_fn = make(tmp_path, every=100)
    losses = []
    for done in (1, 2, 3):
        loss, metrics = step_fn(done)
        losses.append(loss.item())
        trainer.step(loss, metrics)
        row = trainer.report(done)
        assert (row is None) == (done < 3) and len(trainer.pending) == (done if done < 3 else 0)
    assert row["step"] == 3 and row["loss"] == round(losses[-1], 6) and row["half"] == 0.5 and row["lr"] == 0.1
    assert trainer.log.rows == [row]
    assert (tmp_path / "log.csv").read_text().splitlines()[1].startswith("3,")   # written on log steps too


def test_resume_restores_the_modules_and_continues_where_the_checkpoint_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("CHINR_CHECKPOINTS", str(tmp_path / "spare"))
    whole, model, step_fn = make(tmp_path / "a", seed=1)
    assert whole.resume() == 0
    whole.run(step_fn, progress=False)
    part, model_b, step_b = make(tmp_path / "b", seed=1)
    for step in range(4):                     # interrupted after step 4 (a checkpoint every 2 steps)
        part.step(*step_b(step))
        part.report(step + 1)
    again, model_c, step_c = make(tmp_path / "b", seed=2)        # another init: resume must overwrite it
    assert again.resume() == 4 and torch.equal(model_c.weight, model_b.weight)
    assert [r["step"] for r in again.log.rows] == [3]
    again.run(step_c, progress=False)
    assert torch.equal(model_c.weight, model.weight) and torch.equal(model_c.bias, model.bias)
    assert [r["step"] for r in again.log.rows] == [r["step"] for r in whole.log.rows] == [3, 6]


def test_the_fingerprint_names_the_process_count_and_a_gpu_but_adds_nothing_for_one_cpu_process(monkeypatch):
    from pipeline import distributed
    from pipeline.training import run_place

    assert run_place("cpu") == [] and run_place(torch.device("cuda")) == [{"device": "cuda"}]
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    assert run_place("cpu") == [{"processes": 4}]


def test_a_finished_checkpoint_is_vouched_for_before_it_takes_its_name(tmp_path, monkeypatch):
    """A kill between the two must not leave a finished checkpoint that nothing vouches for (it would
    start the run afresh): the `.code` record is written while the file still holds the last step."""
    from pipeline import io

    monkeypatch.setenv("CHINR_CHECKPOINTS", "")
    path = tmp_path / "checkpoint.pt"
    run = Checkpointer(path, "f", 10, code="c1")
    run.save({"step": 10, "modules": {}, "optimizer": {}})
    on_disk, save_text = [], io.save_text
    monkeypatch.setattr(io, "save_text", lambda p, text: (on_disk.append(torch.load(path, weights_only=True)["step"]),
                                                          save_text(p, text)))
    run.save({"step": 20, "modules": {}, "optimizer": {}}, final=True)
    assert on_disk == [10] and Checkpointer(path, "f", 10, code="c1").load()["step"] == 20


def test_an_artifact_is_on_disk_before_it_takes_its_name(tmp_path, monkeypatch):
    from pipeline import io

    order = []
    monkeypatch.setattr(io.os, "fsync", lambda fd: order.append("fsync"))
    replace = io.os.replace
    monkeypatch.setattr(io.os, "replace", lambda a, b: (order.append("replace"), replace(a, b)))
    io.save_json(tmp_path / "m.json", {"a": 1})
    assert order == ["fsync", "replace"]


def test_a_stages_checkpoint_follows_the_code_it_runs_not_the_control_page_or_the_collectors():
    from pipeline.deps import ROOT, closure
    from pipeline.training import code_digest

    runs = closure("pipeline.stages.fit_loe")
    assert ROOT / "pipeline/loe.py" in runs and ROOT / "pipeline/training.py" in runs
    assert not {ROOT / "pipeline/serve.py", ROOT / "pipeline/table1.py", ROOT / "pipeline/stages/evaluate.py"} & runs
    assert code_digest("pipeline.stages.fit_loe") != code_digest("pipeline.stages.train_hcdm") != code_digest()


def test_a_checkpoint_of_another_process_count_says_so_and_one_cpu_process_keeps_no_place(tmp_path, monkeypatch,
                                                                                            capsys):
    monkeypatch.setenv("CHINR_CHECKPOINTS", "")
    path = tmp_path / "checkpoint.pt"
    Checkpointer(path, "fp-torchrun", 10, code="c", place=[{"processes": 2}]).save({"step": 10, "modules": {},
                                                                                     "optimizer": {}})
    assert torch.load(path, weights_only=True)["place"] == {"processes": 2}
    assert Checkpointer(path, "fp-one", 10, code="c").load() is None
    assert capsys.readouterr().out == (f"[checkpoint] {path} was written by 2 processes on cpu, this run is 1 process "
                                       "on cpu: starting afresh (run it as it was launched to resume it)\n")
    Checkpointer(path, "fp-one", 10, code="c").save({"step": 10, "modules": {}, "optimizer": {}})
    assert "place" not in torch.load(path, weights_only=True)          # one CPU process: the bytes as they were


def test_a_warning_is_said_once_under_torchrun_and_kept_by_every_process(monkeypatch, capsys):
    from pipeline.errors import warn

    kept = []
    monkeypatch.setenv("RANK", "1")
    warn(kept, "weak")
    monkeypatch.setenv("RANK", "0")
    warn(kept, "weak")
    assert kept == ["weak", "weak"] and capsys.readouterr().err == "warning: weak\n"


def test_processes_that_would_resume_from_different_steps_stop_with_one_line(monkeypatch):
    """Across machines without a shared file system each process would read its own checkpoint."""
    import pytest

    from pipeline import distributed
    from pipeline.errors import DataError

    monkeypatch.setattr(distributed, "all_gather", lambda t: [torch.tensor([500]), torch.tensor([0])])
    with pytest.raises(DataError, match=r"start from different steps \(\[500, 0\] by rank\): torchrun across "
                                        r"machines needs the checkpoint folder on a file system they share"):
        Trainer.same_start_everywhere(500)
    monkeypatch.setattr(distributed, "all_gather", lambda t: [torch.tensor([500]), torch.tensor([500])])
    Trainer.same_start_everywhere(500)
