"""Runs as separate processes: the Train page starts, stops, resumes and watches them.

The app starts ``python -m mlp_lab run CONFIG --run-dir DIR``, the CLI's own start-run path, in a
session of its own, so a browser refresh or a closed tab does not touch it; what it launched is
recorded beside the runs (`launched`). The run directory is the source of truth for progress
(``run_progress``): the run lock says whether it is alive (`runs.running_pid`), ``metrics.csv``
how far it got, ``summary.json`` how it ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlp_lab.app.launched import sidecar
from mlp_lab.app.runs import RunInfo, describe_run, read_history, running_pid
from mlp_lab.config.schema import Config, config_to_yaml
from mlp_lab.core.errors import ConfigError, MLPLabError
from mlp_lab.core.yamlfile import read_yaml_mapping
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus


def _spawn(command: list[str], run_dir: Path, action: str) -> int:
    """Start `command` in its own session (a browser refresh, or the app's own Ctrl-C, does not
    reach it), output appended to the run's log beside the runs; record its pid there."""
    log_path = sidecar(run_dir, ".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    rundir.write_json(
        sidecar(run_dir, ".json"), {"pid": process.pid, "action": action, "command": command, "started": time.time()}
    )
    return process.pid


def _common_args(data_dirs: Sequence[str], threads: int | None) -> list[str]:
    args = [arg for d in data_dirs for arg in ("--data-dir", str(d))]
    return args + (["--threads", str(threads)] if threads else [])


def launch_run(config: Config, data_dirs: Sequence[str] = (), threads: int | None = None) -> Path:
    """Start training `config` in a separate process and return its run directory at once.

    The directory (``<output.dir>/<name>``, else ``<name>-2``, ...) is made here, so the caller
    knows it before the process starts; the process is ``python -m mlp_lab run CONFIG --run-dir DIR``,
    i.e. `service.runs.start_or_resume` behind the CLI's signal handling (SIGINT saves last.pt).
    """
    run_dir, _ = rundir.fresh_run_dir(config.output.dir, config.name)
    config_path = sidecar(run_dir, ".yaml")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(config_path, config_to_yaml(config))
    command = [
        sys.executable,
        "-m",
        "mlp_lab",
        "run",
        str(config_path),
        "--run-dir",
        str(run_dir),
        *_common_args(data_dirs, threads),
    ]
    _spawn(command, run_dir, "start")
    return run_dir


def resume_in_background(run_dir: str | Path, data_dirs: Sequence[str] = (), threads: int | None = None) -> int:
    """Continue a stopped run from its last.pt in a separate process; returns its pid."""
    run_dir = Path(run_dir)
    if running_pid(run_dir):
        raise MLPLabError(f"{run_dir}: is still running")
    if not (run_dir / rundir.LAST_CHECKPOINT).exists():
        raise MLPLabError(f"{run_dir}: nothing to resume (no {rundir.LAST_CHECKPOINT})")
    command = [sys.executable, "-m", "mlp_lab", "run", "--resume", str(run_dir), *_common_args(data_dirs, threads)]
    return _spawn(command, run_dir, "resume")


def stop_run(run_dir: str | Path) -> int:
    """Ask the process training into `run_dir` to stop: SIGINT, as Ctrl-C, so it finishes the
    batch, writes last.pt and exits; returns its pid."""
    pid = running_pid(run_dir)
    if pid is None:
        raise MLPLabError(f"{run_dir}: not running")
    os.kill(pid, signal.SIGINT)
    return pid


def wait_until_stopped(run_dir: str | Path, timeout: float = 60.0) -> bool:
    """Poll until no process trains into `run_dir`; True if it stopped within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while running_pid(run_dir) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@dataclass
class Progress:
    """How far a run has got, from its directory alone."""

    run: RunInfo
    history: list[dict[str, float]]
    log_tail: str
    error: str | None
    epochs_planned: int | None = None  # from the config the app launched it with, before the run writes its own

    @property
    def running(self) -> bool:
        return self.run.status == "running"

    @property
    def resumable(self) -> bool:
        return not self.running and self.run.status == RunStatus.PARTIAL.value

    @property
    def finished(self) -> bool:
        return self.run.status in (RunStatus.DONE.value, RunStatus.FAILED.value)


def run_progress(run_dir: str | Path, runs_dir: str | Path | None = None) -> Progress:
    """Status, epoch m/n, per-epoch metrics and the log's last lines of a run the app launched."""
    run_dir = Path(run_dir)
    info = describe_run(run_dir, runs_dir)
    history = read_history(run_dir)
    try:
        log_tail = "\n".join(sidecar(run_dir, ".log").read_text(errors="replace").splitlines()[-8:])
    except OSError:
        log_tail = ""
    error = None
    if not info.pid and info.status not in (RunStatus.DONE.value, RunStatus.PARTIAL.value):
        errors = [line.removeprefix("error: ") for line in log_tail.splitlines() if line.startswith("error: ")]
        if errors:
            error = "; ".join(errors)
        elif info.status == RunStatus.FAILED.value:
            try:
                error = rundir.read_summary(run_dir).get("error")
            except (OSError, ValueError):
                pass
    planned = info.epochs_planned
    if planned is None:
        try:
            planned = read_yaml_mapping(sidecar(run_dir, ".yaml")).get("train", {}).get("epochs")
        except (ConfigError, AttributeError):
            planned = None
    return Progress(info, history, log_tail, error, planned if isinstance(planned, int) else None)
