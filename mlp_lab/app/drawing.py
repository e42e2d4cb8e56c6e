"""Drawings and uploads -> what the model sees and what it thinks.

The canvas's PNG and an uploaded file become a PIL image, with the caps and checks that turn bad
input into one clear message (``canvas_image``, ``read_upload``); a picture goes through a
`predict.Predictor` (``classify``), a blank one raising ``EmptyDrawing``, which the Draw page
shows as a hint; the answer is drawn as plain HTML (``bars_html``, ``view_html``). No streamlit.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

from mlp_lab.core.errors import MLPLabError

# Uploads: a phone photo is fine, a 200 MB TIFF is refused before decoding (and a decompression
# bomb by its pixel count, predict.MAX_IMAGE_PIXELS).
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class EmptyDrawing(MLPLabError):
    """Nothing drawn yet (or the canvas was cleared)."""


@dataclass(frozen=True)
class Classified:
    """What a model made of one picture: its 28x28 (or 32x32) view, all class probabilities,
    the top classes and how long preprocessing plus the forward pass took."""

    view: Any  # uint8 (C, H, W), before mean/std normalization: what a person can look at
    probabilities: list[float]
    top: list[dict[str, Any]]
    milliseconds: float

    @property
    def best(self) -> dict[str, Any]:
        return self.top[0]


MAX_CANVAS_BYTES = 2 * 1024 * 1024  # a 280 x 280 drawing is a few KB of PNG; anything far larger is not one
CANVAS_PREFIX = "data:image/png;base64,"


def canvas_image(data_url: str | None):
    """The canvas's drawing (a PNG data URL, as `canvas.drawing_canvas` returns it) -> a PIL image,
    or None before the first stroke. Anything else is one MLPLabError."""
    import base64

    from PIL import Image, UnidentifiedImageError

    if data_url is None:
        return None
    if not isinstance(data_url, str) or not data_url.startswith(CANVAS_PREFIX):
        raise MLPLabError("the canvas sent something that is not a PNG drawing: press Clear and draw again")
    if len(data_url) > MAX_CANVAS_BYTES:
        raise MLPLabError(f"the canvas sent {len(data_url) / 1e6:.1f} MB: too large for a drawing")
    try:
        img = Image.open(io.BytesIO(base64.b64decode(data_url[len(CANVAS_PREFIX) :], validate=True)))
        img.load()
    except (ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise MLPLabError(
            f"the canvas's drawing could not be read ({type(exc).__name__}): press Clear and draw again"
        ) from None
    return img


def ink_pixels(image_data: Any) -> int:
    """How many canvas pixels differ from the canvas's background (its corner): changes with every stroke."""
    import numpy as np

    from mlp_lab.inspect.predict import BLANK_CONTRAST, load_pixels

    pixels = load_pixels(image_data).channels(1)[..., 0]
    return int(np.count_nonzero(np.abs(pixels - pixels[0, 0]) > BLANK_CONTRAST))


def classify(predictor: Any, image: Any, k: int = 3, subject: str = "a digit") -> Classified:
    """Run one picture (a canvas's RGBA array, a PIL image, a path) through a `predict.Predictor`,
    read and preprocessed once (`Predictor.see`), as `mlp-lab predict` does.

    A missing or blank picture raises EmptyDrawing, which the page shows as a hint, not an error.
    """
    from mlp_lab.inspect.predict import BlankImage, top_classes

    if image is None:
        raise EmptyDrawing(f"draw {subject} on the canvas (or upload a picture)")
    started = time.perf_counter()
    try:
        view, probabilities = predictor.see(image)
    except BlankImage:
        raise EmptyDrawing("the picture is blank (one colour, no ink): nothing to classify") from None
    top = top_classes(probabilities.unsqueeze(0), predictor.classes, k)[0]
    milliseconds = (time.perf_counter() - started) * 1000.0
    return Classified(view, probabilities.tolist(), top, milliseconds)


def bars_html(classes: list[str], probabilities: list[float]) -> str:
    """Every class's probability as a horizontal bar, in plain HTML (cheap for a browser to redraw)."""
    from html import escape

    top = max(range(len(probabilities)), key=probabilities.__getitem__)
    rows = []
    for index, (name, p) in enumerate(zip(classes, probabilities)):
        colour = "#e4572e" if index == top else "#4c78a8"
        rows.append(
            f'<div style="display:flex;align-items:center;gap:8px;margin:2px 0">'
            f'<span style="width:7em;text-align:right;white-space:nowrap;overflow:hidden">{escape(str(name))}</span>'
            f'<span style="flex:1;background:#eef0f4;height:16px;border-radius:2px">'
            f'<span style="display:block;width:{100 * p:.1f}%;background:{colour};height:100%;border-radius:2px"></span>'
            f'</span><span style="width:3.5em;text-align:right">{100 * p:.1f}%</span></div>'
        )
    return f'<div class="mlp-bars" style="font-size:14px">{"".join(rows)}</div>'


def view_html(view: Any, scale: int) -> str:
    """uint8 (C, H, W), the model's view -> an inline PNG shown `scale` times larger with square pixels."""
    import base64

    from PIL import Image

    channels, height, width = view.shape
    array = view[0] if channels == 1 else view.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<img class="mlp-view" alt="the {width}x{height} picture the model sees" '
        f'src="data:image/png;base64,{data}" width="{width * scale}" height="{height * scale}" '
        f'style="image-rendering:pixelated;border:1px solid #bbb">'
    )


def read_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int | None = None):
    """An uploaded file -> a PIL image, or one MLPLabError naming the file: too large, too many
    pixels (checked from the header, before decoding), or not a readable image; read by the same
    reader as `mlp-lab predict`'s files (`predict.read_image`)."""
    from mlp_lab.inspect.predict import MAX_IMAGE_PIXELS, read_image

    if len(data) > max_bytes:
        raise MLPLabError(f"{name}: {len(data) / 1e6:.1f} MB is too large (at most {max_bytes / 1e6:.0f} MB)")
    if not data:
        raise MLPLabError(f"{name}: the file is empty")
    return read_image(name, io.BytesIO(data), MAX_IMAGE_PIXELS if max_pixels is None else max_pixels)
