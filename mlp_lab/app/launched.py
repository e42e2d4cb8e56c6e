"""What the app launched, recorded beside the runs: per run its config, log and child's pid.

The records live in ``<runs>/.app/``, not in the run directories: a run directory must be empty
when its run starts, and `list`, the reports and the runs index must not see app bookkeeping as
a run. The app is the parent of what it launched, so it also knows, exactly, whether that child
is still alive (``live_child``).
"""

from __future__ import annotations

import os
from pathlib import Path

from mlp_lab.runs import rundir

APP_DIR = ".app"


def sidecar(run_dir: Path, suffix: str) -> Path:
    """The app's record of `run_dir` with this suffix: .yaml (the config), .log, .json (the launch)."""
    return run_dir.parent / APP_DIR / f"{run_dir.name}{suffix}"


def live_child(run_dir: Path) -> int | None:
    """The pid of the process this app launched into `run_dir`, while it runs; else None.

    Asked of the kernel with waitpid, which also reaps a child that ended (no zombie is left). A
    process that is not this app's child (launched before the app restarted) is not answered for
    here: the run lock tells whether it trains (`runs.running_pid`).
    """
    try:
        pid = int(rundir.read_json(sidecar(run_dir, ".json")).get("pid", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if pid <= 0:  # waitpid(0) or (-1) would reap whatever child of the app ended first
        return None
    try:
        ended, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child, or already reaped: it is not running as ours
        return None
    return None if ended else pid


def launched_runs(runs_dir: str | Path) -> list[Path]:
    """Run directories the app launched, newest first: what the Train page re-finds after a refresh."""
    side = Path(runs_dir) / APP_DIR
    records = []
    for path in side.glob("*.json"):
        try:
            started = float(rundir.read_json(path).get("started", 0))
        except (OSError, ValueError, TypeError):
            continue
        records.append((started, Path(runs_dir) / path.stem))
    return [run_dir for _, run_dir in sorted(records, key=lambda r: r[0], reverse=True)]
