"""The Train page: a form over the config's main fields, Start launching a separate process,
and live progress with Stop and Resume. Thin Streamlit code over `form` and `training`.

The form's values are kept in the page's address (``?form_epochs=5&...``) once Start is pressed,
so a browser reload shows the form as it was sent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from mlp_lab.app import form, training
from mlp_lab.app.launched import launched_runs
from mlp_lab.app.widgets import curves, guarded
from mlp_lab.config.schema import Config
from mlp_lab.core.errors import MLPLabError


def _start(runs: Path, data_dirs: tuple[str, ...], base: Config, threads: int) -> None:
    """The Start button: validate the form; if it is clean, launch the run and watch it."""
    values = {name: st.session_state[f"form_{name}"] for name in form.FORM_KEYS}
    for name, value in values.items():
        st.query_params[f"form_{name}"] = str(value)  # a reload gives back what was sent
    config, errors = form.form_to_config(values, base, runs)
    if config is not None:
        try:
            run_dir = training.launch_run(config, data_dirs, threads)
        except MLPLabError as exc:
            errors = {form.FORM_ERRORS: str(exc)}
        else:
            st.session_state["watch"] = str(run_dir)
    st.session_state["form_errors"] = errors


def _restored(name: str, text: str, default: Any) -> Any:
    """A form value from the page's address, as the widget holds it; the default where it does not fit."""
    if isinstance(default, bool):
        return text == "True"
    try:
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        return default
    if name in form.CHOICES and text not in form.CHOICES[name]:
        return default
    return text


def _fill_form(defaults: dict[str, Any]) -> None:
    """Each field's value: this session's, else the one in the address (a reload), else the default."""
    for name, value in defaults.items():
        key = f"form_{name}"
        if key not in st.session_state and key in st.query_params:
            st.session_state[key] = _restored(name, st.query_params[key], value)
        st.session_state.setdefault(key, value)


def _field(widget: Callable[..., Any], label: str, name: str, errors: dict[str, str], **kwargs: Any) -> None:
    widget(label, key=f"form_{name}", **kwargs)
    if name in errors:
        st.error(errors[name])


def train_page(runs: Path, data_dirs: tuple[str, ...], threads: int = 1) -> None:
    """A form over the config's main fields; Start launches a separate process; live progress."""
    st.header("Train a model")
    base = form.base_config(runs)
    _fill_form(form.form_defaults(base))
    errors = st.session_state.get("form_errors", {})
    with st.form("train"):
        a, b, c = st.columns(3)
        with a:
            _field(st.text_input, "Run name", "name", errors)
            _field(st.selectbox, "Dataset", "dataset", errors, options=form.CHOICES["dataset"])
            _field(
                st.text_input, "Hidden sizes", "hidden_sizes", errors, help="e.g. 256, 128; empty: logistic regression"
            )
            _field(st.checkbox, "BatchNorm", "batch_norm", errors)
            _field(st.number_input, "Dropout", "dropout", errors, step=0.05, format="%.2f")
        with b:
            _field(st.selectbox, "Optimizer", "optimizer", errors, options=form.CHOICES["optimizer"])
            _field(st.text_input, "Learning rate", "lr", errors)
            _field(st.selectbox, "LR schedule", "scheduler", errors, options=form.CHOICES["scheduler"])
            _field(st.number_input, "Epochs", "epochs", errors, step=1)
        with c:
            _field(st.number_input, "Early-stopping patience (0: off)", "patience", errors, step=1)
            _field(st.text_input, "L1 penalty", "l1", errors)
            _field(st.text_input, "L2 penalty", "l2", errors)
            # Text, not a number box: a browser's number box refuses large seeds without a word.
            _field(st.text_input, "Seed", "seed", errors, help=f"a whole number from 0 to {form.SEED_MAX}")
        if form.FORM_ERRORS in errors:
            st.error(errors[form.FORM_ERRORS])
        st.form_submit_button("Start", type="primary", on_click=_start, args=(runs, data_dirs, base, threads))
    if errors:
        st.error("Nothing was started: fix the fields marked above.")
    st.caption(f"Each run trains with {threads} torch thread{'s' if threads != 1 else ''} (mlp-lab app --threads).")
    launched = launched_runs(runs)
    if not launched:
        st.caption("Runs started here are listed below, with live progress; they keep running if the page is closed.")
        return
    labels = [str(path.relative_to(runs)) for path in launched]
    watched = st.session_state.get("watch")
    watched_label = str(Path(watched).relative_to(runs)) if watched else None
    index = labels.index(watched_label) if watched_label in labels else 0
    label = st.selectbox("Runs started from the app (newest first)", labels, index=index)
    run_dir = runs / label
    running = training.run_progress(run_dir, runs).running
    # Poll the run directory while it trains; a finished run needs no refresh.
    st.fragment(guarded, run_every=1.0 if running else None)(progress_panel, run_dir, runs, data_dirs, running, threads)


def progress_panel(run_dir: Path, runs: Path, data_dirs: tuple[str, ...], was_running: bool, threads: int = 1) -> None:
    """Epoch m/n, curves, Stop / Resume, and the finished run's link, read from the run directory."""
    progress = training.run_progress(run_dir, runs)
    info = progress.run
    if was_running and not progress.running:
        st.rerun()  # it just ended: redraw the page once, without polling
    if not run_dir.exists():
        # A run that fails before its first epoch leaves no directory; its reason is in its log.
        st.error(
            f"{info.label}: {progress.error}" if progress.error else f"{run_dir}: the run directory no longer exists"
        )
        if progress.log_tail:
            with st.expander("log"):
                st.code(progress.log_tail, language=None)
        return
    planned = info.epochs_planned or progress.epochs_planned
    epochs = f"epoch {info.epochs_run}/{planned}" if planned else f"epoch {info.epochs_run}"
    if progress.running and not info.epochs_run:
        st.markdown(f"**{info.label}: starting** (loading the data, then epoch 1 of {planned}) (pid {info.pid})")
        st.progress(0.0)
    if progress.running and info.epochs_run:
        st.markdown(f"**{info.label}: running**, {epochs} (pid {info.pid})")
        st.progress(min(1.0, info.epochs_run / max(1, planned or 1)))
    if progress.running:
        if st.button("Stop", key=f"stop-{info.label}"):
            training.stop_run(run_dir)
            st.info("Stopping at the next batch: last.pt is saved, and Resume continues from it.")
    elif info.status == "done":
        st.success(f"{info.label}: finished, {epochs}, test accuracy {info.test_acc:.2%}")
        st.markdown(f"[Open {info.label} on the Runs page](?page=Runs&run={info.label})")
    elif progress.resumable:
        st.warning(f"{info.label}: stopped at {epochs}; last.pt is saved")
        if st.button("Resume", key=f"resume-{info.label}"):
            training.resume_in_background(run_dir, data_dirs, threads)
            st.rerun()
    elif progress.error:
        st.error(f"{info.label}: {progress.error}")
    else:
        st.info(f"{info.label}: {info.status}")
    curves(progress.history)
    if progress.log_tail:
        with st.expander("log"):
            st.code(progress.log_tail, language=None)
