"""Data-parallel training under torchrun: two CPU processes (gloo) stay in lock-step."""
import shutil
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


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_two_processes_stay_in_sync(tmp_path):
    script = tmp_path / "check.py"
    script.write_text(CHECK.format(out=tmp_path))
    r = subprocess.run(["torchrun", "--nproc_per_node", "2", "--master_port", "29533", str(script)],
                       capture_output=True, text=True, env={**STAGE_ENV, "PATH": "/usr/bin:/bin:" +
                                                            str(sys.executable).rsplit("/", 1)[0]}, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "rank 0 in sync" in r.stdout and "rank 1 in sync" in r.stdout
    assert (tmp_path / "ck.pt").exists() and (tmp_path / "log.csv").exists()
