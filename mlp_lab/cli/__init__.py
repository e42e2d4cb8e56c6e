"""The `mlp-lab` command: thin typer commands over the library's functions.

Each command parses its arguments, calls one library function and prints. torch is imported
inside the commands that train, so `mlp-lab --help` and `mlp-lab validate` start fast. Errors
in the user's input print one line per problem and exit with code 2, never a traceback.

`common` holds the app, the shared options and the error policy; each other module holds one
family of verbs, which register on the app when imported: in this order, the order of
``mlp-lab --help``.
"""

from __future__ import annotations

import os

# Imported for their effect: each module registers its verbs on `app`, and this order is the
# order of `mlp-lab --help` (so it is kept out of import sorting).
# isort: off
from mlp_lab.cli import runs, studies, search, inputs, inspect, tracking, servers, bench, init  # noqa: F401

# isort: on
from mlp_lab.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    # MLflow's usage telemetry stays off in mlp-lab's processes (and the servers they start)
    # unless the user turned it on (MLFLOW_DISABLE_TELEMETRY=false).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    app()
