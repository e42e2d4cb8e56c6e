"""The Python API for notebooks and scripts: `load_config`, `run`, `compare`, `search` and
`load_model`, over the library functions the CLI calls, with results as objects
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
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlp_lab.config.load import load_config as load_config_file
from mlp_lab.config.load import validate_config
from mlp_lab.config.overrides import apply_set_options, flatten
from mlp_lab.config.schema import Config, config_to_dict
from mlp_lab.config.specfile import resolve_spec_path
from mlp_lab.core.errors import ConfigError, MachineFault, MLPLabError, clip
from mlp_lab.runs import rundir

if TYPE_CHECKING:  # these import torch (or optuna's side); the module is imported before they are needed
    import numpy as np

    from mlp_lab.execution.procedure import RunOutcome
    from mlp_lab.search.spec import Search
    from mlp_lab.studies.ablation import Study
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


def _data_dirs(data_dirs: Sequence[str | Path]) -> tuple[str, ...]:
    """Extra dataset directories (as `--data-dir`); one that is not a directory is a typo."""
    if isinstance(data_dirs, (str, Path)):
        data_dirs = [data_dirs]
    for directory in map(Path, data_dirs):
        if not directory.is_dir():
            raise MLPLabError(
                f"data_dirs: {clip(str(directory))}: "
                + ("is a file, expected a directory" if directory.exists() else "no such directory")
            )
    return tuple(map(str, data_dirs))


@contextmanager
def _as_found() -> Iterator[None]:
    """Put the process-wide state a run touches back as it was after the block."""
    import torch

    from mlp_lab.training.runtime import determinism_as_found, rng_state, set_rng_state

    environ = dict(os.environ)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    rng = rng_state()
    try:
        with determinism_as_found():
            yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        set_rng_state(rng)
        for key in [k for k in os.environ if k not in environ]:
            del os.environ[key]
        for key, value in environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            for sig, handler in handlers.items():
                if handler is not None and signal.getsignal(sig) is not handler:
                    signal.signal(sig, handler)


def _epoch_line(name: str, record: Mapping[str, Any]) -> str:
    return (
        f"{name}  epoch {record['epoch']}/{record['epochs']}  train/loss {record['train/loss']:.4f}  "
        f"val/loss {record['val/loss']:.4f}  val/acc {record['val/acc']:.4f}  {record['seconds']:.1f}s"
    )


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
    cfg, source = _config_and_source(config, overrides)
    say = _log(verbose, log)
    dirs = _data_dirs(data_dirs)
    with _as_found():
        from mlp_lab.execution.procedure import start_run

        result = start_run(
            cfg,
            run_dir=run_dir,
            source=source,
            data_dirs=dirs,
            threads=threads,
            on_start=lambda where, renamed: say(f"run {cfg.name} -> {where}"),
            on_epoch=lambda record: say(_epoch_line(cfg.name, record)),
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


def _raise_faults(outcomes: Sequence[RunOutcome], again: str) -> None:
    faults = [o for o in outcomes if o.fault]
    if faults:
        raise MachineFault(
            f"{len(faults)} run(s) stopped by a fault of the machine ({faults[0].error}); fix it, then {again}"
        )


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
    from mlp_lab.studies.ablation import compare as run_compare
    from mlp_lab.studies.report import build_report

    if backend not in ("local", "ray"):
        raise MLPLabError(f"backend {clip(repr(backend))}: choose local or ray")
    if backend == "local" and address is not None:
        raise MLPLabError("address joins a Ray cluster: use it with backend='ray'")
    loaded = _study(study, seeds, overrides)
    dirs = _data_dirs(data_dirs)
    say = _log(verbose, log)
    with _as_found():
        if backend == "ray":
            from mlp_lab.execution.ray_executor import RayExecutor, check_ray_installed, ray_session

            check_ray_installed()
            with ray_session(address):
                result = run_compare(
                    loaded,
                    jobs=jobs,
                    force=force,
                    data_dirs=dirs,
                    threads=threads,
                    log=say,
                    executor=RayExecutor(threads, jobs if jobs > 1 else None, log=say),
                )
        else:
            from mlp_lab.execution.procedure import ProcessPoolExecutor, SerialExecutor
            from mlp_lab.training.runtime import check_runtime

            for arm in loaded.arms:  # a GPU asked for but absent, before any run
                check_runtime(arm.config, f"{loaded.path}: arms.{arm.name}")
            executor = (
                SerialExecutor(threads, say) if jobs <= 1 else ProcessPoolExecutor(jobs, threads, quiet=not verbose)
            )
            result = run_compare(
                loaded, jobs=jobs, force=force, data_dirs=dirs, threads=threads, log=say, executor=executor
            )
        _raise_faults(result.outcomes, "call compare again")
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
    dirs = _data_dirs(data_dirs)
    say = _log(verbose, log)
    with _as_found():
        from mlp_lab.execution.procedure import ProcessPoolExecutor, SerialExecutor
        from mlp_lab.training.runtime import check_runtime

        check_runtime(found.base_config, str(found.path))
        executor = SerialExecutor(threads, say) if jobs <= 1 else ProcessPoolExecutor(jobs, threads, quiet=not verbose)
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
        _raise_faults(result.outcomes, "call search again")
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
        return f"Model({str(self.run_dir)!r}, dataset={self.config.data.dataset!r}, checkpoint={self.checkpoint!r})"

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

    with _as_found():
        run_dir = materialize(str(target), output_dir) if is_model_uri(target) else Path(target)
        return Model(load_run(run_dir, which), invert, normalise)
