"""One run started or resumed from a front door (`mlp-lab run`, `mlp_lab.run`, the app's Train
form through `mlp-lab run`): the procedure's entry points, with a fault of the machine turned into
one `MachineFault` that says how to go on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlp_lab.config.schema import Config
from mlp_lab.core.errors import memory_fault, os_fault
from mlp_lab.runs import rundir
from mlp_lab.training.context import RunContext


def resume_hint(run_dir: Path | None) -> str:
    """What to do after a fault of the machine mid-run: resume the run if it got far enough to
    describe itself (its checkpoints and metrics up to the last complete epoch are intact)."""
    if run_dir is not None and (run_dir / rundir.CONFIG_FILE).is_file():
        return f"then: mlp-lab run --resume {run_dir}"
    return "then run it again"


def start_or_resume(
    config: Config,
    context: RunContext,
    *,
    resume: Path | None = None,
    run_dir: str | Path | None = None,
    source: str = "config",
    on_start: Callable[[Path, bool], None] | None = None,
):
    """Train `config` as a fresh run (into `run_dir`, else a fresh directory under output.dir),
    or continue the interrupted run in `resume` (its own config); `on_start(run_dir, renamed)` is
    called once the directory is known. Returns the procedure's `RunResult`. An interrupt is
    raised as `TrainingInterrupted` (last.pt saved); a full disk, a vanished directory or memory
    as one MachineFault naming how to go on."""
    from mlp_lab.execution.procedure import resume_run, start_run

    started: list[Path] = [Path(resume)] if resume is not None else []

    def announce(where: Path, renamed: bool) -> None:
        started.append(where)
        if on_start is not None:
            on_start(where, renamed)

    try:
        if resume is not None:
            announce(Path(resume), False)
            return resume_run(resume, context)
        return start_run(config, context, run_dir=run_dir, source=source, on_start=announce)
    except OSError as exc:
        raise os_fault(exc, resume_hint(started[-1] if started else None)) from None
    except (MemoryError, RuntimeError) as exc:
        fault = memory_fault(exc, resume_hint(started[-1] if started else None))
        if fault is None:
            raise
        raise fault from None
