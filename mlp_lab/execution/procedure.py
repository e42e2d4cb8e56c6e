"""The one procedure that runs a run (`run_locked`) and its entry points.

`run_locked` trains one config into one run directory under that directory's lock, with one
failure policy (busy, interrupted, failed, fault, bug: what each raises and leaves on disk).
Everything that runs a run goes through it: `start_run` and `resume_run` (`mlp-lab run`, and
so the app's Train form) raise its failures; `run_one` (compare, search, Ray workers) trains,
continues or skips one `RunSpec` and tells them as a typed `RunOutcome`. What a run takes from
its caller (data directories, threads, log, per-epoch callback, stop request, loggers) is one
`RunContext`. The executors that call `run_one` for many specs are in `executors`.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.schema import Config, DataConfig
from mlp_lab.core.errors import MachineFault, MLPLabError, memory_fault, os_fault
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.training.context import RunContext

# The file a run's directory keeps the traceback of a bug in.
ERROR_FILE = "error.txt"

# What a call of run_one did with its run.
Action = Literal["trained", "resumed", "skipped", "interrupted", "halted", "none"]


class EpochHook(Protocol):
    """Watches one run from inside the process that trains it (a search trial's pruning check).

    Carried by the RunSpec, so it must pickle: an executor may ship the spec to another process
    or machine. `on_epoch` gets each epoch's record; when `should_stop` turns true the run stops
    at the next batch boundary (last.pt saved) and its outcome's action is "halted".
    """

    def on_epoch(self, record: dict[str, Any]) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass(frozen=True)
class RunSpec:
    """One run to make: its config (seed and name set), its directory, a label for messages and
    tags that say where it belongs (a study's name and arm, a search's trial), and optionally a
    hook that watches its epochs."""

    label: str
    config: Config
    run_dir: Path
    tags: Mapping[str, str] = field(default_factory=dict)
    hook: EpochHook | None = None

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def arm(self) -> str | None:
        return self.tags.get("arm")

    def status(self) -> RunStatus:
        """Where this run's directory stands relative to this spec's config."""
        return rundir.run_status(self.run_dir, config_hash(self.config))


@dataclass(frozen=True)
class RunOutcome:
    """What `run_one` did (`action`) and where the run stands afterwards (`status`)."""

    label: str
    status: RunStatus
    action: Action
    summary: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    fault: bool = False  # failed for the machine's reason (disk full, memory), not the run's own

    def describe(self) -> str:
        """One line for a progress log: status, action and the test accuracy or the error."""
        detail = (
            f"test/acc {self.summary['test/acc']:.4f}" if self.summary and "test/acc" in self.summary else self.error
        )
        return f"{self.label}: {self.status} ({self.action}{f'; {detail}' if detail else ''})"


@functools.lru_cache(maxsize=2)
def _load_data_cached(data_json: str, device: str, data_dirs: tuple[str, ...]):
    # The runs of a study share their dataset: load it once per process. The tensors are never
    # written to, so sharing them between runs cannot leak one run into another.
    from mlp_lab.data.load import load_data

    return load_data(DataConfig.model_validate_json(data_json), device, data_dirs)


# What the one procedure does with a run directory that already holds something.
Existing = Literal["refuse", "resume", "reuse"]


@dataclass(frozen=True)
class RunResult:
    """A run the procedure finished (or found finished): where it lives, its summary.json, and
    whether it was trained, resumed or skipped."""

    run_dir: Path
    summary: dict[str, Any]
    action: Action = "trained"


def _with_plugin_metrics(config: Config, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The metric plug-ins the config asks for (output.handwriting), scored once training has
    finished and added to summary.json, under the run's lock; a summary that has them is kept."""
    from mlp_lab.inspect.plugins import add_plugin_metrics

    return add_plugin_metrics(config, run_dir, summary)


def _is_bug(exc: BaseException) -> bool:
    """A failure that is neither the run's own (an MLPLabError: bad input, divergence) nor the
    machine's (a file-system error, memory): a bug, whose trace the run directory keeps."""
    return isinstance(exc, Exception) and not isinstance(exc, (MLPLabError, OSError)) and memory_fault(exc) is None


def run_locked(
    spec: RunSpec,
    context: RunContext,
    *,
    existing: Existing,
    force: bool = False,
    lock_note: str = "",
    on_start: Callable[[], None] | None = None,
) -> RunResult:
    """The one procedure that runs a run, behind `mlp-lab run` (`start_run`, `resume_run`), the
    app's Train form (which runs `mlp-lab run`), and compare, search and Ray (`run_one`).

    Under the spec's run directory's lock (`rundir.RunLock`, `lock_note` written beside the pid),
    with the context's `threads` torch threads (None: as the process has them), it trains the
    spec's config into it, its tags given to the loggers, the rest of the `context` (data
    directories, per-epoch callback, stop request, loggers) to the trainer. What a directory that
    already holds something gets is `existing`: "refuse" (it must hold no run), "resume"
    (continue from last.pt; a finished run returns its summary) or "reuse" (a study's run: a
    finished or failed run of this config is skipped, a partial one continued, one of another
    config moved aside to `<dir>.old-<time>`; with `force`, deleted first). `on_start` is called
    once the lock is held.

    The failure policy, the same for every caller, which raises:
    busy -> `rundir.RunLocked`, nothing touched; interrupted -> `TrainingInterrupted`, last.pt
    saved; failed (an MLPLabError, e.g. divergence, whose summary.json says so) and fault (a
    file-system error, memory) -> raised as they are, what the run wrote kept for a resume; a
    bug -> raised, its traceback kept in `error.txt`. A run that failed before writing anything
    leaves no directory and no lock file behind.
    """
    from mlp_lab.inspect.plots import curves_logger
    from mlp_lab.inspect.plugins import plugin_logger
    from mlp_lab.training.runtime import resolve_device, torch_threads
    from mlp_lab.training.trainer import TrainingInterrupted, train

    config, run_dir, log = spec.config, spec.run_dir, context.log
    lock = rundir.RunLock(run_dir, lock_note).acquire()
    failed = True
    try:
        with torch_threads(context.threads) if context.threads else contextlib.nullcontext():
            if on_start is not None:
                on_start()
            resuming = existing == "resume"
            if resuming and rundir.run_status(run_dir) == RunStatus.DONE:
                failed = False
                return RunResult(
                    run_dir, _with_plugin_metrics(config, run_dir, rundir.read_summary(run_dir)), "skipped"
                )
            if existing == "reuse":
                # The status is read under the lock: another process may have just finished this run.
                status = rundir.run_status(run_dir, config_hash(config))
                if force and run_dir.exists():
                    shutil.rmtree(run_dir)
                    status = RunStatus.NEW
                if status in (RunStatus.DONE, RunStatus.FAILED):
                    failed = False
                    return RunResult(
                        run_dir, _with_plugin_metrics(config, run_dir, rundir.read_summary(run_dir)), "skipped"
                    )
                if status == RunStatus.STALE:
                    # The study changed since this run was made: keep the old run, out of the way.
                    aside = run_dir.with_name(f"{run_dir.name}.old-{int(time.time())}")
                    run_dir.rename(aside)
                    log(f"{run_dir} was made with another config; moved to {aside}")
                resuming = status == RunStatus.PARTIAL
            device = resolve_device(config.train.device)
            data = _load_data_cached(config.data.model_dump_json(), str(device), tuple(map(str, context.data_dirs)))
            # The run's figure (curves.png) and its plug-in scores are made when its summary is
            # written, by sinks ahead of the context's own: MLflow's copies the run's files.
            drawn = context.but(loggers=(curves_logger, plugin_logger, *context.loggers))
            summary = train(config, run_dir, resume=resuming, data=data, context=drawn, tags=spec.tags)
            summary = _with_plugin_metrics(config, run_dir, summary)
            failed = False
            return RunResult(run_dir, summary, "resumed" if resuming else "trained")
    except TrainingInterrupted:
        failed = False
        raise
    except BaseException as exc:
        if _is_bug(exc):
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / ERROR_FILE).write_text(traceback.format_exc())
            except OSError:
                pass  # the bug is still raised; only its copy on disk is lost
        raise
    finally:
        if failed:
            # Before the lock is let go, so no other process can have taken the lock file.
            rundir.remove_if_empty(run_dir)
        lock.release()


def start_run(
    config: Config,
    context: RunContext | None = None,
    *,
    run_dir: str | Path | None = None,
    source: str = "config",
    on_start: Callable[[Path, bool], None] | None = None,
) -> RunResult:
    """Start a fresh run (`mlp-lab run`): pick its directory (`<output.dir>/<name>`, else
    `<name>-2`, ... unless `run_dir` is given, which must be new or empty) and run it through
    `run_locked` with the context's torch threads (default: every core), restored after.
    `on_start(run_dir, renamed)` is called once the directory is chosen and locked.

    Machine-dependent config errors (a GPU asked for but absent) are raised as a ConfigError
    naming `source` before any directory is made.
    """
    from mlp_lab.training.runtime import available_cores, check_runtime

    context = context or RunContext()
    check_runtime(config, source)
    if run_dir is None:
        run_dir, renamed = rundir.fresh_run_dir(config.output.dir, config.name)
    else:
        run_dir, renamed = Path(run_dir), False
        if run_dir.exists() and not run_dir.is_dir():
            raise MLPLabError(f"{run_dir}: is a file, expected a new or empty run directory")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise MLPLabError(f"{run_dir}: already exists and is not empty; pick another directory")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_fault(exc, key="run directory") from None
    announce = None if on_start is None else functools.partial(on_start, run_dir, renamed)
    return run_locked(
        RunSpec(config.name, config, run_dir),
        context.but(threads=context.threads or available_cores()),
        existing="refuse",
        on_start=announce,
    )


def resume_run(run_dir: str | Path, context: RunContext | None = None) -> RunResult:
    """Continue an interrupted run from its directory (its own config.yaml and last.pt) through
    `run_locked`; a finished run returns its summary without training."""
    from mlp_lab.config.load import load_config
    from mlp_lab.training.runtime import available_cores, check_runtime

    context = context or RunContext()
    run_dir = Path(run_dir)
    config_path = run_dir / rundir.CONFIG_FILE
    if not config_path.is_file():
        raise rundir.not_a_run_directory(run_dir)
    config = load_config(config_path)
    check_runtime(config, str(config_path))
    return run_locked(
        RunSpec(config.name, config, run_dir),
        context.but(threads=context.threads or available_cores()),
        existing="resume",
    )


def run_one(
    spec: RunSpec, context: RunContext | None = None, *, force: bool = False, lock_note: str = ""
) -> RunOutcome:
    """One spec through `run_locked` (a study's run: skipped, continued, or trained), its
    failures told as a `RunOutcome`; never raises for a failed run, so one run cannot take a
    study down. The context's `log` gets a line per epoch; its `threads` are left to the
    executor that calls this. `lock_note` is written into the lock file beside the pid (see
    `rundir.RunLock`).
    """
    from mlp_lab.training.trainer import TrainingInterrupted

    started = time.perf_counter()

    def outcome(
        status: RunStatus,
        action: Action,
        summary: dict[str, Any] | None = None,
        error: str | None = None,
        fault: bool = False,
    ) -> RunOutcome:
        return RunOutcome(spec.label, status, action, summary, error, time.perf_counter() - started, fault)

    context = context or RunContext()
    log, stop, hook = context.log, context.stop, spec.hook

    def report(record: dict[str, Any]) -> None:
        log(
            f"{spec.label}  epoch {record['epoch']}/{record['epochs']}  val/acc {record['val/acc']:.4f}  "
            f"val/loss {record['val/loss']:.4f}"
        )
        if hook is not None:
            hook.on_epoch(record)

    should_stop = stop
    if hook is not None:

        def should_stop() -> bool:
            return bool(stop is not None and stop()) or hook.should_stop()

    try:
        result = run_locked(
            spec,
            context.but(threads=None, on_epoch=report, stop=should_stop, log=lambda line: log(f"{spec.label}: {line}")),
            existing="reuse",
            force=force,
            lock_note=lock_note,
        )
    except rundir.RunLocked as exc:
        return outcome(RunStatus.BUSY, "none", error=f"being trained by process {exc.pid}")
    except TrainingInterrupted:
        if hook is not None and hook.should_stop() and not (stop is not None and stop()):
            return outcome(RunStatus.PARTIAL, "halted", error="stopped by its hook")
        return outcome(RunStatus.PARTIAL, "interrupted", error="interrupted")
    except MachineFault as exc:
        return outcome(RunStatus.FAILED, "trained", error=str(exc), fault=True)
    except MLPLabError as exc:
        return outcome(RunStatus.FAILED, "trained", _read_summary(spec.run_dir), str(exc))
    except OSError as exc:
        # The machine's fault (a full disk, a vanished directory): the run resumes from its
        # last checkpoint once it is fixed.
        return outcome(RunStatus.FAILED, "trained", error=str(os_fault(exc)), fault=True)
    except Exception as exc:
        fault = memory_fault(exc)
        if fault is not None:
            return outcome(RunStatus.FAILED, "trained", error=str(fault), fault=True)
        return outcome(
            RunStatus.FAILED, "trained", error=f"{type(exc).__name__}: {exc} (traceback in {spec.run_dir / ERROR_FILE})"
        )
    if result.action == "skipped":
        status = RunStatus.DONE if result.summary.get("status") == "completed" else RunStatus.FAILED
        return outcome(status, "skipped", result.summary, result.summary.get("error"))
    return outcome(RunStatus.DONE, result.action, result.summary)


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return rundir.read_summary(run_dir)
    except (OSError, ValueError):
        return None
