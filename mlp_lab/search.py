"""Hyperparameter search on Optuna: search files, a study shared through a journal file, trials
run as ordinary runs through an executor, a report, and an honest confirmation over seeds.

A search file (``searches/<name>.yaml``) names a base config, a validation metric, a sampler,
a pruner and the space (one entry per dotted config key). `run_search` is the driver: it asks
the study for up to J trials, turns each into a `RunSpec` for ``<output.dir>/<search>/trial-<n>/``
and hands the batch to an executor; each trial's `PruningHook` (carried by the spec, so it runs
wherever the trial runs) reopens the study from the journal, reports the validation metric per
epoch and asks whether to prune. The driver tells the study how each trial ended. The study
lives in ``<output.dir>/<search>/study.journal`` (Optuna's journal file storage, made for many
processes on one machine), so a killed search continues where it stopped.

optuna is imported inside the functions that need it: it is the optional ``[search]`` extra.
"""

from __future__ import annotations

import copy
import csv
import difflib
import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from mlp_lab import rundir
from mlp_lab.config import (
    Config,
    ConfigError,
    MLPLabError,
    apply_overrides,
    apply_set_options,
    clip,
    clip_repr,
    config_hash,
    config_to_dict,
    flatten,
    read_named_base,
    read_yaml_mapping,
    resolve_named_yaml,
    schema_errors,
    set_dotted,
    validate_config,
)
from mlp_lab.execute import Executor, RunOutcome, RunSpec, local_executor
from mlp_lab.rundir import RunStatus

SEARCHES_DIR = "searches"
JOURNAL_FILE = "study.journal"
TRIAL_FILE = "trial.json"
BEST_CONFIG_FILE = "best.yaml"
MISSING_EXTRA = "mlp-lab search needs the [search] extra: pip install -e '.[search]'"
# The summary key holding each validation metric at the run's best epoch: the objective reads these alone.
OBJECTIVE_KEYS = {"val/acc": "best/val_acc", "val/loss": "best/val_loss"}
# Searched as one architecture: hidden_sizes = [width] * depth.
VIRTUAL_KEYS = ("model.depth", "model.width")


def require_optuna():
    """The optuna module, or a one-line MLPLabError naming the extra."""
    try:
        import optuna
    except ImportError:
        raise MLPLabError(MISSING_EXTRA) from None
    return optuna


# -- search files ------------------------------------------------------------------------------


class ParamSpec(BaseModel):
    """One searched key: a float or int range (optionally log-scaled or stepped) or choices."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None
    log: bool = False
    choices: Optional[list[Any]] = None


class PrunerSpec(BaseModel):
    """The pruner: `median` stops a trial whose metric is worse than the median of earlier trials
    at the same epoch, `hyperband` runs successive halving brackets, `none` never prunes."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(5, ge=0)  # median: trials that always run to the end first
    warmup_epochs: int = Field(2, ge=0)  # median: epochs before a trial may be pruned
    min_epochs: PositiveInt = 1  # hyperband: the smallest budget a trial gets


class ConfirmSpec(BaseModel):
    """How `--confirm` retrains the best and the base config: `overrides` applied to both arms alike
    (e.g. a longer schedule than the search could afford per trial)."""

    model_config = ConfigDict(extra="forbid")

    overrides: dict[str, Any] = {}


class SearchFile(BaseModel):
    """The schema of a search YAML file."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    base: str  # path to the base config, relative to the search file
    metric: str = "val/acc"
    direction: Optional[Literal["maximize", "minimize"]] = None  # default: follows the metric
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


def _encode(choice: Any) -> Any:
    # Optuna's choices must be scalars: a list (an architecture) becomes its JSON text.
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
        encoded = [_encode(c) for c in self.choices]
        return self.decode(trial.suggest_categorical(self.key, encoded))

    def decode(self, value: Any) -> Any:
        """A value as Optuna stores it -> the config value (architectures come back as lists)."""
        if self.type != "categorical":
            return int(value) if self.type == "int" else value
        return next((c for c in self.choices if _encode(c) == value), value)

    def grid_values(self) -> list[Any]:
        return [_encode(c) for c in self.choices]

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
    # Set by tracking.track_search: each trial logs to MLflow as a run nested under the search's
    # run, whose id these tags carry. Not part of the search: the trials' configs are unchanged.
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


def resolve_search_path(name_or_path: str | Path, searches_dir: str | Path = SEARCHES_DIR) -> Path:
    """`fashion_search` -> searches/fashion_search.yaml; a path is taken as it is."""
    return resolve_named_yaml(name_or_path, searches_dir, "search")


def _known_keys() -> list[str]:
    return [*flatten(config_to_dict(Config())), *VIRTUAL_KEYS]


def _param_errors(path: Path, key: str, spec: ParamSpec, sampler: str) -> list[str]:
    where = f"{path}: params.{key}"
    errors: list[str] = []
    if key == "seed" or key == "name" or key.split(".")[0] in ("data", "output"):
        why = {"seed": "trials are compared on one seed; --confirm repeats the best over seeds",
               "name": "the trial's run directory names it"}.get(
            key, "it would change the data or the validation split, so trials would not be comparable"
            if key.startswith("data") else "it does not affect training")
        return [f"{where}: cannot be searched: {why}"]
    known = _known_keys()
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        return [f"{where}: not a config key" + (f", did you mean {close[0]!r}?" if close else "")]
    if spec.type == "categorical":
        if not spec.choices:
            errors.append(f"{where}: choices: a categorical parameter needs at least one choice")
        stray = [name for name in ("low", "high", "step") if getattr(spec, name) is not None] + (["log"] if spec.log else [])
        errors += [f"{where}: {name}: not used by a categorical parameter (give choices)" for name in stray]
        return errors
    if sampler == "grid":
        errors.append(f"{where}: the grid sampler needs every parameter categorical (give choices), "
                      f"not a {spec.type} range")
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
                    errors.append(f"{path}: params.{key}: value {value!r}: {err['msg']}")
    return errors


def _metric_errors(path: Path, metric: str, direction: str | None) -> list[str]:
    errors = []
    if metric.startswith("test/"):
        errors.append(f"{path}: metric: {clip_repr(metric)} is refused: a search must never select on test data "
                      f"(the test score of the winner would be optimistic); use val/acc or val/loss")
    elif metric not in OBJECTIVE_KEYS:
        close = difflib.get_close_matches(metric, list(OBJECTIVE_KEYS), n=1)
        errors.append(f"{path}: metric: {clip_repr(metric)} is not a validation metric (val/acc or val/loss)"
                      + (f"; did you mean {close[0]!r}?" if close else ""))
    natural = "minimize" if metric.endswith("loss") else "maximize"
    if direction in ("maximize", "minimize") and direction != natural and metric in OBJECTIVE_KEYS:
        errors.append(f"{path}: direction: {direction} {metric} would pick the worst config; use {natural}")
    return errors


def load_search(name_or_path: str | Path, searches_dir: str | Path = SEARCHES_DIR,
                overrides: Sequence[str] = ()) -> Search:
    """Load and check a search file; every problem is reported at once, naming the file and key.
    `overrides` are ``--set KEY=VALUE`` texts applied to the base after the file's overrides (so
    to every trial and to both --confirm arms); a searched key cannot be set."""
    path = resolve_search_path(name_or_path, searches_dir)
    raw = read_yaml_mapping(path)
    errors: list[str] = []
    try:
        spec: SearchFile | None = SearchFile.model_validate(raw)
    except ValidationError as exc:
        errors += schema_errors(path, exc, SearchFile)
        spec = None
    # Checks of single fields also run on the raw file, so a schema error does not hide them.
    metric = raw.get("metric", SearchFile.model_fields["metric"].default)
    if isinstance(metric, str):
        errors += _metric_errors(path, metric, raw.get("direction"))
    base = read_named_base(path, raw, errors)
    if spec is None or base is None:
        raise ConfigError(errors)
    natural = "minimize" if spec.metric.endswith("loss") else "maximize"
    apply_overrides(base, flatten(spec.overrides), f"{path}: overrides", errors)
    sources = apply_set_options(base, overrides, errors)
    for key, desc in sources.items():
        searched = [k for k in spec.params if k == key or k.startswith(key + ".") or key.startswith(k + ".")
                    or (key == "model.hidden_sizes" and k in VIRTUAL_KEYS)]
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
            params.append(Param(key, pspec.type, pspec.low, pspec.high, pspec.step, pspec.log,
                                tuple(pspec.choices or ())))
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
    search = Search(path.stem, path, spec.description.strip(), spec.metric, direction, spec.trials, spec.sampler,
                    spec.pruner, spec.seed, base, base_config, params, list(spec.enqueue), output_dir,
                    confirm_overrides, tuple(overrides))
    return search


# -- the study --------------------------------------------------------------------------------


def _storage(journal: str | Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(journal).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(journal)))


def build_pruner(spec: PrunerSpec, max_epochs: int):
    """The Optuna pruner a search file asks for; steps are epochs (1-based)."""
    import optuna

    if spec.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_epochs)
    if spec.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec.min_epochs, max_resource=max_epochs)
    return optuna.pruners.NopPruner()


def build_sampler(search: Search, trials_so_far: int = 0):
    """The search's sampler, seeded by the file's seed and the number of trials the study holds:
    a continued search must not replay the random start-up points of the first call."""
    import optuna

    seed = search.seed if trials_so_far == 0 else hash((search.seed, trials_so_far)) % 2**31
    if search.sampler == "grid":
        class Grid(optuna.samplers.GridSampler):
            def after_trial(self, study, trial, state, values) -> None:
                # GridSampler stops an `optimize` loop when the grid is used up; this driver has
                # no such loop (it asks and tells) and caps the trials at the grid's size instead.
                pass

        return Grid({p.key: p.grid_values() for p in search.params}, seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def live_trial(study, storage, number: int):
    """Trial `number` of `study` as a live `optuna.trial.Trial` (to report to, set attributes on),
    found through the storage's public API: Optuna hands out trial ids only through ask()."""
    import optuna

    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def open_study(search: Search, storage):
    """Create the search's study in `storage` (its journal), or load it to continue."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=search.name, storage=storage,
                                sampler=build_sampler(search), pruner=build_pruner(search.pruner, search.max_epochs),
                                direction=search.direction, load_if_exists=True)
    if study.trials:
        study.sampler = build_sampler(search, len(study.trials))
    return study


class PruningHook:
    """The worker side of one trial: reports the validation metric each epoch to the shared study
    and stops the run at the next batch boundary when the pruner says so.

    It carries only paths, names and numbers, so it pickles into any executor's worker; the
    study is reopened from the journal there, on the first epoch.
    """

    def __init__(self, journal: str, study_name: str, number: int, metric: str, pruner: dict[str, Any],
                 max_epochs: int):
        # Absolute: the hook may run on another machine, in another working directory.
        self.journal, self.study_name, self.number = os.path.abspath(journal), study_name, number
        self.metric, self.pruner, self.max_epochs = metric, pruner, max_epochs
        self._trial = None
        self.pruned = False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trial": None}

    def _open(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = _storage(self.journal)
        study = optuna.load_study(study_name=self.study_name, storage=storage,
                                  pruner=build_pruner(PrunerSpec(**self.pruner), self.max_epochs),
                                  sampler=optuna.samplers.RandomSampler())
        return live_trial(study, storage, self.number)

    def on_epoch(self, record: dict[str, Any]) -> None:
        if self._trial is None:
            self._trial = self._open()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a resumed trial may repeat an epoch it had reported
            self._trial.report(float(record[self.metric]), step=int(record["epoch"]))
        self.pruned = self._trial.should_prune()

    def should_stop(self) -> bool:
        return self.pruned


@dataclass
class SearchResult:
    """What one `run_search` call did."""

    finished: int  # trials that ended (complete, pruned, or failed for a reason of their own)
    target: int
    outcomes: list[RunOutcome] = field(default_factory=list)
    interrupted: bool = False
    timed_out: bool = False
    report: dict[str, Any] = field(default_factory=dict)


def _trial_dir(search: Search, number: int) -> Path:
    return search.output_dir / f"trial-{number}"


def _counted(frozen) -> bool:
    from optuna.trial import TrialState

    if frozen.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return frozen.state == TrialState.FAIL and not frozen.user_attrs.get("interrupted")


def _spec_for(search: Search, number: int, config: Config) -> RunSpec:
    hook = PruningHook(str(search.journal), search.name, number, search.metric, search.pruner.model_dump(),
                       search.max_epochs)
    tags = {"search": search.name, "trial": str(number)}
    if search.trial_tags is not None:
        # output.mlflow is left out of the config hash: turning tracking on never changes a trial.
        config = config.model_copy(update={"output": config.output.model_copy(update={"mlflow": True})})
        tags.update(search.trial_tags)
    return RunSpec(f"trial {number}", config, _trial_dir(search, number), tags, hook)


def _history(run_dir: Path) -> list[dict[str, float]]:
    try:
        return rundir.read_metrics(run_dir)
    except (OSError, ValueError):
        return []


def _settle(search: Search, study, storage, number: int, state: str, *, value: float | None = None,
            error: str | None = None, interrupted: bool = False) -> None:
    """Record how a trial ended, first in its run directory (trial.json), then in the study."""
    from optuna.trial import TrialState

    run_dir = _trial_dir(search, number)
    history = _history(run_dir)
    trial = live_trial(study, storage, number)
    record = {"number": number, "state": state, "metric": search.metric, "value": value,
              "params": dict(trial.params), "epochs_run": len(history),
              "seconds": round(sum(row["seconds"] for row in history), 3), "error": error,
              "interrupted": interrupted}
    if state == "pruned" and history:
        record["value"] = history[-1][search.metric]
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_json(run_dir / TRIAL_FILE, record)
    for key in ("epochs_run", "seconds", "error", "interrupted"):
        trial.set_user_attr(key, record[key])
    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.tell(number, value if state == "complete" else None, state=states[state])


def _settle_from_run(search: Search, study, storage, number: int, outcome_status: RunStatus,
                     summary: dict[str, Any] | None, error: str | None, halted: bool) -> bool:
    """Settle a trial from its run's outcome; False when it is still unfinished (left running)."""
    if outcome_status == RunStatus.DONE and summary is not None:
        _settle(search, study, storage, number, "complete", value=float(summary[OBJECTIVE_KEYS[search.metric]]))
    elif halted:
        _settle(search, study, storage, number, "pruned")
    elif outcome_status == RunStatus.FAILED:
        _settle(search, study, storage, number, "failed", error=error)
    else:
        return False
    return True


def _reclaim(search: Search, study, storage, log: Callable[[str], None]) -> list[RunSpec]:
    """Trials a stopped or killed search left running: settle those that ended, and return the
    rest as specs to continue (from last.pt, or from the start if nothing was trained yet).

    A trial whose run directory is locked is being trained by a live process: it is left alone.
    """
    from optuna.trial import TrialState

    specs = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        number = frozen.number
        run_dir = _trial_dir(search, number)
        try:
            lock = rundir.RunLock(run_dir).acquire()
        except rundir.RunLocked:
            continue
        try:
            recorded = run_dir / TRIAL_FILE
            if recorded.exists():  # decided, but the search stopped before telling the study
                record = rundir.read_json(recorded)
                _settle(search, study, storage, number, record["state"], value=record["value"],
                        error=record["error"], interrupted=record.get("interrupted", False))
                continue
            raw = frozen.user_attrs.get("config")
            if raw is None:
                _settle(search, study, storage, number, "failed", error="interrupted before it started",
                        interrupted=True)
                log(f"trial {number}: was interrupted before it started; marked failed (not counted)")
                continue
            config = validate_config(raw, f"{run_dir}: trial config")
            status = rundir.run_status(run_dir, config_hash(config))
            summary = rundir.read_json(run_dir / rundir.SUMMARY_FILE) if status in (RunStatus.DONE, RunStatus.FAILED) else None
            if status in (RunStatus.DONE, RunStatus.FAILED):
                _settle_from_run(search, study, storage, number, status, summary, summary.get("error"), False)
            elif status in (RunStatus.NEW, RunStatus.PARTIAL):
                log(f"trial {number}: was interrupted; continuing it" + (" from last.pt" if status == RunStatus.PARTIAL else ""))
                specs.append(_spec_for(search, number, config))
            else:
                _settle(search, study, storage, number, "failed", error=f"run directory is {status}", interrupted=True)
        finally:
            lock.release()
    return specs


def _ask(search: Search, study, storage, log: Callable[[str], None]) -> RunSpec | None:
    """A new trial as a RunSpec; an invalid sampled config is settled as a failed trial (None)."""
    trial = study.ask()
    values = {p.key: p.suggest(trial) for p in search.params}
    number = trial.number
    try:
        config = search.trial_config(values, f"{search.name}-trial-{number}")
    except ConfigError as exc:
        reason = "; ".join(e.split(": ", 2)[-1] for e in exc.errors)
        log(f"trial {number}: invalid config, not trained: {reason}")
        _settle(search, study, storage, number, "failed", error=f"invalid config: {reason}")
        return None
    # Kept in the study so a continued search rebuilds exactly this trial without sampling again.
    trial.set_user_attr("config", config_to_dict(config))
    return _spec_for(search, number, config)


def run_search(search: Search, *, trials: int | None = None, jobs: int = 1, timeout: float | None = None,
               threads: int | None = None, data_dirs: Sequence[str] = (), stop: Callable[[], bool] | None = None,
               log: Callable[[str], None] = print, executor: Executor | None = None) -> SearchResult:
    """Run the search until `trials` trials have ended (counting those of earlier calls).

    Each round asks the study for as many trials as the executor runs at once, runs them, and
    tells the study how each ended. `timeout` (seconds) stops asking for new trials. After a
    stop, trials under way keep their last.pt and the next call continues them. One driver per
    search at a time (a lock beside its directory); its `jobs` workers share the study.
    """
    optuna = require_optuna()
    target = trials or search.trials
    if search.sampler == "grid":
        target = min(target, search.grid_size())
    search.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = rundir.RunLock(search.output_dir).acquire()
    except rundir.RunLocked as exc:
        raise MLPLabError(f"{search.output_dir}: another mlp-lab search (pid {exc.pid}) is running this search") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = _storage(search.journal)
            study = open_study(search, storage)
            leftovers = sorted(p.name for p in search.output_dir.glob("trial-*")) if not study.trials else []
            if leftovers:
                # Their trial numbers would be handed out again: never train a trial into another's directory.
                raise MLPLabError(f"{search.output_dir}: holds {', '.join(leftovers[:3])}{', ...' if len(leftovers) > 3 else ''} "
                                  f"but its study ({JOURNAL_FILE}) has no trials; move the directory away to start afresh")
            # A study's trials must all share one base: a later call with other --set values
            # would mix trials of different configs in one ranking.
            recorded = study.user_attrs.get("overrides")
            if study.trials and recorded is not None and list(recorded) != list(search.overrides):
                was = " ".join(f"--set {o}" for o in recorded) or "no --set"
                raise MLPLabError(f"{search.output_dir}: this search was started with {clip(was)}; give the same, "
                                  f"or --set output.dir=DIR for a separate search")
            if not study.trials:
                study.set_user_attr("overrides", list(search.overrides))
                for point in search.enqueue:
                    # Categorical choices live in the study encoded (an architecture as its JSON text).
                    study.enqueue_trial({key: _encode(value) for key, value in point.items()})
            executor = executor or local_executor(jobs, threads, log)
            width = max(1, getattr(executor, "jobs", jobs if jobs > 1 else 1))
            result = SearchResult(0, target)
            started = time.monotonic()
            while True:
                pending = _reclaim(search, study, storage, log)
                finished = sum(_counted(t) for t in study.get_trials(deepcopy=False))
                result.finished = finished
                if finished >= target:
                    break
                if stop is not None and stop():
                    result.interrupted = True
                    break
                if timeout is not None and time.monotonic() - started >= timeout and not pending:
                    result.timed_out = True
                    break
                specs = pending[:width]
                while len(specs) < width and finished + len(specs) < target:
                    spec = _ask(search, study, storage, log)
                    if spec is None:
                        finished += 1
                        continue
                    specs.append(spec)
                if not specs:
                    continue

                def record(index: int, outcome: RunOutcome) -> None:
                    spec = specs[index]
                    result.outcomes.append(outcome)
                    if _settle_from_run(search, study, storage, spec.hook.number, outcome.status,
                                        outcome.summary, outcome.error, outcome.action == "halted"):
                        done = sum(_counted(t) for t in study.get_trials(deepcopy=False))
                        log(f"[{done}/{target} trials] {_describe(outcome, search)}")

                executor.run(specs, record, data_dirs=data_dirs, stop=stop)
                if any(o.action == "interrupted" for o in result.outcomes[-len(specs):]) or (stop and stop()):
                    result.interrupted = True
                    result.finished = sum(_counted(t) for t in study.get_trials(deepcopy=False))
                    break
            result.report = write_report(search, study)
        return result
    finally:
        lock.release()


def _describe(outcome: RunOutcome, search: Search) -> str:
    if outcome.action == "halted":
        return f"{outcome.label}: pruned"
    if outcome.status == RunStatus.DONE and outcome.summary:
        return f"{outcome.label}: {search.metric} {outcome.summary[OBJECTIVE_KEYS[search.metric]]:.4f}"
    return outcome.describe()


# -- outputs ----------------------------------------------------------------------------------


def trial_rows(search: Search, study) -> list[dict[str, Any]]:
    """One row per trial: number, state, metric, params, epochs run, seconds, error."""
    rows = []
    by_key = {p.key: p for p in search.params}
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name.lower(), search.metric: t.value if t.value is not None else
               (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)}
        for key, param in by_key.items():
            row[key] = param.decode(t.params[key]) if key in t.params else None
        planned = (t.user_attrs.get("config") or {}).get("train", {}).get("epochs")
        row.update({"epochs_run": t.user_attrs.get("epochs_run", len(t.intermediate_values)), "epochs_planned": planned,
                    "seconds": t.user_attrs.get("seconds"), "error": t.user_attrs.get("error")})
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plots(study, out: Path) -> tuple[dict[str, str], list[str]]:
    """Optuna's matplotlib plots as PNGs; a plot that cannot be drawn yet is listed with why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    made, skipped = {}, []
    for title, name, draw in (("Optimization history", "history.png", vis.plot_optimization_history),
                              ("Parameter importances", "importances.png", vis.plot_param_importances),
                              ("Parallel coordinates", "parallel.png", vis.plot_parallel_coordinate),
                              ("Slice", "slice.png", vis.plot_slice)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study)
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
                # One axis (or panel) per parameter: give each about an inch and a half.
                wide = 1.5 * len(study.best_trial.params) if name in ("parallel.png", "slice.png") else 8.0
                figure.set_size_inches(max(8.0, wide, figure.get_size_inches()[0]), max(5.0, figure.get_size_inches()[1]))
                figure.tight_layout()
                figure.savefig(out / name, dpi=100)
            plt.close(figure)
            made[title] = name
        except Exception as exc:  # e.g. importances need two finished trials that differ
            plt.close("all")
            skipped.append(f"{title}: {type(exc).__name__}: {exc}".splitlines()[0])
    return made, skipped


def write_report(search: Search, study) -> dict[str, Any]:
    """search.md, search.csv, search.json, the plots and best.yaml, from the study alone."""
    from optuna.trial import TrialState

    out = search.output_dir
    rows = trial_rows(search, study)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    best = study.best_trial if complete else None
    if best is not None:
        config = validate_config({**best.user_attrs["config"], "name": f"{search.name}-best"}, "best trial")
        header = (f"# Run: mlp-lab run {out / BEST_CONFIG_FILE}   (confirm over seeds: mlp-lab search {search.name} --confirm)\n"
                  f"# Best trial {best.number} of search {search.name}: {search.metric} {best.value:.4f} "
                  f"(selected on validation: optimistic; the confirmation is the number to quote).\n")
        rundir.atomic_write_text(out / BEST_CONFIG_FILE, header + yaml.safe_dump(config_to_dict(config), sort_keys=False))
    counts = {state: sum(r["state"] == state for r in rows) for state in ("complete", "pruned", "fail", "running")}
    epochs_run = sum(r["epochs_run"] or 0 for r in rows if r["state"] in ("complete", "pruned"))
    epochs_planned = sum(r["epochs_planned"] or 0 for r in rows if r["state"] in ("complete", "pruned"))
    plots, skipped = _plots(study, out) if complete else ({}, ["no complete trial yet"])
    report = {
        "search": search.name, "metric": search.metric, "direction": search.direction, "sampler": search.sampler,
        "pruner": search.pruner.name, "overrides": list(search.overrides), "counts": counts,
        "best": None if best is None else {"trial": best.number, "value": best.value,
                                           "params": {p.key: p.decode(best.params[p.key]) for p in search.params
                                                      if p.key in best.params}},
        "epochs_run": epochs_run, "epochs_planned": epochs_planned,
        "seconds": round(sum(r["seconds"] or 0 for r in rows), 1), "trials": rows, "plots": plots,
    }
    rundir.write_json(out / "search.json", report)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows)
    rundir.atomic_write_text(out / "search.csv", buffer.getvalue())
    rundir.atomic_write_text(out / "search.md", _markdown(search, report, skipped))
    return report


def _markdown(search: Search, report: dict[str, Any], skipped: list[str]) -> str:
    lines = [f"# Search: {search.name}", ""]
    if search.description:
        lines += [search.description, ""]
    c = report["counts"]
    lines += [f"Metric: `{search.metric}` ({search.direction}) · sampler: {search.sampler} · pruner: "
              f"{search.pruner.name} · trials: {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
              + (f", {c['running']} unfinished" if c["running"] else ""), ""]
    if search.overrides:
        lines += ["Every trial with " + ", ".join(f"`{o}`" for o in search.overrides) + " (--set).", ""]
    best = report["best"]
    if best is not None:
        lines += ["## Best trial", "",
                  f"Trial {best['trial']}: {search.metric} **{best['value']:.4f}** (`trial-{best['trial']}/`, "
                  f"config in `{BEST_CONFIG_FILE}`).", ""]
        lines += [f"- `{k}`: {v}" for k, v in best["params"].items()]
        lines += ["", "This validation score was selected as the best of many, so it is optimistic. The number to "
                  f"quote is the confirmation over seeds on the test split: `mlp-lab search {search.name} --confirm`.", ""]
    if report["epochs_planned"]:
        saved = report["epochs_planned"] - report["epochs_run"]
        lines += [f"Epochs: {report['epochs_run']} trained of {report['epochs_planned']} planned for the finished "
                  f"trials; pruning (and early stopping) saved {saved} ({saved / report['epochs_planned']:.0%}). "
                  f"Training time over all trials: {report['seconds']:.0f} s.", ""]
    keys = [p.key for p in search.params]
    lines += ["## Trials", "", "| trial | state | " + search.metric + " | " + " | ".join(keys)
              + " | epochs | seconds | note |", "|" + " --- |" * (len(keys) + 6)]
    for r in report["trials"]:
        lines.append(f"| {r['trial']} | {r['state']} | {_fmt(r[search.metric])} | "
                     + " | ".join(_fmt(r[k]) for k in keys)
                     + f" | {_fmt(r['epochs_run'])}/{_fmt(r['epochs_planned'])} | {_fmt(r['seconds'])} | "
                     + f"{(r['error'] or '').replace('|', '/')} |")
    if report["plots"]:
        lines += ["", "## Plots", ""]
        for title, name in report["plots"].items():
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
    if skipped:
        lines += ["", "Plots not drawn: " + "; ".join(skipped)]
    lines += ["", f"Pruned runs keep their directory (`{TRIAL_FILE}` says `pruned`). Continue or extend with "
                  f"`mlp-lab search {search.name} --trials N`.", ""]
    return "\n".join(lines)


# -- confirmation -----------------------------------------------------------------------------


def confirmation_experiment(search: Search, seeds: Sequence[int] = (0, 1, 2)):
    """The best trial's config against the base config over `seeds`, as a two-arm study whose
    runs go to ``<search dir>/confirm/{base,best}/seed-<n>/``: the ablations' code runs and
    reports it (test accuracy mean ± std, the paired difference and its 95% interval). The search
    file's `confirm.overrides` apply to both arms alike."""
    from mlp_lab.ablation import Arm, Experiment

    best_path = search.output_dir / BEST_CONFIG_FILE
    if not best_path.exists():
        raise MLPLabError(f"{best_path}: no best trial yet; run: mlp-lab search {search.name}")
    configs = {}
    for arm, raw, where in [("base", copy.deepcopy(search.base), f"{search.path}: base + confirm.overrides"),
                            ("best", read_yaml_mapping(best_path), f"{best_path} + confirm.overrides")]:
        for key, value in search.confirm_overrides.items():
            set_dotted(raw, key, value)
        problems: list[str] = []
        sources = apply_set_options(raw, search.overrides, problems)
        if problems:
            raise ConfigError(problems)
        raw["name"] = f"{search.name}-{arm}"
        configs[arm] = validate_config(raw, where, sources)
    base_flat, best_flat = flatten(config_to_dict(configs["base"])), flatten(config_to_dict(configs["best"]))
    changes = {k: v for k, v in best_flat.items() if k != "name" and base_flat.get(k) != v}
    arms = [Arm("base", {}, configs["base"]), Arm("best", changes, configs["best"])]
    retrained = ("" if not search.confirm_overrides else " Both arms with "
                 + ", ".join(f"{k}={v}" for k, v in search.confirm_overrides.items()) + " (the search file's confirm.overrides).")
    if search.overrides:
        retrained += " Both arms with " + ", ".join(search.overrides) + " (--set)."
    return Experiment(f"{search.name}-confirm", search.path,
                      f"Confirmation of search {search.name}: its best trial's config against the base config, "
                      f"retrained over seeds {', '.join(map(str, seeds))} on the same split and tested once each."
                      + retrained, [p.key for p in search.params], "base", list(seeds), arms, search.output_dir / "confirm",
                      search.overrides)


def confirm(search: Search, seeds: Sequence[int] = (0, 1, 2), *, jobs: int = 1, threads: int | None = None,
            data_dirs: Sequence[str] = (), stop: Callable[[], bool] | None = None, log: Callable[[str], None] = print,
            executor: Executor | None = None, track: bool = False):
    """Retrain the best and the base config over `seeds` and report them with the ablations' code.

    Returns the compare result and the report's lines for best vs base; finished runs are
    skipped on a second call, like `compare`. With `track`, the confirmation is an MLflow
    experiment like a study's (`<search>-confirm`), its report attached.
    """
    from mlp_lab.ablation import compare
    from mlp_lab.report import build_report

    experiment = confirmation_experiment(search, seeds)
    if track:
        from mlp_lab.tracking.workflows import track_experiment

        experiment = track_experiment(experiment)
    result = compare(experiment, jobs=jobs, threads=threads, data_dirs=data_dirs, stop=stop, log=log, executor=executor)
    if result.interrupted:
        return result, []
    report = build_report(experiment)
    if track:
        from mlp_lab.tracking.export import log_study_report
        from mlp_lab.tracking.store import TrackingError

        try:
            log_study_report(experiment)
        except TrackingError as exc:
            log(f"warning: confirmation report not attached in MLflow ({exc})")
    lines = []
    for row in report["arms"]:
        std = f" ± {row['test_acc_std'] * 100:.2f}" if row["test_acc_std"] is not None else ""
        acc = f"{row['test_acc_mean'] * 100:.2f}{std}" if row["test_acc_mean"] is not None else "–"
        lines.append(f"{row['arm']}: test/acc {acc} % over {row['seeds']} seed(s)")
        if row["arm"] == "best" and row["diff_vs_reference"] is not None:
            ci = (f" [{row['ci_low'] * 100:+.2f}, {row['ci_high'] * 100:+.2f}]" if row["ci_low"] is not None else "")
            lines.append(f"best - base: {row['diff_vs_reference'] * 100:+.2f} points{ci} (95% paired t-interval): "
                         f"{row['verdict']}")
    rundir.atomic_write_text(search.output_dir / "confirm.md", "\n".join(
        [f"# Confirmation of search {search.name}", "", *[f"- {line}" for line in lines], "",
         "Full report: [confirm/report.md](confirm/report.md)", ""]))
    return result, lines
