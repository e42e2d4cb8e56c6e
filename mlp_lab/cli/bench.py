"""`mlp-lab bench`: epoch speed of the trainer against the tutorial pipeline and the compute floor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlp_lab.cli.common import DataDirOpt, app, data_dirs, log, user_errors
from mlp_lab.config.load import load_config


@app.command()
def bench(
    config: Annotated[Path, typer.Argument(help="Config to benchmark.")] = Path("configs/baseline.yaml"),
    repeats: Annotated[int, typer.Option(min=1, help="Epochs timed per variant (median reported).")] = 3,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads \\[default: all cores].")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results here as JSON.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Epoch speed: mlp-lab's trainer vs the tutorial DataLoader pipeline vs the compute floor.

    A config naming your own model (model.target) is timed against the built-in baseline MLP on
    the autograd engine instead, on the same data.

    Example: mlp-lab bench --repeats 3
    """
    with user_errors():
        cfg = load_config(config)
        from mlp_lab.inspect.bench import run_benchmark
        from mlp_lab.training.runtime import configure_threads

        configure_threads(threads)
        results = run_benchmark(cfg, repeats, data_dirs(data_dir), log=log, source=str(config))
    if json_out is not None:
        import json

        json_out.write_text(json.dumps(results, indent=2, default=str) + "\n")
