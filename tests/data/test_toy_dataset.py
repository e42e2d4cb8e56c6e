"""A dataset added the way a developer adds one: a `DatasetSource` (its facts, its files, a reader
that gives uint8 images) and one `register` call, nothing else of mlp_lab edited. It then works
through the real CLI: `data`, `run`, `evaluate` and a one-seed `compare` with its report.

The dataset: scikit-learn's 1,797 UCI digits (8 x 8, ink 0..16) as one .npz file, the first
1,500 for training and the rest for test. The CLI runs in-process (typer's CliRunner), so the
registration made here is the one it sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mlp_lab.cli import app
from mlp_lab.config.datasets import DatasetFacts
from mlp_lab.data import registry
from mlp_lab.data.source import DataError, DatasetSource

# -- what a developer writes: the dataset's one module ------------------------------------------

TOY_FILE = "toy-digits.npz"


def read_toy(directory: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of the .npz as uint8 images (N, 1, 8, 8) and int64 labels."""
    try:
        with np.load(directory / TOY_FILE) as arrays:
            split = "train" if train else "test"
            return torch.from_numpy(arrays[f"{split}_images"]), torch.from_numpy(arrays[f"{split}_labels"]).long()
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{directory / TOY_FILE}: cannot read: {exc}") from None


TOY_DIGITS = DatasetSource(
    facts=DatasetFacts("toy_digits", "Toy digits", (1, 8, 8), tuple(str(d) for d in range(10))),
    files=(TOY_FILE,),
    read=read_toy,
)

# -- the test ----------------------------------------------------------------------------------


def write_toy_files(directory: Path) -> Path:
    """The dataset's file, as its maker would publish it."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(
        directory / TOY_FILE,
        train_images=images[:1500],
        train_labels=labels[:1500],
        test_images=images[1500:],
        test_labels=labels[1500:],
    )
    return directory


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The toy dataset registered for one test, and a config and a study over it."""
    monkeypatch.delenv("MLP_LAB_DATA", raising=False)
    registry.register(TOY_DIGITS)
    files = write_toy_files(tmp_path / "published")
    config = {
        "name": "toy",
        "data": {"dataset": "toy_digits", "root": str(tmp_path / "data"), "download": False},
        "model": {"hidden_sizes": [32]},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "tensorboard": False},
    }
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "toy.yaml").write_text(yaml.safe_dump(config))
    study = {
        "description": "dropout on the toy digits",
        "base": "../configs/toy.yaml",
        "factor": "model.dropout",
        "reference": "none",
        "seeds": [0],
        "arms": {"none": {"model.dropout": 0.0}, "half": {"model.dropout": 0.5}},
    }
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "toy_study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    yield files
    registry.unregister(TOY_DIGITS.name)


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_a_registered_dataset_runs_through_data_run_evaluate_and_compare(toy, tmp_path):
    info = json.loads(invoke("data", "toy_digits", "--data-dir", str(toy), "--out-dir", "grid", "--json").stdout)
    assert info["dataset"] == "toy_digits" and info["image_shape"] == [1, 8, 8]
    assert [sum(info["counts"][split]) for split in ("train", "val", "test")] == [1350, 150, 297]
    assert Path(info["sample_grid"]).is_file()
    # The copy found through --data-dir was installed into data.root, under the dataset's name.
    assert (tmp_path / "data" / "toy_digits" / TOY_FILE).is_file()

    invoke("run", "configs/toy.yaml", "--threads", "1", "--run-dir", "runs/toy")
    summary = json.loads((tmp_path / "runs" / "toy" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["dataset"] == "toy_digits"
    assert summary["num_parameters"] == 64 * 32 + 32 + 32 * 10 + 10  # 8 x 8 pixels in, ten classes out
    assert summary["test/acc"] > 0.5  # two epochs learn these digits well above chance (0.1)

    evaluation = json.loads(invoke("evaluate", "runs/toy", "--split", "test", "--json").stdout)
    assert evaluation["accuracy"] == pytest.approx(summary["test/acc"])

    invoke("compare", "toy_study", "--threads", "1")
    report = json.loads((tmp_path / "runs" / "toy_study" / "report.json").read_text())
    assert [row["arm"] for row in report["arms"]] == ["none", "half"]
    assert all(row["seeds"] == 1 and row["test_acc_mean"] > 0.5 for row in report["arms"])


def test_a_config_naming_it_is_refused_once_it_is_unregistered(toy):
    registry.unregister(TOY_DIGITS.name)
    result = CliRunner().invoke(app, ["validate", "configs/toy.yaml"])
    assert result.exit_code == 2
    assert "data.dataset: Input should be 'fashion_mnist', 'mnist' or 'cifar10'" in result.output


def test_a_second_dataset_under_a_taken_name_is_refused(toy):
    impostor = DatasetSource(facts=TOY_DIGITS.facts, files=("other.npz",), read=read_toy)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(impostor)
    assert registry.register(TOY_DIGITS) is TOY_DIGITS  # the same one again: a notebook cell run twice
