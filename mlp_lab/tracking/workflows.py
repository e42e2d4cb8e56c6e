"""What ``--track`` does around a command: the store reached and made before any worker starts
(with the line saying where runs go), a study or search set up in MLflow, its report or result
attached afterwards (a tracking failure then costs a warning, never the finished runs), and the
tracked ``search --confirm``; also the `track` and `register` verbs' resolution of their targets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlp_lab.config.load import load_config
from mlp_lab.config.schema import Config
from mlp_lab.core.errors import MLPLabError
from mlp_lab.runs import rundir
from mlp_lab.studies.ablation import CompareResult, Study, differences_note, load_study, study_runs
from mlp_lab.tracking.export import Exported, export_run, export_study, log_study_report
from mlp_lab.tracking.logger import PARENT_TAG, RUN_FILE, recorded_run, save_run_record
from mlp_lab.tracking.registry import Registered, best_seed_run, register
from mlp_lab.tracking.store import (
    Store,
    TrackingError,
    client_for,
    describe,
    errors,
    experiment_id,
    prepare_store,
    require_mlflow,
    store_for,
)

if TYPE_CHECKING:
    from mlp_lab.execution.executors import Executor
    from mlp_lab.search.driver import SearchResult
    from mlp_lab.search.spec import Search


def _with_tracking(config: Config) -> Config:
    """`config` with `output.mlflow` on (it is not part of the config hash)."""
    return config.model_copy(update={"output": config.output.model_copy(update={"mlflow": True})})


def is_tracked(study: Study) -> bool:
    """Whether a study logs to MLflow: --track turned it on, or an arm's config asks for it."""
    return any(arm.config.output.mlflow for arm in study.arms)


def track_run(config: Config, track: bool = False, resumed: Path | None = None) -> tuple[Config, str | None]:
    """The config of `mlp-lab run` with tracking on when --track asks (a resumed run keeps its
    own settings), and the line saying where its runs go, or None when untracked. The store is
    reached (or reported) and made here, once, before training."""
    if track and resumed is not None and not config.output.mlflow:
        raise MLPLabError(
            f"{resumed} was not tracked; a resumed run keeps its settings. Export it instead: mlp-lab track {resumed}"
        )
    if track:
        config = _with_tracking(config)
    if not config.output.mlflow:
        return config, None
    return config, describe(prepare_store(config.output.dir))


def track_study(study: Study) -> Study:
    """The experiment with `output.mlflow` on in every arm (the config hash is unchanged), its
    store and MLflow experiment created here, before any worker starts."""
    arms = [replace(arm, config=_with_tracking(arm.config)) for arm in study.arms]
    store = prepare_store(arms[0].config.output.dir)
    with errors(store):
        experiment_id(client_for(store), store, study.name)
    return replace(study, arms=arms)


def track_studies(studies: Sequence[Study], track: bool = False) -> tuple[list[Study], list[str]]:
    """`compare` and `suite`: each study tracked when --track or one of its arms asks
    (`track_experiment`), and one line per store saying where runs go."""
    tracked: list[Study] = []
    stores: list[Store] = []
    for study in studies:
        if track or is_tracked(study):
            study = track_study(study)
            store = store_for(study.arms[0].config.output.dir)
            if store not in stores:
                stores.append(store)
        tracked.append(study)
    return tracked, [describe(store) for store in stores]


def attach_report(study: Study, warn: Callable[[str], None]) -> None:
    """A tracked study's report to its MLflow experiment (nothing for an untracked one); a
    tracking failure costs only a warning, since `mlp-lab track` attaches it later."""
    if not is_tracked(study):
        return
    try:
        log_study_report(study)
    except TrackingError as exc:
        warn(f"warning: report not attached in MLflow ({exc}); later: mlp-lab track {study.name}")


def track_search(search: Search) -> Search:
    """The search with tracking on: its store, MLflow experiment (named after the search) and
    parent run made here, before any worker starts; every trial then logs as a run nested under
    that parent. A continued search continues the same parent run (its id is kept in the
    search's directory)."""
    store = prepare_store(search.base_config.output.dir)
    search.output_dir.mkdir(parents=True, exist_ok=True)
    with errors(store):
        from mlflow.entities import Param

        client = client_for(store)
        exp_id = experiment_id(client, store, search.name)
        run = recorded_run(client, search.output_dir, store)
        if run is None:
            run = client.create_run(
                exp_id,
                run_name="search",
                tags={"mlp_lab.kind": "search", "search": search.name, "search_file": str(Path(search.path).resolve())},
            )
            save_run_record(search.output_dir, store, run_id=run.info.run_id, experiment_id=exp_id)
            space = {f"space.{p.key}": p.describe() for p in search.params}
            setup = {
                "metric": search.metric,
                "direction": search.direction,
                "trials": search.trials,
                "sampler": search.sampler,
                "pruner": search.pruner.name,
                "seed": search.seed,
            }
            client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in {**setup, **space}.items()])
        elif run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
    return replace(search, trial_tags={PARENT_TAG: run.info.run_id})


def wants_tracking(search: Search, track: bool = False) -> bool:
    """Whether a search (or its confirmation) logs to MLflow: --track, or its base config asks."""
    return track or search.base_config.output.mlflow


def start_search(search: Search, track: bool = False) -> tuple[Search, str | None]:
    """`mlp-lab search`: the search tracked (`track_search`) when `wants_tracking`, and the line
    saying where its runs go, or None when untracked."""
    if not wants_tracking(search, track):
        return search, None
    return track_search(search), describe(store_for(search.base_config.output.dir))


def log_search_result(search: Search, report: Mapping[str, Any], finished: bool) -> None:
    """The search's outcome on its parent run: the best value and trial counts as metrics, the
    report files (search.md/.csv/.json, plots, best.yaml) as artifacts; FINISHED once the search
    reached its trials, KILLED when it stopped early (a rerun continues the same run)."""
    store = store_for(search.base_config.output.dir)
    with errors(store):
        from mlflow.entities import Metric

        client = client_for(store)
        run = recorded_run(client, search.output_dir, store)
        if run is None:
            return
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        values = {f"trials/{state}": n for state, n in report.get("counts", {}).items()}
        values["epochs_run"] = report.get("epochs_run", 0)
        if report.get("best"):
            values[f"best/{search.metric}"] = report["best"]["value"]
            values["best/trial"] = report["best"]["trial"]
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])
        for path in sorted(search.output_dir.iterdir()):
            if (
                path.is_file()
                and path.suffix in (".md", ".csv", ".json", ".png", ".yaml")
                and path.name != RUN_FILE
                and not path.name.startswith(".")
            ):
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED" if finished else "KILLED")


def attach_search_result(search: Search, result: SearchResult, warn: Callable[[str], None]) -> None:
    """A tracked search's result on its parent run (nothing for an untracked one); a tracking
    failure costs only a warning."""
    if PARENT_TAG not in (search.trial_tags or {}):
        return
    try:
        log_search_result(search, result.report, finished=result.finished >= result.target)
    except TrackingError as exc:
        warn(f"warning: search report not logged in MLflow ({exc})")


def confirm_search(
    search: Search,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    track: bool = False,
    jobs: int = 1,
    threads: int | None = None,
    data_dirs: Sequence[str] = (),
    stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    executor: Executor | None = None,
) -> tuple[CompareResult, list[str]]:
    """`mlp-lab search --confirm`: the confirmation study (best vs base over `seeds`), tracked
    like a study's (MLflow experiment `<search>-confirm`) when `wants_tracking`, run and reported
    by `search.confirm`, then its report attached in MLflow (a failure is a warning on `log`)."""
    from mlp_lab.search.confirm import confirm, confirmation_study

    study = confirmation_study(search, seeds)
    tracked = wants_tracking(search, track)
    if tracked:
        study = track_study(study)
    result, lines = confirm(
        search,
        seeds,
        jobs=jobs,
        threads=threads,
        data_dirs=data_dirs,
        stop=stop,
        log=log,
        executor=executor,
        study=study,
    )
    if tracked and not result.interrupted:
        try:
            log_study_report(study)
        except TrackingError as exc:
            log(f"warning: confirmation report not attached in MLflow ({exc})")
    return result, lines


def _study_target(target: str, overrides: Sequence[str]) -> Study | None:
    """The study a target names (None for a run directory); --set is for studies only, since a
    run directory keeps the config it ran with."""
    if (Path(target) / rundir.CONFIG_FILE).is_file():
        if overrides:
            raise MLPLabError(f"{target}: a run directory keeps its own config; --set applies to a study only")
        return None
    return load_study(target, overrides=overrides)


def export_targets(targets: Sequence[str], overrides: Sequence[str] = ()) -> Iterator[str | Exported]:
    """`mlp-lab track`: export each target (a run directory, or a study by name or path, loaded
    with `overrides` as compare's --set), its store reached first (within seconds, or reported);
    yields, in the order to show them: the line saying where runs go (once per store), each
    run's `Exported`, then a line on how a study's runs differ from it, if they do."""
    require_mlflow("mlp-lab track")
    stores: set[Store] = set()
    for target in targets:
        config_file = Path(target) / rundir.CONFIG_FILE
        study = _study_target(target, overrides)
        store = prepare_store(load_config(config_file).output.dir if study is None else study.arms[0].config.output.dir)
        if store not in stores:
            stores.add(store)
            yield describe(store)
        if study is None:
            yield export_run(target)
            continue
        runs = study_runs(study)
        exported = export_study(study)
        yield from exported
        if not exported:
            yield f"{study.name}: no runs in {study.output_dir} to export; run: mlp-lab compare {study.name}"
        note = differences_note(study, runs)
        if note:
            yield f"note: {note}"


def register_target(
    target: str, name: str, alias: str | None = None, arm: str | None = None, overrides: Sequence[str] = ()
) -> Registered:
    """`mlp-lab register`: a run directory, or with `arm` a study's (loaded with `overrides`, as
    compare's --set) best seed of that arm, registered as `name` (its store reached first, within
    seconds, or reported)."""
    require_mlflow("mlp-lab register")
    tags = None
    run_dir = Path(target)
    if arm is not None:
        run_dir, tags = best_seed_run(load_study(target, overrides=overrides), arm)
    elif overrides:
        raise MLPLabError(f"{target}: --set applies to a study's runs; give --arm ARM with it")
    elif not (run_dir / rundir.CONFIG_FILE).is_file():
        raise MLPLabError(f"{target}: not a run directory; for a study give --arm ARM")
    prepare_store(load_config(run_dir / rundir.CONFIG_FILE).output.dir)
    return register(run_dir, name, alias, tags)
