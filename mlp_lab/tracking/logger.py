"""A run directory's MLflow run: `MLflowLogger` logs a run live (a `MetricLogger` peer of
TensorBoard), with its params, tags, per-epoch and summary metrics, files and model.

Each run directory keeps its MLflow run id in ``mlflow.json`` (one entry per store), so a
resumed run and a later export continue the same MLflow run. Tracking never costs a run: a
failing store turns the logger off with one warning line, and the run carries on.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.metrics import SUMMARY_METRICS, TIMED_EPOCH_METRICS
from mlp_lab.config.schema import Config
from mlp_lab.core.environ import env_defaults
from mlp_lab.core.errors import MLPLabError
from mlp_lab.runs import rundir
from mlp_lab.tracking.store import Store, client_for, errors, experiment_id, require_mlflow, store_for

if TYPE_CHECKING:
    from mlflow.entities import Metric, Run
    from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for a nested run (a search's trials)
RUN_FILE = "mlflow.json"  # in a run (or study) directory: its MLflow run per store
# The pyfunc's code, logged with each model (models-from-code); it stays at mlp_lab/mlflow_model.py.
MODEL_CODE = Path(__file__).resolve().parents[1] / "mlflow_model.py"
# The folder of a logged model's code that holds the user's own code (`stage_user_code`).
USER_CODE_DIR = "mlp_lab_user_code"
# A live run must not wait minutes on a dead server: MLflow's defaults are 7 retries, 120 s each.
LIVE_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def run_record(run_dir: Path, store: Store) -> dict[str, Any]:
    """What `run_dir` recorded of its MLflow run in `store` (run id, experiment, logged model);
    empty when nothing is recorded or the record is unreadable."""
    try:
        record = rundir.read_json(run_dir / RUN_FILE).get(store.uri, {})
    except (OSError, ValueError, AttributeError):
        return {}
    return record if isinstance(record, dict) else {}


def save_run_record(run_dir: Path, store: Store, **fields: Any) -> None:
    """Add `fields` to `run_dir`'s record of its MLflow run in `store` (other stores' kept)."""
    path = run_dir / RUN_FILE
    try:
        records = rundir.read_json(path)
    except (OSError, ValueError):
        records = {}
    if not isinstance(records, dict):
        records = {}  # a torn record is rewritten whole: it only caches what MLflow holds
    mine = records.get(store.uri)
    records[store.uri] = {**(mine if isinstance(mine, dict) else {}), **fields}
    rundir.write_json(path, records)


def recorded_run(client: MlflowClient, run_dir: Path, store: Store) -> Run | None:
    """The live MLflow run this run directory recorded for `store`, or None."""
    from mlflow.exceptions import MlflowException

    run_id = run_record(run_dir, store).get("run_id")
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None


def run_tags(config: Config, run_dir: Path, tags: Mapping[str, str]) -> dict[str, str]:
    """The tags that say what a run is and where it lives."""
    out = {
        "config_hash": config_hash(config),
        "run_dir": str(run_dir.resolve()),
        "dataset": config.data.name,
        "seed": str(config.seed),
        "mlp_lab.kind": "run",
    }
    out.update({k: str(v) for k, v in tags.items() if k in ("study", "arm", "search", "trial", PARENT_TAG)})
    return out


def run_params(config: Config) -> dict[str, str]:
    """The flattened resolved config, less `output.*` (where the run went, not what it trained): the
    TensorBoard HParams' keys, so a user model's params name its target by label with its args."""
    from mlp_lab.training.loggers import hparams_of  # here: that module imports torch, `mlp-lab --help` need not

    return {k: str(v) for k, v in hparams_of(config).items()}


def _metrics(values: Mapping[str, Any], step: int) -> list[Metric]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(k, float(v), now, step)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]


class MLflowLogger:
    """Logs one run to MLflow as it trains: params, per-epoch metrics (step = epoch), summary
    metrics, tags, the run's files as artifacts and its model. A resumed run continues the same
    MLflow run. With `strict` (exports) errors raise; otherwise (live runs) the first error
    prints one warning line and turns the logger off, and training carries on."""

    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        start_epoch: int = 0,
        tags: Mapping[str, str] | None = None,
        *,
        strict: bool = False,
        warn: Callable[[str], None] | None = None,
    ):
        self.config, self.run_dir, self.start_epoch = config, Path(run_dir), start_epoch
        self.tags = dict(tags or {})
        self.store = store_for(config.output.dir)
        self.strict = strict
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self.client: MlflowClient | None = None
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
            with env_defaults({} if self.strict else LIVE_HTTP), errors(self.store):
                action()
        except MLPLabError as exc:  # a TrackingError, or mlflow missing when a library caller asked for it
            if self.strict:
                raise
            self.failed = True
            self.warn(
                f"warning: MLflow tracking stopped for {self.run_dir} ({exc}); training continues; "
                f"export it later with: mlp-lab track {self.run_dir}"
            )

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
            save_run_record(self.run_dir, self.store, run_id=self.run_id, experiment_id=exp_id)
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
                metrics += _metrics({k: row[k] for k in TIMED_EPOCH_METRICS if k in row}, row["epoch"])
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        self._guard(
            lambda: self.client.log_batch(
                self.run_id, metrics=_metrics({k: record[k] for k in TIMED_EPOCH_METRICS if k in record}, epoch)
            )
        )

    def log_summary(self, summary: dict[str, Any]) -> None:
        self._guard(lambda: self._finish(summary))

    def _finish(self, summary: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        step = int(summary.get("epochs_run") or 0)
        self.client.log_batch(
            self.run_id,
            metrics=_metrics({k: summary[k] for k in SUMMARY_METRICS if k in summary}, step),
            tags=[RunTag("status", str(summary.get("status")))],
        )
        for name in (rundir.CONFIG_FILE, rundir.METRICS_FILE, rundir.SUMMARY_FILE, "curves.png"):
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        for png in sorted((self.run_dir / "eval").glob("*.png")):
            self.client.log_artifact(self.run_id, str(png), "eval")
        if summary.get("status") == "completed" and not run_record(self.run_dir, self.store).get("model_id"):
            model_id, model_uri = log_model(self.store, self.run_id, self.run_dir, summary)
            save_run_record(self.run_dir, self.store, model_id=model_id, model_uri=model_uri)
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

    from mlp_lab.training.checkpoint import load_checkpoint

    kind = summary.get("test_weights", "best")
    checkpoint = run_dir / rundir.CHECKPOINT_DIR / f"{kind}.pt"
    saved = load_checkpoint(checkpoint, kind)
    meta = saved["data"]
    c, h, w = meta["image_shape"]
    # Output only: the model takes raw uint8 images *or* float feature rows (told apart by dtype),
    # and a declared input schema would make MLflow reject one of the two before predict runs.
    # The input example shows the raw-image form.
    signature = ModelSignature(outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(meta["classes"])))]))
    if meta.get("features"):  # a table: rows of raw feature values
        example = np.zeros((2, len(meta["features"])), dtype=np.float64)
    else:
        example = np.zeros((2, h, w) if c == 1 else (2, c, h, w), dtype=np.uint8)
    artifacts = {
        "checkpoint": str(checkpoint),
        "config": str(run_dir / rundir.CONFIG_FILE),
        "summary": str(run_dir / rundir.SUMMARY_FILE),
    }
    mlflow = require_mlflow()
    import torch
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    # What mlflow.pyfunc.log_model does, through this store's client instead of the process-wide
    # tracking URI: create the logged model, link it to the run, save the pyfunc locally, upload.
    client = client_for(store)
    run = client.get_run(run_id)
    model = client.create_logged_model(
        run.info.experiment_id,
        name="model",
        source_run_id=run_id,
        tags={"run_dir": str(run_dir.resolve()), "test/acc": str(summary.get("test/acc"))},
    )
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=int(summary.get("epochs_run") or 0))])
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model"
        code = stage_user_code(saved["config"], Path(tmp) / "staged")
        mlflow.pyfunc.save_model(
            path=str(local),
            python_model=str(MODEL_CODE),
            # The user's own code travels with the model (MLflow puts it on sys.path at load).
            code_paths=[str(code)] if code is not None else None,
            artifacts=artifacts,
            model_config={"checkpoint_kind": kind},
            signature=signature,
            input_example=example,
            mlflow_model=Model(
                artifact_path=model.artifact_location, model_uuid=model.model_id, run_id=run_id, model_id=model.model_id
            ),
            # Given, not inferred: inference would load the model in a subprocess.
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
                "numpy",
                "mlp-lab",
            ],
        )
        client.log_model_artifacts(model.model_id, str(local))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id, f"models:/{model.model_id}"


def stage_user_code(raw_config: Mapping[str, Any], folder: Path) -> Path | None:
    """Copy the user code a run imports (its model's file, its python data source's) into
    `folder`/USER_CODE_DIR/<sha256>/<name>, for `code_paths`; None when it has none. One folder
    per content hash, as a Ray worker's cache: two files of one name never collide, and the
    pyfunc's loader (`mlflow_model`) finds each by its recorded name and hash. A module target
    (package.module:NAME) is not copied: it must be installed where the model loads."""
    from mlp_lab.config.targets import recorded_code
    from mlp_lab.core.usercode import code_bytes

    staged = None
    for key, target, sha256 in recorded_code(raw_config):
        if target.file is None:
            continue
        staged = folder / USER_CODE_DIR
        path = staged / sha256 / target.file.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(code_bytes(target.file, sha256, key))
    return staged


def mlflow_logger(config: Config, run_dir: Path, start_epoch: int, tags: Mapping[str, str]) -> MLflowLogger | None:
    """The `LoggerFactory` of MLflow, which the service layer hands every run it starts: a live
    logger when the run's config asks for it (`output.mlflow`), else None (mlflow not imported)."""
    return MLflowLogger(config, run_dir, start_epoch, tags) if config.output.mlflow else None
