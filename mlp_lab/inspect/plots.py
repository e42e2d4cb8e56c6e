"""Figures for single runs and evaluations (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlp_lab.runs import rundir


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Rates spanning at least this ratio get a log axis: SGD's 0.05 beside Adam's 1e-3 would flatten
# Adam's schedule into the floor of a linear one.
LOG_SCALE_SPAN = 10.0


def epoch_axis(ax: Any) -> None:
    """Epochs on the x axis as whole numbers (a short run would otherwise get ticks at 1.25, 1.5...)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def lr_axis(ax: Any, rates: Sequence[float]) -> str:
    """A log y axis when the positive rates span decades, so every schedule's decay shows; returns
    the scale's name for the axis label."""
    positive = [r for r in rates if r > 0 and np.isfinite(r)]
    if positive and max(positive) / min(positive) >= LOG_SCALE_SPAN:
        ax.set_yscale("log")
        return "log scale"
    return "linear scale"


def outside_legend(fig: Any, ax: Any, title: str | None = None) -> None:
    """The legend right of the axes, where it covers no curve: lays the figure out first (so give
    it its suptitle before), and save it with bbox_inches="tight" so the legend is kept."""
    fig.tight_layout()
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def run_title(run_dir: str | Path, name: str, seed: int) -> str:
    """What a run's figures are of: `study, arm, seed` for a study's run (<study>/<arm>/seed-<n>),
    else the config's name and seed."""
    run_dir = Path(run_dir)
    if run_dir.name == f"seed-{seed}" and run_dir.parent.parent.name:
        return f"study {run_dir.parent.parent.name}, arm {run_dir.parent.name}, seed {seed}"
    return f"{name}, seed {seed} ({run_dir.name})"


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path, title: str) -> None:
    """curves.png: `curves_figure`, saved."""
    plt = _pyplot()
    fig = curves_figure(history, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


class CurvesFigure:
    """curves.png as one of a run's metric sinks (`training.loggers.MetricLogger`): drawn from
    metrics.csv when the run's summary is written, completed or diverged. Placed before the sinks
    that copy the run's files (MLflow), so they find it."""

    def __init__(self, run_dir: str | Path, name: str, seed: int):
        self.run_dir, self.title = Path(run_dir), run_title(run_dir, name, seed)

    def log_config(self, config: Any) -> None:
        pass

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        pass

    def log_summary(self, summary: dict[str, Any]) -> None:
        if (self.run_dir / rundir.METRICS_FILE).is_file():  # a run that diverged in its first epoch has none
            history = rundir.read_metrics(self.run_dir)
            if history:
                plot_curves(history, self.run_dir / "curves.png", self.title)

    def close(self) -> None:
        pass


def curves_logger(config: Any, run_dir: Path, start_epoch: int, tags: Any) -> CurvesFigure:
    """The `training.loggers.LoggerFactory` of a run's curves.png (every run draws one)."""
    return CurvesFigure(run_dir, config.name, config.seed)


def curves_figure(history: Sequence[dict[str, Any]], title: str) -> Any:
    """Loss and accuracy (train vs val) and the LR, per epoch, side by side."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, metric in ((axes[0], "loss"), (axes[1], "acc")):
        ax.plot(epochs, [r[f"train/{metric}"] for r in history], "--", marker=".", label=f"train/{metric}")
        ax.plot(epochs, [r[f"val/{metric}"] for r in history], "-", marker=".", label=f"val/{metric}")
        ax.set(
            ylabel="accuracy" if metric == "acc" else "cross-entropy loss",
            title=f"{'accuracy' if metric == 'acc' else 'loss'}: train vs val",
        )
        epoch_axis(ax)
        ax.grid(alpha=0.3)
    rates = [r["lr"] for r in history]
    axes[2].plot(epochs, rates, marker=".")
    scale = lr_axis(axes[2], rates)
    axes[2].set(ylabel=f"learning rate ({scale})", title="learning rate (epoch start)")
    epoch_axis(axes[2])
    axes[2].grid(alpha=0.3)
    fig.suptitle(title)
    # Fixed margins, not tight_layout: the figure's size and panels never change, and measuring
    # every label's extent was half the cost of drawing the figure every run makes.
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.2, top=0.87, wspace=0.25)
    # One legend under the panels: inside, it would sit on the curves it names.
    handles, labels = axes[0].get_legend_handles_labels()
    handles2, labels2 = axes[1].get_legend_handles_labels()
    fig.legend(handles + handles2, labels + labels2, loc="lower center", ncol=4, frameon=False)
    return fig


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
    fig.tight_layout(rect=(0, 0, 1, 0.95))  # room for the title above the panels' own
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the rotated class names and x label stay inside
    plt.close(fig)
