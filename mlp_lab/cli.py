"""The `mlp-lab` command: thin typer commands over the library's functions.

Each command parses its arguments, calls one library function and prints. torch is imported
inside the commands that train, so `mlp-lab --help` and `mlp-lab validate` start fast. Errors
in the user's input print one line per problem and exit with code 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from mlp_lab.config import MLPLabError, config_to_yaml, load_config

app = typer.Typer(
    name="mlp-lab",
    help="Fast, reproducible MLP ablation studies on FashionMNIST, MNIST and CIFAR-10.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML), e.g. configs/baseline.yaml.", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config value, KEY=VALUE (repeatable), e.g. train.optimizer.lr=0.01."),
]
DataDirOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--data-dir", help="Extra directory holding dataset files (repeatable); also $MLP_LAB_DATA."),
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Print MLPLabError as plain lines on stderr and exit 2."""
    try:
        yield
    except MLPLabError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            err.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def _epoch_line(record: dict[str, Any]) -> str:
    return (f"epoch {record['epoch']:>3}/{record['epochs']}  "
            f"train/loss {record['train/loss']:.4f}  train/acc {record['train/acc']:.4f}  "
            f"val/loss {record['val/loss']:.4f}  val/acc {record['val/acc']:.4f}  "
            f"lr {record['lr']:.2e}  {record['seconds']:.1f}s")


@contextmanager
def epoch_reporter(description: str, total_epochs: int, done_epochs: int = 0):
    """A callback for per-epoch records: a rich progress bar on a terminal, plain lines otherwise."""
    if not out.is_terminal:
        yield lambda record: print(f"{description}  {_epoch_line(record)}", flush=True)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(description, total=total_epochs, completed=done_epochs, status="")

        def report(record: dict[str, Any]) -> None:
            progress.update(task, completed=record["epoch"],
                            status=f"val/acc {record['val/acc']:.4f}  val/loss {record['val/loss']:.4f}")

        yield report


@app.command()
def run(
    config: Annotated[Optional[Path], typer.Argument(help="Run config (YAML).", show_default=False)] = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue an interrupted run from its directory.")] = None,
) -> None:
    """Train one seeded run: validate every epoch, restore the best weights, test.

    Example: mlp-lab run configs/baseline.yaml --set train.epochs=5
    """
    with user_errors():
        if resume is not None:
            if config is not None or overrides:
                raise MLPLabError("--resume takes the config from the run directory; give no CONFIG or --set")
            cfg = load_config(resume / "config.yaml")
            run_dir = resume
        elif config is None:
            raise MLPLabError("missing CONFIG: e.g. mlp-lab run configs/baseline.yaml")
        else:
            cfg = load_config(config, overrides or ())
            run_dir = None
        from mlp_lab import rundir
        from mlp_lab.interrupt import graceful_stop
        from mlp_lab.train import TrainingInterrupted, train

        if run_dir is None:
            run_dir, renamed = rundir.fresh_run_dir(cfg.output.dir, cfg.name)
            if renamed:
                out.print(f"{Path(cfg.output.dir) / cfg.name} exists; writing this run to {run_dir}", highlight=False)
        out.print(f"run {cfg.name} -> {run_dir}", highlight=False)
        with graceful_stop() as stop, epoch_reporter(cfg.name, cfg.train.epochs) as report:
            try:
                summary = train(cfg, run_dir, resume=resume is not None, data_dirs=tuple(map(str, data_dir or ())),
                                on_epoch=report, should_stop=stop)
            except TrainingInterrupted as exc:
                err.print(f"stopped by signal {stop.signum}; state saved. Resume with: mlp-lab run --resume {exc.run_dir}",
                          highlight=False, soft_wrap=True)
                raise typer.Exit(stop.exit_code) from None
    stopped = f", stopped early at epoch {summary['epochs_run']}" if summary.get("stopped_early") else ""
    out.print(f"done: {run_dir}  test/acc {summary['test/acc']:.4f}  test/loss {summary['test/loss']:.4f}  "
              f"(best epoch {summary['best_epoch']}{stopped}, {summary['wall_time_s']:.1f}s)", highlight=False)


@app.command()
def validate(config: ConfigArg, overrides: SetOpt = None) -> None:
    """Check a config (with overrides) and print it resolved, or list every error.

    Example: mlp-lab validate configs/baseline.yaml --set model.dropout=0.5
    """
    with user_errors():
        cfg = load_config(config, overrides or ())
    sys.stdout.write(config_to_yaml(cfg))


def main() -> None:
    """Console-script entry point."""
    app()
