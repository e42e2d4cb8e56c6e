"""The Train form: its fields over the config's main keys, their choices taken from the config
schema, and form values -> a Config through the same pydantic schema as a YAML file, with one
message per field. Nothing is started here (`training` does that); no streamlit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from mlp_lab.config import Config, config_to_dict, validate_config
from mlp_lab.errors import ConfigError

# Form field -> the dotted config key it sets. The form shows the config's main fields only;
# everything else comes from the base config.
FORM_KEYS = {
    "name": "name",
    "dataset": "data.dataset",
    "hidden_sizes": "model.hidden_sizes",
    "batch_norm": "model.batch_norm",
    "dropout": "model.dropout",
    "optimizer": "train.optimizer.name",
    "lr": "train.optimizer.lr",
    "scheduler": "train.scheduler.name",
    "epochs": "train.epochs",
    "patience": "train.early_stopping.patience",
    "l1": "train.l1",
    "l2": "train.l2",
    "seed": "seed",
}
FORM_ERRORS = "_form"  # errors that belong to no single field (a cross-field rule on a hidden key)


def schema_choices(dotted: str) -> tuple[Any, ...] | None:
    """The values the config schema allows at a dotted key, when it allows a fixed few (a
    Literal, e.g. ``train.optimizer.name``); None for a free value."""
    section: Any = Config
    *parents, last = dotted.split(".")
    for part in parents:
        section = section.model_fields[part].annotation
    annotation = section.model_fields[last].annotation
    return get_args(annotation) if get_origin(annotation) is Literal else None


# Form field -> the choices its select box offers: the schema's own, so a choice added to the
# schema appears in the form.
CHOICES = {name: choices for name, key in FORM_KEYS.items() if (choices := schema_choices(key)) is not None}


def base_config(runs: Path) -> Config:
    """What the form starts from and fills in beyond its fields: the schema's defaults, writing to `runs`."""
    return validate_config({"name": "app-run", "output": {"dir": str(runs)}}, "app defaults")


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def form_defaults(base: Config) -> dict[str, Any]:
    """The form's initial values from a config: hidden sizes as text, patience 0 meaning off."""
    data = config_to_dict(base)
    values = {name: _get(data, key) for name, key in FORM_KEYS.items()}
    values["hidden_sizes"] = ", ".join(map(str, values["hidden_sizes"]))
    values["patience"] = values["patience"] or 0
    for name in ("lr", "l1", "l2"):
        values[name] = f"{values[name]:g}"
    return values


def _parse_sizes(text: Any) -> list[int]:
    if isinstance(text, (list, tuple)):
        return list(text)
    parts = str(text).replace(",", " ").replace("-", " ").split()
    if not all(part.isdigit() for part in parts):
        raise ValueError("whole numbers separated by commas, e.g. 256, 128 (empty: logistic regression)")
    return [int(part) for part in parts]


def _parse_float(text: Any) -> float:
    try:
        return float(str(text).strip())
    except ValueError:
        raise ValueError(f"not a number: {text!r} (e.g. 0.001 or 1e-3)") from None


def form_to_config(
    values: Mapping[str, Any], base: Config, output_dir: str | Path
) -> tuple[Config | None, dict[str, str]]:
    """Form values -> a Config validated by the same schema as a YAML file, or None and one
    message per field (``FORM_ERRORS`` for problems no form field owns). Nothing is started here."""
    errors: dict[str, str] = {}
    data = config_to_dict(base)
    parsers = {"hidden_sizes": _parse_sizes, "lr": _parse_float, "l1": _parse_float, "l2": _parse_float}
    for name, key in FORM_KEYS.items():
        if name not in values:
            continue
        value = values[name]
        if name in parsers:
            try:
                value = parsers[name](value)
            except ValueError as exc:
                errors[name] = str(exc)
                continue
        if name == "patience" and value in (0, None, ""):
            value = None  # 0 in the form: early stopping off
        if name == "name" and isinstance(value, str):
            value = value.strip()
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    data["output"]["dir"] = str(output_dir)
    if errors:
        return None, errors
    key_to_field = {key: name for name, key in FORM_KEYS.items()}
    try:
        return validate_config(data, "form"), {}
    except ConfigError as exc:
        for line in exc.errors:
            _, _, rest = line.partition(": ")
            dotted, _, message = rest.partition(": ")
            # A list item's error (model.hidden_sizes[0]) belongs to its list's field.
            name = key_to_field.get(dotted.split("[")[0], FORM_ERRORS)
            if name == FORM_ERRORS:
                message = f"{dotted}: {message}"
            errors[name] = f"{errors[name]}; {message}" if name in errors else message
        return None, errors
