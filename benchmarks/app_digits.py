"""Digits 0-9 drawn with the mouse in a real browser on the app's canvas, and the stroke -> chart time.

Usage: python benchmarks/app_digits.py RUN_DIR [--screenshot docs/app.png] [--json FILE]

Serves `mlp-lab app` on a free 127.0.0.1 port over a copy of RUN_DIR (config, summary, metrics,
checkpoints: the original is only read), opens it in Debian's Chromium through Playwright, and
for each digit 0-9 clears the canvas and draws it as mouse strokes shaped like handwriting
(`DIGITS`). It reads the predicted class with the MNIST-style normalisation (the app's default)
and then, for the same drawing, with the plain resize. Every stroke's round trip is timed from
mouse-up until the page shows the answer for that stroke (the caption with the canvas's ink count
changes: it is written after the chart and the model's view). Also times the in-process
prediction alone (`drawing.classify`: canvas RGBA -> 28x28 -> probabilities) on the same drawings.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the served-app and drawing helpers the browser test uses

from app_helpers import canvas_caption, launch_chromium, served_app, wait_for_empty_canvas, wait_for_new_answer  # noqa: E402

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> Stroke:
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = right, 90 = down)."""
    angles = np.radians(np.linspace(start, end, n))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


# Each digit as strokes on the 280 x 280 canvas, drawn as a person would: a slightly tilted 0,
# a 1 with its flag, a 4 in two strokes, a 5 with its bar added last, a looped 8, ...
DIGITS: dict[int, list[Stroke]] = {
    0: [_arc(140, 140, 55, 88, -100, 265, 36)],
    1: [[(118, 82), (152, 48), (147, 120), (141, 232)]],
    2: [_arc(138, 100, 52, 48, 200, 375, 18) + [(160, 160), (118, 200), (84, 228), (140, 226), (205, 226)]],
    3: [_arc(135, 92, 50, 42, 210, 450, 20)[:-4] + _arc(138, 178, 55, 48, -90, 150, 20)],
    4: [[(118, 45), (92, 150), (205, 150)], [(172, 70), (168, 235)]],
    5: [[(104, 52), (96, 128)] + _arc(138, 172, 55, 52, -120, 145, 22), [(104, 52), (196, 50)]],
    6: [[(178, 50), (140, 70), (108, 112), (92, 168)] + _arc(140, 185, 48, 45, 180, 540, 28)],
    7: [[(78, 58), (202, 58), (150, 140), (118, 236)]],
    8: [[(140 + 48 * np.sin(2 * t), 140 - 88 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 40)]],
    9: [_arc(136, 98, 48, 46, 0, 360, 28), [(184, 98), (180, 170), (170, 236)]],
}
# Where a digit goes: as designed (large, centred, as a careful user draws), and a quarter of the
# canvas in its top-left corner (as a hurried one might): MNIST's recipe undoes the second.
PLACEMENTS = {"large, centred": (1.0, 0.0, 0.0), "small, top-left": (0.45, 25.0, 25.0)}


def placed(strokes: list[Stroke], placement: str) -> list[Stroke]:
    scale, dx, dy = PLACEMENTS[placement]
    return [[(dx + scale * x, dy + scale * y) for x, y in stroke] for stroke in strokes]


def predicted(page) -> str:
    """The class in "Prediction: 7 (98.1%)"."""
    text = page.get_by_text(re.compile(r"^Prediction: ")).first.inner_text()
    return text.removeprefix("Prediction: ").split(" (")[0]


def _stroke(page, box: dict[str, float], stroke: Stroke, steps: int) -> float:
    """Button down, moves, then mouse-up; returns the perf_counter() time of the mouse-up."""
    page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
        for t in np.linspace(0, 1, steps + 1)[1:]:
            page.mouse.move(box["x"] + x0 + t * (x1 - x0), box["y"] + y0 + t * (y1 - y0))
    started = time.perf_counter()
    page.mouse.up()
    return started


def draw_timed(page, strokes: list[Stroke], steps: int = 3) -> list[float]:
    """Draw stroke by stroke; the milliseconds from each mouse-up until the page shows the answer
    for the drawing so far."""
    box = page.locator("canvas.mlp-canvas").bounding_box()
    times = []
    for stroke in strokes:
        before = canvas_caption(page)
        started = _stroke(page, box, stroke, steps)
        wait_for_new_answer(page, before, 60_000)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def choose_preprocessing(page, label: str) -> None:
    page.get_by_text(label, exact=True).click()
    page.get_by_text(re.compile(rf"canvas ink \d+ px · {re.escape(label)}")).wait_for()


def copy_run(run_dir: Path, runs: Path) -> Path:
    """The files the app needs from a run, copied (the original stays untouched)."""
    target = runs / run_dir.name
    (target / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "summary.json", "metrics.csv", "curves.png"):
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, target / name)
    shutil.copy(run_dir / "checkpoints" / "best.pt", target / "checkpoints" / "best.pt")
    return target


def in_process_ms(run_dir: Path, repeats: int = 30) -> float:
    """Median in-process time of `drawing.classify` on a drawn 280 x 280 RGBA canvas."""
    from PIL import Image, ImageDraw

    from mlp_lab.app.drawing import classify
    from mlp_lab.inspect.predict import Predictor
    from mlp_lab.training.checkpoint import load_model

    predictor = Predictor(load_model(run_dir))
    img = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(img)
    for stroke in DIGITS[2]:
        pen.line(stroke, fill=(255, 255, 255, 255), width=20, joint="curve")
    rgba = np.asarray(img)
    classify(predictor, rgba)  # warm up
    return statistics.median(classify(predictor, rgba).milliseconds for _ in range(repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the Draw page (a 2 drawn) here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {"run_dir": str(args.run_dir), "digits": {}, "round_trip_ms": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        copy_run(args.run_dir, tmp / "runs")
        from playwright.sync_api import sync_playwright

        with served_app(tmp / "runs", tmp, tmp / "app.log") as (address, _), sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            try:
                page.goto(f"{address}/?page=Draw")
                wait_for_empty_canvas(page)
                first = True
                for placement in PLACEMENTS:
                    for digit, strokes in DIGITS.items():
                        if not first:  # a fresh canvas: Clear, then wait until the page shows it
                            page.get_by_role("button", name="Clear").click()
                            wait_for_empty_canvas(page)
                        first = False
                        results["round_trip_ms"] += draw_timed(page, placed(strokes, placement))
                        mnist_style = predicted(page)
                        if digit == 2 and placement == "large, centred" and args.screenshot:
                            page.screenshot(path=str(args.screenshot))
                        choose_preprocessing(page, "plain resize")
                        plain = predicted(page)
                        choose_preprocessing(page, "the dataset's own (MNIST-style for digits)")
                        results["digits"].setdefault(placement, {})[digit] = {
                            "mnist_style": mnist_style,
                            "plain": plain,
                        }
                        print(
                            f"{placement}: drew {digit}: MNIST-style -> {mnist_style}, plain resize -> {plain}",
                            flush=True,
                        )
            except Exception:
                page.screenshot(path=str(Path(tempfile.gettempdir()) / "app_digits_failure.png"), full_page=True)
                print(
                    f"failed; screenshot in {tempfile.gettempdir()}/app_digits_failure.png; app log:\n"
                    f"{(tmp / 'app.log').read_text()[-2000:]}"
                )
                raise
            finally:
                browser.close()
    results["in_process_ms"] = in_process_ms(args.run_dir)
    results["recognised"] = {
        placement: {way: sum(str(d) == r[way] for d, r in digits.items()) for way in ("mnist_style", "plain")}
        for placement, digits in results["digits"].items()
    }
    for placement, counts in results["recognised"].items():
        print(
            f"{placement}: recognised with MNIST-style normalisation {counts['mnist_style']}/10, "
            f"with plain resize {counts['plain']}/10"
        )
    times = results["round_trip_ms"]
    print(
        f"stroke -> updated answer in the browser: median {statistics.median(times):.0f} ms "
        f"(min {min(times):.0f}, max {max(times):.0f}, {len(times)} strokes)"
    )
    print(f"in-process preprocessing + prediction: median {results['in_process_ms']:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
