"""`mlp-lab evaluate` and `predict`: look at what a trained run (or a registered model) does."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from mlp_lab.cli.common import DataDirOpt, JsonOpt, app, data_dirs, err, json_output, out, user_errors
from mlp_lab.core.errors import MLPLabError

RunDirArg = Annotated[
    Path,
    typer.Argument(
        help="A run directory (runs/baseline) or a registered model (models:/NAME@ALIAS, models:/NAME/VERSION).",
        show_default=False,
    ),
]


def _run_dir(target: Path) -> Path:
    """A run directory as given, or a registered model fetched into one (the [track] extra)."""
    from mlp_lab.tracking.registry import is_model_uri, materialize

    return materialize(str(target)) if is_model_uri(target) else target


@app.command()
def evaluate(
    ctx: typer.Context,
    run_dir: RunDirArg,
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    handwriting: Annotated[
        bool,
        typer.Option(
            "--handwriting",
            help="Instead of a split, score a digits run on real handwriting: scikit-learn's 1,797 scanned "
            "digits as PNG files, light-on-dark and dark-on-light, through predict's preprocessing.",
        ),
    ] = False,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-class report, confusion matrix and example grids for a run, written to RUN_DIR/eval/.

    Example: mlp-lab evaluate runs/baseline --split test; mlp-lab evaluate runs/mnist_robust --handwriting
    """
    emit = json_output(ctx, as_json)
    with user_errors():
        if split not in ("test", "val"):
            raise MLPLabError(f"--split {split}: choose test or val")
        from mlp_lab.inspect.evaluation import evaluate_handwriting, evaluate_run

        if handwriting:
            result = evaluate_handwriting(_run_dir(run_dir))
            split = "handwriting"
        else:
            result = evaluate_run(_run_dir(run_dir), split, data_dirs(data_dir))
    if as_json:
        emit(result)  # as RUN_DIR/eval/<split>_metrics.json
        return
    out.print((Path(result["run_dir"]) / "eval" / f"{split}_report.txt").read_text(), highlight=False)
    out.print(f"files in {Path(result['run_dir']) / 'eval'}: {', '.join(result['files'])}", highlight=False)


class Normalise(str, Enum):
    """predict's --normalise choices, here so that a typo is refused before torch loads (a test
    keeps them equal to predict.NORMALISATIONS)."""

    auto = "auto"
    plain = "plain"
    digit = "digit"
    fashion = "fashion"


@app.command()
def predict(
    run_dir: RunDirArg,
    images: Annotated[
        list[Path], typer.Argument(help="PNG/JPEG files of any size, colour or grayscale.", show_default=False)
    ],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many classes to show.")] = 3,
    invert: Annotated[
        bool | None,
        typer.Option(
            "--invert/--no-invert",
            help="Force inverting (dark-on-light drawings) or not \\[default: decided from the border pixels].",
            show_default=False,
        ),
    ] = None,
    normalise: Annotated[
        Normalise,
        typer.Option(
            help="auto (the dataset's own recipe: MNIST digits are cropped, scaled to 20 px and centred by mass; "
            "FashionMNIST objects trimmed and scaled to fill), plain (resize only), digit or fashion."
        ),
    ] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Classify image files with a trained run, preprocessed the way its dataset was made.

    Example: mlp-lab predict runs/mnist seven.png --top-k 3
    """
    normalise = Normalise(normalise).value
    with user_errors():
        from mlp_lab.inspect.predict import predict_files
        from mlp_lab.training.checkpoint import load_model

        results = predict_files(
            load_model(_run_dir(run_dir)),
            images,
            top_k,
            "auto" if invert is None else invert,
            normalise,
            keep_going=True,
        )
    if as_json:
        import json

        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    for result in results:
        if "error" in result:
            err.print(f"error: {result['error']}", highlight=False, markup=False, soft_wrap=True)
        elif not as_json:
            ranked = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
            out.print(f"{result['image']}: {ranked}", highlight=False, markup=False)
    if any("error" in result for result in results):
        raise typer.Exit(2)  # the good images' results are printed; the bad ones are named above
