"""Streamlit pieces every page uses: the error guard and the learning curves."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import streamlit as st

from mlp_lab.core.errors import MLPLabError


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
    """A run's losses and accuracies per epoch, train beside validation (nothing before its first
    epoch): a point per epoch, so one epoch already shows; whole epochs on the x-axis; accuracy in
    % on a scale fitted to the curves (0-100 % would flatten 97 % against 98 %)."""
    if not history:
        return
    left, right = st.columns(2)
    left.altair_chart(curve_chart(history, "loss"), width="stretch")
    right.altair_chart(curve_chart(history, "acc"), width="stretch")


def curve_chart(history: list[dict[str, float]], metric: str):
    """One Altair chart of train/<metric> and val/<metric> per epoch (`metric` is "loss" or "acc")."""
    import altair as alt
    import pandas as pd

    scale = 100.0 if metric == "acc" else 1.0
    rows = [
        {"epoch": int(row["epoch"]), "split": split, "value": row[f"{split}/{metric}"] * scale}
        for row in history
        for split in ("train", "val")
        if row.get(f"{split}/{metric}") is not None
    ]
    title = "accuracy (%)" if metric == "acc" else "loss"
    last = max(row["epoch"] for row in rows) if rows else 1
    return (
        alt.Chart(pd.DataFrame(rows), height=220)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "epoch:Q",
                title="epoch",
                scale=alt.Scale(domain=[1, max(2, last)]),
                axis=alt.Axis(tickMinStep=1, format="d"),
            ),
            y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
            color=alt.Color("split:N", title=None),
            tooltip=["epoch", "split", alt.Tooltip("value:Q", format=".2f", title=title)],
        )
        .properties(title=f"{title} per epoch")
    )
