"""Slow integration tests on the real datasets (FashionMNIST from Debian's package, MNIST from
$MLP_LAB_DATA). Skipped when the data is absent, unless MLP_LAB_REQUIRE_REAL_DATA=1 (as in CI)."""

import os
from pathlib import Path

import pytest

from mlp_lab.config.load import load_config
from mlp_lab.data.load import load_data
from mlp_lab.data.source import DataError
from mlp_lab.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def real_config(tmp_path, config="baseline.yaml", *overrides):
    cfg = load_config(
        REPO / "configs" / config,
        [f"data.root={tmp_path / 'data'}", "data.download=false", f"output.dir={tmp_path / 'runs'}", *overrides],
    )
    try:
        load_data(cfg.data)
    except DataError as exc:
        if os.environ.get("MLP_LAB_REQUIRE_REAL_DATA") == "1":
            raise
        pytest.skip(f"real data not available: {exc}")
    return cfg


def test_fashion_mnist_two_epochs_reach_84_percent(tmp_path):
    cfg = real_config(tmp_path, "baseline.yaml", "train.epochs=2", "train.device=cpu")
    summary = train(cfg, tmp_path / "runs" / "real")
    assert summary["dataset"] == "fashion_mnist"
    assert summary["test/acc"] >= 0.84, summary


def test_mnist_two_epochs_reach_97_percent(tmp_path):
    # In CI $MLP_LAB_DATA points at ../shared/data/mnist (the official IDX files); the
    # FashionMNIST test above then also checks that this MNIST directory is skipped for it.
    cfg = real_config(tmp_path, "mnist.yaml", "train.epochs=2", "train.device=cpu")
    summary = train(cfg, tmp_path / "runs" / "mnist")
    assert summary["dataset"] == "mnist"
    assert summary["test/acc"] >= 0.97, summary
