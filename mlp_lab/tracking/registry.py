"""The model registry: `register` makes a registered model version for a finished run (or a
study arm's best seed, `best_seed_run`) and sets an alias; `list_models` lists them;
`materialize` turns ``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``) back into a run
directory that `checkpoint.load_model` reads."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlp_lab.config.load import load_config
from mlp_lab.core.errors import MLPLabError
from mlp_lab.core.usercode import add_code_dir
from mlp_lab.runs import rundir
from mlp_lab.studies.ablation import Study, study_runs
from mlp_lab.tracking.export import export_run
from mlp_lab.tracking.logger import USER_CODE_DIR, run_record
from mlp_lab.tracking.store import TrackingError, client_for, errors, require_mlflow, store_for

REGISTRY_DIR = "registry"  # <output.dir>/registry/<name>/v<version>: registered models as run directories


@dataclass(frozen=True)
class Registered:
    """A model version made (or found) for a run."""

    name: str
    version: str
    alias: str | None
    run_dir: Path
    test_acc: float | None


def best_seed_run(study: Study, arm: str) -> tuple[Path, dict[str, str]]:
    """A study arm's run with the best validation accuracy (validation, not test: choosing by
    the test set would make its accuracy an optimistic estimate)."""
    if arm not in [a.name for a in study.arms]:
        raise MLPLabError(f"{study.name}: no arm {arm!r}; arms: {', '.join(a.name for a in study.arms)}")
    candidates = []
    for run in study_runs(study):  # the runs its report shows
        if run.spec.arm == arm and run.status == rundir.RunStatus.DONE:
            candidates.append((rundir.read_summary(run.spec.run_dir)["best/val_acc"], run.spec))
    if not candidates:
        raise MLPLabError(f"{study.name}: arm {arm} has no completed run; run: mlp-lab compare {study.name}")
    spec = max(candidates, key=lambda c: c[0])[1]
    return spec.run_dir, dict(spec.tags)


def register(
    run_dir: str | Path, name: str, alias: str | None = None, tags: Mapping[str, str] | None = None
) -> Registered:
    """Make `name`'s model version for a completed run (exporting the run first if needed; the
    same run registered again reuses its version) and point `alias` at it."""
    run_dir = Path(run_dir)
    summary_path = run_dir / rundir.SUMMARY_FILE
    if not summary_path.exists() or rundir.read_summary(run_dir).get("status") != "completed":
        raise MLPLabError(f"{run_dir}: not a completed run; only finished runs can be registered")
    exported = export_run(run_dir, tags)
    store = store_for(load_config(run_dir / rundir.CONFIG_FILE).output.dir)
    record = run_record(run_dir, store)
    with errors(store):
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
                raise TrackingError(
                    f"{run_dir}: its MLflow run in {store.uri} has no logged model; "
                    f"export it again with: mlp-lab track {run_dir}"
                )
            # The logged model's own location, not models:/<id>: MLflow's SQL registry resolves
            # that form through the process-wide tracking URI, which may be another store.
            source = client.get_logged_model(record["model_id"]).artifact_location
            version = client.create_model_version(
                name, source=source, run_id=exported.run_id, model_id=record["model_id"]
            )
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
        test_acc = client.get_run(exported.run_id).data.metrics.get("test/acc")
    return Registered(name, str(version.version), alias, run_dir, test_acc)


def list_models(output_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """Every registered model version: name, version, aliases, test accuracy, dataset, run directory."""
    store = store_for(output_dir)
    rows = []
    with errors(store):
        client = client_for(store)
        for model in client.search_registered_models():
            aliases: dict[str, list[str]] = {}
            for alias, version in (model.aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            for version in sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: int(v.version)):
                run = client.get_run(version.run_id) if version.run_id else None
                rows.append(
                    {
                        "name": model.name,
                        "version": str(version.version),
                        "aliases": sorted(aliases.get(str(version.version), [])),
                        "test/acc": run.data.metrics.get("test/acc") if run else None,
                        "dataset": run.data.tags.get("dataset") if run else None,
                        "run_dir": run.data.tags.get("run_dir") if run else None,
                    }
                )
    return rows


def is_model_uri(target: str | Path) -> bool:
    """True for ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION``."""
    return str(target).startswith("models:/")


def materialize(model_uri: str, output_dir: str | Path = "runs") -> Path:
    """A registered model as a run directory (``<output_dir>/registry/<name>/v<version>``:
    config.yaml, summary.json, checkpoints/<kind>.pt, and the user's code a user model was
    logged with, which this process then searches) that `checkpoint.load_model` reads with
    mlp-lab's own weights_only loader. Downloaded afresh each time."""
    name, alias, version = parse_model_uri(model_uri)
    store = store_for(output_dir)
    with errors(store):
        from mlflow.exceptions import MlflowException

        client = client_for(store)
        try:
            found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        except MlflowException:
            known = ", ".join(m.name for m in client.search_registered_models()) or "none"
            raise MLPLabError(
                f"{model_uri}: no such registered model version in {store.uri} (models: {known})"
            ) from None
        target = Path(output_dir) / REGISTRY_DIR / name / f"v{found.version}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            mlflow = require_mlflow()
            # The version's storage location, not models:/NAME/VERSION: MLflow resolves that form
            # through the process-wide registry, which may be another store.
            location = client.get_model_version_download_uri(name, found.version)
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=store.uri)
            )
            files = {p.name: p for p in (local / "artifacts").iterdir()}
            summary = rundir.read_summary(local / "artifacts")
            kind = summary.get("test_weights", "best")
            staged = Path(tmp) / "run"
            (staged / rundir.CHECKPOINT_DIR).mkdir(parents=True)
            shutil.copy(files[rundir.CONFIG_FILE], staged / rundir.CONFIG_FILE)
            shutil.copy(files[rundir.SUMMARY_FILE], staged / rundir.SUMMARY_FILE)
            shutil.copy(files[f"{kind}.pt"], staged / rundir.CHECKPOINT_DIR / f"{kind}.pt")
            code = local / "code" / USER_CODE_DIR  # a user model's code, logged with it
            if code.is_dir():
                shutil.copytree(code, staged / USER_CODE_DIR)
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    if (target / USER_CODE_DIR).is_dir():
        # Where the user's file is not (another machine, a deleted project), its logged copy is
        # imported, after the same content-hash check.
        add_code_dir(target / USER_CODE_DIR)
    return target


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` -> (NAME, ALIAS, None); ``models:/NAME/VERSION`` -> (NAME, None, VERSION)."""
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
