import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def usable_cores() -> int:
    """The cores this process may run on (a container's limit, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Under pytest-xdist (tests/pytest.ini: a worker per usable core) each worker gets its share of the cores, and
# so does every process it starts (stages, dvc): two workers at two threads each on 2 cores would oversubscribe
# them (a Stage-1 step 0.24 s -> ~2 s when processes share the cores that way). Set before torch and numpy load,
# so their thread pools are sized by it.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cores() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
sys.path.insert(0, str(ROOT))
if WORKER:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per usable core (xdist's own count reads the host's physical cores)."""
    return usable_cores()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _spare_checkpoints(tmp_path_factory):
    """Spare checkpoints of in-process training go to the session's temporary folder, not ~/.cache."""
    os.environ.setdefault("CHINR_CHECKPOINTS", str(tmp_path_factory.mktemp("spares")))


TRAINED_STAGES = ("prepare", "fit_loe", "export_latents", "train_hcdm")
# Spare checkpoints of stage processes: a new folder per session and xdist worker, removed at exit. Spares are
# named by run and code, so a fixed folder let a later session's fresh run resume an earlier session's
# interrupted one.
STAGE_SPARES = tempfile.mkdtemp(prefix=f"chinr-test-spares{WORKER or ''}-")
atexit.register(shutil.rmtree, STAGE_SPARES, True)
# A stage run as a process of its own: only the package on the path, spare checkpoints not in ~/.cache, the
# worker's threads.
STAGE_ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "CHINR_CHECKPOINTS": STAGE_SPARES,
             **({"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]} if WORKER else {})}


@pytest.fixture(scope="session")
def micro_trained(tmp_path_factory):
    """The micro configuration run through train_hcdm once per session (each stage as `dvc repro` runs it, a
    process of its own); modules copy it (`copy_of`) before they run more stages or spoil it."""
    if WORKER:    # built once for all workers: the first builds it under a lock, the others wait and reuse it
        import shutil

        from filelock import FileLock

        shared = tmp_path_factory.getbasetemp().parent    # this session's folder, above every worker's
        work, failed = shared / "micro-trained", shared / "micro-trained.failed"
        with FileLock(str(shared / "micro-trained.lock")):
            if failed.exists():                            # another worker's build failed: the same failure
                pytest.fail(f"the shared micro run failed to build: {failed.read_text()}")
            if not (work / "done").exists():
                shutil.rmtree(work, ignore_errors=True)
                try:
                    _train_micro(work)
                except BaseException as e:
                    failed.write_text(str(e)[-2000:])
                    raise
                (work / "done").touch()
        return work
    return _train_micro(tmp_path_factory.mktemp("micro-trained"))


def _train_micro(work: Path) -> Path:
    import shutil
    import subprocess

    import yaml

    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(micro_params(), sort_keys=False))
    for name in TRAINED_STAGES:
        r = subprocess.run([sys.executable, "-m", f"pipeline.stages.{name}"], cwd=work, capture_output=True,
                           text=True, env=STAGE_ENV)
        assert r.returncode == 0, r.stderr[-2000:]
    shutil.rmtree(work / "data" / "logs", ignore_errors=True)
    return work


def copy_of(run: Path, where: Path) -> Path:
    """A copy of a run or repository (workspace, and git and DVC cache if any) to change freely."""
    import shutil

    shutil.copytree(run, where, symlinks=True)
    return where


def micro_params() -> dict:
    """A configuration small enough for the whole pipeline to run in seconds."""
    import yaml

    from pipeline import preset

    # From the default preset, not the working params.yaml: `python -m pipeline.preset celebahq64` rewrites that.
    p = yaml.safe_load(preset.rendered("default"))
    p["binary_len"] = 4
    p["dataset"].update(resolution=16, synthetic={"train": 48, "test": 8})
    p["loe"].update(layers=3, experts=8, width=16, latent_dim=8)
    p["fit_loe"].update(steps=20, batch_size=8, checkpoint_every=10, log_every=5, points_per_step=None, warmup_steps=5)
    p["hcdm"].update(hidden=32, blocks=2, timesteps=50, steps=30, batch_size=16, checkpoint_every=10,
                     log_every=5, warmup_steps=5)
    p["sample"].update(num_samples=8, ddim_steps=10, control_anchors=2, control_completions=2, grid_columns=4)
    p["evaluate"].update(memorisation_samples=8, fid_samples=8, kid_subsets=3, kid_subset_size=8,
                         retrieval_queries=2, std_table={"samples": 6, "anchors": 2})
    p["factor_predictor"].update(steps=20, batch_size=16)
    p["hierarchy"].update(anchors=2, completions=3)
    return p
