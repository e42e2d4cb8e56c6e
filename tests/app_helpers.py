"""A tiny "drawn shapes" dataset in MNIST's IDX format, and the app served for tests and benchmarks.

The shapes are drawn the way a person draws on the app's canvas (thick strokes on a 280 x 280
canvas, anywhere, any size) and passed through MNIST's own recipe (`prepare_image`), so a model
trained on them in seconds recognises a stroke drawn in a real browser: class 0 is a ring, 1 a
vertical bar, 2 a horizontal bar, ... (`SHAPES`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, wait_for_health
from PIL import Image, ImageDraw

from mlp_lab.config.load import validate_config
from mlp_lab.inspect.predict import prepare_image

REPO = Path(__file__).resolve().parents[1]
CANVAS = 280
SHAPES = ("ring", "vertical", "horizontal", "slash", "backslash", "plus", "cross", "seven", "eight", "ell")
DIGIT_META = {"dataset": "mnist", "image_shape": [1, 28, 28]}


def shape_strokes(shape: str, cx: float, cy: float, r: float) -> list[list[tuple[float, float]]]:
    """The polylines that draw `shape` centred at (cx, cy) with half-size r, in canvas pixels."""
    if shape == "ring":
        angles = np.linspace(0, 2 * np.pi, 33)
        return [[(cx + 0.7 * r * np.cos(a), cy + r * np.sin(a)) for a in angles]]
    if shape == "eight":
        angles = np.linspace(0, 2 * np.pi, 25)
        return [
            [(cx + 0.45 * r * np.cos(a), cy - r / 2 + 0.5 * r * np.sin(a)) for a in angles],
            [(cx + 0.5 * r * np.cos(a), cy + r / 2 + 0.5 * r * np.sin(a)) for a in angles],
        ]
    lines = {
        "vertical": [[(cx, cy - r), (cx, cy + r)]],
        "horizontal": [[(cx - r, cy), (cx + r, cy)]],
        "slash": [[(cx - r, cy + r), (cx + r, cy - r)]],
        "backslash": [[(cx - r, cy - r), (cx + r, cy + r)]],
        "plus": [[(cx, cy - r), (cx, cy + r)], [(cx - r, cy), (cx + r, cy)]],
        "cross": [[(cx - r, cy - r), (cx + r, cy + r)], [(cx - r, cy + r), (cx + r, cy - r)]],
        "seven": [[(cx - r * 0.7, cy - r), (cx + r * 0.7, cy - r), (cx - r * 0.1, cy + r)]],
        "ell": [[(cx - r * 0.5, cy - r), (cx - r * 0.5, cy + r), (cx + r * 0.6, cy + r)]],
    }
    return lines[shape]


def draw_shape(shape: str, rng: np.random.Generator, dark_on_light: bool = False) -> Image.Image:
    """One shape drawn on a canvas-sized picture at a random place, size and stroke width."""
    background, ink = (255, 0) if dark_on_light else (0, 255)
    img = Image.new("L", (CANVAS, CANVAS), background)
    pen = ImageDraw.Draw(img)
    r = rng.uniform(50, 100)
    cx, cy = rng.uniform(r + 10, CANVAS - r - 10, size=2)
    width = int(rng.integers(12, 26))
    for line in shape_strokes(shape, cx, cy, r):
        pen.line(line, fill=ink, width=width, joint="curve")
    return img


def write_shapes_dataset(directory: Path, n_train: int = 900, n_test: int = 200, seed: int = 0) -> Path:
    """The four IDX files of a drawn-shapes dataset (MNIST layout, labels = index in SHAPES)."""
    from conftest import write_idx

    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, len(SHAPES), n).astype(np.uint8)
        images = np.stack([prepare_image(draw_shape(SHAPES[k], rng), DIGIT_META)[0] for k in labels])
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels)
    return directory


def stop_process(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, and everything it started, by its pid."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)


@contextmanager
def served_app(
    runs: Path,
    cwd: Path,
    log: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    args: Sequence[str] = (),
):
    """`mlp-lab app ARGS` on a free 127.0.0.1 port; yields (address, process) once
    /_stcore/health answers; stopped by its pid (its process group) afterwards."""
    port = free_port()
    environment = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlp_lab", "app", "--port", str(port), "--runs", str(runs), *args],
            cwd=cwd,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(f"{address}/_stcore/health", process, log, "mlp-lab app", timeout)
        yield address, process
    finally:
        stop_process(process)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def launch_chromium(playwright):
    """Debian's Chromium under Playwright (Playwright's own browser download does not work here)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def draw_strokes(page, strokes: list[list[tuple[float, float]]], steps: int = 4) -> None:
    """Draw polylines (canvas pixels) on the app's canvas with the mouse: down, moves, up per stroke."""
    box = page.locator("canvas.mlp-canvas").bounding_box()
    for line in strokes:
        x, y = line[0]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(line, line[1:]):
            for t in np.linspace(0, 1, steps + 1)[1:]:
                page.mouse.move(box["x"] + x0 + t * (x1 - x0), box["y"] + y0 + t * (y1 - y0))
        page.mouse.up()


def canvas_caption(page) -> str:
    """The caption under the canvas's prediction ("canvas ink 1234 px · ..."), or '' before the first stroke."""
    return page.evaluate(CAPTION_JS)


CAPTION_JS = (
    "() => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
    ".map(e => e.innerText).find(t => t.startsWith('canvas ink')) || ''"
)


def wait_for_new_answer(page, before: str, timeout_ms: float) -> None:
    """Wait until the canvas's caption differs from `before`: the page shows the answer to the last stroke."""
    page.wait_for_function(
        f"([before]) => {{ const c = ({CAPTION_JS})(); return c && c !== before; }}",
        arg=[before],
        polling="raf",
        timeout=timeout_ms,
    )


# The app's canvas once its script has sized it and listens for the pointer, with nothing drawn yet.
READY = 'canvas.mlp-canvas[data-ready="1"][data-strokes="0"]'


def wait_for_empty_canvas(page, timeout_s: float = 60.0) -> None:
    """Wait until the page shows one fresh, empty canvas, ready for strokes, and no answer: after a
    load or Clear, Streamlit keeps the old canvas and answer on the page (faded) until the rerun ends.
    The canvas marks itself `data-ready` once its script has sized it and listens for the pointer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if (
            page.locator("canvas.mlp-canvas").count() == 1
            and page.locator(READY).count() == 1
            and not canvas_caption(page)
            and page.get_by_text("draw a digit on the canvas").count()
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("no fresh empty canvas on the page")
        page.wait_for_timeout(50)


def draw_and_wait(page, strokes: list[list[tuple[float, float]]], timeout_ms: float = 60_000) -> None:
    """Draw strokes and wait until the page shows the answer to them."""
    before = canvas_caption(page)
    draw_strokes(page, strokes)
    wait_for_new_answer(page, before, timeout_ms)


def shapes_config(root: Path, **train):
    """A small MNIST-format run over the drawn-shapes data: seconds to train, 100% on its test split."""
    return validate_config(
        {
            "name": "shapes",
            "data": {"dataset": "mnist", "root": str(root / "data"), "download": False, "val_fraction": 0.2},
            "model": {"hidden_sizes": [64]},
            "train": {"epochs": 10, "batch_size": 32, "device": "cpu", **train},
            "output": {"dir": str(root / "runs"), "tensorboard": False},
        },
        "shapes.yaml",
    )


def require_browser():
    """Playwright's sync API, or a skip (outside CI) / failure (in CI) saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package (pip install -e '.[app]')"
    else:
        if CHROMIUM.exists():
            return sync_playwright
        missing = f"{CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{missing} is missing in CI")
    pytest.skip(f"{missing} is not installed")


def digit_photo(ink: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A photo of a digit written on paper: one of scikit-learn's 8 x 8 UCI scans (ink 0..16), dark
    pencil on light paper with uneven light and grain, `size` (width, height) pixels, the digit
    somewhere near the middle at 40-60 % of the shorter side."""
    width, height = size
    side = int(min(width, height) * rng.uniform(0.4, 0.6))
    glyph = np.asarray(
        # A blank ring round the 8 x 8 grid (cropped to the ink): the strokes fade out, not cut off.
        Image.fromarray((np.pad(ink, 1) * (255 / 16)).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC),
        dtype=np.float64,
    )
    rows, cols = np.mgrid[0:height, 0:width]
    paper = 228 + 14 * cols / width - 10 * rows / height + rng.normal(0, 5, (height, width))  # light falls off
    left = int(rng.integers(width // 2 - side // 2 - width // 10, width // 2 - side // 2 + width // 10 + 1))
    top = int(rng.integers(height // 2 - side // 2 - height // 10, height // 2 - side // 2 + height // 10 + 1))
    left, top = min(max(left, 0), width - side), min(max(top, 0), height - side)
    darkness = np.zeros((height, width))
    darkness[top : top + side, left : left + side] = np.clip(glyph, 0, 255) / 255
    pencil = rng.uniform(40, 80)
    photo = paper * (1 - darkness) + (pencil + rng.normal(0, 6, (height, width))) * darkness
    return Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).convert("RGB")
