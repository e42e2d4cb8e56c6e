"""Streamlit pieces every page uses: the error guard and the learning curves."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import streamlit as st

from mlp_lab.errors import MLPLabError


def guarded(page: Callable[..., None], *args: Any) -> None:
    """Run a page; any error becomes one message on it."""
    try:
        page(*args)
    except MLPLabError as exc:
        st.error(str(exc))
    except Exception as exc:  # a bug must not show a browser a traceback; the server log keeps it
        traceback.print_exc()
        st.error(f"unexpected error: {type(exc).__name__}: {exc}")


def curves(history: list[dict[str, float]]) -> None:
    """A run's losses and accuracies per epoch, train beside validation (nothing before its first epoch)."""
    import pandas as pd

    if not history:
        return
    frame = pd.DataFrame(history).set_index("epoch")
    left, right = st.columns(2)
    left.line_chart(frame[["train/loss", "val/loss"]].rename(columns=lambda c: c.replace("/", " ")), height=220)
    right.line_chart(frame[["train/acc", "val/acc"]].rename(columns=lambda c: c.replace("/", " ")), height=220)
