"""End-to-end CLI: typer's CliRunner for commands, a subprocess for start-up cost."""

import subprocess
import sys

import yaml
from conftest import write_config
from typer.testing import CliRunner

from mlp_lab.cli import app

runner = CliRunner()


def test_run_trains_and_reports_test_accuracy(tiny_config, tmp_path):
    path = write_config(tmp_path, tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"}))
    result = runner.invoke(app, ["run", str(path), "--set", "seed=3"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "tiny"
    assert "epoch   2/2" in result.output and "test/acc" in result.output and str(run_dir) in result.output
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 3


def test_run_never_overwrites_an_existing_run(tiny_config, tmp_path):
    path = write_config(tmp_path, tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}))
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    second = runner.invoke(app, ["run", str(path)])
    assert second.exit_code == 0
    assert "exists; writing this run to" in second.output
    assert (tmp_path / "runs" / "tiny-2" / "summary.json").is_file()


def test_validate_prints_the_resolved_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: v\n")
    result = runner.invoke(app, ["validate", str(path), "--set", "model.dropout=0.5"])
    assert result.exit_code == 0
    resolved = yaml.safe_load(result.stdout)
    assert resolved["model"]["dropout"] == 0.5 and resolved["train"]["optimizer"]["name"] == "adam"


def test_invalid_config_exits_2_with_every_error_and_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  dropout: 1.0\ntrain:\n  epochs: 0\n")
    for verb in ("validate", "run"):
        result = runner.invoke(app, [verb, str(path), "--set", "train.optimizer.lr=0"])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)
        assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_resume_a_finished_run_does_not_train_again(tiny_config, tmp_path):
    path = write_config(tmp_path, tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}))
    runner.invoke(app, ["run", str(path)])
    result = runner.invoke(app, ["run", "--resume", str(tmp_path / "runs" / "tiny")])
    assert result.exit_code == 0 and "epoch" not in result.output.split("done:")[0].split("->")[-1]


def test_tensorboard_events_hold_scalars_and_hparams(tiny_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg = tiny_config(
        train={"epochs": 3, "batch_size": 32, "device": "cpu"},
        output={"dir": str(tmp_path / "runs"), "tensorboard": True},
    )
    path = write_config(tmp_path, cfg)
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    events = EventAccumulator(str(tmp_path / "runs" / "tiny"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/loss", "val/loss", "train/acc", "val/acc", "lr", "test/acc"):
        assert tag in scalars, tag
    assert [e.step for e in events.Scalars("val/acc")] == [1, 2, 3]
    summary = yaml.safe_load((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert (
        events.Scalars("test/acc")[-1].value == summary["test/acc"].__float__()
        or abs(events.Scalars("test/acc")[-1].value - summary["test/acc"]) < 1e-6
    )
    content = events.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in content and "_hparams_/session_start_info" in content
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"test/acc", "test/loss"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.hidden_sizes"].string_value == "[32]"
    assert start.hparams["train.optimizer.lr"].number_value == 1e-3


def test_help_lists_the_verbs_in_their_order():
    from typer.main import get_command

    assert list(get_command(app).list_commands(None)) == [
        "run",
        "validate",
        "compare",
        "report",
        "suite",
        "search",
        "list",
        "data",
        "summary",
        "evaluate",
        "predict",
        "track",
        "register",
        "models",
        "ui",
        "app",
        "bench",
        "init",
    ]


def test_help_does_not_import_torch_and_python_m_works():
    code = (
        "import sys\nfrom mlp_lab.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "run" in result.stdout and result.stdout.strip().endswith("NO-TORCH")
    module = subprocess.run([sys.executable, "-m", "mlp_lab", "--help"], capture_output=True, text=True)
    assert module.returncode == 0 and "validate" in module.stdout
