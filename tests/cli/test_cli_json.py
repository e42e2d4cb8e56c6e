"""`--json` on the commands that produce a result: one JSON document on stdout and nothing else
there; progress and messages on stderr; errors still one `error:` line on stderr, same exit code.

typer's CliRunner keeps stdout and stderr apart (result.stdout, result.stderr); one test runs the
real command in a process, where the worker processes of `--jobs 2` print too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import write_config, write_study
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.runs import rundir

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def invoke_json(args: list[str]):
    """The command with --json: its exit code, its stdout parsed (it must be one JSON document), its stderr."""
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_run_json_is_the_run_dir_summary_and_history(tiny_config, tmp_path):
    path = write_config(tmp_path, tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"}))
    doc, progress = invoke_json(["run", str(path)])
    run_dir = tmp_path / "runs" / "tiny"
    assert doc["run_dir"] == str(run_dir)
    assert doc["summary"] == rundir.read_json(run_dir / "summary.json")
    assert doc["history"] == rundir.read_metrics(run_dir) and [row["epoch"] for row in doc["history"]] == [1, 2]
    assert "epoch   2/2" in progress and f"done: {run_dir}" in progress


def test_compare_json_is_the_report_and_the_run_outcomes(tiny_config, tmp_path, monkeypatch):
    write_study(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    doc, progress = invoke_json(["compare", "study", "--seeds", "0"])
    report_dir = tmp_path / "runs" / "study"
    assert doc["study"] == "study" and doc["report"] == rundir.read_json(report_dir / "report.json")
    assert [(r["arm"], r["seed"], r["status"], r["action"]) for r in doc["runs"]] == [
        ("none", 0, "done", "trained"),
        ("half", 0, "done", "trained"),
    ]
    for run in doc["runs"]:
        assert run["summary"] == rundir.read_json(Path(run["run_dir"]) / "summary.json")
    assert "[2/2 done, 0 left]" in progress and "report:" in progress

    listed, _ = invoke_json(["list"])  # the same directories, as list --json sees them: seed 1 not run
    assert [(e["name"], e["state"]) for e in listed["configs"] if not e["shipped"]] == [("tiny", "new")]
    assert all(e["shipped"] for e in listed["configs"][1:])  # the package's copies follow the user's
    assert [(e["name"], e["state"], e["path"]) for e in listed["studies"] if not e["shipped"]] == [
        ("study", "partial", str(Path("experiments") / "study.yaml"))
    ]
    assert listed["studies"][0]["detail"].startswith("2/4 runs done")


def test_compare_json_with_a_failed_run_prints_the_outcomes_then_exits_1(tiny_config, tmp_path, monkeypatch):
    write_study(
        tmp_path,
        tiny_config,
        factor="train.optimizer",
        arms={"none": {}, "explode": {"train.optimizer": {"name": "sgd", "lr": 1.0e6}}},
    )
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compare", "study", "--seeds", "0", "--set", "train.epochs=1", "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [(r["arm"], r["status"]) for r in doc["runs"]] == [("none", "done"), ("explode", "failed")]
    assert "diverged" in doc["runs"][1]["error"] and "1 run(s) failed:" in result.stderr


@pytest.mark.slow
def test_summary_data_and_evaluate_json(tiny_config, tmp_path):
    from mlp_lab.inspect.analysis import model_summary

    cfg = tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"})
    path = write_config(tmp_path, cfg)
    summary, _ = invoke_json(["summary", str(path), "--set", "model.hidden_sizes=[16,8]"])
    expected = model_summary(cfg.model_copy(update={"model": cfg.model.model_copy(update={"hidden_sizes": [16, 8]})}))
    assert summary["name"] == "tiny" and summary["total_parameters"] == expected["total_parameters"]
    assert len(summary["layers"]) == len(expected["layers"])

    data, _ = invoke_json(["data", "--config", str(path), "--out-dir", str(tmp_path / "grid")])
    assert data["dataset"] == "mnist" and Path(data["sample_grid"]).is_file()
    assert sum(data["counts"]["train"]) + sum(data["counts"]["val"]) == 600

    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    run_dir = tmp_path / "runs" / "tiny"
    evaluated, _ = invoke_json(["evaluate", str(run_dir)])
    assert evaluated == rundir.read_json(run_dir / "eval" / "test_metrics.json")
    assert evaluated["split"] == "test" and len(evaluated["confusion_matrix"]) == 10


@pytest.mark.parametrize(
    "args",
    [
        ["run", "missing.yaml"],
        ["compare", "nope"],
        ["summary", "missing.yaml"],
        ["data", "nosuchset"],
        ["evaluate", "runs/none"],
        ["list", "--configs-dir", "file.txt"],
        ["models", "--output-dir", "file.txt"],
    ],
)
def test_json_errors_stay_one_error_line_on_stderr(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("not a directory\n")
    plain = runner.invoke(app, args)
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == plain.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr == plain.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines


@pytest.mark.slow
def test_models_json_lists_the_registered_versions(tiny_config, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlp_lab.training.trainer import train

    train(tiny_config(train={"epochs": 1, "batch_size": 32, "device": "cpu"}), tmp_path / "runs" / "tiny")
    monkeypatch.chdir(tmp_path)  # the default store: ./runs/mlflow.db
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    empty, _ = invoke_json(["models"])
    assert empty == []
    registered = runner.invoke(app, ["register", "runs/tiny", "--name", "tiny-mlp", "--alias", "champion"])
    assert registered.exit_code == 0, registered.output
    rows, _ = invoke_json(["models"])
    assert [(r["name"], r["version"], r["aliases"]) for r in rows] == [("tiny-mlp", "1", ["champion"])]
    assert rows[0]["test/acc"] == rundir.read_json(tmp_path / "runs" / "tiny" / "summary.json")["test/acc"]


@pytest.mark.slow
def test_compare_json_in_a_process_keeps_the_workers_output_off_stdout(tiny_config, tmp_path):
    """The real command, --jobs 2: the worker processes print their epochs on the file descriptor
    they inherit, which --json points at stderr for the command's length."""
    write_study(tmp_path, tiny_config)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "mlp_lab", "compare", "study", "--seeds", "0", "--jobs", "2", "--set", "train.epochs=2"]
        + ["--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [r["status"] for r in doc["runs"]] == ["done", "done"]
    assert "epoch 2/2" in result.stderr and "[2/2 done, 0 left]" in result.stderr
    assert yaml.safe_load((tmp_path / "runs" / "study" / "none" / "seed-0" / "config.yaml").read_text())["seed"] == 0
