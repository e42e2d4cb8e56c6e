"""Search files: their schema, the loaded `Search` with its space of `Param`s, and `load_search`,
which checks a file whole (every problem at once, each naming the file and key).

A search file (``searches/<name>.yaml``) names a base config, a validation metric, a sampler, a
pruner and the space (one entry per dotted config key). Its study and trials live under
``<output.dir>/<search>/``: the file names there are defined here. No optuna, no torch.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from mlp_lab.config.load import validate_config
from mlp_lab.config.metrics import BEST_METRICS
from mlp_lab.config.overrides import apply_overrides, flatten, set_dotted
from mlp_lab.config.schema import Config, config_to_dict
from mlp_lab.config.schema_errors import describe_schema_error
from mlp_lab.config.section import model_kinds, model_section
from mlp_lab.config.specfile import read_spec_file
from mlp_lab.core.errors import ConfigError, clip_repr
from mlp_lab.core.shipped import did_you_mean

SEARCHES_DIR = "searches"
JOURNAL_FILE = "study.journal"
TRIAL_FILE = "trial.json"
BEST_CONFIG_FILE = "best.yaml"
# The summary key holding each validation metric at the run's best epoch: the objective reads these alone.
# Searched as one architecture: hidden_sizes = [width] * depth.
VIRTUAL_KEYS = ("model.depth", "model.width")


class ParamSpec(BaseModel):
    """One searched key: a float or int range (optionally log-scaled or stepped) or choices."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None


class PrunerSpec(BaseModel):
    """The pruner: `median` stops a trial whose metric is worse than the median of earlier trials
    at the same epoch, `hyperband` runs successive halving brackets, `none` never prunes."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(5, ge=0)  # median: trials that always run to the end first
    warmup_epochs: int = Field(2, ge=0)  # median: epochs before a trial may be pruned
    min_epochs: PositiveInt = 1  # hyperband: the smallest budget a trial gets


class ConfirmSpec(BaseModel):
    """How `--confirm` retrains the best and the base config: `overrides` applied to both arms alike
    (e.g. a longer schedule than the search could afford per trial)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    overrides: dict[str, Any] = {}


class SearchFile(BaseModel):
    """The schema of a search YAML file."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    description: str = ""
    base: str  # path to the base config, relative to the search file
    metric: str = "val/acc"
    direction: Literal["maximize", "minimize"] | None = None  # default: follows the metric
    trials: PositiveInt = 20
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: PrunerSpec = PrunerSpec()
    seed: int = 0  # the sampler's seed
    overrides: dict[str, Any] = {}
    params: dict[str, ParamSpec] = Field(min_length=1)
    enqueue: list[dict[str, Any]] = []  # points tried first, e.g. the current best config
    confirm: ConfirmSpec = ConfirmSpec()

    @field_validator("pruner", mode="before")
    @classmethod
    def _name_or_mapping(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


def encode_choice(choice: Any) -> Any:
    """A categorical choice as Optuna stores it: choices must be scalars, so a list (an
    architecture) becomes its JSON text."""
    return json.dumps(choice) if isinstance(choice, (list, dict)) else choice


@dataclass(frozen=True)
class Param:
    """One dimension of the space, ready to be sampled."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        """Sample this parameter in an Optuna trial; returns the config value."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        encoded = [encode_choice(c) for c in self.choices]
        return self.decode(trial.suggest_categorical(self.key, encoded))

    def decode(self, value: Any) -> Any:
        """A value as Optuna stores it -> the config value (architectures come back as lists)."""
        if self.type != "categorical":
            return int(value) if self.type == "int" else value
        return next((c for c in self.choices if encode_choice(c) == value), value)

    def grid_values(self) -> list[Any]:
        return [encode_choice(c) for c in self.choices]

    def describe(self) -> str:
        if self.type == "categorical":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        scale = ", log" if self.log else f", step {self.step:g}" if self.step else ""
        return f"[{self.low:g}, {self.high:g}{scale}]"


@dataclass(frozen=True)
class Search:
    """A loaded, fully validated search."""

    name: str
    path: Path
    description: str
    metric: str
    direction: str
    trials: int
    sampler: str
    pruner: PrunerSpec
    seed: int
    base: dict[str, Any]  # the base config with the overrides applied (raw mapping)
    base_config: Config
    params: list[Param]
    enqueue: list[dict[str, Any]]
    output_dir: Path  # <output.dir>/<search name>
    confirm_overrides: dict[str, Any] = field(default_factory=dict)  # flat dotted keys, both arms of --confirm
    overrides: tuple[str, ...] = ()  # the command line's --set KEY=VALUE: in the base of every trial and both arms
    # Plain data a tracking caller sets (dataclasses.replace) to track the trials: the tags every
    # trial's run carries (the search's MLflow run id, so the trials nest under it); with them,
    # each trial logs to MLflow. Not part of the search: the trials' configs are unchanged.
    trial_tags: Mapping[str, str] | None = None

    @property
    def journal(self) -> Path:
        return self.output_dir / JOURNAL_FILE

    @property
    def max_epochs(self) -> int:
        """The longest a trial can train (the hyperband pruner's full budget)."""
        epochs = next((p for p in self.params if p.key == "train.epochs"), None)
        if epochs is None:
            return self.base_config.train.epochs
        return int(max(epochs.choices) if epochs.type == "categorical" else epochs.high)

    def grid_size(self) -> int:
        return math.prod(len(p.choices) for p in self.params)

    def trial_config(self, values: dict[str, Any], name: str) -> Config:
        """The base config with one point of the space applied, validated (ConfigError if not)."""
        merged = copy.deepcopy(self.base)
        if any(k in values for k in VIRTUAL_KEYS):
            hidden = merged.get("model", {}).get("hidden_sizes") or Config().model.hidden_sizes
            depth = int(values.get("model.depth", len(hidden)))
            width = int(values.get("model.width", hidden[0] if hidden else 256))
            set_dotted(merged, "model.hidden_sizes", [width] * depth)
        for key, value in values.items():
            if key not in VIRTUAL_KEYS:
                set_dotted(merged, key, value)
        merged["name"] = name
        return validate_config(merged, f"{self.path}: {name}")


def _known_keys() -> list[str]:
    # Every model kind's keys (model.conv.* is a CNN's): the base config decides which apply.
    # A user's model (kind user) has no defaults to list: its keys are model.args.* (`_is_known`).
    kinds = [flatten(config_to_dict(Config(model=model_section(kind)()))) for kind in model_kinds() if kind != "user"]
    return [*dict.fromkeys(key for keys in kinds for key in keys), *VIRTUAL_KEYS]


def _param_errors(path: Path, key: str, spec: ParamSpec, sampler: str) -> list[str]:
    where = f"{path}: params.{key}"
    errors: list[str] = []
    if key == "seed" or key == "name" or key.split(".")[0] in ("data", "output"):
        why = {
            "seed": "trials are compared on one seed; --confirm repeats the best over seeds",
            "name": "the trial's run directory names it",
        }.get(
            key,
            "it would change the data or the validation split, so trials would not be comparable"
            if key.startswith("data")
            else "it does not affect training",
        )
        return [f"{where}: cannot be searched: {why}"]
    known = _known_keys()
    # A user model's keyword arguments are its own: any model.args.NAME may be searched.
    if key not in known and not (key.startswith("model.args.") and key.count(".") == 2):
        close = did_you_mean(key, known)
        return [f"{where}: not a config key" + (f", did you mean {close!r}?" if close else "")]
    if spec.type == "categorical":
        if not spec.choices:
            errors.append(f"{where}: choices: a categorical parameter needs at least one choice")
        stray = [name for name in ("low", "high", "step") if getattr(spec, name) is not None] + (
            ["log"] if spec.log else []
        )
        errors += [f"{where}: {name}: not used by a categorical parameter (give choices)" for name in stray]
        return errors
    if sampler == "grid":
        errors.append(
            f"{where}: the grid sampler needs every parameter categorical (give choices), not a {spec.type} range"
        )
    if spec.choices is not None:
        errors.append(f"{where}: choices: only for type categorical; a {spec.type} takes low and high")
    if spec.low is None or spec.high is None:
        errors.append(f"{where}: a {spec.type} parameter needs low and high")
        return errors
    if spec.low > spec.high:
        errors.append(f"{where}: low ({spec.low:g}) is above high ({spec.high:g})")
    if spec.log and spec.low <= 0:
        errors.append(f"{where}: log: a log scale needs low > 0 (got {spec.low:g})")
    if spec.step is not None and spec.step <= 0:
        errors.append(f"{where}: step: must be positive (got {spec.step:g})")
    if spec.log and spec.step is not None and not (spec.type == "int" and spec.step == 1):
        errors.append(f"{where}: step: cannot be combined with log")
    if spec.type == "int":
        for name in ("low", "high", "step"):
            value = getattr(spec, name)
            if value is not None and value != int(value):
                errors.append(f"{where}: {name}: an int parameter needs whole numbers (got {value:g})")
    return errors


def _value_errors(path: Path, key: str, values: list[Any], base: dict[str, Any], search_name: str) -> list[str]:
    """Errors the schema gives for this key alone at the given values (its range ends or choices)."""
    errors: list[str] = []
    target = "model.hidden_sizes" if key in VIRTUAL_KEYS else key
    for value in values:
        merged = copy.deepcopy(base)
        if key in VIRTUAL_KEYS:
            hidden = merged.get("model", {}).get("hidden_sizes") or Config().model.hidden_sizes
            if not isinstance(value, int):
                errors.append(f"{path}: params.{key}: value {value!r}: must be a whole number")
                continue
            set_dotted(merged, target, [hidden[0]] * value if key == "model.depth" else [value] * len(hidden))
        else:
            set_dotted(merged, key, value)
        merged["name"] = search_name
        try:
            Config.model_validate(merged)
        except ValidationError as exc:
            # Only the schema's own checks: cross-field rules depend on the other parameters'
            # values, so a combination that breaks them is a failed trial, not a bad file.
            for err in exc.errors():
                dotted = ".".join(str(p) for p in err["loc"])
                if dotted == target or dotted.startswith(target + "."):
                    errors.append(f"{path}: params.{key}: value {value!r}: {describe_schema_error(err, echo=False)}")
    return errors


def _metric_errors(path: Path, metric: str, direction: str | None) -> list[str]:
    errors = []
    if metric.startswith("test/"):
        errors.append(
            f"{path}: metric: {clip_repr(metric)} is refused: a search must never select on test data "
            f"(the test score of the winner would be optimistic); use val/acc or val/loss"
        )
    elif metric not in BEST_METRICS:
        close = did_you_mean(metric, BEST_METRICS)
        errors.append(
            f"{path}: metric: {clip_repr(metric)} is not a validation metric (val/acc or val/loss)"
            + (f"; did you mean {close!r}?" if close else "")
        )
    natural = "minimize" if metric.endswith("loss") else "maximize"
    if direction in ("maximize", "minimize") and direction != natural and metric in BEST_METRICS:
        errors.append(f"{path}: direction: {direction} {metric} would pick the worst config; use {natural}")
    return errors


def _raw_metric_errors(path: Path, raw: dict[str, Any]) -> list[str]:
    # Checked on the raw file too, so a schema error elsewhere does not hide a bad metric.
    metric = raw.get("metric", SearchFile.model_fields["metric"].default)
    return _metric_errors(path, metric, raw.get("direction")) if isinstance(metric, str) else []


def load_search(
    name_or_path: str | Path, searches_dir: str | Path = SEARCHES_DIR, overrides: Sequence[str] = ()
) -> Search:
    """Load and check a search file; every problem is reported at once, naming the file and key.
    `overrides` are ``--set KEY=VALUE`` texts applied to the base after the file's overrides (so
    to every trial and to both --confirm arms); a searched key cannot be set."""
    loaded = read_spec_file(name_or_path, searches_dir, "search", SearchFile, overrides, _raw_metric_errors)
    path, spec, base, sources, errors = loaded.path, loaded.spec, loaded.base, loaded.sources, loaded.errors
    natural = "minimize" if spec.metric.endswith("loss") else "maximize"
    for key, desc in sources.items():
        searched = [
            k
            for k in spec.params
            if k == key
            or k.startswith(key + ".")
            or key.startswith(k + ".")
            or (key == "model.hidden_sizes" and k in VIRTUAL_KEYS)
        ]
        if searched:
            errors.append(f"{desc}: {key} is searched (params.{searched[0]}); the trials set it")
    base["name"] = path.stem
    try:
        base_config = validate_config(base, f"{path}: base + overrides", sources)
    except ConfigError as exc:
        raise ConfigError(errors + exc.errors) from None

    params: list[Param] = []
    for key, pspec in spec.params.items():
        problems = _param_errors(path, key, pspec, spec.sampler)
        if not problems:
            ends = list(pspec.choices) if pspec.type == "categorical" else [pspec.low, pspec.high]
            if pspec.type == "int":
                ends = [int(v) for v in ends]
            problems = _value_errors(path, key, ends, base, path.stem)
        errors += problems
        if not problems:
            params.append(
                Param(key, pspec.type, pspec.low, pspec.high, pspec.step, pspec.log, tuple(pspec.choices or ()))
            )
    if "model.hidden_sizes" in spec.params and any(k in spec.params for k in VIRTUAL_KEYS):
        errors.append(f"{path}: params: search model.hidden_sizes or model.depth/model.width, not both")
    by_key = {p.key: p for p in params}
    for i, point in enumerate(spec.enqueue):
        for key, value in point.items():
            if key not in spec.params:
                errors.append(f"{path}: enqueue[{i}].{key}: not one of the searched params")
            elif key in by_key and by_key[key].type == "categorical" and value not in by_key[key].choices:
                errors.append(f"{path}: enqueue[{i}].{key}: {value!r} is not one of the choices")
    confirm_overrides = flatten(spec.confirm.overrides)
    if confirm_overrides:
        confirmed = copy.deepcopy(base)
        apply_overrides(confirmed, confirm_overrides, f"{path}: confirm.overrides", errors)
        try:
            validate_config(confirmed, f"{path}: base + confirm.overrides", sources)
        except ConfigError as exc:
            errors += exc.errors
    if errors:
        raise ConfigError(errors)
    direction = spec.direction or natural
    output_dir = Path(base_config.output.dir) / path.stem
    search = Search(
        path.stem,
        path,
        spec.description.strip(),
        spec.metric,
        direction,
        spec.trials,
        spec.sampler,
        spec.pruner,
        spec.seed,
        base,
        base_config,
        params,
        list(spec.enqueue),
        output_dir,
        confirm_overrides,
        tuple(overrides),
    )
    return search
