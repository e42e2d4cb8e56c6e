"""`mlp-lab compare`, `report` and `suite`: run a study (or every study) and report it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlp_lab.cli.common import (
    AddressOpt,
    Backend,
    BackendOpt,
    DataDirOpt,
    JobsOpt,
    JsonOpt,
    RunThreadsOpt,
    SetOpt,
    TrackOpt,
    app,
    check_runtime,
    data_dirs,
    err,
    executor_for,
    json_output,
    log,
    out,
    parse_seeds,
    report_busy_and_failed,
    require_backend,
    say,
    user_errors,
    warn,
)
from mlp_lab.core.errors import MLPLabError

StudyArg = Annotated[
    str, typer.Argument(help="Study name in experiments/ (e.g. early_stopping) or a path.", show_default=False)
]


@app.command()
def compare(
    ctx: typer.Context,
    study: StudyArg,
    jobs: JobsOpt = None,
    seeds: Annotated[
        str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2 \\[default: the study file's].")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Delete and rerun runs that are already done.")] = False,
    threads: RunThreadsOpt = None,
    data_dir: DataDirOpt = None,
    track: TrackOpt = False,
    backend: BackendOpt = Backend.local,
    address: AddressOpt = None,
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run every arm x seed of a study (skipping finished runs), then write its report.

    --set applies to every arm (not to the study's factor), e.g. a quick look at one epoch:
    mlp-lab compare dropout --seeds 0 --set train.epochs=1

    Example: mlp-lab compare early_stopping --seeds 0,1,2 --jobs 2 --track ;
    on a Ray cluster: mlp-lab compare early_stopping --backend ray --address auto
    """
    emit = json_output(ctx, as_json)
    with user_errors():
        from mlp_lab.core.interrupt import graceful_stop
        from mlp_lab.studies.ablation import compare as run_compare
        from mlp_lab.studies.ablation import load_study
        from mlp_lab.studies.report import build_report
        from mlp_lab.tracking.workflows import attach_report, track_studies

        exp = load_study(study, parse_seeds(seeds), overrides=overrides or ())
        data_dirs(data_dir)
        require_backend(backend, address)
        check_runtime([exp], backend)
        (exp,), where = track_studies([exp], track)  # the store and the study's experiment, before any worker
        for line in where:
            say(line)
        total = len(exp.arms) * len(exp.seeds)
        out.print(
            f"study {exp.name}: {len(exp.arms)} arms x {len(exp.seeds)} seeds = {total} runs -> {exp.output_dir}",
            highlight=False,
        )
        with graceful_stop() as stop, executor_for(backend, address, jobs, threads, data_dir, stop) as (executor, run):
            result = run_compare(
                exp,
                jobs=jobs or 1,
                force=force,
                data_dirs=run.data_dirs,
                threads=threads,
                stop=stop,
                log=log,
                executor=executor,
            )
        if result.interrupted:
            err.print(
                f"stopped by signal; finished runs are kept and partial ones resume: mlp-lab compare {study}",
                highlight=False,
            )
            raise typer.Exit(stop.exit_code)
        if any(f.fault for f in result.failures):
            report_busy_and_failed(result, "the report")  # a full disk would fail the report too
        report = build_report(exp, warn)
        attach_report(exp, warn)
    out.print(f"report: {exp.output_dir / 'report.md'}", highlight=False)
    if as_json:
        from mlp_lab.studies.ablation import compare_record

        emit(compare_record(exp, result, report))  # before a failed run's exit 1: the outcomes say which
    report_busy_and_failed(result, "the report")


@app.command()
def report(
    study: Annotated[
        str | None,
        typer.Argument(help="Study name in experiments/ (e.g. early_stopping) or a path.", show_default=False),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Every study with runs, and the overview runs/index.md + runs/index.html over them."
        ),
    ] = False,
    overrides: SetOpt = None,
) -> None:
    """Rebuild a study's report (markdown, CSV, JSON, plots) from its run directories alone.

    --set loads the study as compare did (the same --set; e.g. output.dir moves its folder).
    Example: mlp-lab report early_stopping    (every study and the overview: mlp-lab report --all)
    """
    with user_errors():
        from mlp_lab.studies.ablation import differences_note, load_study, study_runs
        from mlp_lab.studies.overview import build_overview, load_studies
        from mlp_lab.studies.report import build_report

        if all_:
            if study is not None or overrides:
                raise MLPLabError("--all covers every study as its file says; give no EXPERIMENT or --set")
            _print_overview(build_overview(load_studies()))
            return
        if study is None:
            raise MLPLabError("missing EXPERIMENT: e.g. mlp-lab report early_stopping, or mlp-lab report --all")
        exp = load_study(study, overrides=overrides or ())
        if not exp.output_dir.exists():
            raise MLPLabError(f"{exp.output_dir}: no runs yet; run: mlp-lab compare {study}")
        build_report(exp, warn)
        note = differences_note(exp, study_runs(exp))
    if note:
        say(f"note: {note}")
    out.print(f"report: {exp.output_dir / 'report.md'}", highlight=False)


def _print_overview(overview: dict[str, Any]) -> None:
    out.print(f"studies: {', '.join(overview['studies'])}", highlight=False)
    if overview["skipped"]:
        out.print(f"not run yet: {', '.join(overview['skipped'])}", highlight=False)
    out.print(f"overview: {overview['index_md']} and {overview['index_html']}", highlight=False)


@app.command()
def suite(
    studies: Annotated[
        list[str] | None,
        typer.Argument(help="Studies to run \\[default: every file in experiments/].", show_default=False),
    ] = None,
    jobs: JobsOpt = None,
    seeds: Annotated[
        str | None, typer.Option(help="Comma-separated seeds for every study, e.g. 0,1,2 \\[default: each file's].")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Delete and rerun runs that are already done.")] = False,
    threads: RunThreadsOpt = None,
    data_dir: DataDirOpt = None,
    track: TrackOpt = False,
    backend: BackendOpt = Backend.local,
    address: AddressOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Run every study (or the named ones), skipping finished runs, then the overview over them.

    --set applies to every arm of every study; --track and --backend work as in compare. Named
    studies rewrite runs/index.md with those only (mlp-lab report --all: over every study).

    Example: mlp-lab suite ladder mnist_linear_vs_mlp --seeds 0 --data-dir ~/mnist   (your MNIST IDX files;
    without --data-dir, MNIST is downloaded) ;
    on a Ray cluster, tracked: mlp-lab suite --backend ray --address auto --track
    """
    with user_errors():
        from mlp_lab.core.interrupt import graceful_stop
        from mlp_lab.studies.overview import load_studies
        from mlp_lab.studies.suite import run_suite
        from mlp_lab.tracking.workflows import attach_report, track_studies

        loaded = load_studies(studies, parse_seeds(seeds), overrides=overrides or ())
        data_dirs(data_dir)
        require_backend(backend, address)
        check_runtime(loaded, backend)
        loaded, where = track_studies(loaded, track)  # stores and loaded, before any worker
        for line in where:
            say(line)
        with graceful_stop() as stop, executor_for(backend, address, jobs, threads, data_dir, stop) as (executor, run):
            result = run_suite(
                loaded,
                jobs=jobs or 1,
                force=force,
                data_dirs=run.data_dirs,
                threads=threads,
                stop=stop,
                log=log,
                executor=executor,
            )
        if result.interrupted:
            err.print(
                "stopped by signal; finished runs are kept and partial ones resume: run the same command again",
                highlight=False,
            )
            raise typer.Exit(stop.exit_code)
        for study in loaded:
            attach_report(study, warn)  # the overview built each study's report
    _print_overview(result.overview)
    report_busy_and_failed(result, "the overview")
