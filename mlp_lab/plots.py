"""Figures for single runs and evaluations (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path, title: str) -> None:
    """Loss and accuracy (train vs val) and the LR, per epoch, side by side."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, metric in ((axes[0], "loss"), (axes[1], "acc")):
        ax.plot(epochs, [r[f"train/{metric}"] for r in history], "--", label=f"train/{metric}")
        ax.plot(epochs, [r[f"val/{metric}"] for r in history], "-", label=f"val/{metric}")
        ax.set(
            xlabel="epoch",
            ylabel="accuracy" if metric == "acc" else "cross-entropy loss",
            title=f"{'accuracy' if metric == 'acc' else 'loss'}: train vs val",
        )
        ax.grid(alpha=0.3)
        ax.legend()
    axes[2].plot(epochs, [r["lr"] for r in history], marker=".")
    axes[2].set(xlabel="epoch", ylabel="learning rate", title="learning rate (epoch start)")
    axes[2].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_display(images: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(N, C, H, W) floats in [0, 1] -> arrays imshow takes, and the colormap to use."""
    if images.shape[1] == 1:
        return images[:, 0], "gray"
    return images.transpose(0, 2, 3, 1), None


def image_grid(
    images: np.ndarray,
    titles: Sequence[str],
    path: str | Path,
    title: str,
    cols: int = 8,
    title_colors: Sequence[str] | None = None,
) -> None:
    """A grid of images (N, C, H, W in [0, 1]) with a caption over each."""
    plt = _pyplot()
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    shown, cmap = to_display(images)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.2 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(shown[i], cmap=cmap, vmin=0, vmax=1)
            ax.set_title(titles[i], fontsize=7.5, color=(title_colors[i] if title_colors else "black"))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_matrix_plot(matrix: np.ndarray, classes: Sequence[str], path: str | Path, title: str) -> None:
    """Counts and row-normalized (recall per true class) confusion matrices side by side."""
    plt = _pyplot()
    rows = matrix.sum(1, keepdims=True)
    normalized = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    k = len(classes)
    fig, axes = plt.subplots(1, 2, figsize=(2 * (0.65 * k + 3), 0.6 * k + 2.5))
    for ax, values, fmt, name in ((axes[0], matrix, "d", "counts"), (axes[1], normalized, ".2f", "row-normalized")):
        im = ax.imshow(values, cmap="Blues")
        ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        ax.set(xlabel="predicted class", ylabel="true class", title=name)
        threshold = values.max() / 2 if values.max() > 0 else 1
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    format(values[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if values[i, j] > threshold else "black",
                )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
