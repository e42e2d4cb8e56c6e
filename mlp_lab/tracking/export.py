"""Copying runs to MLflow after the fact: `export_run` for one run directory (finished or
partial; idempotent), `export_study` for every run of a study, and `log_study_report` for the
study's report on its MLflow experiment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlp_lab.config.load import load_config
from mlp_lab.config.schema import Config
from mlp_lab.runs import rundir
from mlp_lab.studies.ablation import Study, study_runs
from mlp_lab.tracking.logger import RUN_FILE, MLflowLogger, recorded_run, run_record, save_run_record
from mlp_lab.tracking.store import client_for, errors, experiment_id, store_for

if TYPE_CHECKING:
    from mlflow.entities import Run


@dataclass(frozen=True)
class Exported:
    """What an export did with one run directory."""

    run_dir: Path
    run_id: str
    experiment: str  # the MLflow experiment (named after the study)
    created: bool  # False: the store already had all of it

    def describe(self) -> str:
        """One line saying where the run went."""
        return (
            f"{self.run_dir} -> experiment {self.experiment}, run {self.run_id} "
            f"({'exported' if self.created else 'already there'})"
        )


def export_run(run_dir: str | Path, tags: Mapping[str, str] | None = None) -> Exported:
    """Copy an existing run directory to MLflow (its store from the run's `output.dir`, or
    ``$MLFLOW_TRACKING_URI``). Idempotent: a run already exported in full is left as it is;
    one exported in part (tracking failed mid-run, or the run was partial) is completed."""
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG_FILE).is_file():
        raise rundir.not_a_run_directory(run_dir)
    config = load_config(run_dir / rundir.CONFIG_FILE)
    summary = rundir.read_summary(run_dir) if (run_dir / rundir.SUMMARY_FILE).exists() else None
    epochs = len(rundir.read_metrics(run_dir)) if (run_dir / rundir.METRICS_FILE).exists() else 0
    logger = MLflowLogger(config, run_dir, epochs, tags or _tags_from_record(run_dir, config), strict=True)
    with errors(logger.store):
        client = client_for(logger.store)
        run = recorded_run(client, run_dir, logger.store)
        if run is not None and _complete(run, summary, epochs, run_record(run_dir, logger.store)):
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


def _complete(run: Run, summary: Mapping[str, Any] | None, epochs: int, record: Mapping[str, Any]) -> bool:
    if summary is None:
        return False  # a partial run: check its epochs again on each export
    finished = run.info.status == ("FINISHED" if summary.get("status") == "completed" else "FAILED")
    has_model = summary.get("status") != "completed" or bool(record.get("model_id"))
    return finished and has_model


def export_study(study: Study) -> list[Exported]:
    """Export every run directory of a study (one MLflow experiment named after it), then its report."""
    # The runs its report shows (a run made with compare's --set among them), and partial ones.
    exportable = (rundir.RunStatus.DONE, rundir.RunStatus.FAILED, rundir.RunStatus.PARTIAL)
    done = [export_run(run.spec.run_dir, run.spec.tags) for run in study_runs(study) if run.status in exportable]
    log_study_report(study)
    return done


def log_study_report(study: Study) -> str | None:
    """Attach a study's report to its experiment: report.md as the experiment's description, and
    the report's files (markdown, CSV, JSON, plots) as artifacts of one run named `report`."""
    out = Path(study.output_dir)
    if not (out / "report.md").is_file():
        return None
    config = study.arms[0].config
    store = store_for(config.output.dir)
    with errors(store):
        from mlflow.entities import RunTag

        client = client_for(store)
        exp_id = experiment_id(client, store, study.name)
        client.set_experiment_tag(exp_id, "mlflow.note.content", (out / "report.md").read_text(encoding="utf-8"))
        run = recorded_run(client, out, store)
        if run is None:
            run = client.create_run(exp_id, run_name="report", tags={"mlp_lab.kind": "report", "study": study.name})
            save_run_record(out, store, run_id=run.info.run_id, experiment_id=exp_id)
        run_id = run.info.run_id
        for path in sorted(out.iterdir()):
            # not RUN_FILE, nor a hidden file (the runs index the app keeps)
            if (
                path.is_file()
                and path.suffix in (".md", ".csv", ".json", ".png")
                and path.name != RUN_FILE
                and not path.name.startswith(".")
            ):
                client.log_artifact(run_id, str(path))
        client.log_batch(run_id, tags=[RunTag("report", str((out / "report.md").resolve()))])
        client.set_terminated(run_id, "FINISHED")
    return run_id
