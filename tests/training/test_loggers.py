"""The MetricLogger seam: what a logger receives, in which order, also on resume, failure and stop."""

from typing import Any

import pytest

from mlp_lab.config.metrics import EPOCH_METRICS
from mlp_lab.models.mlp import ParameterizedMLP
from mlp_lab.training.context import RunContext
from mlp_lab.training.loggers import MetricLogger, TensorBoardLogger, hparams_of, loggers_for
from mlp_lab.training.trainer import TrainingDiverged, TrainingInterrupted, train


class RecordingLogger:
    """A logger that keeps every call, to check what the trainer sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def log_config(self, config) -> None:
        self.calls.append(("config", config.name))

    def log_epoch(self, record: dict[str, Any], epoch: int) -> None:
        assert set(EPOCH_METRICS) <= set(record) and record["epoch"] == epoch
        self.calls.append(("epoch", epoch))

    def log_summary(self, summary: dict[str, Any]) -> None:
        self.calls.append(("summary", summary["status"]))

    def close(self) -> None:
        self.calls.append(("close", None))


def opening(logger: RecordingLogger) -> RunContext:
    """A run context whose one logger factory opens `logger`."""
    return RunContext(loggers=(lambda config, run_dir, start_epoch, tags: logger,))


def test_a_logger_gets_config_every_epoch_summary_and_close(tiny_config, tmp_path):
    logger = RecordingLogger()
    assert isinstance(logger, MetricLogger)
    train(
        tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu"}), tmp_path / "run", context=opening(logger)
    )
    assert logger.calls == [
        ("config", "tiny"),
        ("epoch", 1),
        ("epoch", 2),
        ("epoch", 3),
        ("summary", "completed"),
        ("close", None),
    ]


def test_interrupt_closes_without_summary_and_resume_continues_the_epochs(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu"})
    steps_per_epoch = 15  # 480 training examples (600 x 0.8) in batches of 32
    calls = {"n": 0}

    def stop_in_epoch_two():
        calls["n"] += 1
        return calls["n"] > steps_per_epoch + 3

    first = RecordingLogger()
    with pytest.raises(TrainingInterrupted):
        train(cfg, tmp_path / "run", context=opening(first).but(stop=stop_in_epoch_two))
    assert first.calls == [("config", "tiny"), ("epoch", 1), ("close", None)]
    second = RecordingLogger()
    train(cfg, tmp_path / "run", resume=True, context=opening(second))
    assert second.calls == [("config", "tiny"), ("epoch", 2), ("epoch", 3), ("summary", "completed"), ("close", None)]


def test_a_diverged_run_sends_its_failed_summary(tiny_config, tmp_path):
    logger = RecordingLogger()
    cfg = tiny_config(train={"epochs": 3, "batch_size": 32, "device": "cpu", "optimizer": {"name": "sgd", "lr": 1e6}})
    with pytest.raises(TrainingDiverged):
        train(cfg, tmp_path / "run", context=opening(logger))
    assert logger.calls == [("config", "tiny"), ("summary", "diverged"), ("close", None)]


def test_the_config_chooses_the_loggers(tiny_config, tmp_path):
    model = ParameterizedMLP(784, [8], 10)
    assert loggers_for(tiny_config(output={"tensorboard": False}), tmp_path, model) == []
    (tb,) = loggers_for(tiny_config(output={"tensorboard": True, "histograms": True}), tmp_path, model)
    assert isinstance(tb, TensorBoardLogger) and isinstance(tb, MetricLogger) and tb.histograms
    tb.close()


def test_a_runs_logger_factories_open_after_the_configs_own_or_decline(tiny_config, tmp_path):
    # MLflow's logger reaches the trainer this way, from the layer that owns tracking.
    model = ParameterizedMLP(784, [8], 10)
    asked: list = []

    def declines(config, run_dir, start_epoch, tags):
        asked.append((start_epoch, tags))
        return None

    recorder = RecordingLogger()
    made = loggers_for(
        tiny_config(output={"tensorboard": False}), tmp_path, model, 2, {"arm": "a"}, (declines, lambda *_: recorder)
    )
    assert made == [recorder] and asked == [(2, {"arm": "a"})]


def hparams_in(run_dir) -> tuple[dict[str, Any], dict[str, str]]:
    """What TensorBoard's HParams tab reads from a run's event file: each hparam's value (as the
    proto's kind and value) and each declared type."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.api_pb2 import DataType
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    values = {k: (v.WhichOneof("kind"), getattr(v, v.WhichOneof("kind"))) for k, v in start.hparams.items()}
    return values, {info.name: DataType.Name(info.type) for info in experiment.hparam_infos}


def test_hparams_hold_the_model_kinds_keys_and_booleans_as_booleans(tiny_config, tmp_path):
    cfg = tiny_config(model={"batch_norm": True}, train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    train(cfg.model_copy(update={"output": cfg.output.model_copy(update={"tensorboard": True})}), tmp_path / "run")
    values, types = hparams_in(tmp_path / "run")
    assert not [k for k in values if k.startswith("model.conv.")], "an MLP run has no conv keys"
    assert values["model.batch_norm"] == ("bool_value", True) and types["model.batch_norm"] == "DATA_TYPE_BOOL"
    assert values["data.download"] == ("bool_value", False) and types["data.download"] == "DATA_TYPE_BOOL"
    assert values["train.epochs"] == ("number_value", 1.0) and types["train.epochs"] == "DATA_TYPE_FLOAT64"
    assert values["model.kind"] == ("string_value", "mlp") and "epochs_run" in values
    # The engine that ran (a BatchNorm MLP: autograd) and its numerics version, beside train.engine: auto.
    assert values["engine"] == ("string_value", "autograd") and values["train.engine"] == ("string_value", "auto")
    assert values["numerics_version"] == ("number_value", 4.0)
    # A CNN's conv keys are its own: they stay.
    cnn = tiny_config(model={"kind": "cnn", "conv": {"channels": [4], "batch_norm": True}})
    assert hparams_of(cnn)["model.conv.batch_norm"] is True and hparams_of(cnn)["model.conv.channels"] == "[4]"


def test_a_user_models_hparams_name_its_target_by_label_with_each_argument(tmp_path):
    """TensorBoard's HParams and MLflow's params show which code ran and with what, not where the
    project lay: the label, each model.args.* as its own column, the code's hash, the data's file."""
    from pathlib import Path

    from mlp_lab.config.load import load_config
    from mlp_lab.tracking.logger import run_params

    examples = Path(__file__).resolve().parents[2] / "examples"
    (tmp_path / "my_mlp.py").write_text((examples / "student" / "my_mlp.py").read_text())
    (tmp_path / "table.csv").write_text("a,b,label\n1,2,x\n3,4,y\n")
    (tmp_path / "c.yaml").write_text(
        "data: {source: {kind: csv, path: table.csv, label: label}}\n"
        "model: {target: my_mlp.py:ParameterizedMLP, args: {hidden_sizes: [8], dropout: 0.2, batch_norm: true}}\n"
    )
    flat = hparams_of(load_config(tmp_path / "c.yaml"))
    assert flat["model.kind"] == "user" and flat["model.target"] == "my_mlp.py:ParameterizedMLP"
    assert flat["model.args.dropout"] == 0.2 and flat["model.args.batch_norm"] is True
    assert flat["model.args.hidden_sizes"] == "[8]" and len(flat["model.code_sha256"]) == 64
    assert flat["data.source.path"] == "table.csv" and flat["data.source.kind"] == "csv"
    assert not [v for v in flat.values() if str(tmp_path) in str(v)]
    assert run_params(load_config(tmp_path / "c.yaml")) == {k: str(v) for k, v in flat.items()}
