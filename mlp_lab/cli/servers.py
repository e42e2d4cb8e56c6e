"""`mlp-lab ui` and `mlp-lab app`: the MLflow UI and the web app, served on this machine until Ctrl-C."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mlp_lab.cli.common import DataDirOpt, OutputDirOpt, app, data_dirs, out, user_errors


def exit_now(code: int) -> NoReturn:
    """Exit once the servers are stopped, without Python's teardown: nothing of ours is left to
    flush or close, and tearing down the ~2,000 modules the MLflow store check imported took 1-2 s
    of the 10 s `docker stop` allows the whole container (two loaded cores)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command()
def ui(
    output_dir: OutputDirOpt = Path("runs"),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Serve the MLflow UI for the default store (OUTPUT_DIR/mlflow.db) on 127.0.0.1 until Ctrl-C.

    Example: mlp-lab ui --port 5000
    """
    from mlp_lab.core.servers import Server, check_port_free, serve

    with user_errors():
        from mlp_lab.tracking.store import ui_command

        check_port_free("127.0.0.1", port)
        command, address = ui_command(output_dir, port)
    out.print(f"MLflow UI: {address}  (store {output_dir / 'mlflow.db'}; Ctrl-C stops it)", highlight=False)
    exit_now(serve([Server("mlflow", command)]))


@app.command("app")
def app_(
    host: Annotated[
        str, typer.Option(help="Address to bind; another host than loopback only when you mean it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8501,
    runs: Annotated[
        Path, typer.Option(help="Runs directory: models to draw on, runs to show, new runs go here.")
    ] = Path("runs"),
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow",
            help="Also serve the MLflow UI (the track extra) on --host, shown on the app's MLflow page.",
        ),
    ] = False,
    mlflow_port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the MLflow UI with --mlflow.")] = 5000,
    data_dir: DataDirOpt = None,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="torch threads of each run the Train page starts \\[default: half the CPU cores]."),
    ] = None,
) -> None:
    """Serve the web app (the app extra): draw digits for any model, train, watch and compare runs.

    Example: mlp-lab app --runs runs --port 8501
    """
    from mlp_lab.core.servers import Server, check_port_free, serve

    with user_errors():
        from mlp_lab.app.serve import app_address, app_command

        check_port_free(host, port)
        if mlflow:
            # MLflow binds where the app does: a browser that reaches the app must reach the UI it frames.
            check_port_free(host, mlflow_port, "--mlflow-port")
        servers, mlflow_address = [], None
        if mlflow:
            from mlp_lab.tracking.store import ui_command

            # Framed by the app's pages only: its MLflow page shows the UI, no other site may.
            mlflow_command, mlflow_address = ui_command(runs, mlflow_port, framed_by=app_address(host, port), host=host)
            servers.append(Server("mlflow", mlflow_command))
        command, address, env = app_command(host, port, runs, data_dirs(data_dir), mlflow_address, threads)
        servers.append(Server("streamlit", command, env, quiet=True))
    out.print(f"mlp-lab app: {address}  (runs {runs}; Ctrl-C stops it)", highlight=False)
    if mlflow_address:
        out.print(f"MLflow UI: {mlflow_address}  (also on the app's MLflow page)", highlight=False)
    exit_now(serve(servers))
