"""After training: `mlp-lab evaluate` (per-class report, confusion matrix, example grids)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlp_lab.data.load import load_data
from mlp_lab.inspect.analysis import unnormalize
from mlp_lab.inspect.handwriting import RENDERINGS, score_scans
from mlp_lab.inspect.plots import confusion_matrix_plot, image_grid, run_title
from mlp_lab.runs import rundir
from mlp_lab.training.checkpoint import load_model
from mlp_lab.training.evaluate import EVAL_BATCH_SIZE, evaluate


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class (0 where undefined)."""
    rows = []
    for k, name in enumerate(classes):
        tp = int(np.sum((y_pred == k) & (y_true == k)))
        predicted = int(np.sum(y_pred == k))
        support = int(np.sum(y_true == k))
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def _report_text(rows: list[dict[str, Any]], accuracy: float, loss: float, split: str, n: int) -> str:
    width = max(12, max(len(r["class"]) for r in rows) + 2)
    lines = [
        f"{split} split: {n} examples, accuracy {accuracy:.4f}, loss {loss:.4f}",
        "",
        f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for r in rows:
        lines.append(
            f"{r['class']:<{width}}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}{r['support']:>10}"
        )
    macro = {k: float(np.mean([r[k] for r in rows])) for k in ("precision", "recall", "f1")}
    lines.append(
        f"{'macro avg':<{width}}{macro['precision']:>10.4f}{macro['recall']:>10.4f}{macro['f1']:>10.4f}{n:>10}"
    )
    return "\n".join(lines) + "\n"


def evaluate_run(
    run_dir: str | Path, split: str = "test", data_dirs: Sequence[str] = (), grid_size: int = 32, seed: int = 0
) -> dict[str, Any]:
    """Evaluate a run's weights on a split; write report, CSV, confusion matrix and grids to eval/."""
    run = load_model(run_dir)
    data = load_data(run.config.data, "cpu", data_dirs)
    part = getattr(data, split)
    loss, accuracy = evaluate(run.model, part)
    with torch.inference_mode():
        probs = torch.cat(
            [torch.softmax(run.model(part.x[i : i + EVAL_BATCH_SIZE]), 1) for i in range(0, len(part), EVAL_BATCH_SIZE)]
        )
    confidence, predicted = probs.max(1)
    y_true, y_pred = part.y.numpy(), predicted.numpy()
    classes = list(data.info.classes)
    rows = per_class_report(y_true, y_pred, classes)
    matrix = confusion_matrix(y_true, y_pred, len(classes))

    out = run.run_dir / "eval"
    out.mkdir(exist_ok=True)
    tag = f"{split}_"
    rundir.atomic_write_text(out / f"{tag}report.txt", _report_text(rows, accuracy, loss, split, len(part)))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["class", "precision", "recall", "f1", "support"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    rundir.atomic_write_text(out / f"{tag}per_class.csv", buffer.getvalue())
    named = run_title(run.run_dir, run.config.name, run.config.seed)
    title = f"{named}: {split} split ({run.checkpoint} weights), accuracy {accuracy:.4f}"
    confusion_matrix_plot(matrix, classes, out / f"{tag}confusion_matrix.png", title)

    def grid(indices: list[int], path: Path, what: str) -> None:
        images = unnormalize(part.x[indices], data.info.image_shape, data.info.mean, data.info.std).numpy()
        titles = [f"true: {classes[y_true[i]]}\npred: {classes[y_pred[i]]} ({confidence[i]:.2f})" for i in indices]
        colors = ["black" if y_true[i] == y_pred[i] else "crimson" for i in indices]
        image_grid(images, titles, path, f"{named}: {what}", title_colors=colors)

    generator = np.random.default_rng(seed)
    wrong = np.flatnonzero(y_true != y_pred)
    # The most confident mistakes are the most instructive ones.
    worst = wrong[np.argsort(-confidence.numpy()[wrong])][:grid_size].tolist()
    # A table's rows (data.source: csv, or (N, features) arrays) are no pictures: no grids.
    pictures = not data.info.features
    if worst and pictures:
        grid(
            worst, out / f"{tag}misclassified.png", f"most confident mistakes on {split} (true, predicted, confidence)"
        )
    sample = generator.choice(len(part), size=min(grid_size, len(part)), replace=False).tolist()
    if pictures:
        grid(sample, out / f"{tag}predictions.png", f"random {split} predictions (mistakes in red)")

    result = {
        "run_dir": str(run.run_dir),
        "split": split,
        "weights": run.checkpoint,
        "examples": len(part),
        "accuracy": accuracy,
        "loss": loss,
        "per_class": rows,
        "confusion_matrix": matrix.tolist(),
        "files": sorted({p.name for p in out.glob(f"{tag}*")} | {f"{tag}metrics.json"}),  # this file too
    }
    rundir.write_json(out / f"{tag}metrics.json", result)
    return result


def _handwriting_text(run_dir: Path, weights: str, scores: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{run_dir.name} ({weights} weights) on real handwriting: scikit-learn's UCI optical digits as PNG scans,",
        "through predict's preprocessing (inversion from the border, MNIST's crop, scale and centring)",
        "",
        f"{'rendering':<16}{'accuracy':>10}{'correct':>10}  per digit 0-9 (%)",
    ]
    for rendering, r in scores.items():
        per_digit = " ".join(f"{a * 100:3.0f}" for a in r["per_class_accuracy"])
        lines.append(f"{rendering:<16}{r['accuracy']:>10.4f}{r['correct']:>6}/{r['examples']}  {per_digit}")
    return "\n".join(lines) + "\n"


def evaluate_handwriting(run_dir: str | Path) -> dict[str, Any]:
    """A digits run on the real-handwriting scans, per rendering; written to eval/handwriting_*."""
    run = load_model(run_dir)
    scores = score_scans(run.model, run.data_meta, RENDERINGS)
    out = run.run_dir / "eval"
    out.mkdir(exist_ok=True)
    rundir.atomic_write_text(out / "handwriting_report.txt", _handwriting_text(run.run_dir, run.checkpoint, scores))
    result = {
        "run_dir": str(run.run_dir),
        "split": "handwriting",
        "weights": run.checkpoint,
        "set": "sklearn.datasets.load_digits (UCI optical digits, 1,797 scans of 43 writers)",
        "renderings": scores,
        "accuracy": float(np.mean([r["accuracy"] for r in scores.values()])),
        "files": ["handwriting_metrics.json", "handwriting_report.txt"],
    }
    rundir.write_json(out / "handwriting_metrics.json", result)
    return result
