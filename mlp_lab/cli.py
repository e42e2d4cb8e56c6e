"""The `mlp-lab` command: thin typer commands over the library's functions.

Each command parses its arguments, calls one library function and prints. torch is imported
inside the commands that train, so `mlp-lab --help` and `mlp-lab validate` start fast. Errors
in the user's input print one line per problem and exit with code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from mlp_lab.config import MachineFault, MLPLabError, clip, config_to_yaml, load_config, memory_fault, os_fault


class OneLineErrors(TyperGroup):
    """The command group, with a bad CLI argument (an unknown option, a value out of range) as one
    `error:` line and exit 2, like every other bad input, instead of click's usage panel."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # typer's click exceptions (usage errors) derive from it
            if type(exc).__name__ == "NoArgsIsHelpError":  # `mlp-lab` alone: the help, as usual
                exc.show()
            else:
                ctx = getattr(exc, "ctx", None)
                where = f"{ctx.command_path}: " if ctx is not None else ""
                hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
                # pydantic's prefix on typer's coercion errors says nothing to a user
                message = " ".join(exc.format_message().replace("Value error, ", "").split())
                err.print(f"error: {where}{clip(message, 300)}{hint}", markup=False, highlight=False, soft_wrap=True)
            code = exc.exit_code
        except typer.Abort:
            err.print("error: aborted", markup=False, highlight=False)
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="mlp-lab",
    help="Fast, reproducible MLP ablation studies on FashionMNIST, MNIST and CIFAR-10.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
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

TrackOpt = Annotated[bool, typer.Option("--track", help="Also log to MLflow (the \\[track] extra); see mlp-lab ui.")]


class Backend(str, Enum):
    """Where the runs of compare and search execute."""

    local = "local"
    ray = "ray"


BackendOpt = Annotated[Backend, typer.Option(
    "--backend", help="local: this machine's processes (--jobs). ray: one Ray task per run (the \\[ray] extra).")]
AddressOpt = Annotated[Optional[str], typer.Option(
    "--address", help="With --backend ray: join this Ray cluster (e.g. auto, or HOST:6379; also $RAY_ADDRESS) "
                      "\\[default: a local instance on 127.0.0.1 for this command].", show_default=False)]
JobsOpt = Annotated[Optional[int], typer.Option(
    "--jobs", "-j", min=1, help="Runs at once: local processes (torch threads are split) \\[default: 1]; with "
                                "--backend ray, Ray tasks in flight \\[default: cluster CPUs / threads].",
    show_default=False)]
OutputDirOpt = Annotated[Path, typer.Option("--output-dir", help="Where runs and the default MLflow store live.")]


def _dirs(data_dir: Optional[list[Path]]) -> tuple[str, ...]:
    """--data-dir values as the library takes them; one that is not a directory is a typo."""
    for directory in data_dir or ():
        if not directory.is_dir():
            raise MLPLabError(f"--data-dir {clip(str(directory))}: " + ("is a file, expected a directory"
                              if directory.exists() else "no such directory"))
    return tuple(map(str, data_dir or ()))


def _print_error(exc: MLPLabError) -> None:
    for line in str(exc).splitlines() or [type(exc).__name__]:
        err.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Print MLPLabError as plain lines on stderr and exit 2 (bad input); a fault of the machine
    (a full disk, a read-only or vanished directory, memory) as one line and exit 3."""
    try:
        yield
    except MLPLabError as exc:
        _print_error(exc)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        fault = os_fault(exc, "then run the command again")
        _print_error(fault)
        raise typer.Exit(fault.exit_code) from None
    except (MemoryError, RuntimeError) as exc:
        fault = memory_fault(exc, "then run the command again")
        if fault is None:
            raise
        _print_error(fault)
        raise typer.Exit(fault.exit_code) from None


@contextmanager
def executor_for(backend: Backend, address: Optional[str], jobs: Optional[int], threads: Optional[int]):
    """The executor a command's runs go to: None for this machine's (the library's default), or
    a RayExecutor inside a Ray session (a local instance, or the cluster at `address`)."""
    if backend == Backend.local:
        yield None
        return
    from mlp_lab.executors_ray import RayExecutor, ray_session

    with ray_session(address):
        yield RayExecutor(threads, jobs, log=lambda line: print(line, flush=True))


def _require_backend(backend: Backend, address: Optional[str]) -> None:
    """A missing [ray] extra, or --address without ray, is reported before anything is printed or created."""
    if backend == Backend.ray:
        from mlp_lab.executors_ray import check_ray_installed

        check_ray_installed()
    elif address is not None:
        raise MLPLabError("--address joins a Ray cluster: use it with --backend ray")


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
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads [default: all cores].")] = None,
    track: TrackOpt = False,
    run_dir: Annotated[Optional[Path], typer.Option(
        "--run-dir", help="Train into this (new or empty) directory instead of <output.dir>/<name>.")] = None,
) -> None:
    """Train one seeded run: validate every epoch, restore the best weights, test.

    Example: mlp-lab run configs/baseline.yaml --set train.epochs=5 --track
    """
    with user_errors():
        if resume is not None and (config is not None or overrides):
            raise MLPLabError("--resume takes the config from the run directory; give no CONFIG or --set")
        if resume is not None and run_dir is not None:
            raise MLPLabError("--resume continues in its own directory; give no --run-dir")
        if resume is None and config is None:
            raise MLPLabError("missing CONFIG: e.g. mlp-lab run configs/baseline.yaml")
        if resume is not None and not (resume / "config.yaml").is_file():
            raise MLPLabError(f"{resume}: not a run directory (no config.yaml); resume takes the directory of an "
                              f"interrupted run, e.g. runs/baseline")
        cfg = load_config(resume / "config.yaml" if resume is not None else config, overrides or ())
        _dirs(data_dir)  # a --data-dir typo is reported before torch loads
        if track and resume is not None and not cfg.output.mlflow:
            raise MLPLabError(f"{resume} was not tracked; a resumed run keeps its settings. "
                              f"Export it instead: mlp-lab track {resume}")
        if track:
            cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"mlflow": True})})
        if cfg.output.mlflow:
            from mlp_lab.tracking.store import describe, prepare_store

            # before training: the store is reached (or reported) and made once, here
            out.print(describe(prepare_store(cfg.output.dir)), highlight=False, markup=False)
        from mlp_lab.interrupt import graceful_stop
        from mlp_lab.train import TrainingInterrupted, resume_run, start_run

        started: list[Path] = [resume] if resume is not None else []

        def announce(run_dir: Path, renamed: bool) -> None:
            started.append(run_dir)
            if renamed:
                out.print(f"{Path(cfg.output.dir) / cfg.name} exists; writing this run to {run_dir}", highlight=False)
            out.print(f"run {cfg.name} -> {run_dir}", highlight=False)

        with graceful_stop() as stop, epoch_reporter(cfg.name, cfg.train.epochs) as report:
            try:
                if resume is not None:
                    announce(resume, False)
                    result = resume_run(resume, data_dirs=_dirs(data_dir), threads=threads, on_epoch=report,
                                        should_stop=stop)
                else:
                    result = start_run(cfg, run_dir=run_dir, source=str(config), data_dirs=_dirs(data_dir),
                                       threads=threads, on_start=announce, on_epoch=report, should_stop=stop)
            except TrainingInterrupted as exc:
                err.print(f"stopped by signal {stop.signum}; state saved. Resume with: mlp-lab run --resume {exc.run_dir}",
                          highlight=False, soft_wrap=True)
                raise typer.Exit(stop.exit_code) from None
            except OSError as exc:
                raise os_fault(exc, _resume_hint(started)) from None
            except (MemoryError, RuntimeError) as exc:
                fault = memory_fault(exc, _resume_hint(started))
                if fault is None:
                    raise
                raise fault from None
    summary = result.summary
    stopped = f", stopped early at epoch {summary['epochs_run']}" if summary.get("stopped_early") else ""
    out.print(f"done: {result.run_dir}  test/acc {summary['test/acc']:.4f}  test/loss {summary['test/loss']:.4f}  "
              f"(best epoch {summary['best_epoch']}{stopped}, {summary['wall_time_s']:.1f}s)", highlight=False)


def _resume_hint(started: list[Path]) -> str:
    """What to do after a fault of the machine mid-run: resume the run if it got far enough to
    describe itself (its checkpoints and metrics up to the last complete epoch are intact)."""
    if started and (started[-1] / "config.yaml").is_file():
        return f"then: mlp-lab run --resume {started[-1]}"
    return "then run it again"


@app.command()
def validate(config: ConfigArg, overrides: SetOpt = None) -> None:
    """Check a config (with overrides) and print it resolved, or list every error.

    Example: mlp-lab validate configs/baseline.yaml --set model.dropout=0.5
    """
    with user_errors():
        cfg = load_config(config, overrides or ())
    sys.stdout.write(config_to_yaml(cfg))


ExperimentArg = Annotated[str, typer.Argument(help="Experiment name in experiments/ (e.g. early_stopping) or a path.",
                                              show_default=False)]


@app.command()
def compare(
    experiment: ExperimentArg,
    jobs: JobsOpt = None,
    seeds: Annotated[Optional[str], typer.Option(help="Comma-separated seeds overriding the file's, e.g. 0,1,2.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Delete and rerun runs that are already done.")] = False,
    threads: Annotated[Optional[int], typer.Option(
        min=1, help="torch threads (with ray: CPUs reserved) per run \\[default: CPU cores / jobs; ray: 1]. CPU "
                    "results are bit-identical for the same thread count, so fix it to compare across settings.")] = None,
    data_dir: DataDirOpt = None,
    track: TrackOpt = False,
    backend: BackendOpt = Backend.local,
    address: AddressOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Run every arm x seed of a study (skipping finished runs), then write its report.

    --set applies to every arm (not to the study's factor), e.g. a quick look at one epoch:
    mlp-lab compare dropout --seeds 0 --set train.epochs=1

    Example: mlp-lab compare early_stopping --seeds 0,1,2 --jobs 2 --track ;
    on a Ray cluster: mlp-lab compare early_stopping --backend ray --address auto
    """
    with user_errors():
        from mlp_lab.ablation import compare as run_compare
        from mlp_lab.ablation import load_experiment
        from mlp_lab.interrupt import graceful_stop
        from mlp_lab.report import build_report

        exp = load_experiment(experiment, _parse_seeds(seeds), overrides=overrides or ())
        _dirs(data_dir)
        track = track or any(arm.config.output.mlflow for arm in exp.arms)
        _require_backend(backend, address)
        if backend == Backend.local:
            _check_runtime([exp])  # with ray, the GPUs that count are the cluster's
        if track:
            from mlp_lab.tracking.workflows import track_experiment

            exp = track_experiment(exp)  # the store and the study's experiment, before any worker
            _say_where(exp.arms[0].config.output.dir)

        total = len(exp.arms) * len(exp.seeds)
        out.print(f"study {exp.name}: {len(exp.arms)} arms x {len(exp.seeds)} seeds = {total} runs -> {exp.output_dir}",
                  highlight=False)
        with graceful_stop() as stop, executor_for(backend, address, jobs, threads) as executor:
            result = run_compare(exp, jobs=jobs or 1, force=force, data_dirs=_dirs(data_dir), threads=threads,
                                 stop=stop, log=lambda line: print(line, flush=True), executor=executor)
        if result.interrupted:
            err.print(f"stopped by signal; finished runs are kept and partial ones resume: mlp-lab compare {experiment}",
                      highlight=False)
            raise typer.Exit(stop.exit_code)
        if any(f.fault for f in result.failures):
            _report_busy_and_failed(result, "the report")  # a full disk would fail the report too
        build_report(exp)
        if track:
            _attach_report(exp)
    out.print(f"report: {exp.output_dir / 'report.md'}", highlight=False)
    _report_busy_and_failed(result, "the report")


def _say_where(output_dir: str | Path) -> None:
    """The one line of ours that says where tracked runs go."""
    from mlp_lab.tracking.store import describe, store_for

    out.print(describe(store_for(output_dir)), highlight=False, markup=False)


def _attach_report(exp) -> None:
    """The study's report to its MLflow experiment; a tracking failure costs only a warning."""
    from mlp_lab.tracking.export import log_study_report
    from mlp_lab.tracking.store import TrackingError

    try:
        log_study_report(exp)
    except TrackingError as exc:
        err.print(f"warning: report not attached in MLflow ({exc}); later: mlp-lab track {exp.name}",
                  highlight=False, markup=False)


def _log_search_result(found, result) -> None:
    """The search's report on its MLflow parent run; a tracking failure costs only a warning."""
    from mlp_lab.tracking.store import TrackingError
    from mlp_lab.tracking.workflows import log_search_result

    try:
        log_search_result(found, result.report, finished=result.finished >= result.target)
    except TrackingError as exc:
        err.print(f"warning: search report not logged in MLflow ({exc})", highlight=False, markup=False)


def _check_runtime(experiments) -> None:
    """Machine-dependent config errors (a GPU asked for but absent) in any arm, before any run."""
    from mlp_lab.train import check_runtime  # imports torch: only once the input is known good

    for exp in experiments:
        for arm in exp.arms:
            check_runtime(arm.config, f"{exp.path}: arms.{arm.name}")


def _report_busy_and_failed(result: Any, what: str) -> None:
    """After compare or suite: runs left to another process, then failures (exit 1 if any)."""
    if result.busy:
        out.print(f"{len(result.busy)} run(s) were being trained by another process; run this again when it "
                  f"finishes to complete {what}.", highlight=False)
    if result.failures:
        err.print(f"{len(result.failures)} run(s) failed:", highlight=False)
        for failure in result.failures:
            err.print(f"  {failure.label}: {failure.error}", highlight=False, markup=False)
        faults = [f for f in result.failures if f.fault]
        if faults:
            # One line for the machine's fault; the runs resume from their last checkpoints.
            _print_error(MachineFault(f"{len(faults)} run(s) stopped by a fault of the machine ({faults[0].error}); "
                                      f"fix it, then run the same command again"))
            raise typer.Exit(MachineFault.exit_code)
        raise typer.Exit(1)


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise MLPLabError(f"--seeds {text}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise MLPLabError(f"--seeds {text!r}: give at least one seed")
    return seeds


@app.command()
def report(
    experiment: Annotated[Optional[str], typer.Argument(
        help="Experiment name in experiments/ (e.g. early_stopping) or a path.", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every study with runs, and the overview runs/index.md + "
                                                      "runs/index.html over them.")] = False,
) -> None:
    """Rebuild a study's report (markdown, CSV, JSON, plots) from its run directories alone.

    Example: mlp-lab report early_stopping    (every study and the overview: mlp-lab report --all)
    """
    with user_errors():
        from mlp_lab.ablation import load_experiment
        from mlp_lab.report import build_report

        if all_:
            if experiment is not None:
                raise MLPLabError("--all covers every study; give no EXPERIMENT")
            _print_overview(_build_overview())
            return
        if experiment is None:
            raise MLPLabError("missing EXPERIMENT: e.g. mlp-lab report early_stopping, or mlp-lab report --all")
        exp = load_experiment(experiment)
        if not exp.output_dir.exists():
            raise MLPLabError(f"{exp.output_dir}: no runs yet; run: mlp-lab compare {experiment}")
        build_report(exp)
    out.print(f"report: {exp.output_dir / 'report.md'}", highlight=False)


def _build_overview() -> dict[str, Any]:
    from mlp_lab.overview import build_overview, load_studies

    return build_overview(load_studies())


def _print_overview(overview: dict[str, Any]) -> None:
    out.print(f"studies: {', '.join(overview['studies'])}", highlight=False)
    if overview["skipped"]:
        out.print(f"not run yet: {', '.join(overview['skipped'])}", highlight=False)
    out.print(f"overview: {overview['index_md']} and {overview['index_html']}", highlight=False)


@app.command()
def suite(
    studies: Annotated[Optional[list[str]], typer.Argument(
        help="Studies to run [default: every file in experiments/].", show_default=False)] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Runs in parallel processes (torch threads are split).")] = 1,
    seeds: Annotated[Optional[str], typer.Option(help="Comma-separated seeds overriding every file's, e.g. 0,1,2.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Delete and rerun runs that are already done.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads per run [default: CPU cores / jobs].")] = None,
    data_dir: DataDirOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Run every study (or the named ones), skipping finished runs, then the overview over all of them.

    --set applies to every arm of every study.

    Example: mlp-lab suite ladder mnist_linear_vs_mlp --seeds 0 --data-dir ../shared/data/mnist
    """
    with user_errors():
        from mlp_lab.interrupt import graceful_stop
        from mlp_lab.overview import load_studies
        from mlp_lab.suite import run_suite

        experiments = load_studies(studies, _parse_seeds(seeds), overrides=overrides or ())
        _dirs(data_dir)
        _check_runtime(experiments)
        with graceful_stop() as stop:
            result = run_suite(experiments, jobs=jobs, force=force, data_dirs=_dirs(data_dir), threads=threads,
                               stop=stop, log=lambda line: print(line, flush=True))
        if result.interrupted:
            err.print("stopped by signal; finished runs are kept and partial ones resume: run the same command again",
                      highlight=False)
            raise typer.Exit(stop.exit_code)
    _print_overview(result.overview)
    _report_busy_and_failed(result, "the overview")


SearchArg = Annotated[str, typer.Argument(help="Search name in searches/ (e.g. fashion_search) or a path.",
                                          show_default=False)]


@app.command()
def search(
    name: SearchArg,
    trials: Annotated[Optional[int], typer.Option(min=1, help="Trials to reach, counting earlier calls (default: the file's).")] = None,
    jobs: Annotated[Optional[int], typer.Option(
        "--jobs", "-j", min=1, help="Trials at once, sharing the study: local processes \\[default: 1]; with "
                                    "--backend ray, Ray tasks \\[default: cluster CPUs / threads].",
        show_default=False)] = None,
    timeout: Annotated[Optional[float], typer.Option(min=0, help="Start no new trial after this many seconds.")] = None,
    confirm: Annotated[bool, typer.Option("--confirm", help="Retrain best and base over seeds; report test accuracy.")] = False,
    seeds: Annotated[str, typer.Option(help="Seeds for --confirm, comma-separated.")] = "0,1,2",
    threads: Annotated[Optional[int], typer.Option(
        min=1, help="torch threads (with ray: CPUs reserved) per trial \\[default: cores / jobs; ray: 1].")] = None,
    data_dir: DataDirOpt = None,
    track: Annotated[bool, typer.Option("--track", help="Also log to MLflow: the search as one run, each trial "
                                                        "nested under it (the \\[track] extra).")] = False,
    backend: BackendOpt = Backend.local,
    address: AddressOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Search hyperparameters with Optuna (pruned, resumable), or confirm the best over seeds.

    --set applies to the base of every trial and to both --confirm arms (not to a searched key).

    Example: mlp-lab search fashion_search --trials 40 --track ; mlp-lab search fashion_search --confirm ;
    on a Ray cluster: mlp-lab search fashion_search --backend ray --address auto
    """
    with user_errors():
        from mlp_lab import search as searching
        from mlp_lab.interrupt import graceful_stop

        searching.require_optuna()
        found = searching.load_search(name, overrides=overrides or ())
        _dirs(data_dir)
        from mlp_lab.train import check_runtime  # imports torch: only once the input is known good

        _require_backend(backend, address)
        if backend == Backend.local:
            check_runtime(found.base_config, str(found.path))  # with ray, the cluster's GPUs count
        track = track or found.base_config.output.mlflow
        if track and not confirm:
            from mlp_lab.tracking.workflows import track_search

            found = track_search(found)  # the store and the search's parent run, before any worker
            _say_where(found.base_config.output.dir)
        log = lambda line: print(line, flush=True)  # noqa: E731
        with graceful_stop() as stop, executor_for(backend, address, jobs, threads) as executor:
            if confirm:
                result, lines = searching.confirm(found, _parse_seeds(seeds), jobs=jobs or 1, threads=threads,
                                                  data_dirs=_dirs(data_dir), stop=stop, log=log, executor=executor,
                                                  track=track)
                interrupted = result.interrupted
            else:
                result = searching.run_search(found, trials=trials, jobs=jobs or 1, timeout=timeout, threads=threads,
                                              data_dirs=_dirs(data_dir), stop=stop, log=log, executor=executor)
                interrupted, best = result.interrupted, result.report.get("best")
                if track:
                    _log_search_result(found, result)
                lines = [f"{result.finished}/{result.target} trials finished"
                         + (" (timeout reached)" if result.timed_out else "")]
                if best:
                    lines.append(f"best: trial {best['trial']}  {found.metric} {best['value']:.4f}  "
                                 f"config {found.output_dir / searching.BEST_CONFIG_FILE}")
        if interrupted:
            err.print(f"stopped by signal; finished trials are kept and unfinished ones continue: "
                      f"mlp-lab search {name}{' --confirm' if confirm else ''}", highlight=False)
            raise typer.Exit(stop.exit_code)
    for line in lines:
        out.print(line, highlight=False, markup=False)
    out.print(f"report: {found.output_dir / ('confirm.md' if confirm else 'search.md')}", highlight=False)


@app.command("list")
def list_(
    configs_dir: Annotated[Path, typer.Option(help="Where run configs live.")] = Path("configs"),
    experiments_dir: Annotated[Path, typer.Option(help="Where experiment files live.")] = Path("experiments"),
) -> None:
    """List the configs and experiments available and the state of their runs.

    Example: mlp-lab list
    """
    from mlp_lab.catalog import list_configs, list_experiments

    with user_errors():
        for flag, directory in (("--configs-dir", configs_dir), ("--experiments-dir", experiments_dir)):
            if directory.exists() and not directory.is_dir():
                raise MLPLabError(f"{flag} {directory}: is a file, expected a directory")
        configs = list_configs(configs_dir)
        experiments = list_experiments(experiments_dir)
    for title, directory, entries in (("configs", configs_dir, configs), ("experiments", experiments_dir, experiments)):
        out.print(f"{title} ({directory}/)", style="bold")
        for entry in entries:
            out.print(f"  {entry['name']:<28} {entry['state']:<12} {entry['detail']}", highlight=False, markup=False)


@app.command()
def data(
    dataset: Annotated[Optional[str], typer.Argument(help="fashion_mnist, mnist or cifar10.", show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Take the data section of this config instead.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the sample grid PNG goes.")] = Path("runs/data"),
    data_dir: DataDirOpt = None,
) -> None:
    """Describe a dataset (shapes, value range, classes, counts per split) and save a sample grid.

    Example: mlp-lab data fashion_mnist
    """
    from rich.table import Table

    with user_errors():
        import typing

        from mlp_lab.config import DataConfig

        if config is not None:
            data_cfg = load_config(config).data
        elif dataset is not None:
            known = typing.get_args(DataConfig.model_fields["dataset"].annotation)  # the schema's: no torch needed
            if dataset not in known:
                raise MLPLabError(f"dataset {clip(repr(dataset))} is unknown; choose from {', '.join(known)}")
            data_cfg = DataConfig(dataset=dataset)
        else:
            raise MLPLabError("give a DATASET (e.g. fashion_mnist) or --config CONFIG")
        from mlp_lab.analysis import inspect_data

        info, grid = inspect_data(data_cfg, out_dir, _dirs(data_dir))
    out.print(f"[bold]{info['dataset']}[/bold] from {info['source']}")
    c, h, w = info["image_shape"]
    out.print(f"images: {c}x{h}x{w} ({info['colour']}), raw {info['raw_dtype']} in {info['raw_range']}; "
              f"as tensors: {info['tensor_dtype']} rows of {c * h * w} features, normalized range "
              f"[{info['normalized_range'][0]:.2f}, {info['normalized_range'][1]:.2f}] "
              f"(mean {', '.join(f'{m:.4f}' for m in info['mean'])}, std {', '.join(f'{s:.4f}' for s in info['std'])})",
              highlight=False)
    table = Table("class", "name", "train", "val", "test")
    for k, name in enumerate(info["classes"]):
        table.add_row(str(k), name, *(str(info["counts"][split][k]) for split in ("train", "val", "test")))
    table.add_row("", "total", *(str(sum(info["counts"][split])) for split in ("train", "val", "test")), style="bold")
    out.print(table)
    out.print(f"sample grid: {grid}", highlight=False)


@app.command()
def summary(config: ConfigArg, overrides: SetOpt = None) -> None:
    """Layer table of a config's model (output shapes, parameters), totals and MACs per sample.

    Example: mlp-lab summary configs/baseline.yaml
    """
    from rich.table import Table

    with user_errors():
        cfg = load_config(config, overrides or ())
        from mlp_lab.analysis import model_summary

        info = model_summary(cfg)
    table = Table("layer", "detail", "output shape", "parameters", title=f"{cfg.name}: input {tuple(info['input_shape'])}")
    for row in info["layers"]:
        table.add_row(row["layer"], row["detail"], str(tuple(row["output_shape"])), f"{row['parameters']:,}")
    out.print(table)
    out.print(f"total parameters: {info['total_parameters']:,}\ntrainable parameters: {info['trainable_parameters']:,}\n"
              f"multiply-accumulates per sample: {info['macs_per_sample']:,}", highlight=False)


RunDirArg = Annotated[Path, typer.Argument(
    help="A run directory (runs/baseline) or a registered model (models:/NAME@ALIAS, models:/NAME/VERSION).",
    show_default=False)]


def _run_dir(target: Path) -> Path:
    """A run directory as given, or a registered model fetched into one (the [track] extra)."""
    from mlp_lab.tracking.registry import is_model_uri, materialize

    return materialize(str(target)) if is_model_uri(target) else target


@app.command()
def evaluate(
    run_dir: RunDirArg,
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    data_dir: DataDirOpt = None,
) -> None:
    """Per-class report, confusion matrix and example grids for a run, written to RUN_DIR/eval/.

    Example: mlp-lab evaluate runs/baseline --split test
    """
    with user_errors():
        if split not in ("test", "val"):
            raise MLPLabError(f"--split {split}: choose test or val")
        from mlp_lab.evaluation import evaluate_run

        result = evaluate_run(_run_dir(run_dir), split, _dirs(data_dir))
    out.print((Path(result["run_dir"]) / "eval" / f"{split}_report.txt").read_text(), highlight=False)
    out.print(f"files in {Path(result['run_dir']) / 'eval'}: {', '.join(result['files'])}", highlight=False)


class Normalise(str, Enum):
    """predict's --normalise choices, here so that a typo is refused before torch loads (a test
    keeps them equal to predict.NORMALISATIONS)."""

    auto = "auto"
    plain = "plain"
    digit = "digit"
    fashion = "fashion"


@app.command()
def predict(
    run_dir: RunDirArg,
    images: Annotated[list[Path], typer.Argument(help="PNG/JPEG files of any size, colour or grayscale.", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many classes to show.")] = 3,
    invert: Annotated[Optional[bool], typer.Option(
        "--invert/--no-invert", help="Force inverting (dark-on-light drawings) or not [default: decided from the "
                                     "border pixels].", show_default=False)] = None,
    normalise: Annotated[Normalise, typer.Option(
        help="auto (the dataset's own recipe: MNIST digits are cropped, scaled to 20 px and centred by mass; "
             "FashionMNIST objects trimmed and scaled to fill), plain (resize only), digit or fashion.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Classify image files with a trained run, preprocessed the way its dataset was made.

    Example: mlp-lab predict runs/mnist seven.png --top-k 3
    """
    normalise = Normalise(normalise).value
    with user_errors():
        from mlp_lab.checkpoint import load_model
        from mlp_lab.predict import predict_files

        results = predict_files(load_model(_run_dir(run_dir)), images, top_k, "auto" if invert is None else invert,
                                normalise, keep_going=True)
    if as_json:
        import json

        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    for result in results:
        if "error" in result:
            err.print(f"error: {result['error']}", highlight=False, markup=False, soft_wrap=True)
        elif not as_json:
            ranked = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
            out.print(f"{result['image']}: {ranked}", highlight=False, markup=False)
    if any("error" in result for result in results):
        raise typer.Exit(2)  # the good images' results are printed; the bad ones are named above


TargetArg = Annotated[str, typer.Argument(
    help="A run directory (runs/baseline) or a study name (early_stopping).", show_default=False)]


@app.command()
def track(targets: Annotated[list[str], typer.Argument(
        help="Run directories or study names, e.g. runs/baseline early_stopping.", show_default=False)]) -> None:
    """Export existing runs (and a study's report) to MLflow; a second export adds nothing.

    Example: mlp-lab track runs/baseline early_stopping
    """
    with user_errors():
        from mlp_lab.tracking.export import export_run, export_study
        from mlp_lab.tracking.store import describe, prepare_store, require_mlflow

        require_mlflow("mlp-lab track")
        stores = set()
        for target in targets:
            if (Path(target) / "config.yaml").is_file():
                output_dir = load_config(Path(target) / "config.yaml").output.dir
                study = None
            else:
                from mlp_lab.ablation import load_experiment

                study = load_experiment(target)
                output_dir = study.arms[0].config.output.dir
            store = prepare_store(output_dir)  # reached (or reported) within seconds, before any export
            if store not in stores:
                stores.add(store)
                out.print(describe(store), highlight=False, markup=False)
            exported = [export_run(target)] if study is None else export_study(study)
            for item in exported:
                out.print(f"{item.run_dir} -> experiment {item.experiment}, run {item.run_id} "
                          f"({'exported' if item.created else 'already there'})", highlight=False)


@app.command()
def register(
    target: TargetArg,
    name: Annotated[str, typer.Option("--name", help="Registered model name, e.g. fashion-mlp.")],
    alias: Annotated[Optional[str], typer.Option(help="Point this alias at the new version, e.g. champion.")] = None,
    arm: Annotated[Optional[str], typer.Option(help="For a study: the arm whose best seed (by val/acc) to register.")] = None,
) -> None:
    """Register a finished run's model (exported to MLflow first if needed) and set an alias.

    Example: mlp-lab register runs/baseline --name fashion-mlp --alias champion
    """
    with user_errors():
        from mlp_lab.tracking.registry import best_seed_run, register as register_run
        from mlp_lab.tracking.store import require_mlflow

        require_mlflow("mlp-lab register")
        tags = None
        run_dir = Path(target)
        if arm is not None:
            from mlp_lab.ablation import load_experiment

            run_dir, tags = best_seed_run(load_experiment(target), arm)
        elif not (run_dir / "config.yaml").is_file():
            raise MLPLabError(f"{target}: not a run directory; for a study give --arm ARM")
        from mlp_lab.tracking.store import prepare_store

        prepare_store(load_config(run_dir / "config.yaml").output.dir)  # reached within seconds, or reported
        made = register_run(run_dir, name, alias, tags)
    acc = f"test/acc {made.test_acc:.4f}" if made.test_acc is not None else "no test/acc"
    aliased = f", alias {made.alias}" if made.alias else ""
    out.print(f"{made.run_dir} -> models:/{made.name}/{made.version}{aliased} ({acc})", highlight=False)


@app.command()
def models(output_dir: OutputDirOpt = Path("runs")) -> None:
    """List registered models: versions, aliases, test accuracy and the run each came from.

    Example: mlp-lab models
    """
    from rich.table import Table

    with user_errors():
        from mlp_lab.tracking.registry import list_models

        rows = list_models(output_dir)
    if not rows:
        out.print("no registered models yet; register one: mlp-lab register RUN_DIR --name NAME --alias champion",
                  highlight=False)
        return
    table = Table("model", "version", "aliases", "test/acc", "run directory")
    for row in rows:
        acc = f"{row['test/acc']:.4f}" if row["test/acc"] is not None else "-"
        table.add_row(row["name"], row["version"], ", ".join(row["aliases"]), acc, row["run_dir"] or "-")
    out.print(table)


@app.command()
def ui(
    output_dir: OutputDirOpt = Path("runs"),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Serve the MLflow UI for the default store (OUTPUT_DIR/mlflow.db) on 127.0.0.1 until Ctrl-C.

    Example: mlp-lab ui --port 5000
    """
    from mlp_lab.servers import Server, check_port_free, serve

    with user_errors():
        from mlp_lab.tracking.store import ui_command

        check_port_free("127.0.0.1", port)
        command, address = ui_command(output_dir, port)
    out.print(f"MLflow UI: {address}  (store {output_dir / 'mlflow.db'}; Ctrl-C stops it)", highlight=False)
    raise typer.Exit(serve([Server("mlflow", command)]))


@app.command("app")
def app_(
    host: Annotated[str, typer.Option(help="Address to bind; another host than loopback only when you mean it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8501,
    runs: Annotated[Path, typer.Option(help="Runs directory: models to draw on, runs to show, new runs go here.")] = Path("runs"),
    mlflow: Annotated[bool, typer.Option("--mlflow", help="Also serve the MLflow UI (the track extra) and link to it.")] = False,
    mlflow_port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the MLflow UI with --mlflow.")] = 5000,
    data_dir: DataDirOpt = None,
) -> None:
    """Serve the web app (the app extra): draw digits for any model, train, watch and compare runs.

    Example: mlp-lab app --runs runs --port 8501
    """
    from mlp_lab.servers import Server, check_port_free, serve

    with user_errors():
        from mlp_lab.app.serve import app_command

        check_port_free(host, port)
        if mlflow:
            check_port_free("127.0.0.1", mlflow_port, "--mlflow-port")
        servers, mlflow_address = [], None
        if mlflow:
            from mlp_lab.tracking.store import ui_command

            mlflow_command, mlflow_address = ui_command(runs, mlflow_port)
            servers.append(Server("mlflow", mlflow_command))
        command, address, env = app_command(host, port, runs, _dirs(data_dir), mlflow_address)
        servers.append(Server("streamlit", command, env, quiet=True))
    out.print(f"mlp-lab app: {address}  (runs {runs}; Ctrl-C stops it)", highlight=False)
    if mlflow_address:
        out.print(f"MLflow UI: {mlflow_address}", highlight=False)
    raise typer.Exit(serve(servers))


@app.command()
def bench(
    config: Annotated[Path, typer.Argument(help="Config to benchmark.")] = Path("configs/baseline.yaml"),
    repeats: Annotated[int, typer.Option(min=1, help="Epochs timed per variant (median reported).")] = 3,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads [default: all cores].")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results here as JSON.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Epoch speed: mlp-lab's trainer vs the tutorial DataLoader pipeline vs the compute floor.

    Example: mlp-lab bench --repeats 3
    """
    with user_errors():
        cfg = load_config(config)
        from mlp_lab.bench import run_benchmark
        from mlp_lab.train import configure_threads

        configure_threads(threads)
        results = run_benchmark(cfg, repeats, _dirs(data_dir), log=lambda line: print(line, flush=True))
    if json_out is not None:
        import json

        json_out.write_text(json.dumps(results, indent=2, default=str) + "\n")


def main() -> None:
    """Console-script entry point."""
    # MLflow's usage telemetry stays off in mlp-lab's processes (and the servers they start)
    # unless the user turned it on (MLFLOW_DISABLE_TELEMETRY=false).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    app()
