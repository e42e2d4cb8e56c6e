"""A model family added from outside mlp_lab (tests/models/toy_model_family.py: one file, one
register_family call) works through every verb of the real CLI: validate, summary, run, evaluate,
predict, compare and resume, in-process so the registration is visible."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import metrics_without_timing
from PIL import Image
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.schema import config_to_dict
from mlp_lab.models.registry import unregister_family
from mlp_lab.training.checkpoint import load_checkpoint
from mlp_lab.training.context import RunContext
from mlp_lab.training.trainer import TrainingInterrupted, train

runner = CliRunner()
TOY = {"kind": "toy", "width": 6}


@pytest.fixture
def toy():
    """The toy family's module imported (which registers it), and forgotten afterwards, so other
    tests (the generated config reference) see only the built-in kinds."""
    module = importlib.import_module("toy_model_family")
    yield module
    unregister_family("toy")
    sys.modules.pop("toy_model_family", None)


@pytest.fixture
def toy_config(tiny_config, tmp_path, toy):
    """The tiny synthetic config with a toy model, 2 epochs, written where a user keeps configs."""
    raw = config_to_dict(tiny_config(train={"epochs": 2, "batch_size": 32, "device": "cpu"}))
    raw["model"] = dict(TOY)
    path = tmp_path / "configs" / "toy.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_a_registered_family_validates_and_its_errors_name_the_key(toy_config):
    resolved = yaml.safe_load(invoke("validate", str(toy_config)).stdout)
    assert resolved["model"] == TOY
    result = runner.invoke(app, ["validate", str(toy_config), "--set", "model.widht=3", "--set", "model.dropout=0.1"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --set model.widht=3: model.widht: unknown key, did you mean 'model.width'?",
        "error: --set model.dropout=0.1: model.dropout: not a key of this model.kind; mlp and cnn have it "
        "(model.kind: mlp)",
    ]


@pytest.mark.slow
def test_a_toy_model_runs_through_summary_run_evaluate_predict_and_resume(toy, toy_config, tmp_path):
    geometry = toy.ToyConfig(width=6).geometry((1, 28, 28), 10)
    summary = json.loads(invoke("summary", str(toy_config), "--json").stdout)
    assert [row["layer"] for row in summary["layers"]] == ["0: Flatten", "1: Linear", "2: Softplus", "3: Linear"]
    assert (summary["total_parameters"], summary["macs_per_sample"]) == (geometry.parameters, geometry.macs)

    invoke("run", str(toy_config), "--threads", "1")
    run_dir = tmp_path / "runs" / "tiny"
    done = json.loads((run_dir / "summary.json").read_text())
    assert done["status"] == "completed" and done["num_parameters"] == geometry.parameters
    # The checkpoint holds the section itself, which the family rebuilds the network from.
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt", "best")["model_section"] == TOY

    evaluated = json.loads(invoke("evaluate", str(run_dir), "--json").stdout)
    assert (evaluated["accuracy"], evaluated["loss"]) == pytest.approx((done["test/acc"], done["test/loss"]))

    # Class 3's band lit, as the synthetic data draws it (conftest.synthetic_images).
    picture = np.zeros((28, 28), np.uint8)
    picture[6:8] = 255
    Image.fromarray(picture).save(tmp_path / "band.png")
    predicted = json.loads(invoke("predict", str(run_dir), str(tmp_path / "band.png"), "--json").stdout)
    assert len(predicted) == 1 and len(predicted[0]["top"]) == 3

    # Interrupted in epoch 2, resumed through the CLI: the same numbers as the uninterrupted run.
    polls = {"n": 0}

    def stop_in_epoch_two():
        polls["n"] += 1
        return polls["n"] == 20

    from mlp_lab.config.load import load_config

    threads = torch.get_num_threads()  # as --threads 1 trains: a thread count changes float sums
    torch.set_num_threads(1)
    try:
        with pytest.raises(TrainingInterrupted):
            train(load_config(toy_config), tmp_path / "part", context=RunContext(stop=stop_in_epoch_two))
    finally:
        torch.set_num_threads(threads)
    invoke("run", "--resume", str(tmp_path / "part"), "--threads", "1")
    assert metrics_without_timing(tmp_path / "part") == metrics_without_timing(run_dir)
    a = load_checkpoint(run_dir / "checkpoints" / "last.pt", "last")["model"]
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt", "last")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_study_compares_two_toy_widths(toy_config, tmp_path, monkeypatch):
    study = {
        "description": "toy widths",
        "base": "../configs/toy.yaml",
        "factor": "model.width",
        "reference": "narrow",
        "seeds": [0],
        "arms": {"narrow": {"model.width": 2}, "wide": {"model": {"width": 12}}},
    }
    path = tmp_path / "experiments" / "toys.yaml"
    path.parent.mkdir()
    path.write_text("# Run: mlp-lab compare toys\n" + yaml.safe_dump(study, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    invoke("compare", "toys", "--set", "train.epochs=1")
    widths = {
        arm: yaml.safe_load((tmp_path / "runs" / "toys" / arm / "seed-0" / "config.yaml").read_text())["model"]
        for arm in ("narrow", "wide")
    }
    assert widths == {"narrow": {"kind": "toy", "width": 2}, "wide": {"kind": "toy", "width": 12}}
    report = (tmp_path / "runs" / "toys" / "report.md").read_text()
    assert "narrow" in report and "wide" in report
