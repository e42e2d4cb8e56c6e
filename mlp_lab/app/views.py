"""The app: a page picker in the sidebar (also ``?page=``), then the page (`draw_page`,
`train_page`, `runs_page`, and `mlflow_page` when `mlp-lab app --mlflow` serves the MLflow UI),
with the settings `mlp-lab app` passed.

Every page runs under `widgets.guarded`, which turns errors into one message (MLPLabError as it
is, anything else as one line with the traceback on the server's stderr): a browser never shows
a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from mlp_lab.app.draw_page import draw_page
from mlp_lab.app.mlflow_page import browser_address, mlflow_page
from mlp_lab.app.runs_page import runs_page
from mlp_lab.app.serve import ADDRESS_ENV, DATA_DIRS_ENV, MLFLOW_ENV, RUNS_ENV, app_threads
from mlp_lab.app.train_page import train_page
from mlp_lab.app.widgets import guarded

PAGES = ("Draw", "Train", "Runs")
MLFLOW_PAGE = "MLflow"


def settings() -> tuple[Path, tuple[str, ...], str | None]:
    """The runs directory, extra data directories and the MLflow UI address `mlp-lab app` passed."""
    runs = Path(os.environ.get(RUNS_ENV, "runs"))
    data_dirs = tuple(d for d in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep) if d)
    return runs, data_dirs, os.environ.get(MLFLOW_ENV)


def pages(mlflow_address: str | None) -> tuple[str, ...]:
    """The pages offered: the MLflow page only when the app serves the MLflow UI beside it."""
    return (*PAGES, MLFLOW_PAGE) if mlflow_address else PAGES


def page_index(wanted: str | None, offered: tuple[str, ...]) -> int:
    """The picker's index for ``?page=``: that page when offered, else the first (Draw)."""
    return offered.index(wanted) if wanted in offered else 0


def main() -> None:
    """The app: a page picker in the sidebar (also `?page=`), then the page."""
    st.set_page_config(page_title="mlp-lab", layout="wide")
    runs, data_dirs, mlflow_address = settings()
    if mlflow_address:
        mlflow_address = browser_address(mlflow_address, st.context.url)
    offered = pages(mlflow_address)
    page = st.sidebar.radio("Page", offered, index=page_index(st.query_params.get("page"), offered), key="page")
    if st.query_params.get("page") != page:
        st.query_params["page"] = page  # a browser refresh stays on this page
    st.sidebar.caption(f"runs: {runs}")
    if page == "Draw":
        guarded(draw_page, runs)
    elif page == "Train":
        guarded(train_page, runs, data_dirs, app_threads())
    elif page == "Runs":
        guarded(runs_page, runs, data_dirs, mlflow_address)
    else:
        guarded(mlflow_page, mlflow_address, os.environ.get(ADDRESS_ENV))
