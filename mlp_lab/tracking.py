"""MLflow tracking and model registry (the ``[track]`` extra): a mirror of the run directories.

The run directories stay the source of truth; MLflow gets a copy that can be browsed, compared
and loaded by name. `MLflowLogger` logs a run live (a `MetricLogger` peer of TensorBoard);
`export_run` / `export_study` copy finished or partial runs after the fact (idempotently);
`register` makes a registered model version and sets an alias; `materialize` turns
``models:/NAME@ALIAS`` back into a run directory that `checkpoint.load_model` reads.

Where it goes is decided in one place, `store_for`: ``$MLFLOW_TRACKING_URI`` when set (a server,
``http://...``), else an embedded SQLite store ``<output.dir>/mlflow.db`` with artifacts in
``<output.dir>/mlartifacts/``; the registry is ``$MLFLOW_REGISTRY_URI``, else the same store.
Every MLflow call goes through an `MlflowClient` bound to those URIs: nothing here sets
MLflow's process-wide tracking URI or the environment, so a user's store is never swapped for
another half-way through a study.
Each run directory keeps its MLflow run id in ``mlflow.json`` (one entry per store), so a
resumed run and a later export continue the same MLflow run. Tracking never costs a run: a
failing store turns the logger off with one warning line, and the run carries on.

mlflow is imported inside the functions that need it; ``mlp-lab`` works without it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlp_lab import rundir
from mlp_lab.config import Config, MLPLabError, config_hash, config_to_dict, flatten, load_config
from mlp_lab.environ import env_defaults

EXTRA = "pip install -e '.[track]'"
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for a nested run (a search's trials)
RUN_FILE = "mlflow.json"  # in a run (or study) directory: its MLflow run per store
REGISTRY_DIR = "registry"  # <output.dir>/registry/<name>/v<version>: registered models as run directories
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
EPOCH_METRICS = ("train/loss", "val/loss", "train/acc", "val/acc", "lr", "seconds")
SUMMARY_METRICS = ("test/acc", "test/loss", "best/val_acc", "best/val_loss", "best_epoch", "epochs_run",
                   "wall_time_s", "num_parameters")
# A live run must not wait minutes on a dead server: MLflow's defaults are 7 retries, 120 s each.
LIVE_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# No progress bars, and no "View run ... at: URL" lines on stdout for each run a server ends.
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
# The check before training: a store that does not answer within seconds is reported, not retried.
PROBE_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


class TrackingError(MLPLabError):
    """The tracking store could not be reached or refused a request."""


def require_mlflow(what: str = "tracking") -> Any:
    """Import mlflow, or fail with one line naming the extra. (The `mlp-lab` command turns
    MLflow's usage telemetry off for its own process; a library caller's environment is theirs.)"""
    try:
        import mlflow
    except ImportError:
        raise MLPLabError(f"{what} needs the [track] extra: {EXTRA}") from None
    return mlflow


@dataclass(frozen=True)
class Store:
    """Where tracking goes: a tracking URI, a registry URI, and for the embedded store its
    artifact folder."""

    uri: str
    registry_uri: str
    artifact_root: Path | None = None

    @property
    def embedded(self) -> bool:
        return self.artifact_root is not None


def store_for(output_dir: str | Path = "runs") -> Store:
    """The one place that decides the store: the user's ``$MLFLOW_TRACKING_URI`` (and
    ``$MLFLOW_REGISTRY_URI``) if set, else the SQLite store under `output_dir`."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    registry = os.environ.get("MLFLOW_REGISTRY_URI")
    if uri:
        return Store(uri, registry or uri)
    root = Path(output_dir).resolve()
    embedded = f"sqlite:///{root / STORE_FILE}"
    return Store(embedded, registry or embedded, root / ARTIFACTS_DIR)


# What says where tracking goes and how to get in, for processes that do not inherit this one's
# environment (Ray tasks run in workers started by each node's raylet).
STORE_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
STORE_CREDENTIALS_ENV = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                         "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH")


def store_env() -> dict[str, str]:
    """This process's choice of store as environment variables for another process: the URIs
    always (empty = the embedded store, whatever that process's own environment says), and any
    credentials that are set."""
    env = {key: os.environ.get(key, "") for key in STORE_ENV}
    env.update({key: os.environ[key] for key in STORE_CREDENTIALS_ENV if key in os.environ})
    return env


def client_for(store: Store) -> Any:
    """An MlflowClient bound to `store` (tracking and registry): no global tracking URI is set."""
    require_mlflow()
    from mlflow.tracking import MlflowClient

    if store.embedded:
        store.artifact_root.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=store.uri, registry_uri=store.registry_uri)


def prepare_store(output_dir: str | Path = "runs") -> Store:
    """Reach the store and create its schema now, in this process, before any training: several
    workers opening a fresh SQLite store at once would race in its migration, and a store that
    cannot be reached is one line within seconds, not minutes of MLflow's retries."""
    store = store_for(output_dir)
    with env_defaults(PROBE_HTTP), _errors(store):
        client = client_for(store)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return store


def describe(store: Store) -> str:
    """One line saying where tracked runs go."""
    if store.embedded:
        return f"MLflow: runs go to {store.uri.removeprefix('sqlite:///')} (browse them: mlp-lab ui)"
    registry = f", registry {store.registry_uri}" if store.registry_uri != store.uri else ""
    return f"MLflow: runs go to {store.uri}{registry}"


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's own chatter off the user's terminal for a block: its INFO lines ("Creating
    initial MLflow database tables", alembic's migration steps), its warnings, progress bars
    and the "View run ... at" line a server prints for every run. Our own lines say what happened; MLflow's warnings and errors that
    matter reach us as exceptions. The loggers' levels are put back afterwards."""
    import logging
    import warnings

    require_mlflow()  # importing mlflow configures its loggers: first, so that this setting wins
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), env_defaults(QUIET_ENV):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextmanager
def _errors(store: Store) -> Iterator[None]:
    """MLflow's exceptions (and a dead server) as one-line TrackingErrors; its chatter silenced."""
    try:
        with quiet_mlflow():
            yield
    except MLPLabError:
        raise
    except Exception as exc:
        raise TrackingError(f"MLflow at {store.uri}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # MLflow wraps a dead or silent server in a paragraph of urllib3 text: say what it means.
    if "Max retries exceeded" in text or "NewConnectionError" in text or "ConnectTimeout" in text \
            or "Read timed out" in text:
        what = "timed out" if "timed out" in text.lower() or "Timeout" in text else "connection refused"
        return (f"cannot reach the tracking server ({what}); start it, or point MLFLOW_TRACKING_URI "
                f"at one that runs (unset: the store under output.dir)")
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def experiment_id(client: Any, store: Store, name: str) -> str:
    """The id of experiment `name`, created (or restored from the bin) when needed."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        location = (store.artifact_root / name).as_uri() if store.embedded else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another process created it meanwhile
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


# -- a run directory's MLflow run ------------------------------------------------------------


def _run_record(run_dir: Path, store: Store) -> dict[str, Any]:
    try:
        return rundir.read_json(run_dir / RUN_FILE).get(store.uri, {})
    except (OSError, ValueError, AttributeError):
        return {}


def _save_run_record(run_dir: Path, store: Store, **fields: Any) -> None:
    path = run_dir / RUN_FILE
    try:
        records = rundir.read_json(path)
    except (OSError, ValueError):
        records = {}
    records[store.uri] = {**records.get(store.uri, {}), **fields}
    rundir.write_json(path, records)


def recorded_run(client: Any, run_dir: Path, store: Store) -> Any | None:
    """The live MLflow run this run directory recorded for `store`, or None."""
    from mlflow.exceptions import MlflowException

    run_id = _run_record(run_dir, store).get("run_id")
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None


def run_tags(config: Config, run_dir: Path, tags: Mapping[str, str]) -> dict[str, str]:
    """The tags that say what a run is and where it lives."""
    out = {"config_hash": config_hash(config), "run_dir": str(run_dir.resolve()), "dataset": config.data.dataset,
           "seed": str(config.seed), "mlp_lab.kind": "run"}
    out.update({k: str(v) for k, v in tags.items() if k in ("study", "arm", "search", "trial", PARENT_TAG)})
    return out


def run_params(config: Config) -> dict[str, str]:
    """The flattened resolved config, less `output.*` (where the run went, not what it trained)."""
    return {k: str(v) for k, v in flatten(config_to_dict(config)).items() if not k.startswith("output.")}


def _metrics(values: Mapping[str, Any], step: int) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]


class MLflowLogger:
    """Logs one run to MLflow as it trains: params, per-epoch metrics (step = epoch), summary
    metrics, tags, the run's files as artifacts and its model. A resumed run continues the same
    MLflow run. With `strict` (exports) errors raise; otherwise (live runs) the first error
    prints one warning line and turns the logger off, and training carries on."""

    def __init__(self, config: Config, run_dir: str | Path, start_epoch: int = 0,
                 tags: Mapping[str, str] | None = None, *, strict: bool = False,
                 warn: Callable[[str], None] | None = None):
        self.config, self.run_dir, self.start_epoch = config, Path(run_dir), start_epoch
        self.tags = dict(tags or {})
        self.store = store_for(config.output.dir)
        self.strict = strict
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self.client: Any = None
        self.run_id: str | None = None
        self.failed = False
        self.terminated = False

    @property
    def experiment_name(self) -> str:
        return self.tags.get("study") or self.tags.get("search") or self.config.name

    def _guard(self, action: Callable[[], None]) -> None:
        if self.failed:
            return
        try:
            with env_defaults({} if self.strict else LIVE_HTTP), _errors(self.store):
                action()
        except MLPLabError as exc:  # a TrackingError, or mlflow missing when a library caller asked for it
            if self.strict:
                raise
            self.failed = True
            self.warn(f"warning: MLflow tracking stopped for {self.run_dir} ({exc}); training continues; "
                      f"export it later with: mlp-lab track {self.run_dir}")

    def log_config(self, config: Config) -> None:
        self.config = config
        self._guard(self._start)

    def _start(self) -> None:
        self.client = client_for(self.store)
        run = recorded_run(self.client, self.run_dir, self.store)
        if run is None:
            exp_id = experiment_id(self.client, self.store, self.experiment_name)
            name = f"{self.tags['arm']}/seed-{self.config.seed}" if "arm" in self.tags else self.run_dir.name
            run = self.client.create_run(exp_id, run_name=name, tags=run_tags(self.config, self.run_dir, self.tags))
            self.run_id = run.info.run_id
            _save_run_record(self.run_dir, self.store, run_id=self.run_id, experiment_id=exp_id)
            from mlflow.entities import Param

            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in run_params(self.config).items()])
        else:
            self.run_id = run.info.run_id
            if run.info.status != "RUNNING":
                self.client.update_run(self.run_id, status="RUNNING")
        self._backfill(self.start_epoch)

    def _backfill(self, upto: int) -> None:
        """Log the epochs up to `upto` that metrics.csv holds and MLflow lacks: a resumed run
        (or an export) then has every epoch once, even after a crash or a tracking outage."""
        if upto <= 0 or not (self.run_dir / rundir.METRICS_FILE).exists():
            return
        logged = {m.step for m in self.client.get_metric_history(self.run_id, "val/loss")}
        metrics = []
        for row in rundir.read_metrics(self.run_dir):
            if row["epoch"] <= upto and row["epoch"] not in logged:
                metrics += _metrics({k: row[k] for k in EPOCH_METRICS if k in row}, row["epoch"])
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        self._guard(lambda: self.client.log_batch(
            self.run_id, metrics=_metrics({k: record[k] for k in EPOCH_METRICS if k in record}, epoch)))

    def log_summary(self, summary: dict[str, Any]) -> None:
        self._guard(lambda: self._finish(summary))

    def _finish(self, summary: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        step = int(summary.get("epochs_run") or 0)
        self.client.log_batch(self.run_id, metrics=_metrics({k: summary[k] for k in SUMMARY_METRICS if k in summary}, step),
                              tags=[RunTag("status", str(summary.get("status")))])
        for name in (rundir.CONFIG_FILE, rundir.METRICS_FILE, rundir.SUMMARY_FILE, "curves.png"):
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        for png in sorted((self.run_dir / "eval").glob("*.png")):
            self.client.log_artifact(self.run_id, str(png), "eval")
        if summary.get("status") == "completed" and not _run_record(self.run_dir, self.store).get("model_id"):
            model_id, model_uri = log_model(self.store, self.run_id, self.run_dir, summary)
            _save_run_record(self.run_dir, self.store, model_id=model_id, model_uri=model_uri)
        self.client.set_terminated(self.run_id, "FINISHED" if summary.get("status") == "completed" else "FAILED")
        self.terminated = True

    def close(self) -> None:
        if self.run_id is not None and not self.terminated:
            # Interrupted: the run stays resumable, and so does its MLflow run.
            self._guard(lambda: self.client.set_terminated(self.run_id, "KILLED"))


def log_model(store: Store, run_id: str, run_dir: Path, summary: Mapping[str, Any]) -> tuple[str, str]:
    """Log the run's test-time checkpoint as an MLflow pyfunc model (models-from-code, no
    pickled objects), with an output signature and a raw-image input example. Returns the
    logged model's id and URI."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from mlp_lab.checkpoint import load_checkpoint

    kind = summary.get("test_weights", "best")
    checkpoint = run_dir / rundir.CHECKPOINT_DIR / f"{kind}.pt"
    meta = load_checkpoint(checkpoint, kind)["data"]
    c, h, w = meta["image_shape"]
    # Output only: the model takes raw uint8 images *or* float feature rows (told apart by dtype),
    # and a declared input schema would make MLflow reject one of the two before predict runs.
    # The input example shows the raw-image form.
    signature = ModelSignature(outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(meta["classes"])))]))
    example = np.zeros((2, h, w) if c == 1 else (2, c, h, w), dtype=np.uint8)
    artifacts = {"checkpoint": str(checkpoint), "config": str(run_dir / rundir.CONFIG_FILE),
                 "summary": str(run_dir / rundir.SUMMARY_FILE)}
    mlflow = require_mlflow()
    import torch
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    # What mlflow.pyfunc.log_model does, through this store's client instead of the process-wide
    # tracking URI: create the logged model, link it to the run, save the pyfunc locally, upload.
    client = client_for(store)
    run = client.get_run(run_id)
    model = client.create_logged_model(
        run.info.experiment_id, name="model", source_run_id=run_id,
        tags={"run_dir": str(run_dir.resolve()), "test/acc": str(summary.get("test/acc"))})
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=int(summary.get("epochs_run") or 0))])
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            path=str(local), python_model=str(MODEL_CODE), artifacts=artifacts,
            model_config={"checkpoint_kind": kind}, signature=signature, input_example=example,
            mlflow_model=Model(artifact_path=model.artifact_location, model_uuid=model.model_id, run_id=run_id,
                               model_id=model.model_id),
            # Given, not inferred: inference would load the model in a subprocess.
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
                              "numpy", "mlp-lab"])
        client.log_model_artifacts(model.model_id, str(local))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id, f"models:/{model.model_id}"


# -- exports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """What an export did with one run directory."""

    run_dir: Path
    run_id: str
    experiment: str
    created: bool  # False: the store already had all of it


def export_run(run_dir: str | Path, tags: Mapping[str, str] | None = None) -> Exported:
    """Copy an existing run directory to MLflow (its store from the run's `output.dir`, or
    ``$MLFLOW_TRACKING_URI``). Idempotent: a run already exported in full is left as it is;
    one exported in part (tracking failed mid-run, or the run was partial) is completed."""
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG_FILE).is_file():
        raise MLPLabError(f"{run_dir}: not a run directory (no {rundir.CONFIG_FILE})")
    config = load_config(run_dir / rundir.CONFIG_FILE)
    summary = rundir.read_json(run_dir / rundir.SUMMARY_FILE) if (run_dir / rundir.SUMMARY_FILE).exists() else None
    epochs = len(rundir.read_metrics(run_dir)) if (run_dir / rundir.METRICS_FILE).exists() else 0
    logger = MLflowLogger(config, run_dir, epochs, tags or _tags_from_record(run_dir, config), strict=True)
    with _errors(logger.store):
        client = client_for(logger.store)
        run = recorded_run(client, run_dir, logger.store)
        if run is not None and _complete(run, summary, epochs, _run_record(run_dir, logger.store)):
            return Exported(run_dir, run.info.run_id, logger.experiment_name, False)
    logger.log_config(config)
    if summary is not None:
        logger.log_summary(summary)
    logger.close()
    return Exported(run_dir, logger.run_id, logger.experiment_name, True)


def _tags_from_record(run_dir: Path, config: Config) -> dict[str, str]:
    """Study and arm of a study's run directory (<study>/<arm>/seed-<n>), read from its path."""
    if run_dir.name == f"seed-{config.seed}" and config.name == f"{run_dir.parent.parent.name}-{run_dir.parent.name}":
        return {"study": run_dir.parent.parent.name, "arm": run_dir.parent.name, "seed": str(config.seed)}
    return {}


def _complete(run: Any, summary: Mapping[str, Any] | None, epochs: int, record: Mapping[str, Any]) -> bool:
    if summary is None:
        return False  # a partial run: check its epochs again on each export
    finished = run.info.status == ("FINISHED" if summary.get("status") == "completed" else "FAILED")
    has_model = summary.get("status") != "completed" or bool(record.get("model_id"))
    return finished and has_model


def export_study(experiment: Any) -> list[Exported]:
    """Export every run directory of a study (one MLflow experiment named after it), then its report."""
    from mlp_lab.ablation import plan

    # Only runs of the study as it stands: a directory made with another config is not its run.
    exportable = (rundir.RunStatus.DONE, rundir.RunStatus.FAILED, rundir.RunStatus.PARTIAL)
    done = [export_run(spec.run_dir, spec.tags) for spec in plan(experiment) if spec.status() in exportable]
    log_study_report(experiment)
    return done


def log_study_report(experiment: Any) -> str | None:
    """Attach a study's report to its experiment: report.md as the experiment's description, and
    the report's files (markdown, CSV, JSON, plots) as artifacts of one run named `report`."""
    out = Path(experiment.output_dir)
    if not (out / "report.md").is_file():
        return None
    config = experiment.arms[0].config
    store = store_for(config.output.dir)
    with _errors(store):
        from mlflow.entities import RunTag

        client = client_for(store)
        exp_id = experiment_id(client, store, experiment.name)
        client.set_experiment_tag(exp_id, "mlflow.note.content", (out / "report.md").read_text(encoding="utf-8"))
        run = recorded_run(client, out, store)
        if run is None:
            run = client.create_run(exp_id, run_name="report", tags={"mlp_lab.kind": "report", "study": experiment.name})
            _save_run_record(out, store, run_id=run.info.run_id, experiment_id=exp_id)
        run_id = run.info.run_id
        for path in sorted(out.iterdir()):
            # not RUN_FILE, nor a hidden file (the runs index the app keeps)
            if path.is_file() and path.suffix in (".md", ".csv", ".json", ".png") and path.name != RUN_FILE \
                    and not path.name.startswith("."):
                client.log_artifact(run_id, str(path))
        client.log_batch(run_id, tags=[RunTag("report", str((out / "report.md").resolve()))])
        client.set_terminated(run_id, "FINISHED")
    return run_id


def track_experiment(experiment: Any) -> Any:
    """The experiment with `output.mlflow` on in every arm (the config hash is unchanged), its
    store and MLflow experiment created here, before any worker starts."""
    arms = [replace(arm, config=arm.config.model_copy(
        update={"output": arm.config.output.model_copy(update={"mlflow": True})})) for arm in experiment.arms]
    store = prepare_store(arms[0].config.output.dir)
    with _errors(store):
        experiment_id(client_for(store), store, experiment.name)
    return replace(experiment, arms=arms)


def track_search(search: Any) -> Any:
    """The search with tracking on: its store, MLflow experiment (named after the search) and
    parent run made here, before any worker starts; every trial then logs as a run nested under
    that parent. A continued search continues the same parent run (its id is kept in the
    search's directory)."""
    store = prepare_store(search.base_config.output.dir)
    search.output_dir.mkdir(parents=True, exist_ok=True)
    with _errors(store):
        from mlflow.entities import Param

        client = client_for(store)
        exp_id = experiment_id(client, store, search.name)
        run = recorded_run(client, search.output_dir, store)
        if run is None:
            run = client.create_run(exp_id, run_name="search", tags={
                "mlp_lab.kind": "search", "search": search.name, "search_file": str(Path(search.path).resolve())})
            _save_run_record(search.output_dir, store, run_id=run.info.run_id, experiment_id=exp_id)
            space = {f"space.{p.key}": p.describe() for p in search.params}
            setup = {"metric": search.metric, "direction": search.direction, "trials": search.trials,
                     "sampler": search.sampler, "pruner": search.pruner.name, "seed": search.seed}
            client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in {**setup, **space}.items()])
        elif run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
    return replace(search, trial_tags={PARENT_TAG: run.info.run_id})


def log_search_result(search: Any, report: Mapping[str, Any], finished: bool) -> None:
    """The search's outcome on its parent run: the best value and trial counts as metrics, the
    report files (search.md/.csv/.json, plots, best.yaml) as artifacts; FINISHED once the search
    reached its trials, KILLED when it stopped early (a rerun continues the same run)."""
    store = store_for(search.base_config.output.dir)
    with _errors(store):
        from mlflow.entities import Metric

        client = client_for(store)
        run = recorded_run(client, search.output_dir, store)
        if run is None:
            return
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        values = {f"trials/{state}": n for state, n in report.get("counts", {}).items()}
        values["epochs_run"] = report.get("epochs_run", 0)
        if report.get("best"):
            values[f"best/{search.metric}"] = report["best"]["value"]
            values["best/trial"] = report["best"]["trial"]
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])
        for path in sorted(search.output_dir.iterdir()):
            if path.is_file() and path.suffix in (".md", ".csv", ".json", ".png", ".yaml") \
                    and path.name != RUN_FILE and not path.name.startswith("."):
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED" if finished else "KILLED")


# -- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """A model version made (or found) for a run."""

    name: str
    version: str
    alias: str | None
    run_dir: Path
    test_acc: float | None


def best_seed_run(experiment: Any, arm: str) -> tuple[Path, dict[str, str]]:
    """A study arm's run with the best validation accuracy (validation, not test: choosing by
    the test set would make its accuracy an optimistic estimate)."""
    from mlp_lab.ablation import plan

    if arm not in [a.name for a in experiment.arms]:
        raise MLPLabError(f"{experiment.name}: no arm {arm!r}; arms: {', '.join(a.name for a in experiment.arms)}")
    candidates = []
    for spec in plan(experiment):
        if spec.arm == arm and spec.status() == rundir.RunStatus.DONE:  # finished, with this study's config
            candidates.append((rundir.read_json(spec.run_dir / rundir.SUMMARY_FILE)["best/val_acc"], spec))
    if not candidates:
        raise MLPLabError(f"{experiment.name}: arm {arm} has no completed run; run: mlp-lab compare {experiment.name}")
    spec = max(candidates, key=lambda c: c[0])[1]
    return spec.run_dir, dict(spec.tags)


def register(run_dir: str | Path, name: str, alias: str | None = None,
             tags: Mapping[str, str] | None = None) -> Registered:
    """Make `name`'s model version for a completed run (exporting the run first if needed; the
    same run registered again reuses its version) and point `alias` at it."""
    run_dir = Path(run_dir)
    summary_path = run_dir / rundir.SUMMARY_FILE
    if not summary_path.exists() or rundir.read_json(summary_path).get("status") != "completed":
        raise MLPLabError(f"{run_dir}: not a completed run; only finished runs can be registered")
    exported = export_run(run_dir, tags)
    store = store_for(load_config(run_dir / rundir.CONFIG_FILE).output.dir)
    record = _run_record(run_dir, store)
    with _errors(store):
        from mlflow.exceptions import MlflowException

        client = client_for(store)
        try:
            client.create_registered_model(name, description=f"mlp-lab models ({run_dir})")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        same_run = [v for v in client.search_model_versions(f"name = '{name}'") if v.run_id == exported.run_id]
        if same_run:
            version = same_run[0]
        else:
            if not record.get("model_id"):
                raise TrackingError(f"{run_dir}: its MLflow run in {store.uri} has no logged model; "
                                    f"export it again with: mlp-lab track {run_dir}")
            # The logged model's own location, not models:/<id>: MLflow's SQL registry resolves
            # that form through the process-wide tracking URI, which may be another store.
            source = client.get_logged_model(record["model_id"]).artifact_location
            version = client.create_model_version(name, source=source, run_id=exported.run_id,
                                                  model_id=record["model_id"])
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
        test_acc = client.get_run(exported.run_id).data.metrics.get("test/acc")
    return Registered(name, str(version.version), alias, run_dir, test_acc)


def list_models(output_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """Every registered model version: name, version, aliases, test accuracy, run directory."""
    store = store_for(output_dir)
    rows = []
    with _errors(store):
        client = client_for(store)
        for model in client.search_registered_models():
            aliases: dict[str, list[str]] = {}
            for alias, version in (model.aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            for version in sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: int(v.version)):
                run = client.get_run(version.run_id) if version.run_id else None
                rows.append({"name": model.name, "version": str(version.version),
                             "aliases": sorted(aliases.get(str(version.version), [])),
                             "test/acc": run.data.metrics.get("test/acc") if run else None,
                             "run_dir": run.data.tags.get("run_dir") if run else None})
    return rows


def is_model_uri(target: str | Path) -> bool:
    """True for ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION``."""
    return str(target).startswith("models:/")


def materialize(model_uri: str, output_dir: str | Path = "runs") -> Path:
    """A registered model as a run directory (``<output_dir>/registry/<name>/v<version>``:
    config.yaml, summary.json, checkpoints/<kind>.pt) that `checkpoint.load_model` reads with
    mlp-lab's own weights_only loader. Downloaded afresh each time."""
    name, alias, version = _parse_model_uri(model_uri)
    store = store_for(output_dir)
    with _errors(store):
        from mlflow.exceptions import MlflowException

        client = client_for(store)
        try:
            found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        except MlflowException:
            known = ", ".join(m.name for m in client.search_registered_models()) or "none"
            raise MLPLabError(f"{model_uri}: no such registered model version in {store.uri} (models: {known})") from None
        target = Path(output_dir) / REGISTRY_DIR / name / f"v{found.version}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            mlflow = require_mlflow()
            # The version's storage location, not models:/NAME/VERSION: MLflow resolves that form
            # through the process-wide registry, which may be another store.
            location = client.get_model_version_download_uri(name, found.version)
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp,
                                                             tracking_uri=store.uri))
            files = {p.name: p for p in (local / "artifacts").iterdir()}
            summary = rundir.read_json(files[rundir.SUMMARY_FILE])
            kind = summary.get("test_weights", "best")
            staged = Path(tmp) / "run"
            (staged / rundir.CHECKPOINT_DIR).mkdir(parents=True)
            shutil.copy(files[rundir.CONFIG_FILE], staged / rundir.CONFIG_FILE)
            shutil.copy(files[rundir.SUMMARY_FILE], staged / rundir.SUMMARY_FILE)
            shutil.copy(files[f"{kind}.pt"], staged / rundir.CHECKPOINT_DIR / f"{kind}.pt")
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    return target


def _parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in name:
            return name, alias, None
    elif rest.count("/") == 1:
        name, version = rest.split("/")
        if name and version.isdigit():
            return name, None, version
    raise MLPLabError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")


def ui_command(output_dir: str | Path = "runs", port: int = 5000) -> tuple[list[str], str]:
    """The command that serves the MLflow UI for the default store on 127.0.0.1, and its address."""
    require_mlflow("mlp-lab ui")
    if not store_for(output_dir).embedded:
        raise MLPLabError(f"tracking goes to MLFLOW_TRACKING_URI={os.environ['MLFLOW_TRACKING_URI']}: open its UI there")
    store = prepare_store(output_dir)
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", store.uri]
    if store.embedded:
        command += ["--artifacts-destination", str(store.artifact_root)]
    return command, f"http://127.0.0.1:{port}"
