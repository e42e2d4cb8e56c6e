"""`mlp-lab track`, `register` and `models`: runs exported to MLflow, and its model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlp_lab.cli.common import JsonOpt, OutputDirOpt, SetOpt, app, json_output, out, say, user_errors

TargetArg = Annotated[
    str, typer.Argument(help="A run directory (runs/baseline) or a study name (early_stopping).", show_default=False)
]


@app.command()
def track(
    targets: Annotated[
        list[str],
        typer.Argument(help="Run directories or study names, e.g. runs/baseline early_stopping.", show_default=False),
    ],
    overrides: SetOpt = None,
) -> None:
    """Export existing runs (and a study's report) to MLflow; a second export adds nothing.

    A study's runs are those its report shows; --set loads the study as compare did.
    Example: mlp-lab track runs/baseline early_stopping
    """
    with user_errors():
        from mlp_lab.service.track import track as export

        export(targets, overrides or (), say)


@app.command()
def register(
    target: TargetArg,
    name: Annotated[str, typer.Option("--name", help="Registered model name, e.g. fashion-mlp.")],
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version, e.g. champion.")] = None,
    arm: Annotated[
        str | None, typer.Option(help="For a study: the arm whose best seed (by val/acc) to register.")
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """Register a finished run's model (exported to MLflow first if needed) and set an alias.

    For a study, --arm picks among the runs its report shows; --set loads the study as compare did.
    Example: mlp-lab register runs/baseline --name fashion-mlp --alias champion
    """
    with user_errors():
        from mlp_lab.tracking.workflows import register_target

        made = register_target(target, name, alias, arm, overrides or ())
    acc = f"test/acc {made.test_acc:.4f}" if made.test_acc is not None else "no test/acc"
    aliased = f", alias {made.alias}" if made.alias else ""
    out.print(f"{made.run_dir} -> models:/{made.name}/{made.version}{aliased} ({acc})", highlight=False)


@app.command()
def models(ctx: typer.Context, output_dir: OutputDirOpt = Path("runs"), as_json: JsonOpt = False) -> None:
    """List registered models: versions, aliases, test accuracy and the run each came from.

    Example: mlp-lab models
    """
    from rich.table import Table

    emit = json_output(ctx, as_json)  # MLflow's own messages, if any, go to stderr with it

    with user_errors():
        from mlp_lab.tracking.registry import list_models

        rows = list_models(output_dir)
    if as_json:
        emit(rows)
        return
    if not rows:
        out.print(
            "no registered models yet; register one: mlp-lab register RUN_DIR --name NAME --alias champion",
            highlight=False,
        )
        return
    table = Table("model", "version", "aliases", "test/acc", "run directory")
    for row in rows:
        acc = f"{row['test/acc']:.4f}" if row["test/acc"] is not None else "-"
        table.add_row(row["name"], row["version"], ", ".join(row["aliases"]), acc, row["run_dir"] or "-")
    out.print(table)
