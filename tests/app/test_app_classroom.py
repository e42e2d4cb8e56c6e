"""The app as a class uses it (issue 37): photos of handwritten digits uploaded on the Draw page
get the answer `mlp-lab predict` gives for the same files, and runs exported to MLflow are
listed once. Slow: a served app in Chromium, and real MLflow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from app_helpers import (
    REPO,
    digit_photo,
    launch_chromium,
    require_browser,
    served_app,
    shapes_config,
    write_shapes_dataset,
)

from mlp_lab.execution.procedure import start_run
from mlp_lab.inspect.handwriting import load_scans
from mlp_lab.training.context import RunContext

# Sizes a phone, a scanner and a cropped screenshot give; PNG and JPEG.
PHOTOS = [((60, 60), "png"), ((300, 300), "jpg"), ((800, 600), "png"), ((640, 480), "jpg")]

# Every upload's class bars as the page shows them: [[class, "12.3%"], ...] per upload, in page order.
BARS_JS = (
    "() => [...document.querySelectorAll('div.mlp-bars')].map(bars => [...bars.children]"
    ".map(row => [row.children[0].innerText, row.children[2].innerText]))"
)

# The page's messages about the uploads (a blank or unreadable one gets one instead of an answer).
ALERTS_JS = (
    "() => [...document.querySelectorAll('[data-testid=stAlertContainer]')].map(e => e.innerText)"
    ".filter(t => t.startsWith('digit-'))"
)
# The uploads' names as the page heads their answers (bold), in page order.
NAMES_JS = "() => [...document.querySelectorAll('[data-testid=stMarkdownContainer] strong')].map(e => e.innerText)"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(runs directory, run directory, data directory) of a small model trained on MNIST-format drawn shapes."""
    root = tmp_path_factory.mktemp("classroom")
    data = write_shapes_dataset(root / "idx", n_train=600, n_test=100)
    result = start_run(shapes_config(root, epochs=3), RunContext(data_dirs=(str(data),), threads=1))
    return root / "runs", result.run_dir, data


def write_photos(directory, seed: int = 0) -> list:
    """Photos of UCI digit scans, dark on light, at several sizes; their paths."""
    ink, _ = load_scans()
    rng = np.random.default_rng(seed)
    paths = []
    for k, (size, fmt) in enumerate(PHOTOS):
        path = directory / f"digit-{k}-{size[0]}x{size[1]}.{fmt}"
        digit_photo(ink[int(rng.integers(len(ink)))], size, rng).save(path, quality=90)
        paths.append(path)
    return paths


def cli_predictions(run_dir, paths) -> list[dict]:
    """`mlp-lab predict RUN FILES --top-k 10 --json` as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "mlp_lab", "predict", str(run_dir), *map(str, paths), "--top-k", "10", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.slow
def test_uploaded_digit_photos_get_the_answer_predict_gives(trained, tmp_path):
    sync_playwright = require_browser()
    runs, run_dir, _ = trained
    photos = write_photos(tmp_path)
    expected = cli_predictions(run_dir, photos)
    # Different photos, different answers: a picture read twice became one white square for all.
    assert len({json.dumps(result["top"]) for result in expected}) == len(photos)
    with (
        served_app(runs, tmp_path, tmp_path / "app.log") as (address, _),
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{address}/?page=Draw")
            page.get_by_text("Or upload pictures").wait_for()
            page.locator("input[type=file]").set_input_files([str(p) for p in photos])
            # Each upload gets its answer, or a message (a picture read twice turned blank).
            answered = f"() => ({BARS_JS})().length + ({ALERTS_JS})().length === {len(photos)}"
            page.wait_for_function(answered, polling=100)
            assert page.evaluate(ALERTS_JS) == []
            shown = page.evaluate(BARS_JS)
            names = page.evaluate(NAMES_JS)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}; app log: {tmp_path / 'app.log'}")
            raise
        finally:
            browser.close()
    assert names == [photo.name for photo in photos]  # each upload's answer under its name, in order
    for photo, bars, result in zip(photos, shown, expected):
        assert result["image"] == str(photo)
        on_page = {name: float(percent.rstrip("%")) for name, percent in bars}
        from_cli = {t["class"]: 100 * t["probability"] for t in result["top"]}
        assert max(on_page, key=on_page.get) == result["top"][0]["class"], photo.name
        assert on_page.keys() == from_cli.keys()
        for name, percent in on_page.items():  # shown to 0.1 %
            assert percent == pytest.approx(from_cli[name], abs=0.051), (photo.name, name)


@pytest.mark.slow
def test_runs_exported_to_mlflow_are_listed_once_and_draw_opens_on_a_real_model(trained, tmp_path, monkeypatch):
    """`mlp-lab track` copies each run's files into <runs>/mlartifacts/...: copies, not runs."""
    pytest.importorskip("mlflow")
    from streamlit.testing.v1 import AppTest
    from typer.testing import CliRunner

    from mlp_lab.app.serve import RUNS_ENV
    from mlp_lab.cli import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runs, data = tmp_path / "runs", trained[2]
    made = [
        start_run(
            shapes_config(tmp_path, epochs=2).model_copy(update={"name": f"shapes-{s}", "seed": s}),
            RunContext(data_dirs=(str(data),), threads=1),
        )
        for s in (0, 1)
    ]
    result = CliRunner().invoke(app, ["track", *(str(m.run_dir) for m in made)])
    assert result.exit_code == 0, result.output
    copies = list((runs / "mlartifacts").rglob("config.yaml"))
    assert len(copies) >= 2  # MLflow's copies of both runs' files are there
    names = sorted(m.run_dir.name for m in made)
    monkeypatch.setenv(RUNS_ENV, str(runs))
    main = REPO / "mlp_lab" / "app" / "main.py"
    draw = AppTest.from_file(str(main), default_timeout=60)
    draw.query_params["page"] = "Draw"
    draw.run()
    assert not draw.exception and not draw.error
    (picker,) = draw.selectbox
    assert sorted(option.split(" (")[0] for option in picker.options) == names  # each run once, no copies
    assert any("draw a digit" in info.value for info in draw.info)  # the canvas's hint: a model is loaded
    listing = AppTest.from_file(str(main), default_timeout=60)
    listing.query_params["page"] = "Runs"
    listing.run()
    assert not listing.exception
    assert sorted(listing.dataframe[0].value["run"]) == names
