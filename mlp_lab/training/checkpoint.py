"""The checkpoint format, in one place: what ``best.pt`` and ``last.pt`` hold, saving, safe
loading, and ``load_model(run_dir)``, which evaluate, predict, the registry and the app all use.

Every checkpoint describes itself (as nanoGPT's do): its kind and format version, the config
and its hash, the model's config section (what its family builds it from), the facts about the
data that preprocessing needs (dataset, classes, image shape, normalisation), and the weights. ``last.pt`` adds the
optimizer, schedule, early-stopping and RNG state a bit-exact resume needs. Loading always uses
``weights_only=True``: a checkpoint can never run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import TypeAdapter, ValidationError

from mlp_lab.config.load import load_config
from mlp_lab.config.schema import Config, config_to_dict
from mlp_lab.config.section import ModelSectionField
from mlp_lab.core.errors import MLPLabError, clip
from mlp_lab.data.load import DatasetInfo
from mlp_lab.models.registry import Network, build_model
from mlp_lab.runs import rundir

# 2: the model's config section (`model_section`) instead of its constructor's `model_args`, an
# untyped second schema of the built-in classes. Version 1 checkpoints still load (`_legacy_section`).
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)
KINDS = ("best", "last")


class CheckpointError(MLPLabError):
    """A checkpoint is missing, truncated, foreign or does not fit the model."""


def data_meta(info: DatasetInfo) -> dict[str, Any]:
    """What a checkpoint records about its data: enough to preprocess a new image the same way."""
    meta = {
        "dataset": info.name,
        "classes": list(info.classes),
        "image_shape": list(info.image_shape),
        "mean": list(info.mean),
        "std": list(info.std),
        # The pixel order the model was trained on (data.permute_pixels), applied to every input.
        "pixel_permutation": list(info.pixel_permutation) if info.pixel_permutation is not None else None,
    }
    if info.scale != 255.0 or info.features:
        # A user's float arrays or table (data.source): mean and std are on the values' own scale.
        meta.update(scale=info.scale, features=list(info.features))
    return meta


def checkpoint_header(
    kind: str, config: Config, config_hash: str, model: Network, meta: dict[str, Any]
) -> dict[str, Any]:
    """What both checkpoint kinds hold: identity, config, data facts and the model's weights."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    return {
        "kind": f"mlp-lab/{kind}",
        "version": CHECKPOINT_VERSION,
        "config_hash": config_hash,
        "config": config_to_dict(config),
        # The validated section itself: rebuilt by its family from it and the data's shape.
        "model_section": config_to_dict(config.model),
        "data": meta,
        "model": model.state_dict(),
    }


def save_checkpoint(checkpoint: dict[str, Any], run_dir: str | Path) -> Path:
    """Write a checkpoint built on `checkpoint_header` atomically to run_dir/checkpoints/<kind>.pt."""
    kind = checkpoint["kind"].removeprefix("mlp-lab/")
    path = Path(run_dir) / f"{rundir.CHECKPOINT_DIR}/{kind}.pt"
    rundir.atomic_torch_save(checkpoint, path)
    return path


def load_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """Load an mlp-lab checkpoint safely (weights_only=True), checking it is the expected kind."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            what = "is a directory, expected a checkpoint file"
        elif path.is_symlink():
            what = "a symbolic link to a missing file"
        else:
            what = "checkpoint not found"
        raise CheckpointError(f"{path}: {what}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, disallowed globals...
        # torch's first sentence only: the rest is advice about trusting pickles, and cutting
        # the text at a length left the line ending mid-word.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = clip(first.split(". ")[0].rstrip("."), 160)
        raise CheckpointError(
            f"{path}: truncated or corrupt, not a readable mlp-lab checkpoint ({reason}); "
            "restore a complete copy, or train the run again"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != f"mlp-lab/{kind}":
        raise CheckpointError(f"{path}: not an mlp-lab {kind} checkpoint")
    if ckpt.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')} is not supported")
    return ckpt


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Load a state dict, turning an architecture mismatch into a clear CheckpointError."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit this model ({first[:200]})") from None


@dataclass
class LoadedRun:
    """A run's config, model (eval mode, CPU) and the data facts its checkpoint carries."""

    run_dir: Path
    config: Config
    model: Network
    checkpoint: str  # "best" or "last": the weights the run's test metrics were computed with
    data_meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.data_meta["classes"])


def _legacy_section(model_args: dict[str, Any]) -> dict[str, Any]:
    """A version 1 checkpoint's `model_args` (the built-in classes' constructor arguments; an MLP's
    carry no `kind`) as the model section they were built from."""
    args = dict(model_args)
    dense = {key: args[key] for key in ("hidden_sizes", "activation", "batch_norm", "dropout", "input_dropout")}
    if args.get("kind", "mlp") == "mlp":
        return {"kind": "mlp", **dense}
    conv = {key: args[key] for key in ("channels", "kernel_size", "padding", "pool", "pool_size")}
    return {
        "kind": "cnn",
        "conv": {**conv, "batch_norm": args["conv_batch_norm"], "dropout": args["conv_dropout"]},
        **dense,
    }


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Network:
    """Rebuild the model a checkpoint describes and load its weights (eval mode)."""
    data = ckpt.get("data")
    try:
        raw = ckpt["model_section"] if ckpt.get("version", 1) >= 2 else _legacy_section(ckpt["model_args"])
        section = TypeAdapter(ModelSectionField).validate_python(raw)
        image_shape, num_classes = tuple(data["image_shape"]), len(data["classes"])
        model = build_model(section, image_shape, num_classes)
    except ValidationError as exc:
        problems = "; ".join(f"model.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CheckpointError(f"{path}: its model section is not usable ({problems})") from None
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: model arguments are not usable ({exc})") from None
    load_weights(model, ckpt["model"], path)
    return model.eval()


def load_model(run_dir: str | Path, which: str | None = None) -> LoadedRun:
    """Load a run directory's model: by default the weights its summary's test metrics used
    (best, or last when the run kept its last weights), else the kind `which` names."""
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG_FILE).is_file():
        raise rundir.not_a_run_directory(run_dir)
    config = load_config(run_dir / rundir.CONFIG_FILE)
    summary_path = run_dir / rundir.SUMMARY_FILE
    try:
        summary = rundir.read_summary(run_dir) if summary_path.exists() or summary_path.is_symlink() else {}
    except (OSError, ValueError) as exc:
        what = str(exc) if isinstance(exc, rundir.UnreadableFile) else f"{summary_path}: cannot read ({exc.strerror})"
        raise MLPLabError(f"{what}; rebuild it with mlp-lab run --resume {run_dir}") from None
    if summary.get("status") == "diverged":
        # Its weights are whatever the last good epoch left, not a result: say why, not "best.pt not found".
        raise MLPLabError(
            f"{run_dir}: this run diverged, so it has no model to use "
            f"({summary.get('error', 'loss became NaN or infinite')})"
        )
    if which is None:
        which = summary.get("test_weights", "best")
    if which not in KINDS:
        raise MLPLabError(f"{run_dir}: unknown checkpoint {which!r}; choose best or last")
    path = run_dir / f"{rundir.CHECKPOINT_DIR}/{which}.pt"
    ckpt = load_checkpoint(path, which)
    if not isinstance(ckpt.get("data"), dict):
        raise CheckpointError(
            f"{path}: holds no data description (written by an older mlp-lab); use the other checkpoint or retrain"
        )
    return LoadedRun(run_dir, config, model_from_checkpoint(ckpt, path), which, ckpt["data"])
