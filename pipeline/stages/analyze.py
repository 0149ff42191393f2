"""Stage `analyze`: the paper's analysis figures on the trained run, made with the
same commands users run (`python -m pipeline.control ...`).

PNGs go to metrics/analysis/ (small, committed, shown in the README and by
`dvc plots show`); the latents behind them to data/analysis/ (DVC-tracked).
"""
import time

import torch

from .. import artifacts, control, latent_views
from ..artifacts import ANALYSIS_FIGURES, ANALYSIS_LATENTS, metrics_files
from ..hcdm import load_hcdm
from ..meta import load_loe
from ..modalities.plugins import CLASSES
from ..plots import message
from . import elapsed, run, write_metrics

# Removed when the stage stops early (dvc.yaml's outs, metrics and plots; curves and checkpoints stay).
OUTPUTS = (ANALYSIS_LATENTS, ANALYSIS_FIGURES, *metrics_files("analyze"))


def figures(n_test: int, render_scale: float = 4.0, chain: bool = True, per_layer: bool = True,
            layers: int = 5) -> dict[str, list[str]]:
    """command -> arguments; each figure is named after its command. Test instance i
    is test:(i mod n_test), so a small test split still gets every figure; `render`
    at the modality's own `render_scale`; `resample` keeps h^1, h^2 (h^1 alone at two layers);
    a prior without a layer chain resamples at k = 0;
    a Stage-1 without per-layer latents (a Table-1 baseline) gets no tree and no compose."""
    def test(i):
        return f"test:{i % n_test}"

    commands = {
        "tree": ["--source", "gen:3", "-n", "6"],
        "resample": ["--source", test(0), "-k", str(min(2, layers - 1)) if chain and per_layer else "0", "-n", "6"],
        "compose": ["--source", "gen:0", "--donors", *[f"gen:{i}" for i in range(1, 7)]],
        "interpolate": ["--corners", *[test(i) for i in range(4)], "--size", "6"],
        "retrieve": ["--source", test(5), "--top", "6"],
        "render": ["--source", "gen:0", "--scale", f"{render_scale:g}"],
    }
    return commands if per_layer else {k: v for k, v in commands.items() if k not in ("tree", "compose")}


def main(cfg, generator, start, device):
    s = cfg.sample
    seconds = {}
    hcdm = load_hcdm().to(device)
    chain = hcdm.variant != "flat"   # a flat prior has no layer chain: only k = 0 (fresh samples)
    scale = CLASSES[cfg.dataset.modality].render_scale
    n_test = len(artifacts.load_latents()["test"])
    per_layer = load_loe()[0].per_layer_latents
    for name, args in figures(n_test, scale, chain, per_layer, hcdm.layers).items():
        t = time.time()
        code = control.main([name, *args, "--out", str(ANALYSIS_FIGURES / f"{name}.png"),
                             "--npz", str(ANALYSIS_LATENTS / f"{name}.npz"), "--seed", str(cfg.seed),
                             "--sampler", s.sampler, "--steps", str(s.ddim_steps), "--upscale", "2"])
        if code != 0:   # the command has said why, in one line; `run` removes the outputs
            raise SystemExit(code)
        seconds[name] = round(time.time() - t, 1)
    views = {}
    if chain:   # fig. 7b,c / 18 and fig. 19: the conditional distributions and the codes' clusters
        t = time.time()
        train = torch.from_numpy(artifacts.load_latents()["train"])
        conditional = latent_views.conditionals(hcdm, train, 5, 200, generator, s.sampler, s.ddim_steps)
        clusters = latent_views.code_clusters(hcdm, train, generator)
        latent_views.plot_conditionals(ANALYSIS_FIGURES / "conditionals.png", conditional)
        if clusters:
            latent_views.plot_code_clusters(ANALYSIS_FIGURES / "code_clusters.png", clusters)
        else:
            message(ANALYSIS_FIGURES / "code_clusters.png",
                    f"no code clusters: the {hcdm.variant} prior conditions on no binary code")
        views = latent_views.numbers(conditional, clusters)
        seconds["conditionals+code_clusters"] = round(time.time() - t, 1)
    write_metrics("analyze", {"seconds_per_command": seconds, **views, "seconds": elapsed(start)},
                  omit=("seconds_per_command", "conditionals", "code_clusters"))


if __name__ == "__main__":
    run(main, OUTPUTS)
