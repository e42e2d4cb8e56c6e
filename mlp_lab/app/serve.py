"""The command behind `mlp-lab app`: ``streamlit run mlp_lab/app/main.py`` with the app's settings.

Settings travel to the Streamlit script in the environment (``MLP_LAB_APP_*``): Streamlit owns the
script's argv, and the variables also reach `streamlit.testing`'s AppTest through monkeypatch.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mlp_lab.app.drawing import MAX_UPLOAD_BYTES
from mlp_lab.core.errors import MLPLabError, install_extra

EXTRA = install_extra("app")
MAIN = Path(__file__).with_name("main.py")
RUNS_ENV = "MLP_LAB_APP_RUNS"
MLFLOW_ENV = "MLP_LAB_APP_MLFLOW"  # the MLflow UI's address, when `mlp-lab app --mlflow` started one
DATA_DIRS_ENV = "MLP_LAB_APP_DATA_DIRS"  # --data-dir values, os.pathsep-separated, for runs started here
ADDRESS_ENV = "MLP_LAB_APP_ADDRESS"  # where `mlp-lab app` serves the app: the one origin that may frame the MLflow UI
THREADS_ENV = "MLP_LAB_APP_THREADS"  # --threads: torch threads of each run started here


def default_threads() -> int:
    """Half the cores the app may use, at least one: a run started from the Train page leaves the
    other half to the app (a drawing's answer) and to whatever else the machine runs."""
    # As runtime.available_cores (the affinity mask), without importing torch into the CLI.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


def app_threads(environ: dict[str, str] | None = None) -> int:
    """The torch threads of each run the Train page starts: `mlp-lab app --threads`, else `default_threads`."""
    value = (os.environ if environ is None else environ).get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else default_threads()


def require_app_extra() -> None:
    """Fail with one line naming the extra when streamlit is missing.

    Found by spec, not imported: importing it costs seconds.
    """
    missing = [name for name in ("streamlit",) if importlib.util.find_spec(name) is None]
    if missing:
        raise MLPLabError(f"mlp-lab app needs the [app] extra ({', '.join(missing)} missing): {EXTRA}")


def app_address(host: str = "127.0.0.1", port: int = 8501) -> str:
    """The app's address, and the origin its pages have in a browser that opens it there."""
    return f"http://{host}:{port}"


def app_command(
    host: str = "127.0.0.1",
    port: int = 8501,
    runs: str | Path = "runs",
    data_dirs: Sequence[str] = (),
    mlflow_address: str | None = None,
    threads: int | None = None,
) -> tuple[list[str], str, dict[str, str]]:
    """(command, address, environment) that serve the app; fails naming the extra when it is missing."""
    require_app_extra()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(MAIN),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        # Uploads are capped again, per file, with a clear message (drawing.read_upload).
        "--server.maxUploadSize",
        str(max(1, MAX_UPLOAD_BYTES // (1024 * 1024))),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
        # Streamlit runs a full gc.collect() after every script run; with torch imported that
        # took ~170 ms of each stroke's round trip (a page with the canvas and the prediction:
        # 220 ms with it, 41 ms without). Python's own generational collection still runs.
        "--runner.postScriptGC",
        "false",
    ]
    env = {**os.environ, RUNS_ENV: str(Path(runs).resolve()), DATA_DIRS_ENV: os.pathsep.join(map(str, data_dirs))}
    if mlflow_address:
        env[MLFLOW_ENV] = mlflow_address
    env[THREADS_ENV] = str(threads or default_threads())
    env[ADDRESS_ENV] = app_address(host, port)
    return command, app_address(host, port), env
