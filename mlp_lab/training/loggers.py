"""Metric loggers: where a run's metrics go besides its run directory.

A logger follows the small `MetricLogger` protocol, in the spirit of torchtune's
``training/metric_logging.py``: the resolved config once, one record per epoch, the final
summary, close. TensorBoard is one implementation, opened here when the config asks; MLflow (the
``[track]`` extra) is another, built by the tracking layer that owns it and handed to the run as a
`LoggerFactory` in its `RunContext` (this layer knows no MLflow).
The run directory's own files (``config.yaml``, ``metrics.csv``, ``summary.json``) are not a
logger: the trainer writes them itself, because resume, reports and ``list`` read them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from mlp_lab.config.metrics import EPOCH_METRICS, SCORE_METRICS
from mlp_lab.config.overrides import flatten
from mlp_lab.config.schema import Config, config_to_dict


@runtime_checkable
class MetricLogger(Protocol):
    """A sink for one run's metrics. Calls come in order: config, epochs..., summary, close."""

    def log_config(self, config: Config) -> None:
        """The resolved config, once, before the first epoch (again on each resume)."""

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        """One epoch's record (`metrics.EPOCH_METRICS` and more), `epoch` counted from 1."""

    def log_summary(self, summary: dict[str, Any]) -> None:
        """The run's final summary.json content (completed or failed)."""

    def close(self) -> None:
        """Flush and release; called whether the run finished, failed or was interrupted."""


class LoggerFactory(Protocol):
    """Opens one metric logger for a run starting after `start_epoch`, or None when the run's
    config does not ask for it. Must pickle (a module-level function) to reach worker processes."""

    def __call__(
        self, config: Config, run_dir: Path, start_epoch: int, tags: Mapping[str, str]
    ) -> MetricLogger | None: ...


class TensorBoardLogger:
    """Scalars per epoch, optional weight/gradient histograms, and HParams with the real final
    metrics, written into the run directory itself so `tensorboard --logdir runs` finds it."""

    def __init__(
        self, run_dir: str | Path, model: torch.nn.Module | None = None, histograms: bool = False, start_epoch: int = 0
    ):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a crashed attempt wrote past the resumed epoch.
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=start_epoch + 1)
        self.model = model
        self.histograms = histograms and model is not None
        self.config: Config | None = None

    def log_config(self, config: Config) -> None:
        self.config = config

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        for key in EPOCH_METRICS:
            self.writer.add_scalar(key, record[key], epoch)
        if self.histograms:
            # Gradients are those of the epoch's last step: zero_grad runs before each backward.
            for name, param in self.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", param.detach(), epoch)
                if param.grad is not None:
                    self.writer.add_histogram(f"grads/{name}", param.grad, epoch)
        self.writer.flush()

    def log_summary(self, summary: dict[str, Any]) -> None:
        if summary.get("status") != "completed" or self.config is None:
            return  # HParams compare finished runs; a diverged run's scalars already tell its story
        step = summary["epochs_run"]
        metrics = {k: summary[k] for k in SCORE_METRICS}
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        flat = hparams_of(self.config)
        # What ran, beside what was asked (train.engine may say auto): the engine and its numerics.
        flat["engine"], flat["numerics_version"] = summary["engine"], summary["numerics_version"]
        flat["epochs_run"] = summary["epochs_run"]
        # Written into this run's own event file (not add_hparams' extra sub-run), so the HParams
        # tab links each row to this run's scalars.
        for item in _hparams_summaries(flat, metrics):
            self.writer.file_writer.add_summary(item)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def hparams_of(config: Config) -> dict[str, Any]:
    """The config's keys as HParams, output settings left out, lists as text. Each model kind's
    section holds only its own keys, so an MLP's row has no conv keys; a user model's row has
    model.target as its label (my_mlp.py:ParameterizedMLP), each model.args.* as a column and the
    code's content hash, and a user source's path is its file's name (where the project lies is
    no hyperparameter)."""
    flat = {}
    for key, value in flatten(config_to_dict(config)).items():
        if key.startswith("output."):
            continue
        flat[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    if config.model.kind == "user":
        flat["model.target"] = config.model.parsed.label
    if flat.get("data.source.path"):
        flat["data.source.path"] = Path(str(flat["data.source.path"])).name
    return flat


def _hparams_summaries(flat: dict[str, Any], metrics: dict[str, float]) -> list[Any]:
    """torch's `hparams` summaries with booleans typed as booleans: torch checks int before bool,
    so True would show as 1.0; the plugin's own protos are corrected here."""
    from tensorboard.plugins.hparams.api_pb2 import DataType
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from torch.utils.tensorboard.summary import hparams

    flags = {k: v for k, v in flat.items() if isinstance(v, bool)}
    items = list(hparams(flat, metrics))
    for item in items:
        for value in item.value:
            data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
            kind = data.WhichOneof("data")
            if kind == "experiment":
                for info in data.experiment.hparam_infos:
                    if info.name in flags:
                        info.type = DataType.DATA_TYPE_BOOL
            elif kind == "session_start_info":
                for key, flag in flags.items():
                    data.session_start_info.hparams[key].bool_value = flag
            value.metadata.plugin_data.content = data.SerializeToString()
    return items


def loggers_for(
    config: Config,
    run_dir: str | Path,
    model: torch.nn.Module,
    start_epoch: int = 0,
    tags: Mapping[str, str] | None = None,
    factories: Sequence[LoggerFactory] = (),
) -> list[MetricLogger]:
    """The loggers of a run starting after `start_epoch`: TensorBoard when the config asks
    (`output.tensorboard`), then whatever each of `factories` opens for it (MLflow's, from the
    tracking layer, when `output.mlflow`); `tags` say where the run belongs (a study's name and arm)."""
    loggers: list[MetricLogger] = []
    if config.output.tensorboard:
        loggers.append(TensorBoardLogger(run_dir, model, config.output.histograms, start_epoch))
    for factory in factories:
        logger = factory(config, Path(run_dir), start_epoch, dict(tags or {}))
        if logger is not None:
            loggers.append(logger)
    return loggers
