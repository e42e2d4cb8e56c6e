"""Running runs: the one procedure that runs a run (`run_locked`), its entry points, and the
executors that schedule many.

`run_locked` trains one config into one run directory under that directory's lock, with one
failure policy (busy, interrupted, failed, fault, bug: what each raises and leaves on disk).
Everything that runs a run goes through it: `start_run` and `resume_run` (`mlp-lab run`, and
so the app's Train form) raise its failures; `run_one` (compare, search, Ray workers) trains,
continues or skips one `RunSpec` and tells them as a typed `RunOutcome`. An executor takes a
list of specs and calls `run_one` for each: `SerialExecutor` in this process,
`ProcessPoolExecutor` in spawned worker processes. Both follow the small `Executor` protocol, so
`compare` (and `search`) do not know which one runs them, and a cluster executor can be added
beside them.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.schema import Config, DataConfig
from mlp_lab.core.errors import MachineFault, MLPLabError, memory_fault, os_fault
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus

if TYPE_CHECKING:  # the loggers import torch; this module is imported before torch is needed
    from mlp_lab.training.loggers import MetricLogger

# The file a run's directory keeps the traceback of a bug in.
ERROR_FILE = "error.txt"

# What a call of run_one did with its run.
Action = Literal["trained", "resumed", "skipped", "interrupted", "halted", "none"]
OnOutcome = Callable[[int, "RunOutcome"], None]


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


def _is_bug(exc: BaseException) -> bool:
    """A failure that is neither the run's own (an MLPLabError: bad input, divergence) nor the
    machine's (a file-system error, memory): a bug, whose trace the run directory keeps."""
    return isinstance(exc, Exception) and not isinstance(exc, (MLPLabError, OSError)) and memory_fault(exc) is None


def run_locked(
    config: Config,
    run_dir: str | Path,
    *,
    existing: Existing,
    force: bool = False,
    data_dirs: Sequence[str] = (),
    threads: int | None = None,
    lock_note: str = "",
    on_start: Callable[[], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    loggers: Sequence[MetricLogger] = (),
    tags: Mapping[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """The one procedure that runs a run, behind `mlp-lab run` (`start_run`, `resume_run`), the
    app's Train form (which runs `mlp-lab run`), and compare, search and Ray (`run_one`).

    Under `run_dir`'s lock (`rundir.RunLock`, `lock_note` written beside the pid), with
    `threads` torch threads (None: as the process has them), it trains `config` into `run_dir`.
    What a directory that already holds something gets is `existing`: "refuse" (it must hold no
    run), "resume" (continue from last.pt; a finished run returns its summary) or "reuse" (a
    study's run: a finished or failed run of this config is skipped, a partial one continued,
    one of another config moved aside to `<dir>.old-<time>`; with `force`, deleted first).
    `on_start` is called once the lock is held.

    The failure policy, the same for every caller, which raises:
    busy -> `rundir.RunLocked`, nothing touched; interrupted -> `TrainingInterrupted`, last.pt
    saved; failed (an MLPLabError, e.g. divergence, whose summary.json says so) and fault (a
    file-system error, memory) -> raised as they are, what the run wrote kept for a resume; a
    bug -> raised, its traceback kept in `error.txt`. A run that failed before writing anything
    leaves no directory and no lock file behind.
    """
    from mlp_lab.inspect.plots import CurvesFigure
    from mlp_lab.training.runtime import resolve_device, torch_threads
    from mlp_lab.training.trainer import TrainingInterrupted, train

    run_dir = Path(run_dir)
    lock = rundir.RunLock(run_dir, lock_note).acquire()
    failed = True
    try:
        with torch_threads(threads) if threads else contextlib.nullcontext():
            if on_start is not None:
                on_start()
            resuming = existing == "resume"
            if resuming and rundir.run_status(run_dir) == RunStatus.DONE:
                failed = False
                return RunResult(run_dir, rundir.read_summary(run_dir), "skipped")
            if existing == "reuse":
                # The status is read under the lock: another process may have just finished this run.
                status = rundir.run_status(run_dir, config_hash(config))
                if force and run_dir.exists():
                    shutil.rmtree(run_dir)
                    status = RunStatus.NEW
                if status in (RunStatus.DONE, RunStatus.FAILED):
                    failed = False
                    return RunResult(run_dir, rundir.read_summary(run_dir), "skipped")
                if status == RunStatus.STALE:
                    # The study changed since this run was made: keep the old run, out of the way.
                    aside = run_dir.with_name(f"{run_dir.name}.old-{int(time.time())}")
                    run_dir.rename(aside)
                    log(f"{run_dir} was made with another config; moved to {aside}")
                resuming = status == RunStatus.PARTIAL
            device = resolve_device(config.train.device)
            data = _load_data_cached(config.data.model_dump_json(), str(device), tuple(map(str, data_dirs)))
            # The run's figure (curves.png) is drawn here, above the trainer, when its summary is
            # written: first among the sinks, so those that copy the run's files find it.
            summary = train(
                config,
                run_dir,
                resume=resuming,
                data=data,
                on_epoch=on_epoch,
                should_stop=should_stop,
                loggers=[CurvesFigure(run_dir, config.name, config.seed), *loggers],
                tags=tags,
            )
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
    *,
    run_dir: str | Path | None = None,
    source: str = "config",
    data_dirs: Sequence[str] = (),
    threads: int | None = None,
    on_start: Callable[[Path, bool], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    loggers: Sequence[MetricLogger] = (),
) -> RunResult:
    """Start a fresh run (`mlp-lab run`): pick its directory (`<output.dir>/<name>`, else
    `<name>-2`, ... unless `run_dir` is given, which must be new or empty) and run it through
    `run_locked` with `threads` torch threads (default: every core), restored after.
    `on_start(run_dir, renamed)` is called once the directory is chosen and locked.

    Machine-dependent config errors (a GPU asked for but absent) are raised as a ConfigError
    naming `source` before any directory is made.
    """
    from mlp_lab.training.runtime import available_cores, check_runtime

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
        config,
        run_dir,
        existing="refuse",
        data_dirs=data_dirs,
        threads=threads or available_cores(),
        on_start=announce,
        on_epoch=on_epoch,
        should_stop=should_stop,
        loggers=loggers,
    )


def resume_run(
    run_dir: str | Path,
    *,
    data_dirs: Sequence[str] = (),
    threads: int | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    loggers: Sequence[MetricLogger] = (),
) -> RunResult:
    """Continue an interrupted run from its directory (its own config.yaml and last.pt) through
    `run_locked`; a finished run returns its summary without training."""
    from mlp_lab.config.load import load_config
    from mlp_lab.training.runtime import available_cores, check_runtime

    run_dir = Path(run_dir)
    config_path = run_dir / rundir.CONFIG_FILE
    if not config_path.is_file():
        raise rundir.not_a_run_directory(run_dir)
    config = load_config(config_path)
    check_runtime(config, str(config_path))
    return run_locked(
        config,
        run_dir,
        existing="resume",
        data_dirs=data_dirs,
        threads=threads or available_cores(),
        on_epoch=on_epoch,
        should_stop=should_stop,
        loggers=loggers,
    )


def run_one(
    spec: RunSpec,
    *,
    data_dirs: Sequence[str] = (),
    force: bool = False,
    stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    lock_note: str = "",
) -> RunOutcome:
    """One spec through `run_locked` (a study's run: skipped, continued, or trained), its
    failures told as a `RunOutcome`; never raises for a failed run, so one run cannot take a
    study down. `lock_note` is written into the lock file beside the pid (see `rundir.RunLock`).
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

    hook = spec.hook

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
            spec.config,
            spec.run_dir,
            existing="reuse",
            force=force,
            data_dirs=data_dirs,
            lock_note=lock_note,
            on_epoch=report,
            should_stop=should_stop,
            tags=spec.tags,
            log=lambda line: log(f"{spec.label}: {line}"),
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


def estimated_cost(config: Config) -> int:
    """Relative training cost of a run: multiply-accumulates per example x epochs."""
    from mlp_lab.config.datasets import DATASETS
    from mlp_lab.models.registry import model_macs

    spec = DATASETS[config.data.dataset]
    return model_macs(config.model, spec.image_shape, len(spec.classes)) * config.train.epochs


def longest_first(specs: Sequence[RunSpec]) -> list[int]:
    """Indices of `specs`, most expensive first: a big run started last would leave the other
    workers idle at the end."""
    return sorted(range(len(specs)), key=lambda i: -estimated_cost(specs[i].config))


class Executor(Protocol):
    """Runs specs through `run_one` and reports each outcome as it arrives, with the spec's
    index. Returns when every spec has an outcome or, after `stop()` turned true, when the runs
    under way have stopped at a batch boundary (their last.pt saved); runs not started then get
    no outcome."""

    threads: int  # torch threads each run uses: CPU results are bit-identical for equal counts

    def run(
        self,
        specs: Sequence[RunSpec],
        on_outcome: OnOutcome,
        *,
        data_dirs: Sequence[str] = (),
        force: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> None: ...


class SerialExecutor:
    """One run after another in this process, with `threads` torch threads (restored after)."""

    def __init__(self, threads: int | None = None, log: Callable[[str], None] = print):
        from mlp_lab.training.runtime import available_cores

        self.threads = threads or available_cores()
        self.log = log

    def run(
        self,
        specs: Sequence[RunSpec],
        on_outcome: OnOutcome,
        *,
        data_dirs: Sequence[str] = (),
        force: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        from mlp_lab.training.runtime import torch_threads

        with torch_threads(self.threads):
            for index, spec in enumerate(specs):
                if stop is not None and stop():
                    return
                outcome = run_one(spec, data_dirs=data_dirs, force=force, stop=stop, log=self.log)
                on_outcome(index, outcome)
                if outcome.action == "interrupted":
                    return


class _Throttled:
    """Calls `check` at most every `interval` seconds and remembers a True: the trainer polls its
    stop callable every batch, and asking another process that often would cost time."""

    def __init__(self, check: Callable[[], bool], interval: float = 0.2):
        self.check, self.interval = check, interval
        self.next_check, self.stopped = 0.0, False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.stopped and now >= self.next_check:
            self.next_check = now + self.interval
            try:
                self.stopped = bool(self.check())
            except (OSError, EOFError):  # the parent's event manager is gone: so is the parent
                self.stopped = True
        return self.stopped


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # The parent decides when to stop and tells the workers through the stop event, so a
    # terminal's Ctrl-C (sent to the whole process group) must not kill them. SIGTERM keeps its
    # default: the pool's own clean-up of a broken pool relies on it, and a worker killed by it
    # still leaves an intact last.pt (from its last completed epoch).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _quiet(line: str) -> None:
    pass


def _pool_task(spec: RunSpec, data_dirs: tuple[str, ...], force: bool, stop_event, quiet: bool) -> RunOutcome:
    # The worker's own per-epoch lines, on its stdout (a log callable of the parent's would not pickle).
    log = _quiet if quiet else functools.partial(print, flush=True)
    return run_one(spec, data_dirs=data_dirs, force=force, stop=_Throttled(stop_event.is_set), log=log)


class ProcessPoolExecutor:
    """`jobs` runs at a time in spawned worker processes, longest first, `threads` torch threads each.

    spawn, not fork: a forked child inherits torch's thread pools and locks in unknown states.
    The stop request reaches the workers through a manager's event, handed to each task with its
    arguments, so no process keeps module-level state about it.
    """

    def __init__(self, jobs: int, threads: int | None = None, quiet: bool = False):
        from mlp_lab.training.runtime import available_cores

        self.jobs = max(1, jobs)
        self.threads = threads or max(1, available_cores() // self.jobs)
        self.quiet = quiet  # the workers print nothing (the Python API's default)

    def run(
        self,
        specs: Sequence[RunSpec],
        on_outcome: OnOutcome,
        *,
        data_dirs: Sequence[str] = (),
        force: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures import ProcessPoolExecutor as Pool
        from multiprocessing.managers import SyncManager

        context = multiprocessing.get_context("spawn")
        dirs = tuple(map(str, data_dirs))
        manager = SyncManager(ctx=context)
        # Like the workers, the manager ignores a terminal's Ctrl-C: it must outlive the stop.
        manager.start(_ignore_sigint)
        try:
            stop_event = manager.Event()
            with Pool(self.jobs, mp_context=context, initializer=_worker_init, initargs=(self.threads,)) as pool:
                queue, pending, stopping = longest_first(specs), {}, False
                while queue or pending:
                    while queue and len(pending) < self.jobs and not stopping:
                        index = queue.pop(0)
                        pending[pool.submit(_pool_task, specs[index], dirs, force, stop_event, self.quiet)] = index
                    if stop is not None and stop() and not stopping:
                        stopping = True
                        queue.clear()
                        for future in pending:
                            future.cancel()
                        # Whether the signal reached only this process or the whole group, the
                        # workers stop at their next batch boundary and save last.pt.
                        stop_event.set()
                    finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in finished:
                        index = pending.pop(future)
                        if future.cancelled():
                            continue
                        try:
                            outcome = future.result()
                        except Exception as exc:  # the worker process itself died
                            outcome = RunOutcome(
                                specs[index].label, RunStatus.FAILED, "trained", error=f"worker died: {exc}"
                            )
                        on_outcome(index, outcome)
        finally:
            manager.shutdown()


def local_executor(jobs: int = 1, threads: int | None = None, log: Callable[[str], None] = print) -> Executor:
    """The executor for this machine: serial for one job, a process pool for more."""
    return SerialExecutor(threads, log) if jobs <= 1 else ProcessPoolExecutor(jobs, threads)
