"""Figures drawn with matplotlib (Agg, no display), written atomically as PNG."""
from __future__ import annotations

import numpy as np

from . import io


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def heatmap(path, matrix: np.ndarray, labels: list[str], title: str) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.8 * len(labels)))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            value = matrix[i, j]      # NaN: not measured (a constant layer), an empty cell on the white ground
            ax.text(j, i, "–" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    color="black" if np.isnan(value) or value > 0.6 else "white", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=9)
    _save(fig, path)
    plt.close(fig)


def line_plot(path, x: list, series: dict[str, list[float]], xlabel: str, ylabel: str, title: str) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", label=name)
    ax.set_xticks(x)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)


def message(path, text: str) -> None:
    """A figure that says why there is no figure (e.g. a stage skipped for this data)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True)
    _save(fig, path)
    plt.close(fig)
