"""What is available to run, and how far each thing has got: the data behind `mlp-lab list`.

What is available is the user's folder and then the shipped files it does not shadow: the same
names `run` and `compare` resolve (`shipped.resolve`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.load import load_config
from mlp_lab.core.errors import ConfigError
from mlp_lab.core.shipped import FOLDERS, shipped_files
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.studies.ablation import load_study, study_runs


def _entries(
    directory: str | Path, folder: str, describe: Callable[[Path], tuple[RunStatus, str]]
) -> list[dict[str, Any]]:
    """One entry per YAML file of `directory`, then per shipped file of `folder` of another name:
    (state, detail) from `describe`, or 'invalid' with its first error; `path` is the file read
    and `shipped` says whether it is the package's copy."""
    own = sorted(Path(directory).glob("*.yaml"))
    names = {path.stem for path in own}
    entries = []
    for path in own + [p for p in shipped_files(folder) if p.stem not in names]:
        try:
            state, detail = describe(path)
        except ConfigError as exc:
            state, detail = "invalid", exc.errors[0]
        shipped = path not in own
        entries.append(
            {"name": path.stem, "state": str(state), "detail": detail, "path": str(path), "shipped": shipped}
        )
    return entries


def _user_model(cfg: Any) -> str:
    """A user model's label and code hash, as a listing names it (`my_mlp.py:ParameterizedMLP
    (sha256 3e2a3d357451), `); empty for a built-in model."""
    if cfg.model.kind != "user":
        return ""
    return f"{cfg.model.parsed.label} (sha256 {(cfg.model.code_sha256 or '')[:12]}), "


def _describe_config(path: Path) -> tuple[RunStatus, str]:
    cfg = load_config(path)
    run_dir = Path(cfg.output.dir) / cfg.name
    state = rundir.run_status(run_dir, config_hash(cfg))
    detail = f"{cfg.data.name}, {_user_model(cfg)}{run_dir}"
    if state == RunStatus.STALE:
        detail += " (made with another version of this config)"
    if state == RunStatus.DONE:
        detail += f", test/acc {rundir.read_summary(run_dir)['test/acc']:.4f}"
    return state, detail


def _describe_study(path: Path) -> tuple[RunStatus, str]:
    study = load_study(path)
    runs = study_runs(study)  # as its report sees them: a run made with compare's --set counts
    statuses = [run.status for run in runs]
    finished = sum(s in (RunStatus.DONE, RunStatus.FAILED) for s in statuses)
    started = finished + statuses.count(RunStatus.PARTIAL)
    state = RunStatus.DONE if finished == len(statuses) else RunStatus.PARTIAL if started else RunStatus.NEW
    detail = (
        f"{finished}/{len(statuses)} runs done, {len(study.arms)} arms x {len(study.seeds)} seeds, "
        f"{study.arms[0].config.data.name}"
    )
    models = list(dict.fromkeys(_user_model(arm.config) for arm in study.arms if arm.config.model.kind == "user"))
    if models:
        detail += ", " + ", ".join(m.rstrip(", ") for m in models)
    if RunStatus.FAILED in statuses:
        detail += f", {statuses.count(RunStatus.FAILED)} failed"
    other = sorted({d for run in runs for d in run.differs})
    if other:
        detail += f", {sum(bool(run.differs) for run in runs)} made with {', '.join(other[:3])}"
    return state, detail


def list_configs(configs_dir: str | Path) -> list[dict[str, Any]]:
    """Each config in `configs_dir` (then the shipped ones) with the state of its run directory
    <output.dir>/<name>."""
    return _entries(configs_dir, FOLDERS["config"], _describe_config)


def list_studies(studies_dir: str | Path) -> list[dict[str, Any]]:
    """Each study in `studies_dir` (then the shipped ones) with how many of its arm x seed runs
    are done: done / partial / new."""
    return _entries(studies_dir, FOLDERS["study"], _describe_study)
