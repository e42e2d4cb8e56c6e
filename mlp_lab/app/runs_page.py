"""The Runs page: every run with its facts, one run's curves, confusion matrix and mistakes, and
every study's report. Thin Streamlit code over `runs` and `studies`."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import streamlit as st

from mlp_lab.app.runs import (
    RunInfo,
    ensure_evaluation,
    group_of,
    in_group,
    list_runs,
    read_history,
    run_groups,
    study_of,
)
from mlp_lab.app.studies import list_studies
from mlp_lab.app.widgets import curves
from mlp_lab.core.errors import MLPLabError


def outside_ui() -> str | None:
    """The tracking server ``$MLFLOW_TRACKING_URI`` names, when it is one (http or https)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri if uri.startswith(("http://", "https://")) else None


def tracking_link(mlflow_address: str | None) -> None:
    """Where the MLflow UI is, when tracking is installed: the MLflow page when the app serves it;
    a link to an outside server (its framing policy is not ours to set)."""
    if importlib.util.find_spec("mlflow") is None:
        return
    if mlflow_address:
        st.markdown(
            f"Tracking: the MLflow UI is on the [MLflow page](?page=MLflow), or [in its own tab]({mlflow_address})"
        )
    elif outside := outside_ui():
        st.markdown(f"Tracking: [open the MLflow UI]({outside}) (the server MLFLOW_TRACKING_URI names)")
    else:
        st.caption(
            "Tracking: start the MLflow UI with `mlp-lab ui` (http://127.0.0.1:5000), or start the app "
            "with `mlp-lab app --mlflow` to see it on an MLflow page here."
        )


def runs_page(runs: Path, data_dirs: tuple[str, ...], mlflow_address: str | None) -> None:
    """Every run with its facts; one run's curves, confusion matrix and mistakes; every study's report."""
    st.header("Runs and studies")
    tracking_link(mlflow_address)
    infos = list_runs(runs)
    if not infos:
        st.info(f"No runs in {runs}/ yet.")
    else:
        wanted = st.query_params.get("run")
        groups = run_groups([info.study for info in infos])
        if groups:  # a study's runs are many: shown by study, not all in one list
            first = group_of(study_of(wanted), groups) if wanted else groups[0]
            group = st.selectbox("Show", groups, index=groups.index(first), key="runs_group")
            infos = [info for info in infos if in_group(info.study, group)]
        st.dataframe([info.row() for info in infos], hide_index=True)
        labels = [info.label for info in infos]
        label = st.selectbox("Run", labels, index=labels.index(wanted) if wanted in labels else 0)
        run_details(infos[labels.index(label)], data_dirs)
    studies = list_studies(runs)
    st.subheader("Studies")
    if not studies:
        st.caption("No study reports yet: `mlp-lab compare STUDY` writes one.")
    for study in studies:
        with st.expander(study.name):
            for part in study.parts:  # each plot under its heading, as the report places it
                if isinstance(part, Path):
                    st.image(str(part), caption=part.name)
                else:
                    st.markdown(part)


def run_details(info: RunInfo, data_dirs: tuple[str, ...]) -> None:
    """One run: status line, curves, and (finished runs) the confusion matrix and mistakes."""
    if not info.path.exists():
        st.error(f"{info.path}: the run directory no longer exists")
        return
    st.markdown(
        f"**{info.label}**: {info.status}, {info.dataset}, {info.architecture}"
        + (f", test accuracy {info.test_acc:.2%}" if info.test_acc is not None else "")
    )
    curves(read_history(info.path))
    if info.status != "done":
        return
    try:
        with st.spinner("evaluating on the test split (once per run)..."):
            figures = ensure_evaluation(info.path, data_dirs)
    except MLPLabError as exc:
        st.warning(f"no confusion matrix: {exc}")
        return
    for name, path in figures.items():
        st.image(str(path), caption=name)
