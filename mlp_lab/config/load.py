"""A config read, validated and checked across fields: every problem reported at once, each one
line naming the file (or the ``--set`` that caused it) and the dotted key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlp_lab.config.engines import hand_unsupported
from mlp_lab.config.overrides import apply_set_options
from mlp_lab.config.plugins import plugin_errors
from mlp_lab.config.schema import Config
from mlp_lab.config.schema_errors import schema_errors
from mlp_lab.config.section import GeometryError
from mlp_lab.config.sizes import _gib, dataset_geometry, physical_memory, training_bytes
from mlp_lab.config.targets import anchor_paths
from mlp_lab.core.errors import ConfigError, MLPLabError
from mlp_lab.core.shipped import resolve
from mlp_lab.core.yamlfile import read_yaml_mapping


def _cross_field_errors(cfg: Config, machine: bool = True) -> list[tuple[str, str]]:
    errors = []
    try:
        geometry = dataset_geometry(cfg.model, cfg.data)
    except GeometryError as exc:
        # Checked before the memory estimate, which needs the geometry.
        return [(f"model.{exc.key}", str(exc))]
    except MLPLabError:
        # A run's record read where its own data is not (a registered model loaded elsewhere):
        # nothing to size it against; reading the data says what is missing, when it is needed.
        if machine:
            raise
        return []
    memory = physical_memory() if machine else None
    if memory is not None and training_bytes(cfg) > memory:
        # The key a user shrinks: the hidden sizes where the section has them.
        key = "model.hidden_sizes" if "hidden_sizes" in type(cfg.model).model_fields else "model"
        errors.append(
            (
                key,
                f"{geometry.parameters:,} parameters need at least {_gib(training_bytes(cfg))} "
                f"to train (weights, gradients, optimizer state); this machine has "
                f"{_gib(memory)}",
            )
        )
    errors += plugin_errors(cfg.data.name, cfg.output)
    train = cfg.train
    unsupported = hand_unsupported(cfg) if train.engine == "hand" else None
    if unsupported:
        errors.append(("train.engine", f"'hand' cannot train this config ({unsupported}): use train.engine: autograd"))
    if train.scheduler.warmup_epochs >= train.epochs:
        errors.append(("train.scheduler.warmup_epochs", f"must be less than train.epochs ({train.epochs})"))
    if train.optimizer.nesterov and (train.optimizer.name != "sgd" or train.optimizer.momentum == 0):
        errors.append(("train.optimizer.nesterov", "needs optimizer 'sgd' with momentum > 0"))
    if train.scheduler.min_lr >= train.optimizer.lr and train.scheduler.name in ("cosine", "plateau"):
        errors.append(("train.scheduler.min_lr", f"must be below train.optimizer.lr ({train.optimizer.lr})"))
    return errors


def validate_config(
    data: Mapping[str, Any], source: str, override_sources: Mapping[str, str] | None = None, machine: bool = True
) -> Config:
    """Validate a raw mapping into a Config, raising one ConfigError listing every problem.

    `source` names where the mapping came from (a file path); `override_sources` maps dotted
    keys that were set by overrides to a description of the override, so each error names
    whatever the user actually wrote. With `machine` (the default), a model too large for this
    machine's memory is refused too; reading back a run made elsewhere turns that off.
    """
    override_sources = dict(override_sources or {})

    def where(dotted: str) -> str:
        for key, desc in override_sources.items():
            if (
                dotted == key
                or dotted.startswith(key + ".")
                or dotted.startswith(key + "[")
                or key.startswith(dotted + ".")
            ):
                return desc
        return source

    try:
        cfg = Config.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(schema_errors(where, exc)) from None
    cross = _cross_field_errors(cfg, machine)
    if cross:
        raise ConfigError([f"{where(key)}: {key}: {msg}" for key, msg in cross])
    return cfg


def resolve_config(name_or_path: str | Path) -> Path:
    """A config's file: a path as it is, a name (`baseline`) from ./configs, else the shipped copy."""
    return resolve(name_or_path, "config")


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (a path, or a name resolved by `resolve_config`), apply ``KEY=VALUE``
    overrides, validate; report all errors at once."""
    path = resolve_config(path)
    data = read_yaml_mapping(path)
    anchor_paths(data, path.parent)  # a target or data path is relative to the config that names it
    errors: list[str] = []
    sources = apply_set_options(data, overrides, errors)
    try:
        cfg = validate_config(data, str(path), sources)
    except ConfigError as exc:
        errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return cfg
