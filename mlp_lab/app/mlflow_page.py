"""The MLflow page: the MLflow UI that `mlp-lab app --mlflow` serves beside it, inside the app.

That server lets the app's own origin frame it and no other (`tracking.store.ui_command`); an
outside server (``MLFLOW_TRACKING_URI``) is linked from the Runs page instead: its framing policy
is not ours to set.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import streamlit as st

from mlp_lab.tracking.store import WILDCARD_HOSTS

FRAME_HEIGHT = 900  # px: the UI's run table and charts without a second scroll bar on a laptop


def browser_address(mlflow_address: str, page_url: str | None) -> str:
    """The UI's address as the browser must write it. A server on a wildcard address (the app in
    a container: ``http://0.0.0.0:5000``) is reached by the name the browser reached the app by
    (``http://localhost:8501`` -> ``http://localhost:5000``); any other address is used as it is."""
    served = urlsplit(mlflow_address)
    if served.hostname not in {h.strip("[]") for h in WILDCARD_HOSTS} or not page_url:
        return mlflow_address
    seen = urlsplit(page_url).hostname
    if not seen:
        return mlflow_address
    return f"{served.scheme}://{'[' + seen + ']' if ':' in seen else seen}:{served.port}"


def mlflow_page(mlflow_address: str) -> None:
    """The MLflow UI in a frame, and a link that opens it in its own tab (`mlflow_address`: as the
    browser writes it, `browser_address`)."""
    st.header("MLflow")
    st.caption(
        f"The MLflow UI at {mlflow_address}, served with this app ([open it in its own tab]({mlflow_address})). "
        "It shows here when the app is opened at the address `mlp-lab app` printed (bound to every address, "
        "as in the container: at any name, on the app's port): the UI may be framed by that origin only."
    )
    st.iframe(mlflow_address, height=FRAME_HEIGHT)
