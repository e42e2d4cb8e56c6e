"""The run context the front doors start runs with, and the executor a study's runs go to.

`run_context` is the one place that decides what every run started from the CLI, the Python API
or the app takes besides its config: the data directories, threads, log, per-epoch callback and
stop request its caller gives, and tracking: MLflow's logger factory (it opens a logger only for
a config with ``output.mlflow``) and the environment that says where the store is, for workers
that do not inherit this process's (Ray tasks on other nodes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlp_lab.training.context import RunContext

if TYPE_CHECKING:
    from mlp_lab.execution.executors import Executor


def run_context(
    *,
    data_dirs: Sequence[str] = (),
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> RunContext:
    """The context of the runs a command (or an API call) starts, tracking included."""
    from mlp_lab.tracking.logger import mlflow_logger
    from mlp_lab.tracking.store import store_env

    context = RunContext(
        data_dirs=tuple(map(str, data_dirs)),
        threads=threads,
        on_epoch=on_epoch,
        stop=stop,
        loggers=(mlflow_logger,),
        worker_env=store_env(),
    )
    return context if log is None else context.but(log=log)


@contextlib.contextmanager
def executor_for(
    backend: str, address: str | None, jobs: int | None, context: RunContext, *, quiet: bool = False
) -> Iterator[Executor]:
    """The executor a command's runs go to, their context given: this machine's (serial for one
    job, else `jobs` processes, silent with `quiet`), or with ``backend="ray"`` a RayExecutor
    inside a Ray session (a local instance, or the cluster at `address`; `jobs` tasks in flight,
    None: as many as the cluster's CPUs hold). Threads per run are the context's."""
    if backend == "ray":
        from mlp_lab.execution.ray_executor import RayExecutor, ray_session

        with ray_session(address):
            yield RayExecutor(context.threads, jobs, context=context)
        return
    from mlp_lab.execution.executors import local_executor

    yield local_executor(jobs or 1, context.threads, context, quiet=quiet)


def epoch_line(record: Mapping[str, Any]) -> str:
    """One epoch of a run as a line of progress (after the run's name)."""
    return (
        f"epoch {record['epoch']:>3}/{record['epochs']}  "
        f"train/loss {record['train/loss']:.4f}  train/acc {record['train/acc']:.4f}  "
        f"val/loss {record['val/loss']:.4f}  val/acc {record['val/acc']:.4f}  "
        f"lr {record['lr']:.2e}  {record['seconds']:.1f}s"
    )
