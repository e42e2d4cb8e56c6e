"""The Train form: its fields over the config's main keys, their choices taken from the config
schema, and form values -> a Config through the same pydantic schema as a YAML file, with one
message per field. Nothing is started here (`training` does that); no streamlit."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from mlp_lab.config.load import validate_config
from mlp_lab.config.schema import Choices, Config, config_to_dict
from mlp_lab.config.section import ModelSection, model_section
from mlp_lab.core.errors import ConfigError

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
FORM_ERRORS = "_form"
# The schema's own bound on the seed, quoted in the form's message.
SEED_MAX = next(
    rule.le for rule in Config.model_fields["seed"].metadata if hasattr(rule, "le")
)  # errors that belong to no single field (a cross-field rule on a hidden key)


def schema_choices(dotted: str) -> tuple[Any, ...] | None:
    """The values the config schema allows at a dotted key, when it allows a fixed few (a
    Literal, e.g. ``train.optimizer.name``); None for a free value."""
    section: Any = Config
    *parents, last = dotted.split(".")
    for part in parents:
        section = section.model_fields[part].annotation
        # `model:` is one section per kind; the form builds the default kind's (an MLP).
        section = model_section() if section is ModelSection else section
    field = section.model_fields[last]
    registry = next((m for m in field.metadata if isinstance(m, Choices)), None)
    if registry is not None:  # a registry's names (data.dataset)
        return registry()
    return get_args(field.annotation) if get_origin(field.annotation) is Literal else None


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
    """The form's initial values from a config: hidden sizes, rates and the seed as text (a
    browser's number box cannot hold every seed), patience 0 meaning off."""
    data = config_to_dict(base)
    values = {name: _get(data, key) for name, key in FORM_KEYS.items()}
    values["hidden_sizes"] = ", ".join(map(str, values["hidden_sizes"]))
    values["patience"] = values["patience"] or 0
    for name in ("lr", "l1", "l2"):
        values[name] = f"{values[name]:g}"
    values["seed"] = str(values["seed"])
    return values


# What each field takes, in a student's words: shown whenever the schema refuses a value, in place
# of pydantic's own message ("String should match pattern ...").
RULES = {
    "name": "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit, no spaces (e.g. mnist-small)",
    "dataset": f"one of {', '.join(CHOICES['dataset'])}",
    "hidden_sizes": "whole numbers above 0 separated by commas, e.g. 256, 128 (empty: logistic regression)",
    "batch_norm": "on or off",
    "dropout": "a share of units to drop: at least 0 and below 1, e.g. 0.2",
    "optimizer": f"one of {', '.join(CHOICES['optimizer'])}",
    "lr": "a number above 0, e.g. 0.001 or 1e-3",
    "scheduler": f"one of {', '.join(CHOICES['scheduler'])}",
    "epochs": "a whole number, at least 1",
    "patience": "a whole number of epochs, 0 (off) or more",
    "l1": "0 (off) or a small positive number, e.g. 1e-5",
    "l2": "0 (off) or a small positive number, e.g. 1e-4",
    "seed": f"a whole number from 0 to {SEED_MAX}",
}


def _refused(name: str, value: Any) -> str:
    shown = str(value).strip() if str(value).strip() else "an empty value"
    return f"{_clip(shown)} is not allowed: use {RULES[name]}"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_sizes(text: Any) -> list[int]:
    if isinstance(text, (list, tuple)):
        return list(text)
    stripped = str(text).strip()
    if not stripped:
        return []
    # Commas, spaces or dashes between the sizes (256, 128 / 784-256-10 style); a dash before a
    # number is a minus sign: "-5" is refused, not read as 5.
    parts = re.split(r"\s*[,-]\s*|\s+", stripped)
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError
    return [int(part) for part in parts]


def _parse_float(text: Any) -> float:
    value = float(str(text).strip())  # ValueError for "fast"
    if not math.isfinite(value):  # "1e400" reads as infinity: refused, not trained with
        raise ValueError
    return value


def _parse_int(text: Any) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if isinstance(text, float) and text.is_integer():
        return int(text)
    stripped = str(text).strip()
    if not stripped.lstrip("-").isdigit():
        raise ValueError
    return int(stripped)


PARSERS = {"hidden_sizes": _parse_sizes, "lr": _parse_float, "l1": _parse_float, "l2": _parse_float, "seed": _parse_int}


def _free_name(output_dir: Path, name: str) -> str:
    n = 2
    while (output_dir / f"{name}-{n}").exists():
        n += 1
    return f"{name}-{n}"


def form_to_config(
    values: Mapping[str, Any], base: Config, output_dir: str | Path
) -> tuple[Config | None, dict[str, str]]:
    """Form values -> a Config validated by the same schema as a YAML file, or None and one
    plain message per field, all at once (``FORM_ERRORS`` for problems no form field owns). A
    value the schema refuses is refused, never rounded or clipped into range; a name taken by a
    run already in `output_dir` is refused too (the run would land in NAME-2 otherwise). Nothing
    is started here."""
    output_dir = Path(output_dir)
    errors: dict[str, str] = {}
    data = config_to_dict(base)
    for name, key in FORM_KEYS.items():
        if name not in values:
            continue
        value = values[name]
        if name in PARSERS:
            try:
                value = PARSERS[name](value)
            except (ValueError, TypeError):
                # Left at the base value, so the other fields are still checked by the schema.
                errors[name] = _refused(name, value)
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
    key_to_field = {key: name for name, key in FORM_KEYS.items()}
    config = None
    try:
        config = validate_config(data, "form")
    except ConfigError as exc:
        refused_by_schema = _schema_refusals(data)
        for line in exc.errors:
            _, _, rest = line.partition(": ")
            dotted, _, message = rest.partition(": ")
            # A list item's error (model.hidden_sizes[0]) belongs to its list's field.
            name = key_to_field.get(dotted.split("[")[0], FORM_ERRORS)
            if name == FORM_ERRORS:
                message = f"{dotted}: {message}"
            elif name in errors:
                continue  # refused already, as typed
            elif dotted.split("[")[0] in refused_by_schema:
                message = _refused(name, values.get(name, ""))  # the rule in plain words, not pydantic's
            errors[name] = f"{errors[name]}; {message}" if name in errors else message
    name = str(data["name"])
    if "name" not in errors and name and (output_dir / name).exists():
        errors["name"] = (
            f"a run named {name} is already in {output_dir}: choose another name, e.g. {_free_name(output_dir, name)}"
        )
    return (None, errors) if errors else (config, {})


def _schema_refusals(data: Mapping[str, Any]) -> set[str]:
    """The dotted keys the schema itself refuses (a pattern, a range, a type), as against the
    config's cross-field rules, whose messages are plain already."""
    from pydantic import ValidationError

    try:
        Config.model_validate(dict(data))
    except ValidationError as exc:
        return {".".join(str(part) for part in err["loc"] if not isinstance(part, int)) for err in exc.errors()}
    return set()
