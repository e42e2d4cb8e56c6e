"""What every `mlp-lab` verb shares: the typer app (with bad arguments as one `error:` line,
`--version`, `-h`), the consoles, the option types, `--json` output (`json_output`), the error
policy (`user_errors`), the executor a study's runs go to, and the per-epoch reporter.

Help texts escape a literal bracket as ``\\[`` (``"\\[default: 1]"``): rich reads an unescaped
``[default: 1]`` as markup and prints nothing of it. tests/cli/test_cli.py renders every help and fails
on a bracket that went missing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from mlp_lab.core.errors import MLPLabError, clip, memory_fault, os_fault, printable
from mlp_lab.core.usercode import UserCodeError, user_code_error

if TYPE_CHECKING:
    from mlp_lab.execution.executors import Executor
    from mlp_lab.studies.ablation import CompareResult, Study
    from mlp_lab.studies.suite import SuiteResult
    from mlp_lab.training.context import RunContext


class OneLineErrors(TyperGroup):
    """The command group, with a bad CLI argument (an unknown option, a value out of range) as one
    `error:` line and exit 2, like every other bad input, instead of click's usage panel."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        if argv[:1] == ["--show-completion"]:
            code = show_completion(self, argv[1:2], prog_name or "mlp-lab")
            if not standalone_mode:
                return code
            sys.exit(code)
        try:
            with library_notices():
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


COMPLETION_SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")  # the shells typer writes scripts for


def show_completion(group: TyperGroup, shell_arg: list[str], prog_name: str) -> int:
    """`--show-completion [SHELL]`: the completion script of the shell named, or else of the
    parent shell. typer's own flag takes no shell name and only detects the parent shell, so from
    `sh` (make's recipes, CI) it ended in "Shell sh not supported"; here that is one `error:` line
    that says how to get a script."""
    shell = shell_arg[0] if shell_arg else _parent_shell()
    if shell not in COMPLETION_SHELLS:
        err.print(
            f"error: --show-completion: no completion script for {shell or 'this shell'} (bash, zsh, fish and "
            f"powershell have one); name the shell: {prog_name} --show-completion bash (or zsh), or run "
            f"{prog_name} --install-completion from bash or zsh",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 2
    # The script comes from the completion variable the scripts themselves use (click's public
    # mechanism, in typer's `source_<shell>` form); set for this call only.
    complete_var = "_{}_COMPLETE".format(prog_name.replace("-", "_").upper())
    previous = os.environ.get(complete_var)
    os.environ[complete_var] = f"source_{shell}"
    try:
        super(OneLineErrors, group).main([], prog_name, complete_var)
    except SystemExit as exc:  # click exits once the script is printed
        return exc.code if isinstance(exc.code, int) else 0
    finally:
        if previous is None:
            os.environ.pop(complete_var, None)
        else:
            os.environ[complete_var] = previous
    return 0


def _parent_shell() -> str | None:
    """The name of the shell this command was started from, as typer finds it (shellingham)."""
    import shellingham

    try:
        return shellingham.detect_shell()[0]
    except shellingham.ShellDetectionFailure:
        return None


class _Stderr(logging.Handler):
    """A library notice as one plain line on stderr (whichever stderr is current: CliRunner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(record.getMessage(), markup=False, highlight=False, soft_wrap=True)


@contextmanager
def library_notices() -> Iterator[None]:
    """For one command: the library's INFO notices (which shipped file a name resolved to) on
    stderr. Removed afterwards, so the process's logging is left as found."""
    notices, handler = logging.getLogger("mlp_lab"), _Stderr(logging.INFO)
    level = notices.level
    notices.addHandler(handler)
    notices.setLevel(logging.INFO)
    try:
        yield
    finally:
        notices.removeHandler(handler)
        notices.setLevel(level)


app = typer.Typer(
    name="mlp-lab",
    help="Fast, reproducible MLP ablation studies on FashionMNIST, MNIST and CIFAR-10.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},  # the commands inherit it
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)
# No emoji codes: a user's names reach these lines (`bad.py:Boom:` would print a 💥 for ":Boom:").
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)


def _print_version(value: bool) -> None:
    if value:
        from mlp_lab import __version__

        print(f"mlp-lab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    # The group's own options; its help text is the app's.
    pass


ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML), e.g. configs/baseline.yaml.", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value, KEY=VALUE (repeatable), e.g. train.optimizer.lr=0.01."),
]
DataDirOpt = Annotated[
    list[Path] | None,
    typer.Option("--data-dir", help="Extra directory holding dataset files (repeatable); also $MLP_LAB_DATA."),
]

TrackOpt = Annotated[bool, typer.Option("--track", help="Also log to MLflow (the \\[track] extra); see mlp-lab ui.")]


class Backend(str, Enum):
    """Where the runs of compare, suite and search execute."""

    local = "local"
    ray = "ray"


BackendOpt = Annotated[
    Backend,
    typer.Option(
        "--backend", help="local: this machine's processes (--jobs). ray: one Ray task per run (the \\[ray] extra)."
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --backend ray: join this Ray cluster (e.g. auto, or HOST:6379; also $RAY_ADDRESS) "
        "\\[default: a local instance on 127.0.0.1 for this command].",
        show_default=False,
    ),
]
JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        min=1,
        help="Runs at once: local processes (torch threads are split) \\[default: 1]; with "
        "--backend ray, Ray tasks in flight \\[default: cluster CPUs / threads].",
        show_default=False,
    ),
]
RunThreadsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="torch threads (with ray: CPUs reserved) per run \\[default: CPU cores / jobs; ray: 1]. CPU "
        "results are bit-identical for the same thread count, so fix it to compare across settings.",
    ),
]
OutputDirOpt = Annotated[Path, typer.Option("--output-dir", help="Where runs and the default MLflow store live.")]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print the result as one JSON document on stdout; progress and messages go to stderr."),
]


@contextmanager
def _stdout_to_stderr() -> Iterator[Callable[[Any], None]]:
    """Everything printed goes to stderr, the process's file descriptor 1 included (so that the
    worker processes a command spawns, which inherit it, print there too); the function yielded
    writes one JSON document to the real stdout."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (typer's CliRunner, a notebook)
        fd = None
    if fd is None:
        real, saved = sys.stdout, None
    else:
        saved = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
        real = open(saved, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 (closed below)

    def emit(document: Any) -> None:
        real.write(json.dumps(document, indent=2, default=str) + "\n")
        real.flush()

    try:
        with redirect_stdout(sys.stderr):
            yield emit
    finally:
        sys.stderr.flush()
        if saved is not None:
            real.close()
            os.dup2(saved, fd)
            os.close(saved)


def json_output(ctx: typer.Context, enabled: bool) -> Callable[[Any], None]:
    """For a command's --json: with it, whatever the command prints until it ends (progress,
    messages, errors) goes to stderr, and the returned function writes the result as one JSON
    document on stdout; without it, the function does nothing. Tied to the command's context,
    so that the redirect ends with the command however it ends."""
    if not enabled:
        return lambda document: None
    return ctx.with_resource(_stdout_to_stderr())


def data_dirs(data_dir: list[Path] | None) -> tuple[str, ...]:
    """--data-dir values as the library takes them; one that is not a directory is a typo."""
    from mlp_lab.service.checks import data_dirs as checked

    return checked(data_dir)


def print_error(exc: MLPLabError) -> None:
    """An error as `error:` lines on stderr, one per problem."""
    # Split on newlines only: the problems are joined by them, and any other line break (a "\r"
    # in a key) is part of a problem's text, escaped by `printable`.
    for line in str(exc).split("\n") if str(exc) else [type(exc).__name__]:
        err.print(f"error: {printable(line)}", markup=False, highlight=False, soft_wrap=True)


def log(line: str) -> None:
    """A progress line from the library (a run done, a trial pruned), on stdout as it comes."""
    print(line, flush=True)


def say(line: str) -> None:
    """One line of ours on stdout, printed as it is (no rich markup or highlighting)."""
    out.print(line, highlight=False, markup=False)


def warn(line: str) -> None:
    """One warning line on stderr, printed as it is (control characters escaped)."""
    err.print(printable(line), highlight=False, markup=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Print MLPLabError as plain lines on stderr and exit 2 (bad input); a fault of the machine
    (a full disk, a read-only or vanished directory, memory) as one line and exit 3."""
    try:
        yield
    except UserCodeError as exc:
        print_user_code_error(exc)
        raise typer.Exit(exc.exit_code) from None
    except MLPLabError as exc:
        print_error(exc)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:
        # An exception raised in the user's own code (a model's forward, a data callable): its
        # frames are the one traceback we show. Anything else is ours, or the machine's.
        user = user_code_error(exc)
        if user is not None:
            print_user_code_error(user)
            raise typer.Exit(user.exit_code) from None
        if isinstance(exc, OSError):
            fault = os_fault(exc, "then run the command again")
            print_error(fault)
            raise typer.Exit(fault.exit_code) from None
        fault = (
            memory_fault(exc, "then run the command again") if isinstance(exc, (MemoryError, RuntimeError)) else None
        )
        if fault is None:
            raise
        print_error(fault)
        raise typer.Exit(fault.exit_code) from None


def print_user_code_error(exc: UserCodeError) -> None:
    """The user's frames of the traceback, then the `error:` line naming their file and line."""
    if exc.user_traceback:
        err.print(exc.user_traceback.rstrip(), markup=False, highlight=False, soft_wrap=True)
    print_error(exc)


@contextmanager
def executor_for(
    backend: Backend,
    address: str | None,
    jobs: int | None,
    threads: int | None,
    data_dir: list[Path] | None,
    stop: Callable[[], bool] | None,
) -> Iterator[tuple[Executor, RunContext]]:
    """The executor a command's runs go to (this machine's, or Ray's inside a Ray session) and
    the context they run with: the --data-dir directories, --threads, the progress on stdout,
    the stop request, tracking."""
    from mlp_lab.service.context import executor_for as service_executor
    from mlp_lab.service.context import run_context

    context = run_context(data_dirs=data_dirs(data_dir), threads=threads, log=log, stop=stop)
    with service_executor(backend.value, address, jobs, context) as executor:
        yield executor, context


def require_backend(backend: Backend, address: str | None) -> None:
    """A missing [ray] extra, or --address without ray, is reported before anything is printed or created."""
    from mlp_lab.service.checks import require_backend as check

    check(backend.value, address)


def check_runtime(studies: Sequence[Study], backend: Backend = Backend.local) -> None:
    """Machine-dependent config errors (a GPU asked for but absent) in any arm, before any run
    (with ray, the GPUs that count are the cluster's)."""
    from mlp_lab.service.checks import check_studies

    check_studies(studies, backend.value)


@contextmanager
def epoch_reporter(
    description: str, total_epochs: int, done_epochs: int = 0
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A callback for per-epoch records: a rich progress bar on a terminal, plain lines otherwise."""
    if not out.is_terminal:
        from mlp_lab.service.context import epoch_line

        yield lambda record: print(f"{description}  {epoch_line(record)}", flush=True)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(description, total=total_epochs, completed=done_epochs, status="")

        def report(record: dict[str, Any]) -> None:
            progress.update(
                task,
                completed=record["epoch"],
                status=f"val/acc {record['val/acc']:.4f}  val/loss {record['val/loss']:.4f}",
            )

        yield report


def report_busy_and_failed(result: CompareResult | SuiteResult, what: str) -> None:
    """After compare or suite: runs left to another process, then failures (exit 1 if any)."""
    if result.busy:
        out.print(
            f"{len(result.busy)} run(s) were being trained by another process; run this again when it "
            f"finishes to complete {what}.",
            highlight=False,
        )
    if result.failures:
        err.print(f"{len(result.failures)} run(s) failed:", highlight=False)
        for failure in result.failures:
            err.print(f"  {failure.label}: {failure.error}", highlight=False, markup=False)
        from mlp_lab.service.checks import fault_error

        fault = fault_error(result.failures, "run the same command again")
        if fault is not None:  # one line for the machine's fault; the runs resume from their last checkpoints
            print_error(fault)
            raise typer.Exit(fault.exit_code)
        raise typer.Exit(1)


def parse_seeds(text: str | None) -> list[int] | None:
    """--seeds 0,1,2 as a list; None when not given."""
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise MLPLabError(f"--seeds {text}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise MLPLabError(f"--seeds {text!r}: give at least one seed")
    return seeds
