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


def _wildcard(host: str | None) -> bool:
    return host in {h.strip("[]") for h in WILDCARD_HOSTS}


def browser_address(mlflow_address: str, page_url: str | None) -> str:
    """The UI's address as the browser must write it. A server on a wildcard address (the app in
    a container: ``http://0.0.0.0:5000``) is reached by the name the browser reached the app by
    (``http://localhost:8501`` -> ``http://localhost:5000``); any other address is used as it is."""
    served = urlsplit(mlflow_address)
    if not _wildcard(served.hostname) or not page_url:
        return mlflow_address
    seen = urlsplit(page_url).hostname
    if not seen:
        return mlflow_address
    return f"{served.scheme}://{'[' + seen + ']' if ':' in seen else seen}:{served.port}"


def origin(url: str) -> str:
    """scheme://host:port of a URL (the port spelled out), as a browser compares origins."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def mlflow_page(mlflow_address: str, app_address: str | None = None) -> None:
    """The MLflow UI in a frame, and a link that opens it in its own tab (`mlflow_address`: as the
    browser writes it, `browser_address`). Opened at another address than `app_address`
    (localhost for 127.0.0.1), the frame would be refused and show broken: the page says which
    address to open instead. An app bound to every address (the container) lets any name frame
    the UI on the app's port, so no address is wrong there."""
    st.header("MLflow")
    opened = st.context.url
    if (
        app_address
        and opened
        and not _wildcard(urlsplit(app_address).hostname)
        and origin(opened) != origin(app_address)
    ):
        st.warning(
            f"The MLflow UI can be shown inside the app only when the app is opened at {app_address} "
            f"(this page is at {origin(opened)}): [open the app there]({app_address}/?page=MLflow), "
            f"or [open the MLflow UI in its own tab]({mlflow_address})."
        )
        return
    st.caption(
        f"The MLflow UI at {mlflow_address}, served with this app ([open it in its own tab]({mlflow_address})). "
        "It shows here when the app is opened at the address `mlp-lab app` printed (bound to every address, "
        "as in the container: at any name, on the app's port): the UI may be framed by that origin only."
    )
    st.iframe(mlflow_address, height=FRAME_HEIGHT)
