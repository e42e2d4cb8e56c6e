"""The run context: everything a run takes from whoever starts it, besides its config and directory.

One object instead of a parameter each (data directories, torch threads, the log, the per-epoch
callback, the stop request, the metric loggers, the environment workers need), handed from the
service layer (`mlp_lab.service`, under the CLI, the Python API and the app) through the
procedure that runs a run (`execution.procedure`) to the trainer. The trainer reads `on_epoch`,
`stop` and `loggers`; the procedure and the executors the rest.

Loggers are factories, not open loggers: a run opens them itself, once it knows its start epoch
(a resume) and wherever it runs (a worker process, a Ray node), so whoever owns a sink (MLflow:
the tracking layer) builds it without the trainer knowing of it. A context that crosses into a
worker process (`for_workers`) keeps only what pickles: module-level factories and plain data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the loggers import torch; a context is made before torch is needed
    from mlp_lab.training.loggers import LoggerFactory


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class RunContext:
    """What a run takes from its caller: extra dataset directories (`data_dirs`), torch threads
    (None: as the process has them), the progress `log`, a per-epoch callback (`on_epoch`, given
    each epoch's record), a stop request polled at batch boundaries (`stop`), logger factories
    (`loggers`) and the environment a worker that does not inherit this process's needs
    (`worker_env`: a Ray task on another node)."""

    data_dirs: tuple[str, ...] = ()
    threads: int | None = None
    log: Callable[[str], None] = _print
    on_epoch: Callable[[dict[str, Any]], None] | None = None
    stop: Callable[[], bool] | None = None
    loggers: tuple[LoggerFactory, ...] = ()
    worker_env: Mapping[str, str] = field(default_factory=dict)

    def but(self, **changes: Any) -> RunContext:
        """This context with some fields changed (`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def should_stop(self) -> bool:
        """Whether the caller asked the run to stop."""
        return self.stop is not None and bool(self.stop())

    def for_workers(self) -> RunContext:
        """What may travel to another process: the callables of this one (log, per-epoch
        callback, stop request) left behind; the worker sets its own."""
        return RunContext(self.data_dirs, self.threads, _print, None, None, self.loggers, dict(self.worker_env))
