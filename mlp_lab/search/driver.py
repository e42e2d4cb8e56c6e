"""The search driver: `run_search` asks the study for as many trials as the executor runs at
once, turns each into a `RunSpec` for ``<output.dir>/<search>/trial-<n>/``, runs the batch and
tells the study how each trial ended. Each trial's `PruningHook` (carried by its spec, so it
runs wherever the trial runs) reports to the study from the journal file, so a killed search
continues where it stopped: trials it left running are reclaimed, settled or continued.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlp_lab.config.hashing import config_hash
from mlp_lab.config.load import validate_config
from mlp_lab.config.metrics import BEST_METRICS
from mlp_lab.config.schema import Config, config_to_dict
from mlp_lab.core.errors import ConfigError, MLPLabError, clip
from mlp_lab.execution.executors import Executor, local_executor
from mlp_lab.execution.procedure import RunOutcome, RunSpec
from mlp_lab.runs import rundir
from mlp_lab.runs.rundir import RunStatus
from mlp_lab.search.report import write_report
from mlp_lab.search.spec import JOURNAL_FILE, TRIAL_FILE, Search, encode_choice
from mlp_lab.search.study import PruningHook, journal_storage, live_trial, open_study, require_optuna
from mlp_lab.training.context import RunContext


@dataclass
class SearchResult:
    """What one `run_search` call did."""

    finished: int  # trials that ended (complete, pruned, or failed for a reason of their own)
    target: int
    outcomes: list[RunOutcome] = field(default_factory=list)
    interrupted: bool = False
    timed_out: bool = False
    report: dict[str, Any] = field(default_factory=dict)


def _trial_dir(search: Search, number: int) -> Path:
    return search.output_dir / f"trial-{number}"


def _counted(frozen) -> bool:
    from optuna.trial import TrialState

    if frozen.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return frozen.state == TrialState.FAIL and not frozen.user_attrs.get("interrupted")


def _spec_for(search: Search, number: int, config: Config) -> RunSpec:
    hook = PruningHook(
        str(search.journal), search.name, number, search.metric, search.pruner.model_dump(), search.max_epochs
    )
    tags = {"search": search.name, "trial": str(number)}
    if search.trial_tags is not None:
        # output.mlflow is left out of the config hash: turning tracking on never changes a trial.
        config = config.model_copy(update={"output": config.output.model_copy(update={"mlflow": True})})
        tags.update(search.trial_tags)
    return RunSpec(f"trial {number}", config, _trial_dir(search, number), tags, hook)


def _history(run_dir: Path) -> list[dict[str, float]]:
    try:
        return rundir.read_metrics(run_dir)
    except (OSError, ValueError):
        return []


def _trial_record(path: Path) -> dict[str, Any] | None:
    """A trial's trial.json, or None when there is none or it is damaged (torn, not this shape):
    the trial's run directory then decides its outcome, as it does when the record was never written."""
    try:
        record = rundir.read_json(path)
    except (OSError, ValueError):
        return None
    valid = (
        isinstance(record, dict)
        and record.get("state") in ("complete", "pruned", "failed")
        and (record.get("value") is None or isinstance(record["value"], (int, float)))
        and (record.get("error") is None or isinstance(record["error"], str))
    )
    return {"value": None, "error": None, **record} if valid else None


def _settle(
    search: Search,
    study,
    storage,
    number: int,
    state: str,
    *,
    value: float | None = None,
    error: str | None = None,
    interrupted: bool = False,
) -> None:
    """Record how a trial ended, first in its run directory (trial.json), then in the study."""
    from optuna.trial import TrialState

    run_dir = _trial_dir(search, number)
    history = _history(run_dir)
    trial = live_trial(study, storage, number)
    record = {
        "number": number,
        "state": state,
        "metric": search.metric,
        "value": value,
        "params": dict(trial.params),
        "epochs_run": len(history),
        "seconds": round(sum(row["seconds"] for row in history), 3),
        "error": error,
        "interrupted": interrupted,
    }
    if state == "pruned" and history:
        record["value"] = history[-1][search.metric]
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_json(run_dir / TRIAL_FILE, record)
    for key in ("epochs_run", "seconds", "error", "interrupted"):
        trial.set_user_attr(key, record[key])
    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.tell(number, value if state == "complete" else None, state=states[state])


def _settle_from_run(
    search: Search,
    study,
    storage,
    number: int,
    outcome_status: RunStatus,
    summary: dict[str, Any] | None,
    error: str | None,
    halted: bool,
) -> bool:
    """Settle a trial from its run's outcome; False when it is still unfinished (left running)."""
    if outcome_status == RunStatus.DONE and summary is not None:
        _settle(search, study, storage, number, "complete", value=float(summary[BEST_METRICS[search.metric]]))
    elif halted:
        _settle(search, study, storage, number, "pruned")
    elif outcome_status == RunStatus.FAILED:
        _settle(search, study, storage, number, "failed", error=error)
    else:
        return False
    return True


def _reclaim(search: Search, study, storage, log: Callable[[str], None]) -> list[RunSpec]:
    """Trials a stopped or killed search left running: settle those that ended, and return the
    rest as specs to continue (from last.pt, or from the start if nothing was trained yet).

    A trial whose run directory is locked is being trained by a live process: it is left alone.
    """
    from optuna.trial import TrialState

    specs = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        number = frozen.number
        run_dir = _trial_dir(search, number)
        try:
            lock = rundir.RunLock(run_dir).acquire()
        except rundir.RunLocked:
            continue
        try:
            recorded = run_dir / TRIAL_FILE
            record = _trial_record(recorded)
            if record is not None:  # decided, but the search stopped before telling the study
                _settle(
                    search,
                    study,
                    storage,
                    number,
                    record["state"],
                    value=record["value"],
                    error=record["error"],
                    interrupted=record.get("interrupted") is True,
                )
                continue
            raw = frozen.user_attrs.get("config")
            if raw is None:
                _settle(
                    search, study, storage, number, "failed", error="interrupted before it started", interrupted=True
                )
                log(f"trial {number}: was interrupted before it started; marked failed (not counted)")
                continue
            config = validate_config(raw, f"{run_dir}: trial config")
            status = rundir.run_status(run_dir, config_hash(config))
            summary = rundir.read_summary(run_dir) if status in (RunStatus.DONE, RunStatus.FAILED) else None
            if status in (RunStatus.DONE, RunStatus.FAILED):
                _settle_from_run(search, study, storage, number, status, summary, summary.get("error"), False)
            elif status in (RunStatus.NEW, RunStatus.PARTIAL):
                log(
                    f"trial {number}: was interrupted; continuing it"
                    + (" from last.pt" if status == RunStatus.PARTIAL else "")
                )
                specs.append(_spec_for(search, number, config))
            else:
                _settle(search, study, storage, number, "failed", error=f"run directory is {status}", interrupted=True)
        finally:
            lock.release()
    return specs


def _ask(search: Search, study, storage, log: Callable[[str], None]) -> RunSpec | None:
    """A new trial as a RunSpec; an invalid sampled config is settled as a failed trial (None)."""
    trial = study.ask()
    values = {p.key: p.suggest(trial) for p in search.params}
    number = trial.number
    try:
        config = search.trial_config(values, f"{search.name}-trial-{number}")
    except ConfigError as exc:
        reason = "; ".join(e.split(": ", 2)[-1] for e in exc.errors)
        log(f"trial {number}: invalid config, not trained: {reason}")
        _settle(search, study, storage, number, "failed", error=f"invalid config: {reason}")
        return None
    # Kept in the study so a continued search rebuilds exactly this trial without sampling again.
    trial.set_user_attr("config", config_to_dict(config))
    return _spec_for(search, number, config)


def run_search(
    search: Search,
    *,
    trials: int | None = None,
    jobs: int = 1,
    timeout: float | None = None,
    threads: int | None = None,
    data_dirs: Sequence[str] = (),
    stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    executor: Executor | None = None,
) -> SearchResult:
    """Run the search until `trials` trials have ended (counting those of earlier calls).

    Each round asks the study for as many trials as the executor runs at once, runs them, and
    tells the study how each ended. `timeout` (seconds) stops asking for new trials. After a
    stop, trials under way keep their last.pt and the next call continues them. One driver per
    search at a time (a lock beside its directory); its `jobs` workers share the study.
    """
    optuna = require_optuna()
    target = trials or search.trials
    if search.sampler == "grid":
        target = min(target, search.grid_size())
    search.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = rundir.RunLock(search.output_dir).acquire()
    except rundir.RunLocked as exc:
        raise MLPLabError(
            f"{search.output_dir}: another mlp-lab search (pid {exc.pid}) is running this search"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = journal_storage(search.journal)
            study = open_study(search, storage)
            leftovers = sorted(p.name for p in search.output_dir.glob("trial-*")) if not study.trials else []
            if leftovers:
                # Their trial numbers would be handed out again: never train a trial into another's directory.
                raise MLPLabError(
                    f"{search.output_dir}: holds {', '.join(leftovers[:3])}{', ...' if len(leftovers) > 3 else ''} "
                    f"but its study ({JOURNAL_FILE}) has no trials; move the directory away to start afresh"
                )
            # A study's trials must all share one base: a later call with other --set values
            # would mix trials of different configs in one ranking.
            recorded = study.user_attrs.get("overrides")
            if study.trials and recorded is not None and list(recorded) != list(search.overrides):
                was = " ".join(f"--set {o}" for o in recorded) or "no --set"
                raise MLPLabError(
                    f"{search.output_dir}: this search was started with {clip(was)}; give the same, "
                    f"or --set output.dir=DIR for a separate search"
                )
            if not study.trials:
                study.set_user_attr("overrides", list(search.overrides))
                for point in search.enqueue:
                    # Categorical choices live in the study encoded (an architecture as its JSON text).
                    study.enqueue_trial({key: encode_choice(value) for key, value in point.items()})
            executor = executor or local_executor(jobs, threads, RunContext(log=log))
            width = max(1, getattr(executor, "jobs", jobs if jobs > 1 else 1))
            result = SearchResult(0, target)
            started = time.monotonic()
            while True:
                pending = _reclaim(search, study, storage, log)
                finished = sum(_counted(t) for t in study.get_trials(deepcopy=False))
                result.finished = finished
                if finished >= target:
                    break
                if stop is not None and stop():
                    result.interrupted = True
                    break
                if timeout is not None and time.monotonic() - started >= timeout and not pending:
                    result.timed_out = True
                    break
                specs = pending[:width]
                while len(specs) < width and finished + len(specs) < target:
                    spec = _ask(search, study, storage, log)
                    if spec is None:
                        finished += 1
                        continue
                    specs.append(spec)
                if not specs:
                    continue

                # Bound now: the executor calls it only within this round, but the name says so.
                def record(index: int, outcome: RunOutcome, specs: list[RunSpec] = specs) -> None:
                    spec = specs[index]
                    result.outcomes.append(outcome)
                    if _settle_from_run(
                        search,
                        study,
                        storage,
                        spec.hook.number,
                        outcome.status,
                        outcome.summary,
                        outcome.error,
                        outcome.action == "halted",
                    ):
                        done = sum(_counted(t) for t in study.get_trials(deepcopy=False))
                        log(f"[{done}/{target} trials] {_describe(outcome, search)}")

                executor.run(specs, record, data_dirs=data_dirs, stop=stop)
                if any(o.action == "interrupted" for o in result.outcomes[-len(specs) :]) or (stop and stop()):
                    result.interrupted = True
                    result.finished = sum(_counted(t) for t in study.get_trials(deepcopy=False))
                    break
            result.report = write_report(search, study)
        return result
    finally:
        lock.release()


def _describe(outcome: RunOutcome, search: Search) -> str:
    if outcome.action == "halted":
        return f"{outcome.label}: pruned"
    if outcome.status == RunStatus.DONE and outcome.summary:
        return f"{outcome.label}: {search.metric} {outcome.summary[BEST_METRICS[search.metric]]:.4f}"
    return outcome.describe()
