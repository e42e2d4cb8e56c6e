"""Metric names and the summary's keys, defined once.

A metric is named ``split/name`` (``train/loss``, ``val/acc``, ``test/acc``) or is ``lr``. One
epoch's record is a row of a run's metrics.csv; a completed run's summary.json adds its scores
and the facts of how it ran. No torch and nothing of ours: every layer may read these.
"""

from __future__ import annotations

# What one epoch measures, in metrics.csv's column order.
EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "lr")
# The epoch's wall time: a measurement of the machine, not of the model (it differs between
# otherwise identical runs), so it is kept apart from EPOCH_METRICS.
EPOCH_SECONDS = "seconds"
TIMED_EPOCH_METRICS = (*EPOCH_METRICS, EPOCH_SECONDS)
# A run's metrics.csv: one row per epoch, counted from 1.
METRICS_CSV_COLUMNS = ("epoch", *TIMED_EPOCH_METRICS)

# How well a completed run did: the test split under the weights it kept, and its best
# validation epoch. These are what runs are ranked and compared by (TensorBoard's HParams view).
SCORE_METRICS = ("test/acc", "test/loss", "best/val_acc", "best/val_loss")
# Every number in a completed run's summary.json: its scores and how it ran (what a tracking
# store logs). SCORE_METRICS is a part of it on purpose: an epoch count or a wall time is a
# fact about a run, not a score to rank it by.
SUMMARY_METRICS = (*SCORE_METRICS, "best_epoch", "epochs_run", "wall_time_s", "num_parameters")

# Metric plug-ins (mlp_lab.config.plugins) add their own keys to a completed run's summary.

# The summary's key for the best value of a monitored validation metric (early stopping's
# `monitor`, a search's objective).
BEST_METRICS = {"val/acc": "best/val_acc", "val/loss": "best/val_loss"}
