"""Metric names and the summary's keys: what a real run writes is what `metrics` names."""

import csv
import math
from typing import get_args

from mlp_lab.config import metrics
from mlp_lab.config.schema import EarlyStoppingConfig
from mlp_lab.execution.procedure import start_run
from mlp_lab.runs import rundir
from mlp_lab.training.context import RunContext


def test_a_run_writes_the_named_metrics_and_summary_keys(tiny_config):
    run_dir = start_run(tiny_config(train={"epochs": 2}), RunContext(threads=1)).run_dir
    with open(run_dir / rundir.METRICS_FILE, newline="") as f:
        assert tuple(next(csv.reader(f))) == metrics.METRICS_CSV_COLUMNS
    history = rundir.read_metrics(run_dir)
    assert [row["epoch"] for row in history] == [1, 2]
    summary = rundir.read_json(run_dir / rundir.SUMMARY_FILE)
    assert set(metrics.SCORE_METRICS) < set(metrics.SUMMARY_METRICS)
    for key in metrics.SUMMARY_METRICS:
        assert isinstance(summary[key], (int, float)) and math.isfinite(summary[key]), key
    best = history[summary["best_epoch"] - 1]
    for monitored, key in metrics.BEST_METRICS.items():
        assert summary[key] == best[monitored]


def test_every_metric_early_stopping_may_monitor_has_a_best_value_in_the_summary():
    assert set(get_args(EarlyStoppingConfig.model_fields["monitor"].annotation)) == set(metrics.BEST_METRICS)
    assert set(metrics.BEST_METRICS) <= set(metrics.EPOCH_METRICS)
