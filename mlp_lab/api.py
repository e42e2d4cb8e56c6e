"""The Python API for notebooks and scripts: `load_config`, `run`, `compare`, `search`, `track`
and `load_model`, over the service layer the CLI calls (`mlp_lab.service`), with results as objects
(`RunResult`, `StudyReport`, `SearchReport`, `Model` and its `Predictions`) that have
`.to_pandas()` when pandas is installed.

A call prints nothing unless asked (`verbose=True` prints its progress lines; a `log` callable
receives them instead) and leaves the process as it found it: the signal handlers, torch's
thread count and deterministic-algorithms switch, the python/numpy/torch RNG streams and
``os.environ`` are put back afterwards. The trainer seeds the global RNGs, switches torch to
deterministic kernels and sets CUBLAS_WORKSPACE_CONFIG; Ray and MLflow set variables for "this
process and its children": a notebook's own state must not change because it trained a model.

Errors are the library's: an `MLPLabError` for bad input (one line per problem, naming the file
and key), a `MachineFault` for the machine's (a full disk, memory). An interrupt
(KeyboardInterrupt) stops a run at once; a study's or search's partial runs continue on the
next call, as `mlp-lab compare` continues them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlp_lab.config.load import load_config as load_config_file
from mlp_lab.config.load import validate_config
from mlp_lab.config.overrides import apply_set_options, flatten
from mlp_lab.config.schema import Config, config_to_dict
from mlp_lab.config.specfile import resolve_spec_path
from mlp_lab.core.errors import ConfigError, MLPLabError, clip
from mlp_lab.runs import rundir
from mlp_lab.service.process import as_found

if TYPE_CHECKING:  # these import torch (or optuna's side); the module is imported before they are needed
    import numpy as np

    from mlp_lab.execution.procedure import RunOutcome
    from mlp_lab.search.spec import Search
    from mlp_lab.studies.ablation import Study
    from mlp_lab.tracking.export import Exported
    from mlp_lab.training.checkpoint import LoadedRun

__all__ = [
    "Model",
    "Predictions",
    "RunResult",
    "SearchReport",
    "StudyReport",
    "compare",
    "load_config",
    "load_model",
    "run",
    "search",
    "track",
]

CONFIGS_DIR = "configs"  # where a config's name is looked up, as `mlp-lab list` shows them

Overrides = Sequence[str] | Mapping[str, Any] | str | None
Log = Callable[[str], None] | None


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("to_pandas() needs pandas, which is not installed: pip install pandas") from None
    return pandas


def _set_texts(overrides: Overrides) -> tuple[str, ...]:
    """`overrides` as the ``KEY=VALUE`` texts of ``--set``: a list of them, one, or a mapping
    {dotted key: value} ({"train": {"epochs": 1}} means train.epochs; each value is written as
    JSON, which the --set parser reads as the YAML it is)."""
    if overrides is None:
        return ()
    if isinstance(overrides, str):
        return (overrides,)
    if isinstance(overrides, Mapping):
        return tuple(f"{key}={json.dumps(value)}" for key, value in flatten(overrides).items())
    texts = tuple(overrides)
    for text in texts:
        if not isinstance(text, str):
            raise MLPLabError(f"overrides: {clip(repr(text))} is not a KEY=VALUE text; pass a list of them or a dict")
    return texts


def _log(verbose: bool, log: Log) -> Callable[[str], None]:
    if log is not None:
        return log
    if verbose:
        return lambda line: print(line, flush=True)
    return lambda line: None


def _config_and_source(config: str | Path | Config, overrides: Overrides) -> tuple[Config, str]:
    texts = _set_texts(overrides)
    if isinstance(config, Config):
        if not texts:
            return config, "config"
        raw = config_to_dict(config)
        errors: list[str] = []
        sources = apply_set_options(raw, texts, errors)
        try:
            resolved = validate_config(raw, "config", sources)
        except ConfigError as exc:
            errors += exc.errors
        if errors:
            raise ConfigError(errors)
        return resolved, "config"
    if not isinstance(config, (str, Path)):
        raise MLPLabError(f"config: expected a name, a path or a Config, not a {type(config).__name__}")
    path = resolve_spec_path(config, CONFIGS_DIR, "config")
    return load_config_file(path, texts), str(path)


def load_config(config: str | Path | Config, overrides: Overrides = None) -> Config:
    """A validated run config from a name (``baseline``: configs/baseline.yaml), a path or a
    Config, with `overrides` applied (``["train.epochs=1"]`` or ``{"train.epochs": 1}``, as --set).
    Every problem is raised at once as a ConfigError."""
    return _config_and_source(config, overrides)[0]


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory, resolved config, summary (summary.json) and history
    (metrics.csv, one dict per epoch)."""

    run_dir: Path
    config: Config
    summary: dict[str, Any]
    history: list[dict[str, float]]

    def to_pandas(self):
        """The history as a DataFrame, one row per epoch."""
        return _pandas().DataFrame(self.history)

    def load_model(self, **options: Any) -> Model:
        """This run's model, as `load_model(run_dir)` gives it."""
        return load_model(self.run_dir, **options)


def run(
    config: str | Path | Config,
    overrides: Overrides = None,
    run_dir: str | Path | None = None,
    threads: int | None = None,
    *,
    data_dirs: Sequence[str | Path] = (),
    verbose: bool = False,
    log: Log = None,
) -> RunResult:
    """Train one seeded run, as `mlp-lab run` does: into `run_dir` (new or empty) or else
    ``<output.dir>/<name>`` (``<name>-2``, ... when taken), with `threads` torch threads
    (default: every core). Returns the run's summary and per-epoch history."""
    from mlp_lab.service.checks import API
    from mlp_lab.service.checks import data_dirs as checked_dirs

    cfg, source = _config_and_source(config, overrides)
    say = _log(verbose, log)
    dirs = checked_dirs(data_dirs, API)
    with as_found():
        from mlp_lab.service.context import epoch_line, run_context
        from mlp_lab.service.runs import start_or_resume

        context = run_context(
            data_dirs=dirs, threads=threads, log=say, on_epoch=lambda record: say(f"{cfg.name}  {epoch_line(record)}")
        )
        result = start_or_resume(
            cfg,
            context,
            run_dir=run_dir,
            source=source,
            on_start=lambda where, renamed: say(f"run {cfg.name} -> {where}"),
        )
    say(f"done: {result.run_dir}  test/acc {result.summary['test/acc']:.4f}")
    return RunResult(result.run_dir, cfg, result.summary, rundir.read_metrics(result.run_dir))


@dataclass(frozen=True)
class StudyReport:
    """A study's report (report.json's fields: `arms` holds one dict per arm, `runs` each arm's
    seeds) and what this call did with each run (`outcomes`, in plan order)."""

    study: str  # report.json's "experiment"
    factor: list[str]
    reference: str
    seeds: list[int]
    overrides: list[str]
    confidence: float
    arms: list[dict[str, Any]]
    runs: dict[str, dict[str, Any]]
    plots: dict[str, str]
    output_dir: Path
    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def failures(self) -> list[RunOutcome]:
        """Runs that failed (their arm's statistics leave them out)."""
        return [o for o in self.outcomes if o.status == rundir.RunStatus.FAILED]

    @property
    def busy(self) -> list[RunOutcome]:
        """Runs another process was training (left to it; call compare again when it is done)."""
        return [o for o in self.outcomes if o.status == rundir.RunStatus.BUSY]

    def to_pandas(self):
        """The arms as a DataFrame, one row per arm, as in report.csv."""
        return _pandas().DataFrame(self.arms)


def _study(study: str | Path | Study, seeds: Sequence[int] | None, overrides: Overrides) -> Study:
    from mlp_lab.studies.ablation import Study, load_study

    texts = _set_texts(overrides)
    if isinstance(study, Study):
        if not texts and not seeds:
            return study
        # Loaded again from its file, so the new --set values are checked against its factor.
        return load_study(study.path, list(seeds or study.seeds), overrides=(*study.overrides, *texts))
    if not isinstance(study, (str, Path)):
        raise MLPLabError(f"study: expected a name, a path or a loaded Study, not a {type(study).__name__}")
    return load_study(study, list(seeds) if seeds else None, overrides=texts)


def compare(
    study: str | Path | Study,
    seeds: Sequence[int] | None = None,
    overrides: Overrides = None,
    jobs: int = 1,
    threads: int | None = None,
    backend: str = "local",
    *,
    address: str | None = None,
    force: bool = False,
    data_dirs: Sequence[str | Path] = (),
    verbose: bool = False,
    log: Log = None,
) -> StudyReport:
    """Run every arm x seed of a study (finished runs skipped, partial ones continued), then
    build its report, as `mlp-lab compare` does.

    `jobs` local processes with `threads` torch threads each, or with ``backend="ray"`` one Ray
    task per run (a local instance, or the cluster at `address`; `jobs` tasks in flight, 1
    meaning the CLI's default: cluster CPUs / threads). Failed runs are in the
    report's `failures`; a fault of the machine raises MachineFault before any report is built.
    With jobs > 1 the worker processes print their per-epoch lines only when `verbose`.
    """
    from mlp_lab.service.checks import API, check_studies, fault_error, require_backend
    from mlp_lab.service.checks import data_dirs as checked_dirs
    from mlp_lab.studies.ablation import compare as run_compare
    from mlp_lab.studies.report import build_report

    require_backend(backend, address, API)
    loaded = _study(study, seeds, overrides)
    dirs = checked_dirs(data_dirs, API)
    say = _log(verbose, log)
    with as_found():
        from mlp_lab.service.context import executor_for, run_context

        check_studies([loaded], backend)  # a GPU asked for but absent, before any run
        context = run_context(data_dirs=dirs, threads=threads, log=say)
        in_flight = None if backend == "ray" and jobs <= 1 else jobs  # None: as many as the cluster's CPUs hold
        with executor_for(backend, address, in_flight, context, quiet=not verbose) as executor:
            result = run_compare(
                loaded, jobs=jobs, force=force, data_dirs=dirs, threads=threads, log=say, executor=executor
            )
        if (fault := fault_error(result.outcomes, "call compare again")) is not None:
            raise fault
        report = build_report(loaded)
    return StudyReport(
        report["experiment"],
        report["factor"],
        report["reference"],
        report["seeds"],
        report["overrides"],
        report["confidence"],
        report["arms"],
        report["runs"],
        report["plots"],
        loaded.output_dir,
        result.outcomes,
    )


@dataclass(frozen=True)
class SearchReport:
    """A search's report (search.json's fields: `trials` holds one dict per trial, `best` the
    best trial's number, value and params) and what this call did (`finished` of `target`
    trials, `outcomes`, `timed_out`)."""

    search: str
    metric: str
    direction: str
    sampler: str
    pruner: str
    overrides: list[str]
    counts: dict[str, int]
    best: dict[str, Any] | None
    epochs_run: int
    epochs_planned: int
    seconds: float
    trials: list[dict[str, Any]]
    plots: dict[str, str]
    output_dir: Path
    finished: int
    target: int
    timed_out: bool = False
    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def best_config(self) -> Path | None:
        """best.yaml: the best trial's config, ready for `run` (None before a trial completes)."""
        from mlp_lab.search.spec import BEST_CONFIG_FILE

        path = self.output_dir / BEST_CONFIG_FILE
        return path if self.best is not None and path.is_file() else None

    def to_pandas(self):
        """The trials as a DataFrame, one row per trial, as in search.csv."""
        return _pandas().DataFrame(self.trials)


def search(
    name: str | Path | Search,
    trials: int | None = None,
    jobs: int = 1,
    threads: int | None = None,
    overrides: Overrides = None,
    *,
    timeout: float | None = None,
    data_dirs: Sequence[str | Path] = (),
    verbose: bool = False,
    log: Log = None,
) -> SearchReport:
    """Run an Optuna search (a name in searches/, a path or a loaded Search) until `trials`
    trials have ended, counting earlier calls', as `mlp-lab search` does. Needs the [search]
    extra (a one-line MLPLabError naming it when optuna is missing)."""
    from mlp_lab.search.driver import run_search
    from mlp_lab.search.spec import Search, load_search
    from mlp_lab.search.study import require_optuna

    require_optuna()
    texts = _set_texts(overrides)
    if isinstance(name, Search):
        found = load_search(name.path, overrides=(*name.overrides, *texts)) if texts else name
    elif isinstance(name, (str, Path)):
        found = load_search(name, overrides=texts)
    else:
        raise MLPLabError(f"search: expected a name, a path or a loaded Search, not a {type(name).__name__}")
    from mlp_lab.service.checks import API, check_config, fault_error
    from mlp_lab.service.checks import data_dirs as checked_dirs

    dirs = checked_dirs(data_dirs, API)
    say = _log(verbose, log)
    with as_found():
        from mlp_lab.service.context import executor_for, run_context

        check_config(found.base_config, str(found.path))
        context = run_context(data_dirs=dirs, threads=threads, log=say)
        with executor_for("local", None, jobs, context, quiet=not verbose) as executor:
            result = run_search(
                found,
                trials=trials,
                jobs=jobs,
                timeout=timeout,
                threads=threads,
                data_dirs=dirs,
                log=say,
                executor=executor,
            )
        if (fault := fault_error(result.outcomes, "call search again")) is not None:
            raise fault
    report = result.report
    return SearchReport(
        report["search"],
        report["metric"],
        report["direction"],
        report["sampler"],
        report["pruner"],
        report["overrides"],
        report["counts"],
        report["best"],
        report["epochs_run"],
        report["epochs_planned"],
        report["seconds"],
        report["trials"],
        report["plots"],
        found.output_dir,
        result.finished,
        result.target,
        result.timed_out,
        result.outcomes,
    )


def track(
    targets: str | Path | Sequence[str | Path],
    overrides: Overrides = None,
    *,
    verbose: bool = False,
    log: Log = None,
) -> list[Exported]:
    """Export finished runs to MLflow, as `mlp-lab track` does: each target a run directory or a
    study (a name in experiments/ or a path, loaded with `overrides` as compare's), into the store
    of its output.dir (or $MLFLOW_TRACKING_URI); a second export adds nothing. Needs the [track]
    extra. Returns one `Exported` (run_dir, run_id, experiment, created) per run."""
    from mlp_lab.service.track import track as export

    names = [targets] if isinstance(targets, (str, Path)) else list(targets)
    for name in names:
        if not isinstance(name, (str, Path)):
            raise MLPLabError(f"track: expected run directories or study names, not a {type(name).__name__}")
    with as_found():
        return export([str(name) for name in names], _set_texts(overrides), _log(verbose, log))


@dataclass(frozen=True)
class Predictions:
    """What a model made of some pictures: per picture the most probable class (`labels`), the
    top k (`top`: [{"class", "index", "probability"}, ...]) and every class's probability."""

    labels: list[str]
    top: list[list[dict[str, Any]]]
    probabilities: np.ndarray  # (pictures, classes)
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def to_pandas(self):
        """One row per picture: the class, its probability, then every class's probability."""
        rows = [
            {"class": label, "probability": float(p.max()), **dict(zip(self.classes, map(float, p)))}
            for label, p in zip(self.labels, self.probabilities)
        ]
        return _pandas().DataFrame(rows, columns=["class", "probability", *self.classes])


class Model:
    """A trained run's model in memory, predicting through `mlp-lab predict`'s own
    preprocessing (the dataset's recipe: resized, centred, inverted when dark on light)."""

    def __init__(self, run: LoadedRun, invert: bool | str = "auto", normalise: str = "auto") -> None:
        from mlp_lab.inspect.predict import Predictor

        self.run_dir: Path = run.run_dir
        self.config: Config = run.config
        self.checkpoint: str = run.checkpoint  # "best" or "last": the weights its test metrics used
        self.module = run.model  # the torch module, in eval mode
        self._predictor = Predictor(run, invert, normalise)

    @property
    def classes(self) -> list[str]:
        return self._predictor.classes

    def __repr__(self) -> str:
        return f"Model({str(self.run_dir)!r}, dataset={self.config.data.name!r}, checkpoint={self.checkpoint!r})"

    def view(self, image: Any) -> np.ndarray:
        """What the model sees for one picture: uint8 (C, H, W)."""
        return self._predictor.view(image)

    def predict(self, images: Any, top_k: int = 3) -> Predictions:
        """Predictions for one picture or a list of them: a path, a PIL image or an array
        (H x W, or H x W x 1/3/4; integers on 0..255, floats on 0..1)."""
        batch = list(images) if isinstance(images, (list, tuple)) else [images]
        probabilities = self._predictor.probabilities(batch)
        from mlp_lab.inspect.predict import top_classes

        top = top_classes(probabilities, self.classes, top_k)
        return Predictions([row[0]["class"] for row in top], top, probabilities.numpy(), self.classes)


def load_model(
    target: str | Path,
    *,
    which: str | None = None,
    output_dir: str | Path = "runs",
    invert: bool | str = "auto",
    normalise: str = "auto",
) -> Model:
    """A run directory's model, or a registered one (``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION``: fetched from `output_dir`'s MLflow store, the [track] extra).
    `which` picks the checkpoint (default: the weights the run's test metrics used)."""
    from mlp_lab.tracking.registry import is_model_uri, materialize
    from mlp_lab.training.checkpoint import load_model as load_run

    with as_found():
        run_dir = materialize(str(target), output_dir) if is_model_uri(target) else Path(target)
        return Model(load_run(run_dir, which), invert, normalise)
