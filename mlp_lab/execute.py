"""Running many runs: one run's procedure (`run_one`) and the executors that schedule it.

`run_one` trains, continues or skips one `RunSpec` under its run directory's lock and returns a
typed `RunOutcome`; it never raises for a failed run. An executor takes a list of specs and
calls `run_one` for each: `SerialExecutor` in this process, `ProcessPoolExecutor` in spawned
worker processes. Both follow the small `Executor` protocol, so `compare` (and `search`) do not
know which one runs them, and a cluster executor can be added beside them.
"""

from __future__ import annotations

import functools
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from mlp_lab import rundir
from mlp_lab.config import Config, DataConfig, MachineFault, MLPLabError, config_hash, memory_fault, os_fault
from mlp_lab.rundir import RunStatus

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
        detail = f"test/acc {self.summary['test/acc']:.4f}" if self.summary and "test/acc" in self.summary else self.error
        return f"{self.label}: {self.status} ({self.action}{f'; {detail}' if detail else ''})"


@functools.lru_cache(maxsize=2)
def _load_data_cached(data_json: str, device: str, data_dirs: tuple[str, ...]):
    # The runs of a study share their dataset: load it once per process. The tensors are never
    # written to, so sharing them between runs cannot leak one run into another.
    from mlp_lab.data import load_data

    return load_data(DataConfig.model_validate_json(data_json), device, data_dirs)


def run_one(spec: RunSpec, *, data_dirs: Sequence[str] = (), force: bool = False,
            stop: Callable[[], bool] | None = None, log: Callable[[str], None] = print,
            lock_note: str = "") -> RunOutcome:
    """Train (or skip, or continue) one run under its lock; never raises for a failed run.

    A run locked by another live process is left to it (BUSY). A finished run of the same
    config is skipped, a partial one continued from last.pt, one made with another config moved
    aside to `<dir>.old-<time>`. With `force`, an existing run is deleted and trained anew.
    `lock_note` is written into the lock file beside the pid (see `rundir.RunLock`).
    """
    from mlp_lab.train import TrainingInterrupted, resolve_device, train

    started = time.perf_counter()
    config = spec.config

    def outcome(status: RunStatus, action: Action, summary: dict[str, Any] | None = None,
                error: str | None = None, fault: bool = False) -> RunOutcome:
        return RunOutcome(spec.label, status, action, summary, error, time.perf_counter() - started, fault)

    try:
        lock = rundir.RunLock(spec.run_dir, lock_note).acquire()
    except rundir.RunLocked as exc:
        return outcome(RunStatus.BUSY, "none", error=f"being trained by process {exc.pid}")
    try:
        # The status is read under the lock: another process may have just finished this run.
        status = spec.status()
        if force and spec.run_dir.exists():
            shutil.rmtree(spec.run_dir)
            status = RunStatus.NEW
        if status in (RunStatus.DONE, RunStatus.FAILED):
            summary = rundir.read_json(spec.run_dir / rundir.SUMMARY_FILE)
            return outcome(status, "skipped", summary, summary.get("error"))
        if status == RunStatus.STALE:
            # The study changed since this run was made: keep the old run, out of the way.
            aside = spec.run_dir.with_name(f"{spec.run_dir.name}.old-{int(time.time())}")
            spec.run_dir.rename(aside)
            log(f"{spec.label}: {spec.run_dir} was made with another config; moved to {aside}")
        resuming = status == RunStatus.PARTIAL
        device = resolve_device(config.train.device)
        data = _load_data_cached(config.data.model_dump_json(), str(device), tuple(map(str, data_dirs)))

        hook = spec.hook

        def report(record: dict[str, Any]) -> None:
            log(f"{spec.label}  epoch {record['epoch']}/{record['epochs']}  val/acc {record['val/acc']:.4f}  "
                f"val/loss {record['val/loss']:.4f}")
            if hook is not None:
                hook.on_epoch(record)

        should_stop = stop
        if hook is not None:
            def should_stop() -> bool:
                return bool(stop is not None and stop()) or hook.should_stop()

        summary = train(config, spec.run_dir, resume=resuming, data=data, on_epoch=report, should_stop=should_stop,
                        tags=spec.tags)
        return outcome(RunStatus.DONE, "resumed" if resuming else "trained", summary)
    except TrainingInterrupted:
        if hook is not None and hook.should_stop() and not (stop is not None and stop()):
            return outcome(RunStatus.PARTIAL, "halted", error="stopped by its hook")
        return outcome(RunStatus.PARTIAL, "interrupted", error="interrupted")
    except MachineFault as exc:
        return outcome(RunStatus.FAILED, "trained", error=str(exc), fault=True)
    except MLPLabError as exc:
        return outcome(RunStatus.FAILED, "trained", _read_summary(spec.run_dir), str(exc))
    except OSError as exc:
        # The machine's fault (a full disk, a vanished directory): writing an error.txt would
        # fail the same way, and the run resumes from its last checkpoint once it is fixed.
        return outcome(RunStatus.FAILED, "trained", error=str(os_fault(exc)), fault=True)
    except Exception as exc:
        fault = memory_fault(exc)
        if fault is not None:
            return outcome(RunStatus.FAILED, "trained", error=str(fault), fault=True)  # a bug in one run must not take the study down; keep its trace
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        (spec.run_dir / "error.txt").write_text(traceback.format_exc())
        return outcome(RunStatus.FAILED, "trained",
                       error=f"{type(exc).__name__}: {exc} (traceback in {spec.run_dir / 'error.txt'})")
    finally:
        lock.release()


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return rundir.read_json(run_dir / rundir.SUMMARY_FILE)
    except (OSError, ValueError):
        return None


def estimated_cost(config: Config) -> int:
    """Relative training cost of a run: multiply-accumulates per example x epochs."""
    from mlp_lab.datasets import DATASETS
    from mlp_lab.model import macs_per_example

    spec = DATASETS[config.data.dataset]
    c, h, w = spec.image_shape
    return macs_per_example(c * h * w, config.model.hidden_sizes, len(spec.classes)) * config.train.epochs


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

    def run(self, specs: Sequence[RunSpec], on_outcome: OnOutcome, *, data_dirs: Sequence[str] = (),
            force: bool = False, stop: Callable[[], bool] | None = None) -> None: ...


class SerialExecutor:
    """One run after another in this process, with `threads` torch threads (restored after)."""

    def __init__(self, threads: int | None = None, log: Callable[[str], None] = print):
        from mlp_lab.train import available_cores

        self.threads = threads or available_cores()
        self.log = log

    def run(self, specs: Sequence[RunSpec], on_outcome: OnOutcome, *, data_dirs: Sequence[str] = (),
            force: bool = False, stop: Callable[[], bool] | None = None) -> None:
        from mlp_lab.train import torch_threads

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


def _pool_task(spec: RunSpec, data_dirs: tuple[str, ...], force: bool, stop_event) -> RunOutcome:
    log = functools.partial(print, flush=True)
    return run_one(spec, data_dirs=data_dirs, force=force, stop=_Throttled(stop_event.is_set), log=log)


class ProcessPoolExecutor:
    """`jobs` runs at a time in spawned worker processes, longest first, `threads` torch threads each.

    spawn, not fork: a forked child inherits torch's thread pools and locks in unknown states.
    The stop request reaches the workers through a manager's event, handed to each task with its
    arguments, so no process keeps module-level state about it.
    """

    def __init__(self, jobs: int, threads: int | None = None):
        from mlp_lab.train import available_cores

        self.jobs = max(1, jobs)
        self.threads = threads or max(1, available_cores() // self.jobs)

    def run(self, specs: Sequence[RunSpec], on_outcome: OnOutcome, *, data_dirs: Sequence[str] = (),
            force: bool = False, stop: Callable[[], bool] | None = None) -> None:
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
                        pending[pool.submit(_pool_task, specs[index], dirs, force, stop_event)] = index
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
                            outcome = RunOutcome(specs[index].label, RunStatus.FAILED, "trained",
                                                 error=f"worker died: {exc}")
                        on_outcome(index, outcome)
        finally:
            manager.shutdown()


def local_executor(jobs: int = 1, threads: int | None = None, log: Callable[[str], None] = print) -> Executor:
    """The executor for this machine: serial for one job, a process pool for more."""
    return SerialExecutor(threads, log) if jobs <= 1 else ProcessPoolExecutor(jobs, threads)
