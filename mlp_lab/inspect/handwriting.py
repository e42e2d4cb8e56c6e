"""Real handwriting: scikit-learn's bundled UCI optical digits, scanned the way a user's scan arrives.

`sklearn.datasets.load_digits` holds 1,797 digits of 43 writers (Alpaydin and Kaynak, UCI), each
an 8 x 8 grid of ink counts 0..16 taken from a 32 x 32 bitmap: nothing drawn by us or for MNIST,
and no download. Each digit becomes a PNG file as a scanner would give it: the ink on a margin of
paper, enlarged with a smooth resize to 48 x 48 pixels, either light ink on a dark ground or dark
ink on white paper. The decoded PNG goes through `predict`'s own preprocessing (border decides
the inversion, MNIST's crop, scale and centring), so the score is what `mlp-lab predict` users get.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from mlp_lab.config.datasets import offering
from mlp_lab.config.plugins import HANDWRITING
from mlp_lab.core.errors import MLPLabError
from mlp_lab.inspect.predict import images_to_features, predict

RENDERINGS = ("light_on_dark", "dark_on_light")
# A scan's paper around the digit, in grid cells on each side: the preprocessing reads the
# background from the picture's border, and load_digits' grids are cropped to the ink.
MARGIN_CELLS = 2
# Pixels per grid cell in the PNG (12 cells -> 48 x 48 pixels).
CELL_PIXELS = 4
# load_digits' ink counts run from 0 to 16.
MAX_INK = 16


@functools.cache
def load_scans() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as ink counts (N, 8, 8) in 0..16 and their labels (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float64), digits.target.astype(np.int64)


def render_scan(ink: np.ndarray, rendering: str) -> bytes:
    """One 8 x 8 grid of ink counts as the PNG file (8-bit grayscale) a scan of it would be."""
    if rendering not in RENDERINGS:
        raise MLPLabError(f"rendering {rendering!r}: choose one of {', '.join(RENDERINGS)}")
    level = np.pad(ink / MAX_INK, MARGIN_CELLS) * 255.0
    side = level.shape[0] * CELL_PIXELS
    image = Image.fromarray(level.astype(np.float32)).resize((side, side), Image.Resampling.BICUBIC)
    pixels = np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)
    if rendering == "dark_on_light":
        pixels = 255 - pixels
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _decode(png: bytes) -> Image.Image:
    with Image.open(io.BytesIO(png)) as img:
        img.load()
        return img.copy()


# The scans rendered, decoded and preprocessed are the same for every model trained with the same
# data recipe (the seeds of a study, a run scored again): made once per process, they leave one
# forward pass per model (scoring took 2.3 CPU-seconds a run, nearly all of it here).
@functools.lru_cache(maxsize=8)
def _scan_features(rendering: str, recipe: tuple[tuple[str, Any], ...]) -> torch.Tensor:
    ink, _ = load_scans()
    scans = [_decode(render_scan(grid, rendering)) for grid in ink]
    return images_to_features(scans, {key: list(v) if isinstance(v, tuple) else v for key, v in recipe})


def _recipe(meta: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A checkpoint's data `meta` as a hashable key: its lists (mean, std, shape, permutation) as tuples."""
    return tuple(sorted((key, tuple(v) if isinstance(v, list) else v) for key, v in meta.items()))


def score_scans(
    model: torch.nn.Module, meta: Mapping[str, Any], renderings: Sequence[str] = RENDERINGS
) -> dict[str, dict[str, Any]]:
    """Accuracy of a digits model (with its checkpoint's data `meta`) on the scans, per rendering:
    {rendering: {accuracy, correct, examples, per_class_accuracy}}, through `predict`'s default
    preprocessing (inversion decided from the border, MNIST's digit recipe)."""
    dataset = meta.get("dataset")
    digits = offering(HANDWRITING.name)  # the datasets that declare this plug-in
    if dataset not in digits:
        raise MLPLabError(
            f"the handwriting set is digits: this model is trained on {dataset}, not {' or '.join(digits)}"
        )
    _, labels = load_scans()
    results: dict[str, dict[str, Any]] = {}
    for rendering in renderings:
        features = _scan_features(rendering, _recipe(meta))
        predicted = predict(model, features).argmax(1).numpy()
        hits = predicted == labels
        results[rendering] = {
            "accuracy": float(hits.mean()),
            "correct": int(hits.sum()),
            "examples": int(hits.size),
            "per_class_accuracy": [float(hits[labels == k].mean()) for k in range(10)],
        }
    return results


def handwriting_metrics(model: torch.nn.Module, meta: Mapping[str, Any]) -> dict[str, float]:
    """The scans' accuracies as summary metrics: `handwriting/acc` (the mean over the renderings,
    what a study reports beside test/acc) and one `handwriting/acc_<rendering>` each."""
    scores = score_scans(model, meta)
    metrics = {f"{HANDWRITING.metric}_{r}": scores[r]["accuracy"] for r in RENDERINGS}
    return {HANDWRITING.metric: float(np.mean(list(metrics.values()))), **metrics}
