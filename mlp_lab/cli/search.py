"""`mlp-lab search`: an Optuna search over a search file's space, or `--confirm` of its best."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mlp_lab.cli.common import (
    AddressOpt,
    Backend,
    BackendOpt,
    DataDirOpt,
    SetOpt,
    app,
    data_dirs,
    err,
    executor_for,
    log,
    out,
    parse_seeds,
    require_backend,
    say,
    user_errors,
    warn,
)

if TYPE_CHECKING:
    from mlp_lab.search.driver import SearchResult
    from mlp_lab.search.spec import Search

SearchArg = Annotated[
    str, typer.Argument(help="Search name in searches/ (e.g. fashion_search) or a path.", show_default=False)
]


@app.command()
def search(
    name: SearchArg,
    trials: Annotated[
        int | None, typer.Option(min=1, help="Trials to reach, counting earlier calls \\[default: the file's].")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Trials at once, sharing the study: local processes \\[default: 1]; with "
            "--backend ray, Ray tasks \\[default: cluster CPUs / threads].",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Start no new trial after this many seconds \\[default: no limit].")
    ] = None,
    confirm: Annotated[
        bool, typer.Option("--confirm", help="Retrain best and base over seeds; report test accuracy.")
    ] = False,
    seeds: Annotated[str, typer.Option(help="Seeds for --confirm, comma-separated.")] = "0,1,2",
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="torch threads (with ray: CPUs reserved) per trial \\[default: cores / jobs; ray: 1]."
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    track: Annotated[
        bool,
        typer.Option(
            "--track",
            help="Also log to MLflow: the search as one run, each trial nested under it (the \\[track] extra).",
        ),
    ] = False,
    backend: BackendOpt = Backend.local,
    address: AddressOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Search hyperparameters with Optuna (pruned, resumable), or confirm the best over seeds.

    --set applies to the base of every trial and to both --confirm arms (not to a searched key).

    Example: mlp-lab search fashion_search --trials 40 --track ; mlp-lab search fashion_search --confirm ;
    on a Ray cluster: mlp-lab search fashion_search --backend ray --address auto
    """
    with user_errors():
        from mlp_lab.core.interrupt import graceful_stop
        from mlp_lab.search.driver import run_search
        from mlp_lab.search.spec import load_search
        from mlp_lab.search.study import require_optuna
        from mlp_lab.tracking.workflows import attach_search_result, confirm_search, start_search

        require_optuna()
        found = load_search(name, overrides=overrides or ())
        data_dirs(data_dir)
        from mlp_lab.service.checks import check_config

        require_backend(backend, address)
        if backend == Backend.local:
            check_config(found.base_config, str(found.path))  # with ray, the cluster's GPUs count
        if not confirm:
            found, where = start_search(found, track)  # the store and the search's parent run, before any worker
            if where:
                say(where)
        with graceful_stop() as stop, executor_for(backend, address, jobs, threads, data_dir, stop) as (executor, run):
            if confirm:
                result, lines = confirm_search(
                    found,
                    parse_seeds(seeds),
                    track=track,
                    jobs=jobs or 1,
                    threads=threads,
                    data_dirs=run.data_dirs,
                    stop=stop,
                    log=log,
                    executor=executor,
                )
            else:
                result = run_search(
                    found,
                    trials=trials,
                    jobs=jobs or 1,
                    timeout=timeout,
                    threads=threads,
                    data_dirs=run.data_dirs,
                    stop=stop,
                    log=log,
                    executor=executor,
                )
                attach_search_result(found, result, warn)
                lines = _result_lines(found, result)
        if result.interrupted:
            err.print(
                f"stopped by signal; finished trials are kept and unfinished ones continue: "
                f"mlp-lab search {name}{' --confirm' if confirm else ''}",
                highlight=False,
            )
            raise typer.Exit(stop.exit_code)
    for line in lines:
        say(line)
    out.print(f"report: {found.output_dir / ('confirm.md' if confirm else 'search.md')}", highlight=False)


def _result_lines(search: Search, result: SearchResult) -> list[str]:
    """What a search call did: trials finished, and the best trial so far."""
    from mlp_lab.search.spec import BEST_CONFIG_FILE

    lines = [f"{result.finished}/{result.target} trials finished" + (" (timeout reached)" if result.timed_out else "")]
    best = result.report.get("best")
    if best:
        lines.append(
            f"best: trial {best['trial']}  {search.metric} {best['value']:.4f}  "
            f"config {search.output_dir / BEST_CONFIG_FILE}"
        )
    return lines
