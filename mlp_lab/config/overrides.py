"""Dotted keys: ``--set KEY=VALUE`` parsed and applied, a study's overrides, a named base config
read, mappings merged and flattened."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from mlp_lab.config.section import DEFAULT_KIND, USER_KIND
from mlp_lab.config.targets import anchor_paths
from mlp_lab.core.errors import ConfigError, clip, clip_repr
from mlp_lab.core.yamlfile import read_yaml_mapping, safe_load_strict


def read_named_base(path: Path, raw: Mapping[str, Any], errors: list[str]) -> dict[str, Any] | None:
    """The base config a study or search file's raw `base` names, or None when it names
    none or it cannot be read (its problems then added to `errors`, beside the file's others)."""
    if not isinstance(raw.get("base"), str):
        return None
    try:
        return read_base_config(path, raw["base"], [])
    except ConfigError as exc:
        errors += exc.errors
        return None


def read_base_config(path: Path, base: str, errors: list[str]) -> dict[str, Any]:
    """The `base` config named by a study or search file at `path` (relative to that file).
    If it cannot be read, that is raised together with the file's `errors` found so far."""
    base_path = Path(base) if Path(base).is_absolute() else (path.parent / base).resolve()
    try:
        raw = read_yaml_mapping(base_path)
    except ConfigError as exc:
        raise ConfigError([f"{path}: base: {e}" for e in exc.errors] + errors) from None
    anchor_paths(raw, base_path.parent)
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b.c=value`` into the dotted key and the value parsed as a YAML scalar/list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or any(not p or not p.replace("_", "").isalnum() for p in parts):
        raise ValueError(f"--set {clip(text)}: expected KEY=VALUE with a dotted key, e.g. train.optimizer.lr=0.01")
    try:
        value = safe_load_strict(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError):
        raise ValueError(f"--set {clip(text)}: value {clip_repr(raw)} is not valid YAML") from None
    return key, value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for key ``a.b.c``, creating missing mappings on the way."""
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise ValueError(f"{prefix}: is a {type(child).__name__}, so it has no key {parts[i + 1]!r}")
        node = child
    node[parts[-1]] = value


def _model_kind(model: Any) -> Any:
    if not isinstance(model, Mapping):
        return None
    return model.get("kind", USER_KIND if "target" in model else DEFAULT_KIND)


def switch_model_section(raw: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Drop the base's model section where `overrides` (dotted) turn a built-in model into a
    user's one or back: a user's section and an MLP's share no keys, so an arm writing
    ``model: {target: ...}`` or ``model: {kind: mlp, ...}`` means that section alone. Switching
    between built-in kinds merges, as it always has (an MLP ignores a CNN's conv section)."""
    model = raw.get("model")
    if not isinstance(model, dict):
        return
    changes = {k[len("model.") :]: v for k, v in overrides.items() if k.startswith("model.")}
    if "kind" in changes:
        new = changes["kind"]
    elif "target" in changes:
        new = USER_KIND  # a target is a user's model, whatever kind the base wrote
    else:
        return
    if new != _model_kind(model) and USER_KIND in (new, _model_kind(model)):
        raw["model"] = {}


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], where: str, errors: list[str]) -> None:
    """Set dotted `overrides` in a raw config; a key that cannot be set is an error named
    `where.key` (the one path for study and search files' overrides)."""
    switch_model_section(raw, overrides)
    for key, value in overrides.items():
        try:
            set_dotted(raw, key, value)
        except ValueError as exc:
            errors.append(f"{where}.{key}: {exc}")


def _parsed_set_options(overrides: Iterable[str], errors: list[str]) -> Iterator[tuple[str, str, Any]]:
    """(text, dotted key, value) for each well-formed ``--set`` text; malformed ones go to `errors`."""
    for text in overrides:
        try:
            key, value = parse_override(text)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        yield text, key, value


def apply_set_options(raw: dict[str, Any], overrides: Iterable[str], errors: list[str]) -> dict[str, str]:
    """Apply ``--set KEY=VALUE`` texts to a raw config; problems go to `errors`, one line each.

    Returns which dotted key each applied --set wrote, described as the user wrote it, for
    `validate_config`'s `override_sources`."""
    sources: dict[str, str] = {}
    parsed = list(_parsed_set_options(overrides, errors))
    switch_model_section(raw, {key: value for _, key, value in parsed})
    for text, key, value in parsed:
        try:
            set_dotted(raw, key, value)
        except ValueError as exc:
            errors.append(f"--set {clip(text)}: {exc}")
            continue
        sources[key] = f"--set {clip(text)}"
    return sources


def parse_set_options(overrides: Iterable[str]) -> dict[str, Any]:
    """``--set`` texts as {dotted key: value}; every malformed one reported at once (ConfigError)."""
    errors: list[str] = []
    parsed = {key: value for _, key, value in _parsed_set_options(overrides, errors)}
    if errors:
        raise ConfigError(errors)
    return parsed


def deep_merge(base: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``delta`` merged in: nested mappings merge, anything else replaces."""
    out = dict(base)
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys: {'train': {'epochs': 3}} -> {'train.epochs': 3}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
