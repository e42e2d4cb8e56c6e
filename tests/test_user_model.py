"""A user's own model file on real FashionMNIST through the real CLI: run, evaluate (the run's own
test accuracy) and an exact resume each in a fresh process; summary, predict and a changed file
refused in this one.
(An exception in the user's forward, their frames only: tests/models/test_user.py through the
CLI, and tests/core/test_usercode.py in a fresh process.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import metrics_without_timing
from PIL import Image
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.load import load_config
from mlp_lab.data.load import load_data
from mlp_lab.data.source import DataError
from mlp_lab.training.checkpoint import load_checkpoint
from mlp_lab.training.context import RunContext
from mlp_lab.training.trainer import TrainingInterrupted, train

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
pytestmark = pytest.mark.slow

MY_MLP = """\
import torch
from torch import nn


class ParameterizedMLP(nn.Module):
    def __init__(self, in_features, num_classes, hidden_sizes=(64,), dropout=0.0):
        super().__init__()
        layers, width = [], in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.net = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)
"""

CONFIG = """\
name: mine
model:
  target: models/my_mlp.py:ParameterizedMLP
  args: {hidden_sizes: [32], dropout: 0.1}
data: {dataset: fashion_mnist, val_fraction: 0.9, root: DATA, download: false}
train: {epochs: 2, batch_size: 128, device: cpu}
output: {dir: runs, tensorboard: true}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: their model file and a config naming it relative to the config."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my_mlp.py").write_text(MY_MLP)
    (tmp_path / "mine.yaml").write_text(CONFIG.replace("DATA", str(tmp_path / "data")))
    try:
        load_data(load_config(tmp_path / "mine.yaml").data)
    except DataError as exc:
        if os.environ.get("MLP_LAB_REQUIRE_REAL_DATA") == "1":
            raise
        pytest.skip(f"real data not available: {exc}")
    return tmp_path


def cli(project: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mlp_lab", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == code, result.stdout + result.stderr
    return result


def here(project: Path, *args: str) -> str:
    """A command in this process (what needs a fresh one, run, evaluate and resume, uses `cli`)."""
    previous = Path.cwd()
    os.chdir(project)
    try:
        result = runner.invoke(app, list(args))
    finally:
        os.chdir(previous)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_users_model_through_run_evaluate_predict_and_resume(project):
    summary = json.loads(here(project, "summary", "mine.yaml", "--json"))
    assert summary["total_parameters"] == 784 * 32 + 32 + 32 * 10 + 10
    assert summary["macs_per_sample"] == 784 * 32 + 32 * 10

    cli(project, "run", "mine.yaml", "--threads", "1")
    run_dir = project / "runs" / "mine"
    done = json.loads((run_dir / "summary.json").read_text())
    assert done["status"] == "completed" and done["test/acc"] > 0.7, done
    assert done["num_parameters"] == summary["total_parameters"]
    # The checkpoint's weights are the user's module's own, loadable into their class directly.
    assert list(load_checkpoint(run_dir / "checkpoints" / "best.pt", "best")["model"]) == [
        "net.0.weight",
        "net.0.bias",
        "net.3.weight",
        "net.3.bias",
    ]

    evaluated = json.loads(cli(project, "evaluate", str(run_dir), "--json").stdout)
    assert evaluated["accuracy"] == pytest.approx(done["test/acc"])
    picture = np.zeros((28, 28), np.uint8)
    picture[4:24, 10:18] = 255  # a trouser-ish bar
    Image.fromarray(picture).save(project / "bar.png")
    predicted = json.loads(here(project, "predict", str(run_dir), "bar.png", "--json"))
    assert len(predicted) == 1 and len(predicted[0]["top"]) == 3

    # Stopped in epoch 2, resumed by the CLI in a fresh process: the uninterrupted run's numbers.
    polls = {"n": 0}

    def stop_in_epoch_two():
        polls["n"] += 1
        return polls["n"] == 60

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(TrainingInterrupted):
            train(load_config(project / "mine.yaml"), project / "part", context=RunContext(stop=stop_in_epoch_two))
    finally:
        torch.set_num_threads(threads)
    cli(project, "run", "--resume", "part", "--threads", "1")
    assert metrics_without_timing(project / "part") == metrics_without_timing(run_dir)
    a = load_checkpoint(run_dir / "checkpoints" / "last.pt", "last")["model"]
    b = load_checkpoint(project / "part" / "checkpoints" / "last.pt", "last")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    # The file edited after the run: loading the run is refused in one line.
    (project / "models" / "my_mlp.py").write_text(MY_MLP + "# edited\n")
    refused = runner.invoke(app, ["evaluate", str(run_dir)])
    assert refused.exit_code == 2, refused.output
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: model.target: {project / 'models' / 'my_mlp.py'} changed since the run recorded it")
