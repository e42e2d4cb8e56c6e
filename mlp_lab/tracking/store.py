"""Where tracking goes, and reaching it: the store, an `MlflowClient` bound to it, MLflow's
errors as one line, and the command that serves its UI.

Where it goes is decided in one place, `store_for`: ``$MLFLOW_TRACKING_URI`` when set (a server,
``http://...``), else an embedded SQLite store ``<output.dir>/mlflow.db`` with artifacts in
``<output.dir>/mlartifacts/``; the registry is ``$MLFLOW_REGISTRY_URI``, else the same store.
Every MLflow call goes through an `MlflowClient` bound to those URIs: nothing here sets
MLflow's process-wide tracking URI or the environment, so a user's store is never swapped for
another half-way through a study.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from mlp_lab.core.environ import env_defaults
from mlp_lab.core.errors import MLPLabError, install_extra

WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]")  # a server bound here answers on every address of the machine

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

EXTRA = install_extra("track")
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# No progress bars, and no "View run ... at: URL" lines on stdout for each run a server ends.
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
# The check before training: a store that does not answer within seconds is reported, not retried.
PROBE_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


class TrackingError(MLPLabError):
    """The tracking store could not be reached or refused a request."""


def require_mlflow(what: str = "tracking") -> ModuleType:
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
STORE_CREDENTIALS_ENV = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)


def store_env() -> dict[str, str]:
    """This process's choice of store as environment variables for another process: the URIs
    always (empty = the embedded store, whatever that process's own environment says), and any
    credentials that are set."""
    env = {key: os.environ.get(key, "") for key in STORE_ENV}
    env.update({key: os.environ[key] for key in STORE_CREDENTIALS_ENV if key in os.environ})
    return env


def client_for(store: Store) -> MlflowClient:
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
    with env_defaults(PROBE_HTTP), errors(store):
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
    and the "View run ... at" line a server prints for every run. Our own lines say what
    happened; MLflow's warnings and errors that matter reach us as exceptions. The loggers'
    levels are put back afterwards."""
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
def errors(store: Store) -> Iterator[None]:
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
    if (
        "Max retries exceeded" in text
        or "NewConnectionError" in text
        or "ConnectTimeout" in text
        or "Read timed out" in text
    ):
        what = "timed out" if "timed out" in text.lower() or "Timeout" in text else "connection refused"
        return (
            f"cannot reach the tracking server ({what}); start it, or point MLFLOW_TRACKING_URI "
            f"at one that runs (unset: the store under output.dir)"
        )
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def experiment_id(client: MlflowClient, store: Store, name: str) -> str:
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


def ui_command(
    output_dir: str | Path = "runs", port: int = 5000, framed_by: str | None = None, host: str = "127.0.0.1"
) -> tuple[list[str], str]:
    """The command that serves the MLflow UI for the default store on `host`, and its address.

    `framed_by`, an origin (``http://127.0.0.1:8501``: the app's), may show the UI in a frame; no
    other origin may. An origin on a wildcard address (``http://0.0.0.0:8501``, the app in a
    container) stands for whatever name the browser reaches it by: any host on that port may frame
    the UI, and MLflow's own CORS and Host defaults (loopback and private addresses) stay. X-Frame-Options cannot name an origin (SAMEORIGIN, DENY or none), so the
    server also sends ``Content-Security-Policy: frame-ancestors ORIGIN`` (a uvicorn default
    header, through `mlflow server --uvicorn-opts`): a browser that knows frame-ancestors obeys it
    and ignores X-Frame-Options, one that does not keeps SAMEORIGIN and refuses every frame.
    The origin is also MLflow's CORS origin (it allows loopback origins' requests in any case).
    """
    require_mlflow("mlp-lab ui")
    if not store_for(output_dir).embedded:
        raise MLPLabError(
            f"tracking goes to MLFLOW_TRACKING_URI={os.environ['MLFLOW_TRACKING_URI']}: open its UI there"
        )
    store = prepare_store(output_dir)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        store.uri,
    ]
    if store.embedded:
        command += ["--artifacts-destination", str(store.artifact_root)]
    if framed_by:
        ancestors, cors = framed_by, ["--cors-allowed-origins", framed_by]
        app_host, _, app_port = framed_by.partition("://")[2].rpartition(":")
        if app_host in WILDCARD_HOSTS:
            ancestors, cors = f"http://*:{app_port} https://*:{app_port}", []
        header = f"Content-Security-Policy:frame-ancestors {ancestors}"
        command += ["--x-frame-options", "SAMEORIGIN", *cors, "--uvicorn-opts", f"--header {shlex.quote(header)}"]
    return command, f"http://{'[' + host + ']' if ':' in host else host}:{port}"
