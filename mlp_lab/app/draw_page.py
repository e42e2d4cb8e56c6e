"""The Draw page: draw or upload a picture, pick a model (a finished run or a registered alias;
it opens on the robust digits model where one is trained, else the most accurate), see what it
thinks. The canvas is offered for digits models, uploads for every model of pictures (a user's
image folder and model too), and a table model gets one line saying why it has no input. Thin
Streamlit code over `drawing` and `models`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from mlp_lab.app import drawing, models
from mlp_lab.app.runs import group_of, in_group, run_groups
from mlp_lab.app.widgets import guarded
from mlp_lab.core.errors import MLPLabError

WHITE_ON_BLACK, BLACK_ON_WHITE = "white on black", "black on white"
CANVAS_SIZE = 280
NORMALISE_LABELS = {"auto": "the dataset's own", "plain": "plain resize"}
VIEW_SCALE = 5  # the 28x28 view, enlarged with square pixels so each one can be seen


@st.cache_resource(max_entries=8, show_spinner=False)
def _loaded(run_dir: str, stamp: float):  # noqa: ARG001 - the stamp is the cache key's freshness
    """A run's model, loaded once per checkpoint version and shared by every session."""
    from mlp_lab.training.checkpoint import load_model

    return load_model(run_dir)


def predictor_for(run_dir: Path, normalise: str):
    """A `Predictor` over the cached model (auto-invert: either canvas colour scheme works)."""
    from mlp_lab.inspect.predict import Predictor

    return Predictor(_loaded(str(run_dir), models.checkpoint_stamp(run_dir)), "auto", normalise)


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
    data_url = drawing_canvas(key=key, size=CANVAS_SIZE, brush=brush, stroke=stroke, background=background)
    return drawing.canvas_image(data_url)


def show_classified(classified: drawing.Classified, classes: list[str]) -> None:
    """The top class, all probabilities as a bar chart, and the image the model saw."""
    best = classified.best
    st.markdown(f"#### Prediction: {best['class']} ({best['probability']:.1%})")
    st.caption("  ·  ".join(f"{t['class']} {t['probability']:.1%}" for t in classified.top))
    left, right = st.columns([3, 2])
    # Plain HTML, not a Vega-Lite chart and a served image: the browser redraws these on every
    # stroke, and a few divs and an inline PNG need no chart library and no second request.
    left.html(drawing.bars_html(classes, classified.probabilities))
    right.html(drawing.view_html(classified.view, VIEW_SCALE))
    right.caption("what the model sees (after preprocessing)")


@st.fragment
def canvas_panel(predictor: Any, scheme: str, brush: int, normalise: str, what: str = "a digit") -> None:
    """The canvas and its prediction. A fragment: a stroke reruns only this, not the whole page
    (no listing of run directories between a stroke and its answer)."""
    guarded(_canvas_panel, predictor, scheme, brush, normalise, what)


def _canvas_panel(predictor: Any, scheme: str, brush: int, normalise: str, what: str) -> None:
    left, right = st.columns(2)
    with left:
        image = _canvas(scheme, brush)
        st.button("Clear", on_click=_clear_canvas)
    with right:
        try:
            classified = drawing.classify(predictor, image, subject=what)
        except drawing.EmptyDrawing as exc:
            st.info(str(exc))
        else:
            show_classified(classified, predictor.classes)
            # The ink count changes with every stroke: a browser (and its test) can tell an updated answer.
            st.caption(
                f"canvas ink {drawing.ink_pixels(image)} px · {NORMALISE_LABELS[normalise]} · "
                f"preprocessing + prediction {classified.milliseconds:.1f} ms"
            )


@st.cache_data(ttl=30, show_spinner=False)
def _registered(runs: str) -> list[models.ModelChoice]:
    """Registered model aliases, asked of the store at most every 30 s (importing MLflow takes seconds)."""
    return models.registered_models(runs)


@st.cache_data(ttl=30, show_spinner="fetching the registered model...")
def _model_dir(choice: str, runs: str) -> str:
    """A picker choice's run directory; a registered model is fetched at most every 30 s (an alias may move)."""
    return str(models.model_dir(choice, runs))


# What each preprocessing does to a picture before the model sees it, for the page's caption:
# "auto" is the recipe of the model's dataset (predict.dataset_recipe).
PREPROCESSING = {
    "digit": "the dataset's own recipe (digits: inverted if dark on light, cropped to the ink, scaled to "
    "20 of 28 pixels, centred by mass, as MNIST was made)",
    "fashion": "the dataset's own recipe (inverted if dark on light, the background trimmed, scaled to fill "
    "28 x 28 pixels, sharpened, as FashionMNIST was made)",
    "plain": "a plain resize to the dataset's size",
}
# What a model classifies, for the page's title and hints: a FashionMNIST model is not shown "Draw a digit".
SUBJECTS = {"mnist": "a digit", "fashion_mnist": "a piece of clothing", "cifar10": "an object"}


UPLOAD_ONLY = "Drawing is for digit (MNIST-like) models; this model classifies pictures you upload."


def table_note(run_dir: Path, features: int | None) -> str:
    """The one line the page shows for a table model, which it offers no input for."""
    return (
        f"This model classifies rows of {features} features, not pictures, so this page has no input for it; "
        f"score its test rows with: mlp-lab evaluate {run_dir}"
    )


def subject(dataset: str | None) -> str:
    """What to draw for a model of `dataset`: "a digit", "a piece of clothing", ..."""
    return SUBJECTS.get(dataset or "", "a picture")


def preprocessing(normalise: str, dataset: str | None) -> str:
    """The caption's words for a preprocessing choice with a model of `dataset`."""
    from mlp_lab.inspect.predict import dataset_recipe

    return PREPROCESSING[dataset_recipe(dataset) if normalise == "auto" else normalise]


def model_caption(
    choice: models.ModelChoice, is_default: bool, normalise: str = "auto", classes: list[str] | None = None
) -> str:
    """Which model the page uses (and why, when it chose it) and which preprocessing."""
    trained = " (trained on augmented digits)" if choice.augmented else ""
    if not is_default:
        why = ""
    elif choice.dataset == models.DIGITS and choice.test_acc is not None and choice.augmented:
        why = ": the robust digits model here, the one made for handwriting"
    elif choice.dataset == models.DIGITS and choice.test_acc is not None:
        why = ": the most accurate digits (MNIST) model here (train configs/mnist_robust.yaml for handwriting)"
    else:
        why = ": no tested digits (MNIST) model here, so the first one listed"
    what = f" It classifies {', '.join(classes)}." if classes else ""
    return f"Using {choice.label}{trained}{why}.{what} Preprocessing: {preprocessing(normalise, choice.dataset)}."


def draw_page(runs: Path) -> None:
    """Draw or upload a picture, pick a model, see what it thinks."""
    title = st.empty()  # what to draw depends on the model picked below it
    choices = models.model_choices(models.finished_runs(runs), _registered(str(runs)))
    if not choices:
        title.header("Draw a digit")
        st.info(
            f"No finished runs in {runs}/ yet: train one on the Train page or with `mlp-lab run configs/mnist.yaml`."
        )
        return
    default_model = choices[models.default_choice(choices)]
    groups = run_groups([choice.study for choice in choices])
    if groups:  # a study's runs are many: picked by study first
        first = groups.index(group_of(default_model.study, groups))
        group = st.selectbox("Models from", groups, index=first, key="model_group")
        choices = [choice for choice in choices if in_group(choice.study, group)]
    labels = [choice.label for choice in choices]
    default = choices.index(default_model) if default_model in choices else models.default_choice(choices)
    picked = labels.index(st.selectbox("Model", labels, index=default, key="model"))
    caption = st.empty()  # filled once the preprocessing is picked, below it
    run_dir = Path(_model_dir(choices[picked].target, str(runs)))
    meta = _loaded(str(run_dir), models.checkpoint_stamp(run_dir)).data_meta
    offered = models.picture_input(meta)
    if offered == "none":
        title.header("A model of a table")
        caption.caption(f"Using {choices[picked].label}.")
        st.info(table_note(run_dir, models.table_features(meta)))
        return
    drawing_too = offered == "draw"  # the canvas is for digits: a drawn shirt or car tells little
    options = st.columns(3 if drawing_too else 1)
    if drawing_too:
        scheme = options[0].radio("Canvas", (WHITE_ON_BLACK, BLACK_ON_WHITE), key="scheme", horizontal=True)
        brush = options[1].slider("Brush width", 4, 48, 20, key="brush")
    normalise = options[-1].radio(
        "Preprocessing", tuple(NORMALISE_LABELS), format_func=NORMALISE_LABELS.get, key="normalise", horizontal=True
    )
    predictor = predictor_for(run_dir, normalise)
    dataset = predictor.meta.get("dataset")
    title.header(f"{'Draw' if drawing_too else 'Classify'} {subject(dataset)}")
    shown_classes = predictor.classes if dataset != models.DIGITS else None
    caption.caption(model_caption(choices[picked], picked == default, normalise, shown_classes))
    if drawing_too:
        canvas_panel(predictor, scheme, brush, normalise, subject(dataset))
        st.subheader("Or upload pictures")
    else:
        st.subheader("Upload pictures")
        st.caption(UPLOAD_ONLY)
    files = st.file_uploader(
        "PNG or JPEG, any size up to the cap (dark-on-light pictures are inverted automatically)",
        type=["png", "jpg", "jpeg"],
        accept_multiple_files=True,
        key="uploads",
    )
    for upload in files or []:
        try:
            classified = drawing.classify(predictor, drawing.read_upload(upload.name, upload.getvalue()))
        except drawing.EmptyDrawing as exc:
            st.warning(f"{upload.name}: {exc}")
            continue
        except MLPLabError as exc:
            st.error(str(exc))
            continue
        st.markdown(f"**{upload.name}**")
        show_classified(classified, predictor.classes)
