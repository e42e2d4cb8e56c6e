"""The web app: its logic as plain functions, its pages under Streamlit's AppTest, and (slow) the
served app driven by a real Chromium through Playwright."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from app_helpers import (
    CANVAS,
    SHAPES,
    draw_and_wait,
    draw_shape,
    launch_chromium,
    require_browser,
    served_app,
    shape_strokes,
    shapes_config,
    wait_for_empty_canvas,
    write_shapes_dataset,
)
from conftest import free_port, wait_for_health
from PIL import Image
from typer.testing import CliRunner

from mlp_lab.app import drawing, form, launched, models, serve, studies, training
from mlp_lab.app import runs as app_runs
from mlp_lab.app.serve import MLFLOW_ENV, RUNS_ENV
from mlp_lab.cli import app
from mlp_lab.config.load import validate_config
from mlp_lab.core.errors import MLPLabError
from mlp_lab.execution.procedure import start_run
from mlp_lab.inspect.predict import Predictor
from mlp_lab.runs import rundir
from mlp_lab.training.checkpoint import load_model
from mlp_lab.training.context import RunContext

runner = CliRunner()
MAIN = Path(__file__).resolve().parents[2] / "mlp_lab" / "app" / "main.py"


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """(runs directory, run directory, data directory) of a trained shapes model, shared by the module."""
    root = tmp_path_factory.mktemp("shapes")
    data = write_shapes_dataset(root / "idx")
    # Passed, not put in $MLP_LAB_DATA: the environment (CI's real MNIST there) is left as it was.
    result = start_run(shapes_config(root), RunContext(data_dirs=(str(data),), threads=1))
    assert result.summary["test/acc"] > 0.95
    return root / "runs", result.run_dir, data


@pytest.fixture
def predictor(shapes_run):
    return Predictor(load_model(shapes_run[1]))


def canvas_rgba(shape: str, seed: int = 1, dark_on_light: bool = False) -> np.ndarray:
    """A drawing as an RGBA array, strokes opaque, the rest transparent black (as some canvases give)."""
    gray = np.asarray(draw_shape(shape, np.random.default_rng(seed), dark_on_light))
    ink = gray < 128 if dark_on_light else gray > 127
    rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    rgba[ink] = (0, 0, 0, 255) if dark_on_light else (255, 255, 255, 255)
    return rgba


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def canvas_data_url(shape: str, seed: int = 1, dark_on_light: bool = False) -> str:
    """What the app's canvas sends after a stroke: the opaque RGBA drawing as a PNG data URL."""
    img = draw_shape(shape, np.random.default_rng(seed), dark_on_light).convert("RGBA")
    return drawing.CANVAS_PREFIX + base64.b64encode(png_bytes(img)).decode("ascii")


# -- canvas pixels -> what the model sees and thinks --------------------------------------------


@pytest.mark.parametrize("dark_on_light", [False, True])
def test_a_drawn_shape_is_recognised_in_either_colour_scheme(predictor, dark_on_light):
    for k in (0, 1, 2, 5):
        classified = drawing.classify(predictor, canvas_rgba(SHAPES[k], seed=k, dark_on_light=dark_on_light))
        assert classified.best["index"] == k
        assert classified.view.shape == (1, 28, 28) and classified.view.dtype == np.uint8
        # MNIST's recipe: white ink on black, the digit's box 20 px, nothing at the border.
        assert classified.view.max() == 255 and classified.view[0, 0].max() == 0
        assert abs(sum(classified.probabilities) - 1) < 1e-5 and classified.milliseconds > 0


@pytest.mark.parametrize("dark_on_light", [False, True])
def test_the_canvas_drawing_it_sends_is_read_and_recognised(predictor, dark_on_light):
    for k in (0, 3, 7):
        img = drawing.canvas_image(canvas_data_url(SHAPES[k], seed=k, dark_on_light=dark_on_light))
        assert img.size == (CANVAS, CANVAS)
        assert drawing.classify(predictor, img).best["index"] == k
    assert drawing.canvas_image(None) is None  # nothing drawn yet


def test_a_canvas_message_that_is_not_a_png_drawing_is_one_message():
    good = canvas_data_url("ring")
    for bad, match in [
        ("data:image/jpeg;base64,AAAA", "not a PNG drawing"),
        (42, "not a PNG drawing"),
        (drawing.CANVAS_PREFIX + "!!not base64!!", "could not be read"),
        (drawing.CANVAS_PREFIX + base64.b64encode(b"text, not a picture").decode(), "could not be read"),
        (good[:200], "could not be read"),
        (drawing.CANVAS_PREFIX + "A" * drawing.MAX_CANVAS_BYTES, "too large for a drawing"),
    ]:
        with pytest.raises(MLPLabError, match=match):
            drawing.canvas_image(bad)


def test_bars_and_view_are_plain_html_with_names_escaped():
    bars = drawing.bars_html(["<b>cat</b>", "dog"], [0.25, 0.75])
    assert "&lt;b&gt;cat&lt;/b&gt;" in bars and "<b>" not in bars
    assert "width:25.0%" in bars and "width:75.0%" in bars and bars.count("#e4572e") == 1  # the top class marked
    view = drawing.view_html(np.zeros((1, 28, 28), np.uint8), 5)
    assert 'width="140" height="140"' in view and "image-rendering:pixelated" in view
    assert Image.open(io.BytesIO(base64.b64decode(view.split("base64,")[1].split('"')[0]))).size == (28, 28)


def test_an_empty_or_missing_canvas_is_a_hint_not_an_error(predictor):
    with pytest.raises(drawing.EmptyDrawing, match="draw"):
        drawing.classify(predictor, None)
    for blank in (np.zeros((CANVAS, CANVAS, 4), np.uint8), np.full((CANVAS, CANVAS, 4), 255, np.uint8)):
        with pytest.raises(drawing.EmptyDrawing, match="blank .*nothing to classify"):
            drawing.classify(predictor, blank)


def test_ink_pixels_grow_with_every_stroke():
    one = canvas_rgba("vertical")
    two = one.copy()
    two[100:120, 20:200] = (255, 255, 255, 255)
    assert 0 < drawing.ink_pixels(one) < drawing.ink_pixels(two)


def test_uploads_are_read_or_refused_with_one_message_naming_the_file(predictor):
    photo = draw_shape("horizontal", np.random.default_rng(3), dark_on_light=True).convert("RGB")
    for fmt in ("PNG", "JPEG"):
        img = drawing.read_upload(f"bar.{fmt.lower()}", png_bytes(photo, fmt))
        assert drawing.classify(predictor, img).best["class"] == "2"  # dark on light: inverted automatically
    with pytest.raises(MLPLabError, match=r"^notes\.png: not a readable image .*give a PNG or JPEG file"):
        drawing.read_upload("notes.png", b"this is text, not a picture")
    with pytest.raises(MLPLabError, match=r"cut\.png: not a readable"):
        drawing.read_upload("cut.png", png_bytes(photo)[:300])
    with pytest.raises(MLPLabError, match=r"empty\.png: the file is empty"):
        drawing.read_upload("empty.png", b"")
    with pytest.raises(MLPLabError, match=r"big\.png: .* MB is too large"):
        drawing.read_upload("big.png", png_bytes(photo), max_bytes=100)
    # A small file that decodes to 36 megapixels: refused from its header, before decoding.
    bomb = png_bytes(Image.new("L", (6000, 6000)))
    assert len(bomb) < drawing.MAX_UPLOAD_BYTES
    with pytest.raises(MLPLabError, match=r"bomb\.png: the image is too large: 6000x6000 = 36,000,000 pixels"):
        drawing.read_upload("bomb.png", bomb)


# -- form values -> Config -----------------------------------------------------------------


def test_form_defaults_give_back_the_base_config(tmp_path):
    base = validate_config({"name": "app-run", "train": {"early_stopping": {"patience": 3}}}, "base")
    values = form.form_defaults(base)
    assert values["hidden_sizes"] == "256, 128" and values["lr"] == "0.001" and values["patience"] == 3
    config, errors = form.form_to_config(values, base, tmp_path / "runs")
    assert errors == {}
    assert config.model_copy(update={"output": base.output}) == base and config.output.dir == str(tmp_path / "runs")


def test_form_values_become_a_config(tmp_path):
    base = validate_config({}, "base")
    values = {
        **form.form_defaults(base),
        "name": " mine ",
        "dataset": "mnist",
        "hidden_sizes": "512-256, 64",
        "batch_norm": True,
        "dropout": 0.3,
        "optimizer": "sgd",
        "lr": "5e-2",
        "scheduler": "cosine",
        "epochs": 7,
        "patience": 0,
        "l1": "1e-5",
        "l2": "0",
        "seed": 3,
    }
    config, errors = form.form_to_config(values, base, tmp_path)
    assert errors == {}
    assert (config.name, config.data.dataset, config.model.hidden_sizes, config.model.batch_norm) == (
        "mine",
        "mnist",
        [512, 256, 64],
        True,
    )
    assert (config.train.optimizer.name, config.train.optimizer.lr, config.train.scheduler.name) == (
        "sgd",
        0.05,
        "cosine",
    )
    assert (config.train.epochs, config.train.early_stopping.patience, config.train.l1, config.seed) == (
        7,
        None,
        1e-5,
        3,
    )


def test_invalid_form_values_give_one_plain_message_per_field_all_at_once(tmp_path):
    base = validate_config({}, "base")
    values = {
        **form.form_defaults(base),
        "name": "",
        "hidden_sizes": "-5",
        "dropout": 1.5,
        "lr": "fast",
        "epochs": 0,
        "patience": -1,
        "l1": "1e400",
        "l2": "-1",
        "seed": "123456789012345678901234567890",
    }
    config, errors = form.form_to_config(values, base, tmp_path)
    assert config is None
    # Text that is not a number and values out of range, in one round.
    assert set(errors) == {"name", "hidden_sizes", "dropout", "lr", "epochs", "patience", "l1", "l2", "seed"}
    assert errors["hidden_sizes"].startswith("-5 is not allowed: use whole numbers above 0")  # not 5
    assert errors["l1"].startswith("1e400 is not allowed")  # not infinity
    assert errors["name"].startswith("an empty value is not allowed: use 1 to 100 letters")
    assert errors["seed"].startswith("123456789012345678901234567890 is not allowed: use a whole number from 0 to")
    assert "at least 0 and below 1" in errors["dropout"] and "at least 1" in errors["epochs"]
    for message in errors.values():  # a student's words, not pydantic's
        assert not any(word in message for word in ("should", "pattern", "Input", "hidden_sizes", "String"))
    bad_sizes = form.form_to_config({**form.form_defaults(base), "hidden_sizes": "wide"}, base, tmp_path)[1]
    assert set(bad_sizes) == {"hidden_sizes"} and "whole numbers" in bad_sizes["hidden_sizes"]
    # A rule on a key the form does not show is still reported, under the form as a whole.
    cosine = validate_config(
        {"train": {"optimizer": {"lr": 0.1}, "scheduler": {"name": "cosine", "min_lr": 0.01}}}, "base"
    )
    errors = form.form_to_config({**form.form_defaults(cosine), "lr": "0.001"}, cosine, tmp_path)[1]
    assert list(errors) == [form.FORM_ERRORS] and errors[form.FORM_ERRORS].startswith("train.scheduler.min_lr")
    assert not (tmp_path / launched.APP_DIR).exists()  # nothing was started


def test_a_name_taken_by_another_run_is_refused_not_renamed(tmp_path):
    base = validate_config({}, "base")
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist-2").mkdir()
    values = {**form.form_defaults(base), "name": "mnist", "dataset": "fashion_mnist"}
    config, errors = form.form_to_config(values, base, tmp_path)
    assert config is None and errors == {
        "name": f"a run named mnist is already in {tmp_path}: choose another name, e.g. mnist-3"
    }


# -- run directories ------------------------------------------------------------------------


def test_runs_are_listed_with_their_facts_and_a_deleted_run_is_one_message(shapes_run, tmp_path):
    runs, run_dir, _ = shapes_run
    (info,) = models.finished_runs(runs)
    assert (info.label, info.status, info.dataset, info.architecture) == ("shapes", "done", "mnist", "784-64-10")
    assert info.describe().startswith("shapes (mnist, 784-64-10, test acc 100.00%") or "test acc" in info.describe()
    assert info.row()["test acc %"] == round(100 * info.test_acc, 2) and info.row()["epochs"] == "10/10"
    assert models.checkpoint_stamp(run_dir) > 0
    with pytest.raises(MLPLabError, match="no longer exists"):
        models.checkpoint_stamp(tmp_path / "gone")
    assert app_runs.list_runs(tmp_path / "nothing") == [] and studies.list_studies(tmp_path) == []


LOCK_HOLDER = (
    "import sys; from mlp_lab.runs.rundir import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
    "print('locked', flush=True); sys.stdin.read()"
)


def test_a_study_report_shows_each_plot_under_its_own_heading(tmp_path):
    """report.md puts a heading, then its plot: cut there, not stripped of its images and the
    plots dumped at the end (the headings rendered empty)."""
    study = tmp_path / "dropout"
    study.mkdir()
    for name in ("val_acc.png", "val_loss.png"):
        Image.new("RGB", (20, 20), "white").save(study / name)
    (study / "report.md").write_text(
        "# dropout\n\n| arm | verdict |\n| --- | --- |\n| p0.5 | hurts |\n\n"
        "### validation accuracy\n\n![validation accuracy](val_acc.png)\n\n"
        "### validation loss\n\n![validation loss](val_loss.png)\n\n![gone](missing.png)\n"
    )
    (report,) = studies.list_studies(tmp_path)
    # Each piece by its last line (text) or its file name (plot).
    assert [part.strip().splitlines()[-1] if isinstance(part, str) else part.name for part in report.parts] == [
        "### validation accuracy",
        "val_acc.png",
        "### validation loss",
        "val_loss.png",
        "![gone](missing.png)",  # a link to no file stays as the report wrote it
    ]
    assert report.plots == [(study / "val_acc.png").resolve(), (study / "val_loss.png").resolve()]


def test_a_fashion_model_is_not_offered_as_a_digits_model():
    from mlp_lab.app import draw_page

    assert draw_page.subject("mnist") == "a digit" and draw_page.subject("fashion_mnist") == "a piece of clothing"
    choice = models.ModelChoice(
        "fashion (fashion_mnist, 784-64-10, test acc 85.00%)", "runs/fashion", "fashion_mnist", 0.85
    )
    caption = draw_page.model_caption(choice, True, "auto", ["T-shirt/top", "Trouser"])
    assert "It classifies T-shirt/top, Trouser." in caption and "FashionMNIST was made" in caption
    assert "20 of 28" not in caption  # not the digits recipe


def test_progress_says_epochs_planned_before_the_run_writes_its_config_and_charts_start_at_epoch_one(tmp_path):
    from mlp_lab.app.launched import sidecar
    from mlp_lab.app.widgets import curve_chart

    runs = tmp_path / "runs"
    run_dir = runs / "starting"
    sidecar(run_dir, ".yaml").parent.mkdir(parents=True)
    sidecar(run_dir, ".yaml").write_text("name: starting\ntrain:\n  epochs: 7\n")
    assert training.run_progress(run_dir, runs).epochs_planned == 7  # not "epoch 0/None"
    chart = curve_chart([{"epoch": 1, "train/acc": 0.91, "val/acc": 0.93}], "acc").to_dict()
    assert chart["mark"] == {"type": "line", "point": True}  # one epoch already shows, as points
    assert chart["encoding"]["y"]["title"] == "accuracy (%)" and chart["encoding"]["y"]["scale"] == {"zero": False}
    assert chart["encoding"]["x"]["axis"]["format"] == "d" and chart["encoding"]["x"]["title"] == "epoch"
    values = next(iter(chart["datasets"].values()))
    assert sorted(round(v["value"], 6) for v in values) == [91.0, 93.0]


def test_a_run_is_live_while_a_process_holds_its_lock(tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "held"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: held\n")
    # A lock file naming a live process that holds no lock (this test's own pid: as a pid
    # recycled after its run died would be) is not a live run; nor is no lock file at all.
    assert app_runs.running_pid(run_dir) is None
    (runs / ".held.lock").write_text(str(os.getpid()))
    assert app_runs.running_pid(run_dir) is None and app_runs.list_runs(runs)[0].status != "running"
    env = {**os.environ, "PYTHONPATH": str(MAIN.parents[2])}
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert app_runs.running_pid(run_dir) == holder.pid
        (info,) = app_runs.list_runs(runs)
        assert (info.status, info.pid) == ("running", holder.pid)
    finally:
        holder.communicate(timeout=30)  # closing its stdin ends it, and the kernel drops its lock
    assert app_runs.running_pid(run_dir) is None and app_runs.list_runs(runs)[0].status != "running"


def test_a_run_the_app_launched_is_live_before_it_takes_its_lock(tmp_path):
    # Python starting and importing torch takes seconds before the run takes its lock: the
    # app, the child's parent, knows meanwhile that it lives, and no longer once it ended.
    run_dir = tmp_path / "runs" / "starting"
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    rundir.write_json(launched.sidecar(run_dir, ".json"), {"pid": child.pid, "started": 1.0})
    try:
        assert app_runs.running_pid(run_dir) == child.pid
        assert launched.launched_runs(tmp_path / "runs") == [run_dir]
    finally:
        child.stdin.close()
        wait_for(lambda: app_runs.running_pid(run_dir) is None, 30, "the child to end")
    with pytest.raises(ChildProcessError):  # reaped when it was found ended: it left no zombie
        os.waitpid(child.pid, os.WNOHANG)
    child.wait(timeout=5)
    for bad in (0, -1, "x"):  # a damaged record never turns into waitpid(0) or (-1)
        rundir.write_json(launched.sidecar(run_dir, ".json"), {"pid": bad})
        assert app_runs.running_pid(run_dir) is None


def copied_run(runs: Path, source: Path, name: str, dataset: str, test_acc: float, augment: dict | None = None) -> Path:
    """A copy of a finished run under another name, as if trained on `dataset` to `test_acc`
    (with `augment` as its data.augment: the model is the source's, only the facts the Draw page
    chooses by differ)."""
    run_dir = runs / name
    shutil.copytree(source, run_dir)
    config = yaml.safe_load((run_dir / rundir.CONFIG_FILE).read_text())
    config["data"]["dataset"] = dataset
    if augment is not None:
        config["data"]["augment"] = {**config["data"].get("augment", {}), **augment}
    (run_dir / rundir.CONFIG_FILE).write_text(yaml.safe_dump(config))
    for path in (run_dir / rundir.CHECKPOINT_DIR).glob("*.pt"):  # as if trained with that config
        checkpoint = torch.load(path, weights_only=True)
        torch.save({**checkpoint, "config": config}, path)
    summary = rundir.read_json(run_dir / rundir.SUMMARY_FILE)
    rundir.write_json(run_dir / rundir.SUMMARY_FILE, {**summary, "test/acc": test_acc})
    return run_dir


@pytest.mark.parametrize(
    "facts, expected",
    [
        ([("fashion_mnist", 0.9), ("mnist", 0.8), ("mnist", 0.95), ("cifar10", 0.99)], 2),  # the best digits model
        ([("fashion_mnist", 0.9), ("mnist", 0.97), ("mnist", 0.97)], 1),  # equals: the first listed
        ([("fashion_mnist", 0.9), ("mnist", None), ("mnist", 0.5)], 2),  # an untested one is not "accurate"
        ([("mnist", None), ("fashion_mnist", 0.9)], 0),  # no tested digits model: the first listed
        ([("cifar10", 0.5), (None, 0.99)], 0),  # a registered model whose dataset is not known
        ([], 0),
        # a robust (augmented) digits model first, even when less accurate on MNIST's test set
        ([("mnist", 0.99), ("mnist", 0.985, True), ("fashion_mnist", 0.9, True)], 1),
        ([("mnist", 0.99, True), ("mnist", 0.98, True)], 0),  # among robust ones, the most accurate
        ([("mnist", 0.99), ("mnist", None, True)], 0),  # an untested robust run does not count
    ],
)
def test_the_draw_page_defaults_to_the_robust_then_the_most_accurate_digits_model(facts, expected):
    choices = [models.ModelChoice(f"m{i}", f"runs/m{i}", *fact) for i, fact in enumerate(facts)]
    assert models.default_choice(choices) == expected


def test_registered_models_come_after_runs_and_count_for_the_default(shapes_run):
    runs, run_dir, _ = shapes_run
    registered = [models.ModelChoice("models:/digits@champion (registered)", "models:/digits@champion", "mnist", 1.5)]
    choices = models.model_choices(models.finished_runs(runs), registered)
    assert [c.target for c in choices] == [str(run_dir), "models:/digits@champion"]
    assert choices[0].dataset == "mnist" and choices[0].label.startswith("shapes (mnist")
    assert models.default_choice(choices) == 1


def test_the_runs_page_figures_are_computed_once_when_absent(shapes_run, tmp_path, monkeypatch):
    runs, run_dir, data = shapes_run
    copy = tmp_path / "shapes"
    shutil.copytree(run_dir, copy)
    monkeypatch.setenv("MLP_LAB_DATA", str(data))
    figures = app_runs.ensure_evaluation(copy)
    assert set(figures) <= set(app_runs.EVAL_FILES) and "test_confusion_matrix.png" in figures
    stamp = figures["test_confusion_matrix.png"].stat().st_mtime_ns
    assert app_runs.ensure_evaluation(copy) == figures  # read from eval/ the second time, not recomputed
    assert figures["test_confusion_matrix.png"].stat().st_mtime_ns == stamp


def test_app_without_the_extra_exits_2_naming_it(monkeypatch):
    real = serve.importlib.util.find_spec
    monkeypatch.setattr(serve.importlib.util, "find_spec", lambda name: None if name == "streamlit" else real(name))
    result = runner.invoke(app, ["app"])
    assert result.exit_code == 2
    assert (
        result.stderr.strip() == "error: mlp-lab app needs the [app] extra (streamlit missing): "
        "pip install 'mlp-lab[app]' (in a checkout: pip install -e '.[app]')"
    )


def test_the_app_is_served_on_loopback_without_a_full_gc_after_every_rerun():
    from mlp_lab.app.serve import app_command

    command, address, env = app_command(runs="somewhere")
    assert address == "http://127.0.0.1:8501" and command[command.index("--server.address") + 1] == "127.0.0.1"
    # Streamlit's post-run gc.collect() cost ~170 ms of every stroke's round trip with torch loaded.
    assert command[command.index("--runner.postScriptGC") + 1] == "false"
    assert env[RUNS_ENV] == str(Path("somewhere").resolve())


def test_train_page_runs_use_the_apps_threads_half_the_cores_by_default():
    from mlp_lab.app.serve import ADDRESS_ENV, THREADS_ENV, app_command, app_threads, default_threads

    cores = len(os.sched_getaffinity(0))
    assert default_threads() == max(1, cores // 2)
    _, _, env = app_command(runs="somewhere", port=8600)
    assert env[THREADS_ENV] == str(default_threads()) and env[ADDRESS_ENV] == "http://127.0.0.1:8600"
    _, _, env = app_command(runs="somewhere", threads=3)
    assert app_threads(env) == 3
    assert app_threads({THREADS_ENV: "zero"}) == default_threads()


def test_help_and_the_core_do_not_import_streamlit():
    code = (
        "import sys; from typer.testing import CliRunner; from mlp_lab.cli import app; "
        "import mlp_lab.app.drawing, mlp_lab.app.form, mlp_lab.app.launched, mlp_lab.app.models, "
        "mlp_lab.app.runs, mlp_lab.app.serve, mlp_lab.app.studies, mlp_lab.app.training; "
        "CliRunner().invoke(app, ['--help']); "
        "print(sorted(m for m in ('streamlit', 'torch') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(MAIN.parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


# -- runs as separate processes ------------------------------------------------------------


def wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_launched_run_is_watched_stopped_and_resumed_from_its_directory(shapes_run, tmp_path, monkeypatch):
    _, _, data = shapes_run
    config = shapes_config(tmp_path, epochs=40)
    run_dir = training.launch_run(config, data_dirs=[str(data)], threads=1)
    assert run_dir == tmp_path / "runs" / "shapes" and launched.launched_runs(tmp_path / "runs") == [run_dir]
    try:
        wait_for(lambda: training.run_progress(run_dir).history, what="the first epoch")
        progress = training.run_progress(run_dir)
        assert progress.running and progress.run.pid and progress.run.epochs_planned == 40
        pid = training.stop_run(run_dir)
        assert training.wait_until_stopped(run_dir, 60)
        stopped = training.run_progress(run_dir)
        assert stopped.resumable and not stopped.running and (run_dir / rundir.LAST_CHECKPOINT).exists()
        assert 0 < stopped.run.epochs_run < 40 and "Resume with: mlp-lab run --resume" in stopped.log_tail
        with pytest.raises(MLPLabError, match="not running"):
            training.stop_run(run_dir)
        resumed = training.resume_in_background(run_dir, data_dirs=[str(data)], threads=1)
        assert resumed != pid
        wait_for(lambda: training.run_progress(run_dir).finished, what="the resumed run to finish")
        done = training.run_progress(run_dir)
        assert done.run.status == "done" and done.run.epochs_run == 40 and done.error is None
        assert [row["epoch"] for row in done.history] == list(range(1, 41))
    finally:
        pid = app_runs.running_pid(run_dir)
        if pid:
            os.kill(pid, 9)


@pytest.mark.slow
def test_a_run_that_cannot_start_reports_its_error(tmp_path, monkeypatch, app_test):
    monkeypatch.delenv("MLP_LAB_DATA", raising=False)
    config = validate_config(
        {
            "name": "nodata",
            "data": {"dataset": "mnist", "root": str(tmp_path / "empty"), "download": False},
            "output": {"dir": str(tmp_path / "runs")},
        },
        "x",
    )
    run_dir = training.launch_run(config)
    wait_for(lambda: app_runs.running_pid(run_dir) is None, what="the run to give up")
    progress = training.run_progress(run_dir)
    assert not progress.running and progress.error and "mnist" in progress.error.lower()
    # The Train page shows that line, not "the run directory no longer exists": the run failed
    # before its first epoch, so nothing of it was kept.
    assert not run_dir.exists()
    page = app_test(tmp_path / "runs", "Train")
    assert not page.exception
    errors = [e.value for e in page.error]
    assert f"nodata: {progress.error}" in errors and not any("no longer exists" in e for e in errors)


# -- pages under AppTest ----------------------------------------------------------------------


@pytest.fixture
def app_test(monkeypatch):
    from streamlit.testing.v1 import AppTest

    def make(runs: Path, page: str = "Draw"):
        monkeypatch.setenv(RUNS_ENV, str(runs))
        test = AppTest.from_file(str(MAIN), default_timeout=60)
        test.query_params["page"] = page
        return test.run()

    return make


def test_draw_page_offers_finished_runs_and_says_when_there_are_none(app_test, shapes_run, tmp_path):
    runs, _, _ = shapes_run
    page = app_test(runs)
    assert not page.exception
    (picker,) = page.selectbox
    assert picker.options[0].startswith("shapes (mnist, 784-64-10, test acc")
    assert any("draw a digit" in info.value for info in page.info)  # the canvas has sent nothing yet
    empty = app_test(tmp_path / "no-runs")
    assert not empty.exception and "No finished runs" in empty.info[0].value


def test_draw_page_survives_its_run_being_deleted(app_test, shapes_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(shapes_run[1], runs / "shapes")
    page = app_test(runs)
    assert not page.error
    shutil.rmtree(runs / "shapes")
    (runs / "shapes").mkdir()
    (runs / "shapes" / "config.yaml").write_text("name: shapes\n")  # a half-deleted directory
    page.run()
    assert not page.exception
    assert not page.error and "No finished runs" in page.info[0].value


def test_a_prediction_is_shown_as_top_class_chart_and_the_models_view(predictor):
    from streamlit.testing.v1 import AppTest

    def page(predictor, rgba):
        from mlp_lab.app import draw_page, drawing

        draw_page.show_classified(drawing.classify(predictor, rgba), predictor.classes)

    shown = AppTest.from_function(page, args=(predictor, canvas_rgba("vertical")), default_timeout=30).run()
    assert not shown.exception
    assert shown.markdown[0].value.startswith("#### Prediction: 1 (")
    bars, view = (element.body for element in shown.get("html"))
    assert bars.count("%</span></div>") == 10 and "mlp-view" in view and "data:image/png;base64," in view


def test_train_form_with_invalid_values_shows_errors_by_the_fields_and_starts_nothing(app_test, tmp_path):
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    page = app_test(runs, "Train")
    assert not page.exception
    page.number_input(key="form_dropout").set_value(1.5)
    page.text_input(key="form_lr").set_value("fast")
    page.text_input(key="form_hidden_sizes").set_value("-5")
    page.text_input(key="form_seed").set_value("99999999999999999999")
    page.button[0].click().run()
    assert not page.exception
    messages = [e.value for e in page.error]
    # Every bad field at once, in plain words: text that is no number beside values out of range.
    assert any(m.startswith("fast is not allowed: use a number above 0") for m in messages)
    assert any(m.startswith("1.5 is not allowed: use a share of units to drop") for m in messages)
    assert any(m.startswith("-5 is not allowed") for m in messages)
    assert any(m.startswith("99999999999999999999 is not allowed: use a whole number from 0 to") for m in messages)
    assert "Nothing was started: fix the fields marked above." in messages
    assert not (runs / launched.APP_DIR).exists() and not runs.exists()
    # A reload (a new session on the same address) shows the form as it was sent.
    assert page.query_params["form_lr"] in ("fast", ["fast"])  # AppTest keeps a value or a list of them
    again = AppTest.from_file(str(MAIN), default_timeout=60)
    for key, value in page.query_params.items():
        again.query_params[key] = value
    again.run()
    assert not again.exception
    assert again.text_input(key="form_lr").value == "fast" and again.number_input(key="form_dropout").value == 1.5
    assert again.text_input(key="form_seed").value == "99999999999999999999"


def test_train_form_offers_the_schemas_choices(app_test, tmp_path):
    from typing import get_args

    from mlp_lab.config.datasets import names
    from mlp_lab.config.schema import OptimizerConfig, SchedulerConfig

    page = app_test(tmp_path / "runs", "Train")
    assert not page.exception
    offered = {box.label: tuple(box.options) for box in page.selectbox}
    assert offered == {
        "Dataset": names(),  # the registered datasets' (data.dataset is checked against them)
        "Optimizer": get_args(OptimizerConfig.model_fields["name"].annotation),
        "LR schedule": get_args(SchedulerConfig.model_fields["name"].annotation),
    }
    assert form.schema_choices("model.activation") == ("relu", "tanh", "sigmoid", "gelu", "leaky_relu")
    assert form.schema_choices("train.epochs") is None and set(form.CHOICES) == {"dataset", "optimizer", "scheduler"}


def test_runs_page_lists_runs_and_studies(app_test, shapes_run, tmp_path, monkeypatch):
    monkeypatch.setenv(MLFLOW_ENV, "http://127.0.0.1:5999")
    runs = tmp_path / "runs"
    shutil.copytree(shapes_run[1], runs / "shapes")
    study = runs / "dropout"
    study.mkdir()
    (study / "report.md").write_text(
        "# dropout\n\n| arm | verdict |\n| --- | --- |\n| p0.5 | hurts |\n\n![curves](val.png)\n"
    )
    Image.new("RGB", (20, 20), "white").save(study / "val.png")
    page = app_test(runs, "Runs")
    assert not page.exception
    table = page.dataframe[0].value
    assert list(table["run"]) == ["shapes"] and list(table["status"]) == ["done"]
    assert page.selectbox[0].value == "shapes"
    assert any("dropout" in e.label for e in page.expander)
    assert any("hurts" in m.value for m in page.markdown) and not any("![" in m.value for m in page.markdown)
    # Served with the app: the MLflow page shows it, and a link opens it in its own tab.
    assert any("[MLflow page](?page=MLflow)" in m.value and "(http://127.0.0.1:5999)" in m.value for m in page.markdown)


@pytest.mark.slow
def test_study_runs_are_grouped_by_study_in_the_runs_table_and_the_model_picker(app_test, shapes_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(shapes_run[1], runs / "shapes")
    for arm in ("p0", "p0.5"):
        shutil.copytree(shapes_run[1], runs / "dropout" / arm / "seed-0")
    page = app_test(runs, "Runs")
    assert not page.exception
    show = page.selectbox(key="runs_group")
    assert show.options == ["runs outside studies", "study: dropout", "all runs"]
    assert list(page.dataframe[0].value["run"]) == ["shapes"]  # not every study run at once
    show.select("study: dropout").run()
    assert list(page.dataframe[0].value["run"]) == ["dropout/p0/seed-0", "dropout/p0.5/seed-0"]
    draw = app_test(runs, "Draw")
    assert not draw.exception and not draw.error
    group = draw.selectbox(key="model_group")
    # Equally accurate: the default model is the first listed, in the study; its group opens.
    assert group.value == "study: dropout"
    assert [o.split(" (")[0] for o in draw.selectbox(key="model").options] == [
        "dropout/p0/seed-0",
        "dropout/p0.5/seed-0",
    ]
    group.select("runs outside studies").run()
    assert not draw.exception and [o.split(" (")[0] for o in draw.selectbox(key="model").options] == ["shapes"]


def test_the_mlflow_page_is_offered_only_when_the_app_serves_the_ui(app_test, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(MLFLOW_ENV, raising=False)
    alone = app_test(tmp_path / "runs", "MLflow")  # ?page=MLflow without a server: the first page
    assert not alone.exception
    assert alone.radio(key="page").options == ["Draw", "Train", "Runs"] and alone.radio(key="page").value == "Draw"
    assert not alone.get("iframe") and alone.header[0].value == "Draw a digit"
    monkeypatch.setenv(MLFLOW_ENV, "http://127.0.0.1:5999")
    served = app_test(tmp_path / "runs", "MLflow")
    assert not served.exception and not served.error
    assert served.radio(key="page").options == ["Draw", "Train", "Runs", "MLflow"]
    assert served.radio(key="page").value == "MLflow" and served.header[0].value == "MLflow"
    (frame,) = served.get("iframe")
    assert frame.proto.src == "http://127.0.0.1:5999"
    assert "[open it in its own tab](http://127.0.0.1:5999)" in served.caption[0].value
    served.radio(key="page").set_value("Runs").run()
    assert not served.exception and not served.get("iframe")


def test_an_outside_tracking_server_is_linked_not_framed(app_test, shapes_run, tmp_path, monkeypatch):
    monkeypatch.delenv(MLFLOW_ENV, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example.org:5000")
    runs = tmp_path / "runs"
    shutil.copytree(shapes_run[1], runs / "shapes")
    page = app_test(runs, "Runs")
    assert not page.exception
    assert page.radio(key="page").options == ["Draw", "Train", "Runs"]
    assert any("[open the MLflow UI](http://tracking.example.org:5000)" in m.value for m in page.markdown)
    assert not page.get("iframe")


def test_draw_page_opens_on_the_most_accurate_digits_model_and_says_so(app_test, shapes_run, tmp_path):
    runs = tmp_path / "runs"
    source = shapes_run[1]
    copied_run(runs, source, "a-fashion", "fashion_mnist", 0.99)  # listed first, more accurate, not digits
    copied_run(runs, source, "b-digits", "mnist", 0.91)
    copied_run(runs, source, "c-digits", "mnist", 0.97)
    page = app_test(runs)
    assert not page.exception and not page.error
    (picker,) = page.selectbox
    assert picker.options[0].startswith("a-fashion (fashion_mnist") and picker.value.startswith("c-digits (mnist")
    assert page.caption[0].value.startswith(f"Using {picker.value}: the most accurate digits (MNIST) model here")
    assert "Preprocessing: the dataset's own recipe" in page.caption[0].value
    picker.select(picker.options[1]).run()  # the user's choice sticks and the caption follows it
    assert not page.exception and page.selectbox[0].value.startswith("b-digits")
    assert page.caption[0].value.startswith(f"Using {page.selectbox[0].value}. Preprocessing:")
    shutil.rmtree(runs / "b-digits")
    shutil.rmtree(runs / "c-digits")
    fashion_only = app_test(runs)  # no digits model: the first listed, as before
    assert not fashion_only.exception and fashion_only.selectbox[0].value.startswith("a-fashion")
    assert "no tested digits (MNIST) model here, so the first one listed." in fashion_only.caption[0].value


def test_draw_page_opens_on_the_robust_model_and_names_it_and_its_preprocessing(app_test, shapes_run, tmp_path):
    runs = tmp_path / "runs"
    copied_run(runs, shapes_run[1], "a-digits", "mnist", 0.99)
    copied_run(runs, shapes_run[1], "b-robust", "mnist", 0.985, augment={"rotation": 12, "elastic": 1.0})
    page = app_test(runs)
    assert not page.exception and not page.error
    assert page.selectbox[0].value.startswith("b-robust (mnist")
    caption = page.caption[0].value
    assert caption.startswith(f"Using {page.selectbox[0].value} (trained on augmented digits): the robust digits")
    assert "Preprocessing: the dataset's own recipe" in caption and "centred by mass" in caption
    page.radio(key="normalise").set_value("plain").run()  # the caption follows the preprocessing picked
    assert not page.exception and page.caption[0].value.endswith("Preprocessing: a plain resize to the dataset's size.")


# -- the served app in a real browser ---------------------------------------------------------


@pytest.mark.slow
def test_draw_upload_and_train_in_a_real_browser(shapes_run, tmp_path):
    sync_playwright = require_browser()
    _, trained, data = shapes_run
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs / "shapes")
    upload = tmp_path / "bar.png"
    draw_shape("horizontal", np.random.default_rng(5), dark_on_light=True).save(upload)
    with (
        served_app(runs, tmp_path, tmp_path / "app.log", {"MLP_LAB_DATA": str(data)}) as (address, _),
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{address}/?page=Draw")
            wait_for_empty_canvas(page)
            # A vertical bar is class 1, a ring class 0, each drawn by mouse strokes.
            draw_and_wait(page, shape_strokes("vertical", 140, 140, 90))
            page.get_by_text("Prediction: 1 (").wait_for()
            page.get_by_role("button", name="Clear").click()
            wait_for_empty_canvas(page)
            draw_and_wait(page, shape_strokes("ring", 140, 140, 90))
            page.get_by_text("Prediction: 0 (").wait_for()
            # An uploaded dark-on-light picture of a horizontal bar: inverted automatically, class 2.
            page.locator("input[type=file]").set_input_files(str(upload))
            page.get_by_text("bar.png", exact=True).wait_for()
            page.get_by_text("Prediction: 2 (").wait_for()
            # Train: a 2-epoch run on the same data, started from the form, watched until it ends.
            page.get_by_text("Train", exact=True).click()
            page.locator("input[aria-label='Run name']").fill("browser-run")
            page.locator("input[aria-label='Epochs']").fill("2")
            page.locator("input[aria-label='Hidden sizes']").fill("32")
            page.get_by_test_id("stSelectbox").filter(has_text="Dataset").click()
            page.get_by_role("option", name="mnist", exact=True).click()
            page.get_by_role("button", name="Start").click()
            page.get_by_text("browser-run: finished, epoch 2/2").wait_for(timeout=180_000)
            page.get_by_role("link", name="Open browser-run on the Runs page").wait_for()
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}; app log: {tmp_path / 'app.log'}")
            raise
        finally:
            browser.close()
    summary = rundir.read_json(runs / "browser-run" / rundir.SUMMARY_FILE)
    assert summary["status"] == "completed" and summary["epochs_run"] == 2


def child_frame_url(page, timeout_s: float = 60.0) -> str:
    """The URL the page's one child frame committed to: its `src` when the frame was allowed,
    chrome-error:// when its server refused to be framed here."""
    deadline = time.monotonic() + timeout_s
    while True:
        urls = [f.url for f in page.frames if f is not page.main_frame and f.url not in ("", "about:blank")]
        if urls:
            return urls[0]
        assert time.monotonic() < deadline, "no frame on the page committed to a URL"
        page.wait_for_timeout(50)


@pytest.mark.slow
def test_the_mlflow_page_shows_the_ui_in_chromium_and_only_the_app_may_frame_it(shapes_run, tmp_path, monkeypatch):
    """`mlp-lab app --mlflow`: the MLflow page's frame shows MLflow's own UI with a tracked run,
    and the server lets no other origin frame it (its header; Chromium on the app reached as
    localhost). $MLP_LAB_SCREENSHOT_DIR, when set, receives app-mlflow.png (the guide's picture)."""
    sync_playwright = require_browser()
    pytest.importorskip("mlflow")
    from mlp_lab.tracking.export import export_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    runs, log = tmp_path / "runs", tmp_path / "app.log"
    # A tracked run in the app's store (runs/mlflow.db), so the UI has something of ours to show.
    run = start_run(shapes_config(tmp_path, epochs=2), RunContext(data_dirs=(str(shapes_run[2]),), threads=1))
    run_id = export_run(run.run_dir).run_id
    mlflow_address = f"http://127.0.0.1:{free_port()}"
    args = ["--mlflow", "--mlflow-port", mlflow_address.rsplit(":", 1)[1]]
    with served_app(runs, tmp_path, log, args=args) as (address, process), sync_playwright() as playwright:
        wait_for_health(f"{mlflow_address}/health", process, log, "the MLflow UI")
        with urllib.request.urlopen(f"{mlflow_address}/", timeout=30) as response:
            assert response.headers["Content-Security-Policy"] == f"frame-ancestors {address}"
            assert response.headers["X-Frame-Options"] == "SAMEORIGIN"  # for browsers without frame-ancestors
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.set_default_timeout(90_000)
        try:
            page.goto(f"{address}/?page=MLflow")
            frame = page.frame_locator(f'iframe[src="{mlflow_address}"]')
            # MLflow's own UI, drawn by its scripts inside the frame, reading our store through its
            # API: the experiment, its one run, the run's page with our tags and metrics.
            frame.get_by_text("Welcome to MLflow").wait_for()
            frame.get_by_text("Model training", exact=True).first.click()
            frame.get_by_role("link", name="Experiments").first.click()
            frame.get_by_role("link", name="shapes", exact=True).click()
            frame.get_by_text("1 matching run").wait_for()
            frame.locator(f'a[href*="{run_id}"]').first.click()
            frame.get_by_text(run_id).wait_for()
            frame.get_by_text("test/acc").first.wait_for()
            assert page.locator(f'iframe[src="{mlflow_address}"]').bounding_box()["height"] >= 800
            shot = tmp_path / "app-mlflow.png"
            page.locator("[data-testid=stMain]").evaluate("main => main.scrollTo(0, 0)")  # the app's header too
            page.screenshot(path=str(shot))
            if os.environ.get("MLP_LAB_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["MLP_LAB_SCREENSHOT_DIR"]) / shot.name)
            assert child_frame_url(page).startswith(f"{mlflow_address}/")
            # The same app reached by another name is another origin, which the server refuses the
            # UI: no broken frame, the page says which address to open.
            elsewhere = address.replace("127.0.0.1", "localhost")
            page.goto(f"{elsewhere}/?page=MLflow")
            page.get_by_text(f"only when the app is opened at {address}").wait_for()
            assert page.get_by_role("link", name="open the app there").get_attribute("href") == (
                f"{address}/?page=MLflow"
            )
            assert page.locator("iframe").count() == 0
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}; app log: {log}")
            raise
        finally:
            browser.close()


@pytest.mark.slow
def test_draw_page_offers_registered_models_by_alias(app_test, shapes_run, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlp_lab.tracking.registry import REGISTRY_DIR, register

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLP_LAB_DATA", str(shapes_run[2]))
    run_dir = start_run(shapes_config(tmp_path, epochs=2), RunContext(threads=1)).run_dir
    register(run_dir, "shapes-mlp", "champion")
    page = app_test(tmp_path / "runs")
    assert not page.exception
    (picker,) = page.selectbox
    assert "models:/shapes-mlp@champion (registered)" in picker.options
    (alias,) = models.registered_models(tmp_path / "runs")  # its dataset and accuracy, for the default
    assert alias.dataset == "mnist" and alias.test_acc == rundir.read_json(run_dir / rundir.SUMMARY_FILE)["test/acc"]
    page.selectbox[0].select("models:/shapes-mlp@champion (registered)").run()
    assert not page.exception and not page.error
    assert (tmp_path / "runs" / REGISTRY_DIR / "shapes-mlp" / "v1" / "config.yaml").exists()
