"""What is available to run, and how far each thing has got: the data behind `mlp-lab list`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlp_lab import rundir
from mlp_lab.ablation import load_experiment, plan, run_status
from mlp_lab.config import ConfigError, load_config


def _single_run_state(run_dir: Path) -> str:
    if (run_dir / rundir.SUMMARY_FILE).exists():
        status = rundir.read_json(run_dir / rundir.SUMMARY_FILE).get("status")
        return "done" if status == "completed" else "failed"
    return "partial" if (run_dir / rundir.LAST_CHECKPOINT).exists() else "not started"


def _entries(directory: str | Path, describe: Callable[[Path], tuple[str, str]]) -> list[dict[str, Any]]:
    """One entry per YAML file: (state, detail) from `describe`, or 'invalid' with its first error."""
    entries = []
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            state, detail = describe(path)
        except ConfigError as exc:
            state, detail = "invalid", exc.errors[0]
        entries.append({"name": path.stem, "state": state, "detail": detail})
    return entries


def _describe_config(path: Path) -> tuple[str, str]:
    cfg = load_config(path)
    run_dir = Path(cfg.output.dir) / cfg.name
    state = _single_run_state(run_dir)
    detail = f"{cfg.data.dataset}, {run_dir}"
    if state == "done":
        detail += f", test/acc {rundir.read_json(run_dir / rundir.SUMMARY_FILE)['test/acc']:.4f}"
    return state, detail


def _describe_experiment(path: Path) -> tuple[str, str]:
    experiment = load_experiment(path)
    statuses = [run_status(spec) for spec in plan(experiment)]
    finished = sum(s in ("done", "failed") for s in statuses)
    started = finished + sum(s == "partial" for s in statuses)
    state = "done" if finished == len(statuses) else "partial" if started else "not started"
    detail = (f"{finished}/{len(statuses)} runs done, {len(experiment.arms)} arms x {len(experiment.seeds)} seeds, "
              f"{experiment.arms[0].config.data.dataset}")
    if "failed" in statuses:
        detail += f", {statuses.count('failed')} failed"
    return state, detail


def list_configs(configs_dir: str | Path) -> list[dict[str, Any]]:
    """Each config in `configs_dir` with the state of its run directory <output.dir>/<name>."""
    return _entries(configs_dir, _describe_config)


def list_experiments(experiments_dir: str | Path) -> list[dict[str, Any]]:
    """Each experiment with how many of its arm x seed runs are done: done / partial / not started."""
    return _entries(experiments_dir, _describe_experiment)
