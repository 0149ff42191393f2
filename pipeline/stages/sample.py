"""Stage `sample`: draw latents through the chain h^1 -> h^L, render them, write
each sample as a file (PNG image or PLY mesh), and draw the hierarchical
control figure (paper fig. 5)."""
import numpy as np

from .. import io, pictures
from ..artifacts import CONTROL_GRID, SAMPLES, SAMPLES_GRID, SAMPLE_FILES, metrics_files
from ..generation import control_latents, load_trained, sample_latents
from . import elapsed, run, write_metrics

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (SAMPLES, SAMPLE_FILES, SAMPLES_GRID, CONTROL_GRID, *metrics_files("sample"))


def main(cfg, generator, start, device):
    s = cfg.sample
    data, loe, hcdm = load_trained(device)
    m = data.modality
    coords = m.coordinates()

    latents = sample_latents(hcdm, s.num_samples, generator, s.sampler, s.ddim_steps, s.batch_size)
    values = loe.render(coords, latents)
    pics = m.to_pictures(values)
    up = pictures.upscale_for(pics.shape[1])
    io.save_npz(SAMPLES, latents=latents.numpy(), pictures=pics)
    files = m.file_coordinates()
    shown = values if files is None else loe.render(files, latents)
    io.save_directory(SAMPLE_FILES, {f"sample_{i:04d}{m.file_suffix}": m.instance_file(v) for i, v in enumerate(shown)})
    io.save_png(SAMPLES_GRID, pictures.grid(pics, s.grid_columns, upscale=up))

    # One block per anchor: row k fixes h^1..h^k (k = 0..L-1) of the anchor in
    # the first column and resamples the rest in the other columns. The flat
    # baseline has no layer chain, so its blocks hold the k = 0 row only.
    anchors = latents[: s.control_anchors]
    tree = control_latents(hcdm, anchors, s.control_completions, generator, s.sampler, s.ddim_steps)
    blocks = []
    for a in range(len(anchors)):
        rows = [np.concatenate([pics[a:a + 1], m.to_pictures(loe.render(coords, tree[a, k]))])
                for k in range(tree.shape[1])]
        blocks.append(pictures.grid(np.concatenate(rows), s.control_completions + 1, upscale=up))
    io.save_png(CONTROL_GRID, pictures.stack_vertically(blocks))
    write_metrics("sample", {"num_samples": s.num_samples, "sampler": s.sampler, "ddim_steps": s.ddim_steps,
                             "seconds": elapsed(start)}, omit=("num_samples", "ddim_steps"))   # params, shown as such


if __name__ == "__main__":
    run(main, OUTPUTS)
