"""How well an MNIST run reads digits drawn the way a user draws them.

Usage: python benchmarks/drawn_digits.py RUN_DIR [--n 2000] [--data-dir DIR] [--seed 0]
                                         [--stroke-change PX] [--json FILE] [--png FILE]

Each sampled MNIST test digit is redrawn as a user's drawing looks: dark strokes on a light
280 x 280 canvas, the digit's longer side at 40-60 % of the frame at a random spot (seeded). The
stroke comes from the real test image, upscaled with bicubic interpolation, thresholded at half
intensity and softened with a small Gaussian like an anti-aliased brush. The model's accuracy on
these drawings is reported with the plain resize and with MNIST's own normalisation (crop, 20 px
box, centre of mass), next to its accuracy on the real test images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from mlp_lab.core.errors import MLPLabError
from mlp_lab.data.load import load_data
from mlp_lab.inspect.analysis import unnormalize
from mlp_lab.inspect.predict import images_to_features, predict, prepare_image
from mlp_lab.training.checkpoint import load_model

CANVAS = 280
# Each entry: how the drawing is turned into the model's input.
METHODS = {
    "plain resize, no invert (before)": {"invert": False, "normalise": "plain"},
    "plain resize, auto invert": {"invert": "auto", "normalise": "plain"},
    "digit normalisation, auto invert": {"invert": "auto", "normalise": "digit"},
}


def render_drawing(
    digit: np.ndarray, rng: np.random.Generator, canvas: int = CANVAS, stroke_change: float = 0.0
) -> np.ndarray:
    """A 28 x 28 uint8 MNIST digit -> a (canvas, canvas) uint8 gray drawing, dark on light.

    `stroke_change` widens (> 0) or narrows (< 0) the stroke's edge by that many canvas pixels:
    a user's brush is not as wide as the writer's pen was.
    """
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    crop = np.pad(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32), 2)
    longer = rng.uniform(0.4, 0.6) * canvas
    scale = longer / (max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
    h, w = round(crop.shape[0] * scale), round(crop.shape[1] * scale)
    smooth = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.BICUBIC))
    # Threshold: a brush stroke has a hard shape; then soften its edge like an anti-aliased brush.
    shape = smooth > 127.5
    if stroke_change > 0:
        shape = ndimage.distance_transform_edt(~shape) <= stroke_change
    elif stroke_change < 0:
        shape = ndimage.distance_transform_edt(shape) > -stroke_change
    stroke = ndimage.gaussian_filter(shape.astype(np.float64), sigma=rng.uniform(0.8, 2.0)) * 255.0
    ink = np.zeros((canvas, canvas))
    top, left = rng.integers(0, canvas - h + 1), rng.integers(0, canvas - w + 1)
    ink[top : top + h, left : left + w] = stroke
    return np.clip(np.rint(255.0 - ink), 0, 255).astype(np.uint8)


def accuracy(model: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    predicted = torch.cat([predict(model, features[i : i + batch]).argmax(1) for i in range(0, len(features), batch)])
    return float((predicted == labels).float().mean())


def save_examples(
    path: Path, drawings: list[np.ndarray], labels: list[int], meta: dict, model: torch.nn.Module
) -> None:
    """A grid: each drawing, then what the model sees under each method, with its prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {name: METHODS[name] for name in list(METHODS)[1:]}
    fig, axes = plt.subplots(
        1 + len(shown), len(drawings), figsize=(1.7 * len(drawings), 1.9 * (1 + len(shown))), squeeze=False
    )
    for j, (drawing, label) in enumerate(zip(drawings, labels)):
        axes[0, j].imshow(drawing, cmap="gray", vmin=0, vmax=255)
        axes[0, j].set_title(f"drawn {label}", fontsize=8)
        for i, (name, method) in enumerate(shown.items(), start=1):
            view = prepare_image(drawing, meta, **method)[0]
            guess = int(predict(model, images_to_features([drawing], meta, **method)).argmax())
            axes[i, j].imshow(view, cmap="gray", vmin=0, vmax=255)
            axes[i, j].set_title(
                f"{name.split(',')[0]}: {guess}", fontsize=7, color="black" if guess == label else "crimson"
            )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("drawings (top) and what the model sees: plain resize vs MNIST normalisation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished MNIST run directory")
    parser.add_argument("--n", type=int, default=2000, help="how many test digits to draw")
    parser.add_argument("--data-dir", action="append", default=[], help="where the MNIST files are")
    parser.add_argument("--seed", type=int, default=0, help="seeds which digits, their size and place")
    parser.add_argument(
        "--stroke-change",
        type=float,
        default=0.0,
        help="widen (> 0) or narrow (< 0) every stroke by this many canvas pixels",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--png", type=Path, help="save example drawings and the model's view here")
    args = parser.parse_args(argv)

    run = load_model(args.run_dir)
    meta = run.data_meta
    if meta.get("dataset") != "mnist":
        raise MLPLabError(f"{args.run_dir}: trained on {meta.get('dataset')}, this benchmark needs an MNIST run")
    test = load_data(run.config.data, "cpu", args.data_dir).test
    rng = np.random.default_rng(args.seed)
    chosen = torch.from_numpy(np.sort(rng.choice(len(test), size=min(args.n, len(test)), replace=False)))
    digits = (unnormalize(test.x[chosen], meta["image_shape"], meta["mean"], meta["std"])[:, 0] * 255).round()
    digits = digits.to(torch.uint8).numpy()
    labels = test.y[chosen]
    drawings = [render_drawing(d, rng, stroke_change=args.stroke_change) for d in digits]

    result = {
        "run_dir": str(args.run_dir),
        "n": len(chosen),
        "seed": args.seed,
        "stroke_change": args.stroke_change,
        "test/acc (all 10000)": accuracy(run.model, test.x, test.y),
        "test/acc (same digits, real images)": accuracy(run.model, test.x[chosen], labels),
    }
    for name, method in METHODS.items():
        result[f"drawn/acc ({name})"] = accuracy(run.model, images_to_features(drawings, meta, **method), labels)

    width = max(len(k) for k in result if "acc" in k) + 2
    print(
        f"{args.run_dir}: {len(chosen)} drawn test digits (seed {args.seed}, stroke change {args.stroke_change:+g} px)"
    )
    for key, value in result.items():
        if "acc" in key:
            print(f"{key:<{width}}{100 * value:>8.2f} %")
    gap = result["test/acc (same digits, real images)"] - result["drawn/acc (digit normalisation, auto invert)"]
    print(f"{'gap to real test images (points)':<{width}}{100 * gap:>8.2f}")
    result["gap_points"] = 100 * gap
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.png:
        save_examples(args.png, drawings[:10], labels[:10].tolist(), meta, run.model)
        print(f"examples: {args.png}")
    return result


if __name__ == "__main__":
    try:
        main()
    except MLPLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
