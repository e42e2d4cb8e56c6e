"""`mlp-lab run` and `mlp-lab validate`: train one config (or resume its run), or check it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mlp_lab.cli.common import (
    ConfigArg,
    DataDirOpt,
    JsonOpt,
    SetOpt,
    TrackOpt,
    app,
    data_dirs,
    epoch_reporter,
    err,
    json_output,
    out,
    say,
    user_errors,
)
from mlp_lab.config.load import load_config, resolve_config
from mlp_lab.config.schema import config_to_yaml
from mlp_lab.core.errors import MLPLabError
from mlp_lab.service.checks import check_model


@app.command()
def run(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Argument(
            help="Run config: a name (e.g. baseline: ./configs, else the shipped one) or a YAML path.",
            show_default=False,
        ),
    ] = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run from its directory.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads \\[default: all cores].")] = None,
    track: TrackOpt = False,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="Train into this (new or empty) directory \\[default: <output.dir>/<name>, or <name>-2 if it exists].",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train one seeded run: validate every epoch, restore the best weights, test.

    Example: mlp-lab run baseline --set train.epochs=5 --track
    """
    emit = json_output(ctx, as_json)
    with user_errors():
        if resume is not None and (config is not None or overrides):
            raise MLPLabError("--resume takes the config from the run directory; give no CONFIG or --set")
        if resume is not None and run_dir is not None:
            raise MLPLabError("--resume continues in its own directory; give no --run-dir")
        if resume is None and config is None:
            raise MLPLabError("missing CONFIG: e.g. mlp-lab run baseline, or mlp-lab run configs/baseline.yaml")
        if resume is not None and not (resume / "config.yaml").is_file():
            raise MLPLabError(
                f"{resume}: not a run directory (no config.yaml); resume takes the directory of an "
                f"interrupted run, e.g. runs/baseline"
            )
        if config is not None:
            config = resolve_config(config)  # a name's file, so that the run records where it came from
        cfg = load_config(resume / "config.yaml" if resume is not None else config, overrides or ())
        data_dirs(data_dir)  # a --data-dir typo is reported before torch loads
        from mlp_lab.tracking.workflows import track_run

        cfg, where = track_run(cfg, track, resume)  # before training: the store is reached and made once
        if where:
            say(where)
        from mlp_lab.core.interrupt import graceful_stop
        from mlp_lab.service.context import run_context
        from mlp_lab.service.runs import start_or_resume
        from mlp_lab.training.trainer import TrainingInterrupted

        def announce(run_dir: Path, renamed: bool) -> None:
            if renamed:
                out.print(f"{Path(cfg.output.dir) / cfg.name} exists; writing this run to {run_dir}", highlight=False)
            out.print(f"run {cfg.name} -> {run_dir}", highlight=False)

        with graceful_stop() as stop, epoch_reporter(cfg.name, cfg.train.epochs) as report:
            context = run_context(data_dirs=data_dirs(data_dir), threads=threads, on_epoch=report, stop=stop)
            try:
                result = start_or_resume(
                    cfg, context, resume=resume, run_dir=run_dir, source=str(config), on_start=announce
                )
            except TrainingInterrupted as exc:
                err.print(
                    f"stopped by signal {stop.signum}; state saved. Resume with: mlp-lab run --resume {exc.run_dir}",
                    highlight=False,
                    soft_wrap=True,
                )
                raise typer.Exit(stop.exit_code) from None
    summary = result.summary
    stopped = f", stopped early at epoch {summary['epochs_run']}" if summary.get("stopped_early") else ""
    out.print(
        f"done: {result.run_dir}  test/acc {summary['test/acc']:.4f}  test/loss {summary['test/loss']:.4f}  "
        f"(best epoch {summary['best_epoch']}{stopped}, {summary['wall_time_s']:.1f}s)",
        highlight=False,
    )
    if as_json:
        from mlp_lab.runs.rundir import run_record

        emit(run_record(result.run_dir))


@app.command()
def validate(config: ConfigArg, overrides: SetOpt = None) -> None:
    """Check a config (with overrides) and print it resolved, or list every error.

    Example: mlp-lab validate configs/baseline.yaml --set model.dropout=0.5
    """
    with user_errors():
        cfg = load_config(config, overrides or ())
        check_model(cfg)
    sys.stdout.write(config_to_yaml(cfg))
