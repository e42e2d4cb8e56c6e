"""Finished runs and studies exported to MLflow (`mlp-lab track`, `mlp_lab.track`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlp_lab.tracking.export import Exported


def track(targets: Sequence[str], overrides: Sequence[str] = (), say: Callable[[str], None] = print) -> list[Exported]:
    """Export each target (a run directory, or a study by name or path, loaded with `overrides`
    as compare's --set) to its MLflow store; a second export adds nothing. `say` gets the lines
    to show (where runs go, each run's outcome, how a study's runs differ from it); returns
    what was exported, run by run."""
    from mlp_lab.tracking.export import Exported
    from mlp_lab.tracking.workflows import export_targets

    exported: list[Exported] = []
    for item in export_targets(targets, overrides):  # each store reached (or reported) within seconds
        if isinstance(item, Exported):
            exported.append(item)
            say(item.describe())
        else:
            say(item)
    return exported
