"""A motion folder whose train files hold the hands still and whose test file moves them: Stage-1's train and
test PSNR and raw rotation errors, through the real stages (prepare .. export_latents) of a given source tree.

    python benchmarks/motion_still_values.py . new /path/to/amass_sample_smplh.npz
    git worktree add /tmp/old <rev> && python benchmarks/motion_still_values.py /tmp/old old SAMPLE

Results: docs/modalities/motion.md (Normalisation)."""
import json, os, pathlib, shutil, subprocess, sys, tempfile

import yaml
import numpy as np
if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
    sys.exit(print(__doc__))
if len(sys.argv) != 4:
    sys.exit(__doc__)
src, name = pathlib.Path(sys.argv[1]).resolve(), sys.argv[2]
sample = pathlib.Path(sys.argv[3])          # amass_sample_smplh.npz (nghorbani/human_body_prior)
sys.path.insert(0, str(src / "tests"))      # the source tree's own micro config, valid for its own keys
import conftest
conftest.ROOT = src
work = pathlib.Path(tempfile.gettempdir()) / f"motion-still-{name}"
shutil.rmtree(work, ignore_errors=True); work.mkdir(parents=True)
data = work / "amass"; (data / "s1").mkdir(parents=True)
d = dict(np.load(sample))
poses = d["poses"].astype(np.float32)
t = np.arange(len(poses)) / 120.0
for i, (p, label) in enumerate([(poses, "a"), (poses[::-1].copy(), "b")]):
    np.savez(data / "s1" / f"{i}_{label}_poses.npz", poses=p, mocap_framerate=120.0)
moving = poses.copy()
moving[:, 66:] += (0.3 * np.sin(2 * np.pi * 0.5 * t))[:, None].astype(np.float32)   # hands swing 0.3 rad
np.savez(data / "s1" / "2_c_poses.npz", poses=moving, mocap_framerate=120.0)
shutil.copytree(pathlib.Path(src) / "pipeline", work / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
shutil.copy(src / "dvc.yaml", work); shutil.copy(src / ".gitignore", work)
(work / "test_files.txt").write_text("2_c_poses\n")   # the moving clip is the test split, whatever the seed
p = conftest.micro_params()
p["dataset"].update(modality="motion", source="amass", path=str(data), resolution=32,
                    split=str(work / "test_files.txt"))
p["loe"].update(w0=5.0, layers=4, width=64, experts=16, latent_dim=16)
p["fit_loe"].update(steps=400, batch_size=6, checkpoint_every=200, log_every=50)
(work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
r = subprocess.run("git init -q && git config user.email t@t && git config user.name t && dvc init -q && "
                   "dvc config core.analytics false && dvc repro export_latents", cwd=work, shell=True,
                   capture_output=True, text=True, env={**os.environ, "CHINR_CHECKPOINTS": ""})  # no spare to resume
print(r.stderr[-1500:] if r.returncode else "", "\n".join(l for l in (r.stdout + r.stderr).splitlines() if "warning" in l))
rec = json.loads((work / "metrics/reconstruction.json").read_text())
keys = ("psnr", "rotation_error", "body_rotation_error", "position_error", "body_position_error", "instances")
print(name, json.dumps({s: {k: rec[s].get(k) for k in keys} for s in ("train", "test")}))
