"""The executors: many `RunSpec`s through `run_one`, scheduled.

An executor takes a list of specs and calls `run_one` for each, reporting each outcome as it
arrives: `SerialExecutor` in this process, `ProcessPoolExecutor` in spawned worker processes,
`RayExecutor` (in `ray_executor`) as Ray tasks. They follow the small `Executor` protocol, so
`compare` (and `search`) do not know which one runs them. Each is built with the `RunContext`
its runs take (the log, the loggers, the environment workers need); `run` adds the data
directories and the stop request of the call.
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from mlp_lab.config.schema import Config
from mlp_lab.execution.procedure import RunOutcome, RunSpec, run_one
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.training.context import RunContext

# Called with a spec's index and its outcome, as each arrives.
OnOutcome = Callable[[int, RunOutcome], None]


def estimated_cost(config: Config) -> int:
    """Relative training cost of a run: multiply-accumulates per example x epochs."""
    from mlp_lab.config.sizes import dataset_geometry

    return dataset_geometry(config.model, config.data).macs * config.train.epochs


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
    """One run after another in this process, with `threads` torch threads (restored after),
    each given the `context` (its log, its loggers)."""

    def __init__(self, threads: int | None = None, context: RunContext | None = None):
        from mlp_lab.training.runtime import available_cores

        self.threads = threads or available_cores()
        self.context = context or RunContext()

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

        context = self.context.but(data_dirs=tuple(map(str, data_dirs)), stop=stop)
        with torch_threads(self.threads):
            for index, spec in enumerate(specs):
                if stop is not None and stop():
                    return
                outcome = run_one(spec, context, force=force)
                on_outcome(index, outcome)
                if outcome.action == "interrupted":
                    return


class Throttled:
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


def _pool_task(spec: RunSpec, context: RunContext, force: bool, stop_event, quiet: bool) -> RunOutcome:
    # The worker's own per-epoch lines, on its stdout (a log callable of the parent's would not pickle).
    log = _quiet if quiet else functools.partial(print, flush=True)
    return run_one(spec, context.but(log=log, stop=Throttled(stop_event.is_set)), force=force)


class ProcessPoolExecutor:
    """`jobs` runs at a time in spawned worker processes, longest first, `threads` torch threads each.

    spawn, not fork: a forked child inherits torch's thread pools and locks in unknown states.
    The stop request reaches the workers through a manager's event, handed to each task with its
    arguments, so no process keeps module-level state about it.
    """

    def __init__(self, jobs: int, threads: int | None = None, quiet: bool = False, context: RunContext | None = None):
        from mlp_lab.training.runtime import available_cores

        self.jobs = max(1, jobs)
        self.threads = threads or max(1, available_cores() // self.jobs)
        self.quiet = quiet  # the workers print nothing (the Python API's default)
        self.context = context or RunContext()

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
        # What travels to the workers: picklable pieces only; each worker sets its own log and stop.
        for_workers = self.context.for_workers().but(data_dirs=tuple(map(str, data_dirs)))
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
                        pending[pool.submit(_pool_task, specs[index], for_workers, force, stop_event, self.quiet)] = (
                            index
                        )
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


def local_executor(
    jobs: int = 1, threads: int | None = None, context: RunContext | None = None, quiet: bool = False
) -> Executor:
    """The executor for this machine: serial for one job, a process pool for more (its workers
    silent with `quiet`), their runs given `context`."""
    if jobs <= 1:
        return SerialExecutor(threads, context)
    return ProcessPoolExecutor(jobs, threads, quiet=quiet, context=context)
