"""`mlp-lab list`, `data` and `summary`: what there is to run, a dataset, and a config's model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlp_lab.cli.common import ConfigArg, DataDirOpt, JsonOpt, SetOpt, app, data_dirs, json_output, out, user_errors
from mlp_lab.config.load import load_config
from mlp_lab.core.errors import MLPLabError, clip


@app.command("list")
def list_(
    ctx: typer.Context,
    configs_dir: Annotated[Path, typer.Option(help="Where run configs live.")] = Path("configs"),
    studies_dir: Annotated[Path, typer.Option(help="Where study files live.")] = Path("experiments"),
    as_json: JsonOpt = False,
) -> None:
    """List the configs and studies available and the state of their runs.

    States: new (no run yet), partial (started or stopped mid-way: resume or compare again),
    done (finished), failed (the run recorded a failure), stale (a config's run directory was
    made with another version of the config: run it again for a fresh one),
    invalid (the file does not load). A study counts its runs whatever --set made them.
    Example: mlp-lab list    (for scripts: mlp-lab list --json)
    """
    from mlp_lab.studies.catalog import list_configs, list_studies

    emit = json_output(ctx, as_json)

    with user_errors():
        for flag, directory in (("--configs-dir", configs_dir), ("--studies-dir", studies_dir)):
            if directory.exists() and not directory.is_dir():
                raise MLPLabError(f"{flag} {directory}: is a file, expected a directory")
        configs = list_configs(configs_dir)
        studies = list_studies(studies_dir)
    if as_json:
        emit({"configs_dir": str(configs_dir), "configs": configs, "studies_dir": str(studies_dir), "studies": studies})
        return
    for title, directory, entries in (("configs", configs_dir, configs), ("studies", studies_dir, studies)):
        for shipped, heading in (
            (False, f"{title} ({directory}/)"),
            (True, f"shipped {title} (mlp-lab init DIR copies them)"),
        ):
            group = [entry for entry in entries if entry["shipped"] == shipped]
            if group or not shipped:
                out.print(heading, style="bold", highlight=False, markup=False)
            for entry in group:
                out.print(
                    f"  {entry['name']:<28} {entry['state']:<12} {entry['detail']}", highlight=False, markup=False
                )


@app.command()
def data(
    ctx: typer.Context,
    dataset: Annotated[
        str | None,
        typer.Argument(
            help="fashion_mnist, mnist, cifar10, a registered dataset, or a config (.yaml) whose data section to read.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Take the data section of this config instead.")
    ] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the sample grid PNG goes.")] = Path("runs/data"),
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Describe a dataset (shapes, value range, classes, counts per split) and save a sample grid
    (a table, data.source kind csv: a feature summary instead); with a config whose data.augment
    is on, an augmented sample grid too.

    Example: mlp-lab data fashion_mnist; mlp-lab data my_study.yaml; mlp-lab data --config configs/mnist_robust.yaml
    """
    from rich.table import Table

    emit = json_output(ctx, as_json)

    with user_errors():
        from mlp_lab.config.datasets import names
        from mlp_lab.config.schema import DataConfig

        if config is None and dataset is not None and dataset.endswith((".yaml", ".yml")):
            config = Path(dataset)  # mlp-lab data CONFIG: a config's data section (a user's source)
        if config is not None:
            data_cfg = load_config(config).data
        elif dataset is not None:
            known = names()  # the registered datasets' facts: no torch needed
            if dataset not in known:
                raise MLPLabError(f"dataset {clip(repr(dataset))} is unknown; choose from {', '.join(known)}")
            data_cfg = DataConfig(dataset=dataset)
        else:
            raise MLPLabError("give a DATASET (e.g. fashion_mnist) or --config CONFIG")
        from mlp_lab.inspect.analysis import inspect_data

        info, grid = inspect_data(data_cfg, out_dir, data_dirs(data_dir))
    if as_json:
        emit({**info, "sample_grid": str(grid)})
        return
    out.print(f"[bold]{info['dataset']}[/bold] from {info['source']}")
    c, h, w = info["image_shape"]
    if "features" in info:
        _print_table_summary(info)
    else:
        _print_image_summary(info)
    table = Table("class", "name", "train", "val", "test")
    for k, name in enumerate(info["classes"]):
        table.add_row(str(k), name, *(str(info["counts"][split][k]) for split in ("train", "val", "test")))
    table.add_row("", "total", *(str(sum(info["counts"][split])) for split in ("train", "val", "test")), style="bold")
    out.print(table)
    if grid is not None:
        out.print(f"sample grid: {grid}", highlight=False)
    if "augmented_grid" in info:
        out.print(f"augmented sample grid (data.augment): {info['augmented_grid']}", highlight=False)


def _print_table_summary(info: dict) -> None:
    from rich.table import Table

    c = info["channels"]
    out.print(
        f"table: {c} numeric features, standardised by the train split's mean and std "
        f"(as tensors: {info['tensor_dtype']} rows of {c} features)",
        highlight=False,
    )
    shown = info["features"]
    table = Table("feature", "mean", "std", "min", "max", title=f"train split, first {len(shown)} of {c} features")
    for row in shown:
        table.add_row(row["feature"], *(f"{row[k]:.4g}" for k in ("mean", "std", "min", "max")))
    out.print(table)


def _print_image_summary(info: dict) -> None:
    c, h, w = info["image_shape"]
    out.print(
        f"images: {c}x{h}x{w} ({info['colour']}), raw {info['raw_dtype']} in {info['raw_range']}; "
        f"as tensors: {info['tensor_dtype']} rows of {c * h * w} features, normalized range "
        f"[{info['normalized_range'][0]:.2f}, {info['normalized_range'][1]:.2f}] "
        f"(mean {', '.join(f'{m:.4f}' for m in info['mean'])}, std {', '.join(f'{s:.4f}' for s in info['std'])})",
        highlight=False,
    )


@app.command()
def summary(ctx: typer.Context, config: ConfigArg, overrides: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Layer table of a config's model (output shapes, parameters, MACs), totals and MACs per sample.

    Example: mlp-lab summary configs/baseline.yaml
    """
    from rich.table import Table

    emit = json_output(ctx, as_json)

    with user_errors():
        cfg = load_config(config, overrides or ())
        from mlp_lab.inspect.analysis import model_summary

        info = model_summary(cfg)
    if as_json:
        emit({"name": cfg.name, **info})
        return
    table = Table(
        "layer",
        "detail",
        "output shape",
        "parameters",
        "MACs",
        title=f"{cfg.name}: input {tuple(info['input_shape'])}",
    )
    for row in info["layers"]:
        shape = str(tuple(row["output_shape"]))
        table.add_row(row["layer"], row["detail"], shape, f"{row['parameters']:,}", f"{row['macs']:,}")
    out.print(table)
    out.print(
        f"total parameters: {info['total_parameters']:,}\ntrainable parameters: {info['trainable_parameters']:,}\n"
        f"multiply-accumulates per sample: {info['macs_per_sample']:,}",
        highlight=False,
    )
