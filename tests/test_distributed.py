"""Data-parallel training under torchrun: two CPU processes (gloo) stay in lock-step."""
import shutil
import socket
import subprocess
import sys

import pytest

from conftest import STAGE_ENV

CHECK = r'''
import torch, torch.distributed as dist
from pipeline import config
from pipeline.modalities.image import synthetic as synthetic_faces
from pipeline.distributed import init_from_environment, rank
from pipeline.loe import LayersOfExperts
from pipeline.meta import MetaLearner, MetaSGD
from pipeline.modalities.image.modality import ImageModality
from pipeline.training import Checkpointer, StepLog

init_from_environment(torch.device("cpu"))
torch.manual_seed(0)                                   # same initial weights on every rank
model, meta_sgd = LayersOfExperts(2, 3, 3, 4, 16, 6, 30.0), MetaSGD(3, 6, 0.005, 0.1)
images, _ = synthetic_faces.generate(16, 16, seed=1)
g = torch.Generator().manual_seed(100 + rank())         # different batches on every rank
cfg = config.FitLoE(steps=6, batch_size=4, checkpoint_every=3, log_every=2, warmup_steps=1)
out = "{out}"
MetaLearner(model, meta_sgd, ImageModality(16), cfg).fit(
    images, Checkpointer(out + "/ck.pt", "x", 3), StepLog(out + "/log.csv"), g, progress=False)
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
assert torch.equal(gathered[0], gathered[1]), "ranks diverged"
print(f"rank {{rank()}} in sync")
dist.destroy_process_group()
'''

DIVERGE = r'''
import torch, torch.distributed as dist
from pipeline.distributed import init_from_environment, rank
from pipeline.training import Checkpointer, DivergenceGuard, StepLog, Trainer, TrainingDiverged

init_from_environment(torch.device("cpu"))
torch.manual_seed(0)
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
trainer = Trainer({{"model": model}}, list(model.parameters()), opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
                  10, 0.0, 5, Checkpointer("{out}/ck.pt", "x", 2), StepLog("{out}/log.csv"), torch.Generator(), "t",
                  guard=DivergenceGuard("t", "the lr"))
x = torch.tensor([[1.0, 2.0]])


def step(i):   # rank 1's loss alone turns non-finite from step 3; the gradients stay finite
    loss = ((model(x) - 1.0) ** 2).mean()
    return loss + (float("inf") if rank() == 1 and i >= 2 else 0.0) * loss.detach(), {{}}


try:
    trainer.run(step, progress=False)
    stopped = "went on"
except TrainingDiverged as e:
    stopped = str(e)
with open(f"{out}/rank{{rank()}}.txt", "w") as f:   # a file each: two processes' prints can merge in one pipe
    f.write(stopped)
dist.destroy_process_group()
'''

RESUME = r'''
import shutil
import torch, torch.distributed as dist
from pipeline.modalities.image import synthetic as synthetic_faces
from pipeline import config
from pipeline.distributed import init_from_environment, rank
from pipeline.loe import LayersOfExperts
from pipeline.meta import MetaLearner, MetaSGD
from pipeline.modalities.image.modality import ImageModality
from pipeline.training import Checkpointer, StepLog

init_from_environment(torch.device("cpu"))
images, _ = synthetic_faces.generate(16, 16, seed=1)
cfg = config.FitLoE(steps=6, batch_size=4, checkpoint_every=3, log_every=1, warmup_steps=1)
out = "{out}"
save = Checkpointer.save


def keep_step_3(self, state, final=False):                # the file a kill after step 3 would leave
    save(self, state, final)
    if state["step"] == 3:
        shutil.copyfile(self.path, out + "/cut/ck.pt")


def run(where):
    torch.manual_seed(0)
    model, meta_sgd = LayersOfExperts(2, 3, 3, 4, 16, 6, 30.0), MetaSGD(3, 6, 0.005, 0.1)
    g = torch.Generator().manual_seed(100 + rank())
    MetaLearner(model, meta_sgd, ImageModality(16), cfg).fit(
        images, Checkpointer(where + "/ck.pt", "x", 3), StepLog(where + "/log.csv"), g, progress=False)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), g.get_state()


Checkpointer.save = keep_step_3
whole, streams = run(out + "/whole")
Checkpointer.save = save
dist.barrier()
if rank() == 0:
    saved = torch.load(out + "/cut/ck.pt", weights_only=True)["rng"]["generators"]
    assert len(saved) == 2 and not torch.equal(saved[0], saved[1]), "one batch stream per process"
resumed, resumed_streams = run(out + "/cut")
assert torch.equal(whole, resumed), "the resumed run differs from the uninterrupted one"
assert torch.equal(streams, resumed_streams), "a process resumed another's batch stream"
print(f"rank {{rank()}} resumed as uninterrupted")
dist.destroy_process_group()
'''


def free_port() -> int:
    """A port nothing listens on now (a fixed one collides with another session's torchrun)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script):
    return subprocess.run(["torchrun", "--nproc_per_node", "2", "--master_port", str(free_port()), str(script)],
                          capture_output=True, text=True, env={**STAGE_ENV, "PATH": "/usr/bin:/bin:" +
                                                               str(sys.executable).rsplit("/", 1)[0]}, timeout=300)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_two_processes_stay_in_sync(tmp_path):
    script = tmp_path / "check.py"
    script.write_text(CHECK.format(out=tmp_path))
    r = torchrun(script)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "rank 0 in sync" in r.stdout and "rank 1 in sync" in r.stdout
    assert (tmp_path / "ck.pt").exists() and (tmp_path / "log.csv").exists()


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_a_run_under_torchrun_resumes_as_if_uninterrupted_each_process_with_its_own_batches(tmp_path):
    """Every process's batch stream is saved by rank: restored from rank 0's alone, both processes drew
    the same batches after a resume (the effective batch halved, and the run no longer the same)."""
    (tmp_path / "cut").mkdir()
    script = tmp_path / "resume.py"
    script.write_text(RESUME.format(out=tmp_path))
    r = torchrun(script)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "rank 0 resumed as uninterrupted" in r.stdout and "rank 1 resumed as uninterrupted" in r.stdout
    assert r.stdout.count("resuming from") == 1                     # rank 0 says it, for both


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_under_torchrun_every_process_stops_at_the_same_step_with_the_same_message(tmp_path):
    """The guard reads the mean over the processes on the same steps everywhere: one process's non-finite
    loss stops all of them together (rank 0 alone checked on checkpoint steps, the others kept training)."""
    script = tmp_path / "diverge.py"
    script.write_text(DIVERGE.format(out=tmp_path))
    r = torchrun(script)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    stops = [(tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)]
    assert stops[0] == stops[1] and stops[0].startswith("t diverged at step 3: the loss is inf"), stops
