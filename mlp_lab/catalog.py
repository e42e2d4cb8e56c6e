"""What is available to run, and how far each thing has got: the data behind `mlp-lab list`."""

from __future__ import annotations

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


def list_configs(configs_dir: str | Path) -> list[dict[str, Any]]:
    """Each config in `configs_dir` with the state of its run directory <output.dir>/<name>."""
    entries = []
    for path in sorted(Path(configs_dir).glob("*.yaml")):
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            entries.append({"name": path.stem, "state": "invalid", "detail": exc.errors[0]})
            continue
        run_dir = Path(cfg.output.dir) / cfg.name
        state = _single_run_state(run_dir)
        detail = f"{cfg.data.dataset}, {run_dir}"
        if state == "done":
            detail += f", test/acc {rundir.read_json(run_dir / rundir.SUMMARY_FILE)['test/acc']:.4f}"
        entries.append({"name": path.stem, "state": state, "detail": detail})
    return entries


def list_experiments(experiments_dir: str | Path) -> list[dict[str, Any]]:
    """Each experiment with how many of its arm x seed runs are done: done / partial / not started."""
    entries = []
    for path in sorted(Path(experiments_dir).glob("*.yaml")):
        try:
            experiment = load_experiment(path)
        except ConfigError as exc:
            entries.append({"name": path.stem, "state": "invalid", "detail": exc.errors[0]})
            continue
        statuses = [run_status(spec) for spec in plan(experiment)]
        finished = sum(s in ("done", "failed") for s in statuses)
        started = finished + sum(s == "partial" for s in statuses)
        state = "done" if finished == len(statuses) else "partial" if started else "not started"
        detail = (f"{finished}/{len(statuses)} runs done, {len(experiment.arms)} arms x {len(experiment.seeds)} seeds, "
                  f"{experiment.arms[0].config.data.dataset}")
        if "failed" in statuses:
            detail += f", {statuses.count('failed')} failed"
        entries.append({"name": path.stem, "state": state, "detail": detail})
    return entries
