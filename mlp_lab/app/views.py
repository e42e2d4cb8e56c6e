"""The app's pages: thin Streamlit code over `mlp_lab.app.logic` and the library.

Every page catches errors into one message (MLPLabError as it is, anything else as one line with
the traceback on the server's stderr): a browser never shows a traceback.
"""

from __future__ import annotations

import importlib.util
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from mlp_lab.app import logic
from mlp_lab.app.serve import DATA_DIRS_ENV, MLFLOW_ENV, RUNS_ENV
from mlp_lab.config import Config, MLPLabError

PAGES = ("Draw", "Train", "Runs")
WHITE_ON_BLACK, BLACK_ON_WHITE = "white on black", "black on white"
CANVAS_SIZE = 280
NORMALISE_LABELS = {"auto": "the dataset's own (MNIST-style for digits)", "plain": "plain resize"}
DATASETS = ("mnist", "fashion_mnist", "cifar10")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("constant", "cosine", "step", "plateau")
VIEW_SCALE = 5  # the 28x28 view, enlarged with square pixels so each one can be seen


def settings() -> tuple[Path, tuple[str, ...], str | None]:
    """The runs directory, extra data directories and the MLflow UI address `mlp-lab app` passed."""
    runs = Path(os.environ.get(RUNS_ENV, "runs"))
    data_dirs = tuple(d for d in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep) if d)
    return runs, data_dirs, os.environ.get(MLFLOW_ENV)


def guarded(page: Callable[..., None], *args: Any) -> None:
    """Run a page; any error becomes one message on it."""
    try:
        page(*args)
    except MLPLabError as exc:
        st.error(str(exc))
    except Exception as exc:  # a bug must not show a browser a traceback; the server log keeps it
        traceback.print_exc()
        st.error(f"unexpected error: {type(exc).__name__}: {exc}")


# -- Draw -------------------------------------------------------------------------------------


@st.cache_resource(max_entries=8, show_spinner=False)
def _loaded(run_dir: str, stamp: float):  # noqa: ARG001 - the stamp is the cache key's freshness
    """A run's model, loaded once per checkpoint version and shared by every session."""
    from mlp_lab.checkpoint import load_model

    return load_model(run_dir)


def predictor_for(run_dir: Path, normalise: str):
    """A `Predictor` over the cached model (auto-invert: either canvas colour scheme works)."""
    from mlp_lab.predict import Predictor

    return Predictor(_loaded(str(run_dir), logic.checkpoint_stamp(run_dir)), "auto", normalise)


def _clear_canvas() -> None:
    st.session_state["canvas_round"] = st.session_state.get("canvas_round", 0) + 1


def _canvas(scheme: str, brush: int) -> Any:
    """The drawing canvas; the drawing as a PIL image, or None before the first stroke."""
    try:
        from mlp_lab.app.canvas import drawing_canvas
    except Exception as exc:  # a Streamlit without components v2
        st.warning(f"drawing canvas unavailable here ({type(exc).__name__}); upload a picture instead")
        return None
    stroke, background = ("#ffffff", "#000000") if scheme == WHITE_ON_BLACK else ("#000000", "#ffffff")
    # A new key per Clear and per colour scheme: a fresh, empty canvas.
    key = f"canvas-{scheme}-{st.session_state.get('canvas_round', 0)}"
    drawing = drawing_canvas(key=key, size=CANVAS_SIZE, brush=brush, stroke=stroke, background=background)
    return logic.canvas_image(drawing)


def show_classified(classified: logic.Classified, classes: list[str]) -> None:
    """The top class, all probabilities as a bar chart, and the image the model saw."""
    best = classified.best
    st.markdown(f"#### Prediction: {best['class']} ({best['probability']:.1%})")
    st.caption("  ·  ".join(f"{t['class']} {t['probability']:.1%}" for t in classified.top))
    left, right = st.columns([3, 2])
    # Plain HTML, not a Vega-Lite chart and a served image: the browser redraws these on every
    # stroke, and a few divs and an inline PNG need no chart library and no second request.
    left.html(logic.bars_html(classes, classified.probabilities))
    right.html(logic.view_html(classified.view, VIEW_SCALE))
    right.caption("what the model sees (after preprocessing)")


@st.fragment
def drawing(predictor: Any, scheme: str, brush: int, normalise: str) -> None:
    """The canvas and its prediction. A fragment: a stroke reruns only this, not the whole page
    (no listing of run directories between a stroke and its answer)."""
    guarded(_drawing, predictor, scheme, brush, normalise)


def _drawing(predictor: Any, scheme: str, brush: int, normalise: str) -> None:
    left, right = st.columns(2)
    with left:
        image = _canvas(scheme, brush)
        st.button("Clear", on_click=_clear_canvas)
    with right:
        try:
            classified = logic.classify(predictor, image)
        except logic.EmptyDrawing as exc:
            st.info(str(exc))
        else:
            show_classified(classified, predictor.classes)
            # The ink count changes with every stroke: a browser (and its test) can tell an updated answer.
            st.caption(f"canvas ink {logic.ink_pixels(image)} px · {NORMALISE_LABELS[normalise]} · "
                       f"preprocessing + prediction {classified.milliseconds:.1f} ms")


@st.cache_data(ttl=30, show_spinner=False)
def _registered(runs: str) -> list[str]:
    """Registered model aliases, asked of the store at most every 30 s (importing MLflow takes seconds)."""
    return logic.registered_models(runs)


@st.cache_data(ttl=30, show_spinner="fetching the registered model...")
def _model_dir(choice: str, runs: str) -> str:
    """A picker choice's run directory; a registered model is fetched at most every 30 s (an alias may move)."""
    return str(logic.model_dir(choice, runs))


def draw_page(runs: Path) -> None:
    """Draw or upload a picture, pick a model, see what it thinks."""
    st.header("Draw a digit")
    choices = {run.describe(): str(run.path) for run in logic.finished_runs(runs)}
    choices.update({f"{uri} (registered)": uri for uri in _registered(str(runs))})
    if not choices:
        st.info(f"No finished runs in {runs}/ yet: train one on the Train page or with "
                f"`mlp-lab run configs/mnist.yaml`.")
        return
    label = st.selectbox("Model", list(choices), key="model")
    options = st.columns(3)
    scheme = options[0].radio("Canvas", (WHITE_ON_BLACK, BLACK_ON_WHITE), key="scheme", horizontal=True)
    brush = options[1].slider("Brush width", 4, 48, 20, key="brush")
    normalise = options[2].radio("Preprocessing", tuple(NORMALISE_LABELS), format_func=NORMALISE_LABELS.get,
                                 key="normalise", horizontal=True)
    predictor = predictor_for(Path(_model_dir(choices[label], str(runs))), normalise)
    drawing(predictor, scheme, brush, normalise)
    st.subheader("Or upload pictures")
    files = st.file_uploader("PNG or JPEG, any size up to the cap (dark-on-light pictures are inverted "
                             "automatically)", type=["png", "jpg", "jpeg"], accept_multiple_files=True, key="uploads")
    for upload in files or []:
        try:
            classified = logic.classify(predictor, logic.read_upload(upload.name, upload.getvalue()))
        except logic.EmptyDrawing:
            st.warning(f"{upload.name}: the picture is blank (one colour)")
            continue
        except MLPLabError as exc:
            st.error(str(exc))
            continue
        st.markdown(f"**{upload.name}**")
        show_classified(classified, predictor.classes)


# -- Train ------------------------------------------------------------------------------------


def base_config(runs: Path) -> Config:
    """What the form starts from and fills in beyond its fields: the schema's defaults, writing to `runs`."""
    from mlp_lab.config import validate_config

    return validate_config({"name": "app-run", "output": {"dir": str(runs)}}, "app defaults")


def _start(runs: Path, data_dirs: tuple[str, ...], base: Config) -> None:
    """The Start button: validate the form; if it is clean, launch the run and watch it."""
    values = {name: st.session_state[f"form_{name}"] for name in logic.FORM_KEYS}
    config, errors = logic.form_to_config(values, base, runs)
    if config is not None:
        try:
            run_dir = logic.launch_run(config, data_dirs)
        except MLPLabError as exc:
            errors = {logic.FORM_ERRORS: str(exc)}
        else:
            st.session_state["watch"] = str(run_dir)
    st.session_state["form_errors"] = errors


def _field(widget: Callable[..., Any], label: str, name: str, errors: dict[str, str], **kwargs: Any) -> None:
    widget(label, key=f"form_{name}", **kwargs)
    if name in errors:
        st.error(errors[name])


def train_page(runs: Path, data_dirs: tuple[str, ...]) -> None:
    """A form over the config's main fields; Start launches a separate process; live progress."""
    st.header("Train a model")
    base = base_config(runs)
    for name, value in logic.form_defaults(base).items():
        st.session_state.setdefault(f"form_{name}", value)
    errors = st.session_state.get("form_errors", {})
    with st.form("train"):
        a, b, c = st.columns(3)
        with a:
            _field(st.text_input, "Run name", "name", errors)
            _field(st.selectbox, "Dataset", "dataset", errors, options=DATASETS)
            _field(st.text_input, "Hidden sizes", "hidden_sizes", errors, help="e.g. 256, 128; empty: logistic regression")
            _field(st.checkbox, "BatchNorm", "batch_norm", errors)
            _field(st.number_input, "Dropout", "dropout", errors, step=0.05, format="%.2f")
        with b:
            _field(st.selectbox, "Optimizer", "optimizer", errors, options=OPTIMIZERS)
            _field(st.text_input, "Learning rate", "lr", errors)
            _field(st.selectbox, "LR schedule", "scheduler", errors, options=SCHEDULERS)
            _field(st.number_input, "Epochs", "epochs", errors, step=1)
        with c:
            _field(st.number_input, "Early-stopping patience (0: off)", "patience", errors, step=1)
            _field(st.text_input, "L1 penalty", "l1", errors)
            _field(st.text_input, "L2 penalty", "l2", errors)
            _field(st.number_input, "Seed", "seed", errors, step=1)
        if logic.FORM_ERRORS in errors:
            st.error(errors[logic.FORM_ERRORS])
        st.form_submit_button("Start", type="primary", on_click=_start, args=(runs, data_dirs, base))
    if errors:
        st.error("Nothing was started: fix the fields marked above.")
    launched = logic.launched_runs(runs)
    if not launched:
        st.caption("Runs started here are listed below, with live progress; they keep running if the page is closed.")
        return
    labels = [str(path.relative_to(runs)) for path in launched]
    watched = st.session_state.get("watch")
    watched_label = str(Path(watched).relative_to(runs)) if watched else None
    index = labels.index(watched_label) if watched_label in labels else 0
    label = st.selectbox("Runs started from the app (newest first)", labels, index=index)
    run_dir = runs / label
    running = logic.run_progress(run_dir, runs).running
    # Poll the run directory while it trains; a finished run needs no refresh.
    st.fragment(guarded, run_every=1.0 if running else None)(progress_panel, run_dir, runs, data_dirs, running)


def _curves(history: list[dict[str, float]]) -> None:
    import pandas as pd

    if not history:
        return
    frame = pd.DataFrame(history).set_index("epoch")
    left, right = st.columns(2)
    left.line_chart(frame[["train/loss", "val/loss"]].rename(columns=lambda c: c.replace("/", " ")), height=220)
    right.line_chart(frame[["train/acc", "val/acc"]].rename(columns=lambda c: c.replace("/", " ")), height=220)


def progress_panel(run_dir: Path, runs: Path, data_dirs: tuple[str, ...], was_running: bool) -> None:
    """Epoch m/n, curves, Stop / Resume, and the finished run's link, read from the run directory."""
    progress = logic.run_progress(run_dir, runs)
    info = progress.run
    if was_running and not progress.running:
        st.rerun()  # it just ended: redraw the page once, without polling
    if not run_dir.exists():
        st.error(f"{run_dir}: the run directory no longer exists")
        return
    epochs = f"epoch {info.epochs_run}/{info.epochs_planned}"
    if progress.running:
        st.markdown(f"**{info.label}: running**, {epochs} (pid {info.pid})")
        st.progress(min(1.0, info.epochs_run / max(1, info.epochs_planned or 1)))
        if st.button("Stop", key=f"stop-{info.label}"):
            logic.stop_run(run_dir)
            st.info("Stopping at the next batch: last.pt is saved, and Resume continues from it.")
    elif info.status == "done":
        st.success(f"{info.label}: finished, {epochs}, test accuracy {info.test_acc:.2%}")
        st.markdown(f"[Open {info.label} on the Runs page](?page=Runs&run={info.label})")
    elif progress.resumable:
        st.warning(f"{info.label}: stopped at {epochs}; last.pt is saved")
        if st.button("Resume", key=f"resume-{info.label}"):
            logic.resume_in_background(run_dir, data_dirs)
            st.rerun()
    elif progress.error:
        st.error(f"{info.label}: {progress.error}")
    else:
        st.info(f"{info.label}: {info.status}")
    _curves(progress.history)
    if progress.log_tail:
        with st.expander("log"):
            st.code(progress.log_tail, language=None)


# -- Runs and studies ----------------------------------------------------------------------------


def tracking_link(mlflow_address: str | None) -> None:
    """A link to the MLflow UI (a link, not an iframe: MLflow forbids framing), when tracking is installed."""
    if importlib.util.find_spec("mlflow") is None:
        return
    if mlflow_address:
        st.markdown(f"Tracking: [open the MLflow UI]({mlflow_address})")
    else:
        st.caption("Tracking: start the MLflow UI with `mlp-lab ui` (http://127.0.0.1:5000), or start the app "
                   "with `mlp-lab app --mlflow`.")


def runs_page(runs: Path, data_dirs: tuple[str, ...], mlflow_address: str | None) -> None:
    """Every run with its facts; one run's curves, confusion matrix and mistakes; every study's report."""
    st.header("Runs and studies")
    tracking_link(mlflow_address)
    infos = logic.list_runs(runs)
    if not infos:
        st.info(f"No runs in {runs}/ yet.")
    else:
        st.dataframe([info.row() for info in infos], hide_index=True)
        labels = [info.label for info in infos]
        wanted = st.query_params.get("run")
        label = st.selectbox("Run", labels, index=labels.index(wanted) if wanted in labels else 0)
        run_details(infos[labels.index(label)], data_dirs)
    studies = logic.list_studies(runs)
    st.subheader("Studies")
    if not studies:
        st.caption("No study reports yet: `mlp-lab compare STUDY` writes one.")
    for study in studies:
        with st.expander(study.name):
            st.markdown(study.markdown)
            for plot in study.plots:
                st.image(str(plot), caption=plot.name)


def run_details(info: logic.RunInfo, data_dirs: tuple[str, ...]) -> None:
    """One run: status line, curves, and (finished runs) the confusion matrix and mistakes."""
    if not info.path.exists():
        st.error(f"{info.path}: the run directory no longer exists")
        return
    st.markdown(f"**{info.label}**: {info.status}, {info.dataset}, {info.architecture}"
                + (f", test accuracy {info.test_acc:.2%}" if info.test_acc is not None else ""))
    _curves(logic.run_progress(info.path).history)
    if info.status != "done":
        return
    try:
        with st.spinner("evaluating on the test split (once per run)..."):
            figures = logic.ensure_evaluation(info.path, data_dirs)
    except MLPLabError as exc:
        st.warning(f"no confusion matrix: {exc}")
        return
    for name, path in figures.items():
        st.image(str(path), caption=name)


def main() -> None:
    """The app: a page picker in the sidebar (also `?page=`), then the page."""
    st.set_page_config(page_title="mlp-lab", layout="wide")
    runs, data_dirs, mlflow_address = settings()
    wanted = st.query_params.get("page", PAGES[0])
    page = st.sidebar.radio("Page", PAGES, index=PAGES.index(wanted) if wanted in PAGES else 0, key="page")
    if st.query_params.get("page") != page:
        st.query_params["page"] = page  # a browser refresh stays on this page
    st.sidebar.caption(f"runs: {runs}")
    if page == "Draw":
        guarded(draw_page, runs)
    elif page == "Train":
        guarded(train_page, runs, data_dirs)
    else:
        guarded(runs_page, runs, data_dirs, mlflow_address)
