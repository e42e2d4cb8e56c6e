"""Metric plug-ins at work: each plug-in's scorer (a trained model and its data description ->
summary metrics), and the step that adds the scores a run's config asks for to its summary.json
once training has finished.

A plug-in's facts (name, metric key, words for reports) are `mlp_lab.config.plugins`'; a dataset
offers it in its facts; `register_scorer` ties the name to the code that scores. The run
procedure calls `add_plugin_metrics` after the trainer returns: the trainer knows no plug-in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from mlp_lab.config import plugins
from mlp_lab.config.schema import Config
from mlp_lab.core.errors import MLPLabError
from mlp_lab.inspect.handwriting import handwriting_metrics
from mlp_lab.runs import rundir

# (model in eval mode on the CPU, its checkpoint's data description) -> the metrics to add to summary.json.
Scorer = Callable[[torch.nn.Module, Mapping[str, Any]], dict[str, float]]

SCORERS: dict[str, Scorer] = {plugins.HANDWRITING.name: handwriting_metrics}


def register_scorer(name: str, scorer: Scorer) -> None:
    """Tie metric plug-in `name` (its facts registered in `mlp_lab.config.plugins`) to its code."""
    if name not in plugins.METRIC_PLUGINS:
        raise MLPLabError(f"metric plug-in {name!r} has no facts; register them in mlp_lab.config.plugins")
    SCORERS[name] = scorer


def add_plugin_metrics(config: Config, run_dir: str | Path, summary: dict[str, Any]) -> dict[str, Any]:
    """A completed run's summary with the metrics of every plug-in its config asks for, scored
    on the weights its test metrics used and appended to summary.json. A summary that has them
    (a finished run found again) is returned as it is, so calling this again changes nothing; one
    that lacks them (a process that stopped between the two writes) gets them now."""
    wanted = [p for p in plugins.requested(config.output) if p.metric not in summary]
    if summary.get("status") != "completed" or not wanted:
        return summary
    from mlp_lab.training.checkpoint import load_model

    run = load_model(run_dir)  # the weights test/acc was measured with, as `evaluate` and `predict` load them
    scored = dict(summary)
    for plugin in wanted:
        scored.update(SCORERS[plugin.name](run.model, run.data_meta))
    rundir.write_json(Path(run_dir) / rundir.SUMMARY_FILE, scored)
    return scored


class PluginMetrics:
    """The plug-ins' scores as one of a run's metric sinks (`training.loggers.MetricLogger`): when
    the trainer hands over the summary it added the scores to it in place and to summary.json,
    before the sinks that copy the run's files (MLflow's summary.json) see it."""

    def __init__(self, config: Config, run_dir: Path):
        self.config, self.run_dir = config, run_dir

    def log_config(self, config: Any) -> None:
        pass

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        pass

    def log_summary(self, summary: dict[str, Any]) -> None:
        summary.update(add_plugin_metrics(self.config, self.run_dir, summary))

    def close(self) -> None:
        pass


def plugin_logger(config: Config, run_dir: Path, start_epoch: int, tags: Any) -> PluginMetrics | None:
    """The `training.loggers.LoggerFactory` of the plug-in scores: a sink where the config asks for any."""
    return PluginMetrics(config, run_dir) if plugins.requested(config.output) else None
