"""The latent-space views of the paper's analysis, with the numbers behind them:

- conditional distributions (fig. 7b,c and 18): the train latents of layers l and l+1 in PCA
  coordinates (grey), a few chains h^1..h^l drawn from the HCDM (coloured points in layer l),
  and for each of them draws of h^{l+1} | c^{l+1} (the same colour in layer l+1);
- binary-condition clusters (fig. 19): each layer's train latents in 10 k-means clusters, and for
  three anchor instances the train latents whose codes c^l are nearest to the anchor's (stars).

Latents are standardised per dimension (the HCDM's units); PCA is fitted on the train latents of
each layer. k-means: k-means++ seeding then Lloyd's iterations, a few lines of torch (scikit-learn
would add a dependency for 20 lines and give no other answer).
"""
from __future__ import annotations

import numpy as np
import torch

from .hcdm import HCDM

COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def pca(x: torch.Tensor, dims: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean (D,), components (dims, D), explained share of variance (dims,)) of x (N, D)."""
    mean = x.mean(0)
    _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
    var = s ** 2
    return mean, vt[:dims], var[:dims] / var.sum()


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(centres (k, D), labels (N,)): k-means++ seeding, then Lloyd's iterations until no label changes."""
    centres = x[torch.randint(len(x), (1,), generator=generator)]
    for _ in range(1, k):
        d2 = torch.cdist(x, centres).min(1).values ** 2
        # Fewer distinct points than k (a four-image folder): every point is a centre already, so
        # the rest are drawn uniformly and stay as empty clusters, not a division by zero.
        weights = d2 if d2.sum() > 0 else torch.ones_like(d2)
        centres = torch.cat([centres, x[torch.multinomial(weights, 1, generator=generator)]])
    labels = torch.full((len(x),), -1, dtype=torch.long)
    for _ in range(iters):
        new = torch.cdist(x, centres).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                centres[j] = members.mean(0)
    return centres, labels


def conditionals(hcdm: HCDM, train: torch.Tensor, anchors: int, samples: int, generator: torch.Generator,
                 sampler: str, steps: int) -> list[dict]:
    """Per layer pair (l, l+1): the PCA projections behind fig. 7b,c, and the numbers.

    train (N, L, H) raw. `anchors` chains h^1..h^l drawn from the model, `samples` draws of h^{l+1}
    for each. Numbers: each anchor's cloud spread (total variance in the PCA plane) as a share of the
    train latents' spread there, mean over anchors; and the same for all draws pooled.
    """
    z = hcdm.standardise(train.float())
    out = []
    for l in range(1, hcdm.layers):
        chains = hcdm.sample(anchors, generator, stop=l, sampler=sampler, steps=steps)      # h^1..h^l drawn
        drawn = hcdm.sample(anchors * samples, generator, prefix=chains[:, :l].repeat_interleave(samples, 0),
                            stop=l + 1, sampler=sampler, steps=steps)
        (m0, c0, e0), (m1, c1, e1) = pca(z[:, l - 1]), pca(z[:, l])
        here = (hcdm.standardise(chains)[:, l - 1] - m0) @ c0.T                             # (anchors, 2)
        nxt = ((hcdm.standardise(drawn)[:, l] - m1) @ c1.T).reshape(anchors, samples, 2)
        marginal = ((z[:, l] - m1) @ c1.T).var(0).sum()
        out.append({
            "layers": [l, l + 1],
            "train_here": ((z[:, l - 1] - m0) @ c0.T).numpy(), "train_next": ((z[:, l] - m1) @ c1.T).numpy(),
            "anchors": here.numpy(), "draws": nxt.numpy(),
            "explained_variance_2d": [round(float(e0.sum()), 4), round(float(e1.sum()), 4)],
            "conditional_spread_share": round(float((nxt.var(1).sum(-1) / marginal).mean()), 4),
            "pooled_spread_share": round(float(nxt.reshape(-1, 2).var(0).sum() / marginal), 4),
        })
    return out


def code_clusters(hcdm: HCDM, train: torch.Tensor, generator: torch.Generator, clusters: int = 10,
                  anchors: int = 3, neighbours: int = 25, measured: int = 200) -> list[dict]:
    """Per layer l >= 2: fig. 19's k-means clusters of h^l and the train latents nearest in code.

    For each of `measured` random train instances (the first `anchors` of them drawn in the figure), the
    `neighbours` other train instances whose codes c^l are nearest to its own in Hamming distance (ties:
    lower index). Numbers per anchor: the share of those neighbours in the anchor's own cluster
    ("same_cluster"), beside that cluster's share of the other train latents ("chance": what neighbours
    drawn at random would give, in expectation). Three anchors moved a layer's mean by 0.2 and more;
    `numbers` gives the mean over all measured ones with its standard error. A prior without codes
    (hcdm.variant unconditional or flat) has nothing to show: [].
    """
    if hcdm.variant != "hierarchical":
        return []
    z = hcdm.standardise(train.float())
    neighbours = min(neighbours, len(z) - 1)   # a four-image folder has three others, not 25
    if neighbours < 1:
        return []
    device = next(hcdm.parameters()).device   # the model may be on a GPU (analyze's `device`), the latents not
    codes = hcdm.condition_codes(z.to(device)).cpu()
    picks = torch.randperm(len(z), generator=generator)[:max(anchors, measured)]
    out = []
    for l in range(1, hcdm.layers):
        _, labels = kmeans(z[:, l], clusters, generator)
        mean, comp, explained = pca(z[:, l])
        hamming = (codes[picks, l][:, None, :] != codes[None, :, l]).sum(-1).float()       # (anchors, N)
        hamming[torch.arange(len(picks)), picks] = float("inf")                             # not itself
        order = torch.argsort(hamming * len(z) + torch.arange(len(z)), dim=1)[:, :neighbours]
        rows = []
        for i, (a, idx) in enumerate(zip(picks.tolist(), order)):
            own = labels[a]
            rows.append({"anchor": a, "max_hamming": int(hamming[i, idx].max()),
                         "same_cluster": round(float((labels[idx] == own).float().mean()), 4),
                         "chance": round(float(((labels == own).sum() - 1) / (len(z) - 1)), 4)})
        out.append({"layer": l + 1, "points": ((z[:, l] - mean) @ comp.T).numpy(), "labels": labels.numpy(),
                    "neighbours": order[:anchors].numpy(), "anchors": rows[:anchors], "measured": rows,
                    "explained_variance_2d": round(float(explained.sum()), 4)})
    return out


def plot_conditionals(path, views: list[dict]) -> None:
    from .plots import _figure, _save

    plt = _figure()
    fig, axes = plt.subplots(len(views), 2, figsize=(7, 3.2 * len(views)), squeeze=False)
    for row, v in zip(axes, views):
        l, n = v["layers"]
        for ax, grey, layer in ((row[0], v["train_here"], l), (row[1], v["train_next"], n)):
            ax.scatter(grey[:, 0], grey[:, 1], s=3, c="0.75", lw=0)
            ax.set_title(f"h^{layer} (PCA of train latents)", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
        for i, (a, d) in enumerate(zip(v["anchors"], v["draws"])):
            colour = COLOURS[i % len(COLOURS)]
            row[0].scatter([a[0]], [a[1]], s=60, c=colour, edgecolors="k", zorder=3)
            row[1].scatter(d[:, 0], d[:, 1], s=6, c=colour, alpha=0.6, lw=0, zorder=2)
        row[1].text(0.02, 0.02, f"spread share {v['conditional_spread_share']:.2f}", transform=row[1].transAxes,
                    fontsize=7)
    fig.suptitle("p(h^{l+1} | c^{l+1}) for drawn chains h^1..h^l (grey: train latents)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    _save(fig, path)
    plt.close(fig)


def plot_code_clusters(path, views: list[dict]) -> None:
    from .plots import _figure, _save

    plt = _figure()
    cols = min(2, len(views))
    rows = (len(views) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(views):]:
        ax.axis("off")
    for ax, v in zip(axes.flat, views):
        p = v["points"]
        ax.scatter(p[:, 0], p[:, 1], s=3, c=v["labels"], cmap="tab10", vmin=0, vmax=9, alpha=0.5, lw=0)
        for i, (a, idx) in enumerate(zip(v["anchors"], v["neighbours"])):
            colour = COLOURS[i % len(COLOURS)]
            ax.scatter(p[idx, 0], p[idx, 1], s=45, marker="*", c=colour, edgecolors="k", lw=0.4, zorder=3,
                       label=f"code of #{a['anchor']}: {a['same_cluster']:.2f} in its cluster (chance {a['chance']:.2f})")
        ax.set_title(f"h^{v['layer']}: 10 k-means clusters; stars: nearest codes", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        ax.legend(fontsize=5.5, loc="lower left")
    _save(fig, path)
    plt.close(fig)


def numbers(conditional_views: list[dict], cluster_views: list[dict]) -> dict:
    """What the detail file keeps of both views (no point clouds): the figure's anchors, and the means over
    every measured anchor with the standard error of the same-cluster share."""
    keep = ("layers", "explained_variance_2d", "conditional_spread_share", "pooled_spread_share")

    def mean(v, key):
        return round(float(np.mean([a[key] for a in v["measured"]])), 4)

    def se(v):
        same = np.array([a["same_cluster"] for a in v["measured"]])
        return round(float(same.std(ddof=1) / np.sqrt(len(same))), 4) if len(same) > 1 else None
    return {"conditionals": [{k: v[k] for k in keep} for v in conditional_views],
            "code_clusters": [{"layer": v["layer"], "explained_variance_2d": v["explained_variance_2d"],
                               "anchors": v["anchors"], "measured_anchors": len(v["measured"]),
                               "mean_same_cluster": mean(v, "same_cluster"), "mean_same_cluster_se": se(v),
                               "mean_chance": mean(v, "chance")}
                              for v in cluster_views]}
