"""The MLflow page: the MLflow UI that `mlp-lab app --mlflow` serves beside the app, inside the app.

That server lets the app's own origin frame it and no other (`tracking.store.ui_command`); an
outside server (``MLFLOW_TRACKING_URI``) is linked from the Runs page instead: its framing policy
is not ours to set.
"""

from __future__ import annotations

import streamlit as st

FRAME_HEIGHT = 900  # px: the UI's run table and charts without a second scroll bar on a laptop


def mlflow_page(mlflow_address: str) -> None:
    """The MLflow UI in a frame, and a link that opens it in its own tab."""
    st.header("MLflow")
    st.caption(
        f"The MLflow UI at {mlflow_address}, served with this app ([open it in its own tab]({mlflow_address})). "
        "It shows here when the app is opened at the address `mlp-lab app` printed: the UI may be framed by "
        "that origin only."
    )
    st.iframe(mlflow_address, height=FRAME_HEIGHT)
