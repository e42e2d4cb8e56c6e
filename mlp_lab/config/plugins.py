"""Metric plug-ins, as facts: scores beyond a split's test accuracy that some datasets offer
(real handwriting for digits), switched on by `output.<name>` and kept in summary.json.

No torch: the config's cross-field check, the study report and the overview read these to know
which plug-ins a dataset offers and how to show their numbers, without knowing any plug-in by
name. How a plug-in computes its numbers from a trained model is `mlp_lab.inspect.plugins`'; a
dataset offers one by naming it in its facts (`DatasetFacts.metric_plugins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlp_lab.config import datasets


@dataclass(frozen=True)
class MetricPlugin:
    """What a metric plug-in is: its name (also its switch, `output.<name>`), the summary key a
    report aggregates over seeds (`metric`, an accuracy in 0..1), and the words reports use."""

    name: str
    metric: str  # its headline key in summary.json, `<name>/<what>`; more keys may follow it
    label: str  # a report's column header, e.g. "real handwriting acc % (mean ± std)"
    description: str  # a report's sentence before its paired differences
    needs: str  # what it scores, for the config error on a dataset that does not offer it

    @property
    def switch(self) -> str:
        """The config key that asks for it."""
        return f"output.{self.name}"

    @property
    def row_key(self) -> str:
        """The prefix of its columns in a report's rows (report.json, report.csv)."""
        return self.metric.replace("/", "_")


HANDWRITING = MetricPlugin(
    name="handwriting",
    metric="handwriting/acc",
    label="real handwriting acc % (mean ± std)",
    description="The same for real-handwriting accuracy (`output.handwriting`: scikit-learn's scanned digits):",
    needs="scores digits",
)

# Every metric plug-in, by name. Its switch is a key of the config's output section.
METRIC_PLUGINS: dict[str, MetricPlugin] = {HANDWRITING.name: HANDWRITING}


def requested(output: Any) -> tuple[MetricPlugin, ...]:
    """The plug-ins a config's output section switches on."""
    return tuple(plugin for plugin in METRIC_PLUGINS.values() if getattr(output, plugin.name, False))


def plugin_errors(dataset: str, output: Any) -> list[tuple[str, str]]:
    """(key, message) for each plug-in switched on for a dataset that does not offer it."""
    errors = []
    offered = datasets.DATASETS[dataset].metric_plugins if dataset in datasets.DATASETS else ()
    for plugin in requested(output):
        if plugin.name not in offered:
            which = " or ".join(repr(name) for name in datasets.offering(plugin.name)) or "(none offers it)"
            errors.append((plugin.switch, f"{plugin.needs}: needs data.dataset {which}, not {dataset!r}"))
    return errors
