"""The models the Draw page offers: finished runs and registered model aliases, which of them it
opens on (the robust digits model, trained on augmented batches, where there is one; else the
most accurate digits model), each resolved to a run directory on disk, and the
stamp that tells the model cache a run was retrained."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlp_lab.app.runs import RunInfo, list_runs
from mlp_lab.core.errors import MLPLabError
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus

DIGITS = "mnist"  # the dataset whose models a drawn digit is meant for
# What the Draw page offers a model: the canvas and uploads, uploads only, or no picture input.
PictureInput = Literal["draw", "upload", "none"]


@dataclass(frozen=True)
class ModelChoice:
    """One model the Draw page offers: its picker label, what `model_dir` resolves, and the facts
    that choose the default."""

    label: str
    target: str  # a run directory, or models:/NAME@ALIAS
    dataset: str | None
    test_acc: float | None
    augmented: bool = False  # trained on augmented batches (data.augment); unknown for registered models
    study: str | None = None  # the study folder a run belongs to (runs.study_of); None for the others


def finished_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Runs with a tested model: what the Draw page offers."""
    return [run for run in list_runs(runs_dir) if run.status == RunStatus.DONE.value]


def registered_models(runs_dir: str | Path) -> list[ModelChoice]:
    """Every alias in the tracking registry (``models:/NAME@ALIAS``), when the [track] extra is
    installed and a store exists; otherwise none (the app works without tracking)."""
    if importlib.util.find_spec("mlflow") is None:
        return []
    if not os.environ.get("MLFLOW_TRACKING_URI") and not (Path(runs_dir) / "mlflow.db").exists():
        return []
    from mlp_lab.tracking.registry import list_models

    try:
        rows = list_models(runs_dir)
    except MLPLabError:
        return []
    choices = {
        f"models:/{row['name']}@{alias}": (row.get("dataset"), row["test/acc"])
        for row in rows
        for alias in row["aliases"]
    }
    return [ModelChoice(f"{uri} (registered)", uri, *facts) for uri, facts in sorted(choices.items())]


def model_choices(runs: list[RunInfo], registered: list[ModelChoice]) -> list[ModelChoice]:
    """The picker's models: finished runs (by path), then registered aliases."""
    return [
        ModelChoice(run.describe(), str(run.path), run.dataset, run.test_acc, run.augmented, run.study) for run in runs
    ] + registered


def default_choice(choices: list[ModelChoice]) -> int:
    """The index of the digits model a drawing is best read by, or 0 (a digit drawn on the canvas
    means little to a FashionMNIST model): a tested MNIST model trained on augmented batches
    (configs/mnist_robust.yaml) before any other, MNIST's own test set being no guide to people's
    handwriting; among those, the most accurate."""
    digits = [i for i, choice in enumerate(choices) if choice.dataset == DIGITS and choice.test_acc is not None]
    # the first of equals
    return max(digits, key=lambda i: (choices[i].augmented, choices[i].test_acc), default=0)


def model_dir(choice: str, runs_dir: str | Path) -> Path:
    """A picker choice (a run directory, or a registered model URI) -> a run directory on disk."""
    if choice.startswith("models:/"):
        from mlp_lab.tracking.registry import materialize

        return materialize(choice, runs_dir)
    return Path(choice)


def table_features(meta: Mapping[str, Any]) -> int | None:
    """The features per row of a table model (its rows are held as (features, 1, 1) "images"), or
    None for a model of pictures."""
    shape = list(meta.get("image_shape") or [])
    if meta.get("features"):
        return len(meta["features"])
    if len(shape) == 1 or (len(shape) == 3 and shape[1:] == [1, 1]):
        return int(shape[0])
    return None


def picture_input(meta: Mapping[str, Any]) -> PictureInput:
    """What the Draw page offers a model, from its checkpoint's data facts: the canvas and uploads
    for a digits model (its dataset's picture recipe is MNIST's, "digit"), uploads for any other
    model of pictures (a user's image folder too: resized plainly), nothing for a table model."""
    from mlp_lab.inspect.predict import dataset_recipe

    if table_features(meta) is not None:
        return "none"
    recipe = meta.get("picture_recipe") or dataset_recipe(meta.get("dataset"))
    return "draw" if recipe == "digit" else "upload"


def checkpoint_stamp(run_dir: str | Path) -> float:
    """When the run's checkpoints last changed: part of the model cache's key, so a retrained or
    replaced run is reloaded. A directory deleted while open is one clear MLPLabError."""
    run_dir = Path(run_dir)
    try:
        return max(
            p.stat().st_mtime for p in [run_dir / rundir.CONFIG_FILE, *run_dir.glob(f"{rundir.CHECKPOINT_DIR}/*.pt")]
        )
    except (OSError, ValueError):
        raise MLPLabError(
            f"{run_dir}: this run directory no longer exists (deleted or moved); pick another model"
        ) from None
